"""Run a genius service in a Kubernetes pod behind a Kubernetes Service: start it, wait until it answers,
publish its cluster DNS name.

.. code-block:: python

    from airflow_genius.operators.kubernetes import GeniusKubernetesOperator
    from airflow_genius.operators.kubernetes_service import (
        GeniusKubernetesServiceOperator,
        GeniusKubernetesServiceStopOperator,
    )

    POD = {"kubernetes_conn_id": "kubernetes_default", "namespace": "genius",
           "image": "registry.example/airflow-genius-runtime:0.1.0"}
    start = GeniusKubernetesServiceOperator(
        task_id="start_echo",
        task_class="airflow_genius.examples.tasks:EchoService",
        method="serve",
        service_port=8000,          # $SERVICE_PORT in the pod; the Service's port and targetPort
        health_path="/health",
        ready_timeout=120,
        **POD,
    )
    ask = GeniusKubernetesOperator.partial(
        task_id="ask", service="start_echo",    # SERVICE_URL=http://start-echo-<hash>.genius.svc:8000
        task_class="airflow_genius.examples.tasks:ServiceClient", method="call", **POD,
    ).expand(method_kwargs=[{"times": 20, "path": "/echo"}] * 2)
    stop = GeniusKubernetesServiceStopOperator(task_id="stop_echo", service="start_echo")
    start >> ask >> stop.as_teardown(setups=start)

**Start.** :class:`GeniusKubernetesServiceOperator` is the Kubernetes job runner
(:class:`~airflow_genius.operators.kubernetes.GeniusKubernetesOperator`, itself ``KubernetesPodOperator``)
with a ``service`` section in the TaskSpec: the same pod request (KPO builds the pod from all its
arguments; the state password travels through the per-task-instance Secret), plus a ``ClusterIP``
Service selecting the pod. Both are named :func:`~airflow_genius.operators.kubernetes_request.service_name_for`
— ``<task id>-<digest of dag, task, run, map index>``, the same on every try. The task does not wait for
the pod to complete: it waits until the run record says the service answered its health path (the
runtime probes it from inside the pod), and returns what clients need — the XCom ``{"name", "hostname",
"port", "url", "health_path", "ready_at", …, "pod", "namespace"}``, ``hostname`` being the Service's DNS
name ``<name>.<namespace>.svc`` (resolved by cluster DNS in every pod; pass ``service_hostname=`` to
publish another address, e.g. an Ingress). The pod keeps running after the task succeeded.

**Failure.** A service that ends, or does not answer in ``start_timeout + ready_timeout`` seconds, fails
the task with the pod's last log lines in the error (or why its container waits, e.g. the image); the
pod and the Service are deleted, and the task waits until the pod is gone. ``on_kill`` deletes both.
**Retry:** a retry reads the pod by its name; if it is still Pending or Running (the worker died, the
cluster kept it) the task reattaches to it — readiness from the run record of the try that started it,
no second pod. A pod that ended is deleted and a new one started.

**Stop.** :class:`GeniusKubernetesServiceStopOperator` (a teardown) deletes the Service and the pod by
the same name — not by XCom, so it also works after a start task that failed half-way — with a grace
period: the container gets SIGTERM, which the runtime records as the service's normal end (run record
SUCCESS, result ``{"service", "stopped", "served_seconds", "ready"}``), SIGKILL after the grace period.
It waits until the pod is gone. Nothing to delete is not an error (idempotent). See
docs/runners/kubernetes.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator
from kubernetes.client import models as k8s

from airflow_genius.operators.base import identity_from_context
from airflow_genius.operators.container import SPEC_ENV
from airflow_genius.operators.kubernetes import GeniusKubernetesOperator, pod_log_tail
from airflow_genius.operators.kubernetes_request import MANAGED_BY, secret_name_for, service_name_for
from airflow_genius.operators.service import ERROR_TAIL_LINES, LOG_LINES, GeniusServiceMixin, ServiceNotReady

if TYPE_CHECKING:
    import logging

    from airflow.sdk import Context
    from kubernetes.client import CoreV1Api

#: Pod label the Service selects (value: the pod's and the Service's name).
SERVICE_LABEL = "airflow-genius/service"
#: Name of the service's port, on the container and on the Service.
PORT_NAME = "http"
#: Kubernetes' default termination grace period (seconds), when neither the operator nor the pod set one.
DEFAULT_GRACE_SECONDS = 30
#: Seconds, on top of the grace period, a deleted pod may take to disappear before the wait gives up.
GONE_MARGIN_SECONDS = 60.0
#: Pod phases in which the service may still serve (reattach to it, keep waiting for it).
LIVE_PHASES = ("Pending", "Running")


def service_object(
    name: str, namespace: str, *, port: int, labels: dict[str, str] | None = None
) -> k8s.V1Service:
    """The ``ClusterIP`` Service in front of the service pod ``name`` (pure; no cluster contacted).

    >>> svc = service_object("echo-1a2b", "genius", port=8000, labels={"dag_id": "d"})
    >>> svc.spec.selector, [(p.name, p.port, p.target_port) for p in svc.spec.ports], svc.metadata.labels
    ({'airflow-genius/service': 'echo-1a2b'}, [('http', 8000, 8000)], {'dag_id': 'd', 'app.kubernetes.io/managed-by': 'airflow-genius'})
    """
    return k8s.V1Service(
        api_version="v1",
        kind="Service",
        metadata=k8s.V1ObjectMeta(name=name, namespace=namespace, labels={**(labels or {}), **MANAGED_BY}),
        spec=k8s.V1ServiceSpec(
            type="ClusterIP",
            selector={SERVICE_LABEL: name},
            ports=[k8s.V1ServicePort(name=PORT_NAME, port=port, target_port=port, protocol="TCP")],
        ),
    )


def service_dns_name(name: str, namespace: str) -> str:
    """The name cluster DNS gives a Service, as pods resolve it (their search path adds the domain).

    >>> service_dns_name("echo-1a2b", "genius")
    'echo-1a2b.genius.svc'
    """
    return f"{name}.{namespace}.svc"


def delete_service(
    client: CoreV1Api,
    namespace: str,
    name: str,
    *,
    grace_seconds: int | None,
    wait_seconds: float,
    log: logging.Logger | Any,
) -> list[str]:
    """Delete the Service and the pod ``name`` (the pod with ``grace_seconds``: SIGTERM first) and, when
    ``wait_seconds`` > 0, wait until the pod is gone. Idempotent: what does not exist is skipped.
    Returns what was deleted (``["Service", "pod"]`` or less). Raises ``TimeoutError`` when the pod
    outlived the wait.

    The one stop of the Kubernetes service: the stop operator, a failed start and ``on_kill``.
    """
    from kubernetes.client.exceptions import ApiException

    deleted = []
    # The Service first: no new connection is routed to a pod that is going away.
    for kind, delete in (
        ("Service", lambda: client.delete_namespaced_service(name, namespace)),
        ("pod", lambda: client.delete_namespaced_pod(name, namespace, grace_period_seconds=grace_seconds)),
    ):
        try:
            delete()
        except ApiException as exc:
            if exc.status != 404:
                raise
            continue
        deleted.append(kind)
        log.info("deleted %s %s/%s", kind, namespace, name)
    if wait_seconds > 0:
        deadline = time.monotonic() + wait_seconds
        while _read_pod(client, namespace, name) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"pod {namespace}/{name} still exists {wait_seconds:g}s after its deletion"
                )
            time.sleep(0.5)
    return deleted


def _read_pod(client: CoreV1Api, namespace: str, name: str) -> k8s.V1Pod | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return client.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _gone_wait(grace_seconds: int | None) -> float:
    return float(DEFAULT_GRACE_SECONDS if grace_seconds is None else grace_seconds) + GONE_MARGIN_SECONDS


# type-ignore: both bases declare `namespace` (genius state vs Kubernetes), as in GeniusKubernetesOperator
class GeniusKubernetesServiceOperator(GeniusServiceMixin, GeniusKubernetesOperator):  # type: ignore[misc]
    """Start a genius service (a task method that serves until stopped) in a pod behind a Kubernetes
    Service, wait until it answers its health path, and publish the Service's address (the XCom clients'
    ``service=`` reads).

    Takes the service arguments of :class:`~airflow_genius.operators.service.GeniusServiceMixin`
    (``service_port``, ``health_path``, ``ready_timeout``, ``start_timeout``, ``service_name``), the
    genius arguments, and the arguments of
    :class:`~airflow_genius.operators.kubernetes.GeniusKubernetesOperator` / ``KubernetesPodOperator``
    (``image``, ``namespace``, ``kubernetes_conn_id``, ``volumes``, ``container_resources``,
    ``termination_grace_period``, ``on_kill_action``, …). Besides:

    Args:
        service_hostname: publish this address instead of the Service's DNS name
            ``<name>.<namespace>.svc`` (e.g. an Ingress or a load balancer in front of it).

    The service waits in the worker (``deferrable`` is refused); the pod's ``name`` is the runner's (KPO's
    ``name``/``random_name_suffix`` do not apply), its log is copied into the task log once it is ready,
    and KPO's ``callbacks`` are not called (KPO's own run loop, which calls them, waits for the pod to end).
    """

    template_fields: Sequence[str] = GeniusKubernetesOperator.template_fields
    ui_color = "#326ce5"
    ui_fgcolor = "#ffffff"

    def __init__(self, *, service_hostname: str | None = None, **kwargs: Any) -> None:
        if kwargs.pop("deferrable", False):
            raise ValueError(
                f"{type(self).__name__}: a service is waited on in the worker until it is ready; "
                "`deferrable=True` is not supported"
            )
        super().__init__(deferrable=False, **kwargs)
        self.service_hostname = service_hostname
        #: (namespace, name) of the pod and the Service, once known: what on_kill deletes.
        self.genius_target: tuple[str, str] | None = None
        self._genius_killed = False

    def execute(self, context: Context) -> dict[str, Any]:
        """Start (or reattach to) the service pod and its Service; what it publishes once ready."""
        who = identity_from_context(context)
        # KPO names the pod it builds after `name` (no random suffix): one name on every try.
        self.name = service_name_for(who["dag_id"], who["task_id"], who["run_id"], who["map_index"])
        self.random_name_suffix = False
        request = self.genius_pod_request(context)  # the job runner's launch: arguments, env, Secret
        pod = self._as_service_pod(self.pod_request_obj, self.name)
        namespace, name = pod.metadata.namespace, pod.metadata.name
        self.genius_target = (namespace, name)
        started_by: int | None = None  # the try whose run record counts: this one, unless reattached
        try:
            previous = _read_pod(self.client, namespace, name)
            if previous is not None and self._live(previous):
                started_by = _spec_try(previous, self.base_container_name)
                self.log.info(
                    "reattaching to service pod %s/%s (phase %s, started by try %s)",
                    namespace, name, previous.status.phase, started_by,
                )  # fmt: skip
                self.pod = previous
                if request.secret is not None:  # an earlier try's, still there if it crashed early
                    self.genius_secret = (namespace, str(request.secret_name))
            else:
                if previous is not None:  # an earlier try's pod that ended: make room for a new one
                    self.log.info("deleting ended service pod %s/%s of an earlier try", namespace, name)
                    delete_service(self.client, namespace, name, grace_seconds=0,
                                   wait_seconds=GONE_MARGIN_SECONDS, log=self.log)  # fmt: skip
                if request.secret is not None:
                    self._create_secret(request.secret, namespace)
                self.log.info(
                    "starting service %s in pod %s/%s (image %s), port %s",
                    self.published_name, namespace, name, self.image, self._service_port,
                )  # fmt: skip
                self.pod = self.pod_manager.create_pod(pod)
            self._ensure_k8s_service(pod)
            if self._genius_killed:  # on_kill came before the pod existed: it has not deleted it
                raise ServiceNotReady("the task was killed while its service was starting")
            published = self.wait_until_ready(
                context,
                running=lambda: self._still_running(namespace, name),
                log_tail=lambda: self._log_tail(namespace, name, ERROR_TAIL_LINES),
                hostname=self.service_hostname or service_dns_name(name, namespace),
                try_number=started_by,
            )
        except BaseException:
            self._remove_after_failure()
            raise
        self.delete_genius_secret()
        output = self._log_tail(namespace, name, LOG_LINES).rstrip()
        if output:
            self.log.info("the service's log so far (last %d lines):\n%s", LOG_LINES, output)
        self.log.info(
            "pod %s/%s keeps serving at %s until GeniusKubernetesServiceStopOperator(service=%r) stops it",
            namespace, name, published["url"], self.task_id,
        )  # fmt: skip
        return {**published, "pod": name, "namespace": namespace}

    def on_kill(self) -> None:
        """Delete the pod (KPO's on_kill: SIGTERM to the service, SIGKILL after the grace period), the
        Secret and the Service — unless ``on_kill_action="keep_pod"``."""
        self._genius_killed = True
        super().on_kill()
        if self.genius_target is None or self.on_kill_action.value != "delete_pod":
            return
        namespace, name = self.genius_target
        try:  # the pod again too: a no-op after KPO's delete, needed if KPO had no pod yet
            delete_service(self.client, namespace, name, grace_seconds=self.termination_grace_period,
                           wait_seconds=0, log=self.log)  # fmt: skip
        except Exception as exc:
            self.log.warning("could not delete the service %s/%s: %s", namespace, name, exc)

    # ------------------------------------------------------------------ helpers
    @property
    def _service_port(self) -> int:
        assert self.genius_service is not None  # set by GeniusServiceMixin
        return int(self.genius_service["service_port"])

    def _as_service_pod(self, pod: k8s.V1Pod, name: str) -> k8s.V1Pod:
        """KPO's pod with the service's deterministic name, the label its Service selects and its port."""
        pod.metadata.name = name  # a pod template's own name would win in KPO's reconciliation
        pod.metadata.labels = {**(pod.metadata.labels or {}), SERVICE_LABEL: name, **MANAGED_BY}
        port = self._service_port
        container = _base_container(pod, self.base_container_name)
        if not any(p.container_port == port for p in container.ports or []):
            container.ports = [
                *(container.ports or []),
                k8s.V1ContainerPort(name=PORT_NAME, container_port=port),
            ]
        return pod

    def _ensure_k8s_service(self, pod: k8s.V1Pod) -> None:
        """Create the pod's Service; one left by an earlier try (same name, so same selector) is kept."""
        from kubernetes.client.exceptions import ApiException

        namespace, name = pod.metadata.namespace, pod.metadata.name
        # The task instance's labels (KPO's, without the try number): `-l dag_id=…,task_id=…` finds it.
        labels = {
            k: v
            for k, v in (pod.metadata.labels or {}).items()
            if k in ("dag_id", "task_id", "run_id", "map_index")
        }
        body = service_object(name, namespace, port=self._service_port, labels=labels)
        try:
            self.client.create_namespaced_service(namespace, body)
            self.log.info("created Service %s/%s (port %s)", namespace, name, self._service_port)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.log.info("Service %s/%s exists (an earlier try's): keeping it", namespace, name)

    @staticmethod
    def _live(pod: k8s.V1Pod) -> bool:
        return (
            pod.metadata.deletion_timestamp is None
            and pod.status is not None
            and pod.status.phase in LIVE_PHASES
        )

    def _still_running(self, namespace: str, name: str) -> bool:
        """``running`` of wait_until_ready; drops the Secret once the container holds its environment."""
        pod = _read_pod(self.client, namespace, name)
        if pod is not None and pod.status is not None and pod.status.phase != "Pending":
            self.delete_genius_secret()
        return pod is not None and self._live(pod)

    def _log_tail(self, namespace: str, name: str, lines: int) -> str:
        """The pod's last log lines; when it has none yet, why its container waits."""
        from kubernetes.client.exceptions import ApiException

        try:
            return pod_log_tail(self.client, namespace, name, self.base_container_name, lines)
        except ApiException as exc:
            if exc.status == 404:
                return "(the pod is gone)"
            pod = _read_pod(self.client, namespace, name)
            statuses = (pod.status.container_statuses if pod is not None and pod.status else None) or []
            waiting = statuses[0].state.waiting if statuses and statuses[0].state else None
            if waiting is not None:
                return f"(no log: the container is waiting: {waiting.reason}: {waiting.message or ''})"
            return f"(no log: {exc.reason})"

    def _remove_after_failure(self) -> None:
        """The start failed: delete the pod and the Service (and wait until the pod is gone), the Secret.
        After ``on_kill`` no wait: the task is being terminated (the deletes catch a pod created since)."""
        self.delete_genius_secret()
        if self.genius_target is None:
            return
        namespace, name = self.genius_target
        grace = self.termination_grace_period
        wait = 0.0 if self._genius_killed else _gone_wait(grace)
        try:
            delete_service(self.client, namespace, name, grace_seconds=grace, wait_seconds=wait, log=self.log)
        except Exception as exc:  # the start's own error is the one to report
            self.log.warning("could not delete the service %s/%s: %s", namespace, name, exc)


def _base_container(pod: k8s.V1Pod, name: str) -> k8s.V1Container:
    containers = pod.spec.containers if pod.spec is not None else []
    return next((c for c in containers if c.name == name), containers[0])


def _spec_try(pod: k8s.V1Pod, container: str) -> int | None:
    """The try number in the TaskSpec a pod was started with (the try whose run record counts)."""
    for env in _base_container(pod, container).env or []:
        if env.name == SPEC_ENV and env.value:
            try:
                return int(json.loads(env.value)["run"]["try_number"])
            except (ValueError, KeyError, TypeError):
                return None
    return None


class GeniusKubernetesServiceStopOperator(BaseOperator):
    """Teardown: delete the Service and the pod of the :class:`GeniusKubernetesServiceOperator`
    ``service`` (by their deterministic name), with a grace period so the service's run record ends
    SUCCESS; waits until the pod is gone. Idempotent.

    The connection and namespace default to the start task's (its operator in the same DAG; the
    namespace it published, when it got that far), so ``service=`` is usually all it needs.

    Args:
        service: task id of the start task.
        kubernetes_conn_id / namespace / config_file / cluster_context / in_cluster: where the pod runs
            (default: the start task's).
        grace_period_seconds: seconds between SIGTERM and SIGKILL (default: the start task's
            ``termination_grace_period``, else Kubernetes' 30).
        service_map_index: the map index of a mapped start task (default -1: not mapped).
    """

    template_fields: Sequence[str] = ("namespace",)
    ui_color = "#326ce5"
    ui_fgcolor = "#ffffff"
    _CONNECTION_ARGS: ClassVar[tuple[str, ...]] = (
        "kubernetes_conn_id",
        "config_file",
        "cluster_context",
        "in_cluster",
    )

    def __init__(
        self,
        *,
        service: str,
        kubernetes_conn_id: str | None = None,
        namespace: str | None = None,
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        grace_period_seconds: int | None = None,
        service_map_index: int = -1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.kubernetes_conn_id = kubernetes_conn_id
        self.namespace = namespace
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.grace_period_seconds = grace_period_seconds
        self.service_map_index = service_map_index

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        ti = context["ti"]
        start = self._start_operator(context)
        settings = {
            arg: getattr(self, arg) if getattr(self, arg) is not None else getattr(start, arg, None)
            for arg in self._CONNECTION_ARGS
        }
        if self.kubernetes_conn_id is None and start is None:
            settings["kubernetes_conn_id"] = KubernetesHook.default_conn_name  # KPO's default
        hook = KubernetesHook(
            conn_id=settings["kubernetes_conn_id"],
            in_cluster=settings["in_cluster"],
            config_file=settings["config_file"],
            cluster_context=settings["cluster_context"],
        )
        published = ti.xcom_pull(task_ids=self.service, map_indexes=self.service_map_index)
        namespace = (
            self.namespace
            or (published.get("namespace") if isinstance(published, dict) else None)
            or getattr(start, "namespace", None)
            or hook.get_namespace()
            or "default"
        )
        name = service_name_for(ti.dag_id, self.service, ti.run_id, self.service_map_index)
        grace = self.grace_period_seconds
        if grace is None:
            grace = getattr(start, "termination_grace_period", None)
        client = hook.core_v1_client
        deleted = delete_service(client, namespace, name, grace_seconds=grace,
                                 wait_seconds=_gone_wait(grace), log=self.log)  # fmt: skip
        # A start task that crashed before the pod started may have left its state Secret behind.
        self._delete_secret(
            client, namespace, secret_name_for(ti.dag_id, self.service, ti.run_id, self.service_map_index)
        )
        if not deleted:
            self.log.info("service %s/%s: nothing to stop (already gone)", namespace, name)
        status = self._record_status(start, ti.dag_id, ti.run_id)
        if status is not None:
            self.log.info("service %s: run record %s", self.service, status)
        return {
            "service": self.service,
            "namespace": namespace,
            "name": name,
            "deleted": deleted,
            "status": status,
        }

    def _start_operator(self, context: Context) -> Any:
        """The start task's operator in this DAG (its connection, namespace and state store), if any."""
        dag = context.get("dag")
        try:
            return dag.get_task(self.service) if dag is not None else None
        except Exception:  # not in this DAG: every setting is then this operator's own
            return None

    def _delete_secret(self, client: CoreV1Api, namespace: str, name: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            client.delete_namespaced_secret(name, namespace)
            self.log.info("deleted Secret %s/%s left by the start task", namespace, name)
        except ApiException as exc:
            if exc.status != 404:
                self.log.warning("could not delete Secret %s/%s: %s", namespace, name, exc.reason)

    def _record_status(self, start: Any, dag_id: str, run_id: str) -> str | None:
        """The service's run record status after the stop (None without a genius start task)."""
        from airflow_genius.core.state import RunKey

        genius_state: Callable[[], Any] | None = getattr(start, "genius_state", None)
        if genius_state is None:
            return None
        try:
            with genius_state().open() as state:
                record = state.get_run(RunKey(dag_id, self.service, run_id, self.service_map_index))
        except Exception as exc:  # the service is stopped; its record is only reported
            self.log.warning("could not read the run record of service %s: %s", self.service, exc)
            return None
        return None if record is None else str(record.status.value)
