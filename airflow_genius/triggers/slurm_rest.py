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

from airflow.triggers.base import TriggerEvent

from airflow_genius.core import slurm_protocol as protocol
from airflow_genius.core import slurm_rest as rest
from airflow_genius.hooks.slurm_rest import SlurmRestHook, read_local_chunk, rest_watch, shared_path
from airflow_genius.triggers.slurm import SlurmJobTrigger, retry_pause

if TYPE_CHECKING:
    from asyncssh import SSHClientConnection


class GeniusSlurmRestTrigger(SlurmJobTrigger):
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
        self, *, slurm_rest_conn_id: str, api_version: str, ssh_conn_id: str | None = None, **wait: Any
    ) -> None:
        super().__init__(**wait)
        self.slurm_rest_conn_id = slurm_rest_conn_id
        self.api_version = api_version
        self.ssh_conn_id = ssh_conn_id

    def transport_kwargs(self) -> dict[str, Any]:
        return {
            "slurm_rest_conn_id": self.slurm_rest_conn_id,
            "api_version": self.api_version,
            "ssh_conn_id": self.ssh_conn_id,
        }

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
                    if (
                        event := self.give_up_after(failures, exc, "slurmrestd poll", watch.offset)
                    ) is not None:
                        yield event
                        return
                    await asyncio.sleep(retry_pause(failures))
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
