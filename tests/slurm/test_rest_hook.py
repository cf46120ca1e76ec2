"""SlurmRestHook against the rig's real slurmrestd (scripts/rig/slurmrestd.sh: 127.0.0.1:6820, JWT)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_genius.core import slurm_rest as rest
from slurm.rig import sacct_rows

pytestmark = [pytest.mark.slurm]

REST_PORT = int(os.environ.get("GENIUS_SLURMRESTD_PORT", "6820"))
REST_URL = f"http://127.0.0.1:{REST_PORT}"
JWT_KEY = Path("/etc/slurm/jwt_hs256.key")
CONN_ID = "genius_slurm_rest_test"


def require_slurmrestd() -> None:
    try:
        socket.create_connection(("127.0.0.1", REST_PORT), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"slurmrestd is not on {REST_URL} ({exc}): run scripts/rig/slurmrestd.sh", pytrace=False)
    if not JWT_KEY.exists():
        pytest.fail(f"no JWT key at {JWT_KEY}: run scripts/rig/slurmrestd.sh", pytrace=False)


def make_hook(monkeypatch: pytest.MonkeyPatch, *, password: str | None = None, **extra: Any) -> Any:
    from airflow_genius.hooks.slurm_rest import SlurmRestHook

    require_slurmrestd()
    conn: dict[str, Any] = {
        "conn_type": "genius_slurm_rest",
        "host": REST_URL,
        "login": "root",
        "extra": extra,
    }
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return SlurmRestHook(CONN_ID)


@pytest.fixture
def rest_hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A hook minting its tokens from the rig's signing key."""
    yield make_hook(monkeypatch, jwt_key_path=str(JWT_KEY))


def script(name: str, job_dir: Path, body: str, **directives: str) -> str:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={job_dir}/slurm-%j.out"]
    lines += [f"#SBATCH --{key.replace('_', '-')}={value}" for key, value in directives.items()]
    return "\n".join([*lines, body, ""])


def unique(prefix: str = "genius-rest") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(hook: Any, job_id: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (seen := hook.poll(job_id).state) != state:
        assert time.monotonic() < deadline, f"job {job_id} is {seen}, never {state}"
        time.sleep(0.2)


def test_api_version_is_read_from_the_servers_openapi_document(rest_hook: Any) -> None:
    # the rig's Slurm 22.05 serves v0.0.38 (and older); the newest this provider maps is chosen
    assert rest_hook.api_version == "v0.0.38"
    assert "v0.0.38" in rest.offered_versions(rest_hook.openapi())
    ok, message = rest_hook.test_connection()
    assert ok, message


def test_rendered_script_runs_with_its_directives_and_writes_a_file(rest_hook: Any, tmp_path: Path) -> None:
    """The sbatch renderer's script, submitted over REST: its #SBATCH directives become job fields."""
    from airflow_genius.operators.slurm_script import SlurmJobOptions, render_sbatch_script

    name = unique()
    options = SlurmJobOptions(
        time="7",
        mem="300M",
        cpus_per_task=1,
        env={"GREETING": "hello rest"},
        extra_directives=["--comment=via-rest"],
    )
    text = render_sbatch_script(
        job_name=name,
        job_dir=str(tmp_path),
        options=options,
        body=['printf "%s\\n" "$GREETING" > result.txt'],
    )
    job_id = rest_hook.submit(text, work_dir=str(tmp_path))
    event = rest_hook.wait(job_id, poll_interval=0.5, timeout=120)
    assert event["state"] == "COMPLETED" and event["succeeded"], event
    assert (tmp_path / "result.txt").read_text() == "hello rest\n"
    assert (tmp_path / f"slurm-{job_id}.end").exists()  # the script's end mark, in the job folder
    # read from slurmctld (sacct fills the job's name and limits in a moment later)
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    fields = dict(word.split("=", 1) for word in shown.split() if "=" in word)
    assert (fields["JobName"], fields["TimeLimit"], fields["MinMemoryNode"], fields["WorkDir"]) == (
        name,
        "00:07:00",
        "300M",
        str(tmp_path),
    )
    assert (fields["Comment"], fields["StdOut"]) == ("via-rest", f"{tmp_path}/slurm-{job_id}.out")


def test_failing_job_is_failed_with_its_exit_code(rest_hook: Any, tmp_path: Path) -> None:
    job_id = rest_hook.submit(script(unique(), tmp_path, "echo oops; exit 3"), work_dir=str(tmp_path))
    event = rest_hook.wait(job_id, poll_interval=0.5, timeout=120)
    assert (event["state"], event["succeeded"]) == ("FAILED", False)
    assert f"Slurm job {job_id} FAILED (exit code 3)" in event["reason"]
    assert sacct_rows(job_id=job_id, wait_for="FAILED")[0]["exit"] == "3:0"
    assert (tmp_path / f"slurm-{job_id}.out").read_text() == "oops\n"


def test_cancel_a_sleeping_job(rest_hook: Any, tmp_path: Path) -> None:
    job_id = rest_hook.submit(script(unique(), tmp_path, "sleep 300"), work_dir=str(tmp_path))
    wait_for(rest_hook, job_id, "RUNNING")
    rest_hook.cancel(job_id)
    event = rest_hook.wait(job_id, poll_interval=0.5, timeout=60)
    assert (event["state"], event["succeeded"]) == ("CANCELLED", False)
    assert sacct_rows(job_id=job_id, wait_for="CANCELLED")
    rest_hook.cancel(job_id)  # a job that ended: idempotent
    rest_hook.cancel("999999")  # unknown to Slurm: idempotent too


def test_async_poll_and_cancel_for_a_trigger(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The httpx calls a deferrable trigger makes, on a fresh hook that read its connection async."""
    from support.aio import run_coroutine

    job_id = make_hook(monkeypatch, jwt_key_path=str(JWT_KEY)).submit(
        script(unique(), tmp_path, "sleep 300"), work_dir=str(tmp_path)
    )
    hook = make_hook(monkeypatch, jwt_key_path=str(JWT_KEY))

    async def until(state: str) -> None:
        await hook.aconnect()
        deadline = time.monotonic() + 60
        while (seen := (await hook.apoll(job_id, version="v0.0.38")).state) != state:
            assert time.monotonic() < deadline, f"job {job_id} is {seen}, never {state}"
            await asyncio.sleep(0.2)

    run_coroutine(until("RUNNING"))
    run_coroutine(hook.acancel(job_id, version="v0.0.38"))
    run_coroutine(until("CANCELLED"))
    assert sacct_rows(job_id=job_id, wait_for="CANCELLED")


def test_accounting_record_of_a_finished_job(rest_hook: Any, tmp_path: Path) -> None:
    name = unique()
    job_id = rest_hook.submit(script(name, tmp_path, "sleep 1"), work_dir=str(tmp_path))
    assert rest_hook.wait(job_id, poll_interval=0.5, timeout=120)["succeeded"]
    deadline = time.monotonic() + 30
    # slurmdbd gets the job's name and end a moment after slurmctld
    while (record := rest_hook.accounting(job_id)) is None or record.name != name or record.end is None:
        assert time.monotonic() < deadline, f"accounting never showed {name} ended: {record}"
        time.sleep(0.3)
    fields = rest.accounting_fields(record)
    assert (fields["job_id"], fields["state"], fields["name"]) == (job_id, "COMPLETED", name)
    assert fields["working_directory"] == str(tmp_path)
    assert fields["nodes"] and fields["user"] == "root" and fields["end"] >= fields["start"]
    # a job slurmctld forgot is judged from this record (what poll falls back to)
    assert rest.job_verdict(job_id, None, record).succeeded


def test_an_expired_token_is_refreshed_without_failing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The connection's token expires 2 s after it was minted; with the signing key, the hook keeps
    working past that, and the token it started with is really refused by then."""
    key = JWT_KEY.read_bytes()
    given = rest.mint_token(key, "root", lifespan=2)
    hook = make_hook(monkeypatch, password=given, jwt_key_path=str(JWT_KEY))
    job_id = hook.submit(script(unique(), tmp_path, "sleep 1"), work_dir=str(tmp_path))
    time.sleep(3)
    assert hook.wait(job_id, poll_interval=0.5, timeout=120)["succeeded"]
    assert hook.tokens.get() != given
    stale = requests.get(f"{REST_URL}/slurm/v0.0.38/job/{job_id}", timeout=30,
                         headers={"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": given})  # fmt: skip
    with pytest.raises(rest.SlurmRestAuthError):
        rest.check_answer(stale.status_code, stale.json(), "GET job")


def test_a_refused_token_is_minted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token that looks valid but is not signed with the cluster's key: refused once, then replaced."""
    forged = rest.mint_token(b"not-the-cluster-key-" * 2, "root", lifespan=600)
    hook = make_hook(monkeypatch, password=forged, jwt_key_path=str(JWT_KEY))
    assert hook.poll("999999").state == "MISSING"  # answered: neither slurmctld nor slurmdbd knows it
    assert hook.tokens.get() != forged


def test_a_bad_token_fails_with_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = "bad-" + uuid.uuid4().hex
    hook = make_hook(monkeypatch, password=bad, api_version="v0.0.38")
    with pytest.raises(rest.SlurmRestAuthError) as caught:
        hook.poll("1")
    message = str(caught.value)
    assert "\n" not in message and bad not in message
    assert "token for user 'root' was refused" in message or "refuses the token for user 'root'" in message


def test_the_signing_key_can_come_inline_in_base64(monkeypatch: pytest.MonkeyPatch) -> None:
    """For secret backends: extra ``jwt_key`` instead of a file on the worker."""
    inline = base64.b64encode(JWT_KEY.read_bytes()).decode()
    hook = make_hook(monkeypatch, jwt_key=inline)
    assert hook.poll("999999").state == "MISSING"
    with pytest.raises(rest.SlurmRestError, match="must be the signing key in base64"):
        make_hook(monkeypatch, jwt_key="not base64!").poll("1")
