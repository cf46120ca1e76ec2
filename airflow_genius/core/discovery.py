"""Find genius task classes: by import path, in a module, or through an entry point group.

>>> from airflow_genius.core.discovery import describe
>>> describe(load_task_class("airflow_genius.examples.tasks:WordCount"))["kind"]
'bolt'
"""

from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any

from airflow_genius.core.errors import TaskImportError
from airflow_genius.core.task import Bolt, Spout, Task

#: Packages advertise their task classes (or modules of them) in this entry point group.
ENTRY_POINT_GROUP = "genius.tasks"


def load_task_class(class_path: str) -> type[Task]:
    """Import ``package.module:ClassName`` and check it is a genius Task.

    Every failure is a :class:`TaskImportError` with a one-line message.
    """
    module_name, sep, qualname = class_path.partition(":")
    if not sep or not module_name or not qualname:
        raise TaskImportError(f"task class {class_path!r}: expected 'package.module:ClassName'")
    module = _import_module(module_name, class_path)
    target: Any = module
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise TaskImportError(
                f"task class {class_path!r}: module {module_name!r} has no {qualname!r}"
            ) from None
    if not (isinstance(target, type) and issubclass(target, Task)):
        raise TaskImportError(
            f"task class {class_path!r}: {qualname!r} is not a subclass of airflow_genius.core.Task "
            "(derive it from Spout or Bolt)"
        )
    if target in (Task, Spout, Bolt):
        raise TaskImportError(f"task class {class_path!r}: name your own subclass, not the base class")
    return target


def tasks_in_module(module_name: str) -> list[type[Task]]:
    """Task classes defined in ``module_name`` (not those it merely imports), by name."""
    module = _import_module(module_name, module_name)
    return sorted(
        (
            member
            for member in vars(module).values()
            if isinstance(member, type)
            and issubclass(member, Task)
            and member not in (Task, Spout, Bolt)
            and member.__module__ == module.__name__
        ),
        key=lambda cls: cls.__name__,
    )


def tasks_from_entry_points(group: str = ENTRY_POINT_GROUP) -> list[type[Task]]:
    """Task classes advertised by installed packages: an entry point names a class or a module."""
    found: dict[str, type[Task]] = {}
    for entry in entry_points(group=group):
        value = entry.value.strip()
        classes = [load_task_class(value)] if ":" in value else tasks_in_module(value)
        for cls in classes:
            found[class_path_of(cls)] = cls
    return [found[name] for name in sorted(found)]


def class_path_of(cls: type) -> str:
    """``package.module:ClassName`` of a class (what a TaskSpec names)."""
    return f"{cls.__module__}:{cls.__qualname__}"


def describe(cls: type[Task]) -> dict[str, Any]:
    """A JSON-ready description: class path, kind, docstring, and each task method's signature."""
    return {
        "class": class_path_of(cls),
        "kind": cls.kind,
        "doc": inspect.getdoc(cls) or "",
        "methods": [
            {
                "name": name,
                "signature": f"{name}{_without_self(signature)}",
                "doc": inspect.getdoc(getattr(cls, name)) or "",
            }
            for name, signature in sorted(cls.task_methods().items())
        ],
    }


def _without_self(signature: inspect.Signature) -> inspect.Signature:
    params = list(signature.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return signature.replace(parameters=params)


def _import_module(module_name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise TaskImportError(
            f"task class {what!r}: cannot import {exc.name or module_name!r} ({exc})"
        ) from None
    except Exception as exc:  # the user's module raised while importing
        raise TaskImportError(
            f"task class {what!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}"
        ) from exc
