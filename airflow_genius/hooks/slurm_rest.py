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
import time
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from airflow_genius.core import slurm_protocol as protocol
from airflow_genius.core import slurm_rest as rest


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
        status = self.job(job_id)
        accounting = self.accounting(job_id) if status is None else None
        return rest.job_verdict(job_id, status, accounting)

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
        body = await self.acall(rest.status_request(version, job_id), f"GET job {job_id}",
                                allow=frozenset({rest.ERR_INVALID_JOB_ID}))  # fmt: skip
        status = rest.parse_job(version, body)
        accounting = None
        if status is None:
            body = await self.acall(rest.accounting_request(version, job_id), f"GET accounting of job {job_id}",
                                    allow=frozenset({rest.ERR_NOTHING_FOUND}))  # fmt: skip
            accounting = rest.parse_accounting(version, body)
        return rest.job_verdict(job_id, status, accounting)

    async def acancel(self, job_id: str, *, version: str) -> None:
        """:meth:`cancel` for a trigger."""
        await self.acall(rest.cancel_request(version, job_id), f"cancel job {job_id}",
                         allow=frozenset({rest.ERR_INVALID_JOB_ID, rest.ERR_ALREADY_DONE}))  # fmt: skip

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Kept for Airflow < 3.2; newer versions read ``conn-fields`` from the provider info."""
        from airflow_genius.hooks.forms import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR[cls.conn_type]


def _body(text: str) -> Any:
    """An answer's JSON, or its text (slurmrestd answers 401 with plain text)."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text
