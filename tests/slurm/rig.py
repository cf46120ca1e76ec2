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
        # the compute node is this machine: its /tmp (where the tests keep their SQLite state) is shared
        "extra": {"key_file": str(SSH_KEY), "no_host_key_check": True, "shared_paths": ["/tmp"]},
    }
)
#: The project's own `genius` (the compute node is this machine).
GENIUS = str(Path(sys.executable).with_name("genius"))
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "dags_examples"
TEST_DAGS = ROOT / "tests" / "airflow_dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


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


def live_jobs(name: str) -> list[tuple[str, str]]:
    """(job id, state) of every job called ``name`` that squeue still shows."""
    out = subprocess.run(
        ["squeue", "--noheader", f"--name={name}", "--format=%i|%T"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.strip().partition("|") for line in out.splitlines() if line.strip()]
    return [(job, state) for job, _, state in rows]


def wait_until_gone(name: str, timeout: float = 60) -> None:
    """Wait until squeue shows no job called ``name`` (a cancelled job lingers a moment as COMPLETING)."""
    deadline = time.monotonic() + timeout
    while live_jobs(name):
        if time.monotonic() > deadline:
            raise AssertionError(f"jobs named {name} still live after {timeout} s: {live_jobs(name)}")
        time.sleep(0.3)


def node_address() -> str:
    """NodeAddr of the rig's one node: where clients on the cluster reach a service on it."""
    out = subprocess.run(
        ["sinfo", "--noheader", "--Node", "--format=%o"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[0]


# ---------------------------------------------------------------- Airflow runs of the test DAGs
def tis_by_id(result: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    """The task instances of a ``dag_test`` result by task id (mapped ones: the last map index)."""
    return {ti["task_id"]: ti for ti in result["tis"]}


def start_dag_test(env: dict[str, str], dag_id: str, logical_date: str) -> subprocess.Popen[str]:
    """``dag.test()`` of a DAG in tests/airflow_dags/genius_slurm_cases.py, in the background."""
    from genius_dagtest import DAG_TEST

    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}
    args = [str(TEST_DAGS / "genius_slurm_cases.py"), dag_id, "{}", logical_date]
    return subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def airflow_cli(env: dict[str, str], *args: str, **popen: object) -> subprocess.Popen[str]:
    """The ``airflow`` CLI on the test DAGs, in the background."""
    return subprocess.Popen(
        [AIRFLOW, *args], env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen,
    )  # type: ignore[call-overload]  # fmt: skip


def free_port() -> int:
    """A TCP port nothing listens on now (the node is this machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
