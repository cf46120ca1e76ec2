"""GeniusBatchOperator in real Airflow ``dag.test()`` runs against moto_server, which really runs each
job's container (the runtime image) through podman and puts its output in CloudWatch Logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from genius_dagtest import DAG_TEST, dag_test
from stream_windows import check_windows, run_twice, stream_env, stream_prefix
from support.aio import run_coroutine

from airflow_genius.operators.aws_common import deterministic_name
from containers.aws import rig
from containers.aws.conftest import QUOTES

pytestmark = [pytest.mark.containers, pytest.mark.aws, pytest.mark.airflow, pytest.mark.slow]

TEST_DAGS = Path(__file__).resolve().parent / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
FILE = "genius_aws_cases"


@pytest.fixture
def batch_env(aws_env: dict[str, str], batch_rig: dict[str, str]) -> dict[str, str]:
    return {
        **aws_env,
        "GENIUS_TEST_BATCH_QUEUE": batch_rig["queue"],
        "GENIUS_TEST_BATCH_JOBDEF": batch_rig["jobdef"],
        "GENIUS_TEST_BATCH_JOBDEF_SECRET": batch_rig["jobdef_secret"],
    }


def tis_by_id(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ti["task_id"]: ti for ti in result["tis"]}


def only_job(queue: str, dag_id: str, task_id: str, run_id: str) -> dict[str, Any]:
    jobs = rig.batch_jobs(queue, deterministic_name(dag_id, task_id, run_id))
    assert len(jobs) == 1, jobs
    return jobs[0]


def test_bolt_reads_and_writes_s3_in_worker_and_deferred(run_python, batch_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, batch_env, TEST_DAGS, "genius_batch_bolt", file=FILE)
    assert result["state"] == "success", output[-6000:]
    tis = tis_by_id(result)
    words = sum(len(q["text"].split()) for q in QUOTES)
    for task_id, folder in (("count", "counts"), ("count_deferred", "counts_deferred")):
        xcom = tis[task_id]["xcom"]  # the run record's result, read back by the operator
        assert xcom["records"] == len(QUOTES) and sum(xcom["top"].values()) <= words, xcom
        assert xcom["top"]["the"] == 3
        # the container read s3://…/quotes/ and committed its partition on moto's S3
        keys = [o["Key"] for o in rig.client("s3").list_objects_v2(
            Bucket=batch_env["GENIUS_TEST_BUCKET"], Prefix=f"{folder}/")["Contents"]]  # fmt: skip
        assert any(k.endswith("/_SUCCESS") for k in keys) and any(k.endswith("/top_words.json") for k in keys)
        job = only_job(batch_env["GENIUS_TEST_BATCH_QUEUE"], "genius_batch_bolt", task_id, result["run_id"])
        assert job["status"] == "SUCCEEDED"
        # the runtime's own log line, from CloudWatch Logs into the Airflow task log
        assert (
            f"airflow_genius.runtime: run genius_batch_bolt.{task_id}@{result['run_id']} try 1 started"
            in output
        )


def test_a_failing_task_fails_with_the_remote_traceback(run_python, batch_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, batch_env, TEST_DAGS, "genius_batch_fail", file=FILE)
    assert tis_by_id(result)["raises"]["state"] == "failed", output[-6000:]
    assert "RuntimeError: the batch task broke" in output
    assert "Traceback (most recent call last)" in output and "in fail" in output
    job = only_job(batch_env["GENIUS_TEST_BATCH_QUEUE"], "genius_batch_fail", "raises", result["run_id"])
    assert (job["status"], job["container"]["exitCode"]) == ("FAILED", 1)
    assert f"AWS Batch job {job['jobId']} FAILED" in output  # the platform's verdict, with the record's


def start_dag_test(env: dict[str, str], dag_id: str, logical_date: str) -> subprocess.Popen[str]:
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}
    args = [str(TEST_DAGS / f"{FILE}.py"), dag_id, "{}", logical_date]
    return subprocess.Popen(
        [sys.executable, "-c", DAG_TEST, *args], env=env, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def running_job(queue: str, name: str) -> dict[str, Any] | None:
    jobs = [j for j in rig.batch_jobs(queue, name) if j["status"] == "RUNNING"]
    return jobs[0] if jobs else None


def test_killing_the_task_terminates_the_job(batch_env: dict[str, str]) -> None:
    env = {**batch_env, "GENIUS_TEST_SLEEP": "300"}
    queue = batch_env["GENIUS_TEST_BATCH_QUEUE"]
    prefix = "genius-genius_batch_sleeper-sleep-"

    def running() -> list[dict[str, Any]]:
        found = rig.client("batch").list_jobs(jobQueue=queue, jobStatus="RUNNING")["jobSummaryList"]
        return [job for job in found if job["jobName"].startswith(prefix)]

    child = start_dag_test(env, "genius_batch_sleeper", "2031-01-01T00:00:00+00:00")
    try:
        (job,) = rig.wait_until("the sleeper's job to run", running, timeout=180)
        name = job["jobName"]
        rig.wait_until("its container", lambda: rig.containers_named(name), timeout=60)
        os.kill(child.pid, signal.SIGTERM)  # what the supervisor sends; the task runner calls on_kill()
        rig.wait_until(
            "the job to be terminated",
            lambda: [j for j in rig.batch_jobs(queue, name) if j["status"] == "FAILED"],
            timeout=60,
        )
        output, _ = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    (described,) = rig.client("batch").describe_jobs(jobs=[job["jobId"]])["jobs"]
    assert described["statusReason"] == "Task killed by the user"
    rig.wait_until("podman to drop the container", lambda: not rig.containers_named(name, running_only=False))
    assert f"AWS Batch job ({job['jobId']}) terminated" in output
    assert len(rig.batch_jobs(queue, name)) == 1


def test_deferred_kill_terminates_the_job_from_the_trigger(batch_rig: dict[str, str]) -> None:
    """The trigger's on_kill (what the triggerer calls when a user kills a deferred task)."""
    from airflow_genius.core.spec import build_spec
    from airflow_genius.triggers.batch import GeniusBatchJobTrigger

    spec = build_spec(
        "airflow_genius.examples.tasks:Echo", "sleep", kwargs={"seconds": 300},
        dag_id="trigger_kill", task_id="sleep", run_id=uuid.uuid4().hex, state_uri="memory://",
    )  # fmt: skip
    batch = rig.client("batch")
    name = rig.unique("genius-trigger-kill")
    job_id = batch.submit_job(
        jobName=name, jobQueue=batch_rig["queue"], jobDefinition=batch_rig["jobdef"],
        containerOverrides={"command": ["run", "--spec-env", "GENIUS_TASK_SPEC"],
                            "environment": [{"name": "GENIUS_TASK_SPEC", "value": spec.to_json()}]},
    )["jobId"]  # fmt: skip
    rig.wait_until("the job to run", lambda: running_job(batch_rig["queue"], name), timeout=120)
    rig.wait_until("its container", lambda: rig.containers_named(name), timeout=60)
    trigger = GeniusBatchJobTrigger(job_id=job_id, aws_conn_id=None, region_name=rig.REGION)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_genius.triggers.batch.GeniusBatchJobTrigger"
    run_coroutine(GeniusBatchJobTrigger(**kwargs).on_kill())
    rig.wait_until(
        "the job to be terminated",
        lambda: batch.describe_jobs(jobs=[job_id])["jobs"][0]["status"] == "FAILED",
        timeout=60,
    )
    rig.wait_until("podman to drop the container", lambda: not rig.containers_named(name, running_only=False))


class _Ti(SimpleNamespace):
    """What the operator reads from ``context["ti"]`` (identity) and writes (the provider's links)."""

    def xcom_push(self, key: str, value: Any) -> None:
        return None


def test_a_given_job_name_is_the_jobs_name(batch_rig: dict[str, str], redis_url: str) -> None:
    """``job_name`` means the Batch job name, as in ``BatchOperator``: one given is used as it is (left
    out, it is derived from the task instance: the DAG tests above)."""
    from airflow_genius.operators.batch import GeniusBatchOperator

    name, run_id = rig.unique("etl-named"), uuid.uuid4().hex
    op = GeniusBatchOperator(
        task_id="say", task_class="airflow_genius.examples.tasks:Echo", method="say", method_args=["hi"],
        state_uri=f"{redis_url}?prefix={rig.unique('g')}", environment=rig.CONTAINER_ENV, aws_conn_id=None,
        region_name=rig.REGION, job_queue=batch_rig["queue"], job_definition=batch_rig["jobdef"],
        job_name=name, poll_interval=1,
    )  # fmt: skip
    context: Any = {"ti": _Ti(dag_id="named", task_id="say", run_id=run_id, map_index=-1, try_number=1)}
    assert op.execute(context) == "hi"
    assert [job["status"] for job in rig.batch_jobs(batch_rig["queue"], name)] == ["SUCCEEDED"]
    assert rig.batch_jobs(batch_rig["queue"], deterministic_name("named", "say", run_id)) == []


def airflow_cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AIRFLOW, *args], env={**env, "AIRFLOW__CORE__DAGS_FOLDER": str(TEST_DAGS)}, cwd=env["AIRFLOW_HOME"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_retry_after_a_worker_crash_reattaches(batch_env: dict[str, str]) -> None:
    """One DAG run, two tries of its task through the real task runner (``airflow tasks test <run id>``):
    the first is SIGKILLed while its job runs (a worker crash); the second finds the job and waits."""
    env = {**batch_env, "GENIUS_TEST_SLEEP": "60"}  # outlives the second try's start-up under load
    run_id = f"crash_{uuid.uuid4().hex[:8]}"
    for args in (["dags", "reserialize"], ["dags", "trigger", "genius_batch_sleeper", "--run-id", run_id]):
        airflow_cli(env, *args).communicate(timeout=180)
    name = deterministic_name("genius_batch_sleeper", "sleep", run_id)
    queue = env["GENIUS_TEST_BATCH_QUEUE"]
    first = airflow_cli(env, "tasks", "test", "genius_batch_sleeper", "sleep", run_id)
    try:
        job = rig.wait_until(f"job {name} running", lambda: running_job(queue, name), timeout=180)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the worker dies; the job keeps running
        first.communicate(timeout=30)
    second = airflow_cli(env, "tasks", "test", "genius_batch_sleeper", "sleep", run_id)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output[-6000:]
    assert f"reattaching to AWS Batch job {job['jobId']}" in output
    assert "60.0" in output  # the sleeper's result, from the run record
    jobs = rig.batch_jobs(queue, name)
    assert [(j["jobId"], j["status"]) for j in jobs] == [(job["jobId"], "SUCCEEDED")]  # exactly one job


def test_secrets_never_leave_the_platform(run_python, batch_env: dict[str, str], secret_value: str) -> None:  # type: ignore[no-untyped-def]
    result, output = dag_test(run_python, batch_env, TEST_DAGS, "genius_batch_secrets", file=FILE)
    tis = tis_by_id(result)
    queue = batch_env["GENIUS_TEST_BATCH_QUEUE"]
    # a job definition that does not declare the password: refused before anything is submitted
    assert tis["refused"]["state"] == "failed", output[-6000:]
    assert "GENIUS_STATE_PASSWORD, which job definition" in output and "does not declare" in output
    assert (
        rig.batch_jobs(queue, deterministic_name("genius_batch_secrets", "refused", result["run_id"])) == []
    )
    # a job definition that declares it (the platform way): runs, and the value is sent nowhere
    assert tis["platform"]["state"] == "success", output[-6000:]
    job = only_job(queue, "genius_batch_secrets", "platform", result["run_id"])
    (described,) = rig.client("batch").describe_jobs(jobs=[job["jobId"]])["jobs"]
    assert secret_value not in json.dumps(described)
    # moto does not resolve job definition secrets, so the container got no value at all — and not
    # through the overrides either
    assert tis["platform"]["xcom"] == {"GENIUS_STATE_PASSWORD": None}
    assert secret_value not in output


def test_a_bounded_stream_window_runs_on_batch(run_python, batch_env: dict[str, str], redis_url: str) -> None:  # type: ignore[no-untyped-def]
    # the containers share the host network: the same Redis
    with stream_prefix(redis_url, "batch") as prefix:
        env = {**batch_env, **stream_env(redis_url, prefix)}
        runs = run_twice(run_python, env, TEST_DAGS, FILE, "genius_batch_stream")
        check_windows(runs, state_uri=env["AIRFLOW__GENIUS__STATE_URI"], dag_id="genius_batch_stream",
                      redis_url=redis_url, prefix=prefix)  # fmt: skip
        for run in runs:  # each task of each run ran as a Batch job of its own
            for task_id in ("publish", "enrich"):
                job = only_job(env["GENIUS_TEST_BATCH_QUEUE"], "genius_batch_stream", task_id, run["run_id"])
                assert job["status"] == "SUCCEEDED", job
