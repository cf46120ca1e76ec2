"""Deferrable wait for a Slurm job over slurmrestd: the REST counterpart of
:class:`~airflow_genius.triggers.slurm.GeniusSlurmTrigger`.

Each poll asks slurmrestd (``httpx.AsyncClient``, JWT minted again before it expires) for the job, and
for its record in slurmdbd once slurmctld forgot it; then reads the next bytes of the job's output over
SSH (``asyncssh``, the ssh provider's async hook) or from a shared folder. The answers go to the same
step as every other wait (:func:`~airflow_genius.core.slurm_protocol.advance`), so the event is the
one the operator's ``execute_complete`` reads from the SSH trigger. ``on_kill`` cancels the job through
slurmrestd; a triggerer restart does not.

.. code-block:: python

    self.defer(
        trigger=GeniusSlurmRestTrigger(
            slurm_rest_conn_id="hpc_rest", ssh_conn_id="hpc_login", api_version=hook.api_version,
            job_id=job.job_id, output_path=job.output_path, poll_interval=10.0,
        ),
        method_name="execute_complete",
    )
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_genius.core import slurm_protocol as protocol
from airflow_genius.core import slurm_rest as rest
from airflow_genius.hooks.slurm_rest import SlurmRestHook, read_local_chunk, rest_watch, shared_path

if TYPE_CHECKING:
    from asyncssh import SSHClientConnection


class GeniusSlurmRestTrigger(BaseTrigger):
    """Wait for Slurm job ``job_id`` through slurmrestd, tailing ``output_path`` from ``log_offset``.

    Args:
        slurm_rest_conn_id: the ``genius_slurm_rest`` connection.
        ssh_conn_id: the SSH connection the output is read over (None: the output must be under the
            REST connection's ``shared_paths``).
        api_version: the slurmrestd API version the operator detected (no second OpenAPI read).

    Fires one event: ``{"job_id", "state", "succeeded", "reason", "cancel", "log_offset"}``, as
    :class:`~airflow_genius.triggers.slurm.GeniusSlurmTrigger`.
    """

    def __init__(
        self,
        *,
        slurm_rest_conn_id: str,
        job_id: str,
        api_version: str,
        ssh_conn_id: str | None = None,
        output_path: str | None = None,
        log_offset: int = 0,
        poll_interval: float = 10.0,
        lost_after: float = 120.0,
        pending_timeout: float | None = None,
        started_at: float | None = None,
        max_reconnect_attempts: int = 5,
    ) -> None:
        super().__init__()
        self.slurm_rest_conn_id = slurm_rest_conn_id
        self.job_id = protocol.check_job_id(job_id)
        self.api_version = api_version
        self.ssh_conn_id = ssh_conn_id
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
                "slurm_rest_conn_id": self.slurm_rest_conn_id,
                "job_id": self.job_id,
                "api_version": self.api_version,
                "ssh_conn_id": self.ssh_conn_id,
                "output_path": self.output_path,
                "log_offset": self.log_offset,
                "poll_interval": self.poll_interval,
                "lost_after": self.lost_after,
                "pending_timeout": self.pending_timeout,
                "started_at": self.started_at,
                "max_reconnect_attempts": self.max_reconnect_attempts,
            },
        )

    async def _hook(self) -> SlurmRestHook:
        hook = SlurmRestHook(self.slurm_rest_conn_id)
        await hook.aconnect()
        return hook

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import asyncssh
        import httpx

        watch = rest_watch(
            self.job_id,
            output_path=self.output_path,
            poll_interval=self.poll_interval,
            lost_after=self.lost_after,
            pending_timeout=self.pending_timeout,
            offset=self.log_offset,
            started_at=self.started_at,
        )
        hook = await self._hook()
        local = self.output_path is not None and shared_path(self.output_path, hook.extra.get("shared_paths"))
        conn: SSHClientConnection | None = None
        failures = 0
        self.log.info("waiting for Slurm job %s through slurmrestd (API %s)", self.job_id, self.api_version)
        try:
            while True:
                try:
                    lines = await hook.apoll_lines(self.job_id, version=self.api_version)
                    output = b""
                    if self.output_path is not None and local:
                        output = await asyncio.to_thread(read_local_chunk, self.output_path, watch.offset)
                    elif self.output_path is not None:
                        if conn is None:
                            conn = await self._connect_ssh()
                        command = rest.read_output_command(self.output_path, watch.offset)
                        answer = await conn.run(command, check=False, encoding=None, timeout=60)
                        output = answer.stdout if isinstance(answer.stdout, bytes) else b""
                except (rest.SlurmRestError, httpx.HTTPError, OSError, asyncssh.Error, TimeoutError) as exc:
                    # slurmrestd or sshd restarting, a refused token the hook could not replace: retried
                    failures += 1
                    if conn is not None:
                        conn.close()
                        conn = None
                    if failures > self.max_reconnect_attempts:
                        reason = f"slurmrestd poll failed {failures} times: {exc}"
                        yield TriggerEvent(
                            protocol.job_event(self.job_id, "ERROR", reason=reason, log_offset=watch.offset)
                        )
                        return
                    self.log.warning(
                        "slurmrestd poll failed (%d/%d), retrying: %s",
                        failures,
                        self.max_reconnect_attempts,
                        exc,
                    )
                    await asyncio.sleep(min(2.0**failures, 30.0))
                    continue
                failures = 0
                step = protocol.advance(watch, protocol.poll_answer(*lines, output), time.time())
                step.log_to(self.log)
                if step.event is not None:
                    yield TriggerEvent(step.event)
                    return
                watch = step.watch
                await asyncio.sleep(watch.delay)
        finally:
            if conn is not None:
                conn.close()

    async def _connect_ssh(self) -> SSHClientConnection:
        if not self.ssh_conn_id:
            raise rest.SlurmRestError(
                f"{self.output_path} is outside the slurmrestd connection's shared_paths and no ssh_conn_id is given"
            )
        from airflow.providers.ssh.hooks.ssh import SSHHookAsync

        return await SSHHookAsync(ssh_conn_id=self.ssh_conn_id).get_conn()

    async def on_kill(self) -> None:
        """The user killed the deferred task: cancel the job through slurmrestd (idempotent)."""
        hook = await self._hook()
        await hook.acancel(self.job_id, version=self.api_version)
        self.log.info("cancelled Slurm job %s", self.job_id)
