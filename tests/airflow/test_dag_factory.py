"""Geniusfiles rendered into real Airflow DAGs: structure, a real `dag.test()` run, and the DAG processor's
view (`airflow dags list-import-errors`). Airflow runs in child processes (see conftest.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from airflow_genius.core import RunKey, Status, open_state

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dags_examples"
LOADER = EXAMPLES / "genius_geniusfiles.py"
DAG_ID = "genius_quotes_geniusfile"
AIRFLOW = str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "airflow")
MARK = "GENIUSFILE_RESULT "


def result_of(done: subprocess.CompletedProcess[str]) -> Any:
    """The JSON the child printed after MARK (fails with the child's output if there is none)."""
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
    assert lines, (
        f"child printed no result (exit {done.returncode})\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return json.loads(lines[-1][len(MARK) :])


@pytest.fixture
def genius_env(airflow_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The Airflow env with the examples as DAGs folder, a private state store and data folder."""
    return {
        **airflow_env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(EXAMPLES),
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        "GENIUS_EXAMPLE_DATA": str(tmp_path / "data"),
    }


# Loads a DAG file the way the DAG processor does (a module from a path) and picks one DAG from it.
LOAD_DAG_FILE = """
import importlib.util, json, sys
def load(path, dag_id):
    spec = importlib.util.spec_from_file_location("geniusfile_dags", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, getattr(module, dag_id)
"""


def test_example_renders_tasks_dependencies_params_and_mapped_bolt(
    run_python, genius_env: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    child = LOAD_DAG_FILE + textwrap.dedent(
        """
        module, dag = load(sys.argv[1], sys.argv[2])
        tasks = {}
        for task in dag.tasks:
            mapped = type(task).__name__ == "MappedOperator"
            tasks[task.task_id] = {
                "operator": task.operator_name if mapped else type(task).__name__,
                "upstream": sorted(task.upstream_task_ids),
                "mapped": mapped,
                "retries": task.partial_kwargs["retries"] if mapped else task.retries,
                "call": None if mapped else task.genius_call,
                "expand": task.expand_input.value["method_kwargs"] if mapped else None,
            }
        params = {name: [dag.params.get_param(name).schema, dag.params.get_param(name).description]
                  for name in dag.params}
        print("GENIUSFILE_RESULT " + json.dumps({
            "dag_ids": sorted(k for k, v in vars(module).items() if type(v).__name__ == "DAG"),
            "tasks": tasks, "params": params, "defaults": dag.params.dump(),
            "native": dag.render_template_as_native_obj, "schedule": str(dag.schedule),
            "start_date": dag.start_date.isoformat(), "tags": sorted(dag.tags),
        }))
        """
    )
    got = result_of(run_python(child, genius_env, args=[str(LOADER), DAG_ID]))
    data = genius_env["GENIUS_EXAMPLE_DATA"]
    assert got["dag_ids"] == ["genius_ml_geniusfile", DAG_ID]  # every Geniusfile of the folder
    assert got["native"] is True and got["schedule"] == "None"
    assert got["start_date"] == "2024-01-01T00:00:00+00:00"
    assert got["tags"] == ["example", "genius", "geniusfile"]
    assert got["defaults"] == {"count": 20, "top": 5}
    assert got["params"]["count"] == [{"type": "integer", "minimum": 1, "maximum": 10000}, "Quotes to ingest"]
    tasks = got["tasks"]
    assert {name: (t["operator"], t["upstream"], t["mapped"]) for name, t in tasks.items()} == {
        "fetch": ("GeniusSpoutOperator", [], False),
        "count": ("GeniusBoltOperator", ["fetch"], False),
        "long_words": ("GeniusBoltOperator", ["fetch"], True),
    }
    assert all(t["retries"] == 1 for t in tasks.values())
    assert tasks["fetch"]["call"]["kwargs"] == {"count": "{{ params.count }}", "per_file": 5}
    assert tasks["fetch"]["call"]["output_uri"] == f"{data}/quotes"  # ${GENIUS_EXAMPLE_DATA:-...}
    assert tasks["count"]["call"]["input_uri"] == "{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}"
    assert tasks["long_words"]["expand"] == [
        {"top": "{{ params.top }}", "min_length": 4},
        {"top": "{{ params.top }}", "min_length": 6},
    ]


def test_example_runs_with_dag_test_and_records_every_task(run_python, genius_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    child = LOAD_DAG_FILE + textwrap.dedent(
        """
        _, dag = load(sys.argv[1], sys.argv[2])
        run = dag.test(run_conf={"count": 7, "top": 2})
        tis = sorted((ti.task_id, ti.map_index, str(ti.state)) for ti in run.get_task_instances())
        print("GENIUSFILE_RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id, "tis": tis}))
        """
    )
    got = result_of(run_python(child, genius_env, args=[str(LOADER), DAG_ID]))
    assert got["state"] == "success", got
    assert got["tis"] == [
        ["count", -1, "success"],
        ["fetch", -1, "success"],
        ["long_words", 0, "success"],
        ["long_words", 1, "success"],
    ]
    with open_state(genius_env["AIRFLOW__GENIUS__STATE_URI"]) as state:
        records = {
            (task_id, index): state.require_run(RunKey(DAG_ID, task_id, got["run_id"], index))
            for task_id, index in [("fetch", -1), ("count", -1), ("long_words", 0), ("long_words", 1)]
        }
    assert all(r.status is Status.SUCCESS for r in records.values()), records
    fetch, count = records[("fetch", -1)], records[("count", -1)]
    assert fetch.result["records"] == 7  # {{ params.count }} rendered from run_conf, as an int
    assert count.result["records"] == 7 and len(count.result["top"]) == 2
    # The bolts read exactly the partition the spout committed (its genius_output XCom).
    assert count.info["input"] == fetch.metrics["output_location"]
    assert records[("long_words", 0)].info["input"] == fetch.metrics["output_location"]
    for index, min_length in [(0, 4), (1, 6)]:
        top = records[("long_words", index)].result["top"]
        assert len(top) == 2 and all(len(word) >= min_length for word in top)


def test_state_connection_and_texts_kept_as_written(
    run_python, genius_env: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(LOADER, folder)
    (folder / "echo.genius.yaml").write_text(
        textwrap.dedent(
            """\
            version: 1
            dag: {id: geniusfile_echo, params: {n: 3}}
            defaults: {state: {conn_id: genius_echo_state}}
            spouts:
              echo:
                class: airflow_genius.examples.tasks:Echo
                method: say
                kwargs:
                  message: {text: "123", flag: "True", items: "[1, 2]", n: "{{ params.n }}", plain: hello}
            """
        )
    )
    conn = {"conn_type": "genius_sqlite", "extra": {"path": str(tmp_path / "conn-state.db")}}
    env = {
        **genius_env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(folder),
        "AIRFLOW_CONN_GENIUS_ECHO_STATE": json.dumps(conn),
    }
    child = LOAD_DAG_FILE + textwrap.dedent(
        """
        _, dag = load(sys.argv[1], sys.argv[2])
        run = dag.test(run_conf={"n": 4})
        print("GENIUSFILE_RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id}))
        """
    )
    got = result_of(run_python(child, env, args=[str(folder / LOADER.name), "geniusfile_echo"]))
    assert got["state"] == "success", got
    # The run record is in the connection's store, not in [genius] state_uri.
    with open_state(f"sqlite:///{tmp_path}/conn-state.db") as state:
        record = state.require_run(RunKey("geniusfile_echo", "echo", got["run_id"]))
    # Quoted texts stay texts despite render_template_as_native_obj; templates still render natively.
    assert record.result == {"text": "123", "flag": "True", "items": "[1, 2]", "n": 4, "plain": "hello"}


def test_load_geniusfiles_reports_bad_files_or_skips_them(
    run_python, genius_env: dict[str, str], tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    good = (EXAMPLES / "quotes.genius.yaml").read_text()
    (tmp_path / "a.genius.yaml").write_text(good)
    (tmp_path / "b.genius.yaml").write_text(good.replace("input: fetch", "input: fech", 1))
    (tmp_path / "c.genius.yaml").write_text(good)  # the same dag id again
    (tmp_path / "notes.yaml").write_text("not: a geniusfile")  # ignored: wrong suffix
    child = textwrap.dedent(
        """
        import json, sys
        from airflow_genius.dag_factory import load_geniusfiles
        try:
            load_geniusfiles(sys.argv[1], {})
        except Exception as exc:
            raised = f"{type(exc).__name__}: {exc}"
        registered = {}
        dags = load_geniusfiles(sys.argv[1], registered, on_error="skip")
        print("GENIUSFILE_RESULT " + json.dumps({"raised": raised, "registered": sorted(registered),
                                                 "returned": [d.dag_id for d in dags]}))
        """
    )
    got = result_of(run_python(child, genius_env, args=[str(tmp_path)]))
    assert got["raised"] == (
        f"GeniusfileError: geniusfiles: 2 invalid Geniusfile(s) in {tmp_path}: "
        f"{tmp_path}/b.genius.yaml: bolts.count.input: unknown upstream 'fech' (known: fetch, long_words) | "
        f"{tmp_path}/c.genius.yaml: dag.id: '{DAG_ID}' is already used by a.genius.yaml"
    )
    assert got["registered"] == [DAG_ID] and got["returned"] == [DAG_ID]


def airflow_cli(env: dict[str, str], *args: str, exit_code: int = 0) -> Any:
    done = subprocess.run(
        [AIRFLOW, *args, "-o", "json"], capture_output=True, text=True, env=env, timeout=180
    )
    assert done.returncode == exit_code, done.stdout[-3000:] + done.stderr[-3000:]
    # Warnings (e.g. graphviz) go to the log; the JSON is the last line of stdout.
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_dag_processor_imports_the_examples_and_shows_bad_geniusfiles(  # type: ignore[no-untyped-def]
    genius_env: dict[str, str], tmp_path: Path
) -> None:
    errors = airflow_cli(genius_env, "dags", "list-import-errors", "--local")
    assert [e for e in errors if LOADER.name in e["filepath"]] == []
    dags = {d["dag_id"]: d for d in airflow_cli(genius_env, "dags", "list", "--local")}
    assert dags[DAG_ID]["fileloc"] == str(LOADER)

    # A broken Geniusfile is the import error of the loader file, with the one-line message.
    folder = tmp_path / "dags"
    folder.mkdir()
    shutil.copy(LOADER, folder)
    # slurm is a runner, but its operators need an ssh_conn_id: checked against their signature
    (folder / "bad.genius.yaml").write_text(
        (EXAMPLES / "quotes.genius.yaml").read_text().replace("runner: local", "runner: slurm", 1)
    )
    errors = airflow_cli(
        {**genius_env, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)},
        "dags",
        "list-import-errors",
        "-l",
        exit_code=1,
    )
    (error,) = errors
    assert error["filepath"].endswith(LOADER.name)
    assert (
        f"{folder}/bad.genius.yaml: spouts.fetch.platform: runner 'slurm' needs 'ssh_conn_id' "
        "(set runners.slurm.ssh_conn_id or platform.ssh_conn_id)" in error["error"]
    )


# ---------------------------------------------------------------------- runners, services, task settings
RUNNERS_FILE = textwrap.dedent(
    """\
    version: 1
    dag: {id: every_runner, params: {top: 3}}
    runners:
      docker: {image: localhost/airflow-genius-runtime:dev, network_mode: host}
      kubernetes: {image: localhost/airflow-genius-runtime:dev, namespace: genius}
      ecs: {cluster: c1, task_definition: td1, container_name: genius}
      batch: {job_queue: q1, job_definition: jd1}
      slurm: {ssh_conn_id: slurm_default, partition: debug}
    defaults:
      runner: docker
      retries: 2
      timeout_seconds: 600
      pool: genius_pool
      queue: gpu
      operator: {priority_weight: 7, owner: data}
    spouts:
      on_local:
        class: airflow_genius.examples.tasks:QuoteSpout
        method: fetch
        runner: local
        output: /data/quotes
        operator: {owner: ingest}
      on_docker:
        class: airflow_genius.examples.tasks:QuoteSpout
        method: fetch
        platform: {network_mode: bridge}
        pool: docker_pool
        timeout_seconds: 30
    bolts:
      on_kubernetes: {class: "airflow_genius.examples.tasks:WordCount", method: count, input: on_local, runner: kubernetes}
      on_ecs: {class: "airflow_genius.examples.tasks:WordCount", method: count, input: on_local, runner: ecs}
      on_batch: {class: "airflow_genius.examples.tasks:WordCount", method: count, input: /data/in, runner: batch}
      on_slurm:
        class: airflow_genius.examples.tasks:WordCount
        method: count
        input: on_local
        runner: slurm
        platform: {partition: gpu}
        queue: slurm_queue
    """
)

SERVICES_FILE = textwrap.dedent(
    """\
    version: 1
    dag: {id: services, params: {times: 2}}
    runners:
      docker: {image: localhost/airflow-genius-runtime:dev, network_mode: host, stop_timeout: 5}
      kubernetes: {image: localhost/airflow-genius-runtime:dev, namespace: genius}
    defaults: {runner: docker, pool: svc_pool, retries: 1, operator: {priority_weight: 3}}
    spouts:
      fetch: {class: "airflow_genius.examples.tasks:QuoteSpout", method: fetch, output: /data/quotes}
    bolts:
      ask:
        class: airflow_genius.examples.tasks:ServiceClient
        method: call
        input: fetch
        service: echo
        map: {kwargs: [{times: "{{ params.times }}"}, {times: 1}]}
      ask_again: {class: "airflow_genius.examples.tasks:ServiceClient", method: call, input: fetch, service: echo}
      on_pod: {class: "airflow_genius.examples.tasks:ServiceClient", method: call, input: fetch, service: pod_echo, runner: kubernetes}
    services:
      echo:
        class: airflow_genius.examples.tasks:EchoService
        method: serve
        port: 8001
        health_path: /health
        ready_timeout_seconds: 120
        start_timeout_seconds: 60
        timeout_seconds: 900
        queue: services
        operator: {trigger_rule: all_done}
      pod_echo:
        class: airflow_genius.examples.tasks:EchoService
        method: serve
        runner: kubernetes
        platform: {grace_period_seconds: 5}
      idle: {class: "airflow_genius.examples.tasks:EchoService", method: serve, after: fetch}
    """
)

# Renders a Geniusfile (argv[1]) and prints what each task became.
DESCRIBE_DAG = """
import json, sys
from airflow_genius.dag_factory import dag_from_geniusfile

def describe(task, names):
    mapped = type(task).__name__ == "MappedOperator"
    kwargs = task.partial_kwargs if mapped else vars(task)
    got = {
        "operator": task.operator_name if mapped else type(task).__name__,
        "upstream": sorted(task.upstream_task_ids),
        "downstream": sorted(task.downstream_task_ids),
        "teardown": task.is_teardown,
    }
    for name in names:
        value = kwargs.get(name, getattr(task, name, None))
        got[name] = value if value is None or isinstance(value, (str, int, float, bool, list, dict)) else str(value)
    return got
"""

ATTRIBUTES = [
    "retries", "pool", "queue", "execution_timeout", "priority_weight", "owner", "trigger_rule", "image",
    "network_mode", "namespace", "cluster", "task_definition", "job_queue", "ssh_conn_id", "sbatch_options",
    "service", "genius_call", "genius_service", "start_timeout", "stop_timeout", "grace_period_seconds",
]  # fmt: skip


def render(run_python, env: dict[str, str], tmp_path: Path, text: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    path = tmp_path / "pipeline.genius.yaml"
    path.write_text(text)
    child = DESCRIBE_DAG + textwrap.dedent(
        f"""
        dag = dag_from_geniusfile(sys.argv[1])
        print("GENIUSFILE_RESULT " + json.dumps({{t.task_id: describe(t, {ATTRIBUTES!r}) for t in dag.tasks}}))
        """
    )
    return result_of(run_python(child, env, args=[str(path)]))  # type: ignore[no-any-return]


def test_every_runner_renders_its_operator_with_platform_and_task_settings(  # type: ignore[no-untyped-def]
    run_python, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    tasks = render(run_python, airflow_env, tmp_path, RUNNERS_FILE)
    assert {name: t["operator"] for name, t in tasks.items()} == {
        "on_local": "GeniusSpoutOperator",
        "on_docker": "GeniusDockerSpoutOperator",
        "on_kubernetes": "GeniusKubernetesBoltOperator",
        "on_ecs": "GeniusEcsBoltOperator",
        "on_batch": "GeniusBatchBoltOperator",
        "on_slurm": "GeniusSlurmBoltOperator",
    }
    # the runner's block, with the step's platform merged over it
    docker = tasks["on_docker"]
    assert (docker["image"], docker["network_mode"]) == ("localhost/airflow-genius-runtime:dev", "bridge")
    assert tasks["on_kubernetes"]["namespace"] == "genius"
    assert (tasks["on_ecs"]["cluster"], tasks["on_ecs"]["task_definition"]) == ("c1", "td1")
    assert tasks["on_batch"]["job_queue"] == "q1"
    assert tasks["on_slurm"]["ssh_conn_id"] == "slurm_default"
    assert tasks["on_slurm"]["sbatch_options"]["partition"] == "gpu"
    # Airflow task settings: the step's own, else defaults; operator overrides merged key by key
    assert (docker["pool"], docker["execution_timeout"], docker["queue"]) == ("docker_pool", "0:00:30", "gpu")
    assert (tasks["on_slurm"]["queue"], tasks["on_slurm"]["execution_timeout"]) == ("slurm_queue", "0:10:00")
    assert all(t["retries"] == 2 and t["priority_weight"] == 7 for t in tasks.values())
    assert tasks["on_local"]["owner"] == "ingest" and tasks["on_ecs"]["owner"] == "data"
    # inputs wired through XCom on every runner
    template = "{{ ti.xcom_pull(task_ids='on_local', key='genius_output') }}"
    for name in ("on_kubernetes", "on_ecs", "on_slurm"):
        assert tasks[name]["genius_call"]["input_uri"] == template and tasks[name]["upstream"] == ["on_local"]
    assert tasks["on_batch"]["genius_call"]["input_uri"] == "/data/in"


def test_services_render_start_clients_and_a_teardown_stop(  # type: ignore[no-untyped-def]
    run_python, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    tasks = render(run_python, airflow_env, tmp_path, SERVICES_FILE)
    echo, stop = tasks["echo"], tasks["echo_stop"]
    assert (echo["operator"], stop["operator"]) == (
        "GeniusDockerServiceOperator",
        "GeniusDockerServiceStopOperator",
    )
    assert echo["genius_service"] == {
        "service_port": 8001,
        "health_path": "/health",
        "ready_timeout": 120.0,
        "service_name": None,
    }
    assert echo["start_timeout"] == 60.0 and echo["execution_timeout"] == "0:15:00"
    assert (echo["queue"], echo["pool"], echo["trigger_rule"]) == ("services", "svc_pool", "all_done")
    assert echo["image"] == "localhost/airflow-genius-runtime:dev" and echo["stop_timeout"] == 5
    # clients: after the start task, with service=<its task id>; mapped clients too
    assert tasks["ask"]["operator"] == "GeniusDockerBoltOperator" and tasks["ask"]["upstream"] == [
        "echo",
        "fetch",
    ]
    assert tasks["ask"]["service"] == "echo" and tasks["ask_again"]["service"] == "echo"
    # the stop: a teardown of the start, downstream of every client; the platform arguments it takes, the
    # service's pool/queue/retries, but not its operator overrides (a teardown's trigger rule is Airflow's)
    assert stop["teardown"] is True and not echo["teardown"]
    assert stop["upstream"] == ["ask", "ask_again", "echo"] and stop["downstream"] == []
    assert (stop["service"], stop["stop_timeout"], stop["network_mode"]) == ("echo", 5, "host")
    assert (stop["pool"], stop["queue"], stop["retries"]) == ("svc_pool", "services", 1)
    assert stop["trigger_rule"] == "all_done_setup_success" and stop["priority_weight"] == 1
    # Kubernetes: the stop takes the namespace but not the image; grace_period_seconds is the stop's own
    pod, pod_stop = tasks["pod_echo"], tasks["pod_echo_stop"]
    assert (pod["operator"], pod_stop["operator"]) == (
        "GeniusKubernetesServiceOperator",
        "GeniusKubernetesServiceStopOperator",
    )
    assert pod_stop["namespace"] == "genius" and pod_stop["grace_period_seconds"] == 5
    assert pod_stop["upstream"] == ["on_pod", "pod_echo"] and tasks["on_pod"]["service"] == "pod_echo"
    # a service without clients: started, then stopped
    assert tasks["idle"]["upstream"] == ["fetch"] and tasks["idle_stop"]["upstream"] == ["idle"]


def test_local_services_use_the_local_service_operators(  # type: ignore[no-untyped-def]
    run_python, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    text = SERVICES_FILE.replace("defaults: {runner: docker,", "defaults: {runner: local,")
    text = text.replace("runner: kubernetes", "runner: local").replace(
        "platform: {grace_period_seconds: 5}", ""
    )
    tasks = render(run_python, airflow_env, tmp_path, text)
    assert (tasks["echo"]["operator"], tasks["echo_stop"]["operator"]) == (
        "GeniusLocalServiceOperator",
        "GeniusLocalServiceStopOperator",
    )
    assert tasks["echo_stop"]["teardown"] is True and tasks["echo_stop"]["service"] == "echo"


PLATFORM_ERRORS = [
    (
        (
            "kubernetes: {image: localhost/airflow-genius-runtime:dev, namespace: genius}",
            "kubernetes: {namespace: genius}",
        ),
        # optional in KubernetesPodOperator's signature, but a genius pod cannot start without one
        "bolts.on_kubernetes.platform: runner 'kubernetes' needs 'image' "
        "(set runners.kubernetes.image or platform.image)",
    ),
    (
        ("image: localhost/airflow-genius-runtime:dev, namespace: genius", "image: '', namespace: genius"),
        "bolts.on_kubernetes.platform: runner 'kubernetes' needs 'image' "
        "(set runners.kubernetes.image or platform.image)",
    ),
    (
        ("slurm: {ssh_conn_id: slurm_default, partition: debug}", "slurm: {partition: debug}"),
        "bolts.on_slurm.platform: runner 'slurm' needs 'ssh_conn_id' "
        "(set runners.slurm.ssh_conn_id or platform.ssh_conn_id)",
    ),
    (
        ("network_mode: bridge", "network_mod: bridge"),
        "spouts.on_docker.platform.network_mod: unknown argument of GeniusDockerSpoutOperator; "
        "did you mean 'network_mode'?",
    ),
    (
        ("jd1}", "jd1, job_queeu: q2}"),
        "runners.batch.job_queeu: unknown argument of any batch operator; did you mean 'job_queue'?",
    ),
    (
        ("ecs: {cluster: c1, ", "ecs: {"),
        "bolts.on_ecs.platform: runner 'ecs' needs 'cluster' (set runners.ecs.cluster or platform.cluster)",
    ),
    (
        ("batch: {job_queue: q1, job_definition: jd1}", "batch: {job_queue: q1}"),
        "bolts.on_batch.platform: runner 'batch' needs 'job_definition' "
        "(set runners.batch.job_definition or platform.job_definition)",
    ),
    (
        ("platform: {partition: gpu}", "platform: {owner: me}"),
        "bolts.on_slurm.platform.owner: an Airflow task argument, not a platform one; set it under 'operator'",
    ),
    (
        ("{priority_weight: 7, owner: data}", "{priority_wieght: 7}"),
        "spouts.on_local.operator.priority_wieght: not an argument of BaseOperator; "
        "did you mean 'priority_weight'?",
    ),
    (
        ("operator: {owner: ingest}", "operator: {network_mode: host}"),
        "spouts.on_local.operator.network_mode: not an argument of BaseOperator",
    ),
    (
        ("pool: docker_pool", "operator: {network_mode: host}"),
        "spouts.on_docker.operator.network_mode: an argument of GeniusDockerSpoutOperator; "
        "set it under 'platform'",
    ),
]


def test_platform_and_operator_arguments_are_checked_against_signatures(  # type: ignore[no-untyped-def]
    run_python, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    texts = []
    for (old, new), _ in PLATFORM_ERRORS:
        assert old in RUNNERS_FILE, old
        texts.append(RUNNERS_FILE.replace(old, new, 1))
    services = SERVICES_FILE.replace("stop_timeout: 5}", "stop_timeout: 5}\n  ecs: {task_definition: td}")
    texts.append(
        services.replace("    runner: kubernetes\n    platform: {grace_period_seconds: 5}", "    runner: ecs")
    )
    texts.append(SERVICES_FILE.replace("grace_period_seconds: 5", "grace_seconds: 5"))
    # a pod template may carry the image instead
    template = "{spec: {containers: [{name: base, image: localhost/airflow-genius-runtime:dev}]}}"
    texts.append(
        RUNNERS_FILE.replace(
            "kubernetes: {image: localhost/airflow-genius-runtime:dev,",
            f"kubernetes: {{pod_template_dict: {template},",
        )
    )
    child = textwrap.dedent(
        """
        import json, sys
        from airflow_genius.core.geniusfile import GeniusfileError, parse_geniusfile
        from airflow_genius.dag_factory import build_dag, check_platform_arguments
        errors = []
        for text in json.loads(sys.argv[1]):
            gf = parse_geniusfile(text, env={})
            got = []
            for step in (check_platform_arguments, build_dag):  # the same line from both
                try:
                    step(gf)
                    got.append(None)
                except GeniusfileError as exc:
                    got.append(str(exc))
            errors.append(got)
        print("GENIUSFILE_RESULT " + json.dumps(errors))
        """
    )
    got = result_of(run_python(child, airflow_env, args=[json.dumps(texts)]))
    expected = [message for _, message in PLATFORM_ERRORS] + [
        "services.pod_echo.platform: runner 'ecs' needs 'cluster' "
        "(set runners.ecs.cluster or platform.cluster)",
        "services.pod_echo.platform.grace_seconds: unknown argument of GeniusKubernetesServiceOperator and "
        "GeniusKubernetesServiceStopOperator; did you mean 'grace_period_seconds'?",
        None,
    ]
    assert got == [[message, message] for message in expected]


def test_operators_cover_every_runner_and_kind() -> None:
    pytest.importorskip("airflow.sdk")
    from airflow_genius.core.geniusfile import RUNNERS, SERVICE_RUNNERS
    from airflow_genius.dag_factory import OPERATORS

    expected = {(runner, kind) for runner in RUNNERS for kind in ("spout", "bolt")}
    expected |= {(runner, kind) for runner in SERVICE_RUNNERS for kind in ("service", "service_stop")}
    assert set(OPERATORS) == expected


# A hand-written DAG file with Geniusfiles as task groups (paths from the environment: dag.test()
# syncs the DAGs folder, which imports the file again).
TASK_GROUP_DAG = """
import os
from airflow.sdk import DAG, Param
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow_genius.dag_factory import task_group_from_geniusfile

with DAG("host", schedule=None, render_template_as_native_obj=True, params={"top": Param(2, type="integer")}) as dag:
    prepare = EmptyOperator(task_id="prepare")
    group = task_group_from_geniusfile(os.environ["GENIUS_TEST_QUOTES"])
    prepare >> group
    if os.environ.get("GENIUS_TEST_SERVICES"):
        task_group_from_geniusfile(os.environ["GENIUS_TEST_SERVICES"], group_id="svc")
"""

DESCRIBE_HOST = """
import json, os, sys
from airflow.sdk import DAG
from airflow_genius.core.geniusfile import GeniusfileError
from airflow_genius.dag_factory import task_group_from_geniusfile

module, dag = load(sys.argv[1], "dag")
path = os.environ["GENIUS_TEST_QUOTES"]
refused = []
try:
    with DAG("text_host", schedule=None):
        task_group_from_geniusfile(path)
except GeniusfileError as exc:
    refused.append(str(exc))
try:
    task_group_from_geniusfile(path)
except GeniusfileError as exc:
    refused.append(str(exc))
tasks = {t.task_id: {"upstream": sorted(t.upstream_task_ids), "call": getattr(t, "genius_call", None),
                     "service": getattr(t, "service", None)}
         for t in dag.tasks if type(t).__name__ != "MappedOperator"}
result = {"group": module.group.group_id, "tasks": tasks, "refused": refused, "params": dag.params.dump()}
if len(sys.argv) > 2:
    run = dag.test(run_conf={"count": 4})
    result["run"] = [str(run.state), run.run_id]
print("GENIUSFILE_RESULT " + json.dumps(result))
"""


def test_task_group_prefixes_task_ids_and_xcom_templates_and_runs(  # type: ignore[no-untyped-def]
    run_python, genius_env: dict[str, str], tmp_path: Path
) -> None:
    state = tmp_path / "uri-state.db"
    quotes = (EXAMPLES / "quotes.genius.yaml").read_text()
    # state as a URI (no connection): rendered as state_uri, and the operators use it
    quotes = quotes.replace(
        "  # state: {conn_id: genius_redis_default}", f"  state: {{uri: 'sqlite:///{state}'}}"
    )
    assert "state: {uri:" in quotes
    (tmp_path / "quotes.genius.yaml").write_text(quotes)
    (tmp_path / "services.genius.yaml").write_text(SERVICES_FILE)
    quotes_path, services_path = str(tmp_path / "quotes.genius.yaml"), str(tmp_path / "services.genius.yaml")
    dags = tmp_path / "dags"
    dags.mkdir()
    host = dags / "host_dag.py"
    host.write_text(TASK_GROUP_DAG)
    env = {**genius_env, "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "GENIUS_TEST_QUOTES": quotes_path}
    child = LOAD_DAG_FILE + DESCRIBE_HOST
    got = result_of(run_python(child, {**env, "GENIUS_TEST_SERVICES": services_path}, args=[str(host)]))
    tasks = got["tasks"]
    group = "genius_quotes_geniusfile"  # the file's dag.id
    assert got["group"] == group
    assert {f"{group}.fetch", f"{group}.count", "prepare", "svc.echo", "svc.echo_stop"} <= set(tasks)
    assert tasks[f"{group}.fetch"]["upstream"] == ["prepare"]  # prepare >> group
    assert tasks[f"{group}.count"]["call"]["input_uri"] == (
        f"{{{{ ti.xcom_pull(task_ids='{group}.fetch', key='genius_output') }}}}"
    )
    assert tasks["svc.ask_again"]["service"] == "svc.echo" and tasks["svc.echo_stop"]["service"] == "svc.echo"
    assert tasks["svc.echo_stop"]["upstream"] == ["svc.ask", "svc.ask_again", "svc.echo"]
    # the host's param definition wins; the file's other params are added
    assert got["params"] == {"top": 2, "count": 20, "times": 2}
    assert got["refused"] == [
        f"{tmp_path}/quotes.genius.yaml: dag: the DAG 'text_host' renders templates as text, but this file's "
        "arguments use templates that must keep their types; create it with render_template_as_native_obj=True",
        f"{tmp_path}/quotes.genius.yaml: dag: a task group is built inside 'with DAG(...)'",
    ]
    # a real run of the group inside the host DAG (local runner; no services)
    got = result_of(run_python(child, env, args=[str(host), "run"]))
    assert got["run"][0] == "success", got
    with open_state(f"sqlite:///{state}") as store:
        fetch = store.require_run(RunKey("host", f"{group}.fetch", got["run"][1]))
        count = store.require_run(RunKey("host", f"{group}.count", got["run"][1]))
    assert fetch.result["records"] == 4
    assert count.info["input"] == fetch.metrics["output_location"]  # the prefixed XCom template worked


def test_genius_dag_validate_checks_platform_arguments_where_airflow_is_installed(  # type: ignore[no-untyped-def]
    airflow_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "good.genius.yaml").write_text(RUNNERS_FILE)
    (tmp_path / "typo.genius.yaml").write_text(
        RUNNERS_FILE.replace("dag: {id: every_runner", "dag: {id: typo").replace(
            "network_mode: bridge", "net: x"
        )
    )
    done = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "genius"),
            "dag",
            "validate",
            "--no-import",
            "good.genius.yaml",
            "typo.genius.yaml",
        ],
        capture_output=True,
        text=True,
        env=airflow_env,
        cwd=tmp_path,
        timeout=180,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "OK good.genius.yaml: 2 spouts, 4 bolts",
        "ERROR typo.genius.yaml: spouts.on_docker.platform.net: unknown argument of GeniusDockerSpoutOperator",
    ]
    assert "not run" not in done.stderr  # the entry point's check ran


# A producer and a consumer Geniusfile: the consumer's schedule names the producer's output as written
# in several forms, a templated output's alias and a training step's model alias.
SCHEDULED_ON_ASSETS = """
import json
from airflow_genius.core.geniusfile import parse_geniusfile
from airflow_genius.dag_factory import build_dag

STEP = "{class: 'airflow_genius.examples.tasks:QuoteSpout', method: fetch, output: %s}"
producer = build_dag(parse_geniusfile(
    "version: 1\\ndag: {id: up}\\nspouts:\\n  fetch: " + STEP % "/data/quotes/" + "\\n"
    "  dated: " + STEP % "'/data/{{ ds }}'" + "\\n"
    "bolts:\\n"
    "  train: {class: 'airflow_genius.examples.tasks:WordCount', method: count, input: /data/quotes,\\n"
    "          output: /data/fit, model: {uri: 's3://ml/models'}}\\n"
))
consumer = build_dag(parse_geniusfile(
    "version: 1\\n"
    "dag:\\n"
    "  id: down\\n"
    "  schedule: {any: ['file:///data/quotes', 'genius-model:up.train',\\n"
    "             {all: ['/data/quotes/', 'genius-output:up.dated',\\n"
    "                   'redis://redis/0?stream=ev&group=g&batch=5']}]}\\n"
    "bolts:\\n"
    "  count: {class: 'airflow_genius.examples.tasks:WordCount', method: count, input: /data/quotes}\\n"
))
listed = build_dag(parse_geniusfile(
    "version: 1\\ndag: {id: listed, schedule: [/data/quotes]}\\nspouts:\\n  fetch: " + STEP % "/data/x" + "\\n"
))

def tree(condition):
    if hasattr(condition, "objects"):
        return [type(condition).__name__, [tree(item) for item in condition.objects]]
    return [type(condition).__name__, condition.name, getattr(condition, "uri", None)]

outlets = {t.task_id: [tree(o) for o in t.outlets] for t in producer.tasks}
print("GENIUSFILE_RESULT " + json.dumps({
    "outlets": outlets,
    "consumer": tree(consumer.timetable.asset_condition),
    "listed": tree(listed.timetable.asset_condition),
    "timetable": type(consumer.timetable).__name__,
}))
"""


def test_schedule_on_assets_names_the_producers_outlets(  # type: ignore[no-untyped-def]
    run_python, airflow_env: dict[str, str]
) -> None:
    got = result_of(run_python(SCHEDULED_ON_ASSETS, airflow_env))
    quotes = ["Asset", "file:///data/quotes", "file:///data/quotes"]
    fit = ["Asset", "file:///data/fit", "file:///data/fit"]
    assert got["outlets"] == {
        "fetch": [quotes],
        "dated": [["AssetAlias", "genius-output:up.dated", None]],
        "train": [fit, ["AssetAlias", "genius-model:up.train", None]],
    }
    # every form of the producer's root is its outlet Asset (name and URI), the alias is its alias
    stream = ["Asset", "redis://redis:6379/0?stream=ev", "redis://redis:6379/0?stream=ev"]
    assert got["consumer"] == [
        "AssetAny",
        [quotes, got["outlets"]["train"][1], ["AssetAll", [quotes, got["outlets"]["dated"][0], stream]]],
    ]
    assert got["listed"] == ["AssetAll", [quotes]]
    assert got["timetable"] == "AssetTriggeredTimetable"
