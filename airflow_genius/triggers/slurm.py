"""Deferrable wait for a Slurm job: one trigger, one SSH connection, one command per poll.

Each poll asks squeue (live state), sacct when the job has left the queue, and the next bytes of the
job's output file — one round trip (:func:`~airflow_genius.core.slurm_protocol.poll_command`), read by
the same step as the worker's wait (:func:`~airflow_genius.core.slurm_protocol.advance`). Output
lines go to the task log as they appear. ``on_kill`` (a user marks/clears the deferred task) runs
``scancel``; a triggerer restart does not (``cleanup`` only closes the connection).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_genius.core import slurm_protocol as protocol

if TYPE_CHECKING:
    from asyncssh import SSHClientConnection


class SlurmJobTrigger(BaseTrigger):
    """What every deferred Slurm wait shares, whatever it talks to the cluster through: the job, its
    output file and the wait's settings (the fields of :class:`~airflow_genius.core.slurm_protocol.Watch`),
    their serialization, and how many failed polls in a row it survives. Subclasses add their
    connection fields (:meth:`transport_kwargs`) and ``run``."""

    def __init__(
        self,
        *,
        job_id: str,
        output_path: str | None = None,
        log_offset: int = 0,
        poll_interval: float = 10.0,
        lost_after: float = 120.0,
        pending_timeout: float | None = None,
        started_at: float | None = None,
        max_reconnect_attempts: int = 5,
    ) -> None:
        super().__init__()
        self.job_id = protocol.check_job_id(job_id)
        self.output_path = output_path
        self.log_offset = log_offset
        self.poll_interval = poll_interval
        self.lost_after = lost_after
        self.pending_timeout = pending_timeout
        self.started_at = started_at
        self.max_reconnect_attempts = max_reconnect_attempts

    def transport_kwargs(self) -> dict[str, Any]:
        """The subclass's own constructor arguments (its connections)."""
        return {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.transport_kwargs(),
                "job_id": self.job_id,
                "output_path": self.output_path,
                "log_offset": self.log_offset,
                "poll_interval": self.poll_interval,
                "lost_after": self.lost_after,
                "pending_timeout": self.pending_timeout,
                "started_at": self.started_at,
                "max_reconnect_attempts": self.max_reconnect_attempts,
            },
        )

    def give_up_after(self, failures: int, exc: BaseException, what: str, offset: int) -> TriggerEvent | None:
        """The ERROR event once ``failures`` polls in a row failed beyond ``max_reconnect_attempts``;
        before that None, with a warning (the caller pauses :func:`retry_pause` and polls again)."""
        if failures > self.max_reconnect_attempts:
            reason = f"{what} failed {failures} times: {exc}"
            return TriggerEvent(protocol.job_event(self.job_id, "ERROR", reason=reason, log_offset=offset))
        self.log.warning("%s failed (%d/%d), retrying: %s", what, failures, self.max_reconnect_attempts, exc)
        return None


def retry_pause(failures: int) -> float:
    """Seconds before the next poll after ``failures`` failed ones in a row: 2, 4, 8… up to 30."""
    return min(2.0**failures, 30.0)


class GeniusSlurmTrigger(SlurmJobTrigger):
    """Wait for Slurm job ``job_id`` to end, tailing ``output_path`` from ``log_offset`` into the log;
    with ``end_mark`` (the file a genius job's script touches on exit) each poll waits for it on the
    login node, so the end is seen at once.

    Fires one event: ``{"job_id", "state", "succeeded", "reason", "cancel", "log_offset"}`` — the
    same dict the worker-side wait produces, so ``execute_complete`` has one code path.
    """

    def __init__(self, *, ssh_conn_id: str, end_mark: str | None = None, **wait: Any) -> None:
        super().__init__(**wait)
        self.ssh_conn_id = ssh_conn_id
        self.end_mark = end_mark

    def transport_kwargs(self) -> dict[str, Any]:
        return {"ssh_conn_id": self.ssh_conn_id, "end_mark": self.end_mark}

    async def _connect(self) -> SSHClientConnection:
        from airflow.providers.ssh.hooks.ssh import SSHHookAsync

        return await SSHHookAsync(ssh_conn_id=self.ssh_conn_id).get_conn()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import asyncssh

        watch = protocol.Watch(
            self.job_id,
            output_path=self.output_path,
            end_mark=self.end_mark,
            poll_interval=self.poll_interval,
            lost_after=self.lost_after,
            pending_timeout=self.pending_timeout,
            offset=self.log_offset,
            started_at=self.started_at,
        )
        conn: SSHClientConnection | None = None
        failures = 0
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self._connect()
                    answer = await conn.run(watch.command(), check=False, encoding=None, timeout=60)
                except (OSError, asyncssh.Error, TimeoutError) as exc:
                    failures += 1
                    if conn is not None:
                        conn.close()
                        conn = None
                    if (event := self.give_up_after(failures, exc, "SSH poll", watch.offset)) is not None:
                        yield event
                        return
                    await asyncio.sleep(retry_pause(failures))
                    continue
                failures = 0
                step = protocol.advance(watch, _stdout_bytes(answer), time.time())
                step.log_to(self.log)
                if step.event is not None:
                    yield TriggerEvent(step.event)
                    return
                watch = step.watch
                await asyncio.sleep(watch.delay)
        finally:
            if conn is not None:
                conn.close()

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel the job (idempotent ``scancel``)."""
        conn = await self._connect()
        try:
            await conn.run(protocol.cancel_command(self.job_id), check=False, timeout=30)
            self.log.info("cancelled Slurm job %s", self.job_id)
        finally:
            conn.close()


def _stdout_bytes(answer: Any) -> bytes:
    """An asyncssh result's stdout as bytes (commands run with ``encoding=None``, so it is bytes already)."""
    out = answer.stdout
    return out.encode() if isinstance(out, str) else (out or b"")
