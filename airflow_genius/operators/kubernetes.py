"""Run a genius task in a Kubernetes pod (a thin subclass of ``KubernetesPodOperator``).

.. code-block:: python

    from kubernetes.client import models as k8s

    from airflow_genius.operators.kubernetes import GeniusKubernetesBoltOperator

    count = GeniusKubernetesBoltOperator(
        task_id="count",
        kubernetes_conn_id="kubernetes_default",
        namespace="genius",
        image="registry.example/airflow-genius-runtime:0.1.0",   # ENTRYPOINT ["genius"]
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        input_uri="s3://lake/quotes/",
        output_uri="s3://lake/counts/",
        state_conn_id="genius_postgres",      # its password reaches the pod through a K8s Secret
        container_resources=k8s.V1ResourceRequirements(requests={"cpu": "1", "memory": "1Gi"}),
        deferrable=True,
    )

What happens: the TaskSpec goes into the pod as the environment variable ``GENIUS_TASK_SPEC`` and the
container gets ``arguments=["run", "--spec-env", "GENIUS_TASK_SPEC"]`` — ``cmds`` stays empty, so the
image's ``genius`` ENTRYPOINT runs. The state store's password (``GENIUS_STATE_PASSWORD``) is never in
the pod spec: it is put in a Secret created for this task instance, referenced with
``valueFrom.secretKeyRef``, and deleted as soon as the container has started (or when the task ends,
fails or is killed). Alternatively pass ``state_secret_name="my-secret"``: a Secret you manage, with one
key per secret variable (``GENIUS_STATE_PASSWORD``); nothing is created or deleted then.

Everything else is KPO's: pod logs in the task log (``get_logs``), ``deferrable`` (KPO's trigger; the
genius subclass adds the Secret's cleanup and one API client shared by the deferred pods), reattach after a worker crash (``durable``, default on
Airflow 3.3: the pod's identity is kept in ``task_state_store``, with KPO's label search as fallback),
and ``on_kill`` deleting the pod (in the worker, and in the triggerer when deferred). The result is the
run record's (docs/architecture.md#the-run-record-decides), never KPO's xcom sidecar: a failed task fails with its own traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

from airflow_genius import _provider_compat as compat
from airflow_genius.links.output import GeniusOutputLink
from airflow_genius.links.record import GeniusRecordLink
from airflow_genius.operators.base import (
    GENIUS_TEMPLATE_FIELDS,
    LOG_TAIL_LINES,
    LOG_TAIL_WIDTH,
    GeniusTaskFailed,
    identity_from_context,
    last_log_lines,
)
from airflow_genius.operators.container import GeniusContainerMixin
from airflow_genius.operators.kubernetes_request import PodRequest, pod_request, secret_name_for
from airflow_genius.triggers.kubernetes import SECRET_KWARG

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from airflow_genius.operators.state_reach import RemoteReach


# type-ignore: both bases declare `namespace` (genius state vs Kubernetes); __init__ below separates them
class GeniusKubernetesOperator(GeniusContainerMixin, KubernetesPodOperator):  # type: ignore[misc]
    """Run a genius task in a pod of the runtime image; the run record's result is the XCom.

    Args (besides the genius arguments of :class:`~airflow_genius.operators.base.GeniusOperatorMixin`
    and every ``KubernetesPodOperator`` argument — ``image``, ``namespace``, ``kubernetes_conn_id``,
    ``volumes``, ``container_resources``, ``deferrable`` (default ``[operators] default_deferrable``),
    ``durable``, ``get_logs``, …):
        namespace: the pods' Kubernetes namespace (KPO's meaning; default: the connection's, else
            ``default``). The genius task-state namespace is the mixin's ``state_namespace``.
        state_secret_name: a Secret you manage holding the state store's secret variables (key
            ``GENIUS_STATE_PASSWORD``). Default: one is created per task instance and deleted after.
        do_xcom_push: push the genius result as the XCom (default True). KPO's xcom sidecar is never
            added: the result comes from the run record.

    ``cmds`` and ``arguments`` are the runner's: the image's ``genius`` ENTRYPOINT is kept.
    """

    operator_extra_links = (
        *KubernetesPodOperator.operator_extra_links,
        GeniusOutputLink(),
        GeniusRecordLink(),
    )

    template_fields: Sequence[str] = (
        *GENIUS_TEMPLATE_FIELDS,
        *KubernetesPodOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **KubernetesPodOperator.template_fields_renderers,
        "genius_call": "json",
    }
    ui_color = "#326ce5"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        namespace: str | None = None,
        state_secret_name: str | None = None,
        do_xcom_push: bool = True,
        **kwargs: Any,
    ) -> None:
        for owned in ("cmds", "arguments"):
            if kwargs.get(owned):
                raise ValueError(
                    f"{type(self).__name__}: `{owned}` is set by the runner (the image's `genius` ENTRYPOINT "
                    "runs `genius run --spec-env GENIUS_TASK_SPEC`); build a derived image to change it"
                )
        super().__init__(namespace=namespace, do_xcom_push=False, **kwargs)
        # KPO reads do_xcom_push as "add the xcom sidecar", the task runner as "push the return value":
        # keep the user's wish for the latter, and hide it from KPO while it runs (see _kpo_running).
        self.do_xcom_push = do_xcom_push
        self.state_secret_name = state_secret_name
        self.genius_secret: tuple[str, str] | None = None  # (namespace, name) of a Secret we created
        self.genius_result: tuple[Any] | None = None
        #: (how its container ended, last log lines) of a pod that failed, read before KPO deletes it
        self.genius_pod_end: tuple[str, str] | None = None

    # ------------------------------------------------------------------ launch
    def genius_pod_request(self, context: Context) -> PodRequest:
        """This task instance's launch handed to KPO: sets ``arguments``, ``env_vars`` and
        ``pod_request_obj`` (KPO's pod, namespace resolved); returns the request, whose Secret (if any)
        the caller creates just before the pod."""
        launch = self.prepare_launch(context)
        who = identity_from_context(context)
        secret_name = self.state_secret_name or secret_name_for(
            who["dag_id"], who["task_id"], who["run_id"], who["map_index"]
        )
        request = pod_request(
            launch,
            secret_name=secret_name,
            create_secret=self.state_secret_name is None,
            env_vars=self.env_vars,
            secret_labels=compat.kpo_task_instance_labels(self, context),
        )
        self.arguments = request.arguments
        self.env_vars = request.env_vars
        with self._kpo_running():
            self.pod_request_obj = self.build_pod_request_obj(context)
        return request

    def genius_remote_reach(self) -> RemoteReach:
        """The pod shares with the worker its writable mounts of a ``hostPath`` volume at the same path,
        of a PersistentVolumeClaim or of an NFS volume (``volumes`` + ``volume_mounts``): an embedded
        SQLite store elsewhere is refused before the Secret and the pod are created."""
        from kubernetes.client import ApiClient

        from airflow_genius.operators.state_reach import RemoteReach, pod_shared_paths

        def shared() -> list[str]:
            as_spec = ApiClient().sanitize_for_serialization  # objects or dicts -> pod spec dicts
            return pod_shared_paths(as_spec(list(self.volumes)), as_spec(list(self.volume_mounts)))

        return RemoteReach(
            "the pod",
            shared,
            "mount a hostPath volume of that folder, a PersistentVolumeClaim or an NFS volume there at "
            "the same path (volumes=, volume_mounts=)",
        )

    def execute(self, context: Context) -> Any:
        request = self.genius_pod_request(context)
        assert self.pod_request_obj is not None  # built by genius_pod_request
        with self._kpo_running():
            if request.secret is not None:
                self._create_secret(request.secret, self.pod_request_obj.metadata.namespace)
                self.trigger_kwargs = {**(self.trigger_kwargs or {}), SECRET_KWARG: request.secret_name}
            try:
                super().execute(context)
            except Exception as exc:  # TaskDeferred is a BaseException: the Secret outlives a deferral
                self.delete_genius_secret()
                self._fail_from_record(context, exc)
        if self.genius_result is not None:  # finished by trigger_reentry already
            return self.genius_result[0]
        self.delete_genius_secret()
        return self.finish_remote(context)

    def trigger_reentry(self, context: Context, event: dict[str, Any]) -> Any:
        """Back from KPO's trigger: KPO logs and cleans up the pod, the run record gives the result."""
        if event.get(SECRET_KWARG):
            self.genius_secret = (event["namespace"], event[SECRET_KWARG])
        with self._kpo_running():
            try:
                super().trigger_reentry(context, event)
            except Exception as exc:
                self.delete_genius_secret()
                self._fail_from_record(context, exc)
        self.delete_genius_secret()
        result = self.finish_remote(context)
        # KPO calls this directly (no deferral) when the pod had already ended: execute returns it then
        self.genius_result = (result,)
        return result

    def defer(
        self,
        *,
        trigger: BaseTrigger,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: timedelta | int | float | None = None,
    ) -> NoReturn:
        """KPO defers to its own trigger; the genius subclass adds the Secret's cleanup and a shared client."""
        from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

        from airflow_genius.triggers.kubernetes import GeniusKubernetesPodTrigger

        if type(trigger) is KubernetesPodTrigger:
            trigger = GeniusKubernetesPodTrigger.from_trigger(trigger)
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    def get_or_create_pod(self, pod_request_obj: k8s.V1Pod, context: Context) -> k8s.V1Pod:
        """KPO's reattach, plus one case: a pod of an earlier try that *succeeded* while no worker watched.

        KPO deletes such a pod and starts another (it could not read the xcom sidecar any more); here the
        result is in the run record, so the pod is adopted — a second pod would only find the record
        finished. Failed or evicted pods still go through KPO's path (a new pod for the new try).
        """
        if self.reattach_on_restart:
            pod = compat.kpo_pod_from_task_state(self, context) or self.find_pod(
                pod_request_obj.metadata.namespace, context=context
            )
            if pod is not None and pod.status is not None and pod.status.phase == "Succeeded":
                self.log.info("pod %s of an earlier try already succeeded: adopting it", pod.metadata.name)
                compat.kpo_remember_pod(self, context, pod)
                return pod
        return super().get_or_create_pod(pod_request_obj, context)

    def await_pod_start(self, pod: k8s.V1Pod) -> None:
        super().await_pod_start(pod)
        # The container has its environment once the pod left Pending: the Secret has served.
        self.delete_genius_secret()

    def cleanup(
        self,
        pod: k8s.V1Pod,
        remote_pod: k8s.V1Pod,
        xcom_result: dict[str, Any] | None = None,
        context: Context | None = None,
    ) -> None:
        """KPO's cleanup deletes the pod, then raises "returned a failure" for a failed one: first keep
        how that pod's container ended (:func:`container_end`) and its last log lines, which the task's
        error quotes when the run record cannot say what happened (an image whose ``genius`` does not
        start, a process killed mid-run)."""
        phase = remote_pod.status.phase if remote_pod is not None and remote_pod.status else None
        if phase is not None and phase != "Succeeded" and not compat.kpo_was_killed(self):
            namespace, name = remote_pod.metadata.namespace, remote_pod.metadata.name
            self.genius_pod_end = (
                container_end(remote_pod, self.base_container_name),
                last_log_lines(lambda: pod_log_tail(self.client, namespace, name, self.base_container_name)),
            )
        super().cleanup(pod, remote_pod, xcom_result=xcom_result, context=context)

    def genius_remote_job_id(self) -> str | None:
        return next((pod.metadata.name for pod in (self.pod, self.pod_request_obj) if pod is not None), None)

    def on_kill(self) -> None:
        """Delete the pod (KPO: SIGTERM to the container, then SIGKILL after the grace period) and the Secret."""
        if self.pod is not None and self.on_kill_action.value == "delete_pod":
            self.log.info(
                "deleting pod %s/%s (the task was killed)",
                self.pod.metadata.namespace,
                self.pod.metadata.name,
            )
        super().on_kill()
        self.delete_genius_secret()

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def _kpo_running(self) -> Iterator[None]:
        """While KPO's code runs, ``do_xcom_push`` is False: no xcom sidecar, no sidecar extraction."""
        push, self.do_xcom_push = self.do_xcom_push, False
        try:
            yield
        finally:
            self.do_xcom_push = push

    def _create_secret(self, secret: k8s.V1Secret, namespace: str) -> None:
        """Create (or, on a retry, replace) this task instance's Secret. Its data is never logged."""
        from kubernetes.client.exceptions import ApiException

        secret.metadata.namespace = namespace
        try:
            self.client.create_namespaced_secret(namespace=namespace, body=secret)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.client.replace_namespaced_secret(name=secret.metadata.name, namespace=namespace, body=secret)
        self.genius_secret = (namespace, secret.metadata.name)
        self.log.info(
            "created Secret %s/%s for the state store's credentials", namespace, secret.metadata.name
        )

    def delete_genius_secret(self) -> None:
        """Delete the Secret this task instance created, if any (idempotent; errors only logged)."""
        if self.genius_secret is None:
            return
        from kubernetes.client.exceptions import ApiException

        namespace, name = self.genius_secret
        try:
            self.client.delete_namespaced_secret(name=name, namespace=namespace)
            self.log.info("deleted Secret %s/%s", namespace, name)
        except ApiException as exc:
            if exc.status != 404:
                self.log.warning("could not delete Secret %s/%s: %s", namespace, name, exc.reason)
        except Exception as exc:
            self.log.warning("could not delete Secret %s/%s: %s", namespace, name, exc)
        self.genius_secret = None

    def _fail_from_record(self, context: Context, exc: Exception) -> NoReturn:
        """KPO failed the pod (or could not run it): fail with the task's own error where there is one."""
        from airflow.providers.common.compat.sdk import AirflowSkipException

        if isinstance(exc, (AirflowSkipException, GeniusTaskFailed)):  # skip_on_exit_code; already decided
            raise exc
        text = str(exc).strip()
        # KPO's message may end with the whole pod object; its first line says what happened.
        failure = text.splitlines()[0] if text else type(exc).__name__
        ended, log_tail = self.genius_pod_end or ("", "")
        if ended:
            failure += f" ({ended})"
        try:
            self.finish_remote(context, failure=failure, log_tail=log_tail)
        except GeniusTaskFailed as failed:
            raise failed from exc
        raise exc  # finish_remote always raises when given a failure; kept for type checkers


def container_end(pod: k8s.V1Pod, container: str) -> str:
    """How ``container`` ended in a (read) pod: its exit code, and the reason and message Kubernetes gives
    for an abnormal end (a container that could not start); "" while it has not terminated.

    >>> ended = k8s.V1ContainerStateTerminated(exit_code=128, reason="StartError",
    ...                                        message='exec: "genius": executable file not found')
    >>> status = k8s.V1ContainerStatus(name="base", image="i", image_id="", ready=False, restart_count=0,
    ...                                state=k8s.V1ContainerState(terminated=ended))
    >>> container_end(k8s.V1Pod(status=k8s.V1PodStatus(container_statuses=[status])), "base")
    'exit code 128, StartError: exec: "genius": executable file not found'
    """
    for status in (pod.status.container_statuses if pod.status else None) or ():
        ended = status.state.terminated if status.name == container and status.state else None
        if ended is None:
            continue
        text = f"exit code {ended.exit_code}"
        if ended.reason and ended.reason not in ("Error", "Completed"):  # the plain ones say nothing more
            text += f", {ended.reason}"
        if ended.message:  # one line: a termination message may be a whole log (FallbackToLogsOnError)
            text += f": {' '.join(ended.message.split())[:LOG_TAIL_WIDTH]}"
        return text
    return ""


def pod_log_tail(client: Any, namespace: str, name: str, container: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``container``'s log in pod ``namespace/name`` (``client``: a
    ``CoreV1Api``). Raises the client's ``ApiException`` when there is no log to read.

    The one reader of a pod's log: the job runner quotes it for a failed pod, the service runner for a
    service that did not get ready.
    """
    # The raw answer: the client's own decoding of a log is not text on every version.
    answer = client.read_namespaced_pod_log(
        name, namespace, container=container, tail_lines=lines, _preload_content=False
    )
    return str(answer.data.decode("utf-8", "replace"))


class GeniusKubernetesSpoutOperator(GeniusKubernetesOperator):
    """A genius :class:`~airflow_genius.core.task.Spout` in a Kubernetes pod."""

    genius_kind = "spout"


class GeniusKubernetesBoltOperator(GeniusKubernetesOperator):
    """A genius :class:`~airflow_genius.core.task.Bolt` in a Kubernetes pod."""

    genius_kind = "bolt"
