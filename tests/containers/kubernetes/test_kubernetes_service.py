"""GeniusKubernetesServiceOperator / GeniusKubernetesServiceStopOperator in real Airflow runs against the
Pod API server (tests/support/pod_api: pods as podman containers, Services as cluster IP 127.0.0.1 and
``/etc/hosts`` DNS in pods), asserted on the stand-in's objects, on podman and on the run records."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest
from genius_dagtest import DAG_TEST, dag_test
from support.pod_api import POD_NAME_LABEL, PodApiServer
from support.private_stores import free_port

from airflow_genius.core import RunKey, Status, open_state
from airflow_genius.operators.kubernetes_request import secret_name_for, service_name_for
from airflow_genius.operators.kubernetes_service import SERVICE_LABEL
from containers.kubernetes.test_kubernetes_dags import (
    AIRFLOW,
    CASES,
    EXAMPLES,
    pods_of,
    spec_of,
    wait_for_running_pod,
    wait_for_status,
    wait_until_gone,
)

pytestmark = [pytest.mark.containers, pytest.mark.airflow, pytest.mark.slow]

FILE = "genius_k8s_service_cases"
NAMESPACE = "genius-tests"


@pytest.fixture
def svc_env(k8s_env: dict[str, str]) -> dict[str, str]:
    """The Kubernetes test environment with a free port for this test's service (pods share the host's
    network: two services on one port would collide)."""
    return {**k8s_env, "GENIUS_TEST_SERVICE_PORT": str(free_port()), "AIRFLOW__CORE__DAGS_FOLDER": str(CASES)}


def tis_by_key(result: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(ti["task_id"], ti["map_index"]): ti for ti in result["tis"]}


def engine_is_clean(server: PodApiServer, name: str, namespace: str = NAMESPACE) -> None:
    """No pod, no container and no Service named ``name`` is left on the stand-in and podman."""
    wait_until_gone(server, (namespace, name))
    assert (namespace, name) not in server.cluster.services
    assert not server.containers(**{POD_NAME_LABEL: name})


def record(state_uri: str, dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> Any:
    with open_state(state_uri) as state:
        return state.require_run(RunKey(dag_id, task_id, run_id, map_index))


def assert_stopped_success(
    state_uri: str, dag_id: str, run_id: str, *, ready: bool = True, task_id: str = "start"
) -> None:
    """The service's run record ended SUCCESS by SIGTERM (its normal end), readiness as recorded."""
    service = record(state_uri, dag_id, task_id, run_id)
    assert service.status is Status.SUCCESS, (service.status, service.error)
    assert service.result["service"] == task_id and service.result["ready"] is ready, service.result
    assert "SIGTERM" in service.result["stopped"] and service.result["served_seconds"] > 0


def test_service_serves_two_clients_and_the_teardown_stops_it(
    run_python, svc_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    """The example DAG (dags_examples/genius_kubernetes_service.py) in the examples' namespace."""
    port = free_port()
    env = {**svc_env, "GENIUS_EXAMPLE_SERVICE_PORT": str(port)}
    dag_id, namespace = "genius_kubernetes_service", env["GENIUS_EXAMPLE_K8S_NAMESPACE"]
    result, output = dag_test(run_python, env, EXAMPLES, dag_id, {"calls": 20}, file=dag_id)
    assert result["state"] == "success", output[-8000:]
    tis, run_id = tis_by_key(result), result["run_id"]
    name = service_name_for(dag_id, "start_echo", run_id)
    hostname = f"{name}.{namespace}.svc"
    published = tis[("start_echo", -1)]["xcom"]
    assert published["hostname"] == hostname and published["port"] == port, published
    assert published["url"] == f"http://{hostname}:{port}" and published["name"] == "start_echo"
    assert published["pod"] == name and published["namespace"] == namespace and published["ready_at"]
    # both clients called the service through its Service's DNS name and recorded the latencies
    for index in (0, 1):
        assert tis[("ask", index)]["xcom"] == {
            "url": f"{published['url']}/echo",
            "calls": 20,
            "service": "start_echo",
        }
        metrics = record(pg_state["uri"], dag_id, "ask", run_id, index).metrics
        assert metrics["calls"] == 20 and 0 < metrics["latency_ms_median"] <= metrics["latency_ms_max"]
    stopped = tis[("stop_echo", -1)]
    assert stopped["state"] == "success" and stopped["xcom"]["deleted"] == ["Service", "pod"], stopped
    assert stopped["xcom"]["status"] == "SUCCESS"
    # on the engine: one pod, selected by one ClusterIP Service on the service's port; all gone now
    (pod,) = [p for p in pod_api.cluster.created_pods if p["metadata"]["name"] == name]
    assert pod["metadata"]["labels"][SERVICE_LABEL] == name
    assert pod["spec"]["containers"][0]["ports"] == [{"name": "http", "containerPort": port}]
    (service,) = [s for s in pod_api.cluster.created_services if s["metadata"]["name"] == name]
    assert service["metadata"]["namespace"] == namespace and service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"] == {SERVICE_LABEL: name}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(port, port)]
    assert len([item for item in pod_api.cluster.launched if item["pod"] == (namespace, name)]) == 1
    engine_is_clean(pod_api, name, namespace)
    secret = secret_name_for(dag_id, "start_echo", run_id)  # the state password's Secret, gone once used
    assert (namespace, secret) in pod_api.cluster.created_secrets
    assert (namespace, secret) not in pod_api.cluster.secrets
    assert_stopped_success(pg_state["uri"], dag_id, run_id, task_id="start_echo")
    assert f"Building pod {name} with labels" in output and "the service's log so far" in output, output[
        -6000:
    ]


def test_the_teardown_stops_the_service_when_a_client_fails(
    run_python, svc_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, svc_env, CASES, "genius_k8s_service_client_fails", file=FILE)
    tis, run_id = tis_by_key(result), result["run_id"]
    states = {key: ti["state"] for key, ti in tis.items()}
    assert states == {("start", -1): "success", ("ask", 0): "success", ("ask", 1): "failed",
                      ("stop", -1): "success"}, output[-8000:]  # fmt: skip
    assert result["state"] == "failed"
    assert "HTTP Error 404" in output  # the failing client's own error, from its run record
    engine_is_clean(pod_api, service_name_for("genius_k8s_service_client_fails", "start", run_id))
    assert_stopped_success(pg_state["uri"], "genius_k8s_service_client_fails", run_id)


def test_a_service_that_never_becomes_ready_fails_with_its_log_and_leaves_nothing(
    run_python, svc_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, svc_env, CASES, "genius_k8s_service_never_ready", file=FILE)
    (ti,) = result["tis"]
    assert ti["state"] == "failed", output[-8000:]
    port = svc_env["GENIUS_TEST_SERVICE_PORT"]
    # the readiness verdict of the runtime (ready_timeout=5), then the pod's own log lines
    assert f"the service is not ready: http://127.0.0.1:{port}/health did not answer 2xx within 5s" in output
    tail = r"; last log lines:\n[\d-]+ [\d:,]+ INFO airflow_genius\.runtime: run genius_k8s_service_never_ready\.start"
    assert re.search(tail, output) and f"serving /echo on 0.0.0.0:{port}" in output, output[-8000:]
    name = service_name_for("genius_k8s_service_never_ready", "start", result["run_id"])
    assert [s["metadata"]["name"] for s in pod_api.cluster.created_services].count(name) == 1
    engine_is_clean(pod_api, name)  # the failed start deleted its pod and its Service
    assert f"deleted pod {NAMESPACE}/{name}" in output
    service = record(pg_state["uri"], "genius_k8s_service_never_ready", "start", result["run_id"])
    assert service.info["service"]["ready"] is False


def start_dag_test(env: dict[str, str], dag_id: str) -> subprocess.Popen[str]:
    args = [str(CASES / f"{FILE}.py"), dag_id, "{}", "2031-01-01T00:00:00+00:00"]
    return subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_killing_the_start_task_deletes_the_pod_and_the_service(
    svc_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str]
) -> None:
    env = {**svc_env, "GENIUS_TEST_SERVICE_DELAY": "600"}  # still starting when the task is killed
    created_before = len(pod_api.cluster.created_pods)
    child = start_dag_test(env, "genius_k8s_service_slow")
    try:
        key = wait_for_running_pod(pod_api, "genius_k8s_service_slow", "start", created_after=created_before)
        run_id = spec_of(pod_api.cluster.render(pod_api.cluster.pods[key]))["run"]["run_id"]
        assert key[1] == service_name_for("genius_k8s_service_slow", "start", run_id)
        wait_for_status(pg_state["uri"], RunKey("genius_k8s_service_slow", "start", run_id), Status.RUNNING)
        deadline = time.monotonic() + 60
        while key not in pod_api.cluster.services:  # the Service follows the pod
            assert time.monotonic() < deadline
            time.sleep(0.3)
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        engine_is_clean(pod_api, key[1])
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert f"deleting pod {key[0]}/{key[1]} (the task was killed)" in output, output[-6000:]
    # the container got SIGTERM: the service's normal end, never ready (it was still loading)
    assert_stopped_success(pg_state["uri"], "genius_k8s_service_slow", run_id, ready=False)


def airflow_cli(env: dict[str, str], *args: str, timeout: float = 300) -> tuple[int, str]:
    done = subprocess.run(
        [AIRFLOW, *args], env=env, cwd=env["AIRFLOW_HOME"], capture_output=True, text=True, timeout=timeout
    )
    return done.returncode, done.stdout + done.stderr


def test_a_retry_after_a_worker_crash_reattaches_to_the_service_pod(
    svc_env: dict[str, str], pod_api: PodApiServer, pg_state: dict[str, str]
) -> None:
    """The first try's worker dies while the service starts; the retry reattaches to its pod (one pod,
    one container), and the stop run twice deletes everything once."""
    env = {**svc_env, "GENIUS_TEST_SERVICE_DELAY": "5"}
    dag_id, run_id = "genius_k8s_service_slow", f"crash_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", dag_id, "--run-id", run_id]):
        assert airflow_cli(env, *args)[0] == 0
    name = service_name_for(dag_id, "start", run_id)
    created_before = len(pod_api.cluster.created_pods)
    first = subprocess.Popen(
        [AIRFLOW, "tasks", "test", dag_id, "start", run_id], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        key = wait_for_running_pod(pod_api, dag_id, "start", created_after=created_before)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the pod keeps running
        first.wait(timeout=30)
    assert key == (NAMESPACE, name)
    code, output = airflow_cli(env, "tasks", "test", dag_id, "start", run_id)
    assert code == 0, output[-8000:]
    assert f"reattaching to service pod {NAMESPACE}/{name} (phase Running" in output, output[-8000:]
    assert f"service start is ready at http://{name}.{NAMESPACE}.svc:" in output
    assert [pod["metadata"]["name"] for pod in pods_of(pod_api, dag_id, "start")].count(name) == 1
    assert len([item for item in pod_api.cluster.launched if item["pod"] == key]) == 1  # one container ever
    assert (NAMESPACE, name) in pod_api.cluster.services
    # the teardown, twice: the first deletes the Service and the pod, the second finds nothing to do
    code, output = airflow_cli(env, "tasks", "test", dag_id, "stop", run_id)
    assert code == 0 and f"deleted pod {NAMESPACE}/{name}" in output, output[-8000:]
    engine_is_clean(pod_api, name)
    code, output = airflow_cli(env, "tasks", "test", dag_id, "stop", run_id)
    assert code == 0 and "nothing to stop (already gone)" in output, output[-8000:]
    assert_stopped_success(pg_state["uri"], dag_id, run_id)
