"""The amazon provider's ``TaskDoneTrigger`` (what ``EcsRunTaskOperator`` defers with) plus ``on_kill``.

Waiting and forwarding the CloudWatch log are the provider's own ``run`` (aiobotocore, which the
``amazon`` extra installs). Added: ``on_kill`` — a user who marks or clears a deferred genius ECS task
stops its ECS task. Airflow ≥ 3.3 calls it only on such a user action, never when the triggerer
restarts.

    GeniusEcsTaskDoneTrigger(cluster="genius", task_arn="arn:…", waiter_delay=6,
                             waiter_max_attempts=1000, aws_conn_id="aws_default",
                             log_group="/ecs/genius", log_stream="genius/genius/<task id>")

Events are the provider's: ``{"status": "success", "task_arn": …, "cluster": …}``.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.ecs import EcsHook
from airflow.providers.amazon.aws.triggers.ecs import TaskDoneTrigger

#: ``stop_task`` reason (ECS keeps it as the task's ``stoppedReason``), the provider operator's own.
KILL_REASON = "Task killed by the user"


class GeniusEcsTaskDoneTrigger(TaskDoneTrigger):
    """Wait for an ECS task like ``TaskDoneTrigger`` (tailing its log); stop it when the user kills the
    Airflow task."""

    async def on_kill(self) -> None:
        """Stop the ECS task (idempotent: stopping a stopped task changes nothing)."""
        hook = EcsHook(
            aws_conn_id=self.aws_conn_id, region_name=self.region_name, verify=self.verify,
            config=self.botocore_config,
        )  # fmt: skip
        try:
            async with await hook.get_async_conn() as client:
                await client.stop_task(cluster=self.cluster, task=self.task_arn, reason=KILL_REASON)
            self.log.info("stopped ECS task %s", self.task_arn)
        except Exception:
            self.log.exception("could not stop ECS task %s; it may still be running", self.task_arn)
