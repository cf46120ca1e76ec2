"""The amazon provider's ``BatchJobTrigger`` plus ``on_kill``, polling with the synchronous client.

* ``on_kill``: a user who marks or clears a deferred genius Batch task terminates its job. Airflow ≥ 3.3
  calls it only on such a user action, never when the triggerer restarts, so a rolling deploy never
  kills jobs.
* ``run`` polls ``describe_jobs`` with boto3 in a worker thread instead of the provider's aiobotocore
  waiter: aiobotocore pins botocore to an older minor release than the boto3 the rest of the stack
  uses, so requiring it would downgrade boto3 for everyone. One describe call per ``waiter_delay``
  seconds costs the triggerer a short-lived thread, not its event loop.

    GeniusBatchJobTrigger(job_id="…", aws_conn_id="aws_default", waiter_delay=30)

Events are the provider's: ``{"status": "success"|"error", "job_id": …, "message": …}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger
from airflow.triggers.base import TriggerEvent

TERMINAL = {"SUCCEEDED": "success", "FAILED": "error"}


class GeniusBatchJobTrigger(BatchJobTrigger):
    """Wait for a Batch job like ``BatchJobTrigger``; terminate it when the user kills the task."""

    @property
    def job_id(self) -> str:
        return str(self.serialized_fields["job_id"])

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = self.hook().conn
        status = None
        for attempt in range(max(1, int(self.attempts))):
            if attempt:
                await asyncio.sleep(self.waiter_delay)
            jobs = (await asyncio.to_thread(client.describe_jobs, jobs=[self.job_id]))["jobs"]
            status = jobs[0]["status"] if jobs else "MISSING"
            if status in TERMINAL:
                reason = jobs[0].get("statusReason", "")
                yield TriggerEvent(
                    {
                        "status": TERMINAL[status],
                        "job_id": self.job_id,
                        "message": f"{status} {reason}".strip(),
                    }
                )
                return
            if status == "MISSING":
                break
            self.log.info("AWS Batch job %s is %s", self.job_id, status)
        yield TriggerEvent(
            {"status": "error", "job_id": self.job_id, "message": f"gave up waiting (last status {status})"}
        )

    async def on_kill(self) -> None:
        """Terminate the job (idempotent: terminating a finished job is a no-op for Batch)."""
        try:
            client = self.hook().conn
            await asyncio.to_thread(client.terminate_job, jobId=self.job_id, reason="Task killed by the user")
            self.log.info("terminated AWS Batch job %s", self.job_id)
        except Exception:
            self.log.exception("could not terminate AWS Batch job %s; it may still be running", self.job_id)
