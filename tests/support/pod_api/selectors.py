"""Kubernetes label and field selectors, as the Pod API server evaluates them.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, ``a in (x,y)``, ``a notin (x,y)``, joined by
commas (KPO sends ``dag_id=d,task_id=t,run_id=r,already_checked!=True,!airflow-worker``).
Field selectors: ``path=value``, ``path==value``, ``path!=value`` over dotted paths of the object
(``metadata.name``, ``status.phase``, ``involvedObject.name``).

>>> matches_labels({"a": "1", "b": "2"}, "a=1,b!=3,!c")
True
>>> matches_fields({"involvedObject": {"name": "p"}}, "involvedObject.name=p")
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SET = re.compile(r"^\s*(!?[\w./-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


class SelectorError(ValueError):
    """A selector this server does not understand (answered with 400, as the apiserver does)."""


def _split(selector: str) -> list[str]:
    """Split on commas outside parentheses (``a in (x,y),b=c`` has two requirements)."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def matches_labels(labels: Mapping[str, str] | None, selector: str | None) -> bool:
    """Whether ``labels`` satisfy the label ``selector`` (empty selector: everything)."""
    labels = labels or {}
    for requirement in _split(selector or ""):
        if match := _SET.match(requirement):
            key, op, values = match.group(1), match.group(2), {v.strip() for v in match.group(3).split(",")}
            if op == "in" and labels.get(key) not in values:
                return False
            if op == "notin" and key in labels and labels[key] in values:
                return False
        elif "!=" in requirement:
            key, value = (s.strip() for s in requirement.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in requirement:
            key, value = (s.strip() for s in requirement.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif requirement.startswith("!"):
            if requirement[1:].strip() in labels:
                return False
        elif re.fullmatch(r"[\w./-]+", requirement):
            if requirement not in labels:
                return False
        else:
            raise SelectorError(f"unable to parse requirement: {requirement!r}")
    return True


def _field(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def matches_fields(obj: Mapping[str, Any], selector: str | None) -> bool:
    """Whether ``obj`` satisfies the field ``selector``."""
    for requirement in _split(selector or ""):
        if "!=" in requirement:
            path, value = (s.strip() for s in requirement.split("!=", 1))
            if _field(obj, path) == value:
                return False
        elif "=" in requirement:
            path, value = (s.strip() for s in requirement.replace("==", "=").split("=", 1))
            if _field(obj, path) != value:
                return False
        else:
            raise SelectorError(f"invalid field selector: {requirement!r}")
    return True
