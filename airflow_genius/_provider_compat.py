"""Every private member of an official provider that airflow-genius relies on, in one place.

The genius runners are thin subclasses of the providers' operators and triggers. Where the providers
offer no public way in, the runners use a private method or attribute — only through the small
functions below, each naming the provider versions it was checked against. A provider release that
removes or renames one of them fails ``tests/containers/test_provider_compat.py`` with the member's
name and the function that uses it, before any DAG does.

This module sits below ``operators/`` and ``triggers/`` (both use it) and imports no provider at import
time: each function reaches its provider through the object it is given.

.. code-block:: python

    from airflow_genius import _provider_compat as compat

    labels = compat.kpo_task_instance_labels(operator, context)   # in GeniusKubernetesOperator
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.operators.batch import BatchOperator
    from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator
    from airflow.providers.amazon.aws.utils.task_log_fetcher import AwsTaskLogFetcher
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.docker.operators.docker import DockerOperator
    from airflow.sdk import Context
    from kubernetes.client import models as k8s

#: Private methods a runner *overrides* (a subclass has to use the provider's name): (provider class,
#: method, genius class). The provider must still define the method and still call it, or the genius
#: behaviour silently stops; the compat test checks both.
OVERRIDDEN_PRIVATE_METHODS: tuple[tuple[str, str, str], ...] = (
    # checked against apache-airflow-providers-amazon 9.32.0 to 9.39.0: execute and execute_complete call it
    (
        "airflow.providers.amazon.aws.operators.ecs:EcsRunTaskOperator",
        "_after_execution",
        "airflow_genius.operators.ecs:GeniusEcsOperator",
    ),
    # checked against apache-airflow-providers-amazon 9.32.0 to 9.39.0: monitor_job hands it to the hook's
    # wait (which streams the log with the fetcher it returns), execute_complete calls it
    (
        "airflow.providers.amazon.aws.operators.batch:BatchOperator",
        "_get_batch_log_fetcher",
        "airflow_genius.operators.batch:GeniusBatchOperator",
    ),
    # checked against apache-airflow-providers-cncf-kubernetes 10.25.0: run() awaits it before the pod runs
    (
        "airflow.providers.cncf.kubernetes.triggers.pod:KubernetesPodTrigger",
        "_wait_for_pod_start",
        "airflow_genius.triggers.kubernetes:GeniusKubernetesPodTrigger",
    ),
)


# ---------------------------------------------------------------- apache-airflow-providers-cncf-kubernetes
def kpo_task_instance_labels(operator: KubernetesPodOperator, context: Context) -> dict[str, str]:
    """The labels KPO puts on a task instance's pod, without the try number (``dag_id``, ``task_id``,
    ``run_id``, ``map_index`` …): the same on every try, so they also label the state Secret.

    ``KubernetesPodOperator._get_ti_pod_labels`` (a staticmethod); checked against
    apache-airflow-providers-cncf-kubernetes 10.25.0.
    """
    return dict(operator._get_ti_pod_labels(context, include_try_number=False))


def kpo_pod_from_task_state(operator: KubernetesPodOperator, context: Context) -> k8s.V1Pod | None:
    """The pod an earlier try recorded in Airflow's ``task_state_store`` (None: none, or it is gone).

    ``KubernetesPodOperator._get_pod_from_task_state_store``; checked against
    apache-airflow-providers-cncf-kubernetes 10.25.0.
    """
    return operator._get_pod_from_task_state_store(context)


def kpo_remember_pod(operator: KubernetesPodOperator, context: Context, pod: k8s.V1Pod) -> None:
    """Record ``pod`` as this task instance's pod in ``task_state_store`` (what KPO's reattach reads).

    ``KubernetesPodOperator._persist_pod_identity_to_task_state_store``; checked against
    apache-airflow-providers-cncf-kubernetes 10.25.0.
    """
    operator._persist_pod_identity_to_task_state_store(context, pod)


def kpo_was_killed(operator: KubernetesPodOperator) -> bool:
    """Whether KPO's ``on_kill`` ran for this operator (its pod is being deleted on purpose).

    ``KubernetesPodOperator._killed`` (set in ``__init__``, True in ``on_kill``); checked against
    apache-airflow-providers-cncf-kubernetes 10.25.0.
    """
    return bool(operator._killed)


async def k8s_async_hook_load_config(hook: AsyncKubernetesHook) -> None:
    """Load the hook's Kubernetes configuration into ``hook.client_configuration``, as the provider does
    before each API call: a no-op once loaded, except with an exec plugin (EKS, GKE), where it runs the
    plugin again for a fresh token.

    ``AsyncKubernetesHook._load_config`` (its ``get_conn`` calls it); checked against
    apache-airflow-providers-cncf-kubernetes 10.25.0.
    """
    await hook._load_config()


# ---------------------------------------------------------------- apache-airflow-providers-amazon (ECS)
def ecs_logs_enabled(operator: EcsRunTaskOperator) -> bool:
    """Whether the operator has the ``awslogs_group`` and ``awslogs_stream_prefix`` to read the log.

    ``EcsRunTaskOperator._aws_logs_enabled``; checked against apache-airflow-providers-amazon
    9.32.0 to 9.39.0.
    """
    return bool(operator._aws_logs_enabled())


def ecs_log_fetcher(operator: EcsRunTaskOperator) -> AwsTaskLogFetcher:
    """The provider's CloudWatch fetcher of the task's container log stream (not started).

    ``EcsRunTaskOperator._get_task_log_fetcher``; checked against apache-airflow-providers-amazon
    9.32.0 to 9.39.0.
    """
    return operator._get_task_log_fetcher()


def ecs_reattach(operator: EcsRunTaskOperator, started_by: str) -> None:
    """Set ``operator.arn`` to a RUNNING task with ``startedBy=started_by``, if ECS has one.

    ``EcsRunTaskOperator._try_reattach_task(started_by)``; checked against
    apache-airflow-providers-amazon 9.32.0 to 9.39.0.
    """
    operator._try_reattach_task(started_by=started_by)


def ecs_start_task(operator: EcsRunTaskOperator, started_by: str) -> None:
    """Run the operator's ECS task (``run_task`` with all its arguments) tagged ``startedBy=started_by``;
    sets ``operator.arn``.

    ``EcsRunTaskOperator._start_task`` reading ``EcsRunTaskOperator._started_by``; checked against
    apache-airflow-providers-amazon 9.32.0 to 9.39.0.
    """
    operator._started_by = started_by
    operator._start_task()


# ---------------------------------------------------------------- apache-airflow-providers-amazon (Batch)
def batch_log_fetcher(operator: BatchOperator, job_id: str) -> AwsTaskLogFetcher | None:
    """The provider's CloudWatch fetcher of the job's log stream (None while the job has none).

    ``BatchOperator._get_batch_log_fetcher`` — the provider's own, also when ``operator`` overrides it;
    checked against apache-airflow-providers-amazon 9.32.0 to 9.39.0.
    """
    from airflow.providers.amazon.aws.operators.batch import BatchOperator

    return BatchOperator._get_batch_log_fetcher(operator, job_id)


# ---------------------------------------------------------------- apache-airflow-providers-docker
def docker_private_environment(operator: DockerOperator) -> dict[str, str]:
    """The container's environment that DockerOperator never templates, renders or logs.

    ``DockerOperator._private_environment``; checked against apache-airflow-providers-docker
    4.4.0 to 4.6.1.
    """
    return dict(operator._private_environment)


def set_docker_private_environment(operator: DockerOperator, environment: dict[str, str]) -> None:
    """Replace the private environment DockerOperator passes to the container it creates.

    ``DockerOperator._private_environment``; checked against apache-airflow-providers-docker
    4.4.0 to 4.6.1.
    """
    operator._private_environment = dict(environment)
