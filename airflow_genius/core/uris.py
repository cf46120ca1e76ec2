"""Store URIs (state, data, streams, models, XCom): parsing, the no-secret rule, and redaction for logs.

A URI in a TaskSpec never carries a secret: it would end up in argv, sbatch scripts, the plain container
environment, the dashboard and logs. That holds for the user info (``scheme://user:secret@host``) and for
the query (``?password=``, ``?sslpassword=``, ``?token=``, ``?aws_secret_access_key=`` …, in any case and
percent-encoding). Credentials reach the runtime as environment variables set through the platform's
secret mechanism (K8s Secret, ECS/Batch secrets, Docker private environment, a 0600 file on Slurm) and
are resolved here.

>>> has_password("redis://cache:6379/0?prefix=genius&sslkey=/etc/ssl/k.pem")
False
>>> has_password("postgresql://app@db/genius?SSLPassWord=hunter2")
True
>>> redact("postgresql://app:hunter2@db/genius?sslpassword=hunter2&table_prefix=g")
'postgresql://app:***@db/genius?sslpassword=***&table_prefix=g'
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import SplitResult, parse_qs, unquote_plus, urlsplit

#: Environment variable that holds the state store's password (or Redis ACL password).
#: The AssetAliases genius operators declare (docs/lineage.md): ``genius-output:<dag_id>.<task_id>`` for
#: a task whose output root is only known when it runs, ``genius-model:<dag_id>.<task_id>`` for the
#: model versions a training task saves.
OUTPUT_ALIAS_PREFIX = "genius-output:"
MODEL_ALIAS_PREFIX = "genius-model:"
ALIAS_PREFIXES = (OUTPUT_ALIAS_PREFIX, MODEL_ALIAS_PREFIX)

STATE_PASSWORD_ENV = "GENIUS_STATE_PASSWORD"  # noqa: S105 - the variable name, not a secret

#: Where a state (or stream) password goes instead of the URI.
STATE_CREDENTIALS_HINT = f"pass it in {STATE_PASSWORD_ENV}"
#: Where credentials of a data location (S3) go instead of the URI.
DATA_CREDENTIALS_HINT = "pass them through the environment (AWS variables, a profile or an instance role)"
#: Where credentials of a model store go instead of the URI.
MODEL_CREDENTIALS_HINT = (
    "use the backend's credential mechanism (ssh key, git credential helper, AWS/W&B environment variables)"
)

#: A query parameter holds a secret when its name — lower-cased, percent-decoded, letters and digits
#: only (``API-Key`` → ``apikey``) — contains one of these …
_SECRET_MARKERS = (
    "pass",
    "pwd",
    "secret",
    "token",
    "credential",
    "apikey",
    "auth",
    "privatekey",
    "signature",
)
#: … or is one of these.
_SECRET_NAMES = frozenset({"key", "sig"})
#: Names that match a marker but hold no secret: libpq's ``passfile`` (a file path) and ``require_auth``
#: (a list of methods). ``sslkey``/``sslcert`` (file paths), ``prefix``, ``region`` … match nothing.
_NOT_SECRET = frozenset({"passfile", "requireauth"})

#: RFC 3986, appendix B: splits any text into scheme, authority, path, query and fragment (never fails).
_PARTS = re.compile(r"^(?:([^:/?#]+):)?(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?(?:#(.*))?$", re.DOTALL)
#: What ``urlsplit`` (and so every driver built on it) silently drops from a URI.
_DROPPED = re.compile(r"[\t\r\n]")


def split_uri(uri: str) -> SplitResult:
    """``urlsplit`` of ``uri`` without surrounding whitespace; the scheme comes back lower-case.

    The port is not checked (reading ``.port`` of a bad one raises ``ValueError``); an unclosed ``[``
    in the host raises ``ValueError``.

    >>> split_uri(" REDIS://cache:6379/0 ").scheme
    'redis'
    """
    return urlsplit(uri.strip())


def is_secret_param(name: str) -> bool:
    """Whether a query parameter of this name holds a secret (any case, percent-encoded or not).

    >>> [is_secret_param(n) for n in ("password", "PassWord", "pass%77ord", "api-key", "sslkey", "prefix")]
    [True, True, True, True, False, False]
    """
    folded = re.sub(r"[^a-z0-9]", "", unquote_plus(name).lower())
    if folded in _NOT_SECRET:
        return False
    return folded in _SECRET_NAMES or any(marker in folded for marker in _SECRET_MARKERS)


def embedded_secret(uri: str) -> str | None:
    """Where ``uri`` carries a secret, for an error message; ``None`` when it carries none.

    ``""`` for a password in the user info, ``"query parameter 'name'"`` for a secret parameter (also
    one whose value is itself a URI with a password).

    >>> embedded_secret("redis://:pw@cache/0"), embedded_secret("redis://cache/0?Token=x")
    ('', "query parameter 'Token'")
    """
    _, netloc, _, query, _ = _parts(uri)
    if netloc is not None and _userinfo_password(netloc):
        return ""
    for name, value in _query_items(query):
        if is_secret_param(name) or _nested_secret(value):
            shown = name if len(name) <= 40 else name[:37] + "..."
            return f"query parameter {shown!r}"
    return None


def has_password(uri: str) -> bool:
    """True if ``uri`` embeds a password or another secret (user info or query, see the module doc)."""
    return embedded_secret(uri) is not None


def secret_problem(
    uri: str, instead: str, *, what: str = "a password", verb: str = "must not embed"
) -> str | None:
    """One line saying that ``uri`` embeds ``what`` and where it goes ``instead``; ``None`` if it embeds none.

    >>> secret_problem("redis://cache/0?PassWord=x", STATE_CREDENTIALS_HINT)
    "must not embed a password (query parameter 'PassWord'); pass it in GENIUS_STATE_PASSWORD"
    >>> secret_problem("postgresql://app:pw@db/genius", STATE_CREDENTIALS_HINT)
    'must not embed a password; pass it in GENIUS_STATE_PASSWORD'
    """
    found = embedded_secret(uri)
    if found is None:
        return None
    return f"{verb} {what}{f' ({found})' if found else ''}; {instead}"


def redact(uri: str) -> str:
    """The URI with the user info password and every secret query value replaced by ``***`` (safe to log).

    >>> redact("postgresql://app:s3cret@db:5432/genius")
    'postgresql://app:***@db:5432/genius'
    >>> redact("redis://cache:6379/0?prefix=g&PassWord=s3cret")
    'redis://cache:6379/0?prefix=g&PassWord=***'
    """
    scheme, netloc, path, query, fragment = _parts(uri)
    if netloc is None and query is None:
        return uri
    if netloc is not None:
        userinfo, at, host = netloc.rpartition("@")
        user, _, password = userinfo.partition(":")
        if password:
            netloc = f"{user}:***{at}{host}"
    if query is not None:
        pieces = []
        for piece in query.split("&"):
            name, equals, value = piece.partition("=")
            secret = equals and (is_secret_param(name) or _nested_secret(unquote_plus(value)))
            pieces.append(f"{name}=***" if secret else piece)
        query = "&".join(pieces)
    text = f"{scheme}:" if scheme is not None else ""
    text += f"//{netloc}" if netloc is not None else ""
    text += path
    text += f"?{query}" if query is not None else ""
    return text + (f"#{fragment}" if fragment is not None else "")


def query_params(uri: str) -> dict[str, str]:
    """Single-valued query parameters of ``uri`` (last one wins)."""
    return {k: v[-1] for k, v in parse_qs(split_uri(uri).query, keep_blank_values=True).items()}


def state_password(env: Mapping[str, str] | None = None) -> str | None:
    """The state store password from the environment, if any."""
    source = os.environ if env is None else env
    return source.get(STATE_PASSWORD_ENV) or None


def _parts(uri: str) -> tuple[str | None, str | None, str, str | None, str | None]:
    """Scheme, authority, path, query and fragment of ``uri`` as ``urlsplit`` reads it (absent: None)."""
    match = _PARTS.match(_DROPPED.sub("", uri.strip()))
    assert match is not None  # the pattern matches every text
    scheme, netloc, path, query, fragment = match.groups()
    return scheme, netloc, path, query, fragment


def _userinfo_password(netloc: str) -> bool:
    userinfo, at, _ = netloc.rpartition("@")
    return bool(at) and bool(userinfo.partition(":")[2])


def _query_items(query: str | None) -> list[tuple[str, str]]:
    """Every ``name=value`` of a query, decoded like ``parse_qsl`` (names kept as written)."""
    items = []
    for piece in (query or "").split("&"):
        if piece:
            name, _, value = piece.partition("=")
            items.append((name, unquote_plus(value)))
    return items


def _nested_secret(value: str) -> bool:
    """A parameter value that is itself a URI with a secret (``?endpoint_url=http://u:pw@host``)."""
    return "://" in value and _shallow_secret(value)


def _shallow_secret(value: str) -> bool:
    _, netloc, _, query, _ = _parts(value)
    if netloc is not None and _userinfo_password(netloc):
        return True
    return any(is_secret_param(name) for name, _ in _query_items(query))
