"""Slurm over slurmrestd (REST, JWT authentication): submit, status, cancel and accounting.

Requests and answers are built and read in :mod:`airflow_genius.core.slurm_rest`; the verdict on a job
is the one :func:`~airflow_genius.core.slurm_protocol.verdict` of the SSH transport. Synchronous calls
use ``requests``; the ``a``-prefixed ones use ``httpx.AsyncClient`` (for a deferrable trigger).

The connection (type ``genius_slurm_rest``):

* host: slurmrestd's URL (``http://slurm-rest:6820``), or a host name with ``port`` (and extra
  ``scheme``, default ``http``);
* login: the Slurm user the jobs run as;
* password: a token from ``scontrol token`` — or leave it empty and give the cluster's signing key,
  extra ``jwt_key_path`` (a file on the worker) or ``jwt_key`` (the key, base64): a token is then minted
  per hook and replaced before it expires;
* extra ``api_version`` (``v0.0.38``…; default: the newest the server's OpenAPI document offers that
  this provider maps), ``token_lifespan`` (seconds, default 1800), ``verify`` (TLS: false or a CA file).

.. code-block:: python

    hook = SlurmRestHook("hpc_rest")
    job_id = hook.submit(script, work_dir="/home/me/.genius/slurm/job1")
    hook.poll(job_id).state                 # 'RUNNING'
    hook.wait(job_id)["state"]              # 'COMPLETED'
    hook.accounting(job_id)                 # RestJob(state='COMPLETED', exit_code=0, ...)
    hook.cancel(job_id)                     # idempotent

slurmrestd does not serve job output: read it over SSH/SFTP or from a shared folder
(docs/runners/slurm-rest.md).
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_genius.core import slurm_protocol as protocol
from airflow_genius.core import slurm_rest as rest

if TYPE_CHECKING:
    from airflow_genius.hooks.slurm import SlurmHook


class SlurmRestHook(BaseHook):
    """Talk to a Slurm cluster through slurmrestd.

    Args:
        slurm_rest_conn_id: a ``genius_slurm_rest`` connection (see the module docstring).
        timeout: seconds one HTTP request may take.
    """

    conn_name_attr = "slurm_rest_conn_id"
    default_conn_name = "genius_slurm_rest_default"
    conn_type = "genius_slurm_rest"
    hook_name = "Slurm (slurmrestd)"

    def __init__(self, slurm_rest_conn_id: str = default_conn_name, *, timeout: float = 30.0) -> None:
        super().__init__()
        self.slurm_rest_conn_id = slurm_rest_conn_id
        self.timeout = timeout
        self._version: str | None = None
        self._masked: set[str] = set()

    # ------------------------------------------------------------------ connection
    @cached_property
    def connection(self) -> Any:
        return self.get_connection(self.slurm_rest_conn_id)

    @cached_property
    def base_url(self) -> str:
        """slurmrestd's URL, without a trailing slash."""
        conn = self.connection
        host = (conn.host or "").rstrip("/")
        if not host:
            raise rest.SlurmRestError(
                f"connection {self.slurm_rest_conn_id!r} has no host (slurmrestd's URL)"
            )
        if "://" in host:
            return host
        scheme = self.extra.get("scheme") or "http"
        return f"{scheme}://{host}:{conn.port}" if conn.port else f"{scheme}://{host}"

    @cached_property
    def extra(self) -> dict[str, Any]:
        return dict(self.connection.extra_dejson or {})

    @cached_property
    def tokens(self) -> rest.TokenSource:
        """Where each request's token comes from (a fixed token, or one minted from the signing key)."""
        conn = self.connection
        user = conn.login or ""
        if not user:
            raise rest.SlurmRestError(f"connection {self.slurm_rest_conn_id!r} has no login (the Slurm user)")
        key: bytes | None = None
        if self.extra.get("jwt_key_path"):
            path = Path(str(self.extra["jwt_key_path"])).expanduser()
            try:
                key = path.read_bytes()
            except OSError as exc:
                raise rest.SlurmRestError(f"cannot read the JWT key {path}: {exc.strerror}") from None
        elif self.extra.get("jwt_key"):
            try:
                key = base64.b64decode(str(self.extra["jwt_key"]), validate=True)
            except ValueError:
                raise rest.SlurmRestError("extra jwt_key must be the signing key in base64") from None
        lifespan = int(self.extra.get("token_lifespan") or rest.TOKEN_LIFESPAN)
        return rest.TokenSource(user, token=conn.password or None, key=key, lifespan=lifespan)

    @property
    def _verify(self) -> bool | str:
        verify = self.extra.get("verify", True)
        if isinstance(verify, str) and verify.lower() in ("false", "0", "no"):
            return False
        return verify  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ transport
    def send(self, request: rest.RestRequest, *, what: str | None = None) -> tuple[int, Any]:
        """One HTTP request with the authentication headers: ``(status code, JSON body or text)``.
        A refused minted token is minted again and the request sent once more."""
        import requests

        for attempt in (1, 2):
            headers = self._headers()
            try:
                answer = requests.request(
                    request.method,
                    self.base_url + request.path,
                    json=request.body,
                    headers=headers,
                    timeout=self.timeout,
                    verify=self._verify,
                )
            except requests.RequestException as exc:
                raise self._unreachable(request, what, exc) from None
            body = _body(answer.text)
            if attempt == 1 and self._refused(answer.status_code, body):
                continue
            return answer.status_code, body
        raise AssertionError("unreachable")

    def _unreachable(
        self, request: rest.RestRequest, what: str | None, exc: Exception
    ) -> rest.SlurmRestError:
        """The one line for a request that got no answer (the exception's type only: its text may
        hold the URL's query or a header)."""
        return rest.SlurmRestError(
            f"slurmrestd {what or request.path} at {self.base_url}: {type(exc).__name__}"
        )

    def _headers(self) -> dict[str, str]:
        """The authentication headers; each new token (and the key given inline) is registered with
        Airflow's secrets masker first, so no log line can show it."""
        from airflow.sdk.log import mask_secret

        headers = self.tokens.headers()
        for secret in (headers["X-SLURM-USER-TOKEN"], str(self.extra.get("jwt_key") or "")):
            if secret and secret not in self._masked:
                mask_secret(secret)
                self._masked.add(secret)
        return headers

    def _refused(self, status_code: int, body: Any) -> bool:
        """A minted token refused: forget it, so the retry mints another."""
        if not self.tokens.can_refresh:
            return False
        try:
            rest.check_answer(status_code, body, "")
        except rest.SlurmRestAuthError:
            self.tokens.invalidate()
            return True
        except rest.SlurmRestError:
            return False
        return False

    def call(
        self, request: rest.RestRequest, what: str, *, allow: frozenset[int] = frozenset()
    ) -> dict[str, Any]:
        """:meth:`send`, then :func:`~airflow_genius.core.slurm_rest.check_answer` (errors numbered in
        ``allow`` are no error)."""
        status_code, body = self.send(request, what=what)
        return rest.check_answer(status_code, body, what, user=self.tokens.user, allow=allow)

    @property
    def api_version(self) -> str:
        """The API version in use: the connection's ``api_version``, checked against the server's
        OpenAPI document, or the newest both sides speak."""
        if self._version is None:
            self._version = rest.select_version(self.openapi(), self.extra.get("api_version"))
        return self._version

    def openapi(self) -> dict[str, Any]:
        """slurmrestd's OpenAPI document (``/openapi/v3``, else ``/openapi``)."""
        last: tuple[int, Any] = (0, None)
        for path in rest.OPENAPI_PATHS:
            last = self.send(rest.RestRequest("GET", path), what=f"GET {path}")
            if last[0] == 200 and isinstance(last[1], dict) and last[1].get("paths"):
                return last[1]
        return rest.check_answer(last[0], last[1], "GET /openapi", user=self.tokens.user)

    # ------------------------------------------------------------------ Slurm
    def submit(self, script: str, *, work_dir: str, environment: Mapping[str, str] | None = None) -> str:
        """Submit a batch script (its ``#SBATCH`` directives become job properties) to run in
        ``work_dir``; returns the job id."""
        request = rest.submit_request(self.api_version, script, work_dir=work_dir, environment=environment)
        return rest.parse_submit(self.call(request, "job submit"))

    def job(self, job_id: str) -> rest.RestJob | None:
        """What slurmctld says of the job (None once it forgot it, ``MinJobAge`` after its end)."""
        version = self.api_version
        body = self.call(rest.status_request(version, job_id), f"GET job {job_id}",
                         allow=frozenset({rest.ERR_INVALID_JOB_ID}))  # fmt: skip
        return rest.parse_job(version, body)

    def accounting(self, job_id: str) -> rest.RestJob | None:
        """The job's record in slurmdbd (None while it has none)."""
        version = self.api_version
        body = self.call(rest.accounting_request(version, job_id), f"GET accounting of job {job_id}",
                         allow=frozenset({rest.ERR_NOTHING_FOUND}))  # fmt: skip
        return rest.parse_accounting(version, body)

    def poll(self, job_id: str) -> protocol.JobVerdict:
        """The verdict on the job now: slurmctld's answer, else slurmdbd's record."""
        squeue_line, sacct_line = self.poll_lines(job_id)
        return protocol.verdict(squeue_line=squeue_line, sacct_line=sacct_line, job_id=job_id)

    def poll_lines(self, job_id: str) -> tuple[str, str]:
        """The ``(squeue line, sacct line)`` of the job now (:func:`~airflow_genius.core.slurm_rest.poll_lines`)."""
        status = self.job(job_id)
        accounting = self.accounting(job_id) if status is None else None
        return rest.poll_lines(status, accounting)

    def live_jobs(self, job_name: str) -> list[tuple[str, str]]:
        """``(id, state)`` of the connection user's queued or running jobs called ``job_name``, oldest first."""
        version = self.api_version
        body = self.call(rest.jobs_request(version), "GET jobs")
        return rest.live_jobs_named(rest.parse_jobs(version, body), job_name, self.tokens.user)

    def wait(
        self, job_id: str, *, poll_interval: float = 10.0, timeout: float | None = None
    ) -> dict[str, Any]:
        """Poll until the job ends (waits of :func:`~airflow_genius.core.slurm_protocol.poll_delays`);
        returns the event of :func:`~airflow_genius.core.slurm_protocol.job_event`.

        Raises:
            TimeoutError: the job did not end within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for delay in protocol.poll_delays(poll_interval):
            job_verdict = self.poll(job_id)
            if job_verdict.finished:
                return protocol.job_event(
                    job_id, job_verdict.state, succeeded=job_verdict.succeeded, reason=job_verdict.reason
                )
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"Slurm job {job_id} is still {job_verdict.state} after {timeout:.0f} s")
            time.sleep(delay)
        raise AssertionError("unreachable")

    def cancel(self, job_id: str) -> None:
        """Cancel the job; one that already ended or is unknown is fine (idempotent)."""
        self.call(rest.cancel_request(self.api_version, job_id), f"cancel job {job_id}",
                  allow=frozenset({rest.ERR_INVALID_JOB_ID, rest.ERR_ALREADY_DONE}))  # fmt: skip

    def test_connection(self) -> tuple[bool, str]:
        try:
            version = self.api_version
            self.call(rest.RestRequest("GET", f"/slurm/{version}/ping"), "ping")
        except Exception as exc:  # reported in the connection form, not raised
            return False, str(exc)
        return True, f"slurmrestd at {self.base_url} answers (API {version})"

    # ------------------------------------------------------------------ async (triggers)
    async def aconnect(self) -> None:
        """Read the connection without blocking the event loop (a trigger calls this first; the
        ``a``-methods then need no synchronous connection lookup)."""
        if "connection" not in self.__dict__:
            self.__dict__["connection"] = await self.aget_connection(self.slurm_rest_conn_id)

    async def asend(self, request: rest.RestRequest, *, what: str | None = None) -> tuple[int, Any]:
        """:meth:`send` with ``httpx.AsyncClient`` (after :meth:`aconnect`)."""
        import httpx

        async with httpx.AsyncClient(timeout=self.timeout, verify=self._verify) as client:
            for attempt in (1, 2):
                try:
                    answer = await client.request(
                        request.method,
                        self.base_url + request.path,
                        content=None if request.body is None else json.dumps(request.body),
                        headers={**self._headers(), "Content-Type": "application/json"},
                    )
                except httpx.HTTPError as exc:
                    raise self._unreachable(request, what, exc) from None
                body = _body(answer.text)
                if attempt == 1 and self._refused(answer.status_code, body):
                    continue
                return answer.status_code, body
        raise AssertionError("unreachable")

    async def acall(
        self, request: rest.RestRequest, what: str, *, allow: frozenset[int] = frozenset()
    ) -> dict[str, Any]:
        """:meth:`call` for a trigger."""
        status_code, body = await self.asend(request, what=what)
        return rest.check_answer(status_code, body, what, user=self.tokens.user, allow=allow)

    async def apoll(self, job_id: str, *, version: str) -> protocol.JobVerdict:
        """:meth:`poll` for a trigger, with the API version the operator already detected."""
        squeue_line, sacct_line = await self.apoll_lines(job_id, version=version)
        return protocol.verdict(squeue_line=squeue_line, sacct_line=sacct_line, job_id=job_id)

    async def apoll_lines(self, job_id: str, *, version: str) -> tuple[str, str]:
        """:meth:`poll_lines` for a trigger."""
        body = await self.acall(rest.status_request(version, job_id), f"GET job {job_id}",
                                allow=frozenset({rest.ERR_INVALID_JOB_ID}))  # fmt: skip
        status = rest.parse_job(version, body)
        accounting = None
        if status is None:
            body = await self.acall(rest.accounting_request(version, job_id), f"GET accounting of job {job_id}",
                                    allow=frozenset({rest.ERR_NOTHING_FOUND}))  # fmt: skip
            accounting = rest.parse_accounting(version, body)
        return rest.poll_lines(status, accounting)

    async def acancel(self, job_id: str, *, version: str) -> None:
        """:meth:`cancel` for a trigger."""
        await self.acall(rest.cancel_request(version, job_id), f"cancel job {job_id}",
                         allow=frozenset({rest.ERR_INVALID_JOB_ID, rest.ERR_ALREADY_DONE}))  # fmt: skip

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Kept for Airflow < 3.2; newer versions read ``conn-fields`` from the provider info."""
        from airflow_genius.hooks.forms import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR[cls.conn_type]


class SlurmRestTransport:
    """The Slurm operators' hook over slurmrestd: the methods
    :class:`~airflow_genius.operators.slurm.GeniusSlurmOperator` calls on
    :class:`~airflow_genius.hooks.slurm.SlurmHook`, with the same signatures and answers.

    Submission, state, accounting and cancel go through slurmrestd (JWT, :class:`SlurmRestHook`).
    slurmrestd serves no file, so the job's files — the spec and the secret file written before the
    submit (mode 0600, their content on SSH's standard input, never in a command line), the output
    tailed during the wait — go over SSH (``ssh_conn_id``, the ssh provider's hook) or, for a job folder
    under one of the REST connection's extra ``shared_paths`` (a folder mounted at the same path on the
    worker, the triggerer and the cluster), through the local file system.

    The wait is :func:`~airflow_genius.core.slurm_protocol.advance` fed slurmrestd's answers as the
    lines squeue and sacct would print (:func:`~airflow_genius.core.slurm_protocol.poll_answer`): the
    pending limit, the lost-job grace and requeues follow the same rules as over SSH. A REST poll cannot
    wait on the cluster for the job's end mark, so polls start 0.25 s apart and double up to
    ``poll_interval``.

    .. code-block:: python

        with SlurmRestTransport("hpc_rest", ssh_conn_id="hpc_login") as hook:
            job_dir = hook.resolve_path("~/.genius/slurm/job1")
            job_id = hook.submit(script, work_dir=job_dir, files={"spec.json": spec})
            event = hook.wait(job_id, output_path=f"{job_dir}/slurm-{job_id}.out", log=log)
    """

    def __init__(self, slurm_rest_conn_id: str, *, ssh_conn_id: str | None = None) -> None:
        self.rest = SlurmRestHook(slurm_rest_conn_id)
        self.ssh_conn_id = ssh_conn_id
        self._ssh: SlurmHook | None = None

    @property
    def ssh(self) -> SlurmHook:
        """The SSH hook of the job's files (opened on first use)."""
        if self._ssh is None:
            if not self.ssh_conn_id:
                raise rest.SlurmRestError(
                    "the job's files are outside the slurmrestd connection's shared_paths and no "
                    "ssh_conn_id is given: slurmrestd serves no file (see docs/runners/slurm-rest.md)"
                )
            from airflow_genius.hooks.slurm import SlurmHook

            self._ssh = SlurmHook(self.ssh_conn_id)
        return self._ssh

    @property
    def api_version(self) -> str:
        """The slurmrestd API version in use (:attr:`SlurmRestHook.api_version`)."""
        return self.rest.api_version

    def shared(self, path: str) -> bool:
        """Whether ``path`` is under one of the connection's ``shared_paths`` (read and written here)."""
        return shared_path(path, self.rest.extra.get("shared_paths"))

    def close(self) -> None:
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def __enter__(self) -> SlurmRestTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ files
    def resolve_path(self, path: str) -> str:
        """An absolute path on the cluster (``~`` is the SSH user's home; without SSH, only absolute
        paths are accepted)."""
        if path.startswith("/"):
            return path
        if not self.ssh_conn_id:
            raise rest.SlurmRestError(
                f"{path!r}: give an absolute remote_base_dir when no ssh_conn_id is set"
            )
        return self.ssh.resolve_path(path)

    def write_files(self, folder: str, files: Mapping[str, bytes]) -> None:
        """Create ``folder`` (mode 0700) and write ``files`` (name → content) into it, mode 0600."""
        if not files:
            return
        if self.shared(folder):
            write_local_files(folder, files)
            return
        command = protocol.write_files_command(folder, [(name, len(data)) for name, data in files.items()])
        self.ssh.run(command, stdin=b"".join(files.values()), what="writing the job's files")

    def read_output(self, path: str, offset: int) -> bytes:
        """Up to :data:`~airflow_genius.core.slurm_protocol.OUTPUT_CHUNK` bytes of a file from ``offset``."""
        if self.shared(path):
            return read_local_chunk(path, offset)
        _, out, _ = self.ssh.run(rest.read_output_command(path, offset), check=False)
        return out

    def tail(self, path: str, lines: int = 40) -> str:
        """The last ``lines`` lines of a file on the cluster ('' if it does not exist)."""
        if self.shared(path):
            size = Path(path).stat().st_size if Path(path).exists() else 0
            text = read_local_chunk(path, max(0, size - protocol.OUTPUT_CHUNK)).decode(errors="replace")
            return "".join(text.splitlines(keepends=True)[-lines:])
        return self.ssh.tail(path, lines)

    def read_file(self, path: str) -> bytes:
        if self.shared(path):
            return Path(path).read_bytes()
        return self.ssh.read_file(path)

    # ------------------------------------------------------------------ Slurm
    def submit(self, script: str, *, work_dir: str, files: Mapping[str, bytes] | None = None) -> str:
        """Write ``files`` into ``work_dir`` (SSH or the shared folder), then submit ``script`` through
        slurmrestd to run there; returns the job id. The job's environment is PATH (and HOME, when the
        SSH connection read it): slurmrestd passes none of its own."""
        self.write_files(work_dir, dict(files or {}))
        environment = dict(rest.DEFAULT_ENVIRONMENT)
        home = self._ssh._home if self._ssh is not None else None
        if home:
            environment["HOME"] = home
        job_id = self.rest.submit(script, work_dir=work_dir, environment=environment)
        self.rest.log.info("slurmrestd (API %s) accepted job %s", self.api_version, job_id)
        return job_id

    def find_live_job(self, job_name: str) -> tuple[str, str] | None:
        """The newest queued/running job of the connection's user called ``job_name`` as ``(id, state)``."""
        jobs = self.rest.live_jobs(job_name)
        return jobs[-1] if jobs else None

    def poll(self, job_id: str) -> protocol.Poll:
        """What Slurm says of the job now (``.verdict.state``, ``.verdict.finished``…)."""
        answer = protocol.poll_answer(*self.rest.poll_lines(job_id))
        return protocol.parse_poll(answer, offset=0, job_id=job_id)

    def follow(self, watch: protocol.Watch, *, log: Any = None) -> protocol.Step:
        """One poll of a wait: the state from slurmrestd, then the output's next bytes (after the state,
        so the read after the end has all of it), then :func:`~airflow_genius.core.slurm_protocol.advance`."""
        lines = self.rest.poll_lines(watch.job_id)
        output = self.read_output(watch.output_path, watch.offset) if watch.output_path else b""
        step = protocol.advance(watch, protocol.poll_answer(*lines, output), time.monotonic())
        if log is not None:
            step.log_to(log)
        return step

    def wait(
        self,
        job_id: str,
        *,
        output_path: str | None = None,
        end_mark: str | None = None,
        poll_interval: float = 10.0,
        lost_after: float = 120.0,
        pending_timeout: float | None = None,
        log: Any = None,
    ) -> dict[str, Any]:
        """Poll until the job ends, logging its output lines; returns the event of
        :func:`~airflow_genius.core.slurm_protocol.job_event` (the deferrable trigger's too).
        ``end_mark`` is accepted for :meth:`SlurmHook.wait`'s signature and not watched (see the class)."""
        watch = rest_watch(job_id, output_path=output_path, poll_interval=poll_interval,
                           lost_after=lost_after, pending_timeout=pending_timeout)  # fmt: skip
        return protocol.wait_for_end(watch, lambda current: self.follow(current, log=log), time.sleep)

    def cancel(self, job_id: str) -> None:
        """Cancel the job through slurmrestd; a job that already ended is fine."""
        self.rest.cancel(job_id)

    def test_connection(self) -> tuple[bool, str]:
        return self.rest.test_connection()


def rest_watch(
    job_id: str,
    *,
    output_path: str | None,
    poll_interval: float,
    lost_after: float,
    pending_timeout: float | None,
    offset: int = 0,
    started_at: float | None = None,
) -> protocol.Watch:
    """The :class:`~airflow_genius.core.slurm_protocol.Watch` of a REST wait: no end mark (a REST poll
    cannot hold on the cluster until the job's script leaves it)."""
    return protocol.Watch(
        job_id,
        output_path=output_path,
        end_mark=None,
        poll_interval=poll_interval,
        lost_after=lost_after,
        pending_timeout=pending_timeout,
        offset=offset,
        started_at=started_at,
    )


def shared_path(path: str, shared_paths: Any) -> bool:
    """Whether ``path`` lies under one of ``shared_paths`` (a list, or one path).

    >>> shared_path("/scratch/genius/j1/spec.json", ["/scratch"]), shared_path("/home/me/x", "/scratch")
    (True, False)
    """
    roots = [shared_paths] if isinstance(shared_paths, str) else list(shared_paths or [])
    target = PurePosixPath(path)
    return any(target.is_relative_to(PurePosixPath(str(root))) for root in roots if str(root).startswith("/"))


def write_local_files(folder: str, files: Mapping[str, bytes]) -> None:
    """:meth:`SlurmRestTransport.write_files` in a shared folder: the folder 0700, each file 0600."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    for name, data in files.items():
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"not a file name: {name!r}")
        fd = os.open(os.path.join(folder, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)


def read_local_chunk(path: str, offset: int, size: int = protocol.OUTPUT_CHUNK) -> bytes:
    """Up to ``size`` bytes of a local file from ``offset`` (b"" if it does not exist yet)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(size)
    except FileNotFoundError:
        return b""


def _body(text: str) -> Any:
    """An answer's JSON, or its text (slurmrestd answers 401 with plain text)."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text
