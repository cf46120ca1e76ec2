"""The slurmrestd request builders and answer parsers (airflow_genius.core.slurm_rest), per API version.

v0.0.38 answers are trimmed copies of what the rig's slurmrestd (Slurm 22.05) returned; v0.0.40 and
v0.0.41 ones follow the published schemas cited in the module's docstring.
"""

from __future__ import annotations

import jwt
import pytest

from airflow_genius.core import slurm_rest as rest

SCRIPT = """#!/bin/bash
#SBATCH --job-name=genius-x
#SBATCH --output="/h/my jobs/slurm-%j.out"
#SBATCH --open-mode=append
#SBATCH --partition=debug
#SBATCH --time=1-02:03:04
#SBATCH --nodes=2
#SBATCH --ntasks=4
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --gpus=a100:2
#SBATCH --account=lab
#SBATCH --qos=high
#SBATCH --constraint=fast&big
#SBATCH --reservation=r1
#SBATCH --exclusive
#SBATCH --no-requeue
#SBATCH --mail-type=END,FAIL
set -euo pipefail
#SBATCH --comment=ignored-after-the-first-command
echo hi
"""


def test_submit_v0038_maps_every_directive_to_its_field() -> None:
    request = rest.submit_request("v0.0.38", SCRIPT, work_dir="/h/work", environment={"A": "1"})
    assert (request.method, request.path) == ("POST", "/slurm/v0.0.38/job/submit")
    assert request.body is not None and request.body["script"] == SCRIPT
    assert request.body["job"] == {
        "current_working_directory": "/h/work",
        "environment": {"A": "1"},
        "name": "genius-x",
        "standard_output": "/h/my jobs/slurm-%j.out",
        "open_mode": "append",
        "partition": "debug",
        "time_limit": 1440 + 2 * 60 + 3 + 1,
        "nodes": [2],
        "tasks": 4,
        "cpus_per_task": 2,
        "memory_per_node": 4096,
        "gpus": "a100:2",
        "account": "lab",
        "qos": "high",
        "constraints": "fast&big",
        "reservation": "r1",
        "exclusive": "true",
        "requeue": False,
        "mail_type": "END,FAIL",
    }


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41"])
def test_submit_v0040_plus_uses_no_val_numbers_lists_and_the_script_in_the_job(version: str) -> None:
    request = rest.submit_request(version, SCRIPT, work_dir="/h/work", environment={"A": "1", "B": "x y"})
    assert request.body is not None and "script" not in request.body
    job = request.body["job"]
    assert job["script"] == SCRIPT
    assert job["environment"] == ["A=1", "B=x y"]
    assert job["time_limit"] == {"set": True, "infinite": False, "number": 1564}
    assert job["memory_per_node"] == {"set": True, "infinite": False, "number": 4096}
    assert job["nodes"] == "2"
    assert job["open_mode"] == ["APPEND"]
    assert job["exclusive"] == ["true"]
    assert job["mail_type"] == ["END", "FAIL"]
    assert job["tres_per_job"] == "gres/gpu:a100:2" and "gpus" not in job


def test_submit_without_environment_gets_a_path() -> None:
    request = rest.submit_request("v0.0.38", "#!/bin/bash\ntrue\n", work_dir="/tmp")
    assert request.body is not None
    assert request.body["job"]["environment"] == dict(rest.DEFAULT_ENVIRONMENT)


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("--signal=B:USR1@60", "--signal has no slurmrestd job field"),
        ("-N 2", "only long options"),
        ("--time=", "--time needs a value"),
        ("--ntasks=four", "--ntasks needs a number"),
        ("--open-mode=weird", "append or truncate"),
    ],
)
def test_a_directive_without_a_field_is_refused_by_name(directive: str, message: str) -> None:
    with pytest.raises(rest.SlurmRestError, match=message):
        rest.submit_request("v0.0.38", f"#!/bin/bash\n#SBATCH {directive}\ntrue\n", work_dir="/tmp")


def test_requests_of_status_cancel_and_accounting() -> None:
    assert rest.status_request("v0.0.41", "12").path == "/slurm/v0.0.41/job/12"
    assert rest.cancel_request("v0.0.38", "12").method == "DELETE"
    assert rest.accounting_request("v0.0.40", "12").path == "/slurmdb/v0.0.40/job/12"
    with pytest.raises(ValueError, match="not a Slurm job id"):
        rest.status_request("v0.0.38", "12; rm -rf /")
    with pytest.raises(rest.SlurmRestError, match=r"v0\.0\.39 is not one this provider maps"):
        rest.status_request("v0.0.39", "12")


# ------------------------------------------------------------------ versions
def doc(*versions: str) -> dict:  # type: ignore[type-arg]
    paths: dict[str, dict] = {}  # type: ignore[type-arg]
    for version in versions:
        paths[f"/slurm/{version}/job/submit"] = {}
        paths[f"/slurmdb/{version}/job/{{job_id}}"] = {}
    paths["/openapi/v3"] = {}
    return {"openapi": "3.0.2", "paths": paths}


def test_version_selection_prefers_the_newest_mapped_one() -> None:
    assert rest.select_version(doc("v0.0.36", "v0.0.37", "v0.0.38")) == "v0.0.38"
    assert rest.select_version(doc("v0.0.39", "v0.0.40", "v0.0.41", "v0.0.42")) == "v0.0.41"
    assert rest.select_version(doc("v0.0.40", "v0.0.41"), "0.0.40") == "v0.0.40"
    with pytest.raises(
        rest.SlurmRestError, match=r"offers API versions v0\.0\.37, v0\.0\.36; this provider maps"
    ):
        rest.select_version(doc("v0.0.36", "v0.0.37"))
    with pytest.raises(rest.SlurmRestError, match=r"does not serve API version v0\.0\.41"):
        rest.select_version(doc("v0.0.38"), "v0.0.41")


# ------------------------------------------------------------------ answers
V38_FAILED = {
    "meta": {"plugin": {"type": "openapi/v0.0.38"}},
    "errors": [],
    "jobs": [{"job_id": 3, "name": "probe", "job_state": "FAILED", "state_reason": "NonZeroExitCode",
              "exit_code": 768, "nodes": "vm", "batch_host": "vm", "current_working_directory": "/tmp",
              "standard_output": "/tmp/probe-%j.out", "start_time": 100, "end_time": 101}],
}  # fmt: skip
V38_ACCOUNTING = {
    "errors": [],
    "jobs": [{"job_id": 3, "name": "probe", "state": {"current": "FAILED", "reason": "None"},
              "exit_code": {"status": "SUCCESS", "return_code": 0}, "nodes": "vm", "account": "root",
              "partition": "debug", "association": {"user": "root"}, "working_directory": "/tmp",
              "time": {"elapsed": 1, "start": 100, "end": 101}}],
}  # fmt: skip


def no_val(number: int) -> dict:  # type: ignore[type-arg]
    return {"set": True, "infinite": False, "number": number}


def v40_job(state: list[str], code: int = 0, signal: int = 0) -> dict:  # type: ignore[type-arg]
    return {"jobs": [{"job_id": 5, "name": "x", "job_state": state, "state_reason": "None", "nodes": "n1",
                      "exit_code": {"status": ["SIGNALED" if signal else "EXITED"], "return_code": no_val(code),
                                    "signal": {"id": no_val(signal) if signal else {"set": False}, "name": ""}},
                      "start_time": no_val(10), "end_time": no_val(20)}]}  # fmt: skip


def test_v0038_job_answer_reads_the_wait_status() -> None:
    job = rest.parse_job("v0.0.38", V38_FAILED)
    assert job is not None
    assert (job.state, job.exit_code, job.signal, job.nodes) == ("FAILED", 3, 0, "vm")
    verdict = rest.job_verdict("3", job)
    assert (verdict.state, verdict.finished, verdict.succeeded) == ("FAILED", True, False)
    assert verdict.reason == "Slurm job 3 FAILED (exit code 3) [reason: NonZeroExitCode]"


def test_v0038_accounting_answer() -> None:
    record = rest.parse_accounting("v0.0.38", V38_ACCOUNTING)
    assert record is not None
    assert rest.accounting_fields(record) == {
        "job_id": "3", "name": "probe", "state": "FAILED", "exit_code": 0, "signal": 0, "nodes": "vm",
        "start": 100, "end": 101, "elapsed": 1, "working_directory": "/tmp", "account": "root",
        "partition": "debug", "user": "root",
    }  # fmt: skip
    assert rest.job_verdict("3", None, record).state == "FAILED"


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41"])
def test_v0040_plus_job_answers(version: str) -> None:
    running = rest.parse_job(version, v40_job(["RUNNING"]))
    assert running is not None and rest.job_verdict("5", running).state == "RUNNING"
    done = rest.parse_job(version, v40_job(["COMPLETED"]))
    assert done is not None and rest.job_verdict("5", done).succeeded
    assert (done.start, done.end) == (10, 20)
    failed = rest.parse_job(version, v40_job(["FAILED"], code=2))
    assert failed is not None and rest.job_verdict("5", failed).reason.startswith(
        "Slurm job 5 FAILED (exit code 2)"
    )
    killed = rest.parse_job(version, v40_job(["CANCELLED"], signal=9))
    assert killed is not None and (killed.exit_code, killed.signal) == (0, 9)
    assert "signal 9" in rest.job_verdict("5", killed).reason
    # COMPLETING rides as a flag beside the base state; its end is read from the record, as over SSH
    ending = rest.parse_job(version, v40_job(["COMPLETED", "COMPLETING"]))
    assert ending is not None and ending.live and ending.squeue_line().startswith("COMPLETING|")
    assert rest.job_verdict("5", ending).succeeded
    still = rest.parse_job(version, v40_job(["RUNNING", "COMPLETING"]))
    assert still is not None and not rest.job_verdict("5", still).finished


@pytest.mark.parametrize("version", ["v0.0.40", "v0.0.41"])
def test_v0040_plus_accounting_answer(version: str) -> None:
    body = {"jobs": [{"job_id": 5, "name": "x", "user": "alice", "state": {"current": ["OUT_OF_MEMORY"], "reason": "None"},
                      "exit_code": {"status": ["EXITED"], "return_code": no_val(0), "signal": {"id": no_val(9)}},
                      "nodes": "n1", "time": {"elapsed": 3, "start": 1, "end": 4}}]}  # fmt: skip
    record = rest.parse_accounting(version, body)
    assert record is not None and (record.state, record.signal, record.extra["user"]) == (
        "OUT_OF_MEMORY",
        9,
        "alice",
    )
    verdict = rest.job_verdict("5", None, record)
    assert verdict.finished and "more memory than --mem" in verdict.reason


def test_no_job_and_no_record_is_missing() -> None:
    assert rest.parse_job("v0.0.38", {"jobs": []}) is None
    assert rest.parse_accounting("v0.0.41", {"jobs": []}) is None
    assert rest.job_verdict("5", None, None).state == "MISSING"


def test_submit_answers() -> None:
    assert rest.parse_submit({"job_id": 42, "step_id": "BATCH", "errors": []}) == "42"
    assert rest.parse_submit({"result": {"job_id": 7}}) == "7"
    with pytest.raises(rest.SlurmRestError, match="no job_id"):
        rest.parse_submit({"errors": []})


def test_errors_are_one_line_and_auth_failures_are_told_apart() -> None:
    assert rest.check_answer(200, {"errors": [], "jobs": []}, "GET job") == {"errors": [], "jobs": []}
    with pytest.raises(rest.SlurmRestError) as caught:
        rest.check_answer(500, {"errors": [{"description": "Invalid partition", "error_number": 2000,
                                            "error": "Invalid partition name"}]}, "job submit")  # fmt: skip
    assert not isinstance(caught.value, rest.SlurmRestAuthError)
    assert str(caught.value) == (
        "slurmrestd job submit: HTTP 500: Invalid partition; Invalid partition name (error 2000)"
    )
    # slurmdbd refusing the token: HTTP 200 with error 1007
    with pytest.raises(rest.SlurmRestAuthError, match="token for user 'bob' was refused"):
        rest.check_answer(200, {"errors": [{"error_number": 1007, "error": "Protocol authentication error"}]},
                          "GET accounting", user="bob")  # fmt: skip
    with pytest.raises(rest.SlurmRestAuthError, match="HTTP 401: Authentication failure"):
        rest.check_answer(401, "Authentication failure", "GET job")
    # Slurm 22.05's slurmctld refusing the token: HTTP 500, error -1
    with pytest.raises(rest.SlurmRestAuthError, match=r"Slurm 22\.05 answers this"):
        rest.check_answer(
            500, {"errors": [{"description": "Unable to find JobId=3", "error_number": -1}]}, "GET job"
        )
    assert rest.error_numbers({"errors": [{"error_number": 2017}, {"error": "x"}]}) == {2017}


# ------------------------------------------------------------------ tokens
def test_minted_tokens_carry_the_slurm_claims() -> None:
    token = rest.mint_token(b"k" * 32, "alice", lifespan=30, now=500.0)
    claims = jwt.decode(token, b"k" * 32, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"sun": "alice", "iat": 500, "exp": 530}
    assert rest.token_expiry(token) == 530 and rest.token_expiry("garbage") is None


def test_token_source_refreshes_before_expiry_and_after_a_refusal() -> None:
    key = b"k" * 32
    given = rest.mint_token(key, "alice", lifespan=10, now=1000.0)
    source = rest.TokenSource("alice", token=given, key=key, lifespan=100)
    assert source.get(now=1005.0) == given  # the connection's token while it is valid
    minted = source.get(now=1009.5)  # about to expire: a minted one
    assert minted != given and rest.token_expiry(minted) == 1109
    assert source.get(now=1040.0) == minted
    assert source.get(now=1060.0) != minted  # within the refresh margin of its expiry
    refused = source.get(now=1061.0)
    source.invalidate()
    assert source.get(now=1062.0) != refused
    assert "alice" in repr(source) and given not in repr(source) and "k" * 32 not in repr(source)


def test_a_fixed_token_is_used_as_it_is() -> None:
    source = rest.TokenSource("alice", token="t0k3n")
    assert not source.can_refresh and source.headers() == {
        "X-SLURM-USER-NAME": "alice",
        "X-SLURM-USER-TOKEN": "t0k3n",
    }
    with pytest.raises(rest.SlurmRestError, match="needs a token"):
        rest.TokenSource("alice")


def test_time_and_memory_sizes() -> None:
    assert [rest.time_minutes(t) for t in ("5", "0:30", "1:00:00", "2-0", "1-0:1")] == [5, 1, 60, 2880, 1441]
    assert rest.memory_mb("2G") == 2048
    with pytest.raises(rest.SlurmRestError, match="not a Slurm memory size"):
        rest.memory_mb("lots")


def test_the_module_examples_hold() -> None:
    import doctest

    result = doctest.testmod(rest)
    assert result.attempted > 10 and result.failed == 0
