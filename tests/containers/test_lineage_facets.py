"""OpenLineage facets and declared Assets of every remote runner's operator, with its remote job id set
as the runner sets it after a launch. Operators are only constructed here (no engine, no cluster, no AWS,
no Slurm): one engine run per runner would only repeat the local runner's real run
(tests/airflow/test_openlineage.py), since the facets are built in the shared mixin.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from airflow.sdk import DAG, Asset, AssetAlias
from openlineage.client.serde import Serde

from airflow_genius.core.state.base import RunKey, RunRecord, Status


def kubernetes(**kwargs: Any) -> Any:
    from kubernetes.client import models as k8s

    from airflow_genius.operators.kubernetes import GeniusKubernetesOperator

    op = GeniusKubernetesOperator(image="runtime:1", **kwargs)
    op.pod = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="genius-etl-clean-x7k2", namespace="jobs"))
    return op


def ecs(**kwargs: Any) -> Any:
    from airflow_genius.operators.ecs import GeniusEcsOperator

    op = GeniusEcsOperator(cluster="c", task_definition="td", container_name="genius", **kwargs)
    op.arn = "arn:aws:ecs:us-east-1:123456789012:task/c/0f1e2d"
    return op


def batch(**kwargs: Any) -> Any:
    from airflow_genius.operators.batch import GeniusBatchOperator

    op = GeniusBatchOperator(job_queue="q", job_definition="jd", **kwargs)
    op.job_id = "8d6c3b1a-batch"
    return op


def slurm(**kwargs: Any) -> Any:
    from airflow_genius.operators.slurm import GeniusSlurmOperator

    op = GeniusSlurmOperator(ssh_conn_id="cluster", **kwargs)
    op.job_id = "4242"
    return op


def docker(**kwargs: Any) -> Any:
    from airflow_genius.operators.docker import GeniusDockerOperator

    op = GeniusDockerOperator(image="runtime:1", **kwargs)
    op.container_name = "genius-etl-clean-1a2b3c"
    return op


RUNNERS: list[tuple[str, Callable[..., Any], str]] = [
    ("kubernetes", kubernetes, "genius-etl-clean-x7k2"),
    ("ecs", ecs, "arn:aws:ecs:us-east-1:123456789012:task/c/0f1e2d"),
    ("batch", batch, "8d6c3b1a-batch"),
    ("slurm", slurm, "4242"),
    ("docker", docker, "genius-etl-clean-1a2b3c"),
]


def build(factory: Callable[..., Any], **kwargs: Any) -> Any:
    with DAG("etl", schedule=None):
        return factory(task_id="clean", task_class="pkg.tasks:Cleaner", method="clean", **kwargs)


@pytest.mark.parametrize(("runner", "factory", "job_id"), RUNNERS, ids=[r[0] for r in RUNNERS])
def test_facets_name_the_runner_its_remote_job_and_the_datasets(
    runner: str, factory: Callable[..., Any], job_id: str
) -> None:
    op = build(factory, input_uri="s3://lake/raw/events/", output_uri="s3://lake/clean")
    assert op.inlets == [Asset("s3://lake/raw/events")]
    assert op.outlets == [Asset("s3://lake/clean")]

    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("s3://lake", "raw/events")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://lake", "clean")]
    facet = Serde.to_dict(lineage.run_facets["genius"])
    assert facet["runner"] == runner
    assert facet["remoteJobId"] == job_id
    assert (facet["taskClass"], facet["method"], facet["kind"]) == ("pkg.tasks:Cleaner", "clean", "task")
    assert facet["_schemaURL"] == "urn:airflow-provider-genius:openlineage:genius-run-facet:1"
    # A failed run has the same datasets and facet (nothing committed: no partition in it).
    failed = op.get_openlineage_facets_on_failure(None)
    assert Serde.to_dict(failed.run_facets["genius"])["remoteJobId"] == job_id
    assert "partitionUri" not in Serde.to_dict(failed.run_facets["genius"])


@pytest.mark.parametrize(("runner", "factory", "job_id"), RUNNERS, ids=[r[0] for r in RUNNERS])
def test_a_commit_reaches_the_facet_and_the_output_statistics(
    runner: str, factory: Callable[..., Any], job_id: str
) -> None:
    op = build(factory, output_uri="s3://lake/clean")
    record = RunRecord(
        key=RunKey("etl", "clean", "manual__1", -1),
        status=Status.SUCCESS,
        try_number=1,
        history=(),
        created_at=datetime.now(timezone.utc),
        updated_at=datetime.now(timezone.utc),
        metrics={"output_location": "s3://lake/clean/etl/clean/2024/01/02/manual__1/", "output_files": 3},
    )

    class Events(dict):  # what the task runner hands a task as context["outlet_events"]
        def __missing__(self, key: Any) -> Any:
            from airflow.sdk.execution_time.context import OutletEventAccessor

            self[key] = OutletEventAccessor(key=key)
            return self[key]

    events = Events()
    # No S3 credentials for this worker here: the event goes without the manifest's digest.
    op.emit_asset_event({"outlet_events": events}, record)
    (accessor,) = events.values()
    assert accessor.extra["runner"] == runner and accessor.extra["remote_job_id"] == job_id
    assert accessor.extra["file_count"] == 3
    assert accessor.extra["partition_uri"] == record.metrics["output_location"]

    lineage = op.get_openlineage_facets_on_complete(None)
    facet = Serde.to_dict(lineage.run_facets["genius"])
    assert facet["partitionUri"] == record.metrics["output_location"] and facet["fileCount"] == 3
    (output,) = lineage.outputs
    assert output.outputFacets["outputStatistics"].fileCount == 3


def test_a_templated_output_declares_an_alias_and_a_stream_output_its_stream() -> None:
    op = build(
        batch, input_uri="{{ ti.xcom_pull('fetch', key='genius_output') }}", output_uri="s3://x/{{ ds }}"
    )
    assert op.inlets == [] and op.outlets == [AssetAlias("genius-output:etl.clean")]
    streams = build(
        slurm,
        input_uri="redis://cache/0?stream=raw&group=cleaner&batch=100",
        output_uri="redis://cache:6379/0?stream=clean&flush_every=50",
    )
    assert streams.inlets == [Asset("redis://cache:6379/0?stream=raw")]
    assert streams.outlets == [Asset("redis://cache:6379/0?stream=clean")]
    # Airflow normalises any URI of that stream through the provider's handler to the same Asset URI.
    assert Asset("redis://cache/0?stream=clean&maxlen=9").uri == streams.outlets[0].uri
    lineage = streams.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("redis://cache:6379/0", "raw")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("redis://cache:6379/0", "clean")]


def test_declared_outlets_are_kept_beside_the_genius_ones() -> None:
    mine = Asset("s3://lake/report")
    op = build(ecs, output_uri="s3://lake/clean", outlets=[mine])
    assert op.outlets == [mine, Asset("s3://lake/clean")]
