"""The TaskSpec's field rules, as plain values: what :mod:`airflow_genius.core.spec` and the Geniusfile
(:mod:`airflow_genius.core.geniusfile`) both check, so a Geniusfile that validates gives valid TaskSpecs.

Kept apart from ``core/spec.py`` so that parsing a Geniusfile (the DAG processor, on every parse)
imports only the rules: the spec's frozen dataclasses (``TaskSpec``, ``DataRef``, ``RunIdentity``,
``Window`` …) are needed only where a task runs, and defining them costs more than the rules. Each
``*_fields`` function validates one section and returns its values; ``core/spec.py`` wraps them in its
dataclasses (``parse_task(data)`` is ``TaskRef(*task_fields(data))``)::

    task_fields({"class": "pkg.mod:Clean", "method": "run"})   # ('pkg.mod:Clean', 'run', (), {})
    check_data_uri("s3://lake/raw", "output.uri")              # raises SpecError naming the field

Every problem is a :class:`~airflow_genius.core.errors.SpecError` ``field: expected…, got <value>``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from typing import Any

from airflow_genius.core.defaults import DEFAULT_NAMESPACE
from airflow_genius.core.errors import SpecError
from airflow_genius.core.state import DEFAULT_STATE_URI, STATE_SCHEMES
from airflow_genius.core.uris import (
    DATA_CREDENTIALS_HINT,
    MODEL_CREDENTIALS_HINT,
    STATE_CREDENTIALS_HINT,
    redact,
    secret_problem,
    split_uri,
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_CLASS_PATH = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")
_DATA_SCHEMES = ("file", "s3")
_HEALTH_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@/%-]{0,255}")
_SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


# ---------------------------------------------------------------------- sections as plain values
def task_fields(data: Any) -> tuple[str, str, tuple[Any, ...], dict[str, Any]]:
    """``task``: (class path, method, args, kwargs)."""
    obj = _object(data, "task")
    _only(obj, "task", {"class", "method", "args", "kwargs"})
    class_path = _string(obj, "class", "task")
    if not _CLASS_PATH.match(class_path):
        raise SpecError("task.class", "expected an import path 'package.module:ClassName'", got=class_path)
    method = _string(obj, "method", "task")
    if not re.fullmatch(_IDENT, method) or keyword.iskeyword(method):
        raise SpecError("task.method", "expected a Python method name", got=method)
    if method.startswith("_"):
        raise SpecError("task.method", "private and dunder methods cannot be run", got=method)
    args = obj.get("args", [])
    if not isinstance(args, list):
        raise SpecError("task.args", "expected a JSON array of positional arguments", got=args)
    kwargs = obj.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise SpecError("task.kwargs", "expected a JSON object of keyword arguments", got=kwargs)
    for name in kwargs:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise SpecError("task.kwargs", "every key must be a Python identifier", got=name)
    return class_path, method, tuple(args), kwargs


def state_fields(data: Any) -> tuple[str, str]:
    """``state``: (store URI, namespace); None is the default store and namespace."""
    if data is None:
        return DEFAULT_STATE_URI, DEFAULT_NAMESPACE
    obj = _object(data, "state")
    _only(obj, "state", {"uri", "namespace"})
    uri = obj.get("uri", DEFAULT_STATE_URI)
    if not isinstance(uri, str) or not uri:
        raise SpecError("state.uri", "expected a state store URI", got=uri)
    refuse_secret(uri, "state.uri", STATE_CREDENTIALS_HINT)
    scheme = split_uri(uri).scheme.lower()
    if scheme not in STATE_SCHEMES:
        raise SpecError("state.uri", f"expected a scheme among {', '.join(STATE_SCHEMES)}", got=redact(uri))
    namespace = obj.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or not namespace:
        raise SpecError("state.namespace", "expected a non-empty string", got=namespace)
    return uri, namespace


def model_fields(data: Any) -> tuple[str, str | None, str] | None:
    """``model``: (manager URI, name, version), or None for no model."""
    if data is None:
        return None
    obj = _object(data, "model")
    _only(obj, "model", {"uri", "name", "version"})
    uri = _string(obj, "uri", "model")
    refuse_secret(uri, "model.uri", MODEL_CREDENTIALS_HINT, what="credentials")
    name = obj.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise SpecError("model.name", "expected a non-empty string or null", got=name)
    version = obj.get("version", "latest")
    if not isinstance(version, str) or not version:
        raise SpecError("model.version", "expected a version id or 'latest'", got=version)
    return uri, name, version


def service_fields(data: Any) -> tuple[int, str, str | None, float] | None:
    """``service``: (port, health path, name, ready timeout in seconds), or None for no service."""
    if data is None:
        return None
    obj = _object(data, "service")
    _only(obj, "service", {"port", "health_path", "name", "ready_timeout"})
    port = obj.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SpecError("service.port", "expected a TCP port (1-65535)", got=port)
    health = obj.get("health_path", "/health")
    if not isinstance(health, str) or not _HEALTH_PATH.fullmatch(health):
        raise SpecError(
            "service.health_path", "expected a URL path starting with '/' (no spaces, no '?#')", got=health
        )
    name = obj.get("name")
    if name is not None and (not isinstance(name, str) or not _SERVICE_NAME.fullmatch(name)):
        raise SpecError(
            "service.name", "expected a name of letters, digits, '.', '_' or '-' (up to 63)", got=name
        )
    timeout = obj.get("ready_timeout", 300.0)
    from airflow_genius.core.streams.base import MAX_SECONDS

    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= MAX_SECONDS:
        raise SpecError("service.ready_timeout", f"expected seconds > 0 and <= {MAX_SECONDS:,}", got=timeout)
    return port, health, name, float(timeout)


# ---------------------------------------------------------------------- URIs
def refuse_secret(uri: str, where: str, instead: str, *, what: str = "a password") -> None:
    """Raise :class:`SpecError` naming ``where`` if ``uri`` embeds a secret (user info or query);
    the message shows the URI redacted and says where the secret goes ``instead``."""
    problem = secret_problem(uri, instead, what=what)
    if problem:
        raise SpecError(where, problem, got=redact(uri))


def check_data_uri(uri: str, where: str) -> None:
    """A batch folder: ``/abs/path``, ``file:///abs/path`` or ``s3://bucket/prefix``, without secrets."""
    if "\x00" in uri:
        raise SpecError(where, "contains a NUL byte")
    refuse_secret(uri, where, DATA_CREDENTIALS_HINT, what="credentials")
    if uri.startswith("/"):
        return
    parts = split_uri(uri)
    if parts.scheme not in _DATA_SCHEMES:
        raise SpecError(where, "expected an absolute path, file:///abs/path or s3://bucket/prefix", got=uri)
    if parts.scheme == "s3" and not parts.netloc:
        raise SpecError(where, "an s3 URI needs a bucket: s3://bucket/prefix", got=uri)
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
        raise SpecError(where, "a file URI needs an absolute local path: file:///abs/path", got=uri)


def check_stream_uri(uri: str, where: str, *, need_group: bool) -> None:
    """A stream URI: redis/rediss/sqlite scheme, ``stream=`` always, ``group=`` to be read."""
    if "\x00" in uri:
        raise SpecError(where, "contains a NUL byte")
    refuse_secret(uri, where, STATE_CREDENTIALS_HINT)
    if not _is_stream_scheme(split_uri(uri).scheme):
        raise SpecError(
            where,
            "expected a stream URI redis://host:6379/0?stream=s&group=g or sqlite:///f.db?stream=s",
            got=uri,
        )
    from airflow_genius.core.streams.base import StreamUriError, parse_stream_uri

    try:
        parse_stream_uri(uri, need_group=need_group)  # the one check of every stream parameter
    except StreamUriError as exc:
        raise SpecError(where, exc.problem, got=exc.uri) from None


def _data_type_of(uri: str | None) -> str:
    """``stream`` for a stream URI scheme, ``batch`` for anything else (paths, file://, s3://)."""
    if uri and not uri.startswith("/") and _is_stream_scheme(split_uri(uri).scheme):
        return "stream"
    return "batch"


def _is_stream_scheme(scheme: str) -> bool:
    # The streams package (its backends and readers) is imported only for a stream: the DAG
    # processor imports this module for every Geniusfile, most of which use folders.
    from airflow_genius.core.streams.base import STREAM_SCHEMES

    return scheme.lower() in STREAM_SCHEMES


# ---------------------------------------------------------------------- small checks
def _object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SpecError(where, "expected a JSON object", got=data)
    return data


def _only(obj: Mapping[str, Any], where: str, known: set[str]) -> None:
    unknown = sorted(set(obj) - known)
    if unknown:
        raise SpecError(
            f"{where}.{unknown[0]}" if where != "spec" else unknown[0],
            f"unknown field (known: {', '.join(sorted(known))})",
        )


def _string(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{where}.{name}", "expected a non-empty string", got=value)
    if "\x00" in value:
        raise SpecError(f"{where}.{name}", "contains a NUL byte")
    return value
