"""What every service operator shares: the service arguments, waiting until the service is ready (from
its run record), and what it publishes to clients.

A runner's service operator (Docker, Kubernetes, ECS, Slurm) launches the genius task with a ``service``
section in its TaskSpec, then calls :meth:`GeniusServiceMixin.wait_until_ready` with two callbacks of its
own — whether the remote job still runs, and the tail of its log — and returns what it publishes:

.. code-block:: python

    start = GeniusDockerServiceOperator(
        task_id="start_echo", image="…", task_class="airflow_genius.examples.tasks:EchoService",
        method="serve", service_port=8000, health_path="/health", ready_timeout=120,
    )
    clients = GeniusDockerOperator.partial(
        task_id="ask", image="…", service="start_echo",   # SERVICE_URL etc. in the client's environment
        task_class="airflow_genius.examples.tasks:ServiceClient", method="call",
    ).expand(method_kwargs=[{"times": 20, "path": "/echo"}] * 2)
    stop = GeniusDockerServiceStopOperator(task_id="stop_echo", service="start_echo")
    start >> clients >> stop.as_teardown(setups=start)

Readiness is one rule for every runner (``core/service.py``): the runtime beside the service probes its
health path and records ``ready_at`` in the run record; the operator reads the record, so the worker
needs no network path to the service to know it is up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_genius.core.service import (
    DEFAULT_HEALTH_PATH,
    DEFAULT_PORT,
    DEFAULT_READY_TIMEOUT,
    ServiceInfo,
    client_env,
)
from airflow_genius.core.state import RunKey, Status
from airflow_genius.operators.base import (
    GeniusOperatorMixin,
    GeniusTaskFailed,
    identity_from_context,
    with_log_tail,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Seconds a platform may take to start the service's process (image pull, scheduling) on top of the
#: service's own ``ready_timeout``.
DEFAULT_START_TIMEOUT = 300.0
#: Lines of the service's log quoted when it did not get ready: its start, so more than a job's failure.
ERROR_TAIL_LINES = 40
#: Lines of the service's log copied into the task log once it is ready (and by a stop task).
LOG_LINES = 200


class ServiceNotReady(GeniusTaskFailed):
    """The service ended, or did not answer its health path in time (the remote log tail is in the text)."""


def published_env(context: Context, service_task_id: str | None) -> dict[str, str]:
    """``SERVICE_NAME/HOSTNAME/PORT/URL`` for a client, from the service task's XCom ({} without one)."""
    if not service_task_id:
        return {}
    published = context["ti"].xcom_pull(task_ids=service_task_id)
    if not isinstance(published, Mapping):
        raise GeniusTaskFailed(
            f"service task {service_task_id!r} published no service (XCom {published!r}); "
            "did it run and succeed before this client?"
        )
    return client_env(published)


class GeniusServiceMixin(GeniusOperatorMixin):
    """Genius service arguments; put it first among a service operator's bases.

    Args:
        service_port: the port the service listens on (``$SERVICE_PORT`` in its environment).
        health_path: HTTP path that answers 2xx once the service is ready.
        ready_timeout: seconds the started service has to answer ``health_path``.
        start_timeout: seconds the platform may take to start it (pull, schedule) before that.
        service_name: the name published to clients (default: the task id).
    """

    def __init__(
        self,
        *,
        service_port: int = DEFAULT_PORT,
        health_path: str = DEFAULT_HEALTH_PATH,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        start_timeout: float = DEFAULT_START_TIMEOUT,
        service_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.genius_service: Mapping[str, Any] = {
            "service_port": service_port,
            "health_path": health_path,
            "ready_timeout": ready_timeout,
            "service_name": service_name,
        }
        self.start_timeout = start_timeout

    @property
    def published_name(self) -> str:
        return str(self.genius_service["service_name"] or self.task_id)

    def wait_until_ready(
        self,
        context: Context,
        *,
        running: Callable[[], bool],
        log_tail: Callable[[], str],
        hostname: str | Callable[[], str] | None = None,
        poll: float = 0.1,
        try_number: int | None = None,
    ) -> dict[str, Any]:
        """Wait until the service's run record says it answers its health path; return what to publish.

        ``running()`` says whether the remote job still runs; ``log_tail()`` gives its last log lines for
        the error. ``hostname`` overrides the address the runtime recorded (a Kubernetes Service name, a
        load balancer), or a callable asked once the service is ready (the node a queued job landed
        on). Raises :class:`ServiceNotReady` when the job ended first or the time ran out —
        the caller stops the job then (``on_kill``-like cleanup). ``try_number``: the try whose run record
        counts (default: this try); a runner that reattached to a job an earlier try started passes that
        try's number.
        """
        who = identity_from_context(context)
        wanted_try = who["try_number"] if try_number is None else try_number
        key = RunKey(who["dag_id"], who["task_id"], who["run_id"], who["map_index"])
        deadline = time.monotonic() + self.start_timeout + float(self.genius_service["ready_timeout"])
        delay = poll
        with self.genius_state().open() as state:
            while True:
                record = state.get_run(key)
                service = dict((record.info.get("service") or {}) if record else {})
                if record is not None and record.try_number == wanted_try:
                    if service.get("ready_at"):
                        published = {**service, "name": self.published_name}
                        host = hostname() if callable(hostname) else hostname
                        if host:
                            published["hostname"] = host
                            published["url"] = ServiceInfo(
                                published["name"], host, int(published["port"])
                            ).url
                        self.log.info("service %s is ready at %s", published["name"], published["url"])
                        return published
                    if record.status.terminal or service.get("ready") is False:
                        raise ServiceNotReady(
                            self._why_not_ready(record.status, service, record.error, log_tail)
                        )
                if not running():
                    raise ServiceNotReady(
                        with_log_tail(
                            "the service's job ended before it was ready", log_tail, lines=ERROR_TAIL_LINES
                        )
                    )
                if time.monotonic() > deadline:
                    waited = (
                        f"the service was not ready after {self.start_timeout:g}s to start plus "
                        f"{float(self.genius_service['ready_timeout']):g}s to answer "
                        f"{self.genius_service['health_path']}"
                    )
                    raise ServiceNotReady(with_log_tail(waited, log_tail, lines=ERROR_TAIL_LINES))
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)  # one record read per poll: cheap, and it is start latency

    @staticmethod
    def _why_not_ready(
        status: Status,
        service: Mapping[str, Any],
        error: Mapping[str, Any] | None,
        log_tail: Callable[[], str],
    ) -> str:
        if error:
            return f"the service failed before it was ready: {error.get('type')}: {error.get('message')}"
        if service.get("ready") is False:
            return with_log_tail(
                f"the service is not ready: {service.get('error')}", log_tail, lines=ERROR_TAIL_LINES
            )
        return with_log_tail(
            f"the service ended {status.value} before it was ready", log_tail, lines=ERROR_TAIL_LINES
        )
