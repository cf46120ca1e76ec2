"""The pure request builders of the Batch and ECS runners (no engine needed): what goes to AWS, and
what never does."""

from __future__ import annotations

import doctest
import json
import re

import pytest

from airflow_genius.core.spec import build_spec
from airflow_genius.operators import aws_common, batch, ecs, ecs_service
from airflow_genius.operators.aws_common import SecretNotDeliverable, deterministic_name
from airflow_genius.operators.batch import batch_container_overrides, job_definition_secrets, job_failure
from airflow_genius.operators.container import CONTAINER_ARGS, SPEC_ENV, container_launch
from airflow_genius.operators.ecs import container_secrets, ecs_overrides, ecs_task_failure

SECRET = "pa$$w0rd-never-sent"
BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,126}[A-Za-z0-9]$")


def launch(secret: bool = False, extra_env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    spec = build_spec("pkg.mod:Task", "go", kwargs={"n": 1}, dag_id="d", task_id="t", run_id="r",
                      state_uri="redis://127.0.0.1:6379/0")  # fmt: skip
    secret_env = {"GENIUS_STATE_PASSWORD": SECRET} if secret else None
    return container_launch(spec, secret_env=secret_env, extra_env=extra_env)


def env_of(entries: list[dict[str, str]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in entries}


def test_batch_overrides_keep_the_entrypoint_and_carry_the_spec() -> None:
    run = launch(extra_env={"AWS_ENDPOINT_URL": "http://127.0.0.1:5055"})
    base = {"vcpus": 2, "environment": [{"name": "KEEP", "value": "1"}, {"name": SPEC_ENV, "value": "stale"}]}
    overrides = batch_container_overrides(run, base=base)
    assert overrides["command"] == list(CONTAINER_ARGS)  # arguments after ENTRYPOINT ["genius"]
    assert "genius" not in overrides["command"]
    env = env_of(overrides["environment"])
    assert env == {"KEEP": "1", SPEC_ENV: run.spec.to_json(), "AWS_ENDPOINT_URL": "http://127.0.0.1:5055"}
    assert overrides["vcpus"] == 2
    assert base["environment"][1]["value"] == "stale"  # the caller's dict is not changed


def test_ecs_overrides_set_the_genius_container_only() -> None:
    run = launch()
    base = {"cpu": "512", "containerOverrides": [
        {"name": "sidecar", "command": ["serve"]},
        {"name": "genius", "memory": 1024, "environment": [{"name": "KEEP", "value": "1"}]},
    ]}  # fmt: skip
    overrides = ecs_overrides(run, container_name="genius", base=base)
    sidecar, mine = overrides["containerOverrides"]
    assert sidecar == {"name": "sidecar", "command": ["serve"]}
    assert mine["name"] == "genius" and mine["command"] == list(CONTAINER_ARGS) and mine["memory"] == 1024
    assert env_of(mine["environment"]) == {"KEEP": "1", SPEC_ENV: run.spec.to_json()}
    assert overrides["cpu"] == "512"


@pytest.mark.parametrize("build", ["batch", "ecs"])
def test_a_secret_is_refused_unless_the_definition_declares_it(build: str) -> None:
    run = launch(secret=True)

    def overrides(declared: set[str]) -> dict:  # type: ignore[type-arg]
        if build == "batch":
            return batch_container_overrides(run, platform_secrets=declared, where="job definition 'jd'")
        return ecs_overrides(
            run, container_name="genius", platform_secrets=declared, where="task definition 'td'"
        )

    with pytest.raises(SecretNotDeliverable) as refused:
        overrides(set())
    message = str(refused.value)
    assert "GENIUS_STATE_PASSWORD" in message and "does not declare" in message and '"secrets"' in message
    assert SECRET not in message
    # declared by the job/task definition: the platform injects it, the request never carries it
    assert SECRET not in json.dumps(overrides({"GENIUS_STATE_PASSWORD"}))
    assert SECRET not in json.dumps(run.args) and SECRET not in run.spec.to_json()


def test_secrets_declared_by_definitions() -> None:
    jd = {"containerProperties": {"secrets": [{"name": "GENIUS_STATE_PASSWORD", "valueFrom": "arn:x"}]}}
    assert job_definition_secrets(jd) == {"GENIUS_STATE_PASSWORD"}
    assert job_definition_secrets({"containerProperties": {}}) == set()
    td = {"containerDefinitions": [{"name": "other", "secrets": [{"name": "A", "valueFrom": "x"}]},
                                   {"name": "genius", "secrets": [{"name": "B", "valueFrom": "y"}]}]}  # fmt: skip
    assert container_secrets(td, "genius") == {"B"}
    with pytest.raises(ValueError, match="no container 'missing'"):
        container_secrets(td, "missing")


@pytest.mark.parametrize(
    ("dag_id", "task_id", "run_id"),
    [
        ("etl", "clean", "manual__2024-05-06T00:00:00+00:00"),
        ("d" * 300, "group.task" * 40, "scheduled__2024"),
        ("é ünïcode", "-", "x"),
        ("__", "..", ""),
    ],
)
def test_job_names_fit_batch_and_are_stable(dag_id: str, task_id: str, run_id: str) -> None:
    name = deterministic_name(dag_id, task_id, run_id)
    assert BATCH_NAME.match(name), name
    assert name == deterministic_name(dag_id, task_id, run_id)  # every try: the same name
    assert name != deterministic_name(dag_id, task_id, run_id, 0)  # another mapped instance: another
    assert name != deterministic_name(dag_id, task_id, run_id + "x")


def test_platform_verdicts() -> None:
    assert job_failure({"jobId": "j", "status": "SUCCEEDED"}) is None
    assert job_failure({"jobId": "j", "status": "FAILED", "attempts": [{"container": {"exitCode": 3}}]}) == (
        "AWS Batch job j FAILED (exit code 3)"
    )
    container = {"name": "genius", "exitCode": 0}
    assert ecs_task_failure({"taskArn": "t", "containers": [container]}, "genius") is None
    assert "failed to start" in str(
        ecs_task_failure({"taskArn": "t", "stopCode": "TaskFailedToStart"}, "genius")
    )
    never_ran = {"taskArn": "t", "containers": [{"name": "genius"}]}
    assert "has no exit code" in str(ecs_task_failure(never_ran, "genius"))
    sidecar_failed = {"taskArn": "t", "containers": [container, {"name": "side", "exitCode": 2}]}
    assert "container side exited with code 2" in str(ecs_task_failure(sidecar_failed, "genius"))


def test_operators_are_thin_subclasses_with_genius_kinds() -> None:
    from airflow.providers.amazon.aws.operators.batch import BatchOperator
    from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator

    args = {"task_class": "pkg.mod:Task", "method": "go", "environment": {"A": "1"}}
    bolt = batch.GeniusBatchBoltOperator(task_id="b", job_queue="q", job_definition="jd", **args)
    spout = ecs.GeniusEcsSpoutOperator(
        task_id="e", cluster="c", task_definition="td", container_name="genius", **args
    )
    assert isinstance(bolt, BatchOperator) and isinstance(spout, EcsRunTaskOperator)
    assert (bolt.genius_kind, spout.genius_kind) == ("bolt", "spout")
    for op in (bolt, spout):
        assert {"genius_call", "environment"} <= set(op.template_fields)
        assert op.reattach is True
    assert bolt.awslogs_enabled is True


def _provider_triggers() -> list[tuple[object, object, type]]:
    """(genius operator, the provider's trigger it defers with, the genius subclass that adds on_kill)."""
    from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger
    from airflow.providers.amazon.aws.triggers.ecs import TaskDoneTrigger

    from airflow_genius.triggers.batch import GeniusBatchJobTrigger
    from airflow_genius.triggers.ecs import GeniusEcsTaskDoneTrigger

    args = {"task_class": "m:T", "method": "go"}
    return [
        (batch.GeniusBatchOperator(task_id="b", job_queue="q", job_definition="jd", **args),
         BatchJobTrigger(job_id="j", waiter_delay=1, waiter_max_attempts=2, aws_conn_id=None, region_name="r"),
         GeniusBatchJobTrigger),
        (ecs.GeniusEcsOperator(task_id="e", cluster="c", task_definition="td", container_name="genius", **args),
         TaskDoneTrigger(cluster="c", task_arn="arn:t", waiter_delay=1, waiter_max_attempts=2, aws_conn_id=None,
                         log_group="g", log_stream="s"),
         GeniusEcsTaskDoneTrigger),
    ]  # fmt: skip


@pytest.mark.parametrize("index", [0, 1], ids=["batch", "ecs"])
def test_the_provider_defers_with_the_genius_trigger_that_has_on_kill(index: int) -> None:
    from airflow.sdk.exceptions import TaskDeferred

    op, provider_trigger, genius_trigger = _provider_triggers()[index]
    with pytest.raises(TaskDeferred) as deferred:
        op.defer(trigger=provider_trigger, method_name="execute_complete")  # type: ignore[attr-defined]
    trigger = deferred.value.trigger
    assert type(trigger) is genius_trigger
    assert trigger.serialize()[1] == provider_trigger.serialize()[1]  # type: ignore[attr-defined]


@pytest.mark.parametrize("module", [aws_common, batch, ecs, ecs_service])
def test_docstring_examples(module: object) -> None:
    failed, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert failed == 0


@pytest.mark.parametrize("build", [
    lambda: batch.GeniusBatchOperator(task_id="b", job_queue="q", job_definition="jd", task_class="m:T",
                                      method="go", wait_for_completion=False),
    lambda: ecs.GeniusEcsOperator(task_id="e", cluster="c", task_definition="td", container_name="genius",
                                  task_class="m:T", method="go", wait_for_completion=False),
])  # fmt: skip
def test_not_waiting_is_refused(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="always waits for its result"):
        build()


def test_a_service_task_tells_which_try_started_it() -> None:
    """What a reattaching retry reads back from the described task: the TaskSpec of its override."""
    spec = build_spec("m:T", "serve", dag_id="d", task_id="t", run_id="r", try_number=2, service_port=8080)
    overrides = ecs_overrides(container_launch(spec), container_name="genius", base={
        "containerOverrides": [{"name": "sidecar", "environment": [{"name": SPEC_ENV, "value": "{}"}]}]})  # fmt: skip
    found = ecs_service.launched_spec({"overrides": overrides}, "genius")
    assert found is not None and found.run.try_number == 2
    assert found.service is not None and found.service.port == 8080
    assert ecs_service.launched_spec({"overrides": overrides}, "other") is None
    broken = {"overrides": {"containerOverrides": [{"name": "genius", "environment": [
        {"name": SPEC_ENV, "value": "{not json"}]}]}}  # fmt: skip
    assert ecs_service.launched_spec(broken, "genius") is None


def test_the_service_startedby_is_the_providers() -> None:
    from airflow.providers.amazon.aws.utils.identifiers import generate_uuid

    assert ecs_service.ecs_started_by("d", "start", "r") == generate_uuid("d", "start", "r", "-1")


def test_a_service_operator_does_not_defer() -> None:
    with pytest.raises(ValueError, match="waits in the worker until the service is ready"):
        ecs_service.GeniusEcsServiceOperator(
            task_id="s", cluster="c", task_definition="td", container_name="genius", task_class="m:T",
            method="serve", deferrable=True,
        )  # fmt: skip
