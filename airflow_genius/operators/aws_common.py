"""What the AWS container runners (Batch, ECS) share: names, plain environment, the secrets rule, and
:class:`GeniusAwsContainerMixin` (what both operators add to their provider operator).

Neither Batch ``containerOverrides`` nor ECS ``containerOverrides`` can carry ``secrets``: a value put
in their ``environment`` is stored with the job/task and echoed back by every ``describe`` call (and
by the official operators' logs). So a genius runner never sends a secret value to AWS. The job
definition / task definition declares the secret instead (``secrets: [{"name": "GENIUS_STATE_PASSWORD",
"valueFrom": "<Secrets Manager or SSM parameter ARN>"}]``) and AWS injects it into the container; the
operator checks that every secret the state store needs is declared there, and refuses to run if not:

>>> check_platform_secrets({"GENIUS_STATE_PASSWORD": "pw"}, declared={"GENIUS_STATE_PASSWORD"}, where="x")
>>> check_platform_secrets({"GENIUS_STATE_PASSWORD": "pw"}, declared=set(), where="job definition 'jd'")
Traceback (most recent call last):
...
airflow_genius.operators.aws_common.SecretNotDeliverable: ...
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_genius.core.naming import instance_digest
from airflow_genius.core.uris import STATE_PASSWORD_ENV
from airflow_genius.links.output import GeniusOutputLink
from airflow_genius.links.record import GeniusRecordLink
from airflow_genius.operators.base import GENIUS_TEMPLATE_FIELDS
from airflow_genius.operators.container import ContainerLaunch, GeniusContainerMixin, check_environment

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, BaseOperatorLink, Context
    from airflow.triggers.base import BaseTrigger

    from airflow_genius.operators.state_reach import RemoteReach

#: Batch job names and Batch/ECS resource names: ^[A-Za-z0-9][A-Za-z0-9_-]{1,126}[A-Za-z0-9]$
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class SecretNotDeliverable(ValueError):
    """A secret the runtime needs is not declared by the platform (job/task definition ``secrets``)."""


def deterministic_name(
    dag_id: str, task_id: str, run_id: str, map_index: int = -1, *, prefix: str = "genius"
) -> str:
    """A name that is the same on every try of one task instance (≤ 128 characters, letters, digits,
    ``-`` and ``_``; starts and ends alphanumeric), so a retry can find what an earlier try started.

    >>> deterministic_name("etl", "clean.step", "manual__2024-05-06T00:00:00+00:00")
    'genius-etl-clean_step-59bae05ec741'
    """
    digest = instance_digest(dag_id, task_id, run_id, map_index)
    readable = _UNSAFE.sub("_", f"{dag_id}-{task_id}")[:80].strip("_-")
    head = _UNSAFE.sub("_", prefix).strip("_-")[:30] or "genius"
    return f"{head}-{readable}-{digest}" if readable else f"{head}-{digest}"


def check_platform_secrets(secret_env: Mapping[str, str], *, declared: Collection[str], where: str) -> None:
    """Raise :class:`SecretNotDeliverable` unless every name in ``secret_env`` is in ``declared`` (the
    ``secrets`` of the job/task definition). The message names the variables, never their values."""
    missing = sorted(set(secret_env) - set(declared))
    if missing:
        names = ", ".join(missing)
        example = ", ".join(f'{{"name": "{name}", "valueFrom": "<secret ARN>"}}' for name in missing)
        raise SecretNotDeliverable(
            f"the state store needs the secret environment variable(s) {names}, which {where} does not "
            f"declare. AWS container overrides cannot carry secrets (a value there is stored and echoed "
            f"by every describe call), so genius will not send it. Declare it in {where}: "
            f'"secrets": [{example}] (a Secrets Manager secret or SSM parameter), then re-run.'
        )


def env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    """``{"A": "1"}`` → ``[{"name": "A", "value": "1"}]`` (the AWS shape), names sorted."""
    return [{"name": name, "value": str(env[name])} for name in sorted(env)]


def merge_env(base: Iterable[Mapping[str, Any]] | None, env: Mapping[str, str]) -> list[dict[str, str]]:
    """An AWS environment list: ``base`` entries the genius ``env`` does not name, then ``env``.

    ``base`` (the user's overrides) is checked like every container environment; a stale
    ``GENIUS_TASK_SPEC`` there (an earlier try's overrides) is replaced, a state password refused.
    """
    items = [dict(item) for item in base or ()]
    check_environment(
        {item.get("name"): item.get("value", "") for item in items},
        where="environment overrides",
        reserved=(STATE_PASSWORD_ENV,),
    )
    kept = [item for item in items if item.get("name") not in env]
    return [*kept, *env_list(env)]


def aws_extra_links(provider_operator: type[BaseOperator]) -> tuple[BaseOperatorLink, ...]:
    """The extra links of a genius AWS operator: the provider operator's, "Genius output" and "Genius
    record"."""
    return (*provider_operator.operator_extra_links, GeniusOutputLink(), GeniusRecordLink())


def aws_template_fields(provider_operator: type[BaseOperator]) -> tuple[str, ...]:
    """The templated fields of a genius AWS operator: the genius call, the provider operator's, and
    the container's ``environment``."""
    return (*GENIUS_TEMPLATE_FIELDS, *provider_operator.template_fields, "environment")


def aws_template_renderers(provider_operator: type[BaseOperator]) -> dict[str, str]:
    """How the UI renders those fields: the provider operator's renderers plus JSON for ours."""
    return {**provider_operator.template_fields_renderers, "genius_call": "json", "environment": "json"}


class GeniusAwsContainerMixin(GeniusContainerMixin):
    """The genius mixin of the AWS container runners, first among the bases of a provider operator:

    .. code-block:: python

        class GeniusEcsOperator(GeniusAwsContainerMixin, EcsRunTaskOperator):
            template_fields = aws_template_fields(EcsRunTaskOperator)
            trigger_swap = (TaskDoneTrigger, GeniusEcsTaskDoneTrigger)

            def platform_secrets(self) -> set[str]: ...   # what the task definition declares

    It adds ``environment`` (the container's plain environment, templated; never secrets), refuses
    ``wait_for_completion=False`` (the result is the run record, read after the end), builds the launch
    whose secrets the platform's definition must declare (:meth:`checked_launch`), and defers with the
    genius subclass of the provider's trigger (``trigger_swap``), which adds ``on_kill``.
    """

    ui_color = "#ff9900"
    #: The platform's job, as a message names it ("the ECS task", "the Batch job").
    platform_job: ClassVar[str]
    #: (the provider's trigger, its genius subclass built from the same serialized arguments).
    trigger_swap: ClassVar[tuple[type[BaseTrigger], type[BaseTrigger]]]

    def __init__(self, *, environment: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.environment: dict[str, str] = dict(environment or {})
        if getattr(self, "wait_for_completion", True) is False:
            raise ValueError(
                f"{type(self).__name__} always waits for its result: drop wait_for_completion=False"
            )

    def platform_secrets(self) -> set[str]:
        """Names of the secrets the job/task definition injects into the genius container."""
        raise NotImplementedError

    def platform_definition(self) -> str:
        """The job/task definition that declares the genius container's secrets and mounts (for messages)."""
        raise NotImplementedError

    def platform_mounts(self) -> tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]:
        """The ``volumes`` and the genius container's ``mountPoints`` of the job/task definition."""
        raise NotImplementedError

    def genius_remote_reach(self) -> RemoteReach:
        """The job shares with the worker the genius container's writable mount points of an EFS volume
        or of a host volume at the same path (:meth:`platform_mounts`, described only for a SQLite
        store): an embedded SQLite store elsewhere is refused before anything is started."""
        from airflow_genius.operators.state_reach import RemoteReach, aws_shared_paths

        return RemoteReach(
            self.platform_job,
            lambda: aws_shared_paths(*self.platform_mounts()),
            f"mount an EFS volume (or a host volume of that folder) there, writable, in "
            f"{self.platform_definition()} (volumes, mountPoints)",
        )

    def checked_launch(self, context: Context) -> tuple[ContainerLaunch, set[str]]:
        """This task instance's launch and the secrets its definition declares (asked only when the
        state store has secrets to deliver)."""
        launch = self.prepare_launch(context, extra_env=self.environment)
        return launch, (self.platform_secrets() if launch.secret_env else set())

    def defer(self, *, trigger: BaseTrigger, **kwargs: Any) -> Any:
        """The provider operator defers with its own trigger; the genius subclass adds ``on_kill``."""
        provider_trigger, genius_trigger = self.trigger_swap
        if type(trigger) is provider_trigger:
            trigger = genius_trigger(**trigger.serialize()[1])
        return super().defer(trigger=trigger, **kwargs)
