"""Can a remote job reach its task's state store? Refused before anything is launched if not.

The embedded SQLite store is a file on the worker (one machine) and ``memory://`` lives in the worker's
process. A job that runs elsewhere — a container, a pod, an ECS task, a Batch job, a Slurm node —
would run its whole task and then leave its run record in a file nobody reads (the task then fails with
``run record: missing``). So every remote runner checks its state store when it builds the TaskSpec
(``GeniusOperatorMixin.build_task_spec(..., remote=...)``) and refuses, in one line that says what to
configure, unless the store is a server (Redis, PostgreSQL, DynamoDB) or the SQLite file lies in a
folder the job sees at the same path (a shared mount the runner declares):

>>> nothing_shared = RemoteReach("the pod", lambda: [], "mount it at the same path (volumes=, volume_mounts=)")
>>> check_state_reach("redis://cache:6379/0", nothing_shared)
>>> check_state_reach("sqlite:////srv/genius/state.db", RemoteReach("the pod", lambda: ["/srv/genius"], ""))
>>> check_state_reach("sqlite:////home/airflow/genius/state.db", nothing_shared)
Traceback (most recent call last):
...
airflow_genius.operators.state_reach.StateNotReachable: state store sqlite:////home/airflow/genius/state.db is a SQLite file on this worker (the embedded default is per machine), which the pod cannot reach: set a state connection every machine reaches (state_conn_id= or [genius] state_conn_id: Redis, PostgreSQL or DynamoDB), or keep the file in a folder the pod sees at the same path: mount it at the same path (volumes=, volume_mounts=)

The functions below read each platform's declaration of shared folders (pure; the runners hand them
their arguments or their described job/task definition). See docs/state.md#one-machine-or-several.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_genius.core.uris import redact, split_uri

#: What every refusal offers first: a store that every machine reaches.
STATE_CONNECTION_HINT = (
    "set a state connection every machine reaches (state_conn_id= or [genius] state_conn_id: "
    "Redis, PostgreSQL or DynamoDB)"
)


class StateNotReachable(ValueError):
    """A remote job could not reach its task's state store; raised before anything is launched."""


@dataclass(frozen=True)
class RemoteReach:
    """Where a remote runner's job runs, as :func:`check_state_reach` needs it.

    Args:
        job: the job as a message names it (``"the container"``, ``"the pod"``, ``"the Slurm job"``).
        shared_paths: the folders the job sees at the same path as the worker; called only for a SQLite
            store (the AWS runners describe their task/job definition for it).
        how_to_share: how this runner declares such a folder (the refusal's second remedy).
    """

    job: str
    shared_paths: Callable[[], Iterable[str]]
    how_to_share: str


def sqlite_file(state_uri: str) -> str | None:
    """The file of a ``sqlite://`` state URI as the runtime opens it (relative to its working folder
    unless absolute); None for any other store.

    >>> sqlite_file("sqlite:////var/genius/state.db"), sqlite_file("sqlite:///.genius/state.db")
    ('/var/genius/state.db', '.genius/state.db')
    >>> sqlite_file("redis://cache:6379/0") is None
    True
    """
    parts = split_uri(state_uri)
    if parts.scheme != "sqlite":
        return None
    # As SqliteStateManager.from_uri: the path follows "sqlite:///", so a fourth slash makes it absolute.
    return parts.path[1:] if parts.path.startswith("/") else parts.path


def within(path: str, folders: Iterable[str]) -> bool:
    """Whether the absolute ``path`` lies in one of ``folders`` (absolute; ``..`` resolved, symlinks not:
    the job opens the path as written).

    >>> within("/srv/data/state.db", ["/srv/data/"]), within("/srv/database.db", ["/srv/data"])
    (True, False)
    """
    path = posixpath.normpath(path)
    for folder in folders:
        folder = posixpath.normpath(str(folder))
        if folder.startswith("/") and (path == folder or path.startswith(folder.rstrip("/") + "/")):
            return True
    return False


def check_state_reach(state_uri: str, remote: RemoteReach) -> None:
    """Raise :class:`StateNotReachable` (one line: the store, who cannot reach it, what to configure)
    unless ``remote``'s job can reach the state store at ``state_uri``: a server always counts as
    reachable; ``memory://`` never; a SQLite file only at an absolute path in one of
    ``remote.shared_paths()``."""
    scheme = split_uri(state_uri).scheme
    shown = redact(state_uri)
    if scheme == "memory":
        raise StateNotReachable(
            f"state store {shown} lives in this worker's process, which {remote.job} cannot reach: "
            f"{STATE_CONNECTION_HINT}"
        )
    path = sqlite_file(state_uri)
    if path is None:
        return
    if not path.startswith("/"):  # relative to (or "~" of) the worker's folder; the job has its own
        raise StateNotReachable(
            f"state store {shown} is a SQLite file at a path relative to this worker, which {remote.job} "
            f"cannot reach: {STATE_CONNECTION_HINT}, or an absolute state_uri in a folder {remote.job} "
            f"sees at the same path: {remote.how_to_share}"
        )
    if within(path, remote.shared_paths()):
        return
    raise StateNotReachable(
        f"state store {shown} is a SQLite file on this worker (the embedded default is per machine), "
        f"which {remote.job} cannot reach: {STATE_CONNECTION_HINT}, or keep the file in a folder "
        f"{remote.job} sees at the same path: {remote.how_to_share}"
    )


# ---------------------------------------------------------------------- each platform's shared folders
def docker_shared_paths(mounts: Iterable[Mapping[str, Any]]) -> list[str]:
    """Folders a Docker container sees at the same path as the host: writable bind mounts whose source
    is their target (``docker.types.Mount`` is a dict; ``mounts`` of ``DockerOperator``).

    >>> from docker.types import Mount
    >>> docker_shared_paths([Mount("/srv/a", "/srv/a", type="bind"), Mount("/data", "/srv/b", type="bind"),
    ...                      Mount("/srv/c", "/srv/c", type="bind", read_only=True), Mount("/v", "vol")])
    ['/srv/a']
    """
    return [
        str(mount["Target"])
        for mount in mounts
        if str(mount.get("Type", "volume")).lower() == "bind"
        and not mount.get("ReadOnly")
        and mount.get("Source")
        and posixpath.normpath(str(mount["Source"])) == posixpath.normpath(str(mount["Target"]))
    ]


#: Pod volume types that are shared storage: the workers mount the same claim or export at the same path.
POD_SHARED_VOLUMES = ("persistentVolumeClaim", "nfs")


def pod_shared_paths(
    volumes: Iterable[Mapping[str, Any]], volume_mounts: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Folders a pod's container sees at the same path as the worker: writable mounts of a ``hostPath``
    volume whose host folder is the mount path, or of a PersistentVolumeClaim or NFS volume. Volumes
    and mounts as in a pod spec (camelCase dicts, e.g. ``ApiClient().sanitize_for_serialization``).

    >>> vols = [{"name": "h", "hostPath": {"path": "/srv"}}, {"name": "c", "persistentVolumeClaim":
    ...         {"claimName": "lake"}}, {"name": "e", "emptyDir": {}}]
    >>> pod_shared_paths(vols, [{"name": "h", "mountPath": "/srv"}, {"name": "h", "mountPath": "/x"},
    ...                         {"name": "c", "mountPath": "/lake"}, {"name": "e", "mountPath": "/tmp/e"}])
    ['/srv', '/lake']
    """

    def host_folder(volume: Mapping[str, Any], mount: Mapping[str, Any]) -> str | None:
        host = (volume.get("hostPath") or {}).get("path")
        return posixpath.join(str(host), str(mount.get("subPath") or "")) if host else None

    return _same_path_mounts(
        volumes, volume_mounts, volume_key="name", target_key="mountPath", host_folder=host_folder,
        shared_storage=lambda volume: any(volume.get(kind) for kind in POD_SHARED_VOLUMES),
    )  # fmt: skip


def aws_shared_paths(
    volumes: Iterable[Mapping[str, Any]], mount_points: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Folders an ECS task's or Batch job's container sees at the same path as the worker: writable
    mount points of an EFS volume, or of a host volume whose ``sourcePath`` is the container path
    (``volumes`` and ``mountPoints`` of a task definition or a job definition's ``containerProperties``).

    >>> aws_shared_paths([{"name": "efs", "efsVolumeConfiguration": {"fileSystemId": "fs-1"}},
    ...                   {"name": "scratch"}],
    ...                  [{"sourceVolume": "efs", "containerPath": "/mnt/efs"},
    ...                   {"sourceVolume": "scratch", "containerPath": "/scratch"}])
    ['/mnt/efs']
    """
    return _same_path_mounts(
        volumes, mount_points, volume_key="sourceVolume", target_key="containerPath",
        host_folder=lambda volume, _: (volume.get("host") or {}).get("sourcePath"),
        shared_storage=lambda volume: bool(volume.get("efsVolumeConfiguration")),
    )  # fmt: skip


def _same_path_mounts(
    volumes: Iterable[Mapping[str, Any]],
    mounts: Iterable[Mapping[str, Any]],
    *,
    volume_key: str,
    target_key: str,
    host_folder: Callable[[Mapping[str, Any], Mapping[str, Any]], str | None],
    shared_storage: Callable[[Mapping[str, Any]], bool],
) -> list[str]:
    """The targets of the writable ``mounts`` (``readOnly`` unset) whose volume (named by the mount's
    ``volume_key``) is shared storage, or a host folder that is the target itself."""
    by_name = {volume.get("name"): volume for volume in volumes}
    shared = []
    for mount in mounts:
        volume = by_name.get(mount.get(volume_key)) or {}
        target = str(mount.get(target_key) or "")
        if not target or mount.get("readOnly"):
            continue
        source = host_folder(volume, mount)
        if shared_storage(volume) or (source and posixpath.normpath(source) == posixpath.normpath(target)):
            shared.append(target)
    return shared


#: The extra of a Slurm runner's SSH connection that lists the folders its compute nodes share with the
#: workers (at the same path).
SLURM_SHARED_PATHS_EXTRA = "shared_paths"


def connection_shared_paths(extra: Mapping[str, Any]) -> list[str]:
    """The folders a connection's extra declares shared (``shared_paths``: a list, or a string of paths
    separated by commas or whitespace).

    >>> connection_shared_paths({"shared_paths": "/scratch, /home"}), connection_shared_paths({})
    (['/scratch', '/home'], [])
    """
    value = extra.get(SLURM_SHARED_PATHS_EXTRA) or []
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    return [str(item) for item in items if str(item).strip()]


def slurm_reach(ssh_conn_id: str) -> RemoteReach:
    """The :class:`RemoteReach` of a Slurm job submitted through the SSH connection ``ssh_conn_id``: its
    shared folders are that connection's extra ``shared_paths`` (read only for a SQLite store)."""

    def shared() -> list[str]:
        from airflow.sdk import BaseHook

        return connection_shared_paths(BaseHook.get_connection(ssh_conn_id).extra_dejson)

    return RemoteReach(
        "the Slurm job",
        shared,
        f'list that folder in the extra "{SLURM_SHARED_PATHS_EXTRA}" of the SSH connection '
        f"{ssh_conn_id!r} (a filesystem the workers and the compute nodes mount at the same path)",
    )
