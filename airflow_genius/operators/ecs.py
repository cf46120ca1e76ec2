"""Run a genius task as an ECS task (a thin subclass of the amazon provider's ``EcsRunTaskOperator``).

.. code-block:: python

    from airflow_genius.operators.ecs import GeniusEcsBoltOperator

    count = GeniusEcsBoltOperator(
        task_id="count",
        cluster="genius",
        task_definition="genius-runtime",      # its container "genius" runs the genius runtime image
        container_name="genius",
        launch_type="FARGATE",
        network_configuration={"awsvpcConfiguration": {"subnets": ["subnet-…"]}},
        awslogs_group="/ecs/genius", awslogs_stream_prefix="genius",   # as in the task definition
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        input_uri="s3://lake/quotes/",
        output_uri="s3://lake/counts/",
        state_conn_id="genius_redis",
        deferrable=True,
    )

What happens: ``overrides.containerOverrides`` of the named container get ``command = ["run",
"--spec-env", "GENIUS_TASK_SPEC"]`` (the image's ENTRYPOINT ``genius`` stays) and the TaskSpec in
``environment``. ``reattach`` (on by default) gives the task a deterministic ``startedBy`` per task
instance, so a retry after a worker crash waits for the running task instead of starting another. The
CloudWatch log (``awslogs_*``) goes to the task log; the result comes from the run record (docs/architecture.md#the-run-record-decides),
not from the exit code alone. Killing the task stops the ECS task, from the worker (``on_kill``) or,
deferred, from the triggerer (:class:`~airflow_genius.triggers.ecs.GeniusEcsTaskDoneTrigger`).

Secrets: ECS container overrides cannot carry ``secrets``. If the state store needs a password, declare
it in the task definition's container (``secrets: [{"name": "GENIUS_STATE_PASSWORD", "valueFrom":
<secret ARN>}]``); the operator checks that and otherwise refuses to start the task.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator
from airflow.providers.amazon.aws.triggers.ecs import TaskDoneTrigger
from airflow.providers.common.compat.sdk import AirflowException

from airflow_genius import _provider_compat as compat
from airflow_genius.operators.aws_common import (
    GeniusAwsContainerMixin,
    aws_extra_links,
    aws_template_fields,
    aws_template_renderers,
    check_platform_secrets,
    merge_env,
)
from airflow_genius.operators.base import LOG_TAIL_LINES
from airflow_genius.operators.container import ContainerLaunch
from airflow_genius.triggers.ecs import GeniusEcsTaskDoneTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


def ecs_overrides(
    launch: ContainerLaunch,
    *,
    container_name: str,
    base: Mapping[str, Any] | None = None,
    platform_secrets: Collection[str] = (),
    where: str = "the task definition",
) -> dict[str, Any]:
    """The ``overrides`` of ``run_task`` for ``launch`` (pure).

    The override of ``container_name`` (kept from ``base`` if there is one, with its other fields) gets
    ``command = launch.args`` and ``base``'s environment plus ``launch.env``. Secret values are never
    included: every name in ``launch.secret_env`` must be in ``platform_secrets`` (the container's
    ``secrets`` in the task definition), else
    :class:`~airflow_genius.operators.aws_common.SecretNotDeliverable` is raised.

    >>> from airflow_genius.core.spec import build_spec
    >>> from airflow_genius.operators.container import container_launch
    >>> launch = container_launch(build_spec("m:T", "go", dag_id="d", task_id="t", run_id="r"))
    >>> (override,) = ecs_overrides(launch, container_name="genius")["containerOverrides"]
    >>> override["name"], override["command"], [e["name"] for e in override["environment"]]
    ('genius', ['run', '--spec-env', 'GENIUS_TASK_SPEC'], ['GENIUS_TASK_SPEC'])
    """
    check_platform_secrets(launch.secret_env, declared=platform_secrets, where=where)
    overrides = dict(base or {})
    others = [dict(c) for c in overrides.get("containerOverrides") or () if c.get("name") != container_name]
    mine = next(
        (dict(c) for c in overrides.get("containerOverrides") or () if c.get("name") == container_name), {}
    )
    mine.update(
        name=container_name,
        command=list(launch.args),
        environment=merge_env(mine.get("environment"), launch.env),
    )
    overrides["containerOverrides"] = [*others, mine]
    return overrides


def genius_container_definition(task_definition: Mapping[str, Any], container_name: str) -> Mapping[str, Any]:
    """The definition of ``container_name`` in a (described) task definition; ``ValueError`` if none."""
    for container in task_definition.get("containerDefinitions") or ():
        if container.get("name") == container_name:
            return dict(container)
    raise ValueError(
        f"task definition {task_definition.get('taskDefinitionArn')} has no container {container_name!r}"
    )


def container_secrets(task_definition: Mapping[str, Any], container_name: str) -> set[str]:
    """Names of the ``secrets`` a (described) task definition injects into ``container_name``."""
    container = genius_container_definition(task_definition, container_name)
    return {secret["name"] for secret in container.get("secrets") or ()}


class GeniusEcsOperator(GeniusAwsContainerMixin, EcsRunTaskOperator):
    """Run a genius task as an ECS task; the run record's result is the XCom.

    Args (besides the genius arguments of :class:`~airflow_genius.operators.base.GeniusOperatorMixin`
    and those of ``EcsRunTaskOperator``: ``cluster``, ``task_definition``, ``launch_type``,
    ``network_configuration``, ``awslogs_group``/``awslogs_stream_prefix``, ``deferrable`` (default
    ``[operators] default_deferrable``), ``waiter_delay``, ``aws_conn_id`` …):
        container_name: the task definition's container that runs the genius runtime image.
        environment: plain environment of that container (templated); never put secrets here.
        overrides: more ``run_task`` overrides (cpu, memory, other containers); genius sets the
            command and environment of ``container_name``.
        reattach: on a retry, wait for the task an earlier try left running (default True).
    """

    operator_extra_links = aws_extra_links(EcsRunTaskOperator)
    template_fields: Sequence[str] = aws_template_fields(EcsRunTaskOperator)
    template_fields_renderers: ClassVar[dict[str, str]] = aws_template_renderers(EcsRunTaskOperator)
    trigger_swap = (TaskDoneTrigger, GeniusEcsTaskDoneTrigger)
    platform_job = "the ECS task"

    def __init__(
        self,
        *,
        cluster: str,
        task_definition: str,
        container_name: str,
        overrides: dict[str, Any] | None = None,
        reattach: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            cluster=cluster,
            task_definition=task_definition,
            container_name=container_name,
            overrides=dict(overrides or {}),
            reattach=reattach,
            **kwargs,
        )
        self.genius_container = container_name

    def platform_secrets(self) -> set[str]:
        """Names of the secrets the task definition injects into the genius container (one call)."""
        return container_secrets(self.described_task_definition(), self.genius_container)

    def described_task_definition(self) -> dict[str, Any]:
        """The task definition, as ``describe_task_definition`` gives it (one call)."""
        return dict(
            self.client.describe_task_definition(taskDefinition=self.task_definition)["taskDefinition"]
        )

    def platform_definition(self) -> str:
        return f"task definition {self.task_definition!r} (container {self.genius_container!r})"

    def platform_mounts(self) -> tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]:
        """The task definition's ``volumes`` and the genius container's ``mountPoints`` (one call)."""
        described = self.described_task_definition()
        container = genius_container_definition(described, self.genius_container)
        return described.get("volumes") or [], container.get("mountPoints") or []

    def build_overrides(self, context: Context) -> dict[str, Any]:
        """This task instance's ``run_task`` overrides (secrets checked against the task definition)."""
        launch, declared = self.checked_launch(context)
        return ecs_overrides(
            launch,
            container_name=self.genius_container,
            base=self.overrides,
            platform_secrets=declared,
            where=self.platform_definition(),
        )

    def execute(self, context: Context) -> Any:
        """``EcsRunTaskOperator.execute`` (reattach or start, then wait here or defer), then the run
        record decides."""
        self.overrides = self.build_overrides(context)  # refused before anything is started
        self.container_name = self.genius_container  # also names the log stream; no lookup sleeps
        failure = self.ecs_verdict(super().execute, context)
        return self.finish_remote(context, failure=failure, log_tail=self.cloudwatch_tail)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Back from the triggerer: the ECS verdict plus the run record decide."""
        self.arn = self.arn or (event or {}).get("task_arn")
        failure = self.ecs_verdict(super().execute_complete, context, event)
        return self.finish_remote(context, failure=failure, log_tail=self.cloudwatch_tail)

    def ecs_verdict(self, step: Callable[..., object], *args: Any) -> str | None:
        """Run a step of ``EcsRunTaskOperator``; return what ECS says went wrong (None: the genius
        container exited 0) for :meth:`finish_remote` to combine with the run record."""
        self.ecs_failure: str | None = None
        try:
            step(*args)
        except AirflowException as exc:
            return _first_line(exc, self.arn)
        return self.ecs_failure

    def genius_remote_job_id(self) -> str | None:
        return self.arn

    def cloudwatch_tail(self) -> list[str]:
        """The last lines of the genius container's CloudWatch stream ([] without ``awslogs_*`` or a
        started task), read once the task ended, as the provider reads them for its own failures."""
        if not (compat.ecs_logs_enabled(self) and self.arn):
            return []
        return list(compat.ecs_log_fetcher(self).get_last_log_messages(LOG_TAIL_LINES))

    def _after_execution(self) -> None:
        """The provider's check raises on the first odd container; genius keeps ECS's verdict as the
        ``failure`` that :meth:`finish_remote` combines with the run record's (docs/architecture.md#the-run-record-decides).

        Overrides a private method of ``EcsRunTaskOperator`` (listed in
        :data:`airflow_genius._provider_compat.OVERRIDDEN_PRIVATE_METHODS`)."""
        if not self.arn:
            return
        response = self.client.describe_tasks(cluster=self.cluster, tasks=[self.arn])
        if response.get("failures"):
            self.ecs_failure = f"ECS task {self.arn}: {response['failures']}"
            return
        self.ecs_failure = ecs_task_failure(response["tasks"][0], self.genius_container)


def ecs_task_failure(task: Mapping[str, Any], container_name: str) -> str | None:
    """What ECS says went wrong with a stopped task (None: the genius container exited 0).

    A container with no exit code never ran (or was lost with its host); any container with a non-zero
    exit code fails the task, as in ``EcsRunTaskOperator``.

    >>> ecs_task_failure({"taskArn": "t", "containers": [{"name": "genius", "exitCode": 0}]}, "genius")
    >>> ecs_task_failure({"taskArn": "t", "stoppedReason": "OOM", "containers": [{"name": "genius",
    ...                   "exitCode": 137}]}, "genius")
    'ECS task t: container genius exited with code 137 (OOM)'
    """
    arn, reason = task.get("taskArn"), task.get("stoppedReason") or ""
    if task.get("stopCode") == "TaskFailedToStart":
        return f"ECS task {arn} failed to start: {reason}"
    for container in task.get("containers") or ():
        code = container.get("exitCode")
        if code is None and container.get("name") == container_name:
            return f"ECS task {arn}: container {container_name} has no exit code ({reason or 'never ran'})"
        if code not in (None, 0):
            return f"ECS task {arn}: container {container.get('name')} exited with code {code}" + (
                f" ({reason})" if reason else ""
            )
    return None


def _first_line(exc: BaseException, arn: str | None) -> str:
    # The provider's messages embed the whole describe_tasks answer (the TaskSpec included): keep the gist.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"ECS task {arn}: {text[:300]}"


class GeniusEcsSpoutOperator(GeniusEcsOperator):
    """A genius :class:`~airflow_genius.core.task.Spout` as an ECS task."""

    genius_kind = "spout"


class GeniusEcsBoltOperator(GeniusEcsOperator):
    """A genius :class:`~airflow_genius.core.task.Bolt` as an ECS task."""

    genius_kind = "bolt"
