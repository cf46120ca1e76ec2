"""What we say to slurmrestd and how we read its answers: pure functions (no Airflow, no I/O), the REST
counterpart of :mod:`airflow_genius.core.slurm_protocol`.

Every answer is turned into the lines ``squeue``/``sacct`` would print and judged by
:func:`~airflow_genius.core.slurm_protocol.verdict`, so a job is waiting, done or failed by the same
rules whichever transport asked.

Field shapes, per API version:

* ``v0.0.38`` (Slurm 22.05, what the test rig serves): read from the rig's own ``GET /openapi/v3``
  (schemas ``v0.0.38_job_properties``, ``v0.0.38_job_response_properties``, ``dbv0.0.38_job``).
* ``v0.0.40`` (Slurm 23.11): the published schemas as rendered in mever-team/slurm-rest-py
  ``docs/V0040JobDescMsg.md``, ``docs/V0040JobSubmitReq.md``, ``docs/V0040JobInfo.md`` and
  ``docs/V0040ProcessExitCodeVerbose.md``.
* ``v0.0.41`` (Slurm 24.05): SlinkyProject/slurm-client ``api/v0041/slurm-openapi.gen.json``
  (``v0.0.41_job_desc_msg``, ``v0.0.41_job_info``, ``v0.0.41_process_exit_code_verbose``).

From v0.0.40 on, numbers that may be unset are ``{"set", "infinite", "number"}`` objects, states are
lists (``["RUNNING", "COMPLETING"]``), the environment is a ``NAME=value`` list and exit codes are
objects; v0.0.38 uses plain integers, strings, a dict and a raw wait status.

>>> request = submit_request("v0.0.41", "#!/bin/bash\\n#SBATCH --time=10\\ntrue\\n", work_dir="/tmp")
>>> request.method, request.path, request.body["job"]["time_limit"]
('POST', '/slurm/v0.0.41/job/submit', {'set': True, 'infinite': False, 'number': 10})
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_genius.core.slurm_protocol import (
    OUTPUT_CHUNK,
    JobVerdict,
    check_job_id,
    verdict,
)

#: API versions this module maps, newest first: the order in which a server's offer is chosen.
SUPPORTED_VERSIONS = ("v0.0.41", "v0.0.40", "v0.0.38")
#: Where slurmrestd serves its OpenAPI document (the first answers on 23.02+, the second on 22.05 too).
OPENAPI_PATHS = ("/openapi/v3", "/openapi")
#: The environment a job gets when the caller gives none (slurmrestd passes no environment of its own).
DEFAULT_ENVIRONMENT: Mapping[str, str] = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
#: A minted token lives this long; it is replaced this many seconds before it expires.
TOKEN_LIFESPAN = 1800
TOKEN_REFRESH_MARGIN = 60

#: Slurm error numbers in an answer's ``errors``: the job id is unknown, the job already ended, the
#: caller's credential was refused (slurmdbd answers that with HTTP 200).
ERR_INVALID_JOB_ID = 2017
ERR_ALREADY_DONE = 2021
ERR_AUTHENTICATION = 1007
#: slurmdbd has no record (yet) of the job asked for.
ERR_NOTHING_FOUND = 9003
# Slurm 22.05's slurmrestd answers a request whose token slurmctld refused with HTTP 500 and
# error_number -1 (unspecified), never with 401: the message then names the token as a likely cause.
_UNSPECIFIED = -1

_VERSION = re.compile(r"^/slurm(?:db)?/(v\d+\.\d+\.\d+)/")
_SBATCH_LINE = re.compile(r"^#SBATCH\s+(.*)$")
_LONG = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.*))?$")
_MEM = re.compile(r"^(\d+)([KMGT]?)$", re.IGNORECASE)
_MEM_FACTOR = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}
# Job states that are still in the queue (squeue shows them); anything else is an end.
_LIVE_STATES = frozenset(
    {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD",
     "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "POWER_UP_NODE", "RESV_DEL_HOLD",
     "SPECIAL_EXIT", "UPDATE_DB"}
)  # fmt: skip
# Flags that v0.0.40+ list beside the base state; squeue shows COMPLETING and CONFIGURING in its place.
_STATE_FLAGS = _LIVE_STATES - {"PENDING", "RUNNING", "SUSPENDED"}


class SlurmRestError(RuntimeError):
    """slurmrestd refused a request or answered with errors; the message is one line, without the token."""


class SlurmRestAuthError(SlurmRestError):
    """slurmrestd (or slurmctld/slurmdbd behind it) refused the caller's token."""


@dataclass(frozen=True)
class RestRequest:
    """One HTTP request to slurmrestd: ``method`` and ``path`` (below the base URL), JSON ``body``."""

    method: str
    path: str
    body: dict[str, Any] | None = None


# --------------------------------------------------------------------------- versions
def offered_versions(openapi: Mapping[str, Any]) -> list[str]:
    """The API versions an OpenAPI document (``GET /openapi/v3``) serves job submission under.

    >>> offered_versions({"paths": {"/slurm/v0.0.38/job/submit": {}, "/slurm/v0.0.37/job/submit": {}}})
    ['v0.0.38', 'v0.0.37']
    """
    found = []
    for path in openapi.get("paths") or {}:
        match = _VERSION.match(path)
        if match and path.startswith("/slurm/") and path.rstrip("/").endswith("/job/submit"):
            found.append(match.group(1))
    return sorted(set(found), key=_version_key, reverse=True)


def select_version(openapi: Mapping[str, Any], wanted: str | None = None) -> str:
    """The newest version both we and the server speak (or ``wanted``, if the server offers it).

    Raises:
        SlurmRestError: the server offers none of :data:`SUPPORTED_VERSIONS` (or not ``wanted``).

    >>> select_version({"paths": {"/slurm/v0.0.40/job/submit": {}, "/slurm/v0.0.41/job/submit": {},
    ...                           "/slurm/v0.0.42/job/submit": {}}})
    'v0.0.41'
    """
    offered = offered_versions(openapi)
    if wanted is not None:
        wanted = wanted if wanted.startswith("v") else f"v{wanted}"
        if wanted not in SUPPORTED_VERSIONS:
            raise SlurmRestError(
                f"API version {wanted} is not one this provider maps ({', '.join(SUPPORTED_VERSIONS)})"
            )
        if wanted not in offered:
            raise SlurmRestError(
                f"slurmrestd does not serve API version {wanted} (it offers {', '.join(offered) or 'none'})"
            )
        return wanted
    for version in SUPPORTED_VERSIONS:
        if version in offered:
            return version
    raise SlurmRestError(
        f"slurmrestd offers API versions {', '.join(offered) or 'none'}; this provider maps "
        f"{', '.join(SUPPORTED_VERSIONS)} (load one with slurmrestd -s openapi/<version>)"
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split("."))


def _legacy(version: str) -> bool:
    """v0.0.38 and older: plain numbers, string states, an environment dict."""
    if version not in SUPPORTED_VERSIONS:
        raise SlurmRestError(f"API version {version} is not one this provider maps")
    return _version_key(version) < (0, 0, 40)


# --------------------------------------------------------------------------- requests
def submit_request(
    version: str,
    script: str,
    *,
    work_dir: str,
    environment: Mapping[str, str] | None = None,
) -> RestRequest:
    """``POST /slurm/<version>/job/submit`` of a batch script.

    slurmrestd does not read ``#SBATCH`` lines, so the script's leading directives (those the sbatch
    renderer writes: job name, output, open mode, partition, time, nodes, tasks, CPUs, memory, GPUs,
    account, QOS, constraint, reservation and the allowed extra directives) become job properties
    here; a directive without a REST field is refused, naming it. ``environment`` is the job's whole
    environment (default :data:`DEFAULT_ENVIRONMENT`); ``work_dir`` its working directory unless a
    ``--chdir`` directive says otherwise.

    Raises:
        SlurmRestError: a directive that has no field in this API version.
    """
    legacy = _legacy(version)
    env = dict(DEFAULT_ENVIRONMENT if environment is None else environment)
    job: dict[str, Any] = {
        "current_working_directory": work_dir,
        "environment": env if legacy else [f"{name}={value}" for name, value in env.items()],
    }
    for directive in sbatch_directives(script):
        name, value = _split_directive(directive)
        job.update(_job_property(version, name, value, directive))
    if legacy:
        return RestRequest("POST", f"/slurm/{version}/job/submit", {"script": script, "job": job})
    # v0.0.41 deprecates the top-level script: the job description carries it (v0.0.40 takes both)
    return RestRequest("POST", f"/slurm/{version}/job/submit", {"job": {**job, "script": script}})


def status_request(version: str, job_id: str) -> RestRequest:
    """``GET /slurm/<version>/job/<id>``: the job as slurmctld knows it (for ``MinJobAge`` after its end)."""
    _legacy(version)
    return RestRequest("GET", f"/slurm/{version}/job/{check_job_id(job_id)}")


def cancel_request(version: str, job_id: str) -> RestRequest:
    """``DELETE /slurm/<version>/job/<id>`` (SIGKILL, as ``scancel``)."""
    _legacy(version)
    return RestRequest("DELETE", f"/slurm/{version}/job/{check_job_id(job_id)}")


def jobs_request(version: str) -> RestRequest:
    """``GET /slurm/<version>/jobs``: every job slurmctld knows (what ``squeue`` lists, and recent ends)."""
    _legacy(version)
    return RestRequest("GET", f"/slurm/{version}/jobs")


def accounting_request(version: str, job_id: str) -> RestRequest:
    """``GET /slurmdb/<version>/job/<id>``: the job's record in slurmdbd (what ``sacct`` reads)."""
    _legacy(version)
    return RestRequest("GET", f"/slurmdb/{version}/job/{check_job_id(job_id)}")


def sbatch_directives(script: str) -> list[str]:
    """The ``#SBATCH`` arguments of a script, read as sbatch does: up to its first command line.

    >>> sbatch_directives("#!/bin/bash\\n#SBATCH --job-name=a\\n# note\\n\\n#SBATCH --time=5\\necho\\n#SBATCH -x")
    ['--job-name=a', '--time=5']
    """
    found: list[str] = []
    for line in script.splitlines()[1:]:
        stripped = line.strip()
        match = _SBATCH_LINE.match(stripped)
        if match:
            # sbatch splits on whitespace outside double quotes, and a '#' starts a comment
            try:
                found.extend(shlex.split(match.group(1).split("#", 1)[0]))
            except ValueError:
                raise SlurmRestError(f"{stripped}: unbalanced quotes") from None
        elif stripped and not stripped.startswith("#"):
            break
    return found


def _split_directive(directive: str) -> tuple[str, str | None]:
    match = _LONG.match(directive)
    if match is None:
        raise SlurmRestError(f"#SBATCH {directive}: only long options (--name=value) map to slurmrestd")
    return match.group(1), match.group(2)


def _job_property(version: str, name: str, value: str | None, directive: str) -> dict[str, Any]:
    """One directive as job properties of ``version``."""
    legacy = _legacy(version)

    def need() -> str:
        if value is None or value == "":
            raise SlurmRestError(f"#SBATCH {directive}: --{name} needs a value")
        return value

    def number(text: str) -> int:
        try:
            return int(text)
        except ValueError:
            raise SlurmRestError(f"#SBATCH {directive}: --{name} needs a number") from None

    def no_val(count: int) -> Any:  # v0.0.40+ wraps numbers that may be unset
        return count if legacy else {"set": True, "infinite": False, "number": count}

    same_name = {"job-name": "name", "partition": "partition", "account": "account", "qos": "qos",
                 "reservation": "reservation", "constraint": "constraints", "comment": "comment",
                 "dependency": "dependency", "mail-user": "mail_user", "licenses": "licenses",
                 "wckey": "wckey", "prefer": "prefer", "output": "standard_output",
                 "error": "standard_error", "chdir": "current_working_directory"}  # fmt: skip
    if name in same_name:
        return {same_name[name]: need()}
    counts = {"ntasks": "tasks", "cpus-per-task": "cpus_per_task", "ntasks-per-node": "tasks_per_node",
              "threads-per-core": "threads_per_core", "cores-per-socket": "cores_per_socket",
              "nice": "nice"}  # fmt: skip
    if name in counts:
        return {counts[name]: number(need())}
    if name == "time":
        return {"time_limit": no_val(time_minutes(need()))}
    if name == "mem":
        return {"memory_per_node": no_val(memory_mb(need()))}
    if name == "mem-per-cpu":
        return {"memory_per_cpu": no_val(memory_mb(need()))}
    if name == "nodes":
        low, _, high = need().partition("-")
        if legacy:
            return {"nodes": [number(low), number(high)] if high else [number(low)]}
        return {"nodes": need()}
    if name == "open-mode":
        mode = need().lower()
        if mode not in ("append", "truncate"):
            raise SlurmRestError(f"#SBATCH {directive}: --open-mode is append or truncate")
        return {"open_mode": mode if legacy else [mode.upper()]}
    if name == "gpus":
        return {"gpus": need()} if legacy else {"tres_per_job": f"gres/gpu:{need()}"}
    if name == "gres":
        return {"gres": need()} if legacy else {"tres_per_node": _gres_as_tres(need())}
    if name in ("requeue", "no-requeue"):
        return {"requeue": name == "requeue"}
    if name == "exclusive":
        mode = value or "true"
        if mode not in ("user", "mcs", "true"):
            raise SlurmRestError(f"#SBATCH {directive}: --exclusive takes user or mcs")
        return {"exclusive": mode if legacy else [mode]}
    if name == "mail-type":
        types = need().upper().split(",")
        return {"mail_type": ",".join(types) if legacy else types}
    raise SlurmRestError(
        f"#SBATCH {directive}: --{name} has no slurmrestd job field here; use the SSH transport for it"
    )


def _gres_as_tres(gres: str) -> str:
    """``gpu:2,nic:1`` → ``gres/gpu:2,gres/nic:1`` (v0.0.40+ takes GRES as TRES per node)."""
    return ",".join(part if part.startswith("gres/") else f"gres/{part}" for part in gres.split(","))


def time_minutes(text: str) -> int:
    """A Slurm ``--time`` as whole minutes (seconds round up, as sbatch does).

    >>> [time_minutes(t) for t in ("30", "1:30", "2:00:00", "1-00", "1-2:03", "0-0:0:1")]
    [30, 2, 120, 1440, 1563, 1]
    """
    days, _, rest = text.partition("-") if "-" in text else ("0", "", text)
    parts = [int(part) for part in rest.split(":")] if rest else [0]
    if "-" in text:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = [*parts, 0, 0][:3]
    elif len(parts) == 1:  # M
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:  # M:S
        hours, (minutes, seconds) = 0, parts
    else:  # H:M:S
        hours, minutes, seconds = parts[:3]
    return int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)


def memory_mb(text: str) -> int:
    """A Slurm memory size (``500M``, ``4G``, ``1024`` = MB) in MB.

    >>> [memory_mb(m) for m in ("512", "500M", "4G", "1T", "2048K")]
    [512, 500, 4096, 1048576, 2]
    """
    match = _MEM.match(text.strip())
    if match is None:
        raise SlurmRestError(f"{text!r} is not a Slurm memory size (500M, 4G)")
    return max(1, int(int(match.group(1)) * _MEM_FACTOR[match.group(2).upper()]))


# --------------------------------------------------------------------------- answers
def check_answer(
    status_code: int, body: Any, what: str, *, user: str = "", allow: frozenset[int] = frozenset()
) -> dict[str, Any]:
    """The JSON body of an answer, or one-line :class:`SlurmRestError` from its errors.

    slurmrestd reports errors in ``errors`` whatever the HTTP status (slurmdbd refusing a token comes
    back as HTTP 200 with error 1007), so both are read. A refused credential raises
    :class:`SlurmRestAuthError`. An answer whose only errors are Slurm error numbers in ``allow``
    (``ERR_INVALID_JOB_ID`` for a job slurmctld forgot…) is returned as it is.
    """
    payload = body if isinstance(body, dict) else {}
    errors = [error for error in payload.get("errors") or [] if isinstance(error, dict)]
    if (status_code < 400 and not errors) or (allow and errors and error_numbers(payload) <= allow):
        return payload
    first = errors[0] if errors else {}
    number = first.get("error_number", first.get("error_code"))
    text = "; ".join(str(part) for part in (first.get("description"), first.get("error")) if part) or (
        body.strip()[:200] if isinstance(body, str) and body.strip() else "no detail"
    )
    line = f"slurmrestd {what}: HTTP {status_code}: {text}"
    if number is not None:
        line += f" (error {number})"
    who = f" for user {user!r}" if user else ""
    if status_code in (401, 403) or number == ERR_AUTHENTICATION:
        raise SlurmRestAuthError(f"{line}: the token{who} was refused (expired, or not signed with the "
                                 "cluster's JWT key)")  # fmt: skip
    if number == _UNSPECIFIED:
        raise SlurmRestAuthError(
            f"{line}: Slurm 22.05 answers this when slurmctld refuses the token{who} (expired, or not "
            "signed with the cluster's JWT key)"
        )
    raise SlurmRestError(line)


def error_numbers(body: Any) -> set[int]:
    """The Slurm error numbers of an answer's ``errors``."""
    payload = body if isinstance(body, dict) else {}
    return {
        int(error["error_number"])
        for error in payload.get("errors") or []
        if isinstance(error, dict) and isinstance(error.get("error_number"), int)
    }


def parse_submit(body: Mapping[str, Any]) -> str:
    """The job id of a submit answer (``job_id``; v0.0.41 also has ``result.job_id``).

    >>> parse_submit({"job_id": 42, "step_id": "BATCH"}), parse_submit({"result": {"job_id": 7}})
    ('42', '7')
    """
    job_id = body.get("job_id")
    if job_id is None:
        job_id = (body.get("result") or {}).get("job_id")
    if job_id is None:
        raise SlurmRestError(f"slurmrestd's submit answer has no job_id: {sorted(body)}")
    return check_job_id(str(job_id))


def _number(value: Any) -> int | None:
    """A plain number, or a v0.0.40+ ``{"set", "infinite", "number"}`` (None when unset)."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _state(value: Any) -> tuple[str, frozenset[str]]:
    """A job state (``"RUNNING"`` or v0.0.40+ ``["RUNNING", "COMPLETING"]``) → (base, flags)."""
    words = [str(word).upper() for word in (value if isinstance(value, list) else [value]) if word]
    words = [word.split()[0] for word in words if word.split()]
    flags = frozenset(word for word in words if word in _STATE_FLAGS)
    base = next((word for word in words if word not in _STATE_FLAGS), "")
    return base or (sorted(flags)[0] if flags else "UNKNOWN"), flags


def _exit(value: Any, *, wait_status: bool) -> tuple[int | None, int | None]:
    """An exit code as ``(code, signal)``: v0.0.38's job answer has the raw wait status (``768`` = exit
    3), its accounting ``{"return_code", "signal": {"signal_id"}}``, v0.0.40+ ``{"return_code": {..},
    "signal": {"id": {..}}}``."""
    if isinstance(value, dict):
        signal_info = value.get("signal") or {}
        signal = _number(signal_info.get("id", signal_info.get("signal_id"))) if signal_info else None
        return _number(value.get("return_code")), signal or 0
    raw = _number(value)
    if raw is None:
        return None, None
    if wait_status:
        return (raw >> 8) & 0xFF, raw & 0x7F
    return raw, 0


@dataclass(frozen=True)
class RestJob:
    """What slurmctld (``source="slurm"``) or slurmdbd (``source="slurmdb"``) says of one job."""

    job_id: str
    state: str
    flags: frozenset[str] = frozenset()
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    nodes: str = ""
    name: str = ""
    source: str = "slurm"
    start: int | None = None
    end: int | None = None
    elapsed: int | None = None
    working_directory: str = ""
    standard_output: str = ""
    user: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        """Still in the queue (what squeue would list)."""
        return self.state in _LIVE_STATES or bool(self.flags & {"COMPLETING", "CONFIGURING"})

    def squeue_line(self) -> str:
        """The line ``squeue --format='%T|%r|%N'`` would print ('' once the job left the queue)."""
        if not self.live:
            return ""
        shown = "COMPLETING" if "COMPLETING" in self.flags else self.state
        return f"{shown}|{self.reason or 'None'}|{self.nodes}"

    def sacct_line(self) -> str:
        """The line ``sacct --format=JobIDRaw,State,ExitCode,Reason`` would print."""
        code = "" if self.exit_code is None else f"{self.exit_code}:{self.signal or 0}"
        return f"{self.job_id}|{self.state}|{code}|{self.reason or 'None'}"


def parse_job(version: str, body: Mapping[str, Any]) -> RestJob | None:
    """The job of a ``GET /slurm/<version>/job/<id>`` answer (None when it lists no job)."""
    jobs = parse_jobs(version, body)
    return jobs[0] if jobs else None


def parse_jobs(version: str, body: Mapping[str, Any]) -> list[RestJob]:
    """The jobs of a ``GET /slurm/<version>/jobs`` (or ``/job/<id>``) answer."""
    legacy = _legacy(version)
    found = []
    for job in body.get("jobs") or []:
        state, flags = _state(job.get("job_state"))
        code, signal = _exit(job.get("exit_code"), wait_status=legacy)
        reason = str(job.get("state_reason") or "")
        found.append(
            RestJob(
                job_id=str(job.get("job_id", "")),
                state=state,
                flags=flags,
                exit_code=code,
                signal=signal,
                reason="" if reason == "None" else reason,
                nodes=str(job.get("nodes") or job.get("batch_host") or ""),
                name=str(job.get("name") or ""),
                source="slurm",
                start=_number(job.get("start_time")),
                end=_number(job.get("end_time")),
                working_directory=str(job.get("current_working_directory") or ""),
                standard_output=str(job.get("standard_output") or ""),
                user=str(job.get("user_name") or ""),
            )
        )
    return found


def live_jobs_named(jobs: list[RestJob], name: str, user: str) -> list[tuple[str, str]]:
    """``(id, state)`` of ``user``'s queued or running jobs called ``name``, oldest first (what
    :func:`~airflow_genius.core.slurm_protocol.parse_live_jobs` reads from ``squeue --me --name``).

    >>> jobs = [RestJob("12", "RUNNING", name="a", user="me"), RestJob("9", "PENDING", name="a", user="me"),
    ...         RestJob("8", "COMPLETED", name="a", user="me"), RestJob("7", "RUNNING", name="a", user="you")]
    >>> live_jobs_named(jobs, "a", "me")
    [('9', 'PENDING'), ('12', 'RUNNING')]
    """
    mine = [(job.job_id, job.state) for job in jobs if job.name == name and job.user == user and job.live]
    return sorted(mine, key=lambda item: [int(part) for part in item[0].split("_")])


def parse_accounting(version: str, body: Mapping[str, Any]) -> RestJob | None:
    """The job of a ``GET /slurmdb/<version>/job/<id>`` answer (None when slurmdbd has no record).

    Slurm 22.05's dbv0.0.38 reports ``exit_code`` as 0 for a job that exited non-zero (its ``state``
    is right): :func:`job_verdict` prefers slurmctld's answer, which has the true code, while it has one.
    """
    _legacy(version)
    jobs = body.get("jobs") or []
    if not jobs:
        return None
    job = jobs[0]
    state_info = job.get("state") or {}
    state, flags = _state(state_info.get("current") if isinstance(state_info, dict) else state_info)
    code, signal = _exit(job.get("exit_code"), wait_status=False)
    times = job.get("time") or {}
    reason = str(state_info.get("reason") or "") if isinstance(state_info, dict) else ""
    return RestJob(
        job_id=str(job.get("job_id", "")),
        state=state,
        flags=flags,
        exit_code=code,
        signal=signal,
        reason="" if reason == "None" else reason,
        nodes=str(job.get("nodes") or ""),
        name=str(job.get("name") or ""),
        source="slurmdb",
        start=_number(times.get("start")),
        end=_number(times.get("end")),
        elapsed=_number(times.get("elapsed")),
        working_directory=str(job.get("working_directory") or ""),
        extra={
            "account": job.get("account"),
            "partition": job.get("partition"),
            # v0.0.38 names the user in the association only
            "user": job.get("user") or (job.get("association") or {}).get("user"),
        },
    )


def poll_lines(status: RestJob | None, accounting: RestJob | None = None) -> tuple[str, str]:
    """The ``(squeue line, sacct line)`` the SSH transport's poll would read, from what slurmctld
    (``status``, None when it no longer knows the job) and slurmdbd (``accounting``) said.

    >>> poll_lines(RestJob("9", "RUNNING", nodes="n1"))
    ('RUNNING|None|n1', '')
    >>> poll_lines(None, RestJob("9", "FAILED", exit_code=3, signal=0))
    ('', '9|FAILED|3:0|None')
    """
    if status is not None:
        if status.live:
            # a COMPLETING job's end is read from its own record (squeue + sacct, as over SSH)
            return status.squeue_line(), status.sacct_line() if "COMPLETING" in status.flags else ""
        return "", status.sacct_line()
    return "", accounting.sacct_line() if accounting is not None else ""


def job_verdict(job_id: str, status: RestJob | None, accounting: RestJob | None = None) -> JobVerdict:
    """The verdict of :func:`~airflow_genius.core.slurm_protocol.verdict` on what slurmctld
    (``status``, None when it no longer knows the job) and slurmdbd (``accounting``) said.

    >>> job_verdict("9", RestJob("9", "FAILED", exit_code=3, signal=0, reason="NonZeroExitCode")).reason
    'Slurm job 9 FAILED (exit code 3) [reason: NonZeroExitCode]'
    >>> job_verdict("9", RestJob("9", "RUNNING", nodes="n1")).state
    'RUNNING'
    """
    squeue_line, sacct_line = poll_lines(status, accounting)
    return verdict(squeue_line=squeue_line, sacct_line=sacct_line, job_id=job_id)


def read_output_command(path: str, offset: int, chunk: int = OUTPUT_CHUNK) -> str:
    """Up to ``chunk`` bytes of a job's output file from byte ``offset`` (nothing if it does not exist
    yet), as the SSH poll reads them.

    >>> read_output_command("/h/j/slurm-9.out", 10)
    'tail -c +11 /h/j/slurm-9.out 2>/dev/null | head -c 65536; true'
    """
    return f"tail -c +{int(offset) + 1} {shlex.quote(path)} 2>/dev/null | head -c {int(chunk)}; true"


# --------------------------------------------------------------------------- tokens
def mint_token(key: bytes, user: str, *, lifespan: int = TOKEN_LIFESPAN, now: float | None = None) -> str:
    """A Slurm JWT for ``user`` signed with the cluster's HS256 key (what ``scontrol token`` makes):
    claims ``sun`` (the Slurm user name), ``iat`` and ``exp``.

    >>> import jwt
    >>> token = mint_token(b"k" * 32, "alice", lifespan=60, now=1000.0)
    >>> jwt.decode(token, b"k" * 32, algorithms=["HS256"], options={"verify_exp": False})
    {'exp': 1060, 'iat': 1000, 'sun': 'alice'}
    """
    import jwt  # PyJWT, installed with Airflow

    issued = int(time.time() if now is None else now)
    return jwt.encode({"exp": issued + int(lifespan), "iat": issued, "sun": user}, key, algorithm="HS256")


def token_expiry(token: str) -> int | None:
    """The ``exp`` claim of a JWT, read without checking its signature (None if it has none)."""
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError:
        return None
    exp = claims.get("exp")
    return int(exp) if isinstance(exp, int | float) else None


@dataclass
class TokenSource:
    """The token of each request: a fixed one (``token``), or one minted from the signing ``key`` and
    replaced :data:`TOKEN_REFRESH_MARGIN` seconds before it expires (or when slurmrestd refused it).
    With both, the given token is used until it is about to expire (or is refused), then minted ones.

    >>> source = TokenSource("alice", key=b"k" * 32, lifespan=120)
    >>> first = source.get(now=1000.0)
    >>> source.get(now=1030.0) == first, source.get(now=1061.0) == first
    (True, False)
    """

    user: str
    token: str | None = None
    key: bytes | None = field(default=None, repr=False)
    lifespan: int = TOKEN_LIFESPAN
    margin: int = TOKEN_REFRESH_MARGIN
    _minted: str | None = field(default=None, init=False, repr=False)
    _expires: float = field(default=0.0, init=False, repr=False)
    _given_spent: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.token and not self.key:
            raise SlurmRestError("a slurmrestd connection needs a token (password) or a JWT signing key")

    def __repr__(self) -> str:  # never the token nor the key
        return f"TokenSource(user={self.user!r}, minted={self.key is not None})"

    @property
    def can_refresh(self) -> bool:
        return self.key is not None

    def get(self, *, now: float | None = None) -> str:
        """The token to send now: the given token while it is valid (always, without a key), else a
        minted one."""
        moment = time.time() if now is None else now
        if self.key is None:
            return str(self.token)
        if self.token and self._minted is None and not self._given_spent:
            expiry = token_expiry(self.token)
            # a second early: a token about to expire could expire in flight
            if expiry is None or moment < expiry - 1:
                return self.token
            self._given_spent = True
        if self._minted is None or moment >= self._expires - min(self.margin, self.lifespan / 2):
            self._minted = mint_token(self.key, self.user, lifespan=self.lifespan, now=moment)
            self._expires = moment + self.lifespan
        return self._minted

    def invalidate(self) -> None:
        """Forget the token in use (slurmrestd refused it): the next :meth:`get` mints another."""
        self._minted = None
        self._given_spent = True

    def headers(self, *, now: float | None = None) -> dict[str, str]:
        """The two authentication headers slurmrestd reads."""
        return {"X-SLURM-USER-NAME": self.user, "X-SLURM-USER-TOKEN": self.get(now=now)}


def accounting_fields(job: RestJob) -> dict[str, Any]:
    """A flat summary of an accounting record (for logs and lineage facets)."""
    return {
        "job_id": job.job_id,
        "name": job.name,
        "state": job.state,
        "exit_code": job.exit_code,
        "signal": job.signal,
        "nodes": job.nodes,
        "start": job.start,
        "end": job.end,
        "elapsed": job.elapsed,
        "working_directory": job.working_directory,
        **{key: value for key, value in job.extra.items() if value is not None},
    }
