"""What we say to Slurm and how we read its answers: pure functions (no Airflow, no I/O), shared by
the worker-side :class:`~airflow_genius.hooks.slurm.SlurmHook`, the deferrable
:class:`~airflow_genius.triggers.slurm.GeniusSlurmTrigger` and the Slurm operators.

Every command is one shell line with each value quoted; every answer is parsed here, so the state
machine below is the only place that decides whether a job is waiting, done, or failed, and
:func:`advance` is the one step of every wait loop (in the worker, in the triggerer, for a service).

>>> verdict(squeue_line="", sacct_line="42|FAILED|3:0|None")
JobVerdict(state='FAILED', finished=True, succeeded=False, reason='Slurm job 42 FAILED (exit code 3)', node='', live=False)
"""

from __future__ import annotations

import itertools  # noqa: F401 - used by the doctests
import logging
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from airflow_genius.core.naming import instance_name

#: sacct columns we ask for, in this order (``--parsable2``: ``|``-separated, no trailing ``|``).
SACCT_FIELDS = ("JobIDRaw", "State", "ExitCode", "Reason")
#: squeue columns: state, reason, node list.
SQUEUE_FORMAT = "%T|%r|%N"

#: Terminal states that fail the task (first word of sacct's State). COMPLETED succeeds only with 0:0.
FAILED_STATES = frozenset(
    {"FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "REVOKED"}
)
#: What each failure means, for the task log.
FAILURE_HINTS = {
    "TIMEOUT": "it ran past its --time limit",
    "OUT_OF_MEMORY": "it used more memory than --mem allows",
    "CANCELLED": "it was cancelled (scancel, an administrator, or a pending-time limit)",
    "NODE_FAIL": "its node failed and the job was not requeued",
    "BOOT_FAIL": "its node failed to boot",
    "DEADLINE": "it missed its --deadline",
}

#: States of a job Slurm sent back to the queue (``scontrol requeue``, preemption, a node failure of a
#: requeueable job): a job seen on a node that shows one of these again is waited for, not failed.
REQUEUE_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "PREEMPTED"})
#: States of a job on a node (what a requeue follows).
RUN_STATES = frozenset({"RUNNING", "COMPLETING", "SUSPENDED"})
#: sacct states that are only a step of a requeue: a job squeue no longer lists is in the queue again
#: (sacct soon shows it PENDING) or was not requeued — after ``lost_after`` seconds, a failure.
REQUEUE_STEPS = frozenset({"REQUEUED", "PREEMPTED"})

#: Bytes of output one poll reads at most; a poll that reads this many after the end reads again.
OUTPUT_CHUNK = 65536
#: A job's output read after it ended is cut after this many chunks (it stays whole in its file).
DRAIN_CHUNKS = 64
#: The first wait between two polls; each next one doubles, up to the poll interval.
FIRST_POLL_DELAY = 0.25
#: A genius job's files in its folder: Slurm's output, and the mark its script leaves when it exits.
OUTPUT_FILE = "slurm-{job_id}.out"
END_MARK_FILE = "slurm-{job_id}.end"
#: Longest a poll waits on the login node for a job's end mark; the rest of a longer interval is slept.
MAX_HOLD = 30.0
#: After the end mark, how many more looks (50 ms apart) a poll gives Slurm to take the job out of
#: squeue and record its end in sacct.
SETTLE_CHECKS = 40

_SEPARATOR = "@@genius-slurm@@"
_MARK_SEEN = "ended"
_JOB_ID = re.compile(r"^[0-9]+(_[0-9]+)?$")
_SIGNAL = re.compile(r"^(SIG)?[A-Z0-9+]{1,12}$")


def check_job_id(job_id: str) -> str:
    """A Slurm job id as we accept it (digits, or an array task ``123_4``); anything else raises."""
    if not _JOB_ID.match(str(job_id)):
        raise ValueError(f"not a Slurm job id: {job_id!r}")
    return str(job_id)


# --------------------------------------------------------------------------- commands
def submit_command(work_dir: str, files: Sequence[tuple[str, int]] = ()) -> str:
    """Submit from ``work_dir`` (the job's own folder) the script read from standard input, after
    :func:`write_files_command` wrote ``files`` there — the spec and the secret file travel with the
    script, in one round trip and never on a command line.

    >>> submit_command("/h/j", [("spec.json", 120)])
    '(umask 077 && mkdir -p /h/j && head -c 120 > /h/j/spec.json) && cd /h/j && sbatch --parsable'
    """
    return f"{write_files_command(work_dir, files)} && cd {shlex.quote(work_dir)} && sbatch --parsable"


def write_files_command(folder: str, files: Sequence[tuple[str, int]]) -> str:
    """Create ``folder`` (mode 0700 if missing) and write ``files`` into it, readable by the owner only:
    ``(name, size)`` pairs whose content is read from standard input, in that order."""
    base = folder.rstrip("/")
    writes = "".join(
        f" && head -c {int(size)} > {shlex.quote(f'{base}/{_file_name(name)}')}" for name, size in files
    )
    return f"(umask 077 && mkdir -p {shlex.quote(folder)}{writes})"


def _file_name(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a file name: {name!r}")
    return name


def find_live_job_command(job_name: str) -> str:
    """The login node's ``$HOME``, then this user's queued or running jobs called ``job_name``: one
    ``id|state`` per line (read with :func:`parse_live_jobs`; the home saves a round trip for paths)."""
    return f"printf '%s\\n' \"$HOME\"; squeue --me --noheader --name={shlex.quote(job_name)} --format='%i|%T'"


def cancel_command(job_id: str) -> str:
    """``scancel``; cancelling a job that already ended is not an error (idempotent)."""
    return f"scancel {check_job_id(job_id)} 2>/dev/null; true"


def release_command(job_id: str) -> str:
    """``scontrol release``: let a held job (or one element ``123_4`` of a held array) be scheduled.

    >>> release_command("812_7")
    'scontrol release 812_7'
    """
    return f"scontrol release {check_job_id(job_id)}"


def cancel_by_name_command(job_name: str) -> str:
    """Cancel every job of this user called ``job_name`` (a service's teardown; idempotent)."""
    return f"scancel --me --name={shlex.quote(job_name)} 2>/dev/null; true"


def stop_by_name_command(job_name: str, signal: str = "TERM") -> str:
    """Ask this user's jobs called ``job_name`` to end on their own terms (a service's teardown): a queued
    one is cancelled, a running one gets ``signal`` in its batch shell and all its children (``--full``;
    without it Slurm spares the batch shell). Idempotent.

    >>> stop_by_name_command("genius-d-svc-1", "TERM")  # doctest: +NORMALIZE_WHITESPACE
    'scancel --me --state=PENDING --name=genius-d-svc-1 2>/dev/null;
     scancel --me --state=RUNNING --full --signal=TERM --name=genius-d-svc-1 2>/dev/null; true'
    """
    if not _SIGNAL.match(signal):
        raise ValueError(f"not a signal name or number: {signal!r}")
    name = shlex.quote(job_name)
    return (
        f"scancel --me --state=PENDING --name={name} 2>/dev/null; "
        f"scancel --me --state=RUNNING --full --signal={signal} --name={name} 2>/dev/null; true"
    )


def node_address_command(job_id: str) -> str:
    """Where clients on the cluster reach a running job: the address (``NodeAddr``) of the node that runs
    its batch script (squeue's BatchHost), then that node's name as a fallback line. Read with
    :func:`parse_node_address`; empty while the job has no node."""
    job = check_job_id(job_id)
    return (
        f"node=$(squeue --noheader -j {job} --format=%B 2>/dev/null | head -n 1); "
        '[ -z "$node" ] || { sinfo --noheader --Node --nodes="$node" --format=%o 2>/dev/null | head -n 1; '
        "printf '%s\\n' \"$node\"; }"
    )


def parse_node_address(output: str) -> str:
    """The first line of :func:`node_address_command`'s answer ('' when the job has no node).

    >>> parse_node_address("10.1.0.7\\nnode7\\n"), parse_node_address("\\nnode7\\n"), parse_node_address("")
    ('10.1.0.7', 'node7', '')
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[0] if lines else ""


def tail_command(path: str, lines: int = 40) -> str:
    """The last ``lines`` lines of a job's output file (nothing if it does not exist yet)."""
    return f"tail -n {int(lines)} {shlex.quote(path)} 2>/dev/null; true"


def poll_command(
    job_id: str,
    output_path: str | None = None,
    offset: int = 0,
    chunk: int = OUTPUT_CHUNK,
    *,
    end_mark: str | None = None,
    hold: float = 0.0,
) -> str:
    """One round trip: live state from squeue; if the job left the queue (or is COMPLETING: its processes
    ended, Slurm cleans up), its record from sacct; then
    up to ``chunk`` bytes of the output file from byte ``offset``. Read with :func:`parse_poll`.

    With ``end_mark`` (the file a genius job's script touches when it exits, :data:`END_MARK_FILE`) and
    ``hold`` seconds, the command first waits on the login node until that file appears or ``hold``
    runs out — one bash that checks every 50 ms without starting a process — then removes it and gives
    Slurm up to :data:`SETTLE_CHECKS` more looks to take the ending job out of squeue and into sacct.
    The end of a job is seen within a fraction of a second, and Slurm is still asked once per poll.
    """
    job = check_job_id(job_id)
    sacct = f"sacct -j {job} -X --noheader --parsable2 --format={','.join(SACCT_FIELDS)} 2>/dev/null"
    query = (
        f"live=$(squeue --noheader -j {job} --format='{SQUEUE_FORMAT}' 2>/dev/null); "
        f'rec=; case "$live" in ""|COMPLETING*) rec=$({sacct});; esac'
    )
    parts = [f"ended=0; {query}"]
    if end_mark and hold > 0:
        parts = [
            f"ended=0; bash -c {shlex.quote(_WAIT_FOR_END_MARK)} _ {shlex.quote(end_mark)} {hold:.3f} && ended=1",
            # after the mark: until the job left squeue and sacct has its end (accounting lags a little)
            f"n=0; while :; do {query}; [ $ended = 1 ] && [ $n -lt {SETTLE_CHECKS} ] || break; "
            # only a job that is ending is waited for (a requeued one is PENDING again: no wait)
            'case "$live" in RUNNING*) ;; ""|COMPLETING*) s=${rec#*|}; s=${s%%|*}; '
            "case \"$s\" in ''|RUNNING) ;; *) break;; esac;; *) break;; esac; "
            "n=$((n + 1)); sleep 0.05; done",
        ]
    parts += [
        "printf '%s\\n' \"$live\"",
        f"printf '\\n{_SEPARATOR}\\n'",
        "printf '%s\\n' \"$rec\"",
        # the second separator says whether this poll saw the end mark
        f'printf \'\\n{_SEPARATOR}%s\\n\' "$([ "$ended" = 1 ] && echo {_MARK_SEEN})"',
    ]
    if output_path:
        parts.append(
            f"tail -c +{int(offset) + 1} {shlex.quote(output_path)} 2>/dev/null | head -c {int(chunk)}"
        )
    return "; ".join(parts)


# $1: the end mark, $2: seconds. The timer is a `sleep` behind fd 3: `read -t` on it sleeps 50 ms
# without a process per check, and returns at once (not >128) when the sleep ends. Exit 0: the mark came.
_WAIT_FOR_END_MARK = (
    'm=$1; if [ ! -e "$m" ]; then exec 3< <(exec sleep "$2" 2>/dev/null); '
    'while [ ! -e "$m" ]; do read -r -t 0.05 -u 3; [ $? -gt 128 ] || exit 1; done; kill $! 2>/dev/null; fi; '
    'rm -f -- "$m"'
)


# --------------------------------------------------------------------------- answers
@dataclass(frozen=True)
class JobVerdict:
    """What one poll says about a job."""

    state: str  # first word of Slurm's state, or "MISSING" when neither squeue nor sacct knows it
    finished: bool
    succeeded: bool
    reason: str = ""
    node: str = ""
    live: bool = False  # squeue lists the job (else the verdict is sacct's)

    @property
    def missing(self) -> bool:
        return self.state == "MISSING"


@dataclass(frozen=True)
class Poll:
    """One poll: the verdict and the new output bytes (complete lines only, unless ``final``)."""

    verdict: JobVerdict
    output: bytes
    offset: int
    mark_seen: bool = False  # this poll found the job's end mark


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """sacct's ``ExitCode`` ``code:signal`` → ``(code, signal)``.

    >>> parse_exit_code("3:0"), parse_exit_code("0:15"), parse_exit_code("")
    ((3, 0), (0, 15), (None, None))
    """
    code, _, signal = text.partition(":")
    try:
        return int(code), int(signal or 0)
    except ValueError:
        return None, None


def verdict(*, squeue_line: str, sacct_line: str, job_id: str = "") -> JobVerdict:
    """The state machine: squeue's live state wins (unless the job is COMPLETING and sacct already has
    its end); else sacct's terminal row decides.

    Success is COMPLETED with exit 0:0 only. States are compared by their first word (``CANCELLED by
    0``), never by prefix. A COMPLETING job that sacct shows REQUEUED or PREEMPTED is on its way back to
    the queue and has that state. A job sacct still shows as RUNNING/PENDING/REQUEUED/PREEMPTED after it
    left squeue is waiting (accounting lag or a requeue). Neither source knowing it → ``MISSING``; the
    caller decides how long to wait before calling it lost (:func:`advance`).
    """
    live = squeue_line.strip().splitlines()
    if live and live[0].strip().startswith("COMPLETING") and sacct_line.strip():
        # the job's processes ended and Slurm cleans up: its record already has the end
        recorded = verdict(squeue_line="", sacct_line=sacct_line, job_id=job_id)
        if recorded.finished:
            return recorded
        if recorded.state in REQUEUE_STEPS:  # Slurm stops this run to queue the job again
            return replace(recorded, live=True)
    if live and live[0].strip():
        state, _, rest = live[0].strip().partition("|")
        reason, _, node = rest.partition("|")
        return JobVerdict(
            state=state.split()[0],
            finished=False,
            succeeded=False,
            reason="" if reason in ("None", "") else reason,
            node=node,
            live=True,
        )
    rows = [line for line in sacct_line.strip().splitlines() if line.strip()]
    if not rows:
        return JobVerdict(state="MISSING", finished=False, succeeded=False)
    fields = dict(zip(SACCT_FIELDS, rows[0].split("|"), strict=False))
    job = job_id or fields.get("JobIDRaw") or ""  # an array element by its own id (812_7), not its raw one
    state = (
        (fields.get("State") or "UNKNOWN").split()[0] if (fields.get("State") or "").strip() else "UNKNOWN"
    )
    code, signal = parse_exit_code(fields.get("ExitCode", ""))
    if state == "COMPLETED":
        if (code, signal) == (0, 0):
            return JobVerdict(state=state, finished=True, succeeded=True)
        return JobVerdict(
            state=state,
            finished=True,
            succeeded=False,
            reason=f"Slurm job {job} COMPLETED with exit {code}:{signal}",
        )
    if state in FAILED_STATES:
        detail = f"exit code {code}" if code else ""
        if signal:
            detail = f"{detail + ', ' if detail else ''}signal {signal}"
        hint = FAILURE_HINTS.get(state)
        slurm_reason = fields.get("Reason", "")
        text = f"Slurm job {job} {state}"
        if detail:
            text += f" ({detail})"
        if hint:
            text += f": {hint}"
        if slurm_reason and slurm_reason != "None":
            text += f" [reason: {slurm_reason}]"
        return JobVerdict(state=state, finished=True, succeeded=False, reason=text)
    return JobVerdict(state=state, finished=False, succeeded=False)


def parse_poll(stdout: bytes, *, offset: int, final_read: bool = False, job_id: str = "") -> Poll:
    """Read the answer of :func:`poll_command`.

    Output bytes are handed over up to the last complete line, so a line split between two polls is
    logged once, whole; once the job has finished (or ``final_read``), everything is handed over.
    """
    marker = f"\n{_SEPARATOR}".encode()
    head, _, rest = stdout.partition(marker + b"\n")
    sacct, _, tail = rest.partition(marker)
    flag, _, output = tail.partition(b"\n")
    job_verdict = verdict(
        squeue_line=head.decode(errors="replace"), sacct_line=sacct.decode(errors="replace"), job_id=job_id
    )
    if not (job_verdict.finished or final_read):
        cut = output.rfind(b"\n") + 1
        output = output[:cut]
    return Poll(
        verdict=job_verdict, output=output, offset=offset + len(output), mark_seen=flag == _MARK_SEEN.encode()
    )


def poll_answer(squeue_line: str, sacct_line: str, output: bytes = b"", *, mark_seen: bool = False) -> bytes:
    """What :func:`poll_command` prints, from its parts: for a transport that asks Slurm another way
    (slurmrestd) and feeds the answers to :func:`advance` unchanged.

    >>> parse_poll(poll_answer("", "9|COMPLETED|0:0|None", b"ok\\n"), offset=0).verdict.succeeded
    True
    """
    flag = _MARK_SEEN if mark_seen else ""
    return f"{squeue_line}\n\n{_SEPARATOR}\n{sacct_line}\n\n{_SEPARATOR}{flag}\n".encode() + output


def parse_job_id(sbatch_output: str) -> str:
    """``sbatch --parsable`` prints ``id`` or ``id;cluster``.

    >>> parse_job_id("1234;local\\n")
    '1234'
    """
    first = sbatch_output.strip().splitlines()[-1] if sbatch_output.strip() else ""
    return check_job_id(first.split(";", 1)[0].strip())


def parse_live_jobs(output: str) -> tuple[str, list[tuple[str, str]]]:
    """:func:`find_live_job_command`'s answer → ``(home, [(id, state), ...])``, the jobs oldest first.

    >>> parse_live_jobs("/home/me\\n12|RUNNING\\n9|PENDING\\n")
    ('/home/me', [('9', 'PENDING'), ('12', 'RUNNING')])
    """
    home, _, squeue_output = output.partition("\n")
    jobs = []
    for line in squeue_output.splitlines():
        job, _, state = line.strip().partition("|")
        if _JOB_ID.match(job):
            jobs.append((job, state.split()[0] if state.strip() else ""))
    return home.strip(), sorted(jobs, key=lambda item: [int(part) for part in item[0].split("_")])


# --------------------------------------------------------------------------- naming
def job_name(dag_id: str, task_id: str, run_id: str, map_index: int = -1, *, prefix: str = "genius") -> str:
    """The deterministic ``--job-name`` of one task instance (the same on every try), so a retry finds
    the job an earlier try left running instead of submitting another.

    >>> job_name("etl", "clean", "manual__2024-05-06T00:00:00+00:00")
    'genius-etl-clean-eb6b083fb016'
    """
    return instance_name(dag_id, task_id, run_id, map_index, prefix=prefix)


# --------------------------------------------------------------------------- waiting
def next_delay(previous: float, poll_interval: float, first: float = FIRST_POLL_DELAY) -> float:
    """The wait before the next poll: ``first``, then double the previous one, up to ``poll_interval`` —
    a short job is seen ending within a fraction of a second, a long one costs one poll per interval.

    >>> [next_delay(d, 3.0) for d in (0.0, 0.25, 1.0, 2.0, 3.0)]
    [0.25, 0.5, 2.0, 3.0, 3.0]
    """
    return min(max(previous * 2, first), poll_interval)


def poll_delays(poll_interval: float, first: float = FIRST_POLL_DELAY) -> Iterator[float]:
    """The successive :func:`next_delay` waits, for loops that poll something other than a job's state.

    >>> list(itertools.islice(poll_delays(3.0), 6))
    [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]
    """
    delay = 0.0
    while True:
        delay = next_delay(delay, poll_interval, first)
        yield delay


def job_event(
    job_id: str,
    state: str,
    *,
    succeeded: bool = False,
    reason: str = "",
    cancel: bool = False,
    log_offset: int = 0,
) -> dict[str, Any]:
    """The final event of a wait (a JSON dict the deferrable trigger hands to the worker unchanged):
    ``{"job_id", "state", "succeeded", "reason", "cancel", "log_offset"}``; ``cancel`` asks the
    operator to ``scancel`` the job (a pending timeout)."""
    return {
        "job_id": job_id,
        "state": state,
        "succeeded": succeeded,
        "reason": reason,
        "cancel": cancel,
        "log_offset": log_offset,
    }


@dataclass(frozen=True)
class Watch:
    """What a wait for one job carries from one poll to the next; :func:`advance` makes the next one.

    * ``lost_after``: a job neither squeue nor sacct knows is given this many seconds (accounting lag
      after a job leaves the queue) before it is declared lost; one that sacct shows REQUEUED or
      PREEMPTED while squeue does not list it, as long to show up queued again.
    * ``pending_timeout``: a job still PENDING after this many seconds, before it first ran, is given up
      (and cancelled).
    * ``end_mark``: the file the job's script touches when it exits (:data:`END_MARK_FILE`, written by
      every genius job): each poll then waits for it on the login node (``hold`` seconds), so the end is
      seen at once instead of up to a poll interval late. None for a script that leaves no mark.
    * requeues: a job Slurm sends back to the queue after it ran (``scontrol requeue``, preemption, a
      node failure with ``--requeue``: :data:`REQUEUE_STATES`) is waited for; the output file is
      appended to by the next run (``--open-mode=append``), so its lines keep coming from ``offset``.
      ``pending_timeout`` bounds only the wait before the job first runs: a requeued job waits at least
      the cluster's credential lifetime (``AuthInfo=cred_expire``, 120 s by default) before it may run
      again, and is given up only by the task's own ``execution_timeout``.
    * ``offset``: bytes of the output file already logged; ``pause``: seconds from one poll to the next
      (None before the first). With an end mark each poll waits the whole interval on the login node
      (``hold``, cut short by the end); without one, polls start at once, every :func:`next_delay`
      seconds, and the caller sleeps ``delay`` between them. After the end, the rest of the output is
      read with no pause.

    The caller's loop, in the worker or the triggerer, is only I/O::

        watch = Watch(job_id, output_path=path, poll_interval=10)
        while True:
            step = advance(watch, run(watch.command()), now())
            step.log_to(log)
            if step.event is not None:
                return step.event
            watch = step.watch
            sleep(watch.delay)
    """

    job_id: str
    output_path: str | None = None
    end_mark: str | None = None
    poll_interval: float = 10.0
    lost_after: float = 120.0
    pending_timeout: float | None = None
    offset: int = 0
    started_at: float | None = None
    missing_since: float | None = None
    pause: float | None = None
    ending: bool = False  # the end mark was seen, Slurm has not recorded the end yet: poll again soon
    ended: dict[str, Any] | None = None  # the final event, held while the rest of the output is read
    drained: int = 0
    state: str = ""  # Slurm's state at the last poll
    ran: bool = False  # the job was seen on a node during this wait
    requeues: int = 0  # times this wait saw Slurm send the job back to the queue after it ran

    def command(self) -> str:
        """The next poll (:func:`poll_command` from the output already read)."""
        return poll_command(
            self.job_id, self.output_path, self.offset, end_mark=self.end_mark, hold=self.hold
        )

    @property
    def hold(self) -> float:
        """Seconds the next poll waits on the login node for the end mark (up to :data:`MAX_HOLD`)."""
        if self.end_mark is None or self.ended is not None or self.ending:
            return 0.0
        return min(self.poll_interval if self.pause is None else self.pause, MAX_HOLD)

    @property
    def delay(self) -> float:
        """Seconds the caller sleeps before the next poll: none while polls hold on the login node for
        the end mark (a job that ended during a sleep would be seen that much later), else the pause."""
        if self.hold > 0:
            return 0.0
        return max(self.pause or 0.0, 0.0)


@dataclass(frozen=True)
class Step:
    """What one poll of a :class:`Watch` gave: the next watch, Slurm's verdict, the new output lines
    and the final event (None while the job is waited for)."""

    watch: Watch
    verdict: JobVerdict
    lines: tuple[str, ...]
    event: dict[str, Any] | None
    notes: tuple[str, ...] = ()  # what the wait saw happen to the job (a requeue), for the task log

    def log_to(self, log: logging.Logger | logging.LoggerAdapter[Any] | Any) -> None:
        """Write the new output lines to a task log as ``[slurm <id>] line``, then the notes."""
        for line in self.lines:
            log.info("[slurm %s] %s", self.watch.job_id, line)
        for note in self.notes:
            log.warning("%s", note)


def wait_for_end(
    watch: Watch, follow: Callable[[Watch], Step], sleep: Callable[[float], Any]
) -> dict[str, Any]:
    """The worker-side wait, whatever the transport: ``follow`` makes one poll (one :class:`Step`),
    ``sleep`` pauses :attr:`Watch.delay` between polls; returns the final event (:func:`job_event`)."""
    while True:
        step = follow(watch)
        if step.event is not None:
            return step.event
        watch = step.watch
        sleep(watch.delay)


def advance(watch: Watch, answer: bytes, now: float) -> Step:
    """One step of a wait: the answer of ``watch.command()`` at time ``now`` (any clock, the same on
    every call) → the next watch, the output lines to log and, once the job is over, the final event.

    Once the job ended, the output is read to its end (up to :data:`DRAIN_CHUNKS` chunks) before the
    event is given, with no wait between those reads.

    >>> running = b"RUNNING|None|n1\\n\\n@@genius-slurm@@\\n\\n@@genius-slurm@@\\nhello\\nwor"
    >>> step = advance(Watch("42", poll_interval=3.0), running, now=0.0)
    >>> step.lines, step.event, step.watch.offset, step.watch.delay
    (('hello',), None, 6, 0.25)
    >>> done = b"\\n\\n@@genius-slurm@@\\n42|COMPLETED|0:0|None\\n\\n@@genius-slurm@@\\nwor"
    >>> step = advance(step.watch, done, now=1.0)
    >>> step.lines, step.event["state"], step.event["succeeded"], step.event["log_offset"]
    (('wor',), 'COMPLETED', True, 9)
    """
    started_at = watch.started_at if watch.started_at is not None else now
    notes: tuple[str, ...] = ()
    if watch.ended is not None:
        poll = parse_poll(answer, offset=watch.offset, final_read=True, job_id=watch.job_id)
        event: dict[str, Any] | None = watch.ended
        progress = watch
    else:
        poll = parse_poll(answer, offset=watch.offset, job_id=watch.job_id)
        progress = _progress(watch, poll.verdict, now)
        event = _outcome(progress, poll.verdict, started_at, now)
        if progress.requeues > watch.requeues:
            why = f": {poll.verdict.reason}" if poll.verdict.reason else ""
            notes = (
                f"Slurm job {watch.job_id} went back to the queue ({poll.verdict.state}{why}) after it ran: "
                "waiting for Slurm to run it again (its output continues below)",
            )
    lines = tuple(poll.output.decode(errors="replace").splitlines())
    if event is None:
        # with an end mark a long hold costs no latency: the end cuts it short; once the mark was seen
        # (and taken) while Slurm still finishes the job, polls start short again
        ending = (watch.ending or poll.mark_seen) and poll.verdict.state in (
            "RUNNING",
            "COMPLETING",
            "MISSING",
        )
        if watch.end_mark and not ending:
            pause = watch.poll_interval
        else:  # no mark: 0.25 s doubling; the mark just seen: start over from 0.25 s
            pause = next_delay(
                0.0 if ending and not watch.ending else watch.pause or 0.0, watch.poll_interval
            )
        next_watch = replace(progress, offset=poll.offset, started_at=started_at, pause=pause, ending=ending)
        return Step(next_watch, poll.verdict, lines, None, notes)
    drained = watch.drained + (watch.ended is not None)
    # the read was cut at a chunk, or held back a partial last line (a job given up while it runs)
    cut = len(poll.output) >= OUTPUT_CHUNK or not (poll.verdict.finished or watch.ended is not None)
    more_output = watch.output_path is not None and cut and drained < DRAIN_CHUNKS
    next_watch = replace(
        progress, offset=poll.offset, started_at=started_at, pause=0.0, ended=event, drained=drained
    )
    if more_output:
        return Step(next_watch, poll.verdict, lines, None, notes)
    return Step(next_watch, poll.verdict, lines, {**event, "log_offset": poll.offset}, notes)


def _adrift(job_verdict: JobVerdict) -> bool:
    """Whether neither source shows the job queued, running or ended: unknown to both, or a requeue step
    in sacct that squeue does not follow (:data:`REQUEUE_STEPS`)."""
    return job_verdict.missing or (not job_verdict.live and job_verdict.state in REQUEUE_STEPS)


def _progress(watch: Watch, job_verdict: JobVerdict, now: float) -> Watch:
    """The watch's clocks and what it saw of the job, after this verdict (the output is not read yet)."""
    state = job_verdict.state
    # back in the queue: from a node, or through a state only a requeue shows (a wait that started late).
    # PENDING counts only from squeue: sacct shows a job that just ended as PENDING until slurmdbd has
    # its start and end (accounting lag), which is no requeue.
    requeued = (
        state in REQUEUE_STATES
        and watch.state not in REQUEUE_STATES
        and (watch.state in RUN_STATES or state != "PENDING")
        and (job_verdict.live or state != "PENDING")
    )
    missing_since = (
        (watch.missing_since if watch.missing_since is not None else now) if _adrift(job_verdict) else None
    )
    return replace(
        watch,
        state=state,
        ran=watch.ran or requeued or state in RUN_STATES,
        missing_since=missing_since,
        requeues=watch.requeues + int(requeued),
    )


def _outcome(watch: Watch, job_verdict: JobVerdict, started_at: float, now: float) -> dict[str, Any] | None:
    """The final event a verdict makes, with the clocks a verdict cannot carry (``watch`` already has
    them for this poll, :func:`_progress`); None: keep waiting."""
    if job_verdict.finished:
        return job_event(
            watch.job_id, job_verdict.state, succeeded=job_verdict.succeeded, reason=job_verdict.reason
        )
    if _adrift(job_verdict):
        if watch.missing_since is not None and now - watch.missing_since >= watch.lost_after:
            if job_verdict.missing:
                reason = (
                    f"Slurm job {watch.job_id} is in neither squeue nor sacct after "
                    f"{watch.lost_after:.0f} s: lost (purged, or accounting is not recording it)"
                )
                return job_event(watch.job_id, "LOST", reason=reason)
            reason = (
                f"Slurm job {watch.job_id} {job_verdict.state} and not back in the queue after "
                f"{watch.lost_after:.0f} s: Slurm did not requeue it"
            )
            return job_event(watch.job_id, job_verdict.state, reason=reason)
        return None
    if (
        job_verdict.state == "PENDING"
        and not watch.ran  # a requeued job already had its resources once: no pending limit
        and watch.pending_timeout is not None
        and now - started_at >= watch.pending_timeout
    ):
        return job_event(
            watch.job_id,
            "PENDING_TIMEOUT",
            reason=f"Slurm job {watch.job_id} was still PENDING after {watch.pending_timeout:.0f} s "
            f"({job_verdict.reason or 'no reason given'}); it was cancelled",
            cancel=True,
        )
    return None
