"""The Slurm + sshd test rig (scripts/rig/slurm.sh) as the tests see it: where it is, and sacct/squeue
helpers that read the cluster directly (not through the code under test).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RIG_DIR = Path(os.environ.get("GENIUS_RIG_DIR", "/tmp/genius-rig"))
SSH_PORT = int(os.environ.get("GENIUS_SSH_PORT", "2222"))
SSH_KEY = RIG_DIR / "ssh" / "id_ed25519"
CONN_ID = "genius_slurm"
CONN_JSON = json.dumps(
    {
        "conn_type": "ssh",
        "host": "127.0.0.1",
        "port": SSH_PORT,
        "login": "root",
        "extra": {"key_file": str(SSH_KEY), "no_host_key_check": True},
    }
)
#: The project's own `genius` (the compute node is this machine).
GENIUS = str(Path(sys.executable).with_name("genius"))


def require_rig() -> None:
    try:
        socket.create_connection(("127.0.0.1", SSH_PORT), timeout=3).close()
    except OSError as exc:
        pytest.fail(
            f"the Slurm rig's sshd is not on 127.0.0.1:{SSH_PORT} ({exc}): run scripts/services",
            pytrace=False,
        )
    if not SSH_KEY.exists():
        pytest.fail(f"no rig SSH key at {SSH_KEY}: run scripts/services", pytrace=False)
    if shutil.which("sacct") is None:
        pytest.fail("Slurm client commands are missing: run scripts/services", pytrace=False)


def sacct_rows(*, job_id: str | None = None, name: str | None = None, wait_for: str | None = None,
               timeout: float = 30) -> list[dict[str, str]]:  # fmt: skip
    """sacct rows (JobIDRaw, JobName, State, ExitCode) of a job id or a job name; with ``wait_for``,
    poll until some row's State starts with that word (accounting lags a little)."""
    # with --name, sacct only lists jobs eligible inside -S..-E: a job held with --begin is in the future
    selector = ["-j", job_id] if job_id else ["--name", str(name), "-S", "now-1days", "-E", "now+2days"]
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(
            ["sacct", *selector, "-X", "--noheader", "--parsable2", "--format=JobIDRaw,JobName,State,ExitCode"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        rows = [dict(zip(("id", "name", "state", "exit"), line.split("|"), strict=False))
                for line in done.stdout.splitlines() if line.strip()]  # fmt: skip
        if wait_for is None or any(row["state"].split()[0] == wait_for for row in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"sacct never showed {wait_for} for {job_id or name}: {rows}")
        time.sleep(0.5)


def wait_for_running(name_prefix: str, timeout: float = 60) -> tuple[str, str]:
    """(job id, job name) of our first RUNNING job whose name starts with ``name_prefix``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "--noheader", "--format=%i|%j|%T"], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            job, name, state = line.strip().split("|")
            if name.startswith(name_prefix) and state == "RUNNING":
                return job, name
        time.sleep(0.3)
    raise AssertionError(f"no RUNNING job named {name_prefix}* within {timeout} s")
