"""Test DAGs of the Kubernetes runner (tests/containers/kubernetes/test_kubernetes_dags.py): failures in
both modes, a sleeper to kill or reattach to, and tasks whose state connection has a password.

``GENIUS_TEST_K8S_CONN_ID``: the ``kubernetes`` connection of the Pod API server;
``GENIUS_TEST_IMAGE``: the rig's runtime image; ``GENIUS_TEST_SLEEP``: seconds the sleeper sleeps;
``GENIUS_TEST_SHARED``: a host folder the pods mount at the same path (hostPath), the bolts' input.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG
from kubernetes.client import models as k8s
from stream_windows import stream_tasks

from airflow_genius.operators.kubernetes import GeniusKubernetesBoltOperator, GeniusKubernetesOperator

ECHO = "airflow_genius.examples.tasks:Echo"
POD = {
    "kubernetes_conn_id": os.environ.get("GENIUS_TEST_K8S_CONN_ID", "genius_k8s"),
    "namespace": "genius-tests",
    "image": os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev"),
    "poll_interval": 1,
    "startup_check_interval_seconds": 1,
    "retries": 0,
}

SHARED = os.environ.get("GENIUS_TEST_SHARED", "/tmp")
BOLT = {
    "input_uri": SHARED,
    "volumes": [k8s.V1Volume(name="shared", host_path=k8s.V1HostPathVolumeSource(path=SHARED))],
    "volume_mounts": [k8s.V1VolumeMount(name="shared", mount_path=SHARED)],
}

with DAG(dag_id="genius_k8s_failures", schedule=None, catchup=False) as genius_k8s_failures:
    for deferrable in (False, True):
        GeniusKubernetesBoltOperator(
            task_id="raises_deferred" if deferrable else "raises",
            task_class=ECHO,
            method="fail",
            method_kwargs={"message": "the remote task broke"},
            deferrable=deferrable,
            **BOLT,
            **POD,
        )
    GeniusKubernetesOperator(
        task_id="exits_3", task_class=ECHO, method="exit", method_kwargs={"code": 3}, **POD
    )

with DAG(dag_id="genius_k8s_sleeper", schedule=None, catchup=False) as genius_k8s_sleeper:
    GeniusKubernetesOperator(
        task_id="sleep",
        task_class=ECHO,
        method="sleep",
        method_kwargs={"seconds": float(os.environ.get("GENIUS_TEST_SLEEP", "15"))},
        **POD,
    )

with DAG(dag_id="genius_k8s_secret", schedule=None, catchup=False) as genius_k8s_secret:
    # the state connection (AIRFLOW__GENIUS__STATE_CONN_ID) has a password: it must reach the pods
    # through a Secret and appear nowhere else
    for deferrable in (False, True):
        GeniusKubernetesOperator(
            task_id="say_deferred" if deferrable else "say",
            task_class=ECHO,
            method="say",
            method_args=["hello from the pod"],
            deferrable=deferrable,
            **POD,
        )

with DAG(dag_id="genius_k8s_stream", schedule="*/5 * * * *", catchup=False) as genius_k8s_stream:
    # the pods use the host network, so the rig's Redis is reachable; the bolt is deferred
    stream_tasks(GeniusKubernetesOperator, bolt_args={"deferrable": True}, **POD)
