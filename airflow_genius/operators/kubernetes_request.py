"""The Kubernetes runner's request builder: a :class:`ContainerLaunch` in, KPO's ``arguments``,
``env_vars`` and the state Secret out. Pure (no cluster, no Airflow): unit-tested on its own.

>>> from airflow_genius.core.spec import build_spec
>>> from airflow_genius.operators.container import container_launch
>>> spec = build_spec("pkg.mod:Task", "go", dag_id="d", task_id="t", run_id="r")
>>> launch = container_launch(spec, secret_env={"GENIUS_STATE_PASSWORD": "pw"})
>>> request = pod_request(launch, secret_name=secret_name_for("d", "t", "r"))
>>> request.arguments
['run', '--spec-env', 'GENIUS_TASK_SPEC']
>>> [(env.name, env.value_from.secret_key_ref.name if env.value_from else "(value)") for env in request.env_vars]
[('GENIUS_TASK_SPEC', '(value)'), ('GENIUS_STATE_PASSWORD', 'genius-state-ea6759e29eeabe9c3ee7')]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kubernetes.client import models as k8s

from airflow_genius.core.naming import instance_digest
from airflow_genius.operators.container import RESERVED_ENV, ContainerLaunch, check_environment

#: Label on the Secrets this runner creates (find leftovers with ``-l app.kubernetes.io/managed-by=…``).
MANAGED_BY = {"app.kubernetes.io/managed-by": "airflow-genius"}


@dataclass(frozen=True)
class PodRequest:
    """What KPO gets for one launch: its ``arguments`` and ``env_vars``, and the Secret to create first."""

    arguments: list[str]
    env_vars: list[k8s.V1EnvVar]
    secret: k8s.V1Secret | None = None
    #: The Secret the secret variables reference (the one to create, or the user's).
    secret_name: str | None = None


def secret_name_for(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The Secret of one task instance: the same on every try (a retry replaces it), DNS-1123 safe.

    >>> secret_name_for("etl", "count", "manual__2026-01-01")
    'genius-state-792db8aba2e0583db725'
    """
    return f"genius-state-{instance_digest(dag_id, task_id, run_id, map_index, length=20)}"


def service_name_for(dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> str:
    """The pod and the Service of one service task instance: the same on every try (a retry finds the
    pod an earlier try started; the stop operator deletes both by it). An RFC 1035 label — a Service's
    name becomes a DNS name — made of the task id (lower case, other characters as ``-``) and a digest.

    >>> service_name_for("chat", "start_LLM", "manual__2026-01-01")
    'start-llm-eee2fecdb8'
    >>> service_name_for("chat", "9_lives", "r")[:8]
    'svc-9-li'
    """
    slug = re.sub(r"[^a-z0-9]+", "-", task_id.lower()).strip("-")
    if not slug[:1].isalpha():
        slug = f"svc-{slug}".rstrip("-")
    digest = instance_digest(dag_id, task_id, run_id, map_index, length=10)
    return f"{slug[: 63 - len(digest) - 1].rstrip('-')}-{digest}"


def pod_request(
    launch: ContainerLaunch,
    *,
    secret_name: str,
    create_secret: bool = True,
    env_vars: Sequence[k8s.V1EnvVar] | Mapping[str, str] | None = None,
    secret_labels: Mapping[str, str] | None = None,
) -> PodRequest:
    """Map a :class:`ContainerLaunch` to KPO's request (pure; no cluster is contacted).

    ``arguments`` follow the image's ENTRYPOINT (``cmds`` is never set); the user's ``env_vars`` come
    first, then the launch's plain environment; each secret variable is a ``secretKeyRef`` to
    ``secret_name`` (key = variable name) — its value only ever appears in the returned Secret's
    ``string_data`` (``create_secret=False``: the Secret is the user's, none is returned).

    >>> from airflow_genius.core.spec import build_spec
    >>> from airflow_genius.operators.container import container_launch
    >>> spec = build_spec("pkg.mod:Task", "go", dag_id="d", task_id="t", run_id="r")
    >>> request = pod_request(container_launch(spec, secret_env={"GENIUS_STATE_PASSWORD": "pw"}), secret_name="s")
    >>> request.arguments, [env.name for env in request.env_vars], request.secret.string_data
    (['run', '--spec-env', 'GENIUS_TASK_SPEC'], ['GENIUS_TASK_SPEC', 'GENIUS_STATE_PASSWORD'], {'GENIUS_STATE_PASSWORD': 'pw'})
    """
    user_env = [
        env if isinstance(env, k8s.V1EnvVar) else k8s.V1EnvVar(**env)
        for env in (
            [{"name": name, "value": value} for name, value in env_vars.items()]
            if isinstance(env_vars, Mapping)
            else env_vars or []
        )
    ]
    # A plain value is shown by the apiserver and in the pod spec: the reserved names never take one. A
    # reference to the user's own Secret may carry the state password when the launch does not.
    launched = {*launch.env, *launch.secret_env}
    plain = {env.name: env.value or "" for env in user_env if env.value_from is None}
    check_environment(plain, where="env_vars", reserved={*RESERVED_ENV, *launched})
    referenced = {env.name: "" for env in user_env if env.value_from is not None}
    check_environment(referenced, where="env_vars", reserved=launched)
    secret_refs = [
        k8s.V1EnvVar(
            name=name,
            value_from=k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=secret_name, key=name)),
        )
        for name in sorted(launch.secret_env)
    ]
    secret = None
    if launch.secret_env and create_secret:
        secret = k8s.V1Secret(
            api_version="v1",
            kind="Secret",
            metadata=k8s.V1ObjectMeta(name=secret_name, labels={**(secret_labels or {}), **MANAGED_BY}),
            type="Opaque",
            string_data=dict(launch.secret_env),
        )
    return PodRequest(
        arguments=list(launch.args),
        env_vars=[*user_env, *(k8s.V1EnvVar(name=k, value=v) for k, v in launch.env.items()), *secret_refs],
        secret=secret,
        secret_name=secret_name if launch.secret_env else None,
    )
