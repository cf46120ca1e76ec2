"""The Pod API server's cluster: pods, secrets, services and events in memory, each pod's container run
by podman.

A pod moves like a kubelet would move it: created ``Pending`` (unscheduled), then scheduled; its
environment is resolved (``secretKeyRef`` against the stored Secrets — a missing Secret keeps the
container waiting with ``CreateContainerConfigError`` and is retried, as kubelet does); the image must
already be present (nothing is ever pulled: ``ErrImageNeverPull`` otherwise); the container is created
and started through the Docker API → ``Running``; when it exits → ``Succeeded`` / ``Failed`` with the
container's real exit code. Deleting a pod stops its container (SIGTERM, then SIGKILL after the grace
period) and removes it; the pod disappears when its container is gone.

A Service (``ClusterIP`` only) gets the cluster IP :data:`SERVICE_IP`: every pod shares the host's
network, so the host's loopback reaches whichever pod listens on the port — the stand-in has no
kube-proxy, hence ``port`` must equal ``targetPort``. Its DNS names (``name``, ``name.namespace.svc``,
``name.namespace.svc.cluster.local``) resolve inside pods through ``/etc/hosts`` entries written when a
pod's container is created (cluster DNS for the Services that exist at that moment; no later updates).
Its Endpoints are computed from the selector over the live pods.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import copy
import itertools
import os
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from support.pod_api.logs import RecordSplitter, docker_time, format_line

#: Label put on every container this cluster starts (value: the server's id), for cleanup and tests.
SERVER_LABEL = "io.genius.pod-api.server"
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
NODE_NAME = "genius-pod-api"
DEFAULT_GRACE_SECONDS = 30
#: Address of every pod (they share the host's network) and so the cluster IP of every Service.
POD_IP = SERVICE_IP = "127.0.0.1"
#: A Service's name: an RFC 1035 label (what the apiserver requires, since it becomes a DNS name).
_DNS_1035 = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An API answer other than success: HTTP code, reason (``NotFound``…) and message."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


@dataclass
class Pod:
    """One pod: the object as created (camelCase, like the API) and its live status."""

    body: dict[str, Any]
    status: dict[str, Any]
    container_id: str | None = None
    deleting: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def key(self) -> tuple[str, str]:
        return self.body["metadata"]["namespace"], self.body["metadata"]["name"]

    @property
    def container(self) -> dict[str, Any]:
        return self.body["spec"]["containers"][0]


class Cluster:
    """In-memory objects + podman. Thread-safe; every method is one API operation."""

    def __init__(self, docker_client: Any, *, server_id: str) -> None:
        self.docker = docker_client
        self.server_id = server_id
        self.lock = threading.RLock()
        self.pods: dict[tuple[str, str], Pod] = {}
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._versions = itertools.count(1)
        #: Every pod ever created (a deep copy of the object at creation), oldest first.
        self.created_pods: list[dict[str, Any]] = []
        #: Every container started: pod key, container id and podman's inspect at start time.
        self.launched: list[dict[str, Any]] = []
        #: Names of every Secret ever created/replaced: (namespace, name).
        self.created_secrets: list[tuple[str, str]] = []
        #: Live Services by (namespace, name), and every Service ever created (as stored), oldest first.
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        self.created_services: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- helpers
    def next_version(self) -> str:
        return str(next(self._versions))

    def _event(self, pod: Pod, reason: str, message: str, kind: str = "Normal") -> None:
        namespace, name = pod.key
        with self.lock:
            self.events.append(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {
                        "name": f"{name}.{uuid.uuid4().hex[:16]}",
                        "namespace": namespace,
                        "uid": str(uuid.uuid4()),
                        "resourceVersion": self.next_version(),
                        "creationTimestamp": now_rfc3339(),
                    },
                    "involvedObject": {
                        "kind": "Pod",
                        "namespace": namespace,
                        "name": name,
                        "uid": pod.body["metadata"]["uid"],
                        "apiVersion": "v1",
                        "fieldPath": f"spec.containers{{{pod.container['name']}}}",
                    },
                    "reason": reason,
                    "message": message,
                    "type": kind,
                    "count": 1,
                    "firstTimestamp": now_rfc3339(),
                    "lastTimestamp": now_rfc3339(),
                    "source": {"component": "kubelet", "host": NODE_NAME},
                    "reportingComponent": "kubelet",
                    "reportingInstance": NODE_NAME,
                }
            )

    def _set_status(self, pod: Pod, **changes: Any) -> None:
        with self.lock:
            pod.status.update(changes)
            pod.body["metadata"]["resourceVersion"] = self.next_version()

    def _container_state(self, pod: Pod, state: dict[str, Any], *, ready: bool = False) -> None:
        container = pod.container
        self._set_status(
            pod,
            containerStatuses=[
                {
                    "name": container["name"],
                    "image": container.get("image", ""),
                    "imageID": "",
                    "containerID": f"docker://{pod.container_id}" if pod.container_id else None,
                    "ready": ready,
                    "started": "running" in state,
                    "restartCount": 0,
                    "state": state,
                }
            ],
        )

    # ----------------------------------------------------------------- pods
    def create_pod(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        spec = body.get("spec") or {}
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
            else:
                raise ApiError(422, "Invalid", "Pod is invalid: metadata.name: Required value")
        containers = spec.get("containers") or []
        if len(containers) != 1 or spec.get("initContainers"):
            raise ApiError(
                422,
                "Invalid",
                "this Pod API server runs pods with exactly one container and no initContainers",
            )
        for volume in spec.get("volumes") or []:
            if "hostPath" not in volume and "emptyDir" not in volume:
                raise ApiError(
                    422, "Invalid", f"volume {volume.get('name')!r}: only hostPath and emptyDir are supported"
                )
        meta.update(
            namespace=namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=now_rfc3339(),
            resourceVersion=self.next_version(),
        )
        meta.setdefault("labels", {})
        body.update(apiVersion="v1", kind="Pod")
        spec.setdefault("restartPolicy", "Always")
        pod = Pod(
            body=body,
            status={
                "phase": "Pending",
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "lastTransitionTime": now_rfc3339()}
                ],
                "qosClass": "BestEffort",
            },
        )
        with self.lock:
            if (namespace, meta["name"]) in self.pods:
                raise ApiError(409, "AlreadyExists", f'pods "{meta["name"]}" already exists')
            self.pods[pod.key] = pod
            self.created_pods.append(copy.deepcopy(body))
        threading.Thread(target=self._run, args=(pod,), name=f"pod-{meta['name']}", daemon=True).start()
        return self.render(pod)

    def render(self, pod: Pod) -> dict[str, Any]:
        with self.lock:
            rendered = copy.deepcopy(pod.body)
            rendered["status"] = copy.deepcopy(pod.status)
            return rendered

    def get_pod(self, namespace: str, name: str) -> Pod:
        with self.lock:
            pod = self.pods.get((namespace, name))
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        return pod

    def list_pods(self, namespace: str | None) -> list[Pod]:
        with self.lock:
            return [pod for key, pod in self.pods.items() if namespace in (None, key[0])]

    def patch_pod(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        pod = self.get_pod(namespace, name)
        with self.lock:
            if isinstance(patch, list):
                _json_patch(pod.body, patch)
            else:
                patch = dict(patch)
                patch.pop("status", None)  # status belongs to the kubelet (here: this cluster)
                _merge_patch(pod.body, patch)
            pod.body["metadata"]["resourceVersion"] = self.next_version()
        return self.render(pod)

    def delete_pod(self, namespace: str, name: str, grace_seconds: int | None) -> dict[str, Any]:
        pod = self.get_pod(namespace, name)
        grace = grace_seconds
        if grace is None:
            grace = pod.body["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS)
        with pod.lock:
            first = not pod.deleting
            pod.deleting = True
        with self.lock:
            pod.body["metadata"].setdefault("deletionTimestamp", now_rfc3339())
            pod.body["metadata"]["deletionGracePeriodSeconds"] = int(grace)
        if first:
            threading.Thread(target=self._terminate, args=(pod, int(grace)), daemon=True).start()
        return self.render(pod)

    # ----------------------------------------------------------------- secrets
    def put_secret(
        self, namespace: str, body: dict[str, Any], *, replace: str | None = None
    ) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        name = meta.get("name")
        if replace is not None and name != replace:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if not name:
            raise ApiError(422, "Invalid", "Secret is invalid: metadata.name: Required value")
        data = dict(body.get("data") or {})
        for key, value in (body.pop("stringData", None) or {}).items():
            data[key] = base64.b64encode(str(value).encode()).decode()  # the apiserver folds stringData in
        body.update(apiVersion="v1", kind="Secret", data=data)
        body.setdefault("type", "Opaque")
        with self.lock:
            exists = (namespace, name) in self.secrets
            if replace is None and exists:
                raise ApiError(409, "AlreadyExists", f'secrets "{name}" already exists')
            if replace is not None and not exists:
                raise ApiError(404, "NotFound", f'secrets "{name}" not found')
            meta.update(
                namespace=namespace,
                uid=str(uuid.uuid4()),
                creationTimestamp=now_rfc3339(),
                resourceVersion=self.next_version(),
            )
            self.secrets[(namespace, name)] = body
            self.created_secrets.append((namespace, name))
            return copy.deepcopy(body)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            secret = self.secrets.get((namespace, name))
            if secret is None:
                raise ApiError(404, "NotFound", f'secrets "{name}" not found')
            return copy.deepcopy(secret)

    def delete_secret(self, namespace: str, name: str) -> None:
        with self.lock:
            if self.secrets.pop((namespace, name), None) is None:
                raise ApiError(404, "NotFound", f'secrets "{name}" not found')

    # ----------------------------------------------------------------- services
    def create_service(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store a ClusterIP Service (validated as the apiserver would, plus this stand-in's limits)."""
        meta = body.setdefault("metadata", {})
        name = meta.get("name") or ""
        if not _DNS_1035.fullmatch(name):
            raise ApiError(
                422, "Invalid", f"Service {name!r} is invalid: metadata.name: must be a DNS-1035 label"
            )
        spec = body.setdefault("spec", {})
        kind = spec.setdefault("type", "ClusterIP")
        if kind != "ClusterIP":
            raise ApiError(
                422, "Invalid", f"spec.type: {kind!r}: this Pod API server has ClusterIP Services only"
            )
        headless = spec.get("clusterIP") == "None"
        if spec.get("clusterIP") not in (None, "", "None", SERVICE_IP):
            raise ApiError(
                422, "Invalid", f"spec.clusterIP: {spec['clusterIP']!r}: only {SERVICE_IP} exists here"
            )
        ports = spec.get("ports") or []
        if not ports and not headless:
            raise ApiError(422, "Invalid", "spec.ports: Required value")
        for index, port in enumerate(ports):
            where = f"spec.ports[{index}]"
            number = port.get("port")
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                raise ApiError(422, "Invalid", f"{where}.port: Invalid value: {number!r}")
            target = port.setdefault("targetPort", number)
            if target != number:  # no kube-proxy: clients reach the pod's own port, nothing translates it
                raise ApiError(
                    422,
                    "Invalid",
                    f"{where}.targetPort: this Pod API server needs targetPort == port ({number})",
                )
            if port.setdefault("protocol", "TCP") != "TCP":
                raise ApiError(422, "Invalid", f"{where}.protocol: only TCP here")
            if len(ports) > 1 and not port.get("name"):
                raise ApiError(422, "Invalid", f"{where}.name: Required value (more than one port)")
        selector = spec.get("selector") or {}
        if not isinstance(selector, dict) or not all(isinstance(v, str) for v in selector.values()):
            raise ApiError(422, "Invalid", "spec.selector: a map of label names to values")
        ip = "None" if headless else SERVICE_IP
        spec.update(clusterIP=ip, clusterIPs=[ip], sessionAffinity=spec.get("sessionAffinity") or "None",
                     ipFamilies=["IPv4"], ipFamilyPolicy="SingleStack", internalTrafficPolicy="Cluster")  # fmt: skip
        body.update(apiVersion="v1", kind="Service", status={"loadBalancer": {}})
        meta.setdefault("labels", {})
        with self.lock:
            if (namespace, name) in self.services:
                raise ApiError(409, "AlreadyExists", f'services "{name}" already exists')
            meta.update(
                namespace=namespace,
                uid=str(uuid.uuid4()),
                creationTimestamp=now_rfc3339(),
                resourceVersion=self.next_version(),
            )
            self.services[(namespace, name)] = body
            self.created_services.append(copy.deepcopy(body))
            return copy.deepcopy(body)

    def get_service(self, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            service = self.services.get((namespace, name))
            if service is None:
                raise ApiError(404, "NotFound", f'services "{name}" not found')
            return copy.deepcopy(service)

    def list_services(self, namespace: str | None) -> list[dict[str, Any]]:
        with self.lock:
            return [copy.deepcopy(s) for key, s in self.services.items() if namespace in (None, key[0])]

    def delete_service(self, namespace: str, name: str) -> dict[str, Any]:
        """Remove the Service at once (no finalizers here); the answer is the object, as the apiserver's."""
        with self.lock:
            service = self.services.pop((namespace, name), None)
        if service is None:
            raise ApiError(404, "NotFound", f'services "{name}" not found')
        return service

    def selected_pods(self, namespace: str, selector: dict[str, str] | None) -> list[Pod]:
        """The pods a Service selector picks: same namespace, every label equal, not being deleted."""
        if not selector:
            return []  # a Service without a selector has manually managed Endpoints (not modelled)
        with self.lock:
            pods = [pod for key, pod in self.pods.items() if key[0] == namespace]
        return [
            pod for pod in pods
            if not pod.deleting and all(pod.body["metadata"]["labels"].get(k) == v for k, v in selector.items())
        ]  # fmt: skip

    def endpoints(self, namespace: str, name: str) -> dict[str, Any]:
        """The Endpoints of a Service, computed now: Running pods are ready addresses, Pending ones not."""
        service = self.get_service(namespace, name)
        ready, pending = [], []
        for pod in self.selected_pods(namespace, service["spec"].get("selector")):
            address = {"ip": POD_IP, "nodeName": NODE_NAME,
                       "targetRef": {"kind": "Pod", "namespace": namespace,
                                     "name": pod.key[1], "uid": pod.body["metadata"]["uid"]}}  # fmt: skip
            phase = pod.status.get("phase")
            if phase == "Running":
                ready.append(address)
            elif phase == "Pending":
                pending.append(address)
        ports = [
            {key: port[key] for key in ("name", "protocol") if port.get(key)} | {"port": port["targetPort"]}
            for port in service["spec"].get("ports") or []
        ]
        subset: dict[str, Any] = {"addresses": ready, "notReadyAddresses": pending, "ports": ports}
        return {
            "kind": "Endpoints",
            "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": self.next_version()},
            "subsets": [subset] if ready or pending else [],
        }

    def cluster_hosts(self, namespace: str) -> dict[str, str]:
        """Cluster DNS as ``/etc/hosts`` entries for a pod in ``namespace``: every Service's full names,
        and the short name of the Services in the pod's own namespace (the resolver's search path)."""
        hosts = {}
        with self.lock:
            services = list(self.services.items())
        for (ns, name), service in services:
            ip = POD_IP if service["spec"]["clusterIP"] == "None" else service["spec"]["clusterIP"]
            hosts[f"{name}.{ns}.svc"] = hosts[f"{name}.{ns}.svc.cluster.local"] = ip
            if ns == namespace:
                hosts[name] = ip
        return hosts

    # ----------------------------------------------------------------- the kubelet's part
    def _resolve_env(self, pod: Pod) -> dict[str, str]:
        """The container's environment; raises ApiError for what kubelet reports as a config error."""
        env: dict[str, str] = {}
        namespace, name = pod.key
        for var in pod.container.get("env") or []:
            source = var.get("valueFrom")
            if not source:
                env[var["name"]] = str(var.get("value") or "")
                continue
            if ref := source.get("secretKeyRef"):
                with self.lock:
                    secret = self.secrets.get((namespace, ref.get("name")))
                if secret is None or ref.get("key") not in (secret.get("data") or {}):
                    if ref.get("optional"):
                        continue
                    what = (
                        f'secret "{ref.get("name")}" not found'
                        if secret is None
                        else (f"couldn't find key {ref.get('key')} in Secret {namespace}/{ref.get('name')}")
                    )
                    raise ApiError(0, "CreateContainerConfigError", what)
                env[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
            elif ref := source.get("fieldRef"):
                fields = {
                    "metadata.name": name,
                    "metadata.namespace": namespace,
                    "metadata.uid": pod.body["metadata"]["uid"],
                    "spec.nodeName": NODE_NAME,
                    "status.podIP": POD_IP,
                    "status.hostIP": POD_IP,
                }
                if ref.get("fieldPath") not in fields:
                    raise ApiError(
                        0, "CreateContainerConfigError", f"unsupported fieldRef {ref.get('fieldPath')}"
                    )
                env[var["name"]] = fields[ref["fieldPath"]]
            else:
                raise ApiError(0, "CreateContainerConfigError", f"unsupported valueFrom of {var['name']}")
        return env

    def _container_options(self, pod: Pod, env: dict[str, str]) -> dict[str, Any]:
        container = pod.container
        spec = pod.body["spec"]
        namespace, name = pod.key
        binds: dict[str, dict[str, str]] = {}
        volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise ApiError(0, "CreateContainerConfigError", f"volume {mount['name']!r} is not defined")
            if "hostPath" in volume:
                source = volume["hostPath"]["path"]
            else:  # emptyDir: a fresh anonymous folder per pod, removed with it
                source = self._empty_dir(pod, volume["name"])
            binds[source] = {"bind": mount["mountPath"], "mode": "ro" if mount.get("readOnly") else "rw"}
        security = {**(spec.get("securityContext") or {}), **(container.get("securityContext") or {})}
        user = None
        if security.get("runAsUser") is not None:
            user = str(security["runAsUser"])
            if security.get("runAsGroup") is not None:
                user += f":{security['runAsGroup']}"
        return {
            "image": container["image"],
            # K8s `command` replaces the ENTRYPOINT, `args` the CMD — Docker's entrypoint/command exactly.
            "entrypoint": container.get("command") or None,
            "command": container.get("args") or None,
            "environment": env,
            "working_dir": container.get("workingDir"),
            "user": user,
            # Every pod shares the host's network (hostNetwork): the rig's Redis/Postgres/moto listen there.
            "network_mode": "host",
            # Cluster DNS: the Services that exist now resolve by name inside this pod.
            "extra_hosts": self.cluster_hosts(namespace),
            "volumes": binds,
            "name": f"k8s_{container['name']}_{name}_{namespace}_{pod.body['metadata']['uid'][:8]}",
            "labels": {
                SERVER_LABEL: self.server_id,
                POD_NAME_LABEL: name,
                POD_NAMESPACE_LABEL: namespace,
                POD_UID_LABEL: pod.body["metadata"]["uid"],
            },
            "detach": True,
        }

    def _empty_dir(self, pod: Pod, volume: str) -> str:
        path = tempfile.mkdtemp(prefix=f"pod-api-{pod.body['metadata']['uid'][:8]}-{volume}-")
        os.chmod(path, 0o777)  # any uid the image runs as may write (as an emptyDir allows)
        return path

    def _run(self, pod: Pod) -> None:
        """Schedule, configure, start and watch the pod's container (the kubelet's loop for one pod)."""
        import docker.errors

        namespace, name = pod.key
        self._set_status(
            pod,
            conditions=[{"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}],
            hostIP=POD_IP,
            podIP=POD_IP,
            startTime=now_rfc3339(),
        )
        pod.body["spec"]["nodeName"] = NODE_NAME
        self._event(pod, "Scheduled", f"Successfully assigned {namespace}/{name} to {NODE_NAME}")
        image = pod.container.get("image", "")
        try:
            self.docker.images.get(image)
        except docker.errors.ImageNotFound:
            message = f'Container image "{image}" is not present with pull policy of Never'
            self._container_state(pod, {"waiting": {"reason": "ErrImageNeverPull", "message": message}})
            self._event(pod, "ErrImageNeverPull", message, "Warning")
            return
        self._event(pod, "Pulled", f'Container image "{image}" already present on machine')
        while True:  # kubelet retries a config error (e.g. the Secret is created a moment later)
            if pod.deleting:
                return
            try:
                env = self._resolve_env(pod)
                options = self._container_options(pod, env)
                break
            except ApiError as exc:
                self._container_state(pod, {"waiting": {"reason": exc.reason, "message": exc.message}})
                self._event(pod, "Failed", f"Error: {exc.message}", "Warning")
                time.sleep(1)
        self._container_state(pod, {"waiting": {"reason": "ContainerCreating"}})
        with pod.lock:
            if pod.deleting:
                return
            try:
                container = self.docker.containers.create(**options)
            except docker.errors.APIError as exc:
                self._container_state(
                    pod, {"waiting": {"reason": "CreateContainerError", "message": str(exc)}}
                )
                self._event(pod, "Failed", f"Error: {exc}", "Warning")
                return
            pod.container_id = container.id
        self._event(pod, "Created", f"Created container {pod.container['name']}")
        try:
            container.start()
        except docker.errors.APIError as exc:
            self._finish(pod, container, reason="StartError", message=str(exc))
            return
        container.reload()
        self.launched.append({"pod": pod.key, "container_id": container.id, "inspect": container.attrs})
        self._event(pod, "Started", f"Started container {pod.container['name']}")
        self._container_state(
            pod, {"running": {"startedAt": docker_time(container.attrs["State"]["StartedAt"])}}, ready=True
        )
        self._set_status(
            pod,
            phase="Running",
            conditions=[
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
        )
        try:
            container.wait()
        except Exception:  # the container was removed under us (pod deletion): nothing left to report
            return
        self._finish(pod, container)

    def _finish(
        self, pod: Pod, container: Any, *, reason: str | None = None, message: str | None = None
    ) -> None:
        try:
            container.reload()
        except Exception:
            return
        state = container.attrs["State"]
        code = int(state.get("ExitCode") or 0) if reason is None else 128
        terminated = {
            "exitCode": code,
            "reason": reason
            or ("OOMKilled" if state.get("OOMKilled") else "Completed" if code == 0 else "Error"),
            "startedAt": docker_time(state.get("StartedAt")),
            "finishedAt": docker_time(state.get("FinishedAt")) or now_rfc3339(),
            "containerID": f"docker://{container.id}",
        }
        if message:
            terminated["message"] = message
        self._container_state(pod, {"terminated": terminated})
        never_ready = [
            {"type": t, "status": "False", "reason": "PodCompleted"} for t in ("ContainersReady", "Ready")
        ]
        self._set_status(
            pod,
            phase="Succeeded" if code == 0 else "Failed",
            conditions=[
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                *never_ready,
            ],
        )

    def _terminate(self, pod: Pod, grace: int) -> None:
        """Stop (SIGTERM, SIGKILL after ``grace`` seconds) and remove the container, then forget the pod."""
        import docker.errors

        with pod.lock:
            container_id = pod.container_id
        if container_id:
            self._event(pod, "Killing", f"Stopping container {pod.container['name']}")
            # already stopped or gone is fine (podman answers 304, 404 or 500 for those)
            with contextlib.suppress(docker.errors.APIError):
                self.docker.api.stop(container_id, timeout=grace)
            with contextlib.suppress(docker.errors.APIError):
                self.docker.api.remove_container(container_id, force=True)
        with self.lock:
            self.pods.pop(pod.key, None)

    def logs(
        self,
        pod: Pod,
        *,
        follow: bool,
        since: float | None,
        tail: int | None,
        timestamps: bool,
    ) -> Iterator[bytes]:
        """The container's output lines (stdout+stderr, as kubelet keeps them), K8s formatted."""
        if pod.container_id is None:
            waiting = (pod.status.get("containerStatuses") or [{}])[0].get("state", {}).get("waiting", {})
            raise ApiError(
                400,
                "BadRequest",
                f'container "{pod.container["name"]}" in pod "{pod.key[1]}" is waiting to start: '
                f"{waiting.get('reason', 'ContainerCreating')}",
            )
        options: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": True}
        if tail is not None and follow:
            options["tail"] = tail  # podman's: it counts records, kubelet counts lines (see below)
        if since is not None:
            options["since"] = int(since)  # whole seconds for podman; exact filtering below
        # streamed even when not following: each frame of the stream is one record (the splitter needs
        # the record boundaries; the joined answer loses them)
        frames = self.docker.api.logs(pod.container_id, stream=True, follow=follow, **options)
        lines = _log_lines(frames, since, timestamps)
        if tail is not None and not follow:
            # the last lines: a line written in parts is several records (podman's tail could cut it)
            yield from collections.deque(lines, maxlen=tail)
        else:
            yield from lines


def _log_lines(frames: Iterable[bytes], since: float | None, timestamps: bool) -> Iterator[bytes]:
    """Podman's log frames → K8s formatted lines (from ``since`` on)."""
    records = RecordSplitter()
    parsed = itertools.chain(itertools.chain.from_iterable(map(records.feed, frames)), records.close())
    for stamp, message in parsed:  # lazily: a followed log streams
        if (formatted := format_line(stamp, message, since, timestamps)) is not None:
            yield formatted


def _merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge patch (RFC 7386) — what strategic merge does for the maps KPO patches (labels)."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _json_patch(target: dict[str, Any], operations: list[dict[str, Any]]) -> None:
    """JSON patch (RFC 6902): add, replace and remove on object paths."""
    for operation in operations:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in operation["path"].lstrip("/").split("/")
        ]
        node: Any = target
        for part in parents:
            node = node.setdefault(part, {})
        if operation["op"] in ("add", "replace"):
            node[last] = copy.deepcopy(operation["value"])
        elif operation["op"] == "remove":
            node.pop(last, None)
        else:
            raise ApiError(422, "Invalid", f"unsupported JSON patch operation {operation['op']!r}")
