"""Store URIs (state, data, models): parsing, the no-password rule, and redaction for logs.

A URI in a TaskSpec never carries a password: it would end up in argv, sbatch scripts and logs.
Credentials reach the runtime as environment variables set through the platform's secret mechanism
(K8s Secret, ECS/Batch secrets, Docker env, a 0600 file on Slurm) and are resolved here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import SplitResult, parse_qs, urlsplit, urlunsplit

#: Environment variable that holds the state store's password (or Redis ACL password).
STATE_PASSWORD_ENV = "GENIUS_STATE_PASSWORD"  # noqa: S105 - the variable name, not a secret


def split_uri(uri: str) -> SplitResult:
    """``urlsplit`` that keeps the scheme lower-case and never raises on ports."""
    return urlsplit(uri.strip())


def has_password(uri: str) -> bool:
    """True if ``uri`` embeds a password (``scheme://user:secret@host``)."""
    parts = split_uri(uri)
    return bool(parts.password)


def redact(uri: str) -> str:
    """The URI with any password replaced by ``***`` (safe to log).

    >>> redact("postgresql://app:s3cret@db:5432/genius")
    'postgresql://app:***@db:5432/genius'
    """
    parts = split_uri(uri)
    if not parts.password:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def query_params(uri: str) -> dict[str, str]:
    """Single-valued query parameters of ``uri`` (last one wins)."""
    return {k: v[-1] for k, v in parse_qs(split_uri(uri).query, keep_blank_values=True).items()}


def state_password(env: Mapping[str, str] | None = None) -> str | None:
    """The state store password from the environment, if any."""
    source = os.environ if env is None else env
    return source.get(STATE_PASSWORD_ENV) or None
