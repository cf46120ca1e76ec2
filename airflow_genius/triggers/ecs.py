"""The amazon provider's ``TaskDoneTrigger`` (what ``EcsRunTaskOperator`` defers with) plus ``on_kill``,
polling with the synchronous client.

* ``on_kill``: a user who marks or clears a deferred genius ECS task stops its ECS task. Airflow ≥ 3.3
  calls it only on such a user action, never when the triggerer restarts.
* ``run`` polls ``describe_tasks`` and forwards the CloudWatch log with boto3 in a worker thread instead
  of the provider's aiobotocore clients: aiobotocore pins botocore to an older minor release than the
  boto3 the rest of the stack uses, so requiring it would downgrade boto3 for everyone.

    GeniusEcsTaskDoneTrigger(cluster="genius", task_arn="arn:…", waiter_delay=6,
                             waiter_max_attempts=1000, aws_conn_id="aws_default",
                             log_group="/ecs/genius", log_stream="genius/genius/<task id>")

Events are the provider's: ``{"status": "success", "task_arn": …, "cluster": …}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.providers.amazon.aws.triggers.ecs import TaskDoneTrigger
from airflow.providers.amazon.aws.utils.task_log_fetcher import AwsTaskLogFetcher
from airflow.triggers.base import TriggerEvent

from airflow_genius import _provider_compat as compat


class GeniusEcsTaskDoneTrigger(TaskDoneTrigger):
    """Wait for an ECS task like ``TaskDoneTrigger`` (tailing its log); stop it when the user kills the
    Airflow task."""

    def _client(self, service: str, region_name: str | None = None) -> Any:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(
            aws_conn_id=self.aws_conn_id, client_type=service,
            region_name=region_name or self.region_name, verify=self.verify, config=self.botocore_config,
        )  # fmt: skip
        return hook.conn

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ecs = self._client("ecs")
        logs = self._client("logs", self.log_region_name) if self.log_group and self.log_stream else None
        token: str | None = None
        while self.waiter_max_attempts:
            self.waiter_max_attempts -= 1
            answer = await asyncio.to_thread(ecs.describe_tasks, cluster=self.cluster, tasks=[self.task_arn])
            status = answer["tasks"][0]["lastStatus"] if answer.get("tasks") else "MISSING"
            if logs is not None:
                token = await asyncio.to_thread(self._forward, logs, token)
            if status in ("STOPPED", "MISSING"):
                yield TriggerEvent({"status": "success", "task_arn": self.task_arn, "cluster": self.cluster})
                return
            self.log.info("Status of the task is %s", status)
            await asyncio.sleep(int(self.waiter_delay))
        yield TriggerEvent(
            {"status": "error", "task_arn": self.task_arn, "cluster": self.cluster,
             "message": "Waiter error: max attempts reached"}
        )  # fmt: skip

    def _forward(self, logs: Any, token: str | None) -> str | None:
        """Log the stream's new events; returns the token to continue from."""
        while True:
            args: dict[str, Any] = {"nextToken": token} if token else {}
            try:
                answer = logs.get_log_events(
                    logGroupName=self.log_group, logStreamName=self.log_stream, startFromHead=True, **args
                )
            except logs.exceptions.ResourceNotFoundException:
                return token  # the stream appears once the container writes
            for event in answer["events"]:
                self.log.log(compat.aws_log_level(event["message"]), AwsTaskLogFetcher.event_to_str(event))
            if not answer["events"] or answer["nextForwardToken"] == token:
                return answer["nextForwardToken"]
            token = answer["nextForwardToken"]

    async def on_kill(self) -> None:
        """Stop the ECS task (idempotent: stopping a stopped task changes nothing)."""
        try:
            ecs = self._client("ecs")
            await asyncio.to_thread(
                ecs.stop_task, cluster=self.cluster, task=self.task_arn, reason="Task killed by the user"
            )
            self.log.info("stopped ECS task %s", self.task_arn)
        except Exception:
            self.log.exception("could not stop ECS task %s; it may still be running", self.task_arn)
