"""The Docker request of a genius container launch (pure: no Docker, no Airflow imports).

:func:`docker_request` maps a :class:`~airflow_genius.operators.container.ContainerLaunch` to the
arguments of the official ``DockerOperator``; :func:`container_name_for` names the container of one
task instance (the same on every try, which is how a retry finds a container an earlier try left
running).

>>> from airflow_genius.core.spec import build_spec
>>> from airflow_genius.operators.container import container_launch
>>> spec = build_spec("pkg.mod:Task", "go", dag_id="d", task_id="t", run_id="r")
>>> request = docker_request(container_launch(spec, secret_env={"GENIUS_STATE_PASSWORD": "pw"}))
>>> request.command, sorted(request.environment), request.private_environment
(['run', '--spec-env', 'GENIUS_TASK_SPEC'], ['GENIUS_TASK_SPEC'], {'GENIUS_STATE_PASSWORD': 'pw'})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_genius.core.naming import instance_name

if TYPE_CHECKING:
    from airflow_genius.operators.container import ContainerLaunch

#: Label keys the operator sets on its containers (``docker ps --filter label=airflow_genius.dag_id=etl``).
LABEL_PREFIX = "airflow_genius."
#: Labels that identify the task instance a container belongs to; a retry reattaches only to a
#: container whose labels match (a user-chosen ``container_name`` could be anyone's).
IDENTITY_LABELS: tuple[str, ...] = ("dag_id", "task_id", "run_id", "map_index")


@dataclass(frozen=True)
class DockerRequest:
    """What the genius launch sets on ``DockerOperator``.

    * ``command``: the arguments after the image's ``genius`` ENTRYPOINT (``entrypoint`` is left alone);
    * ``environment``: plain environment (the user's + the TaskSpec in ``GENIUS_TASK_SPEC``);
    * ``private_environment``: secrets (the user's private environment + the state store password);
      ``DockerOperator`` neither templates nor renders them, and they never reach argv;
    * ``labels``: the user's labels + the task instance's identity.
    """

    command: list[str]
    environment: dict[str, str]
    private_environment: dict[str, str]
    labels: dict[str, str]


def docker_request(
    launch: ContainerLaunch,
    *,
    private_environment: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | Sequence[str] | None = None,
) -> DockerRequest:
    """The ``DockerOperator`` arguments of ``launch`` (pure; unit-tested in tests/containers/docker).

    The user's plain environment is already in ``launch.env`` (passed to ``prepare_launch`` as
    ``extra_env``, which refuses the runtime's reserved names). A secret the launch carries must not be
    shadowed by the user's ``private_environment``, nor may a private name replace a plain one: both
    would silently hand the runtime a value other than the one the operator resolved. Private names
    are checked like plain ones (:func:`~airflow_genius.operators.container.check_environment`).
    """
    from airflow_genius.operators.container import check_environment

    private = dict(private_environment or {})
    check_environment(private, where="private_environment", reserved={*launch.secret_env, *launch.env})
    if isinstance(labels, Mapping):
        user_labels = {str(key): str(value) for key, value in labels.items()}
    else:  # DockerOperator also takes a list of label names (empty values)
        user_labels = dict.fromkeys((str(name) for name in labels or ()), "")
    run = launch.spec.run
    identity = {f"{LABEL_PREFIX}{name}": str(getattr(run, name)) for name in IDENTITY_LABELS}
    identity[f"{LABEL_PREFIX}try_number"] = str(run.try_number)
    return DockerRequest(
        command=list(launch.args),
        environment={key: str(value) for key, value in launch.env.items()},
        private_environment={**private, **launch.secret_env},
        labels={**user_labels, **identity},
    )


def container_name_for(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The container name of one task instance: readable, valid for Docker
    (``[a-zA-Z0-9][a-zA-Z0-9_.-]+``) and unique by a hash of the exact identity.

    >>> container_name_for("etl", "clean", "manual__2024-05-06T00:00:00+00:00")
    'genius-etl-clean-eb6b083fb016'
    """
    return instance_name(dag_id, task_id, run_id, map_index)


def belongs_to(container_labels: Mapping[str, str] | None, identity: Mapping[str, object]) -> bool:
    """Whether a container's labels name this task instance (dag, task, run, map index)."""
    labels = container_labels or {}
    return all(labels.get(f"{LABEL_PREFIX}{name}") == str(identity[name]) for name in IDENTITY_LABELS)
