"""SlurmHook and GeniusSlurmTrigger against the real Slurm + sshd rig (no Airflow metadata DB needed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from support.aio import run_coroutine

from airflow_genius.core import slurm_protocol as protocol
from slurm.rig import sacct_rows

pytestmark = [pytest.mark.slurm]


def submit(hook, body: str, name: str | None = None, work_dir: str = "/tmp") -> str:  # type: ignore[no-untyped-def]
    name = name or f"genius-test-{uuid.uuid4().hex[:8]}"
    script = f"#!/bin/bash\n#SBATCH --job-name={name}\n#SBATCH --output={work_dir}/slurm-%j.out\n{body}\n"
    return hook.submit(script, work_dir=work_dir)


def wait_running(hook, job_id: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(200):
        if hook.poll(job_id).verdict.state == "RUNNING":
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never ran")


def test_submit_wait_and_tail_output(slurm_hook, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    job = submit(
        slurm_hook,
        "for i in 1 2 3; do echo line $i; sleep 0.3; done; printf 'no newline'",
        work_dir=str(tmp_path),
    )
    caplog.set_level(logging.INFO)
    event = slurm_hook.wait(job, output_path=f"{tmp_path}/slurm-{job}.out", poll_interval=0.2,
                            log=logging.getLogger("slurm-test"))  # fmt: skip
    assert event["succeeded"] and event["state"] == "COMPLETED"
    logged = [r.getMessage() for r in caplog.records if r.name == "slurm-test"]
    assert logged == [f"[slurm {job}] line 1", f"[slurm {job}] line 2", f"[slurm {job}] line 3",
                      f"[slurm {job}] no newline"]  # fmt: skip
    assert event["log_offset"] == len(b"line 1\nline 2\nline 3\nno newline")


def test_the_end_mark_of_a_genius_script_ends_the_wait(slurm_hook, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The rendered script touches slurm-<id>.end on exit (keeping its exit status); the waiting poll
    consumes it and reports the end, with a poll interval far longer than the job."""
    from airflow_genius.operators.slurm_script import SlurmJobOptions, render_sbatch_script

    script = render_sbatch_script(
        job_name=f"genius-test-{uuid.uuid4().hex[:8]}", job_dir=str(tmp_path), options=SlurmJobOptions(),
        body=["echo working", "exit 5"],
    )  # fmt: skip
    job = slurm_hook.submit(script, work_dir=str(tmp_path), files={"spec.json": b"{}"})
    assert (tmp_path / "spec.json").read_bytes() == b"{}"
    assert stat.S_IMODE((tmp_path / "spec.json").stat().st_mode) == 0o600
    mark = tmp_path / f"slurm-{job}.end"
    event = slurm_hook.wait(
        job, output_path=str(tmp_path / f"slurm-{job}.out"), end_mark=str(mark), poll_interval=600.0
    )
    assert (event["state"], event["succeeded"]) == ("FAILED", False) and "exit code 5" in event["reason"]
    assert event["log_offset"] == len(b"working\n")
    assert not mark.exists()  # the poll saw it and took it away


def test_exit_code_and_cancel_are_reported(slurm_hook) -> None:  # type: ignore[no-untyped-def]
    failed = submit(slurm_hook, "exit 3")
    event = slurm_hook.wait(failed, poll_interval=0.2)
    assert (event["state"], event["succeeded"]) == ("FAILED", False) and "exit code 3" in event["reason"]
    sleeper = submit(slurm_hook, "sleep 60")
    wait_running(slurm_hook, sleeper)
    slurm_hook.cancel(sleeper)
    slurm_hook.cancel(sleeper)  # idempotent
    event = slurm_hook.wait(sleeper, poll_interval=0.2)
    assert event["state"] == "CANCELLED" and "scancel" in event["reason"]


def test_a_live_job_is_found_by_its_name(slurm_hook) -> None:  # type: ignore[no-untyped-def]
    """The reattach path that needs no task_state_store: squeue by the deterministic name."""
    name = protocol.job_name("dag", "task", f"run-{uuid.uuid4().hex[:6]}")
    assert slurm_hook.find_live_job(name) is None
    job = submit(slurm_hook, "sleep 60", name=name)
    found = slurm_hook.find_live_job(name)
    assert found is not None and found[0] == job
    slurm_hook.cancel_by_name(name)
    assert slurm_hook.wait(job, poll_interval=0.2)["state"] == "CANCELLED"
    assert slurm_hook.find_live_job(name) is None


def test_files_are_written_private_through_stdin(slurm_hook, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "deep" / "secret.env"
    slurm_hook.write_file(str(target), b"GENIUS_STATE_PASSWORD='x y'\n")
    assert target.read_bytes() == b"GENIUS_STATE_PASSWORD='x y'\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert slurm_hook.resolve_path("~/x") == f"{os.path.expanduser('~')}/x"


def test_a_job_no_one_knows_is_lost_after_the_grace(slurm_hook) -> None:  # type: ignore[no-untyped-def]
    event = slurm_hook.wait("987654", poll_interval=0.2, lost_after=1.0)
    assert event["state"] == "LOST" and "neither squeue nor sacct" in event["reason"]


def run_trigger(trigger, *, stop_after: float | None = None) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    async def collect() -> list[dict]:  # type: ignore[type-arg]
        return [event.payload async for event in trigger.run()]

    async def main() -> list[dict]:  # type: ignore[type-arg]
        if stop_after is None:
            return await collect()
        task = asyncio.create_task(collect())
        await asyncio.sleep(stop_after)
        task.cancel()  # what a triggerer shutdown does to a running trigger
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return []

    return run_coroutine(main())


def trigger_for(job: str, output_path: str | None = None, end_mark: str | None = None):  # type: ignore[no-untyped-def]
    from airflow_genius.triggers.slurm import GeniusSlurmTrigger

    return GeniusSlurmTrigger(
        ssh_conn_id="genius_slurm", job_id=job, output_path=output_path, end_mark=end_mark, poll_interval=0.2
    )


def test_trigger_tails_the_log_and_fires_once(
    slurm_hook, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    job = submit(
        slurm_hook, f"trap 'touch {tmp_path}/slurm-$SLURM_JOB_ID.end' EXIT; echo hello from slurm; sleep 1; echo bye",
        work_dir=str(tmp_path),
    )  # fmt: skip
    trigger = trigger_for(job, f"{tmp_path}/slurm-{job}.out", f"{tmp_path}/slurm-{job}.end")
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_genius.triggers.slurm.GeniusSlurmTrigger" and kwargs["job_id"] == job
    assert kwargs["end_mark"] == f"{tmp_path}/slurm-{job}.end"
    (event,) = run_trigger(trigger)
    assert event["succeeded"] and event["state"] == "COMPLETED"
    logged = "".join(capfd.readouterr())  # the trigger logs through Airflow's structlog
    assert f"[slurm {job}] hello from slurm" in logged and f"[slurm {job}] bye" in logged


def test_trigger_on_kill_cancels_but_a_triggerer_restart_does_not(slurm_hook) -> None:  # type: ignore[no-untyped-def]
    job = submit(slurm_hook, "sleep 120")
    wait_running(slurm_hook, job)
    run_trigger(trigger_for(job), stop_after=1.0)  # triggerer shut down: the job must live on
    assert slurm_hook.poll(job).verdict.state == "RUNNING"
    run_coroutine(trigger_for(job).on_kill())  # the user killed the deferred task
    (row,) = sacct_rows(job_id=job, wait_for="CANCELLED")
    assert row["state"].startswith("CANCELLED")


def test_ssh_session_commands_do_not_leave_processes(slurm_hook) -> None:  # type: ignore[no-untyped-def]
    # sanity of the transport: stdin reaches the command, exit status and stderr come back
    status, out, err = slurm_hook.run("cat; echo oops >&2; exit 4", stdin=b"in", check=False)
    assert (status, out, err) == (4, b"in", b"oops\n")
    with pytest.raises(Exception, match="exited 4"):
        slurm_hook.run("exit 4")
    assert subprocess.run(["true"]).returncode == 0
