"""A genius service as a long-running ECS task, and the teardown that stops it.

.. code-block:: python

    from airflow_genius.operators.ecs import GeniusEcsOperator
    from airflow_genius.operators.ecs_service import GeniusEcsServiceOperator, GeniusEcsServiceStopOperator

    ECS = dict(cluster="genius", task_definition="genius-runtime", container_name="genius",
               launch_type="FARGATE", awslogs_group="/ecs/genius", awslogs_stream_prefix="genius",
               network_configuration={"awsvpcConfiguration": {"subnets": ["subnet-…"]}})
    start = GeniusEcsServiceOperator(
        task_id="start_echo", task_class="airflow_genius.examples.tasks:EchoService", method="serve",
        service_port=8000, health_path="/health", ready_timeout=120, **ECS,
    )
    clients = GeniusEcsOperator.partial(
        task_id="ask", service="start_echo",          # SERVICE_URL etc. in each client's environment
        task_class="airflow_genius.examples.tasks:ServiceClient", method="call", **ECS,
    ).expand(method_kwargs=[{"times": 20, "path": "/echo"}] * 2)
    stop = GeniusEcsServiceStopOperator(task_id="stop_echo", service="start_echo", cluster="genius")
    start >> clients >> stop.as_teardown(setups=start)

What happens: :class:`GeniusEcsServiceOperator` is :class:`~airflow_genius.operators.ecs.GeniusEcsOperator`
(the same ``containerOverrides``, the provider's deterministic ``startedBy`` and its reattach) with a
``service`` section in the TaskSpec, and it does not wait for the ECS task to stop: it waits until the
run record says the service answers its health path (the runtime probes it from inside the task), with
the container's CloudWatch log in the task log meanwhile, then returns where clients reach it (its XCom).
A retry after a worker crash finds the task the earlier try started (RUNNING, same ``startedBy``) and
waits for that one: one service per task instance on the cluster.

Where clients reach it (``hostname`` of the XCom): with ``awsvpc`` networking, the private IPv4 address
of the task's ENI (``describe_tasks`` attachments), the address every client in the VPC uses; with
``host`` networking, the address the runtime recorded — the instance's primary address, where a
host-network container listens. With ``bridge`` networking the runtime can only record the container's
bridge address, which clients elsewhere cannot reach: use ``awsvpc`` or ``host`` for a service.

If the service is not ready in time (``start_timeout`` + ``ready_timeout``), ends first, or the task is
killed (``on_kill``), the ECS task is stopped. :class:`GeniusEcsServiceStopOperator` stops it by its
``startedBy`` (no XCom needed: it works after a half-failed start too) and is idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.ecs import EcsBaseOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields

from airflow_genius import _provider_compat as compat
from airflow_genius.operators.base import identity_from_context
from airflow_genius.operators.container import SPEC_ENV
from airflow_genius.operators.ecs import GeniusEcsOperator
from airflow_genius.operators.service import GeniusServiceMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_genius.core.spec import TaskSpec

#: ``stop_task`` reasons (ECS keeps them as the task's ``stoppedReason``).
NOT_READY_REASON = "Genius service not ready: stopped by Airflow"
TEARDOWN_REASON = "Genius service stopped by its teardown task"


def ecs_started_by(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The ``startedBy`` that ``EcsRunTaskOperator(reattach=True)`` gives the ECS task of a task
    instance — the same on every try, so a retry and the stop operator find the task by it.

    >>> ecs_started_by("d", "t", "r") == ecs_started_by("d", "t", "r", -1) != ecs_started_by("d", "t", "r", 0)
    True
    """
    from airflow.providers.amazon.aws.utils.identifiers import generate_uuid

    # The provider's own rule (EcsRunTaskOperator.execute): the uuid of the four parts as strings.
    return generate_uuid(dag_id, task_id, run_id, str(map_index))


def live_tasks(client: Any, cluster: str, started_by: str) -> list[str]:
    """ARNs of the tasks of ``cluster`` with ``started_by`` that ECS still wants RUNNING (the lookup of
    the provider's reattach)."""
    pages = client.get_paginator("list_tasks").paginate(
        cluster=cluster, startedBy=started_by, desiredStatus="RUNNING"
    )
    return [arn for page in pages for arn in page["taskArns"]]


def task_private_ip(task: Mapping[str, Any]) -> str | None:
    """The private IPv4 address of an ``awsvpc`` task's ENI (None: no ENI, or no address yet).

    >>> task_private_ip({"attachments": [{"type": "ElasticNetworkInterface", "status": "ATTACHED",
    ...     "details": [{"name": "subnetId", "value": "subnet-1"},
    ...                 {"name": "privateIPv4Address", "value": "10.0.1.7"}]}]})
    '10.0.1.7'
    >>> task_private_ip({"attachments": []}) is None
    True
    """
    for attachment in task.get("attachments") or ():
        if attachment.get("type") != "ElasticNetworkInterface":
            continue
        for detail in attachment.get("details") or ():
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    return None


def launched_spec(task: Mapping[str, Any], container_name: str) -> TaskSpec | None:
    """The TaskSpec a (described) ECS task was started with, from its container override (None if it
    was not started by a genius operator, or by one whose TaskSpec this version cannot read)."""
    from airflow_genius.core.spec import TaskSpec

    for override in (task.get("overrides") or {}).get("containerOverrides") or ():
        if override.get("name") != container_name:
            continue
        for item in override.get("environment") or ():
            if item.get("name") == SPEC_ENV:
                try:
                    return TaskSpec.from_json(item["value"])
                except ValueError:  # SpecError: then this try's record is the one to wait for
                    return None
    return None


class GeniusEcsServiceOperator(GeniusServiceMixin, GeniusEcsOperator):
    """Start a genius service as an ECS task and wait until it is ready; the XCom says where it listens.

    Args (besides those of :class:`~airflow_genius.operators.ecs.GeniusEcsOperator` — ``cluster``,
    ``task_definition``, ``container_name``, ``launch_type``, ``network_configuration``,
    ``awslogs_group``/``awslogs_stream_prefix``, ``environment``, ``aws_conn_id`` … — and the service
    arguments of :class:`~airflow_genius.operators.service.GeniusServiceMixin`: ``service_port``,
    ``health_path``, ``ready_timeout``, ``start_timeout``, ``service_name``).

    The XCom: ``{"name", "hostname", "port", "url", "health_path", "ready", "ready_at",
    "ready_seconds", "ecs_task_arn"}``. Always waits in the worker (``deferrable`` is refused): the wait
    ends when the service is ready, within ``start_timeout + ready_timeout``.
    """

    ui_color = "#ffb84d"

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.get("deferrable"):
            raise ValueError(
                f"{type(self).__name__} waits in the worker until the service is ready: drop deferrable=True"
            )
        super().__init__(deferrable=False, **kwargs)
        self.genius_stopped = False

    # ------------------------------------------------------------------ start
    def execute(self, context: Context) -> dict[str, Any]:
        try_number = self.launch(context)
        if self.do_xcom_push:
            context["ti"].xcom_push(key="ecs_task_arn", value=self.arn)
        if compat.ecs_logs_enabled(self):
            self.task_log_fetcher = compat.ecs_log_fetcher(self)
            self.task_log_fetcher.start()
        try:
            published = self.wait_until_ready(
                context,
                running=self.task_running,
                log_tail=self.log_tail,
                hostname=self.task_address,
                try_number=try_number,
            )
        except BaseException:  # not ready, timed out, killed: nothing may be left running
            self.stop_service(NOT_READY_REASON)
            raise
        finally:
            self.stop_log_fetcher()
        return {**published, "ecs_task_arn": self.arn}

    def launch(self, context: Context) -> int:
        """Start this task instance's ECS task, or (``reattach``) find the one an earlier try left
        running; sets ``self.arn`` and returns the try whose run record tells when the service is ready.

        The provider's reattach and start (what ``EcsRunTaskOperator.execute`` does before it waits),
        with its deterministic ``startedBy`` even without reattach: the stop operator finds the task by
        it.
        """
        self.overrides = self.build_overrides(context)  # the job runner's, with the service section
        self.container_name = self.genius_container  # names the log stream
        self.genius_stopped = False
        who = identity_from_context(context)
        started_by = ecs_started_by(who["dag_id"], who["task_id"], who["run_id"], who["map_index"])
        if self.reattach:
            self.log.info("Try to find run with startedBy=%r", started_by)
            compat.ecs_reattach(self, started_by)
        if not self.arn:
            compat.ecs_start_task(self, started_by)
            return int(who["try_number"])
        spec = launched_spec(self.describe_task(), self.genius_container)
        return spec.run.try_number if spec is not None else int(who["try_number"])  # that try's record

    def describe_task(self) -> dict[str, Any]:
        """The ECS task this try started or reattached to ({} when ECS no longer knows it)."""
        answer = self.client.describe_tasks(cluster=self.cluster, tasks=[self.arn])
        tasks = answer.get("tasks") or []
        return dict(tasks[0]) if tasks else {}

    def task_running(self) -> bool:
        """The task is not STOPPED (pending, provisioning and running count)."""
        return self.describe_task().get("lastStatus", "STOPPED") != "STOPPED"

    def task_address(self) -> str:
        """Asked once the service is ready (its task runs, so an ``awsvpc`` ENI is attached): the ENI's
        private IPv4 address; "" for other network modes — clients then use the address the runtime
        recorded (with ``host`` networking, the instance's)."""
        return task_private_ip(self.describe_task()) or ""

    def log_tail(self) -> str:
        """The last ``number_logs_exception`` lines of the container's CloudWatch stream ("" without
        ``awslogs_*``), read as the provider's log fetcher reads them for its failure message."""
        if self.task_log_fetcher is None:
            return ""
        return "\n".join(self.task_log_fetcher.get_last_log_messages(self.number_logs_exception))

    def stop_log_fetcher(self) -> None:
        fetcher, self.task_log_fetcher = self.task_log_fetcher, None
        if fetcher is not None:
            fetcher.stop()
            fetcher.join(timeout=30)

    # ------------------------------------------------------------------ stop
    def stop_service(self, reason: str) -> None:
        """Stop the ECS task once (after ``on_kill`` did, nothing more)."""
        if self.genius_stopped or not self.arn:
            return
        self.genius_stopped = True
        try:
            self.client.stop_task(cluster=self.cluster, task=self.arn, reason=reason)
            self.log.info("stopped ECS task %s (%s)", self.arn, reason)
        except Exception:
            self.log.exception("could not stop ECS task %s; it may still be running", self.arn)

    def on_kill(self) -> None:
        """Stop the ECS task (the provider's ``on_kill``: reason "Task killed by the user")."""
        if self.arn and not self.genius_stopped:
            self.genius_stopped = True
            super().on_kill()


class GeniusEcsServiceStopOperator(EcsBaseOperator):
    """Stop the ECS task of a :class:`GeniusEcsServiceOperator` task of this DAG run; use it as the
    service's teardown (``stop.as_teardown(setups=start)``).

    The task is found by the start task's deterministic ``startedBy`` (every RUNNING one is stopped), so
    it needs no XCom and is idempotent: nothing running, nothing to do.

    Args:
        service: task id of the service operator.
        cluster: its ECS cluster.
        service_map_index: map index of the service task (-1: not mapped).
        wait_for_stop: wait until ECS reports the task STOPPED (the service's run record then has its
            final state).
        waiter_delay / waiter_max_attempts: that wait's polling.
        (``aws_conn_id``, ``region_name``, ``verify``, ``botocore_config`` as every AWS operator.)

    Returns (XCom) ``{"service": <task id>, "stopped": [<task ARNs>]}``.
    """

    template_fields: Sequence[str] = aws_template_fields("cluster", "service")
    ui_color = "#ffb84d"

    def __init__(
        self,
        *,
        service: str,
        cluster: str,
        service_map_index: int = -1,
        wait_for_stop: bool = True,
        waiter_delay: int = 6,
        waiter_max_attempts: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service = service
        self.cluster = cluster
        self.service_map_index = service_map_index
        self.wait_for_stop = wait_for_stop
        self.waiter_delay = waiter_delay
        self.waiter_max_attempts = waiter_max_attempts

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        started_by = ecs_started_by(ti.dag_id, self.service, ti.run_id, self.service_map_index)
        arns = live_tasks(self.client, self.cluster, started_by)
        if not arns:
            self.log.info("service %s has no running ECS task (startedBy=%s): nothing to stop",
                          self.service, started_by)  # fmt: skip
            return {"service": self.service, "stopped": []}
        for arn in arns:
            self.client.stop_task(cluster=self.cluster, task=arn, reason=TEARDOWN_REASON)
            self.log.info("stopped ECS task %s of service %s", arn, self.service)
        if self.wait_for_stop:
            self.client.get_waiter("tasks_stopped").wait(
                cluster=self.cluster, tasks=arns,
                WaiterConfig={"Delay": self.waiter_delay, "MaxAttempts": self.waiter_max_attempts},
            )  # fmt: skip
        return {"service": self.service, "stopped": arns}
