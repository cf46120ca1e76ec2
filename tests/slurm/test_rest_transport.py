"""The slurmrestd transport of the Slurm operators against the rig's real slurmrestd (JWT) and sshd:
SlurmRestTransport (the hook GeniusSlurmOperator gets), GeniusSlurmRestTrigger, and the operator in
real ``dag.test()`` / ``airflow tasks test`` runs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.aio import run_coroutine

from airflow_genius.core import slurm_rest as rest
from airflow_genius.core.slurm_protocol import job_name
from slurm.rig import AIRFLOW, CONN_ID, sacct_rows, tis_by_id, wait_for_running
from slurm.test_rest_hook import JWT_KEY, REST_URL, require_slurmrestd, script, unique

pytestmark = [pytest.mark.slurm]

REST_CONN_ID = "genius_slurm_rest_transport"


DAG_FILE = textwrap.dedent(
    """
    import functools, os
    from airflow.sdk import DAG
    from airflow_genius.operators.slurm import GeniusSlurmOperator

    RestSlurmOperator = functools.partial(GeniusSlurmOperator, transport="rest")

    ECHO = "airflow_genius.examples.tasks:Echo"
    REST = {"ssh_conn_id": "genius_slurm", "slurm_rest_conn_id": "genius_slurm_rest_transport",
            "genius_command": os.environ["GENIUS_TEST_GENIUS"], "poll_interval": 0.5, "lost_after": 30.0}

    with DAG(dag_id="genius_rest_outcomes", schedule=None, catchup=False) as genius_rest_outcomes:
        RestSlurmOperator(task_id="say", task_class=ECHO, method="say", method_args=["hello over REST"], **REST)
        RestSlurmOperator(task_id="say_deferred", task_class=ECHO, method="sleep", method_kwargs={"seconds": 6},
                          deferrable=True, **REST)
        RestSlurmOperator(task_id="exits_3", task_class=ECHO, method="exit", method_kwargs={"code": 3}, **REST)
        RestSlurmOperator(task_id="times_out", task_class=ECHO, method="sleep", method_kwargs={"seconds": 600},
                          time="1", **REST)

    with DAG(dag_id="genius_rest_sleeper", schedule=None, catchup=False) as genius_rest_sleeper:
        RestSlurmOperator(task_id="sleep", task_class=ECHO, method="sleep",
                          method_kwargs={"seconds": float(os.environ.get("GENIUS_TEST_SLEEP", "15"))},
                          retries=0, **REST)
    """
)


def rest_conn(**extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": "genius_slurm_rest",
            "host": REST_URL,
            "login": "root",
            "extra": {"jwt_key_path": str(JWT_KEY), **extra},
        }
    )


@pytest.fixture
def transport(monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow_genius.hooks.slurm_rest import SlurmRestTransport

    require_slurmrestd()
    monkeypatch.setenv(f"AIRFLOW_CONN_{REST_CONN_ID.upper()}", rest_conn())
    with SlurmRestTransport(REST_CONN_ID, ssh_conn_id=CONN_ID) as hook:
        yield hook


def tokens_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token the REST hooks send from now on (a spy on the real header builder)."""
    from airflow_genius.hooks.slurm_rest import SlurmRestHook

    sent: list[str] = []
    original = SlurmRestHook._headers

    def spy(self: SlurmRestHook) -> dict[str, str]:
        headers = original(self)
        sent.append(headers["X-SLURM-USER-TOKEN"])
        return headers

    monkeypatch.setattr(SlurmRestHook, "_headers", spy)
    return sent


def test_files_over_ssh_job_over_rest_output_tailed(
    transport: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The spec/secret files reach the job folder over SSH (0600), the job is submitted and judged by
    slurmrestd, its output lines reach the log, and a live job is found by its name (reattach)."""
    job_dir = transport.resolve_path(f"{tmp_path}/job")
    name = unique()
    body = "cat spec.json; echo; for i in 1 2 3; do echo line $i; sleep 0.3; done; exit 3"
    job_id = transport.submit(script(name, Path(job_dir), body), work_dir=job_dir, files={"spec.json": b"{}"})
    assert stat.S_IMODE((tmp_path / "job" / "spec.json").stat().st_mode) == 0o600
    caplog.set_level(logging.INFO)
    event = transport.wait(
        job_id,
        output_path=f"{job_dir}/slurm-{job_id}.out",
        poll_interval=0.5,
        log=logging.getLogger("rest-t"),
    )
    assert (event["state"], event["succeeded"]) == ("FAILED", False)
    assert "exit code 3" in event["reason"] and "NonZeroExitCode" in event["reason"]
    logged = [r.getMessage() for r in caplog.records if r.name == "rest-t"]
    assert logged == [f"[slurm {job_id}] {line}" for line in ("{}", "line 1", "line 2", "line 3")]
    assert event["log_offset"] == len(b"{}\nline 1\nline 2\nline 3\n")
    assert transport.tail(f"{job_dir}/slurm-{job_id}.out", 2) == "line 2\nline 3\n"
    assert transport.poll(job_id).verdict.state == "FAILED"
    # reattach: the live job of a name, then on_kill's cancel
    sleeper = transport.submit(script(name, Path(job_dir), "sleep 120"), work_dir=job_dir)
    assert transport.find_live_job(name) == (sleeper, transport.poll(sleeper).verdict.state)
    transport.cancel(sleeper)
    transport.cancel(sleeper)  # idempotent
    event = transport.wait(sleeper, poll_interval=0.5)
    assert event["state"] == "CANCELLED"
    assert transport.find_live_job(name) is None


def test_a_shared_folder_needs_no_ssh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Job folders under the connection's shared_paths are written and read here (the node is this
    machine); without ssh_conn_id a folder outside them is refused in one line."""
    from airflow_genius.hooks.slurm_rest import SlurmRestTransport

    require_slurmrestd()
    monkeypatch.setenv(f"AIRFLOW_CONN_{REST_CONN_ID.upper()}", rest_conn(shared_paths=[str(tmp_path)]))
    with SlurmRestTransport(REST_CONN_ID) as hook:
        job_dir = f"{tmp_path}/job"
        job_id = hook.submit(script(unique(), Path(job_dir), "cat secret.env"), work_dir=job_dir,
                             files={"secret.env": b"X=1\n"})  # fmt: skip
        assert stat.S_IMODE(os.stat(f"{job_dir}/secret.env").st_mode) == 0o600
        event = hook.wait(job_id, output_path=f"{job_dir}/slurm-{job_id}.out", poll_interval=0.5)
        assert event["succeeded"] and event["log_offset"] == len(b"X=1\n")
        assert hook.read_file(f"{job_dir}/slurm-{job_id}.out") == b"X=1\n"
        with pytest.raises(rest.SlurmRestError, match="no ssh_conn_id"):
            hook.submit("#!/bin/bash\ntrue\n", work_dir="/var/tmp/elsewhere", files={"spec.json": b"{}"})


def test_an_expired_token_is_replaced_mid_wait(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The connection's token expires 3 s into an 8 s job and minted ones live 4 s: the wait ends in
    success, on several tokens, and the first one is really refused by then."""
    from airflow_genius.hooks.slurm_rest import SlurmRestTransport

    require_slurmrestd()
    given = rest.mint_token(JWT_KEY.read_bytes(), "root", lifespan=3)
    conn = json.loads(rest_conn(token_lifespan=4))
    monkeypatch.setenv(f"AIRFLOW_CONN_{REST_CONN_ID.upper()}", json.dumps({**conn, "password": given}))
    sent = tokens_sent(monkeypatch)
    with SlurmRestTransport(REST_CONN_ID, ssh_conn_id=CONN_ID) as hook:
        job_id = hook.submit(script(unique(), tmp_path, "sleep 8"), work_dir=str(tmp_path))
        event = hook.wait(job_id, output_path=f"{tmp_path}/slurm-{job_id}.out", poll_interval=0.5)
    assert event["succeeded"], event
    assert sent[0] == given and len(set(sent)) >= 3
    stale = subprocess.run(
        ["curl", "-s", "-H", "X-SLURM-USER-NAME: root", "-H", f"X-SLURM-USER-TOKEN: {given}",
         f"{REST_URL}/slurm/v0.0.38/job/{job_id}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    with pytest.raises(rest.SlurmRestAuthError):
        rest.check_answer(500, json.loads(stale.stdout), "GET job")


def run_trigger(trigger: Any) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return run_coroutine(collect())


def test_the_deferred_wait_tails_over_ssh_and_refreshes_its_token(
    monkeypatch: pytest.MonkeyPatch, transport: Any, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow_genius.triggers.slurm_rest import GeniusSlurmRestTrigger

    monkeypatch.setenv(f"AIRFLOW_CONN_{REST_CONN_ID.upper()}", rest_conn(token_lifespan=4))
    job_id = transport.submit(
        script(unique(), tmp_path, "echo start; sleep 7; echo end; exit 2"), work_dir=str(tmp_path)
    )
    sent = tokens_sent(monkeypatch)
    trigger = GeniusSlurmRestTrigger(
        slurm_rest_conn_id=REST_CONN_ID, ssh_conn_id=CONN_ID, api_version=transport.api_version,
        job_id=job_id, output_path=f"{tmp_path}/slurm-{job_id}.out", poll_interval=0.5,
    )  # fmt: skip
    path, kwargs = trigger.serialize()
    assert path == "airflow_genius.triggers.slurm_rest.GeniusSlurmRestTrigger"
    (event,) = run_trigger(GeniusSlurmRestTrigger(**kwargs))
    assert set(event) == {"job_id", "state", "succeeded", "reason", "cancel", "log_offset"}
    assert (event["state"], event["succeeded"]) == ("FAILED", False) and "exit code 2" in event["reason"]
    assert event["log_offset"] == len(b"start\nend\n")
    logged = "".join(capfd.readouterr())  # the trigger logs through Airflow's structlog
    assert logged.index(f"[slurm {job_id}] start") < logged.index(f"[slurm {job_id}] end")
    assert len(set(sent)) >= 2  # the 4 s token was replaced during the 7 s wait
    # on_kill cancels through slurmrestd
    sleeper = transport.submit(script(unique(), tmp_path, "sleep 120"), work_dir=str(tmp_path))
    run_coroutine(GeniusSlurmRestTrigger(**{**kwargs, "job_id": sleeper}).on_kill())
    assert sacct_rows(job_id=sleeper, wait_for="CANCELLED")


# ---------------------------------------------------------------- the operator in real Airflow runs
@pytest.fixture
def rest_env(slurm_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    require_slurmrestd()
    dags = tmp_path / "rest_dags"
    dags.mkdir()
    (dags / "genius_rest_cases.py").write_text(DAG_FILE)
    return {
        **slurm_env,
        f"AIRFLOW_CONN_{REST_CONN_ID.upper()}": rest_conn(token_lifespan=6),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
    }


def start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(args), env=env, cwd=env["AIRFLOW_HOME"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip


def start_dag_test(env: dict[str, str], dag_id: str, logical_date: str) -> subprocess.Popen[str]:
    from genius_dagtest import DAG_TEST

    path = str(Path(env["AIRFLOW__CORE__DAGS_FOLDER"]) / "genius_rest_cases.py")
    return start(env, sys.executable, "-c", DAG_TEST, path, dag_id, "{}", logical_date)


def result_of(output: str) -> dict[str, Any]:
    lines = [line for line in output.splitlines() if line.startswith("DAG_TEST_RESULT ")]
    assert lines, output[-4000:]
    return json.loads(lines[-1].removeprefix("DAG_TEST_RESULT "))  # type: ignore[no-any-return]


@pytest.mark.airflow
@pytest.mark.slow
def test_outcomes_through_the_operator(rest_env: dict[str, str]) -> None:
    """Success (in the worker, and deferred to the REST trigger past a token's lifespan) with the run
    record's result as XCom; exit 3 and the time limit fail the task with Slurm's reason."""
    child = start_dag_test(rest_env, "genius_rest_outcomes", "2032-01-01T00:00:00+00:00")
    output, _ = child.communicate(timeout=600)
    result = result_of(output)
    tis = tis_by_id(result)
    states = {task: ti["state"] for task, ti in tis.items()}
    assert states == {
        "say": "success",
        "say_deferred": "success",
        "exits_3": "failed",
        "times_out": "failed",
    }, output[-4000:]
    assert tis["say"]["xcom"] == "hello over REST" and tis["say_deferred"]["xcom"] == 6.0

    def row(task_id: str, state: str) -> dict[str, str]:
        (found,) = sacct_rows(
            name=job_name("genius_rest_outcomes", task_id, result["run_id"]), wait_for=state
        )
        return found

    assert row("exits_3", "FAILED")["exit"] == "3:0"
    assert "FAILED (exit code 3)" in output and "NonZeroExitCode" in output
    row("times_out", "TIMEOUT")
    assert "ran past its --time limit" in output
    deferred = row("say_deferred", "COMPLETED")
    assert f"[slurm {deferred['id']}]" in output  # the trigger tailed the job's output over SSH
    # the jobs went through slurmrestd, and the deferred wait through its trigger
    assert output.count("slurmrestd (API v0.0.38) accepted job") == 4
    assert f"waiting for Slurm job {deferred['id']} through slurmrestd" in output


@pytest.mark.airflow
@pytest.mark.slow
def test_killing_the_task_cancels_the_job_through_slurmrestd(rest_env: dict[str, str]) -> None:
    env = {**rest_env, "GENIUS_TEST_SLEEP": "120"}
    child = start_dag_test(env, "genius_rest_sleeper", "2032-02-01T00:00:00+00:00")
    try:
        job_id, name = wait_for_running("genius-genius_rest_sleeper-sleep-")
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        rows = sacct_rows(name=name, wait_for="CANCELLED")
        assert [(row["id"], row["state"].split()[0]) for row in rows] == [(job_id, "CANCELLED")]
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    assert f"cancelled Slurm job {job_id}" in output


@pytest.mark.airflow
@pytest.mark.slow
def test_a_second_try_reattaches_by_name(rest_env: dict[str, str]) -> None:
    """Two tries of one task instance (``airflow tasks test``): the first is SIGKILLed while its job runs;
    the second finds the job through slurmrestd by its name and waits for it."""
    env = {**rest_env, "GENIUS_TEST_SLEEP": "60"}
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", "genius_rest_sleeper", "--run-id", run_id]):
        output, _ = start(env, AIRFLOW, *args).communicate(timeout=120)
    name = job_name("genius_rest_sleeper", "sleep", run_id)
    first = start(env, AIRFLOW, "tasks", "test", "genius_rest_sleeper", "sleep", run_id)
    try:
        job_id, _ = wait_for_running(name)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the job keeps running
        first.communicate(timeout=30)
    second = start(env, AIRFLOW, "tasks", "test", "genius_rest_sleeper", "sleep", run_id)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-4000:]
    assert f"reattaching to Slurm job {job_id}" in output
    assert "Pushing xcom" in output and "60.0" in output
    rows = sacct_rows(name=name, wait_for="COMPLETED")
    assert [row["id"] for row in rows] == [job_id], rows  # exactly one job ran for this task instance
