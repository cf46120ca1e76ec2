"""Genius outputs as Airflow Assets, with a real scheduler and dag-processor (tests/ui/airflow_stack.py):
each commit of an upstream genius task emits an asset event whose extra names the partition, and a DAG
scheduled on that Asset — hand-written, or rendered from a Geniusfile whose ``schedule:`` lists the
upstream's output folder as written — runs once per commit, reading the partition from the event."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
from ui.airflow_stack import AirflowStack

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

PRODUCER, CONSUMER = "genius_asset_producer", "genius_asset_consumer"
GENIUSFILE_CONSUMER = "genius_asset_geniusfile_consumer"
DAGS = {
    PRODUCER: """
        import os
        from airflow.sdk import dag
        from airflow_genius.operators.local import GeniusSpoutOperator

        @dag(dag_id="genius_asset_producer", schedule=None, catchup=False)
        def producer():
            GeniusSpoutOperator(
                task_id="fetch", task_class="airflow_genius.examples.tasks:QuoteSpout", method="fetch",
                method_kwargs={"count": 3}, output_uri=os.environ["GENIUS_EXAMPLE_DATA"] + "/quotes",
            )

        producer()
        """,
    CONSUMER: """
        import os
        from airflow.sdk import Asset, dag
        from airflow_genius.operators.local import GeniusBoltOperator

        QUOTES = Asset("file://" + os.environ["GENIUS_EXAMPLE_DATA"] + "/quotes")

        @dag(dag_id="genius_asset_consumer", schedule=[QUOTES], catchup=False)
        def consumer():
            GeniusBoltOperator(
                task_id="count", task_class="airflow_genius.examples.tasks:WordCount", method="count",
                # the partition the triggering commit published, from its asset event
                input_uri="{{ (triggering_asset_events.values() | first | last).extra['partition_uri'] }}",
                output_uri=os.environ["GENIUS_EXAMPLE_DATA"] + "/counts",
            )

        consumer()
        """,
}

# The same consumer as a Geniusfile: its schedule names the producer's output as a plain folder with a
# trailing slash, which must name the producer's outlet Asset (file://…/quotes) all the same.
GENIUSFILES = {
    GENIUSFILE_CONSUMER: """
        version: 1
        dag:
          id: genius_asset_geniusfile_consumer
          schedule: ["${GENIUS_EXAMPLE_DATA}/quotes/"]
        bolts:
          count:
            class: airflow_genius.examples.tasks:WordCount
            method: count
            input: "{{ (triggering_asset_events.values() | first | last).extra['partition_uri'] }}"
            output: ${GENIUS_EXAMPLE_DATA}/geniusfile_counts
        """,
}
GENIUSFILE_LOADER = """
from pathlib import Path
from airflow_genius.dag_factory import load_geniusfiles  # one airflow DAG per Geniusfile

load_geniusfiles(Path(__file__).resolve().parent, globals())
"""
CONSUMERS = (CONSUMER, GENIUSFILE_CONSUMER)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("assets_airflow_home")
    dags = home / "dags"
    dags.mkdir()
    for dag_id, source in DAGS.items():
        (dags / f"{dag_id}.py").write_text(textwrap.dedent(source))
    for dag_id, text in GENIUSFILES.items():
        (dags / f"{dag_id}.genius.yaml").write_text(textwrap.dedent(text))
    (dags / "genius_geniusfiles.py").write_text(GENIUSFILE_LOADER)
    stack = AirflowStack(home, dags)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def runs(stack: AirflowStack, token: str, dag_id: str) -> list[dict[str, Any]]:
    answer = stack.api(f"/api/v2/dags/{dag_id}/dagRuns?order_by=run_after", token) or {}
    return list(answer.get("dag_runs", []))


def finished(stack: AirflowStack, token: str, dag_id: str, count: int) -> list[dict[str, Any]] | None:
    """The runs of ``dag_id`` once there are ``count`` and all ended."""
    found = runs(stack, token, dag_id)
    done = len(found) >= count and all(run["state"] in ("success", "failed") for run in found)
    return found if done else None


def test_each_commit_triggers_the_dag_scheduled_on_its_asset(stack: AirflowStack) -> None:
    token = stack.token()
    for dag_id in [*DAGS, *GENIUSFILES]:
        stack.wait_for(lambda d=dag_id: stack.api(f"/api/v2/dags/{d}", token), 180, f"{dag_id} parsed")
    data = Path(stack.env["GENIUS_EXAMPLE_DATA"])
    uri = f"file://{quote(str(data / 'quotes'))}"
    asset = stack.wait_for(
        lambda: next(
            iter((stack.api(f"/api/v2/assets?uri_pattern={uri}", token) or {}).get("assets", [])), None
        ),
        120,
        "the producer's outlet Asset",
    )
    assert asset["uri"] == f"file://{data / 'quotes'}"

    # Trigger the producer twice, one commit after the other (two events queued together would be
    # consumed by one downstream run, as Airflow schedules on assets).
    for commit in (1, 2):
        stack.post(f"/api/v2/dags/{PRODUCER}/dagRuns", {"logical_date": None}, token)
        produced = stack.wait_for(
            lambda c=commit: finished(stack, token, PRODUCER, c), 240, f"producer run {commit}"
        )
        assert [run["state"] for run in produced] == ["success"] * commit, stack.logs()
        consumed = {}
        for consumer in CONSUMERS:
            consumed[consumer] = stack.wait_for(
                lambda c=commit, d=consumer: finished(stack, token, d, c), 240, f"{consumer} run {commit}"
            )
            assert [run["state"] for run in consumed[consumer]] == ["success"] * commit, stack.logs()
            assert all(run["run_type"] == "asset_triggered" for run in consumed[consumer])

    events = (stack.api(f"/api/v2/assets/events?asset_id={asset['id']}&order_by=timestamp", token) or {})[
        "asset_events"
    ]
    assert [event["source_run_id"] for event in events] == [run["dag_run_id"] for run in produced]
    for event, run in zip(events, produced, strict=True):
        extra = event["extra"]
        assert (extra["dag_id"], extra["task_id"], extra["run_id"]) == (PRODUCER, "fetch", run["dag_run_id"])
        assert extra["runner"] == "local"
        partition = Path(unquote(urlsplit(extra["partition_uri"]).path))
        assert partition.is_relative_to(data / "quotes")
        manifest = (partition / "_SUCCESS").read_bytes()
        assert extra["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
        assert extra["file_count"] == len([p for p in partition.rglob("*") if p.is_file()]) - 1 >= 1

    # Each run of each consumer consumed exactly the event of one commit, in order.
    for consumer in CONSUMERS:
        for run, event in zip(consumed[consumer], events, strict=True):
            upstream = stack.api(
                f"/api/v2/dags/{consumer}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents", token
            )
            assert [e["id"] for e in upstream["asset_events"]] == [event["id"]], consumer
