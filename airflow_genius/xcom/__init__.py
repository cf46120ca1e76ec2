"""The genius XCom backend (large values in an object store, a small reference in Airflow's DB).

Enable it with ``[core] xcom_backend = airflow_genius.xcom.GeniusXComBackend``; see
:mod:`airflow_genius.xcom.backend` for the ``[genius] xcom_*`` options.

``GeniusXComBackend`` is imported lazily, so ``airflow_genius.xcom.config`` (read by
``get_provider_info()`` while Airflow discovers providers) does not pull in the task SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_genius.xcom._store import XComStoreError
    from airflow_genius.xcom.backend import GeniusXComBackend

__all__ = ["GeniusXComBackend", "XComStoreError"]


def __getattr__(name: str) -> Any:
    if name == "GeniusXComBackend":
        from airflow_genius.xcom.backend import GeniusXComBackend

        return GeniusXComBackend
    if name == "XComStoreError":
        from airflow_genius.xcom._store import XComStoreError

        return XComStoreError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
