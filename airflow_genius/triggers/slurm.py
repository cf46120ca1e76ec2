"""Deferrable wait for a Slurm job: one trigger, one SSH connection, one command per poll.

Each poll asks squeue (live state), sacct when the job has left the queue, and the next bytes of the
job's output file — one round trip (:func:`~airflow_genius.hooks.slurm_protocol.poll_command`). Output
lines go to the task log as they appear. ``on_kill`` (a user marks/clears the deferred task) runs
``scancel``; a triggerer restart does not (``cleanup`` only closes the connection).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_genius.hooks import slurm_protocol as protocol

if TYPE_CHECKING:
    from asyncssh import SSHClientConnection


class GeniusSlurmTrigger(BaseTrigger):
    """Wait for Slurm job ``job_id`` to end, tailing ``output_path`` from ``log_offset`` into the log.

    Fires one event: ``{"job_id", "state", "succeeded", "reason", "cancel", "log_offset"}`` — the
    same dict the worker-side wait produces, so ``execute_complete`` has one code path.
    """

    def __init__(
        self,
        *,
        ssh_conn_id: str,
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
        self.ssh_conn_id = ssh_conn_id
        self.job_id = protocol.check_job_id(job_id)
        self.output_path = output_path
        self.log_offset = log_offset
        self.poll_interval = poll_interval
        self.lost_after = lost_after
        self.pending_timeout = pending_timeout
        self.started_at = started_at
        self.max_reconnect_attempts = max_reconnect_attempts

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "ssh_conn_id": self.ssh_conn_id,
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

    async def _connect(self) -> SSHClientConnection:
        from airflow.providers.ssh.hooks.ssh import SSHHookAsync

        return await SSHHookAsync(ssh_conn_id=self.ssh_conn_id).get_conn()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import asyncssh

        watch = protocol.JobWatch(
            self.job_id,
            lost_after=self.lost_after,
            pending_timeout=self.pending_timeout,
            started_at=self.started_at,
        )
        conn: SSHClientConnection | None = None
        failures = 0
        delays = protocol.poll_delays(self.poll_interval)
        try:
            while True:
                try:
                    if conn is None:
                        conn = await self._connect()
                    command = protocol.poll_command(self.job_id, self.output_path, self.log_offset)
                    answer = await conn.run(command, check=False, encoding=None, timeout=60)
                except (OSError, asyncssh.Error, TimeoutError) as exc:
                    failures += 1
                    if conn is not None:
                        conn.close()
                        conn = None
                    if failures > self.max_reconnect_attempts:
                        yield TriggerEvent(watch.event("ERROR", reason=f"lost the SSH connection: {exc}"))
                        return
                    self.log.warning(
                        "SSH poll failed (%d/%d), reconnecting: %s",
                        failures,
                        self.max_reconnect_attempts,
                        exc,
                    )
                    await asyncio.sleep(min(2.0**failures, 30.0))
                    continue
                failures = 0
                poll = protocol.parse_poll(_stdout_bytes(answer), offset=self.log_offset, job_id=self.job_id)
                self._log_output(poll.output)
                self.log_offset = poll.offset
                event = watch.observe(poll.verdict, time.time())
                if event is not None:
                    event = await self._drain_output(conn, event)
                    yield TriggerEvent({**event, "log_offset": self.log_offset})
                    return
                await asyncio.sleep(next(delays))
        finally:
            if conn is not None:
                conn.close()

    async def _drain_output(self, conn: SSHClientConnection, event: dict[str, Any]) -> dict[str, Any]:
        """After the end, log what the job wrote since the last poll (up to a few MiB)."""
        for _ in range(64):
            command = protocol.poll_command(self.job_id, self.output_path, self.log_offset)
            answer = await conn.run(command, check=False, encoding=None, timeout=60)
            poll = protocol.parse_poll(_stdout_bytes(answer), offset=self.log_offset, final_read=True)
            if not poll.output:
                break
            self._log_output(poll.output)
            self.log_offset = poll.offset
        return event

    def _log_output(self, output: bytes) -> None:
        for line in output.decode(errors="replace").splitlines():
            self.log.info("[slurm %s] %s", self.job_id, line)

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
