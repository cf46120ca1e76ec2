"""No single-machine trap: every remote runner refuses, before it launches anything, a state store its job
cannot reach — the embedded SQLite default (a file on the worker) without a shared mount, ``memory://``.

Each runner runs one genius task in a real ``dag.test()`` with the SQLite default, configured against
the rig's real engine (podman's Docker API, the Pod API stand-in on podman, moto_server for ECS and
Batch, the Slurm rig over SSH), so without the check it would launch there. The task must fail with one
line saying what to configure, and the engine must show nothing of it: no container, no pod, no ECS task,
no Batch job, no Slurm job. A SQLite file in a folder bind-mounted at the same path still runs.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import dag_test

from airflow_genius.core.state import open_state
from airflow_genius.operators.state_reach import RemoteReach, StateNotReachable, check_state_reach
from containers.aws import rig as aws_rig
from containers.docker.rig import DOCKER_URL, IMAGE
from containers.kubernetes.conftest import pod_api  # noqa: F401  (a fixture: the Pod API stand-in)


def on_engines(*marks: pytest.MarkDecorator) -> Any:
    """The marks of a test that runs real Airflow against the rig's engines (podman's by default)."""

    def decorate(test: Any) -> Any:
        for mark in (*(marks or (pytest.mark.containers,)), pytest.mark.airflow, pytest.mark.slow):
            test = mark(test)
        return test

    return decorate


#: One DAG of one genius task; the test picks the runner and its engine through the environment.
DAG_FILE = """
import json, os
from airflow.sdk import DAG

RUNNER, DAG_ID, ENV = os.environ["GENIUS_TEST_RUNNER"], os.environ["GENIUS_TEST_DAG_ID"], os.environ.get
TASK = {"task_id": "echo", "task_class": "airflow_genius.examples.tasks:Echo", "method": "say",
        "method_args": ["reached"], "retries": 0}
KEEP = bool(ENV("GENIUS_TEST_KEEP"))  # keep a container or pod that ran, for the engine to show it
AWS = {"aws_conn_id": "genius_aws", "environment": json.loads(ENV("GENIUS_TEST_CONTAINER_ENV", "{}"))}

with DAG(dag_id=DAG_ID, schedule=None, catchup=False) as reach:
    if RUNNER == "docker":
        from docker.types import Mount
        from airflow_genius.operators.docker import GeniusDockerOperator

        shared = ENV("GENIUS_TEST_MOUNT")
        GeniusDockerOperator(image=ENV("GENIUS_TEST_IMAGE"), docker_url=ENV("GENIUS_TEST_DOCKER_URL"),
                             network_mode="host",
                             mounts=[Mount(target=shared, source=shared, type="bind")] if shared else [],
                             auto_remove="never" if KEEP else "force", **TASK)
    elif RUNNER == "kubernetes":
        from airflow_genius.operators.kubernetes import GeniusKubernetesOperator

        GeniusKubernetesOperator(kubernetes_conn_id="genius_k8s", namespace="genius-reach",
                                 image=ENV("GENIUS_TEST_IMAGE"), poll_interval=1,
                                 startup_check_interval_seconds=1,
                                 on_finish_action="keep_pod" if KEEP else "delete_pod", **TASK)
    elif RUNNER == "ecs":
        from airflow_genius.operators.ecs import GeniusEcsOperator

        GeniusEcsOperator(cluster=ENV("GENIUS_TEST_ECS_CLUSTER"), task_definition=ENV("GENIUS_TEST_ECS_TASKDEF"),
                          container_name="genius", launch_type="FARGATE", waiter_delay=1, **AWS, **TASK)
    elif RUNNER == "batch":
        from airflow_genius.operators.batch import GeniusBatchOperator

        GeniusBatchOperator(job_queue=ENV("GENIUS_TEST_BATCH_QUEUE"), job_definition=ENV("GENIUS_TEST_BATCH_JOBDEF"),
                            poll_interval=1, **AWS, **TASK)
    elif RUNNER == "slurm":
        from airflow_genius.operators.slurm import GeniusSlurmOperator

        GeniusSlurmOperator(ssh_conn_id="genius_slurm_private", genius_command=ENV("GENIUS_TEST_GENIUS"),
                            poll_interval=0.5, lost_after=30.0, **TASK)
"""

#: What each runner's refusal names as the way to share the file (beside a state connection).
HOW_TO_SHARE = {
    "docker": ("the container", "mounts=[Mount(target=<folder>, source=<folder>, type='bind')]"),
    "kubernetes": ("the pod", "(volumes=, volume_mounts=)"),
    "ecs": ("the ECS task", "in task definition 'genius-ecs-"),
    "batch": ("the Batch job", "in job definition 'genius-aws-"),
    "slurm": ("the Slurm job", 'list that folder in the extra "shared_paths" of the SSH connection'),
}


def run_reach_dag(
    run_python: Any, env: dict[str, str], folder: Path, runner: str
) -> tuple[dict[str, Any], str, str]:
    """Run the one-task DAG of ``runner`` under a fresh DAG id; (result, output, DAG id)."""
    dag_id = f"genius_reach_{runner}_{uuid.uuid4().hex[:8]}"
    folder.mkdir(exist_ok=True)
    (folder / "genius_reach.py").write_text(DAG_FILE)
    env = {"GENIUS_TEST_KEEP": "1", **env, "GENIUS_TEST_RUNNER": runner, "GENIUS_TEST_DAG_ID": dag_id}
    result, output = dag_test(run_python, env, folder, "reach", file="genius_reach")
    return result, output, dag_id


def default_state_env(airflow_env: dict[str, str]) -> dict[str, str]:
    """The Airflow environment with the embedded SQLite default (``[genius] state_uri`` unset)."""
    return {key: value for key, value in airflow_env.items() if key != "AIRFLOW__GENIUS__STATE_URI"}


def check_refused(result: dict[str, Any], output: str, env: dict[str, str], runner: str) -> None:
    """The task failed with one line naming the store, who cannot reach it and what to configure."""
    (ti,) = result["tis"]
    assert (result["state"], ti["state"]) == ("failed", "failed"), output[-6000:]
    job, how = HOW_TO_SHARE[runner]
    expected = (
        f"state store sqlite:///{env['AIRFLOW_HOME']}/genius/state.db is a SQLite file on this worker "
        f"(the embedded default is per machine), which {job} cannot reach: set a state connection every "
        "machine reaches (state_conn_id= or [genius] state_conn_id: Redis, PostgreSQL or DynamoDB), or keep "
        f"the file in a folder {job} sees at the same path: "
    )
    lines = [line for line in output.splitlines() if "StateNotReachable: " in line]
    assert lines, output[-6000:]
    message = lines[-1].split("StateNotReachable: ", 1)[1]
    assert message.startswith(expected) and how in message, message


# ---------------------------------------------------------------------- engines
@pytest.fixture(scope="module")
def aws_engine() -> dict[str, str]:
    """A fresh ECS cluster, Batch queue and their definitions on moto_server (none mounts anything)."""
    aws_rig.require_engines(batch=True)
    secret = aws_rig.secret_arn(aws_rig.unique("genius-reach"), "unused")
    batch = aws_rig.batch_setup(secret)
    ecs = aws_rig.ecs_setup(secret)
    return {
        "AIRFLOW_CONN_GENIUS_AWS": aws_rig.CONN_JSON,
        "GENIUS_TEST_CONTAINER_ENV": json.dumps(aws_rig.CONTAINER_ENV),
        "GENIUS_TEST_BATCH_QUEUE": batch["queue"],
        "GENIUS_TEST_BATCH_JOBDEF": batch["jobdef"],
        "GENIUS_TEST_ECS_CLUSTER": ecs["cluster"],
        "GENIUS_TEST_ECS_TASKDEF": ecs["taskdef"],
    }


def docker_containers(dag_id: str) -> list[Any]:
    """Every podman container (any state) a genius task of ``dag_id`` created."""
    return aws_rig.docker().containers.list(all=True, filters={"label": f"airflow_genius.dag_id={dag_id}"})


# ---------------------------------------------------------------------- the refusals
@on_engines()
def test_docker_refuses_the_sqlite_default_and_creates_no_container(
    run_python: Any, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    aws_rig.docker().ping()
    env = {**default_state_env(airflow_env), "GENIUS_TEST_IMAGE": IMAGE, "GENIUS_TEST_DOCKER_URL": DOCKER_URL}
    result, output, dag_id = run_reach_dag(run_python, env, tmp_path / "dags", "docker")
    launched = docker_containers(dag_id)  # none; one that ran would be kept (auto_remove="never")
    for container in launched:
        container.remove(force=True)
    check_refused(result, output, env, "docker")
    assert launched == []


@on_engines()
def test_kubernetes_refuses_the_sqlite_default_and_creates_no_pod(
    run_python: Any,
    airflow_env: dict[str, str],
    pod_api: Any,  # noqa: F811
    tmp_path: Path,
) -> None:
    k8s_conn = {"conn_type": "kubernetes", "extra": {"kube_config_path": str(pod_api.kubeconfig_path)}}
    env = {
        **default_state_env(airflow_env),
        "AIRFLOW_CONN_GENIUS_K8S": json.dumps(k8s_conn),
        "GENIUS_TEST_IMAGE": IMAGE,
    }
    result, output, dag_id = run_reach_dag(run_python, env, tmp_path / "dags", "kubernetes")
    check_refused(result, output, env, "kubernetes")
    # a pod that ran would be kept (on_finish_action="keep_pod"), its TaskSpec naming the DAG
    assert [pod.key for pod in pod_api.cluster.list_pods(None) if dag_id in json.dumps(pod.body)] == []


def aws_launches(runner: str, aws_engine: dict[str, str]) -> list[dict[str, Any]]:
    """Every ECS task of the module's cluster, or every Batch job of its queue, in any state."""
    if runner == "ecs":
        cluster = aws_engine["GENIUS_TEST_ECS_CLUSTER"]
        return [
            task for status in ("RUNNING", "STOPPED") for task in aws_rig.ecs_tasks(cluster, status=status)
        ]
    batch, queue = aws_rig.client("batch"), aws_engine["GENIUS_TEST_BATCH_QUEUE"]
    statuses = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")
    return [
        job
        for status in statuses
        for job in batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
    ]


@on_engines(pytest.mark.containers, pytest.mark.aws)
@pytest.mark.parametrize("runner", ["ecs", "batch"])
def test_aws_runners_refuse_the_sqlite_default_and_start_nothing(
    run_python: Any, airflow_env: dict[str, str], aws_engine: dict[str, str], tmp_path: Path, runner: str
) -> None:
    env = {**default_state_env(airflow_env), **aws_engine}
    result, output, _ = run_reach_dag(run_python, env, tmp_path / "dags", runner)
    check_refused(result, output, env, runner)
    assert aws_launches(runner, aws_engine) == []


@on_engines(pytest.mark.slurm)
def test_slurm_refuses_the_sqlite_default_and_submits_no_job(
    run_python: Any, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """The SSH connection declares no shared folder (``shared_paths`` extra), so the compute node —
    this very machine on the rig — does not count as reaching the worker's SQLite file."""
    from slurm.rig import CONN_JSON, GENIUS, live_jobs, require_rig, sacct_rows

    from airflow_genius.core.slurm_protocol import job_name

    require_rig()
    conn = json.loads(CONN_JSON)
    conn["extra"].pop("shared_paths", None)
    env = {
        **default_state_env(airflow_env),
        "AIRFLOW_CONN_GENIUS_SLURM_PRIVATE": json.dumps(conn),
        "GENIUS_TEST_GENIUS": GENIUS,
    }
    result, output, dag_id = run_reach_dag(run_python, env, tmp_path / "dags", "slurm")
    check_refused(result, output, env, "slurm")
    name = job_name(dag_id, "echo", result["run_id"])
    assert (live_jobs(name), sacct_rows(name=name)) == ([], [])


# ---------------------------------------------------------------------- what still runs
@on_engines()
def test_docker_runs_with_a_sqlite_file_in_a_folder_mounted_at_the_same_path(
    run_python: Any, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    """The file is shared: the container (uid 50000) writes the run record the worker then reads."""
    shared = tmp_path / "shared"
    shared.mkdir()
    db = shared / "state.db"
    with open_state(f"sqlite:///{db}"):
        pass
    for path in (shared, *shared.iterdir()):  # SQLite gives its -wal/-shm files the file's owner
        os.chown(path, 50000, 0)
        path.chmod(0o775 if path.is_dir() else 0o664)
    env = {
        **airflow_env,
        "GENIUS_TEST_KEEP": "",
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{db}",
        "GENIUS_TEST_IMAGE": IMAGE,
        "GENIUS_TEST_DOCKER_URL": DOCKER_URL,
        "GENIUS_TEST_MOUNT": str(shared),
    }
    result, output, dag_id = run_reach_dag(run_python, env, tmp_path / "dags", "docker")
    assert result["state"] == "success", output[-6000:]
    assert result["tis"][0]["xcom"] == "reached"
    assert docker_containers(dag_id) == []  # removed once its record was read (auto_remove="force")


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("memory://", "lives in this worker's process, which the pod cannot reach: set a state connection"),
        ("sqlite:///.genius/state.db", "at a path relative to this worker, which the pod cannot reach"),
        (
            "sqlite:////srv/other/state.db",
            "is a SQLite file on this worker (the embedded default is per machine)",
        ),
        ("sqlite:////srv/shared/../state.db", "is a SQLite file on this worker"),
    ],
)
def test_stores_no_remote_job_reaches_are_refused_in_one_line(uri: str, why: str) -> None:
    asked: list[bool] = []

    def shared() -> list[str]:
        asked.append(True)
        return ["/srv/shared"]

    with pytest.raises(StateNotReachable) as refused:
        check_state_reach(uri, RemoteReach("the pod", shared, "mount it (volumes=, volume_mounts=)"))
    assert why in str(refused.value) and "\n" not in str(refused.value)
    assert asked == ([True] if uri.startswith("sqlite:////") else [])  # mounts are read for a file store only


@pytest.mark.parametrize(
    "uri",
    ["sqlite:////srv/shared/state.db", "sqlite:////srv/shared/sub/state.db", "redis://cache:6379/0",
     "postgresql://genius@db:5432/airflow", "dynamodb://genius-state"],
)  # fmt: skip
def test_stores_a_remote_job_reaches_pass(uri: str) -> None:
    check_state_reach(uri, RemoteReach("the pod", lambda: ["/srv/shared/"], "mount it"))
