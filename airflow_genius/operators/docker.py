"""Run a genius task in a Docker container: the official ``DockerOperator`` plus the genius launch.

.. code-block:: python

    from docker.types import Mount

    from airflow_genius.operators.docker import GeniusDockerBoltOperator

    count = GeniusDockerBoltOperator(
        task_id="count",
        task_class="my_project.tasks:WordCount",   # importable inside the image
        method="count",
        input_uri="/data/quotes/",                 # paths as the container sees them
        output_uri="/data/counts/",
        state_conn_id="genius_redis",               # the container must reach the store
        image="my-genius-tasks:1.4",                # FROM airflow-genius-runtime (ENTRYPOINT genius)
        docker_url="unix://var/run/docker.sock",
        network_mode="host",
        mounts=[Mount(target="/data", source="/srv/data", type="bind")],
    )

What reaches the container: the image's ``genius`` ENTRYPOINT is kept and ``command`` is
``run --spec-env GENIUS_TASK_SPEC``; the TaskSpec (no credentials) is in the plain ``environment``;
the state store's password travels only in ``private_environment`` (never templated, rendered, logged
or put in argv). The container's output is streamed into the task log. The **result** (the XCom) comes
from the run record the runtime writes, not from stdout; a non-zero exit fails the task with the
task's own error and traceback from that record.

The container is named after the task instance (:func:`container_name_for`, the same on every try).
DockerOperator has neither a deferrable mode nor reattach; this operator adds the cheap sound part: a
retry that finds the container of an earlier try still running (the worker died, the container did
not) follows its output and waits for it instead of starting a second one on the same run record. An
earlier try's container that already ended is removed and the task runs again (runs are idempotent).
Killing the task (``on_kill``) stops the container; the runtime records the run CANCELLED.
Services (a container that keeps serving after its task) are in ``operators/docker_service.py``.
See docs/runners/docker.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from airflow.providers.docker.operators.docker import DockerOperator

from airflow_genius import __version__
from airflow_genius import _provider_compat as compat
from airflow_genius.links.output import GeniusOutputLink
from airflow_genius.links.record import GeniusRecordLink
from airflow_genius.operators.base import GENIUS_TEMPLATE_FIELDS, identity_from_context
from airflow_genius.operators.container import SPEC_ENV, GeniusContainerMixin, check_environment
from airflow_genius.operators.docker_request import LABEL_PREFIX

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_genius.operators.container import ContainerLaunch
    from airflow_genius.operators.state_reach import RemoteReach

#: Default image: docker/Dockerfile built and tagged with the package version (see docker/README.md).
#: The test rig builds ``localhost/airflow-genius-runtime:dev``.
DEFAULT_IMAGE = f"airflow-genius-runtime:{__version__}"

RemovePolicy = Literal["never", "success", "force"]


def task_container(cli: Any, name: str | None, who: Mapping[str, Any]) -> dict[str, Any] | None:
    """The container named ``name`` (its inspect dict) if it belongs to the task instance ``who``
    (dag_id, task_id, run_id, map_index), None if there is none. ``cli``: a ``docker.APIClient``.

    Shared by the job runner (reattach), the service runner (reattach) and the service stop
    operator. A container of that name whose labels name another task instance (a user-chosen
    ``container_name`` taken by someone else's container) is never followed, stopped or removed:
    ``RuntimeError``.
    """
    from docker.errors import NotFound

    from airflow_genius.operators.docker_request import belongs_to

    try:
        found: dict[str, Any] = cli.inspect_container(name)
    except NotFound:
        return None
    if not belongs_to(found.get("Config", {}).get("Labels"), who):
        raise RuntimeError(
            f"container name {name!r} is taken by container {found['Id'][:12]}, "
            "which does not belong to this task instance; choose another container_name"
        )
    return found


class GeniusDockerOperator(GeniusContainerMixin, DockerOperator):
    """Run a genius task in a Docker container; the run record's result is the XCom.

    Takes the genius arguments of :class:`~airflow_genius.operators.base.GeniusOperatorMixin` and every
    ``DockerOperator`` argument except ``command`` (the genius launch sets it). Defaults that differ:

    Args:
        image: an image built from docker/Dockerfile (default :data:`DEFAULT_IMAGE`).
        auto_remove: ``"force"`` (default: the container is removed once its exit code and output are
            read; the run record and the task log keep what matters), ``"success"`` or ``"never"``
            (kept for inspection; the next try of the same task instance removes it).
        mount_tmp_dir: ``False`` (the runtime does not use ``AIRFLOW_TMP_DIR``, and the worker's
            0700 temporary folder is not writable by the image's uid 50000 anyway).
        container_name: default :func:`container_name_for` of the task instance (reattach uses it).
        stop_timeout: seconds ``on_kill`` gives the container between SIGTERM (the runtime records the
            run CANCELLED) and SIGKILL.
    """

    operator_extra_links = (*DockerOperator.operator_extra_links, GeniusOutputLink(), GeniusRecordLink())

    template_fields: Sequence[str] = (*GENIUS_TEMPLATE_FIELDS, *DockerOperator.template_fields)
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DockerOperator.template_fields_renderers,
        "genius_call": "json",
        "environment": "json",
    }
    ui_color = "#2496ed"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        image: str = DEFAULT_IMAGE,
        auto_remove: RemovePolicy = "force",
        mount_tmp_dir: bool = False,
        stop_timeout: int = 10,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("command") is not None:
            raise ValueError("GeniusDockerOperator sets `command` itself (genius run --spec-env …); drop it")
        super().__init__(image=image, auto_remove=auto_remove, mount_tmp_dir=mount_tmp_dir, **kwargs)
        self.stop_timeout = stop_timeout
        self.streamed_lines: list[str] = []  # the container's output as this task log got it
        # Refused when the DAG is parsed already (keys are never templated); checked again at launch.
        check_environment(self.environment, where="environment")
        check_environment(
            compat.docker_private_environment(self), where="private_environment", reserved=(SPEC_ENV,)
        )

    def execute(self, context: Context) -> Any:
        who = identity_from_context(context)
        launch = self._prepare_container(context, who)
        # DockerOperator would remove the container before we read its exit code; we remove it
        # ourselves afterwards (and on_kill then only stops it, leaving removal to this thread).
        remove, self.auto_remove = self.auto_remove, "never"
        self.log.info(
            "running %s.%s in container %s (image %s)",
            launch.spec.task.class_path, launch.spec.task.method, self.container_name, self.image,
        )  # fmt: skip
        exit_code: int | None = None
        try:
            exit_code, failure = self._run_container(context, who)
            if failure:
                self.log.error("%s", failure)
            # Before the container is removed: its output is quoted when the run record cannot explain.
            return self.finish_remote(context, failure=failure, log_tail=self._log_tail)
        finally:
            self._remove_container(remove, exit_code)

    def _run_container(self, context: Context, who: Mapping[str, Any]) -> tuple[int | None, str | None]:
        """Run this task instance's container (or follow an earlier try's) until it ends: its exit code
        and, unless 0, what the platform says went wrong."""
        from airflow.providers.docker.exceptions import DockerContainerFailedException
        from docker.errors import APIError

        previous = self._running_container_of_earlier_try(who)
        self.streamed_lines = []
        try:
            if previous is not None:
                exited_zero = self._reattach(previous)
            else:
                # Streams the container's output into this log. Its return value (the last log line) is
                # not the result: the run record is. It raises on a non-zero exit, read below.
                try:
                    super().execute(context)
                    exited_zero = True
                except DockerContainerFailedException as exc:
                    exited_zero = False
                    self.streamed_lines = [
                        line.decode("utf-8", "replace") if isinstance(line, bytes) else line
                        for line in exc.logs or ()
                    ]
        except APIError as exc:
            # The engine created the container but could not start its process (an ENTRYPOINT that is
            # not in the image): the engine's explanation is the cause.
            if not self._never_started():
                raise
            return None, f"container {self.container_name} did not start: {exc.explanation or exc}"
        return (0, None) if exited_zero else self._exit_status()

    def _prepare_container(self, context: Context, who: Mapping[str, Any]) -> ContainerLaunch:
        """Set the genius launch of this task instance on DockerOperator's arguments (command,
        environment, private environment, labels, the deterministic container name); its launch."""
        from airflow_genius.operators.docker_request import container_name_for, docker_request

        if self.env_file:  # rendered by now; DockerOperator passes its variables on as plain environment
            check_environment(self.unpack_environment_variables(self.env_file), where="env_file")
        launch = self.prepare_launch(context, extra_env=self.environment)
        request = docker_request(
            launch, private_environment=compat.docker_private_environment(self), labels=self.labels
        )
        self.command = request.command
        self.environment = request.environment
        compat.set_docker_private_environment(self, request.private_environment)
        self.labels = request.labels
        self.container_name = self.container_name or container_name_for(
            who["dag_id"], who["task_id"], who["run_id"], who["map_index"]
        )
        return launch

    def genius_remote_job_id(self) -> str | None:
        return self.container_name  # deterministic per task instance

    def on_kill(self) -> None:
        """Stop the container: SIGTERM, then SIGKILL after ``stop_timeout`` seconds.

        DockerOperator's ``on_kill`` stops without a timeout, which podman's Docker API takes as 0 (an
        immediate SIGKILL: the runtime could not record the run CANCELLED). The execute thread, which
        is still waiting on the container, reads its exit code and removes it afterwards.
        """
        if self.container is None or not self.hook.client_created:
            self.log.info("on_kill: no container was created, nothing to stop")
            return
        self.log.info(
            "Stopping docker container %s (SIGTERM, SIGKILL after %ss)",
            self.container["Id"][:12],
            self.stop_timeout,
        )
        self.cli.stop(self.container["Id"], timeout=self.stop_timeout)

    # ------------------------------------------------------------------ reattach
    def _previous_container(self, who: Mapping[str, Any]) -> dict[str, Any] | None:
        """The container of an earlier try of this task instance (by name), if any."""
        return task_container(self.cli, self.container_name, who)

    def _running_container_of_earlier_try(self, who: Mapping[str, Any]) -> dict[str, Any] | None:
        """An earlier try's container that still runs (to reattach to); one that ended is removed."""
        previous = self._previous_container(who)
        if previous is not None and previous["State"].get("Running"):
            return previous
        if previous is not None:
            self.log.info("removing the ended container %s of an earlier try", previous["Id"][:12])
            self.cli.remove_container(previous["Id"], force=True)
        return None

    def _adopt(self, previous: Mapping[str, Any]) -> int | None:
        """Make an earlier try's running container this try's (``on_kill`` stops it from now on);
        the number of the try that started it (None if its label is missing)."""
        labels = previous.get("Config", {}).get("Labels") or {}
        started_by = labels.get(f"{LABEL_PREFIX}try_number", "?")
        self.log.info(
            "reattaching to container %s (%s) started by try %s",
            previous["Id"][:12], self.container_name, started_by,
        )  # fmt: skip
        self.container = {"Id": previous["Id"]}
        return int(started_by) if started_by.isdigit() else None

    def _reattach(self, previous: dict[str, Any]) -> bool:
        """Follow the output of an earlier try's running container and wait for it to end; whether it
        exited 0."""
        from airflow.providers.docker.operators.docker import fetch_logs

        self._adopt(previous)
        self.log.info("its output from the start follows")
        stream = self.cli.logs(previous["Id"], stdout=True, stderr=True, stream=True, follow=True)
        self.streamed_lines = fetch_logs(stream, self.log)
        return bool(self.cli.wait(previous["Id"]).get("StatusCode") == 0)

    # ------------------------------------------------------------------ ending
    def _exit_status(self) -> tuple[int, str | None]:
        """The container's exit code and, unless 0, what the platform says went wrong."""
        state = self.cli.inspect_container(self.container["Id"])["State"]
        code = int(state.get("ExitCode", -1))
        if code == 0:
            return code, None
        detail = " (killed: out of memory)" if state.get("OOMKilled") else ""
        if state.get("Error"):
            detail += f" ({state['Error']})"
        return code, f"container {self.container_name} exited {code}{detail}"

    def _never_started(self) -> bool:
        """Whether our container exists but its process never ran."""
        if self.container is None:
            return False
        return bool(self.cli.inspect_container(self.container["Id"])["State"].get("Status") == "created")

    def _log_tail(self) -> str | list[str]:
        """The last lines of the ended container's output: as streamed into the task log, else (none
        streamed) as the engine keeps them ("" when it has none)."""
        from airflow_genius.operators.base import LOG_TAIL_LINES
        from airflow_genius.operators.docker_service import container_output

        if self.streamed_lines or self.container is None:
            return self.streamed_lines[-LOG_TAIL_LINES:]
        return container_output(self.cli, self.container["Id"], LOG_TAIL_LINES)

    def _remove_container(self, policy: str, exit_code: int | None) -> None:
        """Remove our container per ``auto_remove``, after its output and exit code were read."""
        from docker.errors import APIError

        if self.container is None or policy == "never" or (policy == "success" and exit_code != 0):
            return
        try:
            self.cli.remove_container(self.container["Id"], force=True)
        except APIError as exc:  # best effort: the next try of this task instance removes it too
            self.log.warning("could not remove container %s: %s", self.container["Id"][:12], exc)

    def genius_remote_reach(self) -> RemoteReach:
        """The container shares with the worker the folders bind-mounted at the same path (``mounts``):
        an embedded SQLite store elsewhere is refused before the container is created."""
        from airflow_genius.operators.state_reach import RemoteReach, docker_shared_paths

        return RemoteReach(
            "the container",
            lambda: docker_shared_paths(self.mounts),
            "bind-mount it at the same path (mounts=[Mount(target=<folder>, source=<folder>, type='bind')])",
        )


class GeniusDockerSpoutOperator(GeniusDockerOperator):
    """A genius :class:`~airflow_genius.core.task.Spout` in a Docker container."""

    genius_kind = "spout"


class GeniusDockerBoltOperator(GeniusDockerOperator):
    """A genius :class:`~airflow_genius.core.task.Bolt` in a Docker container."""

    genius_kind = "bolt"
