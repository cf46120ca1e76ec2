"""The pure request builder of the Docker runner (no engine, no Airflow in this process)."""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from airflow_genius.core.spec import build_spec
from airflow_genius.operators.container import CONTAINER_ARGS, SPEC_ENV, container_launch
from airflow_genius.operators.docker_request import (
    LABEL_PREFIX,
    belongs_to,
    container_name_for,
    docker_request,
)

PASSWORD = "s3cr3t-pa55word"


def launch(**kwargs):  # type: ignore[no-untyped-def]
    spec = build_spec(
        "airflow_genius.examples.tasks:Echo", "say", args=["hi"], dag_id="etl", task_id="clean",
        run_id="manual__2026-01-01T00:00:00+00:00", map_index=2, try_number=3,
        state_uri="postgresql://genius@db:5432/airflow",
    )  # fmt: skip
    return container_launch(spec, secret_env={"GENIUS_STATE_PASSWORD": PASSWORD}, **kwargs)


def test_command_keeps_the_entrypoint_and_secrets_stay_private() -> None:
    request = docker_request(launch(extra_env={"HF_HOME": "/cache"}))
    # the arguments after the image's `genius` ENTRYPOINT; nothing replaces the entrypoint
    assert request.command == list(CONTAINER_ARGS) == ["run", "--spec-env", SPEC_ENV]
    assert set(request.environment) == {"HF_HOME", SPEC_ENV}
    assert request.private_environment == {"GENIUS_STATE_PASSWORD": PASSWORD}
    # the spec travels whole in the plain environment, without the password
    spec = json.loads(request.environment[SPEC_ENV])
    assert spec["task"] == {
        "class": "airflow_genius.examples.tasks:Echo",
        "method": "say",
        "args": ["hi"],
        "kwargs": {},
    }
    assert spec["run"]["task_id"] == "clean" and spec["state"]["uri"] == "postgresql://genius@db:5432/airflow"
    everything_public = json.dumps([request.command, request.environment, request.labels])
    assert PASSWORD not in everything_public


def test_user_private_environment_is_kept_but_cannot_shadow_the_launch() -> None:
    request = docker_request(launch(), private_environment={"HF_TOKEN": "hf_x"})
    assert request.private_environment == {"HF_TOKEN": "hf_x", "GENIUS_STATE_PASSWORD": PASSWORD}
    with pytest.raises(ValueError, match="GENIUS_STATE_PASSWORD"):
        docker_request(launch(), private_environment={"GENIUS_STATE_PASSWORD": "other"})
    with pytest.raises(ValueError, match=SPEC_ENV):
        docker_request(launch(), private_environment={SPEC_ENV: "{}"})
    with pytest.raises(ValueError, match="reserved"):  # a plain env cannot smuggle them either
        launch(extra_env={"GENIUS_STATE_PASSWORD": "x"})


def test_labels_name_the_task_instance() -> None:
    identity = {
        f"{LABEL_PREFIX}dag_id": "etl",
        f"{LABEL_PREFIX}task_id": "clean",
        f"{LABEL_PREFIX}run_id": "manual__2026-01-01T00:00:00+00:00",
        f"{LABEL_PREFIX}map_index": "2",
        f"{LABEL_PREFIX}try_number": "3",
    }
    assert docker_request(launch()).labels == identity
    assert docker_request(launch(), labels={"team": "ml"}).labels == {"team": "ml", **identity}
    assert docker_request(launch(), labels=["adhoc"]).labels == {"adhoc": "", **identity}
    who = {"dag_id": "etl", "task_id": "clean", "run_id": "manual__2026-01-01T00:00:00+00:00", "map_index": 2}
    assert belongs_to(identity, who)
    assert not belongs_to(identity, {**who, "map_index": 3})
    assert not belongs_to(None, who) and not belongs_to({"team": "ml"}, who)


def test_container_name_is_deterministic_valid_and_unique_per_task_instance() -> None:
    name = container_name_for("etl", "clean", "manual__2026-01-01T00:00:00+00:00", 2)
    assert name == container_name_for("etl", "clean", "manual__2026-01-01T00:00:00+00:00", 2)
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name)
    others = {
        container_name_for("etl", "clean", "manual__2026-01-01T00:00:00+00:00", 3),
        container_name_for("etl", "clean", "manual__2026-01-02T00:00:00+00:00", 2),
        container_name_for("etl", "clean2", "manual__2026-01-01T00:00:00+00:00", 2),
        container_name_for(
            "etl-clean", "", "manual__2026-01-01T00:00:00+00:00", 2
        ),  # no ambiguity by joining
    }
    assert name not in others and len(others) == 4
    long = container_name_for("d" * 300, "t/ä 🙂" * 50, "r" * 300)
    assert len(long) <= 100 and re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", long)


@pytest.mark.airflow
def test_operator_defaults_and_refusals(run_python, airflow_env: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """The operator module imports without Docker, keeps DockerOperator's template fields, adds its own,
    and refuses a `command` (the genius launch sets it)."""
    code = textwrap.dedent(
        """
        import json
        from airflow.providers.docker.operators.docker import DockerOperator
        from airflow_genius.operators.docker import DEFAULT_IMAGE, GeniusDockerBoltOperator, GeniusDockerOperator
        op = GeniusDockerBoltOperator(task_id="t", task_class="m:C", method="go", docker_url="unix:///nowhere.sock")
        try:
            GeniusDockerOperator(task_id="u", task_class="m:C", method="go", command=["echo"])
            refused = False
        except ValueError as exc:
            refused = "sets `command`" in str(exc)
        print(json.dumps({
            "image": op.image, "default": DEFAULT_IMAGE, "kind": op.genius_kind, "auto_remove": op.auto_remove,
            "tmp": op.mount_tmp_dir, "fields": list(op.template_fields),
            "docker_fields": list(DockerOperator.template_fields), "refused": refused,
        }))
        """
    )
    done = run_python(code, airflow_env)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["image"] == out["default"] and re.fullmatch(
        r"airflow-genius-runtime:\d+\.\d+\.\d+.*", out["image"]
    )
    assert out["kind"] == "bolt" and out["auto_remove"] == "force" and out["tmp"] is False
    assert "genius_call" in out["fields"] and set(out["docker_fields"]) <= set(out["fields"])
    assert out["refused"]
