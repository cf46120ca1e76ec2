"""Slurm over SSH, on top of the ssh provider's :class:`~airflow.providers.ssh.hooks.ssh.SSHHook`.

One SSH connection per hook, reused for every command (submit, poll, cancel). Commands, parsing and
the step of every wait loop live in :mod:`airflow_genius.core.slurm_protocol`; the deferrable trigger
speaks the same protocol over ``SSHHookAsync``.

.. code-block:: python

    hook = SlurmHook(ssh_conn_id="hpc_login")
    job_id = hook.submit(script, work_dir="/home/me/.genius/slurm/job1", files={"spec.json": spec})
    hook.poll(job_id).verdict.state          # 'RUNNING'
    event = hook.wait(job_id, output_path=".../slurm-1234.out", log=log)   # output lines go to log
    hook.cancel(job_id)                      # idempotent
    hook.release("1234_7")                   # one element of a held array
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_genius.core import slurm_protocol as protocol

if TYPE_CHECKING:
    import paramiko
    from airflow.providers.ssh.hooks.ssh import SSHHook


class SlurmCommandError(RuntimeError):
    """A Slurm command on the login node exited non-zero; the message carries its stderr."""


class SlurmHook(BaseHook):
    """Talk to a Slurm cluster through an Airflow SSH connection to a login node.

    Args:
        ssh_conn_id: an ``ssh`` connection (host, user, key) of a machine with the Slurm client
            commands (``sbatch``, ``squeue``, ``sacct``, ``scancel``).
        command_timeout: seconds one remote command may take.
    """

    conn_name_attr = "ssh_conn_id"
    default_conn_name = "ssh_default"
    conn_type = "ssh"
    hook_name = "Slurm (SSH)"

    def __init__(self, ssh_conn_id: str = default_conn_name, *, command_timeout: float = 60.0) -> None:
        super().__init__()
        self.ssh_conn_id = ssh_conn_id
        self.command_timeout = command_timeout
        self._client: paramiko.SSHClient | None = None
        self._home: str | None = None

    @cached_property
    def ssh_hook(self) -> SSHHook:
        from airflow.providers.ssh.hooks.ssh import SSHHook

        return SSHHook(ssh_conn_id=self.ssh_conn_id, cmd_timeout=self.command_timeout)

    def get_conn(self) -> paramiko.SSHClient:
        """The open SSH client (connected on first use, then reused)."""
        transport = self._client.get_transport() if self._client else None
        if self._client is None or transport is None or not transport.is_active():
            self._client = self.ssh_hook.get_conn()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> SlurmHook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def run(
        self, command: str, *, stdin: bytes | None = None, check: bool = True, what: str | None = None
    ) -> tuple[int, bytes, bytes]:
        """Run one shell command on the login node; ``stdin`` (e.g. a script, a secret) never
        appears in the command line. Returns ``(exit status, stdout, stderr)``; an error names ``what``
        (default: the command's first word)."""
        _, stdout, stderr = self.get_conn().exec_command(command, timeout=self.command_timeout)
        channel = stdout.channel
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        out, err = stdout.read(), stderr.read()
        status = channel.recv_exit_status()
        if check and status != 0:
            raise SlurmCommandError(
                f"{what or (command.split()[0] if command else 'command')} exited {status} on the login node: "
                f"{err.decode(errors='replace').strip() or out.decode(errors='replace').strip()}"
            )
        return status, out, err

    def write_file(self, path: str, data: bytes) -> None:
        """Create ``path`` (and its folder) with mode 0600; the content travels on stdin."""
        folder, _, name = path.rpartition("/")
        self.write_files(folder or "/", {name: data})

    def write_files(self, folder: str, files: Mapping[str, bytes]) -> None:
        """Write ``files`` (name → content) into ``folder`` (created, mode 0700) with mode 0600, in one
        round trip, their content on stdin."""
        command = protocol.write_files_command(folder, [(name, len(data)) for name, data in files.items()])
        self.run(command, stdin=b"".join(files.values()), what="writing job files")

    def resolve_path(self, path: str) -> str:
        """An absolute path on the login node (``~`` and relative paths resolved against $HOME, which
        :meth:`find_live_job` has already read if it ran on this connection)."""
        if path.startswith("/"):
            return path
        relative = path[2:] if path.startswith("~/") else ("" if path == "~" else path)
        if self._home is None:
            _, out, _ = self.run('printf %s "$HOME"')
            self._home = out.decode().strip() or "/"
        return f"{self._home.rstrip('/')}/{relative}".rstrip("/")

    # ------------------------------------------------------------------ Slurm
    def submit(self, script: str, *, work_dir: str, files: Mapping[str, bytes] | None = None) -> str:
        """``sbatch --parsable`` with the script on stdin, from ``work_dir`` (created if missing); returns
        the job id. ``files`` (name → content: the spec, the secret file) are written into ``work_dir``
        with mode 0600 first, in the same round trip, their content on stdin too."""
        files = dict(files or {})
        command = protocol.submit_command(work_dir, [(name, len(data)) for name, data in files.items()])
        stdin = b"".join(files.values()) + script.encode()
        _, out, _ = self.run(command, stdin=stdin, what="sbatch")
        return protocol.parse_job_id(out.decode())

    def find_live_job(self, job_name: str) -> tuple[str, str] | None:
        """The newest queued/running job of ours called ``job_name`` as ``(id, state)``, or None."""
        _, out, _ = self.run(protocol.find_live_job_command(job_name))
        home, jobs = protocol.parse_live_jobs(out.decode(errors="replace"))
        self._home = self._home or home or None
        return jobs[-1] if jobs else None

    def poll(self, job_id: str) -> protocol.Poll:
        """What Slurm says of the job now (one round trip; ``.verdict.state``, ``.verdict.finished``…)."""
        _, out, _ = self.run(protocol.poll_command(job_id), check=False)
        return protocol.parse_poll(out, offset=0, job_id=job_id)

    def follow(self, watch: protocol.Watch, *, log: Any = None) -> protocol.Step:
        """One poll of a wait (one round trip, then :func:`~airflow_genius.core.slurm_protocol.advance`);
        the job's new output lines go to ``log``."""
        _, out, _ = self.run(watch.command(), check=False)
        step = protocol.advance(watch, out, time.monotonic())
        if log is not None:
            step.log_to(log)
        return step

    def wait(
        self,
        job_id: str,
        *,
        output_path: str | None = None,
        end_mark: str | None = None,
        poll_interval: float = 10.0,
        lost_after: float = 120.0,
        pending_timeout: float | None = None,
        log: Any = None,
    ) -> dict[str, Any]:
        """Poll until the job ends, logging its output lines; returns the same event dict as the
        deferrable trigger (see :func:`~airflow_genius.core.slurm_protocol.job_event`). ``end_mark``: the
        file the job's script touches on exit (see :class:`~airflow_genius.core.slurm_protocol.Watch`)."""
        watch = protocol.Watch(
            job_id,
            output_path=output_path,
            end_mark=end_mark,
            poll_interval=poll_interval,
            lost_after=lost_after,
            pending_timeout=pending_timeout,
        )
        return protocol.wait_for_end(watch, lambda current: self.follow(current, log=log), time.sleep)

    def cancel(self, job_id: str) -> None:
        """``scancel`` the job; a job that already ended is fine."""
        self.run(protocol.cancel_command(job_id), check=False)

    def release(
        self, job_id: str, *, folder: str | None = None, files: Mapping[str, bytes] | None = None
    ) -> None:
        """``scontrol release`` a held job or array element (raises :class:`SlurmCommandError` if Slurm
        refuses: the job is gone, or not held). ``files`` (name → content) are written into ``folder``
        first (mode 0600, as :meth:`write_files`), in the same round trip: an element's spec is in place
        before it may start."""
        command, stdin = protocol.release_command(job_id), b""
        if files:
            listed = [(name, len(data)) for name, data in files.items()]
            command = f"{protocol.write_files_command(str(folder), listed)} && {command}"
            stdin = b"".join(files.values())
        self.run(command, stdin=stdin or None, what="scontrol release")

    def cancel_by_name(self, job_name: str) -> None:
        """``scancel`` every job of ours called ``job_name``."""
        self.run(protocol.cancel_by_name_command(job_name), check=False)

    def stop_by_name(self, job_name: str, *, signal: str = "TERM") -> None:
        """Send ``signal`` to every running job of ours called ``job_name`` (batch shell and children) and
        cancel the queued ones (see :func:`~airflow_genius.core.slurm_protocol.stop_by_name_command`)."""
        self.run(protocol.stop_by_name_command(job_name, signal), check=False)

    def node_address(self, job_id: str) -> str:
        """The address of the node running the job's batch script ('' while it has none)."""
        _, out, _ = self.run(protocol.node_address_command(job_id), check=False)
        return protocol.parse_node_address(out.decode(errors="replace"))

    def tail(self, path: str, lines: int = 40) -> str:
        """The last ``lines`` lines of a file on the cluster ('' if it does not exist)."""
        _, out, _ = self.run(protocol.tail_command(path, lines), check=False)
        return out.decode(errors="replace")

    def read_file(self, path: str) -> bytes:
        _, out, _ = self.run(f"cat {shlex.quote(path)}")
        return out

    def test_connection(self) -> tuple[bool, str]:
        try:
            _, out, _ = self.run("sinfo --version")
        except Exception as exc:  # reported in the connection form, not raised
            return False, str(exc)
        return True, out.decode().strip()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        from airflow.providers.ssh.hooks.ssh import SSHHook

        return SSHHook.get_ui_field_behaviour()
