"""Connection forms of the state hooks and the slurmrestd hook, as data (no Airflow import: get_provider_info() reads them
while Airflow is still starting up)."""

from __future__ import annotations

from typing import Any

#: Connection forms (Airflow ≥ 3.2 reads these from get_provider_info()["connection-types"]).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "genius_sqlite": {
        "path": {
            "label": "Database file",
            "schema": {"type": ["string", "null"]},
            "description": "Path of the SQLite file on the worker (default .genius/state.db)",
        },
    },
    "genius_redis": {
        "db": {"label": "Database number", "schema": {"type": ["integer", "null"], "default": 0}},
        "prefix": {"label": "Key prefix", "schema": {"type": ["string", "null"], "default": "genius"}},
        "ssl": {"label": "Use TLS (rediss://)", "schema": {"type": ["boolean", "null"], "default": False}},
    },
    "genius_postgres": {
        "table_prefix": {
            "label": "Table prefix",
            "schema": {"type": ["string", "null"], "default": "genius"},
        },
        "sslmode": {"label": "SSL mode", "schema": {"type": ["string", "null"]}},
    },
    "genius_dynamodb": {
        "table": {"label": "Table", "schema": {"type": "string"}},
        "region": {"label": "Region", "schema": {"type": ["string", "null"]}},
        "create": {
            "label": "Create the table if missing",
            "schema": {"type": ["boolean", "null"], "default": False},
        },
        "aws_conn_id": {
            "label": "AWS connection id",
            "schema": {"type": ["string", "null"]},
            "description": "Credentials from this amazon-provider connection; empty: boto3 default chain",
        },
    },
    "genius_slurm_rest": {
        "jwt_key_path": {
            "label": "JWT signing key file",
            "schema": {"type": ["string", "null"]},
            "description": "A file on the worker holding slurmctld's jwt_key: tokens are minted and refreshed",
        },
        "api_version": {
            "label": "API version",
            "schema": {"type": ["string", "null"]},
            "description": "e.g. v0.0.38; empty: the newest the server's OpenAPI document offers",
        },
        "token_lifespan": {
            "label": "Token lifespan (seconds)",
            "schema": {"type": ["integer", "null"], "default": 1800},
        },
        "shared_paths": {
            "label": "Shared folders",
            "schema": {"type": ["array", "null"], "items": {"type": "string"}},
            "description": "Folders mounted at the same path here and on the nodes: job files there need no SSH",
        },
    },
}

UI_FIELD_BEHAVIOUR: dict[str, dict[str, Any]] = {
    "genius_sqlite": {
        "hidden-fields": ["host", "schema", "login", "password", "port", "extra"],
        "relabeling": {},
        "placeholders": {"path": "/var/lib/airflow/genius/state.db"},
    },
    "genius_redis": {
        "hidden-fields": ["schema", "extra"],
        "relabeling": {"login": "ACL user (optional)"},
        "placeholders": {"host": "redis", "port": "6379"},
    },
    "genius_postgres": {
        "hidden-fields": ["extra"],
        "relabeling": {"schema": "Database"},
        "placeholders": {"host": "postgres", "port": "5432", "schema": "genius"},
    },
    "genius_dynamodb": {
        "hidden-fields": ["host", "schema", "login", "password", "port", "extra"],
        "relabeling": {},
        "placeholders": {"table": "genius-state", "region": "eu-west-1"},
    },
    "genius_slurm_rest": {
        "hidden-fields": ["schema"],
        "relabeling": {"host": "slurmrestd URL", "login": "Slurm user", "password": "Token (optional)"},
        "placeholders": {
            "host": "http://slurm-rest:6820",
            "login": "alice",
            "extra": '{"jwt_key_path": "/etc/slurm/jwt_hs256.key", "api_version": "v0.0.38"}',
        },
    },
}
