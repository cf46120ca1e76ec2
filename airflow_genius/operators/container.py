"""What every container runner (Docker, Kubernetes, ECS, Batch) hands its platform.

The runtime image (docker/Dockerfile) has ``ENTRYPOINT ["genius"]``; a runner keeps it and passes
:data:`CONTAINER_ARGS` as the command/arguments, with the TaskSpec in the environment variable
:data:`SPEC_ENV`. Secrets (the state store's password) are kept apart in ``secret_env`` so that each
runner delivers them through its platform's secret mechanism — never in argv, never in a plain
override that the platform echoes back.

.. code-block:: python

    class GeniusDockerOperator(GeniusContainerMixin, DockerOperator):
        def execute(self, context):
            launch = self.prepare_launch(context)
            self.command = launch.args                       # ["run", "--spec-env", "GENIUS_TASK_SPEC"]
            self.environment = {**self.environment, **launch.env}
            self.private_environment = {**self.private_environment, **launch.secret_env}
            ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from airflow_genius.operators.base import GeniusOperatorMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_genius.core.spec import TaskSpec
    from airflow_genius.operators.base import StateTarget

#: Environment variable that carries the TaskSpec JSON into the container.
SPEC_ENV = "GENIUS_TASK_SPEC"
#: Arguments after the image's ``genius`` ENTRYPOINT.
CONTAINER_ARGS: tuple[str, ...] = ("run", "--spec-env", SPEC_ENV)


@dataclass(frozen=True)
class ContainerLaunch:
    """One container run of a TaskSpec: arguments, plain environment, secret environment."""

    spec: TaskSpec
    args: list[str]
    env: dict[str, str]
    secret_env: dict[str, str] = field(default_factory=dict)

    @property
    def command(self) -> list[str]:
        """The whole command line, for platforms that replace the ENTRYPOINT too."""
        return ["genius", *self.args]


def container_launch(
    spec: TaskSpec, *, secret_env: Mapping[str, str] | None = None, extra_env: Mapping[str, str] | None = None
) -> ContainerLaunch:
    """The launch of ``spec`` in the runtime image (pure; each runner maps it to its request).

    >>> from airflow_genius.core.spec import build_spec
    >>> spec = build_spec("pkg.mod:Task", "go", dag_id="d", task_id="t", run_id="r")
    >>> launch = container_launch(spec, secret_env={"GENIUS_STATE_PASSWORD": "pw"})
    >>> launch.args, sorted(launch.env), sorted(launch.secret_env)
    (['run', '--spec-env', 'GENIUS_TASK_SPEC'], ['GENIUS_TASK_SPEC'], ['GENIUS_STATE_PASSWORD'])
    """
    overlap = set(extra_env or {}) & {SPEC_ENV, *(secret_env or {})}
    if overlap:
        raise ValueError(f"environment names reserved by the runtime: {', '.join(sorted(overlap))}")
    return ContainerLaunch(
        spec=spec,
        args=list(CONTAINER_ARGS),
        env={**(extra_env or {}), SPEC_ENV: spec.to_json()},
        secret_env=dict(secret_env or {}),
    )


class GeniusContainerMixin(GeniusOperatorMixin):
    """The genius mixin of the container runners: builds the launch of this task instance.

    Put it first: ``class GeniusKubernetesOperator(GeniusContainerMixin, KubernetesPodOperator)``.
    """

    genius_state_target: StateTarget | None = None

    def prepare_launch(self, context: Context, *, extra_env: Mapping[str, str] | None = None) -> ContainerLaunch:
        """The TaskSpec of this task instance as a :class:`ContainerLaunch` (state secrets separate)."""
        target = self.genius_state()
        self.genius_state_target = target
        spec = self.build_task_spec(context, state_uri=target.uri)
        return container_launch(spec, secret_env=target.secret_env, extra_env=extra_env)
