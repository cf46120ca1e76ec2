"""Container environments: one check for every runner's request builder (no engine, no cluster, no AWS).

Every name a user hands a container runner must be a POSIX name and none of the names genius sets itself
(``GENIUS_TASK_SPEC``, ``GENIUS_STATE_PASSWORD``); the refusal is one line naming the key, never a value.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client import models as k8s

from airflow_genius.core.spec import build_spec
from airflow_genius.operators.batch import batch_container_overrides
from airflow_genius.operators.container import SPEC_ENV, check_environment, container_launch
from airflow_genius.operators.docker_request import docker_request
from airflow_genius.operators.ecs import ecs_overrides
from airflow_genius.operators.kubernetes_request import pod_request

VALUE = "evil-value-0xC0FFEE"
PASSWORD = "s3cr3t-pa55word"

BAD_NAMES = [
    pytest.param("1 BAD NAME", id="space-and-digit"),
    pytest.param("GENIUS_STATE_PASSWORD=evil", id="equals"),
    pytest.param("A=B", id="short-equals"),
    pytest.param("NUL\x00NAME", id="nul"),
    pytest.param("NEW\nLINE", id="newline"),
    pytest.param("", id="empty"),
    pytest.param("9LIVES", id="leading-digit"),
    pytest.param("with-dash", id="dash"),
    pytest.param("ÜMLAUT", id="non-ascii"),
]
RESERVED = [pytest.param(SPEC_ENV, id="spec"), pytest.param("GENIUS_STATE_PASSWORD", id="password")]


def launch(**kwargs: Any):  # type: ignore[no-untyped-def]
    spec = build_spec("pkg.mod:Task", "go", dag_id="d", task_id="t", run_id="r", state_uri="redis://cache/0")
    return container_launch(spec, **kwargs)


def refused(build: Any, *, key: str) -> str:
    """Run ``build``; it must raise one ``ValueError`` line naming ``key`` and not showing the value."""
    with pytest.raises(ValueError) as caught:
        build()
    message = str(caught.value)
    assert "\n" not in message and VALUE not in message
    assert repr(key) in message
    return message


@pytest.mark.parametrize("name", [*BAD_NAMES, *RESERVED])
def test_plain_environment_of_every_launch(name: str) -> None:
    # Docker, ECS and Batch hand their `environment` to the launch as extra_env.
    message = refused(lambda: launch(extra_env={name: VALUE}), key=name)
    assert message.startswith("environment: ")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_docker_private_environment(name: str) -> None:
    message = refused(lambda: docker_request(launch(), private_environment={name: VALUE}), key=name)
    assert message.startswith("private_environment: ")


def test_docker_private_environment_may_carry_the_state_password_the_launch_does_not() -> None:
    # With a state_uri (no connection) the password reaches the container only this way.
    request = docker_request(launch(), private_environment={"GENIUS_STATE_PASSWORD": PASSWORD})
    assert request.private_environment == {"GENIUS_STATE_PASSWORD": PASSWORD}
    with_secret = launch(secret_env={"GENIUS_STATE_PASSWORD": PASSWORD})
    refused(lambda: docker_request(with_secret, private_environment={"GENIUS_STATE_PASSWORD": VALUE}),
            key="GENIUS_STATE_PASSWORD")  # fmt: skip


@pytest.mark.parametrize("name", [*BAD_NAMES, *RESERVED])
def test_kubernetes_env_vars(name: str) -> None:
    message = refused(lambda: pod_request(launch(), secret_name="s", env_vars={name: VALUE}), key=name)
    assert message.startswith("env_vars: ")


def test_kubernetes_may_reference_the_users_own_secret_for_the_password() -> None:
    ref = k8s.V1EnvVar(
        name="GENIUS_STATE_PASSWORD",
        value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name="team-db", key="pw")),
    )
    request = pod_request(launch(), secret_name="s", env_vars=[ref])
    assert request.env_vars[0] == ref
    bad_ref = k8s.V1EnvVar(name="1 BAD", value_from=ref.value_from)
    refused(lambda: pod_request(launch(), secret_name="s", env_vars=[bad_ref]), key="1 BAD")


@pytest.mark.parametrize("name", [*BAD_NAMES[:4], pytest.param("GENIUS_STATE_PASSWORD", id="password")])
def test_aws_overrides_environment(name: str) -> None:
    base = [{"name": "KEEP", "value": "1"}, {"name": name, "value": VALUE}]
    ecs = refused(
        lambda: ecs_overrides(launch(), container_name="g", base={"containerOverrides": [{"name": "g", "environment": base}]}),
        key=name,
    )  # fmt: skip
    batch = refused(lambda: batch_container_overrides(launch(), base={"environment": base}), key=name)
    assert ecs.startswith("environment overrides: ") and batch.startswith("environment overrides: ")


def test_a_stale_spec_in_aws_overrides_is_replaced_not_refused() -> None:
    # An earlier try's overrides carry the TaskSpec: a retry replaces it.
    base = {"environment": [{"name": SPEC_ENV, "value": "stale"}]}
    overrides = batch_container_overrides(launch(), base=base)
    (spec,) = [e["value"] for e in overrides["environment"] if e["name"] == SPEC_ENV]
    assert spec != "stale"


@pytest.mark.parametrize("value", ["a\x00b", "\x00"])
def test_a_nul_in_a_value_is_refused(value: str) -> None:
    message = refused(lambda: launch(extra_env={"GOOD_NAME": value}), key="GOOD_NAME")
    assert "NUL" in message


def test_good_names_pass_everywhere() -> None:
    env = {"HF_HOME": "/cache", "_PRIVATE": "1", "a1": "x", "AWS_DEFAULT_REGION": "eu-west-1"}
    check_environment(env, where="environment")
    assert set(launch(extra_env=env).env) == {*env, SPEC_ENV}
    assert [e.name for e in pod_request(launch(), secret_name="s", env_vars=env).env_vars][:4] == list(env)
