"""Backend classes by URI scheme, imported only when a URI asks for them (state and model stores).

>>> from airflow_genius.core.errors import StateError
>>> stores = SchemeRegistry("state", {"memory": "airflow_genius.core.state.memory:MemoryStateManager"}, StateError)
>>> stores.schemes
('memory',)
>>> stores.class_for("memory://").__name__
'MemoryStateManager'
>>> stores.class_for("mongo://db/x")
Traceback (most recent call last):
...
airflow_genius.core.errors.StateError: unknown state store scheme 'mongo' in 'mongo://db/x'; expected one of memory
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Generic, TypeVar

from airflow_genius.core.uris import redact, split_uri

T = TypeVar("T")


class SchemeRegistry(Generic[T]):
    """Maps URI schemes to ``"module:Class"`` targets; the module is imported at the first lookup.

    Lazy imports keep optional libraries (redis, psycopg, boto3, wandb) needed only for the store in use.
    """

    def __init__(self, kind: str, targets: Mapping[str, str], error: type[Exception]) -> None:
        #: What the stores are called in errors ("state", "model").
        self.kind = kind
        self._targets = dict(targets)
        self._error = error
        #: The schemes known, sorted (what the unknown-scheme error lists).
        self.schemes: tuple[str, ...] = tuple(sorted(self._targets))

    def class_for(self, uri: object) -> type[T]:
        """The class registered for ``uri``'s scheme (case-insensitive); the registry's error otherwise."""
        scheme = split_uri(uri).scheme.lower() if isinstance(uri, str) else ""
        target = self._targets.get(scheme)
        if target is None:
            shown = redact(uri) if isinstance(uri, str) else repr(uri)
            raise self._error(
                f"unknown {self.kind} store scheme {scheme!r} in {shown!r}; "
                f"expected one of {', '.join(self.schemes)}"
            )
        module_name, _, class_name = target.partition(":")
        return getattr(importlib.import_module(module_name), class_name)  # type: ignore[no-any-return]
