"""A genius service in Kubernetes: an echo service in a pod behind a Kubernetes Service, two clients in
pods calling it by its cluster DNS name, and a teardown that stops it (also when a client fails).

Configure (environment of the DAG processor and workers; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_K8S_CONN_ID`` — a ``kubernetes`` connection (default ``kubernetes_default``: in-cluster
  or ``~/.kube/config``); ``GENIUS_EXAMPLE_K8S_NAMESPACE`` — the pods' namespace (default ``default``);
* ``GENIUS_EXAMPLE_RUNTIME_IMAGE`` — the runtime image built from ``docker/Dockerfile``;
* ``GENIUS_EXAMPLE_SERVICE_PORT`` — the service's port (default 8000).

The run records go to ``[genius] state_conn_id``/``state_uri``, which the pods must reach. The worker
needs no network path to the service: it learns readiness from the run record; the clients (pods)
reach it at ``http://<start task's Service>.<namespace>.svc:<port>``.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param
from kubernetes.client import models as k8s

from airflow_genius.operators.kubernetes import GeniusKubernetesOperator
from airflow_genius.operators.kubernetes_service import (
    GeniusKubernetesServiceOperator,
    GeniusKubernetesServiceStopOperator,
)

POD = {
    "kubernetes_conn_id": os.environ.get("GENIUS_EXAMPLE_K8S_CONN_ID", "kubernetes_default"),
    "namespace": os.environ.get("GENIUS_EXAMPLE_K8S_NAMESPACE", "default"),
    "image": os.environ.get("GENIUS_EXAMPLE_RUNTIME_IMAGE", "airflow-genius-runtime:0.1.0"),
    "image_pull_policy": "IfNotPresent",
    "container_resources": k8s.V1ResourceRequirements(requests={"cpu": "100m", "memory": "128Mi"}),
}

with DAG(
    dag_id="genius_kubernetes_service",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "kubernetes", "service"],
    params={"calls": Param(20, type="integer", minimum=1, maximum=10_000, description="Calls per client")},
    doc_md=__doc__,
) as genius_kubernetes_service:
    start = GeniusKubernetesServiceOperator(
        task_id="start_echo",
        task_class="airflow_genius.examples.tasks:EchoService",
        method="serve",
        service_port=int(os.environ.get("GENIUS_EXAMPLE_SERVICE_PORT", "8000")),
        health_path="/health",
        ready_timeout=120,  # to answer /health once the container runs
        start_timeout=300,  # to schedule the pod and pull the image
        termination_grace_period=30,  # SIGTERM → SIGKILL, on stop and on kill
        **POD,
    )
    ask = GeniusKubernetesOperator.partial(
        task_id="ask",
        service="start_echo",  # SERVICE_NAME/HOSTNAME/PORT/URL in each client's environment
        task_class="airflow_genius.examples.tasks:ServiceClient",
        method="call",
        **POD,
    ).expand(method_kwargs=[{"times": "{{ params.calls }}", "path": "/echo"}] * 2)
    stop = GeniusKubernetesServiceStopOperator(task_id="stop_echo", service="start_echo")
    start >> ask >> stop.as_teardown(setups=start)
