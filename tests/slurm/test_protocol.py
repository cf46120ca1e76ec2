"""The Slurm state machine and answer parsing (pure; the real cluster is exercised in test_on_slurm)."""

from __future__ import annotations

import pytest

from airflow_genius.hooks import slurm_protocol as protocol


def sacct(state: str, exit_code: str = "0:0", reason: str = "None", job: str = "7") -> str:
    return f"{job}|{state}|{exit_code}|{reason}\n"


@pytest.mark.parametrize(
    ("row", "finished", "succeeded", "words"),
    [
        (sacct("COMPLETED"), True, True, []),
        (sacct("COMPLETED", "1:0"), True, False, ["COMPLETED with exit 1:0"]),
        (
            sacct("FAILED", "3:0", "NonZeroExitCode"),
            True,
            False,
            ["FAILED", "exit code 3", "NonZeroExitCode"],
        ),
        (sacct("TIMEOUT", "0:15"), True, False, ["TIMEOUT", "signal 15", "--time"]),
        (sacct("OUT_OF_MEMORY", "0:125"), True, False, ["OUT_OF_MEMORY", "--mem"]),
        (sacct("CANCELLED by 0", "0:15"), True, False, ["CANCELLED", "scancel"]),
        (sacct("NODE_FAIL", "0:0"), True, False, ["NODE_FAIL", "not requeued"]),
        (sacct("BOOT_FAIL"), True, False, ["BOOT_FAIL"]),
        (sacct("DEADLINE"), True, False, ["DEADLINE"]),
        # still moving: accounting lag after the job left squeue, or a requeue/preemption
        (sacct("RUNNING"), False, False, []),
        (sacct("PENDING"), False, False, []),
        (sacct("REQUEUED"), False, False, []),
        (sacct("PREEMPTED", "0:15"), False, False, []),
    ],
)
def test_sacct_states(row: str, finished: bool, succeeded: bool, words: list[str]) -> None:
    verdict = protocol.verdict(squeue_line="", sacct_line=row)
    assert (verdict.finished, verdict.succeeded) == (finished, succeeded)
    for word in words:
        assert word in verdict.reason


def test_state_is_compared_by_its_first_word_never_by_prefix() -> None:
    # "COMPLETING" must not count as COMPLETED, "CANCELLED+" style suffixes must not break the match
    assert not protocol.verdict(squeue_line="", sacct_line=sacct("COMPLETING")).finished
    assert protocol.verdict(squeue_line="", sacct_line=sacct("CANCELLED by 1000")).state == "CANCELLED"


def test_squeue_wins_over_sacct() -> None:
    verdict = protocol.verdict(squeue_line="RUNNING|None|node1\n", sacct_line=sacct("FAILED", "1:0"))
    assert (verdict.state, verdict.finished, verdict.node) == ("RUNNING", False, "node1")
    pending = protocol.verdict(squeue_line="PENDING|Resources|\n", sacct_line="")
    assert (pending.state, pending.reason) == ("PENDING", "Resources")


def test_missing_job_waits_the_accounting_lag_then_is_lost() -> None:
    watch = protocol.JobWatch("9", lost_after=30)
    missing = protocol.verdict(squeue_line="", sacct_line="")
    assert missing.missing
    assert watch.observe(missing, now=100.0) is None
    assert watch.observe(missing, now=129.0) is None
    lost = watch.observe(missing, now=130.0)
    assert lost is not None and lost["state"] == "LOST" and not lost["succeeded"]


def test_missing_clock_restarts_when_the_job_shows_up_again() -> None:
    watch = protocol.JobWatch("9", lost_after=30)
    missing = protocol.verdict(squeue_line="", sacct_line="")
    running = protocol.verdict(squeue_line="RUNNING|None|n\n", sacct_line="")
    assert watch.observe(missing, now=0.0) is None
    assert watch.observe(running, now=20.0) is None
    assert watch.observe(missing, now=40.0) is None
    assert watch.observe(missing, now=69.0) is None


def test_pending_timeout_cancels() -> None:
    watch = protocol.JobWatch("9", pending_timeout=60)
    pending = protocol.verdict(squeue_line="PENDING|Priority|\n", sacct_line="")
    assert watch.observe(pending, now=0.0) is None
    event = watch.observe(pending, now=61.0)
    assert event is not None and event["cancel"] and "Priority" in str(event["reason"])
    running_late = protocol.JobWatch("9", pending_timeout=60, started_at=0.0)
    assert running_late.observe(protocol.verdict(squeue_line="RUNNING|None|n", sacct_line=""), 500.0) is None


def test_parse_poll_hands_over_whole_lines_until_the_end() -> None:
    command_output = b"RUNNING|None|n\n\n@@genius-slurm@@\n\n@@genius-slurm@@\nline one\nline tw"
    poll = protocol.parse_poll(command_output, offset=100)
    assert poll.output == b"line one\n" and poll.offset == 109 and poll.verdict.state == "RUNNING"
    done = b"\n\n@@genius-slurm@@\n7|COMPLETED|0:0|None\n\n@@genius-slurm@@\nline tw"
    final = protocol.parse_poll(done, offset=109)
    assert final.output == b"line tw" and final.verdict.succeeded


@pytest.mark.parametrize("bad", ["", "12;rm -rf /", "$(id)", "12\n13", "-1", "1 2"])
def test_job_ids_are_checked_before_they_reach_a_command(bad: str) -> None:
    with pytest.raises(ValueError):
        protocol.cancel_command(bad)
    with pytest.raises(ValueError):
        protocol.poll_command(bad)


def test_parse_job_id_and_live_jobs() -> None:
    assert protocol.parse_job_id("42\n") == "42"
    assert protocol.parse_job_id("42;cluster\n") == "42"
    with pytest.raises(ValueError):
        protocol.parse_job_id("sbatch: error: Batch job submission failed\n")
    assert protocol.parse_live_jobs("12|RUNNING\n9|PENDING\njunk\n") == [("9", "PENDING"), ("12", "RUNNING")]


def test_job_name_is_deterministic_per_task_instance_and_safe() -> None:
    name = protocol.job_name("etl", "clean", "manual__1", 3)
    assert name == protocol.job_name("etl", "clean", "manual__1", 3)
    assert name != protocol.job_name("etl", "clean", "manual__1", 4)
    assert name != protocol.job_name("etl", "clean", "manual__2", 3)
    hostile = protocol.job_name("d'; rm -rf ~ #", "t$(id)`x`\n", "r")
    assert all(ch.isalnum() or ch in "-_." for ch in hostile)


def test_stop_commands_quote_the_name_and_check_the_signal() -> None:
    command = protocol.stop_by_name_command("genius-a;b", "USR1")
    assert "--name='genius-a;b'" in command and "--full --signal=USR1" in command
    assert "--state=PENDING" in command and "--state=RUNNING" in command
    with pytest.raises(ValueError, match="not a signal"):
        protocol.stop_by_name_command("x", "TERM; reboot")
    assert protocol.tail_command("/a b/slurm-1.out", 5) == "tail -n 5 '/a b/slurm-1.out' 2>/dev/null; true"
    with pytest.raises(ValueError, match="not a Slurm job id"):
        protocol.node_address_command("1; reboot")


def test_docstring_examples() -> None:
    import doctest

    result = doctest.testmod(protocol)
    assert result.failed == 0 and result.attempted > 0
