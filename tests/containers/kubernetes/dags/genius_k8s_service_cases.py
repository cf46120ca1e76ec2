"""Test DAGs of the Kubernetes service operators (tests/containers/kubernetes/test_kubernetes_service.py;
the example DAG dags_examples/genius_kubernetes_service.py is the service with two clients): a service
whose second client fails, a service that never becomes ready, and a slow-to-start service to kill or
to reattach to.

``GENIUS_TEST_K8S_CONN_ID``: the ``kubernetes`` connection of the Pod API server; ``GENIUS_TEST_IMAGE``:
the rig's runtime image; ``GENIUS_TEST_SERVICE_PORT``: the services' port (every pod of the stand-in
shares the host's network, so each test picks a free one); ``GENIUS_TEST_SERVICE_DELAY``: seconds the
slow service takes before it answers its health path.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import DAG

from airflow_genius.operators.kubernetes import GeniusKubernetesOperator
from airflow_genius.operators.kubernetes_service import (
    GeniusKubernetesServiceOperator,
    GeniusKubernetesServiceStopOperator,
)

ECHO_SERVICE = "airflow_genius.examples.tasks:EchoService"
CLIENT = "airflow_genius.examples.tasks:ServiceClient"
POD: dict[str, Any] = {
    "kubernetes_conn_id": os.environ.get("GENIUS_TEST_K8S_CONN_ID", "genius_k8s"),
    "namespace": "genius-tests",
    "image": os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev"),
    "poll_interval": 1,
    "startup_check_interval_seconds": 1,
    "retries": 0,
}
SERVICE: dict[str, Any] = {
    "task_class": ECHO_SERVICE,
    "method": "serve",
    "service_port": int(os.environ.get("GENIUS_TEST_SERVICE_PORT", "8000")),
    "termination_grace_period": 20,
    **POD,
}


def service_with_clients(calls: list[dict[str, Any]]) -> None:
    """start >> mapped clients >> stop (a teardown of start), in the DAG being defined."""
    start = GeniusKubernetesServiceOperator(task_id="start", ready_timeout=120, start_timeout=120, **SERVICE)
    ask = GeniusKubernetesOperator.partial(
        task_id="ask", service="start", task_class=CLIENT, method="call", **POD
    ).expand(method_kwargs=calls)
    stop = GeniusKubernetesServiceStopOperator(task_id="stop", service="start")
    start >> ask >> stop.as_teardown(setups=start)


with DAG(
    dag_id="genius_k8s_service_client_fails", schedule=None, catchup=False
) as genius_k8s_service_client_fails:
    service_with_clients([{"times": 5, "path": "/echo"}, {"times": 1, "path": "/no-such-route"}])

with DAG(
    dag_id="genius_k8s_service_never_ready", schedule=None, catchup=False
) as genius_k8s_service_never_ready:
    # listens at once, but answers its health path only after an hour: ready_timeout ends it
    GeniusKubernetesServiceOperator(
        task_id="start", method_kwargs={"delay": 3600}, ready_timeout=5, start_timeout=120, **SERVICE
    )

with DAG(dag_id="genius_k8s_service_slow", schedule=None, catchup=False) as genius_k8s_service_slow:
    slow = GeniusKubernetesServiceOperator(
        task_id="start",
        method_kwargs={"delay": float(os.environ.get("GENIUS_TEST_SERVICE_DELAY", "5"))},
        ready_timeout=900,
        start_timeout=120,
        **SERVICE,
    )
    slow >> GeniusKubernetesServiceStopOperator(task_id="stop", service="start").as_teardown(setups=slow)
