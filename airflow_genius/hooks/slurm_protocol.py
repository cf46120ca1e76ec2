"""What we say to Slurm and how we read its answers: pure functions, shared by the worker-side
:class:`~airflow_genius.hooks.slurm.SlurmHook` and the deferrable trigger.

Every command is one shell line with each value quoted; every answer is parsed here, so the state
machine below is the only place that decides whether a job is waiting, done, or failed.

>>> verdict(squeue_line="", sacct_line="42|FAILED|3:0|None")
JobVerdict(state='FAILED', finished=True, succeeded=False, reason='Slurm job 42 FAILED (exit code 3)', node='')
"""

from __future__ import annotations

import itertools  # noqa: F401 - used by the doctests
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

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

_SEPARATOR = "@@genius-slurm@@"
_JOB_ID = re.compile(r"^[0-9]+(_[0-9]+)?$")
_SIGNAL = re.compile(r"^(SIG)?[A-Z0-9+]{1,12}$")


def check_job_id(job_id: str) -> str:
    """A Slurm job id as we accept it (digits, or an array task ``123_4``); anything else raises."""
    if not _JOB_ID.match(str(job_id)):
        raise ValueError(f"not a Slurm job id: {job_id!r}")
    return str(job_id)


# --------------------------------------------------------------------------- commands
def submit_command(work_dir: str) -> str:
    """Submit the script read from standard input, from ``work_dir`` (the job's own folder)."""
    return f"cd {shlex.quote(work_dir)} && sbatch --parsable"


def write_file_command(path: str) -> str:
    """Write standard input to ``path`` readable by the owner only (the spec, the secret env)."""
    folder = path.rsplit("/", 1)[0] or "/"
    return f"umask 077 && mkdir -p {shlex.quote(folder)} && cat > {shlex.quote(path)}"


def find_live_job_command(job_name: str) -> str:
    """This user's queued or running jobs called ``job_name``: one ``id|state`` per line."""
    return f"squeue --me --noheader --name={shlex.quote(job_name)} --format='%i|%T'"


def cancel_command(job_id: str) -> str:
    """``scancel``; cancelling a job that already ended is not an error (idempotent)."""
    return f"scancel {check_job_id(job_id)} 2>/dev/null; true"


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


def poll_command(job_id: str, output_path: str | None = None, offset: int = 0, chunk: int = 65536) -> str:
    """One round trip: live state from squeue; if the job left the queue, its record from sacct; then
    up to ``chunk`` bytes of the output file from byte ``offset``. Read with :func:`parse_poll`."""
    job = check_job_id(job_id)
    sacct = f"sacct -j {job} -X --noheader --parsable2 --format={','.join(SACCT_FIELDS)} 2>/dev/null"
    parts = [
        f"live=$(squeue --noheader -j {job} --format='{SQUEUE_FORMAT}' 2>/dev/null); printf '%s\\n' \"$live\"",
        f"printf '\\n{_SEPARATOR}\\n'",
        f'[ -n "$live" ] || {sacct}',
        f"printf '\\n{_SEPARATOR}\\n'",
    ]
    if output_path:
        parts.append(
            f"tail -c +{int(offset) + 1} {shlex.quote(output_path)} 2>/dev/null | head -c {int(chunk)}"
        )
    return "; ".join(parts)


# --------------------------------------------------------------------------- answers
@dataclass(frozen=True)
class JobVerdict:
    """What one poll says about a job."""

    state: str  # first word of Slurm's state, or "MISSING" when neither squeue nor sacct knows it
    finished: bool
    succeeded: bool
    reason: str = ""
    node: str = ""

    @property
    def missing(self) -> bool:
        return self.state == "MISSING"


@dataclass(frozen=True)
class Poll:
    """One poll: the verdict and the new output bytes (complete lines only, unless ``final``)."""

    verdict: JobVerdict
    output: bytes
    offset: int


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
    """The state machine: squeue's live state wins; else sacct's terminal row decides.

    Success is COMPLETED with exit 0:0 only. States are compared by their first word (``CANCELLED by
    0``), never by prefix. A job sacct still shows as RUNNING/PENDING/REQUEUED/PREEMPTED after it left
    squeue is waiting (accounting lag or a requeue). Neither source knowing it → ``MISSING``; the caller
    decides how long to wait before calling it lost.
    """
    live = squeue_line.strip().splitlines()
    if live and live[0].strip():
        state, _, rest = live[0].strip().partition("|")
        reason, _, node = rest.partition("|")
        return JobVerdict(
            state=state.split()[0],
            finished=False,
            succeeded=False,
            reason="" if reason in ("None", "") else reason,
            node=node,
        )
    rows = [line for line in sacct_line.strip().splitlines() if line.strip()]
    if not rows:
        return JobVerdict(state="MISSING", finished=False, succeeded=False)
    fields = dict(zip(SACCT_FIELDS, rows[0].split("|"), strict=False))
    job = fields.get("JobIDRaw") or job_id
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
    marker = f"\n{_SEPARATOR}\n".encode()
    head, _, rest = stdout.partition(marker)
    sacct, _, output = rest.partition(marker)
    job_verdict = verdict(
        squeue_line=head.decode(errors="replace"), sacct_line=sacct.decode(errors="replace"), job_id=job_id
    )
    if not (job_verdict.finished or final_read):
        cut = output.rfind(b"\n") + 1
        output = output[:cut]
    return Poll(verdict=job_verdict, output=output, offset=offset + len(output))


def parse_job_id(sbatch_output: str) -> str:
    """``sbatch --parsable`` prints ``id`` or ``id;cluster``.

    >>> parse_job_id("1234;local\\n")
    '1234'
    """
    first = sbatch_output.strip().splitlines()[-1] if sbatch_output.strip() else ""
    return check_job_id(first.split(";", 1)[0].strip())


def parse_live_jobs(squeue_output: str) -> list[tuple[str, str]]:
    """``id|state`` lines of :func:`find_live_job_command` → ``[(id, state), ...]``, oldest first."""
    jobs = []
    for line in squeue_output.splitlines():
        job, _, state = line.strip().partition("|")
        if _JOB_ID.match(job):
            jobs.append((job, state.split()[0] if state.strip() else ""))
    return sorted(jobs, key=lambda item: [int(part) for part in item[0].split("_")])


# --------------------------------------------------------------------------- naming and waiting
def job_name(dag_id: str, task_id: str, run_id: str, map_index: int = -1, *, prefix: str = "genius") -> str:
    """The deterministic ``--job-name`` of one task instance (the same on every try), so a retry finds
    the job an earlier try left running instead of submitting another.

    >>> job_name("etl", "clean", "manual__2024-05-06T00:00:00+00:00")
    'genius-etl-clean-eb6b083fb016'
    """
    return instance_name(dag_id, task_id, run_id, map_index, prefix=prefix)


def poll_delays(poll_interval: float, first: float = 0.25) -> Iterator[float]:
    """Seconds to sleep between polls: start at ``first`` and double up to ``poll_interval``, so a
    short job is seen finishing within a fraction of a second while a long one costs one poll per
    ``poll_interval``.

    >>> list(itertools.islice(poll_delays(3.0), 6))
    [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]
    """
    delay = min(first, poll_interval)
    while True:
        yield delay
        delay = min(delay * 2, poll_interval)


@dataclass
class JobWatch:
    """Turns successive verdicts into one outcome, with the two clocks the verdicts cannot carry.

    * ``lost_after``: a job neither squeue nor sacct knows is given this many seconds (accounting
      lag after a job leaves the queue) before it is declared lost.
    * ``pending_timeout``: a job still PENDING after this many seconds is given up (and cancelled).

    ``observe`` returns None while the job should be waited for, else the final event (a JSON dict that
    the deferrable trigger can hand to the worker unchanged).
    """

    job_id: str
    lost_after: float = 120.0
    pending_timeout: float | None = None
    started_at: float | None = None
    missing_since: float | None = None

    def observe(self, job_verdict: JobVerdict, now: float) -> dict[str, object] | None:
        if self.started_at is None:
            self.started_at = now
        if job_verdict.finished:
            return self.event(job_verdict.state, succeeded=job_verdict.succeeded, reason=job_verdict.reason)
        if job_verdict.missing:
            self.missing_since = self.missing_since if self.missing_since is not None else now
            if now - self.missing_since >= self.lost_after:
                return self.event(
                    "LOST",
                    reason=f"Slurm job {self.job_id} is in neither squeue nor sacct after "
                    f"{self.lost_after:.0f} s: lost (purged, or accounting is not recording it)",
                )
            return None
        self.missing_since = None
        if (
            job_verdict.state == "PENDING"
            and self.pending_timeout is not None
            and now - self.started_at >= self.pending_timeout
        ):
            return self.event(
                "PENDING_TIMEOUT",
                reason=f"Slurm job {self.job_id} was still PENDING after {self.pending_timeout:.0f} s "
                f"({job_verdict.reason or 'no reason given'}); it was cancelled",
                cancel=True,
            )
        return None

    def event(
        self, state: str, *, succeeded: bool = False, reason: str = "", cancel: bool = False
    ) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "state": state,
            "succeeded": succeeded,
            "reason": reason,
            "cancel": cancel,
        }
