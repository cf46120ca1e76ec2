"""Helpers shared by the XCom backend tests (importable as ``xcom_helpers``; pytest puts this folder on
``sys.path``)."""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Any

#: What Airflow hands to deserialize_value / purge: any object with a ``value`` attribute.
Row = collections.namedtuple("Row", "value")

#: Coordinates of the XCom in most tests.
COORDS: dict[str, Any] = {
    "key": "return_value",
    "dag_id": "etl",
    "run_id": "manual__2024-01-01T00:00:00+00:00",
    "task_id": "extract",
    "map_index": -1,
}

#: The threshold of the ``xcom_root`` fixture: values with more compact-JSON bytes are offloaded.
THRESHOLD = 1024


def through_db(value: Any) -> Any:
    """What comes back from Airflow's metadata DB for a serialized value (a JSON column)."""
    return json.loads(json.dumps(value))


def is_reference(stored: Any) -> bool:
    """True if an XCom row value is a genius reference."""
    return isinstance(stored, dict) and stored.get("__genius_xcom__") == 1 and "uri" in stored


def files_under(root: Path) -> list[Path]:
    """Every file below ``root`` (none if it does not exist)."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
