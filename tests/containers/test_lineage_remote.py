"""OpenLineage events of real remote runs: for each remote runner, one ``dag.test()`` of a DAG with a
task that commits (``ok``: word count from an input root to an output root) and one that fails
(``broken``: the same roots, the task raises), with the OpenLineage provider's file transport. The
COMPLETE and FAIL events must name both datasets and carry, in the ``genius`` run facet, the remote job
the runner really used: the container (Docker), the pod (Kubernetes), the task ARN (ECS), the job id
(Batch), read back from the engine. Slurm's run is in tests/slurm/test_lineage_slurm.py.

The runners' own fixtures are imported from their folders (they are defined there, not copied here).
"""
# ruff: noqa: F811 - the tests take the imported fixtures as arguments

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from genius_dagtest import dag_test

# Fixtures of the runners' folders: importing them makes them visible to the tests of this module.
from containers.aws.conftest import (  # noqa: F401
    QUOTES,
    aws_env,
    aws_secret_arn,
    batch_rig,
    ecs_env,
    ecs_rig,
    quotes_bucket,
    secret_value,
)
from containers.aws.test_batch import batch_env, only_job  # noqa: F401
from containers.aws.test_ecs import only_task
from containers.docker.conftest import docker_client, docker_env, redis_state_uri  # noqa: F401
from containers.docker.test_docker_dags import writable_by_the_image
from containers.kubernetes.conftest import k8s_env, pg_state, pod_api, shared_dir  # noqa: F401
from containers.kubernetes.test_kubernetes_dags import pods_of

pytestmark = [pytest.mark.containers, pytest.mark.airflow, pytest.mark.slow]

#: The tasks of each lineage DAG: one commits, one fails.
TASKS = ("ok", "broken")

#: The lineage DAG of one runner: ``{imports}`` defines ``Operator`` and ``ARGS`` (the runner's test
#: arguments, from its cases module) and may define ``OK_ARGS`` (e.g. ``deferrable=True``).
DAG_FILE = """
import os
from airflow.sdk import DAG
{imports}

IN, OUT = os.environ["GENIUS_LINEAGE_IN"], os.environ["GENIUS_LINEAGE_OUT"]

with DAG(dag_id="{dag_id}", schedule=None, catchup=False) as {dag_id}:
    Operator(
        task_id="ok", task_class="airflow_genius.examples.tasks:WordCount", method="count",
        method_kwargs={{"top": 3}}, input_uri=IN, output_uri=f"{{OUT}}/counts",
        **{{**ARGS, **globals().get("OK_ARGS", {{}})}},
    )
    Operator(
        task_id="broken", task_class="airflow_genius.examples.tasks:Echo", method="fail",
        method_kwargs={{"message": "the lineage task broke"}}, input_uri=IN, output_uri=f"{{OUT}}/broken",
        **ARGS,
    )
"""


def openlineage_env(folder: Path) -> dict[str, str]:
    """The OpenLineage provider's file transport: one JSON line per event, in ``folder/events.jsonl``."""
    folder.mkdir(parents=True, exist_ok=True)
    return {
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "genius-tests",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(folder / "events.jsonl"), "append": True}
        ),
    }


def lineage_events(folder: Path, dag_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """The events of ``dag_id``'s tasks by (task id, eventType), from the file transport's files."""
    events: dict[tuple[str, str], dict[str, Any]] = {}
    for path in folder.iterdir():
        for line in path.read_text().splitlines():
            event = json.loads(line)
            dag, _, task = event["job"]["name"].rpartition(".")
            if dag == dag_id:
                events[task, event["eventType"]] = event
    return events


def run_lineage_dag(
    run_python: Any, env: dict[str, str], tmp_path: Path, runner: str, imports: str, *, source: str, out: str
) -> tuple[dict[str, Any], str, dict[tuple[str, str], dict[str, Any]]]:
    """Write the lineage DAG of ``runner`` (input root ``source``, output roots under ``out``) and run it
    with ``dag.test()`` and the file transport: the result (``ok`` succeeded, ``broken`` failed, or the
    test fails with the log), the log and the events."""
    dag_id = f"genius_lineage_{runner}"
    dags = tmp_path / "lineage_dags"
    dags.mkdir()
    (dags / f"{dag_id}.py").write_text(DAG_FILE.format(imports=textwrap.dedent(imports), dag_id=dag_id))
    env = {
        **env,
        **openlineage_env(tmp_path / "lineage"),
        "GENIUS_LINEAGE_IN": source,
        "GENIUS_LINEAGE_OUT": out,
    }
    result, output = dag_test(run_python, env, dags, dag_id, timeout=600)
    states = {ti["task_id"]: ti["state"] for ti in result["tis"]}
    assert states == {"ok": "success", "broken": "failed"}, output[-6000:]
    return result, output, lineage_events(tmp_path / "lineage", dag_id)


def dataset(root: str) -> tuple[str, str]:
    """The (namespace, name) OpenLineage gives a root written as here: ``s3://bucket/key`` or a path."""
    if root.startswith("s3://"):
        bucket, _, key = root.removeprefix("s3://").partition("/")
        return f"s3://{bucket}", key.strip("/")
    return "file", root


def check_events(
    events: dict[tuple[str, str], dict[str, Any]],
    *,
    runner: str,
    job_ids: dict[str, str],
    source: str,
    out: str,
) -> None:
    """The COMPLETE event of ``ok`` and the FAIL event of ``broken``: the input and output datasets, the
    runner and the remote job id in the ``genius`` facet; the commit only in the COMPLETE one."""
    assert ("ok", "COMPLETE") in events and ("broken", "FAIL") in events, sorted(events)
    outputs = {"ok": f"{out}/counts", "broken": f"{out}/broken"}
    for task_id, kind in (("ok", "COMPLETE"), ("broken", "FAIL")):
        event = events[task_id, kind]
        assert [(d["namespace"], d["name"]) for d in event["inputs"]] == [dataset(source)], event["inputs"]
        assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [dataset(outputs[task_id])], event
        facet = event["run"]["facets"]["genius"]
        assert facet["runner"] == runner, facet
        assert facet["remoteJobId"] == job_ids[task_id], (facet, job_ids)
    committed = events["ok", "COMPLETE"]
    facet = committed["run"]["facets"]["genius"]
    root = outputs["ok"] if outputs["ok"].startswith("s3://") else f"file://{outputs['ok']}"
    assert facet["partitionUri"].startswith(f"{root}/") and facet["fileCount"] >= 1, facet
    assert committed["outputs"][0]["outputFacets"]["outputStatistics"]["fileCount"] == facet["fileCount"]
    failed = events["broken", "FAIL"]
    assert "partitionUri" not in failed["run"]["facets"]["genius"], failed
    assert "outputStatistics" not in failed["outputs"][0].get("outputFacets", {}), failed


def quotes_folder(folder: Path) -> Path:
    """A plain input root with the quotes of the AWS tests as JSON lines (readable by the image's user)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    (folder / "part-0000.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUOTES))
    return folder


def test_docker_events_name_the_container(run_python, docker_env: dict[str, str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from airflow_genius.operators.docker_request import container_name_for

    data = writable_by_the_image(tmp_path / "data")
    source, out = str(quotes_folder(data / "in")), str(data / "out")
    imports = f"""
        from docker.types import Mount
        from airflow_genius.operators.docker import GeniusDockerOperator as Operator
        from containers.docker.dags.genius_docker_cases import DOCKER
        ARGS = {{**DOCKER, "mounts": [Mount(target={str(data)!r}, source={str(data)!r}, type="bind")]}}
    """
    result, output, events = run_lineage_dag(
        run_python, docker_env, tmp_path, "docker", imports, source=source, out=out
    )
    names = {task: container_name_for("genius_lineage_docker", task, result["run_id"]) for task in TASKS}
    for name in names.values():  # the operator's own account of the container it ran
        assert f"in container {name} (image" in output, output[-4000:]
    check_events(events, runner="docker", job_ids=names, source=source, out=out)


def test_kubernetes_events_name_the_pod(  # type: ignore[no-untyped-def]
    run_python, k8s_env: dict[str, str], pod_api: Any, shared_dir: Path, tmp_path: Path
) -> None:
    source, out = str(quotes_folder(shared_dir / "in")), f"{shared_dir}/out"
    imports = """
        from airflow_genius.operators.kubernetes import GeniusKubernetesOperator as Operator
        from containers.kubernetes.dags.genius_k8s_cases import BOLT, POD
        ARGS = {**POD, "volumes": BOLT["volumes"], "volume_mounts": BOLT["volume_mounts"]}
        OK_ARGS = {"deferrable": True}  # its pod comes back from the trigger
    """
    result, _, events = run_lineage_dag(
        run_python, k8s_env, tmp_path, "kubernetes", imports, source=source, out=out
    )
    names = {}
    for task in TASKS:  # the pods the Pod API server created
        (pod,) = pods_of(pod_api, "genius_lineage_kubernetes", task, result["run_id"])
        names[task] = pod["metadata"]["name"]
    check_events(events, runner="kubernetes", job_ids=names, source=source, out=out)


def ecs_task_arn(env: dict[str, str], task_id: str, run_id: str) -> str:
    """The ARN of the one ECS task moto ran for this task instance."""
    return str(only_task(env["GENIUS_TEST_ECS_CLUSTER"], "genius_lineage_ecs", task_id, run_id)["taskArn"])


def batch_job_id(env: dict[str, str], task_id: str, run_id: str) -> str:
    """The id of the one Batch job moto ran for this task instance."""
    return str(only_job(env["GENIUS_TEST_BATCH_QUEUE"], "genius_lineage_batch", task_id, run_id)["jobId"])


#: runner: (its environment fixture, operator, arguments in genius_aws_cases, the job id moto used)
AWS: dict[str, tuple[str, str, str, Callable[[dict[str, str], str, str], str]]] = {
    "ecs": ("ecs_env", "airflow_genius.operators.ecs:GeniusEcsOperator", "ECS", ecs_task_arn),
    "batch": ("batch_env", "airflow_genius.operators.batch:GeniusBatchOperator", "BATCH", batch_job_id),
}


@pytest.mark.parametrize("runner", sorted(AWS))
def test_aws_events_name_the_remote_job(  # type: ignore[no-untyped-def]
    run_python, runner: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    fixture, operator, arguments, remote_job = AWS[runner]
    env = request.getfixturevalue(fixture)
    bucket = env["GENIUS_TEST_BUCKET"]
    source, out = f"s3://{bucket}/quotes/", f"s3://{bucket}/lineage/{runner}"
    module, _, name = operator.partition(":")
    imports = f"""
        from {module} import {name} as Operator
        from containers.aws.dags.genius_aws_cases import {arguments} as ARGS
        OK_ARGS = {{"deferrable": True}}  # its job comes back from the trigger
    """
    result, _, events = run_lineage_dag(run_python, env, tmp_path, runner, imports, source=source, out=out)
    job_ids = {task: remote_job(env, task, result["run_id"]) for task in TASKS}
    check_events(events, runner=runner, job_ids=job_ids, source=source, out=out)
