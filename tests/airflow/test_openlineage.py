"""OpenLineage events of a real local run (dag.test() with the provider's file transport): the input and
output datasets of genius tasks and the ``genius`` run facet, the committed partition in it."""

from __future__ import annotations

import hashlib
import json
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from genius_dagtest import dag_test

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

DAG_FILE = textwrap.dedent(
    """
    import os
    from airflow.sdk import dag
    from airflow_genius.operators.local import GeniusBoltOperator, GeniusSpoutOperator

    DATA = os.environ["GENIUS_EXAMPLE_DATA"]

    @dag(dag_id="genius_lineage", schedule=None, render_template_as_native_obj=True)
    def genius_lineage():
        fetch = GeniusSpoutOperator(
            task_id="fetch", task_class="airflow_genius.examples.tasks:QuoteSpout", method="fetch",
            method_kwargs={"count": 4}, output_uri=f"{DATA}/quotes",
        )
        count = GeniusBoltOperator(
            task_id="count", task_class="airflow_genius.examples.tasks:WordCount", method="count",
            method_kwargs={"top": 2}, input_uri="{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}",
            output_uri=f"{DATA}/counts",
        )
        fetch >> count

    genius_lineage()
    """
)


def complete_events(folder: Path) -> dict[str, dict[str, Any]]:
    """The COMPLETE event of each task, by task id, from the file transport's files."""
    events: dict[str, dict[str, Any]] = {}
    for path in folder.iterdir():
        for line in path.read_text().splitlines():
            event = json.loads(line)
            task = event["job"]["name"].rpartition(".")[2]
            if event["eventType"] == "COMPLETE" and event["job"]["name"].startswith("genius_lineage."):
                events[task] = event
    return events


def test_a_local_run_emits_datasets_and_the_genius_facet(
    run_python: Any, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    dags, lineage, data = tmp_path / "dags", tmp_path / "lineage", tmp_path / "data"
    dags.mkdir()
    lineage.mkdir()
    (dags / "genius_lineage.py").write_text(DAG_FILE)
    env = {
        **airflow_env,
        "GENIUS_EXAMPLE_DATA": str(data),
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "genius-tests",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(lineage / "events.jsonl"), "append": True}
        ),
    }
    result, log = dag_test(run_python, env, dags, "genius_lineage")
    assert result["state"] == "success", log[-3000:]

    events = complete_events(lineage)
    assert set(events) >= {"fetch", "count"}, sorted(events)
    fetch, count = events["fetch"], events["count"]

    # fetch: no input, its output root; the facet names the runner and the committed partition.
    assert fetch["inputs"] == []
    assert [(d["namespace"], d["name"]) for d in fetch["outputs"]] == [("file", str(data / "quotes"))]
    facet = fetch["run"]["facets"]["genius"]
    assert facet["runner"] == "local" and "remoteJobId" not in facet
    assert (facet["taskClass"], facet["method"], facet["kind"]) == (
        "airflow_genius.examples.tasks:QuoteSpout",
        "fetch",
        "spout",
    )
    partition = Path(unquote(urlsplit(facet["partitionUri"]).path))
    assert partition.is_relative_to(data / "quotes") and (partition / "_SUCCESS").is_file()
    assert facet["manifestSha256"] == hashlib.sha256((partition / "_SUCCESS").read_bytes()).hexdigest()
    assert facet["fileCount"] == fetch["outputs"][0]["outputFacets"]["outputStatistics"]["fileCount"] >= 1

    # count read fetch's partition through XCom: its input dataset is fetch's output root, not the partition.
    assert [(d["namespace"], d["name"]) for d in count["inputs"]] == [("file", str(data / "quotes"))]
    assert [(d["namespace"], d["name"]) for d in count["outputs"]] == [("file", str(data / "counts"))]
    assert count["run"]["facets"]["genius"]["method"] == "count"
