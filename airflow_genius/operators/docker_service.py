"""Run a genius service in a Docker container: start it, wait until it answers, publish where it listens.

.. code-block:: python

    from airflow_genius.operators.docker import GeniusDockerOperator
    from airflow_genius.operators.docker_service import (
        GeniusDockerServiceOperator,
        GeniusDockerServiceStopOperator,
    )

    DOCKER = {"image": "my-genius-tasks:1.4", "docker_url": "unix://var/run/docker.sock",
              "network_mode": "genius"}                     # a user-defined network (or "host")
    start = GeniusDockerServiceOperator(
        task_id="start_echo",
        task_class="airflow_genius.examples.tasks:EchoService",
        method="serve",
        service_port=8000,          # $SERVICE_PORT inside the container
        health_path="/health",
        ready_timeout=120,
        **DOCKER,
    )
    ask = GeniusDockerOperator.partial(
        task_id="ask", service="start_echo",                # SERVICE_URL etc. in each client's environment
        task_class="airflow_genius.examples.tasks:ServiceClient", method="call", **DOCKER,
    ).expand(method_kwargs=[{"times": 20, "path": "/echo"}] * 2)
    stop = GeniusDockerServiceStopOperator(task_id="stop_echo", service="start_echo", **DOCKER)
    start >> ask >> stop.as_teardown(setups=start)

**Start.** :class:`GeniusDockerServiceOperator` is the Docker job runner
(:class:`~airflow_genius.operators.docker.GeniusDockerOperator`, itself ``DockerOperator``) with a
``service`` section in the TaskSpec: the same launch (command, environment, private environment,
labels, the deterministic container name), but the container is started *detached* — DockerOperator's
own code creates and starts it with every argument it supports, and is kept from attaching to the
output and waiting for the exit. The task then waits until the run record says the service answered
its health path (the runtime probes it from inside the container), and returns what clients need: the
XCom ``{"name", "hostname", "port", "url", "health_path", "ready_at", …, "container", "container_id"}``.
The container keeps running after the task succeeded.

**Address.** ``hostname`` is the container's IP address on its network (``network_mode``'s, else its
first), read from the engine once the container runs: other containers on that network — the default
bridge included, which has no DNS — and the Docker host itself reach it there. With
``network_mode="host"`` the container has no address of its own: the runtime's is published (the
Docker host's primary address, or ``SERVICE_HOSTNAME`` from ``environment``). ``advertise="name"``
publishes the container name instead (resolved by the engine's DNS on user-defined networks only);
``service_hostname=`` publishes any address you choose (e.g. the Docker host's name, with
``port_bindings={port: port}``, for clients outside Docker).

**Failure.** A service that ends, or does not answer in ``start_timeout + ready_timeout`` seconds,
fails the task with the container's last log lines in the error; the container is stopped and (with the
default ``auto_remove="force"``) removed. ``on_kill`` stops it. **Retry:** a retry finds the earlier
try's container by its deterministic name; if it still runs (the worker died, the engine kept it) the
task reattaches to it — readiness from the run record of the try that started it, no second container.

**Stop.** :class:`GeniusDockerServiceStopOperator` (a teardown) finds the service's container by the
same deterministic name — not by XCom, so it also works after a start task that failed half-way — and
stops it: SIGTERM, which the runtime records as the service's normal end (run record SUCCESS, result
``{"service", "stopped", "served_seconds", "ready"}``), then SIGKILL after ``stop_timeout``. Nothing
to stop is not an error (idempotent). See docs/runners/docker.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.docker.operators.docker import DockerOperator

from airflow_genius.operators.base import identity_from_context
from airflow_genius.operators.docker import (
    DEFAULT_IMAGE,
    GeniusDockerOperator,
    RemovePolicy,
    task_container,
)
from airflow_genius.operators.service import ERROR_TAIL_LINES, LOG_LINES, GeniusServiceMixin, ServiceNotReady

if TYPE_CHECKING:
    from airflow.sdk import Context

#: What a service publishes as its ``hostname``: its IP address on its network, or its container name.
Advertise = Literal["ip", "name"]
#: Container states in which a stop has nothing left to do.
_ENDED = ("created", "configured", "exited", "stopped", "dead")


def container_address(inspect: Mapping[str, Any], network_mode: str | None) -> str | None:
    """The IP address of a container on its network, from its inspect dict; None when it has none of
    its own (``host`` or ``container:`` networking, ``none``, not running).

    The network named by ``network_mode`` wins; otherwise the first network (by name) with an address.

    >>> settings = {"NetworkSettings": {"Networks": {"b": {"IPAddress": "10.89.0.5"}, "a": {"IPAddress": ""}}}}
    >>> container_address(settings, "b"), container_address(settings, None), container_address(settings, "host")
    ('10.89.0.5', '10.89.0.5', None)
    """
    mode = (network_mode or "").strip()
    if mode in ("host", "none") or mode.startswith(("container:", "ns:")):
        return None
    settings = inspect.get("NetworkSettings") or {}
    networks: Mapping[str, Any] = settings.get("Networks") or {}
    if mode in networks and (networks[mode] or {}).get("IPAddress"):
        return str(networks[mode]["IPAddress"])
    for name in sorted(networks):
        address = (networks[name] or {}).get("IPAddress")
        if address:
            return str(address)
    return str(settings.get("IPAddress") or "") or None


def container_output(cli: Any, container_id: str, lines: int) -> str:
    """The last ``lines`` lines of a container's stdout and stderr ("" when the engine has none)."""
    raw = cli.logs(container_id, stdout=True, stderr=True, tail=lines)
    return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).rstrip()


class _DetachedStart:
    """The Docker client that DockerOperator's own code uses while it starts a service: every call goes
    to the engine, except that attaching to the container's output and waiting for its exit return at
    once — a job is waited on, a service is not (its readiness comes from its run record).

    DockerOperator runs a container as create → attach → start → read the attached stream → wait; only
    the two waiting steps are answered here, so every argument DockerOperator supports (mounts, network,
    devices, ulimits, …) reaches the engine through its own code.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def attach(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        return iter(())

    def wait(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"StatusCode": 0}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class GeniusDockerServiceOperator(GeniusServiceMixin, GeniusDockerOperator):
    """Start a genius service (a task method that serves until stopped) in a Docker container, wait
    until it answers its health path, and publish where it listens (the XCom clients' ``service=`` reads).

    Takes the service arguments of :class:`~airflow_genius.operators.service.GeniusServiceMixin`
    (``service_port``, ``health_path``, ``ready_timeout``, ``start_timeout``, ``service_name``), the
    genius arguments, and every argument of
    :class:`~airflow_genius.operators.docker.GeniusDockerOperator` (``image``, ``docker_url``,
    ``network_mode``, ``mounts``, ``auto_remove``, ``stop_timeout``, …). Besides:

    Args:
        advertise: ``"ip"`` (default): publish the container's IP address on its network (with
            ``network_mode="host"``: the address the runtime reports, the Docker host's); ``"name"``:
            publish the container name (DNS on user-defined networks only).
        service_hostname: publish this address instead (e.g. the Docker host's name for clients outside
            Docker, with ``port_bindings`` publishing the same port number).
    """

    def __init__(
        self, *, advertise: Advertise = "ip", service_hostname: str | None = None, **kwargs: Any
    ) -> None:
        if advertise not in ("ip", "name"):
            raise ValueError(f"advertise must be 'ip' or 'name', got {advertise!r}")
        super().__init__(**kwargs)
        self.advertise = advertise
        self.service_hostname = service_hostname
        self._starting = False
        self._genius_killed = False

    @property
    def cli(self) -> Any:
        """DockerOperator's client; while DockerOperator starts the service, one that does not wait."""
        client = self.hook.api_client
        return _DetachedStart(client) if self._starting else client

    def execute(self, context: Context) -> Any:
        """Start (or reattach to) the service; what it publishes once ready (the XCom)."""
        who = identity_from_context(context)
        launch = self._prepare_container(context, who)
        # This operator removes the container itself, and only when the service failed to start.
        remove, self.auto_remove = self.auto_remove, "never"
        started_by: int | None = None  # the try whose run record counts: this one, unless reattached
        try:
            previous = self._running_container_of_earlier_try(who)
            if previous is not None:
                started_by = self._adopt(previous)
            else:
                self.log.info(
                    "starting service %s (%s.%s) in container %s (image %s), port %s",
                    self.published_name, launch.spec.task.class_path, launch.spec.task.method,
                    self.container_name, self.image, launch.spec.service and launch.spec.service.port,
                )  # fmt: skip
                self._start_detached(context)
            if self._genius_killed:  # on_kill came before the container existed: it has not stopped it
                raise ServiceNotReady("the task was killed while its service was starting")
            published = self.wait_until_ready(
                context,
                running=self._running,
                log_tail=lambda: container_output(self.cli, self.container["Id"], ERROR_TAIL_LINES),
                hostname=self._published_hostname(),
                try_number=started_by,
            )
        except BaseException:
            self._stop_after_failure(remove)
            raise
        output = container_output(self.cli, self.container["Id"], LOG_LINES)
        if output:
            self.log.info("the service's output so far (last %d lines):\n%s", LOG_LINES, output)
        self.log.info(
            "container %s keeps serving at %s until GeniusDockerServiceStopOperator(service=%r) stops it",
            self.container_name, published["url"], self.task_id,
        )  # fmt: skip
        return {**published, "container": self.container_name, "container_id": self.container["Id"]}

    def on_kill(self) -> None:
        """Stop the service's container (SIGTERM, then SIGKILL after ``stop_timeout`` seconds); the
        waiting task then fails and removes it."""
        from docker.errors import NotFound

        self._genius_killed = True
        with suppress(NotFound):  # already stopped and removed by a failed start
            super().on_kill()

    # ------------------------------------------------------------------ helpers
    def _start_detached(self, context: Context) -> None:
        """DockerOperator's execute (pull if missing, create, start), without waiting for the exit."""
        self._starting = True
        try:
            DockerOperator.execute(self, context)
        finally:
            self._starting = False

    def _running(self) -> bool:
        from docker.errors import APIError, NotFound

        try:
            state = self.cli.inspect_container(self.container["Id"])["State"]
        except NotFound:
            return False
        except APIError as exc:  # a passing engine error: the deadline still bounds the wait
            self.log.warning("could not inspect container %s: %s", self.container["Id"][:12], exc)
            return True
        return bool(state.get("Running"))

    def _published_hostname(self) -> str | None:
        """The address clients get (None: the one the runtime recorded), see ``advertise``."""
        if self.service_hostname:
            return self.service_hostname
        if self.advertise == "name":
            return str(self.container_name)
        return container_address(self.cli.inspect_container(self.container["Id"]), self.network_mode)

    def _stop_after_failure(self, remove: str) -> None:
        """The service did not become ready (or the task was killed): stop its container, then remove
        it per ``auto_remove`` ("force" removes it; the next try removes a kept one)."""
        from docker.errors import APIError

        if self.container is None:
            return
        self.log.info(
            "stopping service container %s (SIGTERM, SIGKILL after %ss)",
            self.container_name,
            self.stop_timeout,
        )
        try:
            self.cli.stop(self.container["Id"], timeout=self.stop_timeout)
        except APIError as exc:  # gone already, or the engine refuses: the removal below still forces it
            self.log.warning("could not stop container %s: %s", self.container["Id"][:12], exc)
        self._remove_container(remove, None)
        if remove == "force":
            self.container = None  # type: ignore[assignment]  # nothing left for on_kill


class GeniusDockerServiceStopOperator(DockerOperator):
    """Teardown: stop the container of the service task ``service`` in this DAG run.

    The container is found by the service task instance's deterministic name (its labels checked), so
    the stop works whether the start task succeeded, failed half-way or is being retried; a run with
    nothing to stop succeeds too. The service's last output lines are copied into this task's log.

    Takes ``DockerOperator``'s engine arguments (``docker_url``, ``docker_conn_id``, ``tls_*``,
    ``api_version``, ``timeout``) — the same dict as the start operator's works; its container
    arguments are ignored. Besides:

    Args:
        service: task id of the :class:`GeniusDockerServiceOperator` to stop.
        service_map_index: its map index, for a mapped start task (default -1: not mapped).
        stop_timeout: seconds between SIGTERM (the runtime ends the service's record SUCCESS) and SIGKILL.
        auto_remove: ``"force"`` (default: the container is removed once stopped), ``"success"``
            (removed if it exited 0) or ``"never"``.
        container_name: the start operator's ``container_name``, if you set one there.

    Returns (XCom): ``{"container", "stopped": whether it was running, "exit_code"}``, or
    ``{"container", "stopped": False, "exit_code": None}`` when there was none.
    """

    ui_color = "#2496ed"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        service: str,
        service_map_index: int = -1,
        image: str = DEFAULT_IMAGE,
        stop_timeout: int = 10,
        auto_remove: RemovePolicy = "force",
        **kwargs: Any,
    ) -> None:
        super().__init__(image=image, auto_remove=auto_remove, **kwargs)
        self.service = service
        self.service_map_index = service_map_index
        self.stop_timeout = stop_timeout

    def execute(self, context: Context) -> Any:
        """Stop the service's container; ``{"container", "stopped", "exit_code"}`` (the XCom)."""
        from airflow_genius.operators.docker_request import container_name_for

        ti = context["ti"]
        index = self.service_map_index
        who = {"dag_id": ti.dag_id, "task_id": self.service, "run_id": ti.run_id, "map_index": index}
        name = self.container_name or container_name_for(ti.dag_id, self.service, ti.run_id, index)
        found = task_container(self.cli, name, who)
        if found is None:
            self.log.info("no container %s of service %r in this run: nothing to stop", name, self.service)
            return {"container": name, "stopped": False, "exit_code": None}
        state = found["State"]
        running = state.get("Status") not in _ENDED
        if running:
            self.log.info(
                "stopping service container %s (SIGTERM, SIGKILL after %ss)", name, self.stop_timeout
            )
            self.cli.stop(found["Id"], timeout=self.stop_timeout)
            state = self.cli.inspect_container(found["Id"])["State"]
        code = state.get("ExitCode")
        output = container_output(self.cli, found["Id"], LOG_LINES)
        if output:
            self.log.info("the service's last output (up to %d lines):\n%s", LOG_LINES, output)
        if code not in (0, None):
            self.log.warning(
                "service container %s exited %s: it failed before, or did not end within stop_timeout "
                "(%ss) and was killed; its run record tells which", name, code, self.stop_timeout,
            )  # fmt: skip
        if self.auto_remove == "force" or (self.auto_remove == "success" and code == 0):
            self.cli.remove_container(found["Id"], force=True)
            self.log.info("removed container %s", name)
        return {"container": name, "stopped": running, "exit_code": code}
