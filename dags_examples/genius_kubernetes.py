"""Genius tasks in Kubernetes pods: a spout → bolt pipeline (the spout waits in the worker, the bolt in
the triggerer).

Configure (environment of the DAG processor, workers and triggerer; nothing is contacted while parsing):

* ``GENIUS_EXAMPLE_K8S_CONN_ID`` — a ``kubernetes`` connection (default ``kubernetes_default``: in-cluster
  or ``~/.kube/config``); ``GENIUS_EXAMPLE_K8S_NAMESPACE`` — the pods' namespace (default ``default``);
* ``GENIUS_EXAMPLE_RUNTIME_IMAGE`` — the runtime image built from ``docker/Dockerfile``;
* ``GENIUS_EXAMPLE_DATA`` — where the data lives: ``s3://bucket/prefix`` (pods need S3 access), or a
  node folder mounted into the pods at the same path (``hostPath``: single-node clusters like kind).
The run records go to ``[genius] state_conn_id``/``state_uri``, which the pods must reach; a password
of that connection reaches the pods through a Kubernetes Secret created per task instance.
"""

from __future__ import annotations

import os

from airflow.sdk import DAG, Param
from kubernetes.client import models as k8s

from airflow_genius.operators.kubernetes import GeniusKubernetesBoltOperator, GeniusKubernetesSpoutOperator

DATA_ROOT = os.environ.get(
    "GENIUS_EXAMPLE_DATA", os.path.join(os.environ.get("AIRFLOW_HOME", "."), "genius", "data")
)
# A local folder is shared with the pods as a hostPath volume at the same path (so the URIs in the
# TaskSpec and in XCom mean the same inside and outside the pods); S3 needs no volume.
SHARED = (
    {}
    if DATA_ROOT.startswith("s3://")
    else {
        "volumes": [k8s.V1Volume(name="data", host_path=k8s.V1HostPathVolumeSource(path=DATA_ROOT))],
        "volume_mounts": [k8s.V1VolumeMount(name="data", mount_path=DATA_ROOT)],
    }
)
POD = {
    "kubernetes_conn_id": os.environ.get("GENIUS_EXAMPLE_K8S_CONN_ID", "kubernetes_default"),
    "namespace": os.environ.get("GENIUS_EXAMPLE_K8S_NAMESPACE", "default"),
    "image": os.environ.get("GENIUS_EXAMPLE_RUNTIME_IMAGE", "airflow-genius-runtime:0.1.0"),
    "image_pull_policy": "IfNotPresent",
    "container_resources": k8s.V1ResourceRequirements(requests={"cpu": "250m", "memory": "256Mi"}),
    "poll_interval": 2,
    **SHARED,
}

with DAG(
    dag_id="genius_kubernetes_pipeline",
    schedule=None,
    catchup=False,
    render_template_as_native_obj=True,
    tags=["genius", "example", "kubernetes"],
    params={
        "count": Param(20, type="integer", minimum=1, maximum=10_000, description="Quotes to ingest"),
        "top": Param(5, type="integer", minimum=1, maximum=100, description="Words to keep"),
    },
    doc_md=__doc__,
) as genius_kubernetes_pipeline:
    fetch = GeniusKubernetesSpoutOperator(
        task_id="fetch",
        task_class="airflow_genius.examples.tasks:QuoteSpout",
        method="fetch",
        method_kwargs={"count": "{{ params.count }}"},
        output_uri=f"{DATA_ROOT}/kubernetes/quotes",
        **POD,
    )
    count = GeniusKubernetesBoltOperator(
        task_id="count",
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        method_kwargs={"top": "{{ params.top }}"},
        input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
        output_uri=f"{DATA_ROOT}/kubernetes/counts",
        deferrable=True,
        **POD,
    )
    fetch >> count
