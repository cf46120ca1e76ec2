"""GeniusKubernetesOperator in real Airflow ``dag.test()`` runs against the Pod API server, whose pods
run as podman containers of the runtime image (tests/support/pod_api)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import DAG_TEST, dag_test
from stream_windows import check_windows, run_twice, stream_env, stream_prefix, xcom_of
from support.pod_api import POD_NAME_LABEL, PodApiServer

from airflow_genius.core import RunKey, Status, open_state

pytestmark = [pytest.mark.containers, pytest.mark.airflow, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "dags_examples"
CASES = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


def tis_by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in result["tis"]}


def pods_of(
    server: PodApiServer, dag_id: str, task_id: str, run_id: str | None = None
) -> list[dict[str, Any]]:
    """Every pod the server ever created for this task instance (the run id as the TaskSpec has it:
    KPO's run_id label is sanitised)."""
    return [
        pod
        for pod in server.cluster.created_pods
        if pod["metadata"]["labels"].get("dag_id") == dag_id
        and pod["metadata"]["labels"].get("task_id") == task_id
        and (run_id is None or spec_of(pod)["run"]["run_id"] == run_id)
    ]


def spec_of(pod: dict[str, Any]) -> dict[str, Any]:
    """The TaskSpec a pod was given (its GENIUS_TASK_SPEC environment variable)."""
    (env,) = [env for env in pod["spec"]["containers"][0]["env"] if env["name"] == "GENIUS_TASK_SPEC"]
    return json.loads(env["value"])  # type: ignore[no-any-return]


def wait_for_running_pod(
    server: PodApiServer, dag_id: str, task_id: str, *, created_after: int, timeout: float = 120
) -> tuple[str, str]:
    """(namespace, name) of the task's pod once its container runs, among the pods created after the
    first ``created_after`` (so a pod another test left behind never matches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = {
            (pod["metadata"]["namespace"], pod["metadata"]["name"])
            for pod in server.cluster.created_pods[created_after:]
            if pod["metadata"]["labels"].get("dag_id") == dag_id
            and pod["metadata"]["labels"].get("task_id") == task_id
        }
        for pod in server.cluster.list_pods(None):
            if pod.key in names and pod.status["phase"] == "Running":
                return pod.key
        time.sleep(0.3)
    raise AssertionError(f"no running pod of {dag_id}.{task_id} within {timeout}s")


def wait_until_gone(server: PodApiServer, key: tuple[str, str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if key not in server.cluster.pods and not server.containers(**{POD_NAME_LABEL: key[1]}):
            return
        time.sleep(0.3)
    raise AssertionError(f"pod {key} or its container still exists {timeout}s later")


def test_pipeline_in_pods_worker_and_deferred(
    run_python, k8s_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str], shared_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(
        run_python,
        k8s_env,
        EXAMPLES,
        "genius_kubernetes_pipeline",
        {"count": 12, "top": 3},
        file="genius_kubernetes",
    )
    assert result["state"] == "success", output[-6000:]
    tis = tis_by_id(result)
    assert tis["fetch"]["xcom"]["records"] == 12  # spout: waited in the worker
    assert tis["count"]["xcom"]["records"] == 12  # bolt: deferred, waited in the (inline) triggerer
    assert len(tis["count"]["xcom"]["top"]) == 3
    # the bolt read, in its pod, the partition the spout's pod wrote; both went through the hostPath
    (counts,) = (shared_dir / "kubernetes" / "counts").rglob("_SUCCESS")
    assert json.loads((counts.parent / "top_words.json").read_text()) == tis["count"]["xcom"]["top"]
    with open_state(pg_state["uri"]) as state:
        for task_id in ("fetch", "count"):
            record = state.require_run(RunKey("genius_kubernetes_pipeline", task_id, result["run_id"]))
            assert record.status is Status.SUCCESS and record.result == tis[task_id]["xcom"]
    # one pod per task, created with the image's ENTRYPOINT kept (no command) and no xcom sidecar
    for task_id in ("fetch", "count"):
        (pod,) = pods_of(pod_api, "genius_kubernetes_pipeline", task_id, result["run_id"])
        (container,) = pod["spec"]["containers"]
        # `namespace` is KPO's (the pods'); the genius task-state namespace stays its own default
        assert (
            pod["metadata"]["namespace"] == "genius-examples"
            and spec_of(pod)["state"]["namespace"] == "default"
        )
        assert not container.get("command") and container["args"] == ["run", "--spec-env", "GENIUS_TASK_SPEC"]
        assert (pod["metadata"]["namespace"], pod["metadata"]["name"]) not in pod_api.cluster.pods  # deleted
    # the pods' own log lines reached the task log, in both modes (the runtime logs the run it starts)
    assert "[base]" in output and "[base] logs:" in output, output[-4000:]
    assert "QuoteSpout.fetch" in output and "WordCount.count" in output


def test_failures_fail_the_task_with_the_remote_traceback(
    run_python, k8s_env: dict[str, str], pod_api: PodApiServer
) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, k8s_env, CASES, "genius_k8s_failures", file="genius_k8s_cases")
    tis = tis_by_id(result)
    assert {task: ti["state"] for task, ti in tis.items()} == dict.fromkeys(
        ("raises", "raises_deferred", "exits_3"), "failed"
    ), output[-6000:]
    # a task that raised, in both modes: its own error type, message and traceback, from the run record
    assert output.count("RuntimeError: the remote task broke") >= 2, output[-6000:]
    assert "Traceback (most recent call last)" in output and "in fail" in output
    # a process that died before recording anything: the platform's word (the pod failed), the record's state
    assert "returned a failure" in output and "(run record: RUNNING)" in output
    (pod,) = pods_of(pod_api, "genius_k8s_failures", "exits_3", result["run_id"])
    exits = [
        launched for launched in pod_api.cluster.launched if launched["pod"][1] == pod["metadata"]["name"]
    ]
    assert len(exits) == 1  # it really ran (exit code 3 came from the container, see the pod status)


def test_no_secret_in_pod_spec_argv_or_log(
    run_python, k8s_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    password = pg_state["password"]
    result, output = dag_test(run_python, k8s_env, CASES, "genius_k8s_secret", file="genius_k8s_cases")
    tis = tis_by_id(result)
    assert {task: ti["state"] for task, ti in tis.items()} == {"say": "success", "say_deferred": "success"}, (
        output[-6000:]
    )
    assert tis["say"]["xcom"] == tis["say_deferred"]["xcom"] == "hello from the pod"
    assert password not in output  # the task logs (pod spec dumps, pod logs, KPO's messages)
    for task_id in ("say", "say_deferred"):
        (pod,) = pods_of(pod_api, "genius_k8s_secret", task_id, result["run_id"])
        assert password not in json.dumps(pod)  # the pod object as the apiserver stored it
        (ref,) = [
            env for env in pod["spec"]["containers"][0]["env"] if env["name"] == "GENIUS_STATE_PASSWORD"
        ]
        secret_name = ref["valueFrom"]["secretKeyRef"]["name"]
        assert ref == {
            "name": "GENIUS_STATE_PASSWORD",
            "valueFrom": {"secretKeyRef": {"key": "GENIUS_STATE_PASSWORD", "name": secret_name}},
        }
        namespace = pod["metadata"]["namespace"]
        assert (namespace, secret_name) in pod_api.cluster.created_secrets
        assert (namespace, secret_name) not in pod_api.cluster.secrets  # deleted once it had served
        # podman's own view of the container: the password is in its environment (from the Secret),
        # never in its argv
        (launched,) = [
            item for item in pod_api.cluster.launched if item["pod"] == (namespace, pod["metadata"]["name"])
        ]
        inspect = launched["inspect"]
        assert f"GENIUS_STATE_PASSWORD={password}" in inspect["Config"]["Env"]
        argv = [inspect.get("Path"), *(inspect.get("Args") or []), *(inspect["Config"].get("Cmd") or []),
                *(inspect["Config"].get("Entrypoint") or [])]  # fmt: skip
        assert argv[0] == "genius" and password not in json.dumps(argv)
    with open_state(pg_state["uri"]) as state:  # the runtime wrote the record with those credentials
        record = state.require_run(RunKey("genius_k8s_secret", "say", result["run_id"]))
        assert record.status is Status.SUCCESS and password not in json.dumps(
            record.history[-1].__dict__, default=str
        )


def wait_for_status(state_uri: str, key: RunKey, status: Status, timeout: float = 60) -> None:
    """Wait until the run record (written by the runtime in the pod) has ``status``."""
    deadline = time.monotonic() + timeout
    with open_state(state_uri) as state:
        while time.monotonic() < deadline:
            record = state.get_run(key)
            if record is not None and record.status is status:
                return
            time.sleep(0.3)
    raise AssertionError(f"run {key} did not reach {status} within {timeout}s")


def start_dag_test(env: dict[str, str], dag_id: str, logical_date: str) -> subprocess.Popen[str]:
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(CASES)}
    args = [str(CASES / "genius_k8s_cases.py"), dag_id, "{}", logical_date]
    return subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_killing_the_task_deletes_the_pod_and_stops_its_container(
    k8s_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str]
) -> None:
    env = {**k8s_env, "GENIUS_TEST_SLEEP": "120"}
    created_before = len(pod_api.cluster.created_pods)
    child = start_dag_test(env, "genius_k8s_sleeper", "2031-01-01T00:00:00+00:00")
    try:
        key = wait_for_running_pod(pod_api, "genius_k8s_sleeper", "sleep", created_after=created_before)
        (container,) = pod_api.containers(**{POD_NAME_LABEL: key[1]})
        assert container["State"] == "running"
        run_id = spec_of(pod_api.cluster.render(pod_api.cluster.pods[key]))["run"]["run_id"]
        wait_for_status(pg_state["uri"], RunKey("genius_k8s_sleeper", "sleep", run_id), Status.RUNNING)
        started = time.monotonic()
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        wait_until_gone(pod_api, key)  # the pod is deleted and podman no longer has its container
        stopped_after = time.monotonic() - started
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert stopped_after < 60, stopped_after  # stopped, not left to sleep its 120 s
    assert f"deleting pod {key[0]}/{key[1]} (the task was killed)" in output, output[-4000:]
    with open_state(pg_state["uri"]) as state:  # the container got SIGTERM and recorded it
        assert state.require_run(RunKey("genius_k8s_sleeper", "sleep", run_id)).status is Status.CANCELLED


def airflow_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AIRFLOW, *args], env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(CASES)}, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def crash_first_try(env: dict[str, str], pod_api: PodApiServer, run_id: str) -> tuple[str, str]:
    """Trigger a run and start its ``sleep`` task through the real task runner (``airflow tasks test``);
    SIGKILL that worker once the pod runs (a worker crash). Returns the pod's (namespace, name)."""
    for args in (["dags", "reserialize"], ["dags", "trigger", "genius_k8s_sleeper", "--run-id", run_id]):
        airflow_cli(env, *args).communicate(timeout=120)
    created_before = len(pod_api.cluster.created_pods)
    first = airflow_cli(env, "tasks", "test", "genius_k8s_sleeper", "sleep", run_id)
    try:
        key = wait_for_running_pod(pod_api, "genius_k8s_sleeper", "sleep", created_after=created_before)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the pod keeps running
        first.communicate(timeout=30)
    return key


def test_retry_after_a_worker_crash_reattaches_to_the_running_pod(
    k8s_env: dict[str, str], pod_api: PodApiServer
) -> None:
    """The second try finds the pod of the first (still running) and waits for it: one pod in all."""
    env = {**k8s_env, "GENIUS_TEST_SLEEP": "60"}  # outlives the second try's start-up under load
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    key = crash_first_try(env, pod_api, run_id)
    assert pod_api.cluster.pods[key].status["phase"] == "Running"
    second = airflow_cli(env, "tasks", "test", "genius_k8s_sleeper", "sleep", run_id)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-6000:]
    # durable (Airflow 3.3): the first try kept the pod's identity in task_state_store
    assert f"Reconnecting to pod {key[0]}/{key[1]} via identity persisted in task state store" in output, (
        output[-6000:]
    )
    assert f"Reusing existing pod '{key[1]}' (phase=Running" in output
    # the pod's own log, tailed by the second try: the first try's run, which slept its full 60 s
    finished = re.search(r"try 1 succeeded in (\d+\.\d+)s", output)
    assert finished and float(finished.group(1)) >= 60 and "Pushing xcom" in output, output[-6000:]
    pods = pods_of(pod_api, "genius_k8s_sleeper", "sleep", run_id)
    assert [pod["metadata"]["name"] for pod in pods] == [key[1]]  # exactly one pod ran for this task instance
    assert len([item for item in pod_api.cluster.launched if item["pod"] == key]) == 1


def test_retry_adopts_a_pod_that_succeeded_while_no_worker_watched(
    k8s_env: dict[str, str], pod_api: PodApiServer
) -> None:
    """KPO alone would delete the finished pod and start another (which would find the run finished);
    the genius runner takes the result from the run record instead: still one pod, and success."""
    env = {**k8s_env, "GENIUS_TEST_SLEEP": "2"}
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    key = crash_first_try(env, pod_api, run_id)
    deadline = time.monotonic() + 60
    while pod_api.cluster.pods[key].status["phase"] != "Succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    second = airflow_cli(env, "tasks", "test", "genius_k8s_sleeper", "sleep", run_id)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-6000:]
    assert f"pod {key[1]} of an earlier try already succeeded: adopting it" in output, output[-6000:]
    finished = re.search(r"try 1 succeeded in (\d+\.\d+)s", output)  # the adopted pod's own log
    assert finished and float(finished.group(1)) >= 2 and "Pushing xcom" in output, output[-6000:]
    assert [pod["metadata"]["name"] for pod in pods_of(pod_api, "genius_k8s_sleeper", "sleep", run_id)] == [
        key[1]
    ]
    assert key not in pod_api.cluster.pods  # cleaned up by the second try (on_finish_action delete_pod)


def test_a_bounded_stream_window_runs_in_pods(
    run_python, k8s_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str], redis_url: str
) -> None:  # type: ignore[no-untyped-def]
    """Spout → deferred bolt over Redis streams (the pods reach the rig's Redis on the host network): two
    runs at consecutive logical dates, each bolt run reads one window of at most 15 records."""
    with stream_prefix(redis_url, "k8s") as prefix:
        env = {**k8s_env, **stream_env(redis_url, prefix)}
        runs = run_twice(run_python, env, CASES, "genius_k8s_cases", "genius_k8s_stream", timeout=300)
        assert [xcom_of(run, "publish") for run in runs] == [20, 20]
        check_windows(
            runs, state_uri=pg_state["uri"], dag_id="genius_k8s_stream", redis_url=redis_url, prefix=prefix
        )
        # the window travelled in the TaskSpec of the bolt's pod
        (pod,) = pods_of(pod_api, "genius_k8s_stream", "enrich", runs[0]["run_id"])
        window = spec_of(pod)["window"]
        assert window["max_records"] == 15 and window["max_seconds"] == 2
