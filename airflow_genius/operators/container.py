"""What every container runner (Docker, Kubernetes, ECS, Batch) hands its platform.

The runtime image (docker/Dockerfile) has ``ENTRYPOINT ["genius"]``; a runner keeps it and passes
:data:`CONTAINER_ARGS` as the command/arguments, with the TaskSpec in the environment variable
:data:`~airflow_genius.core.cli.SPEC_ENV`. Secrets (the state store's password) are kept apart in
``secret_env`` so that each runner delivers them through its platform's secret mechanism — never in
argv, never in a plain override that the platform echoes back.

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

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_genius.core.cli import SPEC_ENV
from airflow_genius.core.uris import STATE_PASSWORD_ENV
from airflow_genius.operators.base import GeniusOperatorMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_genius.core.spec import TaskSpec
    from airflow_genius.operators.state_reach import RemoteReach

#: Arguments after the image's ``genius`` ENTRYPOINT.
CONTAINER_ARGS: tuple[str, ...] = ("run", "--spec-env", SPEC_ENV)
#: Names the genius launch sets itself, and why: never part of a user's plain environment.
RESERVED_ENV: Mapping[str, str] = {
    SPEC_ENV: "the launch puts the TaskSpec there",
    STATE_PASSWORD_ENV: "the state password comes from the state connection (state_conn_id=), "
    "delivered through the platform's secret mechanism",
}
#: A portable (POSIX) environment variable name.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_environment(
    env: Mapping[Any, Any], *, where: str, reserved: Collection[str] = tuple(RESERVED_ENV)
) -> None:
    """Refuse an environment a container runner would pass on: every name must be a POSIX name
    (letters, digits, ``_``; no leading digit) and none of ``reserved``; no value may hold a NUL.

    The one check of every container runner's user environment (Docker ``environment``,
    ``private_environment`` and ``env_file``, Kubernetes ``env_vars``, ECS/Batch ``environment`` and
    overrides). Raises ``ValueError``: one line naming ``where`` and the key, never a value.

    >>> check_environment({"HF_HOME": "/cache", "_X1": 2}, where="environment")
    >>> check_environment({"1 BAD NAME": "x"}, where="environment")
    Traceback (most recent call last):
    ...
    ValueError: environment: '1 BAD NAME' is not a valid variable name (letters, digits and '_', not starting with a digit)
    """
    for name, value in env.items():
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(
                f"{where}: {shown} is not a valid variable name (letters, digits and '_', not starting "
                "with a digit)"
            )
        if name in reserved:
            why = RESERVED_ENV.get(name, "the genius launch sets it")
            raise ValueError(f"{where}: {shown} is reserved: genius sets it itself ({why})")
        if "\x00" in str(value):
            raise ValueError(f"{where}: the value of {shown} contains a NUL character")


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
    check_environment(extra_env or {}, where="environment", reserved={*RESERVED_ENV, *(secret_env or {})})
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

    def genius_remote_reach(self) -> RemoteReach:
        """Where the container runs and which folders it shares with the worker (its mounts): each
        container runner says it in a few lines, for the state store check of :meth:`prepare_launch`."""
        raise NotImplementedError

    def prepare_launch(
        self, context: Context, *, extra_env: Mapping[str, str] | None = None
    ) -> ContainerLaunch:
        """The TaskSpec of this task instance as a :class:`ContainerLaunch` (state secrets separate).

        Raises :class:`~airflow_genius.operators.state_reach.StateNotReachable` before anything is
        launched when the container cannot reach the state store (an embedded SQLite file outside its
        mounts, ``memory://``)."""
        target = self.genius_state()
        spec = self.build_task_spec(context, state_uri=target.uri, remote=self.genius_remote_reach())
        env = {**self.service_env(context), **(extra_env or {})}  # the DAG's own environment wins
        return container_launch(spec, secret_env=target.secret_env, extra_env=env)
