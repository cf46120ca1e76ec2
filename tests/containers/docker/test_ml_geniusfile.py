"""dags_examples/ml.genius.yaml with ``defaults.runner: docker`` in a real ``dag.test()`` against podman's
Docker API: every step in a container of the runtime image (built with the ``ml`` extra), the service
on the host network, data and models on S3 (the rig's moto_server), run records in Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow_fixtures import RunPython
from ml_workflow import check_ml_run, free_port, geniusfile_on, ml_env, run_ml_workflow

pytestmark = [pytest.mark.containers, pytest.mark.airflow, pytest.mark.aws, pytest.mark.slow]


def test_the_ml_geniusfile_runs_in_docker(
    run_python: RunPython, docker_env: dict[str, str], s3_bucket: str, aws_endpoint: str, tmp_path: Path
) -> None:
    model_uri = f"s3://{s3_bucket}/models"
    env = {
        **docker_env,
        **ml_env(f"s3://{s3_bucket}/data", model_uri, free_port()),
        # what the containers need to reach moto (its keys are not secret)
        "GENIUS_EXAMPLE_S3_ENDPOINT": aws_endpoint,
        "GENIUS_EXAMPLE_S3_KEY_ID": "testing",
        "GENIUS_EXAMPLE_S3_SECRET_KEY": "testing",
    }
    folder = geniusfile_on("docker", tmp_path / "dags")
    result, output = run_ml_workflow(run_python, env, folder)
    # the six spouts and bolts ran in containers of the image (the service has its own operator)
    started = f"Starting docker container from image {docker_env['GENIUS_EXAMPLE_IMAGE']}"
    assert output.count(started) >= 6, output[-6000:]
    check_ml_run(
        result, output, state_uri=docker_env["AIRFLOW__GENIUS__STATE_URI"], model_uri=model_uri,
        cache=tmp_path / "cache",
    )  # fmt: skip
