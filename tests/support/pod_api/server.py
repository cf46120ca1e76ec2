"""The HTTP side of the Pod API server: routes of the Kubernetes REST API onto :class:`Cluster`."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.pod_api.logs import parse_time
from support.pod_api.pods import SERVER_LABEL, ApiError, Cluster
from support.pod_api.selectors import SelectorError, matches_fields, matches_labels

#: How long a watch stays open at most, whatever ``timeoutSeconds`` asks (keeps test runs bounded).
MAX_WATCH_SECONDS = 60
VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0-genius-pod-api", "platform": "linux/amd64"}
RESOURCES = [
    ("pods", "Pod", ["create", "delete", "get", "list", "patch"]),
    ("pods/log", "Pod", ["get"]),
    ("secrets", "Secret", ["create", "delete", "get", "list", "update"]),
    ("events", "Event", ["list", "watch"]),
    ("services", "Service", ["create", "delete", "get", "list"]),
    ("endpoints", "Endpoints", ["get"]),
    ("namespaces", "Namespace", ["get", "list"]),
]

Route = tuple[str, re.Pattern[str], str]
NS = r"/api/v1/namespaces/(?P<ns>[^/]+)"
ROUTES: list[Route] = [
    ("GET", re.compile(r"/version/?"), "version"),
    ("GET", re.compile(r"/(healthz|readyz|livez)"), "health"),
    ("GET", re.compile(r"/api/?"), "api_versions"),
    ("GET", re.compile(r"/api/v1/?"), "api_resources"),
    ("GET", re.compile(r"/apis/?"), "api_groups"),
    ("GET", re.compile(r"/api/v1/namespaces/?"), "list_namespaces"),
    ("GET", re.compile(NS + r"/?"), "read_namespace"),
    ("GET", re.compile(r"/api/v1/pods/?"), "list_pods"),
    ("GET", re.compile(NS + r"/pods/?"), "list_pods"),
    ("POST", re.compile(NS + r"/pods/?"), "create_pod"),
    ("GET", re.compile(NS + r"/pods/(?P<name>[^/]+)/?"), "read_pod"),
    ("GET", re.compile(NS + r"/pods/(?P<name>[^/]+)/status/?"), "read_pod"),
    ("PATCH", re.compile(NS + r"/pods/(?P<name>[^/]+)/?"), "patch_pod"),
    ("DELETE", re.compile(NS + r"/pods/(?P<name>[^/]+)/?"), "delete_pod"),
    ("GET", re.compile(NS + r"/pods/(?P<name>[^/]+)/log/?"), "pod_log"),
    ("GET", re.compile(NS + r"/events/?"), "list_events"),
    ("GET", re.compile(r"/api/v1/events/?"), "list_events"),
    ("POST", re.compile(NS + r"/secrets/?"), "create_secret"),
    ("GET", re.compile(NS + r"/secrets/(?P<name>[^/]+)/?"), "read_secret"),
    ("PUT", re.compile(NS + r"/secrets/(?P<name>[^/]+)/?"), "replace_secret"),
    ("DELETE", re.compile(NS + r"/secrets/(?P<name>[^/]+)/?"), "delete_secret"),
    ("GET", re.compile(r"/api/v1/services/?"), "list_services"),
    ("GET", re.compile(NS + r"/services/?"), "list_services"),
    ("POST", re.compile(NS + r"/services/?"), "create_service"),
    ("GET", re.compile(NS + r"/services/(?P<name>[^/]+)/?"), "read_service"),
    ("DELETE", re.compile(NS + r"/services/(?P<name>[^/]+)/?"), "delete_service"),
    ("GET", re.compile(NS + r"/endpoints/(?P<name>[^/]+)/?"), "read_endpoints"),
]


def _status(code: int, reason: str, message: str, status: str = "Failure") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": status, "message": message,
            "reason": reason, "code": code}  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HttpServer

    # ------------------------------------------------------------ plumbing
    def log_message(self, format: str, *args: Any) -> None:
        return

    def handle(self) -> None:
        # A client closing its connection pool resets the kept-alive connections this thread waits on
        # for a next request: the end of that connection, as for any apiserver, not an error.
        with contextlib.suppress(ConnectionResetError):
            super().handle()

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        try:
            if self.headers.get("Authorization") != f"Bearer {self.server.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            for verb, pattern, handler in ROUTES:
                if verb == method and (match := pattern.fullmatch(parts.path)):
                    getattr(self, f"do_{handler}")(query=query, **match.groupdict())
                    return
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({method} {parts.path})"
            )
        except ApiError as exc:
            self._json(exc.code, _status(exc.code, exc.reason, exc.message))
        except SelectorError as exc:
            self._json(400, _status(400, "BadRequest", str(exc)))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ApiError(400, "BadRequest", f"invalid JSON body: {exc}") from exc

    def _json(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, content_type: str, chunks: Iterable[bytes]) -> None:
        """A streamed answer (log follow, watch): close-delimited, flushed line by line."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for chunk in chunks:
                self.wfile.write(chunk)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    @property
    def cluster(self) -> Cluster:
        return self.server.cluster

    # ------------------------------------------------------------ discovery
    def do_version(self, query: dict[str, str]) -> None:
        self._json(200, VERSION)

    def do_health(self, query: dict[str, str]) -> None:
        data = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_api_versions(self, query: dict[str, str]) -> None:
        self._json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.server.server_address[1]}"}]})  # fmt: skip

    def do_api_resources(self, query: dict[str, str]) -> None:
        resources = [
            {
                "name": name,
                "singularName": "",
                "namespaced": name != "namespaces",
                "kind": kind,
                "verbs": verbs,
            }
            for name, kind, verbs in RESOURCES
        ]
        self._json(200, {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources})

    def do_api_groups(self, query: dict[str, str]) -> None:
        self._json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})

    def do_list_namespaces(self, query: dict[str, str]) -> None:
        names = {"default", *(key[0] for key in [*self.cluster.pods, *self.cluster.services])}
        self._json(200, {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {},
                         "items": [_namespace(name) for name in sorted(names)]})  # fmt: skip

    def do_read_namespace(self, query: dict[str, str], ns: str) -> None:
        self._json(200, _namespace(ns))  # every namespace exists here

    # ------------------------------------------------------------ pods
    def do_create_pod(self, query: dict[str, str], ns: str) -> None:
        body = self._body()
        if query.get("dryRun"):
            raise ApiError(400, "BadRequest", "dryRun is not supported by this Pod API server")
        self._json(201, self.cluster.create_pod(ns, body))

    def do_read_pod(self, query: dict[str, str], ns: str, name: str) -> None:
        self._json(200, self.cluster.render(self.cluster.get_pod(ns, name)))

    def do_list_pods(self, query: dict[str, str], ns: str | None = None) -> None:
        if _flag(query, "watch"):
            raise ApiError(405, "MethodNotAllowed", "watching pods is not supported by this Pod API server")
        items = [self.cluster.render(pod) for pod in self.cluster.list_pods(ns)]
        items = [
            item for item in items
            if matches_labels(item["metadata"].get("labels"), query.get("labelSelector"))
            and matches_fields(item, query.get("fieldSelector"))
        ]  # fmt: skip
        self._json(200, {"kind": "PodList", "apiVersion": "v1",
                         "metadata": {"resourceVersion": self.cluster.next_version()}, "items": items})  # fmt: skip

    def do_patch_pod(self, query: dict[str, str], ns: str, name: str) -> None:
        self._json(200, self.cluster.patch_pod(ns, name, self._body()))

    def do_delete_pod(self, query: dict[str, str], ns: str, name: str) -> None:
        body = self._body() or {}
        grace = query.get("gracePeriodSeconds", body.get("gracePeriodSeconds"))
        self._json(200, self.cluster.delete_pod(ns, name, None if grace is None else int(grace)))

    def do_pod_log(self, query: dict[str, str], ns: str, name: str) -> None:
        pod = self.cluster.get_pod(ns, name)
        wanted = query.get("container")
        if wanted and wanted != pod.container["name"]:
            raise ApiError(400, "BadRequest", f"container {wanted} is not valid for pod {name}")
        since: float | None = None
        if query.get("sinceSeconds"):
            since = time.time() - int(query["sinceSeconds"])
        elif query.get("sinceTime"):
            since = parse_time(query["sinceTime"])
        lines = self.cluster.logs(
            pod,
            follow=_flag(query, "follow"),
            since=since,
            tail=int(query["tailLines"]) if query.get("tailLines") else None,
            timestamps=_flag(query, "timestamps"),
        )
        first = next(lines, None)  # raises ApiError (waiting container) before any header is sent
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None
        self._stream("text/plain", _limited(([first] if first else []), lines, limit))

    # ------------------------------------------------------------ events
    def do_list_events(self, query: dict[str, str], ns: str | None = None) -> None:
        def select() -> list[dict[str, Any]]:
            with self.cluster.lock:
                events = list(self.cluster.events)
            return [
                event for event in events
                if ns in (None, event["metadata"]["namespace"]) and matches_fields(event, query.get("fieldSelector"))
            ]  # fmt: skip

        if not _flag(query, "watch"):
            self._json(200, {"kind": "EventList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": self.cluster.next_version()}, "items": select()})  # fmt: skip
            return
        after = int(query.get("resourceVersion") or 0)
        timeout = min(float(query.get("timeoutSeconds") or MAX_WATCH_SECONDS), MAX_WATCH_SECONDS)
        self._stream("application/json", _watch(select, after, time.monotonic() + timeout))

    # ------------------------------------------------------------ secrets
    def do_create_secret(self, query: dict[str, str], ns: str) -> None:
        self._json(201, self.cluster.put_secret(ns, self._body()))

    def do_read_secret(self, query: dict[str, str], ns: str, name: str) -> None:
        self._json(200, self.cluster.get_secret(ns, name))

    def do_replace_secret(self, query: dict[str, str], ns: str, name: str) -> None:
        self._json(200, self.cluster.put_secret(ns, self._body(), replace=name))

    def do_delete_secret(self, query: dict[str, str], ns: str, name: str) -> None:
        self._body()
        self.cluster.delete_secret(ns, name)
        self._json(200, _status(200, "", f'secret "{name}" deleted', status="Success"))

    # ------------------------------------------------------------ services
    def do_create_service(self, query: dict[str, str], ns: str) -> None:
        body = self._body()
        if query.get("dryRun"):
            raise ApiError(400, "BadRequest", "dryRun is not supported by this Pod API server")
        self._json(201, self.cluster.create_service(ns, body))

    def do_read_service(self, query: dict[str, str], ns: str, name: str) -> None:
        self._json(200, self.cluster.get_service(ns, name))

    def do_list_services(self, query: dict[str, str], ns: str | None = None) -> None:
        if _flag(query, "watch"):
            raise ApiError(
                405, "MethodNotAllowed", "watching services is not supported by this Pod API server"
            )
        items = [
            item for item in self.cluster.list_services(ns)
            if matches_labels(item["metadata"].get("labels"), query.get("labelSelector"))
            and matches_fields(item, query.get("fieldSelector"))
        ]  # fmt: skip
        self._json(200, {"kind": "ServiceList", "apiVersion": "v1",
                         "metadata": {"resourceVersion": self.cluster.next_version()}, "items": items})  # fmt: skip

    def do_delete_service(self, query: dict[str, str], ns: str, name: str) -> None:
        self._body()
        self._json(200, self.cluster.delete_service(ns, name))

    def do_read_endpoints(self, query: dict[str, str], ns: str, name: str) -> None:
        self._json(200, self.cluster.endpoints(ns, name))


def _flag(query: dict[str, str], name: str) -> bool:
    """A boolean query parameter (the Python client sends ``True``, Go clients ``true``)."""
    return query.get(name, "").lower() in ("true", "1")


def _limited(first: list[bytes], rest: Iterable[bytes], limit: int | None) -> Iterable[bytes]:
    sent = 0
    for chunk in _chain(first, rest):
        if limit is not None and sent + len(chunk) > limit:
            yield chunk[: limit - sent]
            return
        sent += len(chunk)
        yield chunk


def _chain(first: list[bytes], rest: Iterable[bytes]) -> Iterable[bytes]:
    yield from first
    yield from rest


def _watch(select: Callable[[], list[dict[str, Any]]], after: int, deadline: float) -> Iterable[bytes]:
    """ADDED watch events for objects newer than ``after`` until ``deadline`` (the apiserver's timeout)."""
    seen: set[str] = set()
    while time.monotonic() < deadline:
        for item in select():
            if int(item["metadata"]["resourceVersion"]) > after and item["metadata"]["uid"] not in seen:
                seen.add(item["metadata"]["uid"])
                yield json.dumps({"type": "ADDED", "object": item}).encode() + b"\n"
        time.sleep(0.2)


def _namespace(name: str) -> dict[str, Any]:
    return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, name))},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}  # fmt: skip


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    cluster: Cluster
    token: str


class PodApiServer:
    """A Kubernetes API subset on ``127.0.0.1:<port>`` whose pods run as podman containers.

    >>> server = PodApiServer(docker_host="unix:///tmp/genius-rig/podman.sock").start()  # doctest: +SKIP
    >>> server.write_kubeconfig(tmp_path / "kubeconfig")                                  # doctest: +SKIP
    >>> server.stop()                                                                      # doctest: +SKIP
    """

    def __init__(
        self, *, docker_host: str, host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ) -> None:
        import docker

        self.server_id = uuid.uuid4().hex[:12]
        self.docker = docker.DockerClient(base_url=docker_host, timeout=300)
        self.cluster = Cluster(self.docker, server_id=self.server_id)
        self.token = token or secrets.token_hex(16)
        self._http = _HttpServer((host, port), _Handler)
        self._http.cluster = self.cluster
        self._http.token = self.token
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> PodApiServer:
        self._thread = threading.Thread(target=self._http.serve_forever, name="pod-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; stop and remove every container this server started."""
        self._http.shutdown()
        self._http.server_close()
        for container in self.containers():
            with contextlib.suppress(Exception):  # already gone
                self.docker.api.remove_container(container["Id"], force=True)
        self.docker.close()

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig (as a dict) pointing at this server with its bearer token."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "genius-pod-api", "cluster": {"server": self.url}}],
            "users": [{"name": "genius", "user": {"token": self.token}}],
            "contexts": [{"name": "genius-pod-api",
                          "context": {"cluster": "genius-pod-api", "user": "genius", "namespace": namespace}}],
            "current-context": "genius-pod-api",
        }  # fmt: skip

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        path.write_text(json.dumps(self.kubeconfig(namespace), indent=2))  # JSON is YAML
        path.chmod(0o600)
        return path

    def containers(self, **labels: str) -> list[dict[str, Any]]:
        """Podman's containers of this server (optionally with more ``label=value`` filters), as the
        list endpoint's summaries (``Id``, ``State``, ``Labels``…): one call, no per-container inspect
        that could race with a removal."""
        filters = [f"{SERVER_LABEL}={self.server_id}", *(f"{k}={v}" for k, v in labels.items())]
        return self.docker.api.containers(all=True, filters={"label": filters})  # type: ignore[no-any-return]
