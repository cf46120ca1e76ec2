"""Assets of mapped genius operators (``partial().expand()``): what they declare when the DAG is parsed,
and, in a real ``dag.test()`` run, the asset event each map index's commit emits — on the shared output
root's Asset, or through the alias when each instance gets its own ``output_uri`` from the expansion."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from genius_dagtest import dag_test

pytestmark = [pytest.mark.airflow]

SPOUT = "airflow_genius.examples.tasks:QuoteSpout"

DAG_FILE = textwrap.dedent(
    """
    import os
    from airflow.sdk import dag
    from airflow_genius.operators.local import GeniusSpoutOperator

    DATA = os.environ["GENIUS_EXAMPLE_DATA"]

    @dag(dag_id="genius_assets_mapped", schedule=None)
    def genius_assets_mapped():
        # one output root for every map index: each commits its own partition under it
        GeniusSpoutOperator.partial(
            task_id="shared", task_class="airflow_genius.examples.tasks:QuoteSpout", method="fetch",
            output_uri=f"{DATA}/quotes",
        ).expand(method_kwargs=[{"count": 2}, {"count": 3}])
        # each map index writes to its own root, given by the expansion
        GeniusSpoutOperator.partial(
            task_id="spread", task_class="airflow_genius.examples.tasks:QuoteSpout", method="fetch",
        ).expand(output_uri=[f"{DATA}/a", f"{DATA}/b"])

    genius_assets_mapped()
    """
)

# Reads back, in a child with the same AIRFLOW_HOME, the asset events of one run (JSON on one line).
EVENTS = textwrap.dedent(
    """
    import json, sys
    from sqlalchemy import select
    from airflow.models.asset import AssetAliasModel, AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        query = select(AssetEvent).where(AssetEvent.source_dag_id == sys.argv[1],
                                         AssetEvent.source_run_id == sys.argv[2])
        events = [{"uri": e.asset.uri, "task_id": e.source_task_id, "map_index": e.source_map_index,
                   "aliases": sorted(a.name for a in e.source_aliases), "extra": e.extra}
                  for e in session.scalars(query)]
    print("EVENTS " + json.dumps(events))
    """
)


def build(**expand: Any) -> Any:
    """A mapped spout inside a DAG, expanded with ``expand`` (or ``expand_kwargs=`` its value)."""
    from airflow.sdk import DAG

    from airflow_genius.operators.local import GeniusSpoutOperator

    partial_kwargs = expand.pop("partial", {})
    with DAG("etl", schedule=None):
        partial = GeniusSpoutOperator.partial(
            task_id="fetch", task_class=SPOUT, method="fetch", **partial_kwargs
        )
        if "expand_kwargs" in expand:
            return partial.expand_kwargs(expand["expand_kwargs"])
        return partial.expand(**expand)


def test_mapped_operators_declare_their_assets_when_parsed() -> None:
    from airflow.sdk import Asset, AssetAlias

    alias = AssetAlias("genius-output:etl.fetch")
    # output root given to partial(): the same Asset as an unmapped operator; a plain input is an inlet
    shared = build(partial={"output_uri": "/data/q/", "input_uri": "s3://lake/raw/"}, method_kwargs=[{}, {}])
    assert shared.outlets == [Asset("file:///data/q")] and shared.inlets == [Asset("s3://lake/raw")]
    # output root from the expansion (expand, or expand_kwargs of dicts or of an XCom): the alias
    assert build(output_uri=["/data/a", "/data/b"]).outlets == [alias]
    assert build(expand_kwargs=[{"output_uri": "/data/a"}, {"output_uri": "/data/b"}]).outlets == [alias]
    # an expanded input declares nothing (as a templated one); no output at all: no outlet
    spread_in = build(input_uri=["/data/a", "/data/b"])
    assert spread_in.inlets == [] and spread_in.outlets == []
    # the user's own outlets stay, first
    mine = Asset("s3://lake/report")
    assert build(partial={"outlets": [mine]}, output_uri=["/a"]).outlets == [mine, alias]


def test_each_map_index_commits_its_own_asset_event(
    run_python: Any, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    dags, data = tmp_path / "dags", tmp_path / "data"
    dags.mkdir()
    (dags / "genius_assets_mapped.py").write_text(DAG_FILE)
    env = {
        **airflow_env,
        "GENIUS_EXAMPLE_DATA": str(data),
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
    }
    result, log = dag_test(run_python, env, dags, "genius_assets_mapped")
    assert result["state"] == "success", log[-3000:]
    # the instances run as themselves: no Asset of theirs is unknown to Airflow (only alias targets are new)
    assert "Task has inactive assets" not in log, log[-3000:]
    done = run_python(EVENTS, env, args=["genius_assets_mapped", result["run_id"]])
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("EVENTS ")]
    events = {(e["task_id"], e["map_index"]): e for e in json.loads(line.removeprefix("EVENTS "))}
    assert set(events) == {("shared", 0), ("shared", 1), ("spread", 0), ("spread", 1)}, events

    def partition(event: dict[str, Any]) -> Path:
        return Path(unquote(urlsplit(event["extra"]["partition_uri"]).path))

    roots = {("shared", 0): "quotes", ("shared", 1): "quotes", ("spread", 0): "a", ("spread", 1): "b"}
    for (task_id, map_index), event in events.items():
        root = data / roots[task_id, map_index]
        assert event["uri"] == f"file://{root}", event
        # the extra names this instance and its own partition (…/map_index=N/), committed
        assert event["extra"]["map_index"] == map_index and event["extra"]["task_id"] == task_id
        assert partition(event).is_relative_to(root) and partition(event).name == f"map_index={map_index}"
        assert (partition(event) / "_SUCCESS").is_file()
        # the spread instances reached their roots' Assets through the task's alias
        expected_aliases = ["genius-output:genius_assets_mapped.spread"] if task_id == "spread" else []
        assert event["aliases"] == expected_aliases, event
    # two commits under one root: two events on one Asset, each with its own partition and digest
    shared = [events["shared", 0]["extra"], events["shared", 1]["extra"]]
    assert shared[0]["partition_uri"] != shared[1]["partition_uri"]
    assert shared[0]["manifest_sha256"] != shared[1]["manifest_sha256"]
