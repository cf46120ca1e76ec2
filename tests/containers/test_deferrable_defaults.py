"""Every deferrable genius runner takes its ``deferrable`` default from ``[operators] default_deferrable``,
as the official operators do; an explicit ``deferrable=`` still wins, and the service operators (which
wait for readiness in the worker) never defer. Docker has no deferrable mode and is not listed.

The official operators read the setting when their module is imported (it is the default value of their
``deferrable`` parameter), so each setting gets its own Python process, started with
``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE``. Operators are only constructed: no engine, no cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # two fresh interpreters importing Airflow and three providers

#: Constructs every runner's operators in a fresh interpreter; prints {label: operator.deferrable}.
CHILD = r"""
import json

from airflow_genius.operators.batch import GeniusBatchBoltOperator, GeniusBatchOperator
from airflow_genius.operators.ecs import GeniusEcsOperator, GeniusEcsSpoutOperator
from airflow_genius.operators.ecs_service import GeniusEcsServiceOperator
from airflow_genius.operators.kubernetes import GeniusKubernetesBoltOperator, GeniusKubernetesOperator
from airflow_genius.operators.kubernetes_service import GeniusKubernetesServiceOperator
from airflow_genius.operators.slurm import GeniusSlurmOperator, GeniusSlurmSpoutOperator
from airflow_genius.operators.slurm_service import GeniusSlurmServiceOperator, SlurmServiceOperator

TASK = {"task_class": "pkg.mod:Task", "method": "go"}
RUNNERS = {
    "kubernetes": (GeniusKubernetesOperator, {"image": "runtime:1"}),
    "kubernetes-bolt": (GeniusKubernetesBoltOperator, {"image": "runtime:1"}),
    "ecs": (GeniusEcsOperator, {"cluster": "c", "task_definition": "td", "container_name": "genius"}),
    "ecs-spout": (GeniusEcsSpoutOperator, {"cluster": "c", "task_definition": "td", "container_name": "genius"}),
    "batch": (GeniusBatchOperator, {"job_queue": "q", "job_definition": "jd"}),
    "batch-bolt": (GeniusBatchBoltOperator, {"job_queue": "q", "job_definition": "jd"}),
    "slurm": (GeniusSlurmOperator, {"ssh_conn_id": "cluster"}),
    "slurm-spout": (GeniusSlurmSpoutOperator, {"ssh_conn_id": "cluster"}),
}
SERVICES = {
    "kubernetes-service": (GeniusKubernetesServiceOperator, {"image": "runtime:1", **TASK}),
    "ecs-service": (GeniusEcsServiceOperator,
                    {"cluster": "c", "task_definition": "td", "container_name": "genius", **TASK}),
    "slurm-service": (GeniusSlurmServiceOperator, {"ssh_conn_id": "cluster", **TASK}),
    "slurm-command-service": (SlurmServiceOperator, {"ssh_conn_id": "cluster", "command": "exec serve"}),
}
seen = {}
for label, (cls, kwargs) in RUNNERS.items():
    seen[label] = cls(task_id=label, **TASK, **kwargs).deferrable
    seen[label + ":explicit-true"] = cls(task_id=label + "_t", deferrable=True, **TASK, **kwargs).deferrable
    seen[label + ":explicit-false"] = cls(task_id=label + "_f", deferrable=False, **TASK, **kwargs).deferrable
for label, (cls, kwargs) in SERVICES.items():
    seen[label] = cls(task_id=label, **kwargs).deferrable
print(json.dumps(seen))
"""

JOB_RUNNERS = [
    "kubernetes",
    "kubernetes-bolt",
    "ecs",
    "ecs-spout",
    "batch",
    "batch-bolt",
    "slurm",
    "slurm-spout",
]
SERVICE_RUNNERS = ["kubernetes-service", "ecs-service", "slurm-service", "slurm-command-service"]


@pytest.fixture(scope="module")
def defaults() -> dict[str, dict[str, bool]]:
    """{"true"|"false": what every operator's ``deferrable`` is under that setting}; both processes at once."""
    children = {}
    for setting in ("true", "false"):
        env = {**os.environ, "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": setting}
        children[setting] = subprocess.Popen(
            [sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    seen = {}
    for setting, child in children.items():
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, f"default_deferrable={setting}: the child failed:\n{err[-4000:]}"
        seen[setting] = json.loads(out.strip().splitlines()[-1])
    return seen


@pytest.mark.parametrize("runner", JOB_RUNNERS)
@pytest.mark.parametrize(("setting", "expected"), [("true", True), ("false", False)])
def test_a_job_runner_defers_by_default_when_the_config_says_so(
    defaults: dict[str, dict[str, bool]], runner: str, setting: str, expected: bool
) -> None:
    deferrable = defaults[setting][runner]
    assert deferrable is expected, f"{runner}: deferrable={deferrable} with default_deferrable={setting}"


@pytest.mark.parametrize("runner", JOB_RUNNERS)
@pytest.mark.parametrize("setting", ["true", "false"])
def test_an_explicit_deferrable_wins_over_the_config(
    defaults: dict[str, dict[str, bool]], runner: str, setting: str
) -> None:
    assert defaults[setting][f"{runner}:explicit-true"] is True
    assert defaults[setting][f"{runner}:explicit-false"] is False


@pytest.mark.parametrize("runner", SERVICE_RUNNERS)
@pytest.mark.parametrize("setting", ["true", "false"])
def test_a_service_operator_never_defers_whatever_the_config(
    defaults: dict[str, dict[str, bool]], runner: str, setting: str
) -> None:
    # it is constructed without an error under default_deferrable=true, and waits in the worker
    assert defaults[setting][runner] is False
