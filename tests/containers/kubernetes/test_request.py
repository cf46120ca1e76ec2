"""The Kubernetes runner's pure request builder, and how the operator hands it to KPO (no cluster)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kubernetes.client import ApiClient
from kubernetes.client import models as k8s

from airflow_genius.core.spec import build_spec
from airflow_genius.operators.container import CONTAINER_ARGS, SPEC_ENV, container_launch
from airflow_genius.operators.kubernetes_request import MANAGED_BY, pod_request, secret_name_for

PASSWORD = "s3cr3t-pa55word"
SECRET = "genius-state-0123456789abcdef0123"


def launch(**kwargs: Any):  # type: ignore[no-untyped-def]
    spec = build_spec(
        "airflow_genius.examples.tasks:Echo", "say", args=["hi"], dag_id="etl", task_id="clean",
        run_id="manual__2026-01-01T00:00:00+00:00", map_index=2, try_number=3,
        state_uri="postgresql://genius@db:5432/airflow",
    )  # fmt: skip
    return container_launch(spec, secret_env={"GENIUS_STATE_PASSWORD": PASSWORD}, **kwargs)


def serialized(value: Any) -> str:
    """What the client sends to the apiserver."""
    return json.dumps(ApiClient().sanitize_for_serialization(value))


def test_arguments_keep_the_entrypoint_and_the_password_is_only_a_secret_ref() -> None:
    request = pod_request(launch(extra_env={"HF_HOME": "/cache"}), secret_name=SECRET)
    assert request.arguments == list(CONTAINER_ARGS) == ["run", "--spec-env", SPEC_ENV]
    by_name = {env.name: env for env in request.env_vars}
    assert list(by_name) == ["HF_HOME", SPEC_ENV, "GENIUS_STATE_PASSWORD"]
    assert by_name["HF_HOME"].value == "/cache" and by_name[SPEC_ENV].value_from is None
    spec = json.loads(by_name[SPEC_ENV].value)
    assert spec["run"]["task_id"] == "clean" and spec["state"]["uri"] == "postgresql://genius@db:5432/airflow"
    password = by_name["GENIUS_STATE_PASSWORD"]
    assert password.value is None
    assert password.value_from.secret_key_ref == k8s.V1SecretKeySelector(
        name=SECRET, key="GENIUS_STATE_PASSWORD"
    )
    # everything that goes into the pod spec is free of the password; only the Secret holds it
    assert PASSWORD not in serialized([request.arguments, request.env_vars])
    assert request.secret is not None
    assert request.secret.metadata.name == SECRET and request.secret.type == "Opaque"
    assert request.secret.string_data == {"GENIUS_STATE_PASSWORD": PASSWORD}
    assert request.secret.metadata.labels == MANAGED_BY


def test_user_env_comes_first_and_cannot_shadow_the_launch() -> None:
    listed = pod_request(launch(), secret_name=SECRET, env_vars=[k8s.V1EnvVar(name="A", value="1")])
    mapped = pod_request(launch(), secret_name=SECRET, env_vars={"A": "1"})
    assert listed.env_vars[0] == mapped.env_vars[0] == k8s.V1EnvVar(name="A", value="1")
    for name in (SPEC_ENV, "GENIUS_STATE_PASSWORD"):
        with pytest.raises(ValueError, match=name):
            pod_request(launch(), secret_name=SECRET, env_vars={name: "x"})


def test_a_user_managed_secret_is_referenced_not_created() -> None:
    request = pod_request(launch(), secret_name="team-db", create_secret=False)
    assert request.secret is None
    (ref,) = [env for env in request.env_vars if env.value_from is not None]
    assert ref.value_from.secret_key_ref.name == "team-db"
    assert PASSWORD not in serialized(request.env_vars)


def test_no_secret_env_no_secret() -> None:
    spec = build_spec("pkg.mod:Task", "go", dag_id="d", task_id="t", run_id="r")
    request = pod_request(container_launch(spec), secret_name=SECRET)
    assert request.secret is None and [env.name for env in request.env_vars] == [SPEC_ENV]


def test_secret_name_is_stable_per_task_instance_and_dns_safe() -> None:
    name = secret_name_for("etl", "clean", "manual__2026-01-01T00:00:00+00:00", 2)
    assert name == secret_name_for("etl", "clean", "manual__2026-01-01T00:00:00+00:00", 2)  # every try
    assert name != secret_name_for("etl", "clean", "manual__2026-01-01T00:00:00+00:00", 3)
    assert name != secret_name_for("etl", "clean", "scheduled__2026-01-01T00:00:00+00:00", 2)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


def test_operator_keeps_cmds_empty_and_never_adds_the_xcom_sidecar() -> None:
    from airflow_genius.operators.kubernetes import GeniusKubernetesBoltOperator, GeniusKubernetesOperator

    with pytest.raises(ValueError, match="ENTRYPOINT"):
        GeniusKubernetesOperator(task_id="t", task_class="a.b:C", method="m", image="i", cmds=["bash"])
    op = GeniusKubernetesBoltOperator(task_id="t", task_class="a.b:C", method="m", image="i", namespace="ns")
    assert op.genius_kind == "bolt" and op.cmds == [] and op.durable is True
    assert op.do_xcom_push is True  # the task runner pushes the genius result …
    assert "genius_call" in op.template_fields and "env_vars" in op.template_fields
    with op._kpo_running():  # … while KPO, which reads the same flag, sees it off: no sidecar
        pod = op.build_pod_request_obj(dry_run=True)
    assert op.do_xcom_push is True
    assert pod.metadata.namespace == "ns"
    assert [container.name for container in pod.spec.containers] == ["base"]


def test_namespace_is_kubernetes_and_state_namespace_is_the_task_state() -> None:
    from airflow_genius.operators.kubernetes import GeniusKubernetesOperator

    op = GeniusKubernetesOperator(
        task_id="t", task_class="a.b:C", method="m", image="i", namespace="pods", state_namespace="team"
    )
    assert (op.namespace, op.state_namespace) == ("pods", "team")
    default = GeniusKubernetesOperator(task_id="u", task_class="a.b:C", method="m", image="i")
    assert (default.namespace, default.state_namespace) == (
        None,
        "default",
    )  # KPO: connection's, else default


def test_the_trigger_keeps_kpos_arguments_and_adds_the_secret_cleanup() -> None:
    import datetime

    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger

    from airflow_genius.triggers.kubernetes import SECRET_KWARG, GeniusKubernetesPodTrigger

    kpo = KubernetesPodTrigger(
        pod_name="p", pod_namespace="ns", trigger_start_time=datetime.datetime.now(datetime.UTC),
        base_container_name="base", kubernetes_conn_id="k", poll_interval=3,
        trigger_kwargs={SECRET_KWARG: SECRET},
    )  # fmt: skip
    trigger = GeniusKubernetesPodTrigger.from_trigger(kpo)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_genius.triggers.kubernetes.GeniusKubernetesPodTrigger"
    assert kwargs == {**kpo.serialize()[1]} and trigger.secret_name == SECRET
