"""The provider's ``[genius]`` configuration section (Airflow side; the core reads none of this).

Defaults are declared in :data:`GENIUS_CONFIG`, which ``get_provider_info()`` publishes so that
``airflow config list`` shows them; values come from ``airflow.cfg`` or ``AIRFLOW__GENIUS__*`` variables.
"""

from __future__ import annotations

import os
from typing import Any

SECTION = "genius"

GENIUS_CONFIG: dict[str, Any] = {
    "description": "airflow-genius: where genius tasks keep state, stage data and offload large XComs.",
    "options": {
        "state_conn_id": {
            "description": "Default state connection of genius operators (a genius_sqlite, genius_redis, "
            "genius_postgres or genius_dynamodb connection). Empty: use state_uri.",
            "version_added": "0.1.0",
            "type": "string",
            "example": "genius_redis_default",
            "default": "",
        },
        "state_uri": {
            "description": "State store used when no state connection is set: the embedded SQLite default.",
            "version_added": "0.1.0",
            "type": "string",
            "example": "sqlite:////var/lib/airflow/genius/state.db",
            "default": "sqlite:///{AIRFLOW_HOME}/genius/state.db",
        },
        "work_dir": {
            "description": "Local folder where the worker mirrors S3 input and stages output.",
            "version_added": "0.1.0",
            "type": "string",
            "example": "/var/lib/airflow/genius/work",
            "default": "{AIRFLOW_HOME}/genius/work",
        },
        "dashboard_state_uris": {
            "description": "State stores the Genius dashboard lists, as URIs without passwords, separated by "
            "commas or whitespace. Empty (and no dashboard_state_conn_ids): the default store above.",
            "version_added": "0.1.0",
            "type": "string",
            "example": "sqlite:////var/lib/airflow/genius/state.db, redis://redis:6379/0",
            "default": "",
        },
        "dashboard_state_conn_ids": {
            "description": "Genius state connections the dashboard lists (comma separated), for stores "
            "with credentials.",
            "version_added": "0.1.0",
            "type": "string",
            "example": "genius_redis_default,genius_postgres_default",
            "default": "",
        },
    },
}


def _airflow_home() -> str:
    return os.environ.get("AIRFLOW_HOME") or os.path.expanduser("~/airflow")


def get(option: str) -> str:
    """An option of ``[genius]`` with ``{AIRFLOW_HOME}`` expanded (falls back to the declared default)."""
    from airflow.sdk.configuration import conf

    default = GENIUS_CONFIG["options"][option]["default"]
    value = conf.get(SECTION, option, fallback=default)
    return str(value).replace("{AIRFLOW_HOME}", _airflow_home())
