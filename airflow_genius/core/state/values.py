"""One value policy for every state backend: what a run record and task state can hold.

JSON (and so Redis, PostgreSQL's JSONB, DynamoDB and SQLite here) cannot carry every Python value the
same way: NaN and ±Infinity are not JSON, PostgreSQL refuses ``\\u0000`` and lone surrogates, and very
deep values overflow decoders. Rather than let each backend fail differently — or worse, store a value
one backend returns and another refuses — every write is checked here first:

* results, metrics, window, info and task state must be plain JSON (dict with string keys, list, str,
  int, finite float, bool, None), strings without NUL or lone surrogates, at most ``MAX_DEPTH`` deep;
  anything else is refused with one line naming where it is (:func:`check_storable`);
* an error's text is always recorded: NUL and lone surrogates are escaped, never refused
  (:func:`storable_error`).

>>> check_storable({"loss": 0.25, "tags": ["a", "b"]}, "result")
>>> check_storable({"loss": float("nan")}, "result")
Traceback (most recent call last):
...
airflow_genius.core.state.values.UnstorableValue: result['loss']: expected a finite number (JSON has no NaN or Infinity), got nan
>>> storable_error({"type": "ValueError", "message": "bad\\x00value"})["message"]
'bad\\\\x00value'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from airflow_genius.core.errors import GeniusError

#: Deepest nesting of lists/dicts a stored value may have.
MAX_DEPTH = 64


class UnstorableValue(GeniusError, ValueError):
    """A value a state store cannot hold the same way on every backend (bad input: exit code 2)."""


def find_unstorable(
    value: Any, *, allow_nul: bool = False, max_depth: int = MAX_DEPTH
) -> tuple[tuple[str | int, ...], str, Any] | None:
    """The first thing in ``value`` JSON cannot carry the same way everywhere, or None.

    Returns ``(path, problem, offending value)``; the path is the keys and indexes that lead to it.
    Iterative, so a hostile depth never meets Python's recursion limit; paths are built on error only.

    >>> find_unstorable({"a": [1, float("inf")]})
    (('a', 1), 'expected a finite number (JSON has no NaN or Infinity)', inf)
    """
    stack: list[tuple[Any, Any, int]] = [(value, None, 0)]
    while stack:
        item, path, depth = stack.pop()
        problem: str | None = None
        if item is None or isinstance(item, (bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                problem = "expected a finite number (JSON has no NaN or Infinity)"
        elif isinstance(item, str):
            problem = _text_problem(item, allow_nul=allow_nul)
        elif isinstance(item, (list, tuple, dict)):
            if depth >= max_depth:
                problem = f"nested deeper than {max_depth} levels"
            elif isinstance(item, dict):
                for key, inner in item.items():
                    if not isinstance(key, str):
                        return _unwind(path), f"a key is a {type(key).__name__}, not text", key
                    key_problem = _text_problem(key, allow_nul=allow_nul)
                    if key_problem:
                        return _unwind(path), f"a key {key_problem}", key
                    stack.append((inner, (path, key), depth + 1))
            else:
                stack.extend((inner, (path, index), depth + 1) for index, inner in enumerate(item))
        else:
            problem = (
                f"a {type(item).__name__} is not JSON (store dicts, lists, text, numbers, booleans, None)"
            )
        if problem:
            return _unwind(path), problem, item
    return None


def check_storable(value: Any, where: str) -> None:
    """Raise :class:`UnstorableValue` if ``value`` cannot be stored losslessly on every backend."""
    found = find_unstorable(value)
    if found is None:
        return
    path, problem, value = found
    located = where + "".join(f"[{_short(part) if isinstance(part, str) else part}]" for part in path)
    shown = repr(value) if isinstance(value, (str, int, float)) else type(value).__name__
    raise UnstorableValue(f"{located}: {problem}, got {shown if len(shown) <= 80 else shown[:77] + '...'}")


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (``"\\ud800"`` in JSON): not Unicode text, and every
    UTF-8 encoder (SQLite, PostgreSQL, Redis, logs) fails on it.

    >>> has_lone_surrogate("run" + chr(0xD800)), has_lone_surrogate("ok")
    (True, False)
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _text_problem(text: str, *, allow_nul: bool) -> str | None:
    if not allow_nul and "\x00" in text:
        return "contains a NUL character, which no store keeps as text"
    if has_lone_surrogate(text):
        return "contains a lone surrogate, which is not text"
    return None


def _unwind(path: Any) -> tuple[str | int, ...]:
    parts: list[str | int] = []
    while path is not None:
        path, key = path
        parts.append(key)
    return tuple(reversed(parts))


def storable_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """``error`` with every string made storable: NUL and lone surrogates escaped as ``\\x00``/``\\udc80``.

    Structure is kept; what is nested deeper than ``MAX_DEPTH`` or is not JSON becomes its text.
    """
    return {_escape_text(str(key)): _escape(value, 1) for key, value in error.items()}


def storable_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``metrics`` with every value a store cannot hold replaced by its text (for a failed run's record).

    >>> storable_metrics({"rows": 3, "loss": float("nan")})
    {'rows': 3, 'loss': 'nan'}
    """
    return {
        _escape_text(str(name)): value if find_unstorable(value) is None else _escape_text(repr(value))
        for name, value in metrics.items()
    }


def _escape(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _escape_text(value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth < MAX_DEPTH and isinstance(value, dict):
        return {_escape_text(str(key)): _escape(inner, depth + 1) for key, inner in value.items()}
    if depth < MAX_DEPTH and isinstance(value, (list, tuple)):
        return [_escape(inner, depth + 1) for inner in value]
    return _escape_text(repr(value) if isinstance(value, (dict, list, tuple)) else str(value))


def _escape_text(text: str) -> str:
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _short(key: str) -> str:
    shown = repr(key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00"))
    return shown if len(shown) <= 40 else shown[:37] + "...'"
