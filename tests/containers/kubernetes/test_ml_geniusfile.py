"""dags_examples/ml.genius.yaml with ``defaults.runner: kubernetes`` in a real ``dag.test()`` against the
Pod API stand-in: every step in a pod of the runtime image (built with the ``ml`` extra), the service
behind a Kubernetes Service, data and models on S3 (the rig's moto_server), run records in PostgreSQL
through a password-protected state connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow_fixtures import RunPython
from ml_workflow import DAG_ID, check_ml_run, free_port, geniusfile_on, ml_env, run_ml_workflow
from support.pod_api import PodApiServer

pytestmark = [pytest.mark.containers, pytest.mark.airflow, pytest.mark.aws, pytest.mark.slow]


def test_the_ml_geniusfile_runs_on_kubernetes(
    run_python: RunPython,
    k8s_env: dict[str, str],
    pod_api: PodApiServer,
    pg_state: dict[str, str],
    s3_bucket: str,
    aws_endpoint: str,
    tmp_path: Path,
) -> None:
    model_uri = f"s3://{s3_bucket}/models"
    env = {
        **k8s_env,
        **ml_env(f"s3://{s3_bucket}/data", model_uri, free_port()),
        "GENIUS_EXAMPLE_IMAGE": k8s_env["GENIUS_TEST_IMAGE"],
        # what the pods need to reach moto (its keys are not secret)
        "GENIUS_EXAMPLE_S3_ENDPOINT": aws_endpoint,
        "GENIUS_EXAMPLE_S3_KEY_ID": "testing",
        "GENIUS_EXAMPLE_S3_SECRET_KEY": "testing",
    }
    folder = geniusfile_on("kubernetes", tmp_path / "dags")
    result, output = run_ml_workflow(run_python, env, folder)
    # each step ran in a pod of the stand-in, in the namespace the environment gave the file
    ran = {
        (pod["metadata"]["labels"]["task_id"], pod["metadata"]["namespace"])
        for pod in pod_api.cluster.created_pods
        if pod["metadata"]["labels"].get("dag_id") == DAG_ID
    }
    namespace = env["GENIUS_EXAMPLE_K8S_NAMESPACE"]
    tasks = {"ingest", "train", "evaluate", "serve", "bench", "report"}
    assert ran == {(task, namespace) for task in tasks}, (ran, output[-6000:])
    check_ml_run(result, output, state_uri=pg_state["uri"], model_uri=model_uri, cache=tmp_path / "cache")
