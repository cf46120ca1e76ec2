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
airflow_genius.core.state.values.UnstorableValue: result['loss']: NaN cannot be stored (JSON has no NaN or Infinity); return None or a string instead
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


def check_storable(value: Any, where: str) -> None:
    """Raise :class:`UnstorableValue` if ``value`` cannot be stored losslessly on every backend."""
    # Iterative walk: a hostile value must not turn into a RecursionError.
    stack: list[tuple[Any, str, int]] = [(value, where, 0)]
    while stack:
        item, path, depth = stack.pop()
        if item is None or isinstance(item, (bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                name = "NaN" if math.isnan(item) else ("Infinity" if item > 0 else "-Infinity")
                raise UnstorableValue(
                    f"{path}: {name} cannot be stored (JSON has no NaN or Infinity); "
                    "return None or a string instead"
                )
            continue
        if isinstance(item, str):
            _check_text(item, path)
            continue
        if isinstance(item, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                raise UnstorableValue(f"{path}: nested deeper than {MAX_DEPTH} levels cannot be stored")
            if isinstance(item, dict):
                for key, inner in item.items():
                    if not isinstance(key, str):
                        raise UnstorableValue(
                            f"{path}: key {key!r} is a {type(key).__name__}; stored mappings need string keys"
                        )
                    _check_text(key, f"{path} key {_short(key)}")
                    stack.append((inner, f"{path}[{_short(key)}]", depth + 1))
            else:
                stack.extend((inner, f"{path}[{index}]", depth + 1) for index, inner in enumerate(item))
            continue
        raise UnstorableValue(
            f"{path}: a {type(item).__name__} is not JSON; store dicts, lists, strings, numbers, "
            "booleans or None"
        )


def storable_error(error: Mapping[str, Any]) -> dict[str, Any]:
    """``error`` with every string made storable: NUL and lone surrogates escaped as ``\\x00``/``\\udc80``.

    Structure is kept; what is nested deeper than ``MAX_DEPTH`` or is not JSON becomes its text.
    """
    return {_escape_text(str(key)): _escape(value, 1) for key, value in error.items()}


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


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise UnstorableValue(f"{path}: text with a NUL character cannot be stored; remove or escape it")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise UnstorableValue(
            f"{path}: text with a lone surrogate cannot be stored; it is not valid Unicode"
        ) from None


def _short(key: str) -> str:
    shown = repr(key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00"))
    return shown if len(shown) <= 40 else shown[:37] + "...'"
