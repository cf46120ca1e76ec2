"""The provider as Airflow sees it: the real `airflow` CLI in a fresh AIRFLOW_HOME."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(ROOT / ".venv" / "bin" / "airflow")


def airflow_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([AIRFLOW, *args], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_providers_list_shows_the_provider(airflow_env: dict[str, str]) -> None:
    out = airflow_cli(airflow_env, "providers", "list")
    row = next(line for line in out.splitlines() if line.startswith("airflow-provider-genius"))
    assert "0.1.0" in row


def test_providers_hooks_lists_every_state_hook(airflow_env: dict[str, str]) -> None:
    out = airflow_cli(airflow_env, "providers", "hooks")
    for conn_type, hook in [
        ("genius_sqlite", "GeniusSqliteStateHook"),
        ("genius_redis", "GeniusRedisStateHook"),
        ("genius_postgres", "GeniusPostgresStateHook"),
        ("genius_dynamodb", "GeniusDynamoDBStateHook"),
    ]:
        assert any(line.startswith(conn_type) and hook in line for line in out.splitlines()), conn_type


def test_providers_links_lists_the_output_and_record_links(airflow_env: dict[str, str]) -> None:
    out = airflow_cli(airflow_env, "providers", "links")
    assert (
        "airflow_genius.links.output.GeniusOutputLink" in out
        and "airflow_genius.links.record.GeniusRecordLink" in out
    )


def test_connection_forms_are_registered(airflow_env: dict[str, str]) -> None:
    out = airflow_cli(airflow_env, "providers", "widgets")
    for field in (
        "extra__genius_redis__prefix",
        "extra__genius_postgres__table_prefix",
        "extra__genius_dynamodb__table",
    ):
        assert field in out


def test_config_section_has_defaults(airflow_env: dict[str, str]) -> None:
    out = airflow_cli(airflow_env, "config", "get-value", "genius", "work_dir").strip()
    assert out.endswith("/genius/work")


def test_example_dags_import_without_errors(airflow_env: dict[str, str]) -> None:
    env = {**airflow_env, "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples")}
    # --local parses the folder now (not what a DAG processor stored earlier), so the check is real.
    errors = json.loads(
        airflow_cli(env, "dags", "list-import-errors", "--local", "-o", "json").splitlines()[-1]
    )
    assert errors == [], errors
    listed = airflow_cli(env, "dags", "list", "--local", "-o", "plain")
    for dag_id in (
        "genius_batch_pipeline",
        "genius_mapped_bolt",
        "genius_large_xcom",
        "genius_quotes_geniusfile",
        "genius_slurm_pipeline",
        "genius_slurm_service",
        "genius_docker_pipeline",
        "genius_kubernetes_pipeline",
        "genius_aws_batch_pipeline",
        "genius_ecs_pipeline",
    ):
        assert dag_id in listed


def test_providers_triggers_lists_the_runner_triggers(airflow_env: dict[str, str]) -> None:
    out = airflow_cli(airflow_env, "providers", "triggers")
    for runner in ("slurm", "kubernetes", "ecs", "batch"):
        assert f"airflow_genius.triggers.{runner}" in out
