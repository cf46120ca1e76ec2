"""Every runner's operator refuses, when the DAG is parsed, a secret in its URI arguments and (Docker) an
invalid or reserved environment name: one line naming the argument and the task, the URI redacted.
Operators are only constructed here (no engine, no cluster, no AWS, no Slurm).
"""

from __future__ import annotations

from typing import Any

import pytest

SECRET = "hunter2-S3CRET"


def local(**kwargs: Any) -> Any:
    from airflow_genius.operators.local import GeniusTaskOperator

    return GeniusTaskOperator(**kwargs)


def docker(**kwargs: Any) -> Any:
    from airflow_genius.operators.docker import GeniusDockerOperator

    return GeniusDockerOperator(**kwargs)


def kubernetes(**kwargs: Any) -> Any:
    from airflow_genius.operators.kubernetes import GeniusKubernetesOperator

    return GeniusKubernetesOperator(image="runtime:1", **kwargs)


def ecs(**kwargs: Any) -> Any:
    from airflow_genius.operators.ecs import GeniusEcsOperator

    return GeniusEcsOperator(cluster="c", task_definition="td", container_name="genius", **kwargs)


def batch(**kwargs: Any) -> Any:
    from airflow_genius.operators.batch import GeniusBatchOperator

    return GeniusBatchOperator(job_queue="q", job_definition="jd", **kwargs)


def slurm(**kwargs: Any) -> Any:
    from airflow_genius.operators.slurm import GeniusSlurmOperator

    return GeniusSlurmOperator(ssh_conn_id="cluster", **kwargs)


RUNNERS = [local, docker, kubernetes, ecs, batch, slurm]
ARGUMENTS = [
    pytest.param({"state_uri": f"redis://cache:6379/0?PassWord={SECRET}"}, "state_uri", "GENIUS_STATE_PASSWORD",
                 id="state_uri"),
    pytest.param({"model_uri": f"wandb://team/project?api_key={SECRET}"}, "model_uri", "credential", id="model_uri"),
    pytest.param({"input_uri": f"redis://cache/0?stream=s&group=g&auth={SECRET}"}, "input_uri",
                 "GENIUS_STATE_PASSWORD", id="stream-input_uri"),
    pytest.param({"output_uri": f"s3://lake/{{{{ ds }}}}?token={SECRET}"}, "output_uri", "environment",
                 id="templated-output_uri"),
]  # fmt: skip


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize(("arguments", "name", "instead"), ARGUMENTS)
def test_every_runner_refuses_a_secret_in_a_uri_argument(
    runner: Any, arguments: dict[str, str], name: str, instead: str
) -> None:
    with pytest.raises(ValueError) as caught:
        runner(task_id="fetch", task_class="pkg.mod:Task", method="go", **arguments)
    message = str(caught.value)
    assert message.startswith(f"{name} of task 'fetch': must not embed"), message
    assert instead in message and "***" in message
    assert "\n" not in message and SECRET not in message


@pytest.mark.parametrize("runner", RUNNERS)
def test_clean_uri_arguments_pass(runner: Any) -> None:
    op = runner(
        task_id="fetch",
        task_class="pkg.mod:Task",
        method="go",
        state_uri="postgresql://app@db/genius?sslkey=/k.pem&table_prefix=g",
        output_uri="s3://lake/{{ ds }}",
    )
    assert op.state_uri.endswith("table_prefix=g")


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        pytest.param({"environment": {"1 BAD NAME": "x"}}, "environment: '1 BAD NAME'", id="bad-name"),
        pytest.param({"environment": {"GENIUS_STATE_PASSWORD=evil": "x"}}, "environment: 'GENIUS_STATE_PASSWORD=evil'",
                     id="equals"),
        pytest.param({"environment": {"GENIUS_TASK_SPEC": "{}"}}, "environment: 'GENIUS_TASK_SPEC' is reserved",
                     id="spec"),
        pytest.param({"environment": {"GENIUS_STATE_PASSWORD": "pw"}}, "environment: 'GENIUS_STATE_PASSWORD' is reserved",
                     id="password-in-plain"),
        pytest.param({"private_environment": {"GENIUS_TASK_SPEC": "{}"}}, "private_environment: 'GENIUS_TASK_SPEC'",
                     id="private-spec"),
        pytest.param({"private_environment": {"BAD\nNAME": "x"}}, "private_environment: 'BAD\\nNAME'", id="private-newline"),
    ],
)  # fmt: skip
def test_docker_refuses_environment_names_when_the_dag_is_parsed(
    arguments: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError) as caught:
        docker(task_id="t", task_class="pkg.mod:Task", method="go", **arguments)
    assert str(caught.value).startswith(named) and "\n" not in str(caught.value)
