"""``get_provider_info()``: how Airflow discovers this provider (entry point ``apache_airflow_provider``).

Kept import-light: Airflow calls it while loading providers, before any DAG is parsed.
"""

from __future__ import annotations

from typing import Any

from airflow_genius import __version__

PACKAGE_NAME = "airflow-provider-genius"
#: One module per runner (docs/architecture.md#runners); each imports its official provider only when used.
OPERATOR_MODULES = (
    "airflow_genius.operators.local",
    "airflow_genius.operators.local_service",
    "airflow_genius.operators.docker",
    "airflow_genius.operators.docker_service",
    "airflow_genius.operators.kubernetes",
    "airflow_genius.operators.kubernetes_service",
    "airflow_genius.operators.ecs",
    "airflow_genius.operators.ecs_service",
    "airflow_genius.operators.batch",
    "airflow_genius.operators.slurm",
    "airflow_genius.operators.slurm_service",
)
TRIGGER_MODULES = (
    "airflow_genius.triggers.slurm",
    "airflow_genius.triggers.slurm_rest",
    "airflow_genius.triggers.kubernetes",
    "airflow_genius.triggers.ecs",
    "airflow_genius.triggers.batch",
)


def get_provider_info() -> dict[str, Any]:
    """Provider metadata: hooks, connection forms, operators, links and the ``[genius]`` config."""
    from airflow_genius.config import GENIUS_CONFIG
    from airflow_genius.hooks.forms import CONN_FIELDS, UI_FIELD_BEHAVIOUR
    from airflow_genius.xcom.config import XCOM_CONFIG

    hooks = {
        "genius_sqlite": ("hooks.state.GeniusSqliteStateHook", "Genius state (SQLite)"),
        "genius_redis": ("hooks.state.GeniusRedisStateHook", "Genius state (Redis)"),
        "genius_postgres": ("hooks.state.GeniusPostgresStateHook", "Genius state (PostgreSQL)"),
        "genius_dynamodb": ("hooks.state.GeniusDynamoDBStateHook", "Genius state (DynamoDB)"),
        "genius_slurm_rest": ("hooks.slurm_rest.SlurmRestHook", "Slurm (slurmrestd)"),
    }
    config = {
        "genius": {
            "description": GENIUS_CONFIG["description"],
            "options": {**GENIUS_CONFIG["options"], **XCOM_CONFIG["genius"]["options"]},
        }
    }
    return {
        "package-name": PACKAGE_NAME,
        "name": "Genius",
        "description": "Geniusrise-style spouts and bolts: one task class, run in the worker, in a pod, "
        "on ECS or AWS Batch, in Docker, or on Slurm over SSH.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Genius",
                "external-doc-url": "https://pypi.org/project/airflow-provider-genius/",
                "tags": ["software"],
            }
        ],
        "operators": [{"integration-name": "Genius", "python-modules": list(OPERATOR_MODULES)}],
        "hooks": [
            {
                "integration-name": "Genius",
                "python-modules": [
                    "airflow_genius.hooks.state",
                    "airflow_genius.hooks.slurm",
                    "airflow_genius.hooks.slurm_rest",
                ],
            }
        ],
        "triggers": [{"integration-name": "Genius", "python-modules": list(TRIGGER_MODULES)}],
        "connection-types": [
            {
                "hook-class-name": f"airflow_genius.{class_path}",
                "hook-name": hook_name,
                "connection-type": conn_type,
                "conn-fields": CONN_FIELDS[conn_type],
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR[conn_type],
            }
            for conn_type, (class_path, hook_name) in hooks.items()
        ],
        # Streams as Assets: a producer's and a consumer's stream URIs name one Asset (docs/lineage.md).
        "asset-uris": [
            {
                "schemes": ["redis", "rediss", "sqlite"],
                "handler": "airflow_genius.operators.lineage.sanitize_stream_uri",
                "factory": "airflow_genius.operators.lineage.create_stream_asset",
                "to_openlineage_converter": "airflow_genius.operators.lineage.convert_stream_asset_to_openlineage",
            }
        ],
        "extra-links": [
            "airflow_genius.links.output.GeniusOutputLink",
            "airflow_genius.links.record.GeniusRecordLink",
        ],
        "config": config,
    }
