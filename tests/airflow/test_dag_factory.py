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
    assert got["dag_ids"] == [DAG_ID]
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
    (folder / "bad.genius.yaml").write_text(
        (EXAMPLES / "quotes.genius.yaml").read_text().replace("runner: local", "runner: slurm")
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
        f"{folder}/bad.genius.yaml: defaults.runner: runner 'slurm' is not available yet (available: local)"
        in error["error"]
    )
