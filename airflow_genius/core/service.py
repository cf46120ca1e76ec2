"""Services: a task method that serves HTTP until it is stopped, and the one readiness rule.

A *service* is an ordinary task method run with a ``service`` section in its TaskSpec (port, health
path, readiness timeout). The runtime then:

1. puts ``SERVICE_NAME`` and ``SERVICE_PORT`` in the environment (the method listens on that port, on
   every interface), and records in the run record's ``info["service"]`` where it listens: name, host,
   port, URL, health path;
2. probes ``http://127.0.0.1:<port><health_path>`` from beside the method (:func:`wait_ready`, the one
   readiness rule of every runner: a 2xx answer) and records ``ready_at`` when it first answers — so an
   operator learns readiness from the run record, wherever the service runs;
3. treats SIGTERM/SIGINT as the service's normal end: the record ends **SUCCESS** with
   ``{"service": name, "stopped": "received SIGTERM", "served_seconds": …, "ready": true}``. A method
   that raises ends FAILED as any task does; one that returns ends SUCCESS with its return value.

:func:`serve_http` is a small JSON-over-HTTP server for methods that do not bring their own (a model's
``predict`` behind ``POST /predict``); any server works, as long as it answers the health path.

.. code-block:: python

    from airflow_genius.core import Task
    from airflow_genius.core.service import serve_http

    class Predictor(Task):
        def serve(self) -> None:
            model = load_model(self.model_path)
            serve_http({"/predict": lambda body: {"label": model.predict(body["text"])}})
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from airflow_genius.core.errors import GeniusError

log = logging.getLogger("airflow_genius.service")

#: Environment a service gets (name, port) and a client gets (all four), set by the runtime/runners.
SERVICE_NAME_ENV = "SERVICE_NAME"
SERVICE_HOSTNAME_ENV = "SERVICE_HOSTNAME"
SERVICE_PORT_ENV = "SERVICE_PORT"
SERVICE_URL_ENV = "SERVICE_URL"
#: A client's environment variable ← key of the service task's XCom (what every service operator publishes).
CLIENT_ENV: Mapping[str, str] = {
    SERVICE_NAME_ENV: "name",
    SERVICE_HOSTNAME_ENV: "hostname",
    SERVICE_PORT_ENV: "port",
    SERVICE_URL_ENV: "url",
}
DEFAULT_PORT = 8000
DEFAULT_HEALTH_PATH = "/health"
DEFAULT_READY_TIMEOUT = 300.0
#: Longest wait between two readiness probes (a probe over loopback costs next to nothing, and every
#: interval is time clients wait after the service is up).
MAX_PROBE_INTERVAL = 0.5


class ServiceNotReady(GeniusError):
    """A service did not answer its health path in time."""


@dataclass(frozen=True)
class ServiceInfo:
    """Where a service listens: what its run record holds and what a service operator publishes."""

    name: str
    hostname: str
    port: int
    health_path: str = DEFAULT_HEALTH_PATH

    @property
    def url(self) -> str:
        """``http://hostname:port`` (IPv6 literals bracketed)."""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"http://{host}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        """The XCom of a service operator; keys match :data:`CLIENT_ENV`."""
        return {
            "name": self.name,
            "hostname": self.hostname,
            "port": self.port,
            "url": self.url,
            "health_path": self.health_path,
        }

    def client_env(self) -> dict[str, str]:
        """``SERVICE_NAME/HOSTNAME/PORT/URL`` for a client's environment."""
        return client_env(self.to_dict())


def client_env(published: Mapping[str, Any]) -> dict[str, str]:
    """A client's environment from what a service operator published (its XCom).

    >>> client_env({"name": "llm", "hostname": "10.0.0.7", "port": 8000, "url": "http://10.0.0.7:8000"})
    {'SERVICE_NAME': 'llm', 'SERVICE_HOSTNAME': '10.0.0.7', 'SERVICE_PORT': '8000', 'SERVICE_URL': 'http://10.0.0.7:8000'}
    """
    return {name: str(published[key]) for name, key in CLIENT_ENV.items() if published.get(key) is not None}


def probe(url: str, *, timeout: float = 2.0) -> bool:
    """One readiness probe: True when ``url`` answers a 2xx status within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - http(s) only, built here
            return 200 <= int(answer.status) < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_ready(
    url: str,
    *,
    timeout: float,
    stop: threading.Event | None = None,
    check: Callable[[str], bool] = probe,
) -> float:
    """Probe ``url`` until it answers 2xx; returns the seconds it took.

    The one readiness rule of every runner. Probes start 0.05 s apart and back off (x1.5) to
    :data:`MAX_PROBE_INTERVAL`. Raises :class:`ServiceNotReady` after ``timeout`` seconds, or when
    ``stop`` is set (the service ended first).
    """
    started = time.monotonic()
    delay = 0.05
    while True:
        if check(url):
            return time.monotonic() - started
        waited = time.monotonic() - started
        if waited >= timeout:
            raise ServiceNotReady(f"{url} did not answer 2xx within {timeout:g}s")
        if stop is not None and stop.wait(min(delay, timeout - waited)):
            raise ServiceNotReady(f"{url}: the service ended before it answered")
        if stop is None:
            time.sleep(min(delay, timeout - waited))
        delay = min(delay * 1.5, MAX_PROBE_INTERVAL)


def advertised_host(env: Mapping[str, str] | None = None) -> str:
    """The address clients should use: ``SERVICE_HOSTNAME`` if the platform set it, else this machine's
    primary address (the one its default route leaves from), else its host name."""
    source = os.environ if env is None else env
    if source.get(SERVICE_HOSTNAME_ENV):
        return source[SERVICE_HOSTNAME_ENV]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            address = sock.getsockname()[0]
            if not address.startswith("0."):
                return str(address)
    except OSError:
        pass
    return socket.gethostname()


class ReadinessWatch:
    """Probes a starting service from beside it and reports once: ready (with the time) or not.

    ``report`` receives the ``info["service"]`` update to record: ``{"ready_at": iso, "ready_seconds":
    s}`` when the health path first answers, ``{"ready": False, "error": text}`` when it did not in time.

    >>> watch = ReadinessWatch(ServiceInfo("svc", "127.0.0.1", 1), timeout=0.2, report=print)
    >>> watch.start(); watch.join()
    {'ready': False, 'error': 'http://127.0.0.1:1/health did not answer 2xx within 0.2s'}
    """

    def __init__(
        self, info: ServiceInfo, *, timeout: float, report: Callable[[dict[str, Any]], None]
    ) -> None:
        self.info = info
        self.timeout = timeout
        self.ready = False
        self._report = report
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"genius-ready-{info.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """The service ended: stop probing (no report if it never answered)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _watch(self) -> None:
        url = f"http://127.0.0.1:{self.info.port}{self.info.health_path}"
        try:
            took = wait_ready(url, timeout=self.timeout, stop=self._stop)
        except ServiceNotReady as exc:
            if not self._stop.is_set():
                self._safe_report({"ready": False, "error": str(exc)})
            return
        self.ready = True
        from datetime import datetime, timezone

        self._safe_report({"ready": True, "ready_at": datetime.now(timezone.utc).isoformat(),
                           "ready_seconds": round(took, 3)})  # fmt: skip

    def _safe_report(self, update: dict[str, Any]) -> None:
        try:
            self._report(update)
        except Exception as exc:  # the store's fault budget ran out: the service itself keeps serving
            log.warning("could not record the readiness of %s: %s", self.info.name, exc)


# ---------------------------------------------------------------------- a small JSON server
Route = Callable[[Any], Any]


def serve_http(
    routes: Mapping[str, Route],
    *,
    port: int | None = None,
    host: str = "0.0.0.0",  # noqa: S104 - a service listens for its clients
    health_path: str = DEFAULT_HEALTH_PATH,
    ready: Callable[[], bool] | None = None,
) -> None:
    """Serve JSON routes until the run is stopped (SIGTERM/SIGINT): ``POST /route`` with a JSON body
    calls ``routes["/route"](body)`` and answers its JSON return value; ``GET /route`` calls it with None.

    ``GET <health_path>`` answers 200 ``{"ok": true}`` once ``ready()`` (default: always) is true.
    The port defaults to ``SERVICE_PORT`` (set by the runtime). A route that raises answers 500 with
    ``{"error": type, "message": text}`` (or the exception's ``http_status``, 400-599, if it has one); a
    body that is not JSON answers 400.
    """
    chosen = int(port if port is not None else os.environ.get(SERVICE_PORT_ENV, DEFAULT_PORT))
    server = _Server((host, chosen), _handler(dict(routes), health_path, ready))
    log.info("serving %s on %s:%d", ", ".join(sorted(routes)) or "(health only)", host, chosen)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 resets connections when many clients connect at once


def _handler(routes: dict[str, Route], health_path: str, ready: Callable[[], bool] | None) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: benchmark clients reuse their connection
        disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

        def do_GET(self) -> None:
            if self.path == health_path:
                ok = ready is None or ready()
                self._answer(200 if ok else 503, {"ok": ok})
                return
            self._call(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                self._answer(400, {"error": "BadRequest", "message": "the body is not JSON"})
                return
            self._call(body)

        def _call(self, body: Any) -> None:
            route = routes.get(self.path.split("?", 1)[0])
            if route is None:
                self._answer(404, {"error": "NotFound", "message": f"no route {self.path!r}"})
                return
            try:
                self._answer(200, route(body))
            except Exception as exc:  # the client gets the error; the service keeps serving
                status = getattr(exc, "http_status", 500)  # an error may name its status (504 timeout)
                status = status if isinstance(status, int) and 400 <= status <= 599 else 500
                self._answer(status, {"error": type(exc).__name__, "message": str(exc)})

        def _answer(self, status: int, value: Any) -> None:
            payload = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s - %s", self.address_string(), format % args)

    return Handler
