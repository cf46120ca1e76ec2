"""The amazon provider's ``BatchJobTrigger`` plus ``on_kill``.

Waiting is the provider's own ``run`` (its async ``batch_job_complete`` waiter on aiobotocore, which the
``amazon`` extra installs). Added: ``on_kill`` — a user who marks or clears a deferred genius Batch task
terminates its job. Airflow ≥ 3.3 calls it only on such a user action, never when the triggerer
restarts, so a rolling deploy never kills jobs.

    GeniusBatchJobTrigger(job_id="…", aws_conn_id="aws_default", waiter_delay=30)

Events are the provider's: ``{"status": "success"|"error", "job_id": …, "message": …}``.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger

#: ``terminate_job`` reason (Batch keeps it as the job's ``statusReason``), the provider operator's own.
KILL_REASON = "Task killed by the user"


class GeniusBatchJobTrigger(BatchJobTrigger):
    """Wait for a Batch job like ``BatchJobTrigger``; terminate it when the user kills the task."""

    @property
    def job_id(self) -> str:
        return str(self.serialized_fields["job_id"])

    async def on_kill(self) -> None:
        """Terminate the job (idempotent: terminating a finished job is a no-op for Batch)."""
        try:
            async with await self.hook().get_async_conn() as client:
                await client.terminate_job(jobId=self.job_id, reason=KILL_REASON)
            self.log.info("terminated AWS Batch job %s", self.job_id)
        except Exception:
            self.log.exception("could not terminate AWS Batch job %s; it may still be running", self.job_id)
