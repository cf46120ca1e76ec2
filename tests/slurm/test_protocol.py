"""The Slurm state machine and answer parsing (pure; the real cluster is exercised in test_on_slurm)."""

from __future__ import annotations

import pytest

from airflow_genius.core import slurm_protocol as protocol


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


def test_a_completing_job_is_done_once_sacct_has_its_end() -> None:
    done = protocol.verdict(squeue_line="COMPLETING|None|n\n", sacct_line=sacct("FAILED", "2:0"))
    assert (done.state, done.finished, done.succeeded) == ("FAILED", True, False)
    assert not protocol.verdict(squeue_line="COMPLETING|None|n\n", sacct_line=sacct("RUNNING")).finished
    assert not protocol.verdict(squeue_line="COMPLETING|None|n\n", sacct_line="").finished


def test_squeue_wins_over_sacct() -> None:
    verdict = protocol.verdict(squeue_line="RUNNING|None|node1\n", sacct_line=sacct("FAILED", "1:0"))
    assert (verdict.state, verdict.finished, verdict.node) == ("RUNNING", False, "node1")
    pending = protocol.verdict(squeue_line="PENDING|Resources|\n", sacct_line="")
    assert (pending.state, pending.reason) == ("PENDING", "Resources")


def answer(squeue: str = "", sacct: str = "", output: bytes = b"") -> bytes:
    """What :func:`protocol.poll_command` prints: squeue's line, sacct's row, the new output bytes."""
    return f"{squeue}\n\n@@genius-slurm@@\n{sacct}\n@@genius-slurm@@\n".encode() + output


def test_missing_job_waits_the_accounting_lag_then_is_lost() -> None:
    watch = protocol.Watch("9", lost_after=30)
    first = protocol.advance(watch, answer(), now=100.0)
    assert first.verdict.missing and first.event is None
    assert protocol.advance(first.watch, answer(), now=129.0).event is None
    lost = protocol.advance(protocol.advance(first.watch, answer(), now=129.0).watch, answer(), now=130.0)
    assert lost.event is not None and lost.event["state"] == "LOST" and not lost.event["succeeded"]


def test_missing_clock_restarts_when_the_job_shows_up_again() -> None:
    watch = protocol.Watch("9", lost_after=30)
    for now, squeue in [(0.0, ""), (20.0, "RUNNING|None|n"), (40.0, ""), (69.0, "")]:
        step = protocol.advance(watch, answer(squeue), now=now)
        assert step.event is None, now
        watch = step.watch


def test_pending_timeout_cancels() -> None:
    pending = answer("PENDING|Priority|")
    first = protocol.advance(protocol.Watch("9", pending_timeout=60), pending, now=0.0)
    assert first.event is None
    event = protocol.advance(first.watch, pending, now=61.0).event
    assert event is not None and event["cancel"] and "Priority" in str(event["reason"])
    running_late = protocol.Watch("9", pending_timeout=60, started_at=0.0)
    assert protocol.advance(running_late, answer("RUNNING|None|n"), now=500.0).event is None


def test_polls_back_off_to_the_interval() -> None:
    watch = protocol.Watch("9", poll_interval=1.0)
    delays = []
    for _ in range(4):
        watch = protocol.advance(watch, answer("RUNNING|None|n"), now=0.0).watch
        delays.append(watch.delay)
    assert delays == [0.25, 0.5, 1.0, 1.0]


def test_with_an_end_mark_every_poll_waits_on_the_login_node() -> None:
    watch = protocol.Watch("9", output_path="/o", end_mark="/j/slurm-9.end", poll_interval=10.0)
    assert (watch.hold, watch.delay) == (10.0, 0.0)  # the first poll already waits for the end
    assert "/j/slurm-9.end 10.000" in watch.command()
    step = protocol.advance(watch, answer("RUNNING|None|n"), now=0.0)
    assert (step.watch.hold, step.watch.delay) == (10.0, 0.0)
    long = protocol.Watch("9", end_mark="/m", poll_interval=100.0)
    assert (long.hold, long.delay) == (protocol.MAX_HOLD, 0.0)
    # beyond MAX_HOLD the next poll holds again instead of sleeping: an end is never seen a sleep late
    assert protocol.advance(long, answer("RUNNING|None|n"), now=0.0).watch.delay == 0.0
    assert "bash -c" not in protocol.Watch("9", output_path="/o").command()  # no mark: no wait


def test_a_mark_seen_while_slurm_still_ends_the_job_brings_the_next_polls_close() -> None:
    watch = protocol.Watch("9", end_mark="/j/slurm-9.end", poll_interval=10.0)
    seen = b"COMPLETING|None|n\n\n@@genius-slurm@@\n\n\n@@genius-slurm@@ended\n"
    step = protocol.advance(watch, seen, now=0.0)
    assert step.watch.ending and (step.watch.hold, step.watch.delay) == (0.0, 0.25)
    step = protocol.advance(step.watch, answer("COMPLETING|None|n"), now=0.3)
    assert step.watch.ending and step.watch.delay == 0.5
    done = protocol.advance(step.watch, answer(sacct="9|COMPLETED|0:0|None"), now=0.9)
    assert done.event is not None and done.event["succeeded"]
    lagging = protocol.advance(watch, seen.replace(b"COMPLETING|None|n", b""), now=0.0)
    assert lagging.verdict.missing and lagging.watch.ending  # accounting lag: no full hold either
    requeued = protocol.advance(watch, seen.replace(b"COMPLETING", b"PENDING"), now=0.0)
    assert not requeued.watch.ending and requeued.watch.hold == 10.0  # a requeue: back to waiting


def test_output_is_logged_once_in_whole_lines_and_read_to_its_end() -> None:
    watch = protocol.Watch("9", output_path="/o")
    step = protocol.advance(watch, answer("RUNNING|None|n", output=b"one\ntw"), now=0.0)
    assert (step.lines, step.watch.offset, step.event) == (("one",), 4, None)
    big = b"x" * (protocol.OUTPUT_CHUNK - 1) + b"\n"
    ended = protocol.advance(step.watch, answer(sacct="9|COMPLETED|0:0|None", output=b"two\n" + big), now=1.0)
    # a whole chunk after the end: read again at once before the event
    assert ended.event is None and ended.watch.delay == 0.0 and ended.lines[0] == "two"
    rest = protocol.advance(ended.watch, answer(sacct="9|COMPLETED|0:0|None", output=b"last"), now=1.1)
    assert rest.lines == ("last",) and rest.event is not None and rest.event["succeeded"]
    assert rest.event["log_offset"] == 4 + 4 + len(big) + 4


def test_a_job_given_up_while_running_logs_its_partial_last_line() -> None:
    watch = protocol.Watch("9", output_path="/o", pending_timeout=0)
    step = protocol.advance(watch, answer("PENDING|Priority|", output=b"half"), now=0.0)
    assert step.event is None and step.lines == ()
    final = protocol.advance(step.watch, answer("PENDING|Priority|", output=b"half"), now=0.1)
    assert final.lines == ("half",) and final.event is not None and final.event["state"] == "PENDING_TIMEOUT"


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
    home, jobs = protocol.parse_live_jobs("/home/me\n12|RUNNING\n9|PENDING\njunk\n")
    assert (home, jobs) == ("/home/me", [("9", "PENDING"), ("12", "RUNNING")])
    assert protocol.parse_live_jobs("/root\n") == ("/root", [])


def test_files_travel_with_the_script_and_are_checked() -> None:
    command = protocol.submit_command("/h/a b", [("spec.json", 10), ("secret.env", 0)])
    assert "head -c 10 > '/h/a b/spec.json' && head -c 0 > '/h/a b/secret.env'" in command
    assert command.startswith("(umask 077 && mkdir -p '/h/a b'") and command.endswith("sbatch --parsable")
    for bad in ["../x", "", "a/b", ".."]:
        with pytest.raises(ValueError, match="not a file name"):
            protocol.submit_command("/h", [(bad, 1)])


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


# ---------------------------------------------------------------- requeue and preemption
def run_states(watch: protocol.Watch, polls: list[tuple[float, bytes]]) -> list[protocol.Step]:
    """Advance ``watch`` through ``polls`` ((now, answer) pairs), returning every step."""
    steps = []
    for now, reply in polls:
        step = protocol.advance(watch, reply, now=now)
        steps.append(step)
        watch = step.watch
    return steps


def test_a_requeued_job_is_waited_for_and_its_next_run_tailed() -> None:
    """RUNNING, then ``scontrol requeue`` (COMPLETING with sacct REQUEUED, then PENDING on BeginTime far
    longer than pending_timeout), then the second run to COMPLETED: one successful wait, both runs' output."""
    watch = protocol.Watch("9", output_path="/o", pending_timeout=60)
    steps = run_states(
        watch,
        [
            (0.0, answer("PENDING|Priority|")),
            (10.0, answer("RUNNING|None|n", output=b"run 1\n")),
            (20.0, answer("COMPLETING|None|n", sacct("REQUEUED", job="9"), b"received SIGTERM\n")),
            (21.0, answer("PENDING|BeginTime|")),
            (140.0, answer("PENDING|BeginTime|")),  # cred_expire: 120 s before a requeued job may start
            (150.0, answer("RUNNING|None|n", output=b"genius: Slurm restarted job 9 (restart 1)\nrun 2\n")),
            (160.0, answer(sacct=sacct("COMPLETED", job="9"), output=b"done\n")),
        ],
    )
    assert [step.event for step in steps[:-1]] == [None] * 6
    event = steps[-1].event
    assert event is not None and (event["state"], event["succeeded"]) == ("COMPLETED", True)
    logged = [line for step in steps for line in step.lines]
    assert logged == [
        "run 1",
        "received SIGTERM",
        "genius: Slurm restarted job 9 (restart 1)",
        "run 2",
        "done",
    ]
    assert steps[2].verdict.state == "REQUEUED" and steps[-1].watch.requeues == 1
    (note,) = [note for step in steps for note in step.notes]
    assert "Slurm job 9 went back to the queue (REQUEUED)" in note


def test_sacct_lagging_behind_a_job_that_ended_is_no_requeue() -> None:
    """The job left squeue, and slurmdbd has not recorded its start yet: sacct still shows PENDING. That
    is accounting lag (seen on the rig under load), not Slurm sending the job back to the queue."""
    watch = protocol.Watch("9", output_path="/o")
    steps = run_states(
        watch,
        [
            (0.0, answer("RUNNING|None|n", output=b"line 1\n")),
            (1.0, answer(sacct=sacct("PENDING", job="9"), output=b"no newline")),
            (2.0, answer(sacct=sacct("COMPLETED", job="9"))),
        ],
    )
    assert [note for step in steps for note in step.notes] == []
    assert steps[-1].watch.requeues == 0
    event = steps[-1].event
    assert event is not None and (event["state"], event["succeeded"]) == ("COMPLETED", True)


def test_pending_timeout_bounds_only_the_wait_before_the_first_run() -> None:
    watch = protocol.Watch("9", pending_timeout=60)
    steps = run_states(
        watch,
        [
            (0.0, answer("PENDING|Priority|")),
            (30.0, answer("RUNNING|None|n")),
            (40.0, answer("PENDING|BeginTime|")),  # requeued: Slurm holds it for its credential lifetime
            (400.0, answer("PENDING|BeginTime|")),
        ],
    )
    assert [step.event for step in steps] == [None] * 4
    # a wait that starts while Slurm requeues the job (a reattach) knows it ran from the REQUEUED state
    late = run_states(
        watch,
        [
            (0.0, answer("COMPLETING|None|n", sacct("REQUEUED", job="9"))),
            (5.0, answer("PENDING|BeginTime|")),
            (400.0, answer("PENDING|BeginTime|")),
        ],
    )
    assert [step.event for step in late] == [None] * 3 and late[-1].watch.requeues == 1
    never_ran = run_states(watch, [(0.0, answer("PENDING|Priority|")), (60.0, answer("PENDING|Priority|"))])
    event = never_ran[-1].event
    assert event is not None and event["state"] == "PENDING_TIMEOUT" and event["cancel"]
    assert "was still PENDING after 60 s (Priority); it was cancelled" in event["reason"]


@pytest.mark.parametrize(
    "back_to_queue",
    [
        "PREEMPTED|None|n",  # preempted by a higher-priority job, requeued (PreemptMode=REQUEUE)
        "REQUEUED|None|",
        "PENDING|NodeDown|",  # its node failed and the job (--requeue) is queued again
        "REQUEUE_HOLD|JobHeldAdmin|",  # scontrol requeuehold: held until released
    ],
)
def test_preemption_node_failure_and_requeue_states_keep_the_job_waited_for(back_to_queue: str) -> None:
    steps = run_states(
        protocol.Watch("9", lost_after=30),
        [
            (0.0, answer("RUNNING|None|n")),
            (10.0, answer(back_to_queue)),
            (100.0, answer("PENDING|BeginTime|")),
            (200.0, answer("RUNNING|None|n")),
            (300.0, answer(sacct=sacct("COMPLETED", job="9"))),
        ],
    )
    assert [step.event for step in steps[:-1]] == [None] * 4
    assert steps[-1].event is not None and steps[-1].event["succeeded"]
    assert steps[-1].watch.requeues == 1


def test_a_preempted_job_that_is_not_requeued_fails_after_lost_after() -> None:
    """sacct PREEMPTED while squeue no longer lists the job: a requeue step that may still show the job
    queued again (squeue failed once), so it waits lost_after, then fails naming the state."""
    gone = answer(sacct=sacct("PREEMPTED", "0:15", job="9"))
    steps = run_states(
        protocol.Watch("9", lost_after=30),
        [(0.0, answer("RUNNING|None|n")), (10.0, gone), (39.0, gone), (40.0, gone)],
    )
    assert [step.event for step in steps[:3]] == [None] * 3
    event = steps[-1].event
    assert event is not None and (event["state"], event["succeeded"]) == ("PREEMPTED", False)
    assert "did not requeue it" in event["reason"]
    # back in the queue within lost_after: waited for as any requeued job
    back = run_states(protocol.Watch("9", lost_after=30), [(0.0, gone), (20.0, answer("PENDING|BeginTime|"))])
    assert back[-1].event is None and back[-1].watch.missing_since is None


def test_node_fail_without_requeue_still_fails() -> None:
    steps = run_states(
        protocol.Watch("9"),
        [(0.0, answer("RUNNING|None|n")), (10.0, answer(sacct=sacct("NODE_FAIL", job="9")))],
    )
    event = steps[-1].event
    assert event is not None and event["state"] == "NODE_FAIL" and "not requeued" in event["reason"]


def test_a_requeue_seen_with_the_end_mark_goes_back_to_holding() -> None:
    """The stopped run's script touches the end mark as it exits: the poll that takes it sees the job on
    its way back to the queue, and the next polls hold on the login node again for the next run's end."""
    watch = protocol.Watch("9", end_mark="/j/slurm-9.end", poll_interval=10.0)
    seen = b"COMPLETING|None|n\n\n@@genius-slurm@@\n9|REQUEUED|0:0|None\n\n@@genius-slurm@@ended\n"
    step = protocol.advance(protocol.advance(watch, answer("RUNNING|None|n"), now=0.0).watch, seen, now=5.0)
    assert step.event is None and step.verdict.state == "REQUEUED"
    assert not step.watch.ending and step.watch.hold == 10.0 and step.notes
