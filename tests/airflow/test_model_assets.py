"""Model versions as Airflow Assets: what a genius operator with a model declares when the DAG is
parsed (the ``genius-model:<dag>.<task>`` alias of a training task, the model inlet of a loading one),
the run record's ``models_saved`` metric, and, in a real ``dag.test()`` run saving to a git repository
and to S3 (moto_server), the asset event of each saved version read back from Airflow's metadata DB,
the runs it queues for DAGs scheduled on the model's Asset, and the OpenLineage datasets."""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import AIRFLOW
from genius_dagtest import dag_test

pytestmark = [pytest.mark.airflow]

TRAINER = "genius_model_asset_tasks:TinyTrainer"

# The task classes of the DAGs below, importable by the runtime from a folder on PYTHONPATH.
TASKS = textwrap.dedent(
    """
    import tempfile
    from pathlib import Path
    from airflow_genius.core.task import Task

    def write_model(size):
        folder = Path(tempfile.mkdtemp())
        (folder / "weights.bin").write_bytes(bytes(range(256)) * size)
        (folder / "config.json").write_text('{"size": %d}' % size)
        return folder

    class TinyTrainer(Task):
        def train(self, name: str, size: int) -> str:
            self.log_metric("size", size)
            return self.model.save(write_model(size), name, metadata={"size": size})

    class TinyPredictor(Task):
        def predict(self) -> int:
            return len((self.model_path / "weights.bin").read_bytes())
    """
)

DAGS = {
    "genius_model_producer": """
        import os
        from airflow.sdk import dag
        from airflow_genius.operators.local import GeniusTaskOperator

        @dag(dag_id="genius_model_producer", schedule=None)
        def genius_model_producer():
            train_git = GeniusTaskOperator(
                task_id="train_git", task_class="genius_model_asset_tasks:TinyTrainer", method="train",
                method_kwargs={"name": "tiny", "size": 3}, model_uri=os.environ["GIT_REGISTRY"],
            )
            GeniusTaskOperator(
                task_id="train_s3", task_class="genius_model_asset_tasks:TinyTrainer", method="train",
                method_kwargs={"name": "tiny", "size": 5}, model_uri=os.environ["S3_REGISTRY"],
            )
            predict = GeniusTaskOperator(
                task_id="predict", task_class="genius_model_asset_tasks:TinyPredictor", method="predict",
                model_uri=os.environ["GIT_REGISTRY"], model_name="tiny",
            )
            train_git >> predict

        genius_model_producer()
        """,
    # DAGs scheduled on each model's Asset, written as a user would: the store's URI plus the name.
    "genius_model_consumers": """
        import os
        from airflow.providers.standard.operators.empty import EmptyOperator
        from airflow.sdk import DAG, Asset

        for dag_id, uri in (("genius_model_consumer_git", os.environ["GIT_MODEL_ASSET"]),
                            ("genius_model_consumer_s3", os.environ["S3_MODEL_ASSET"])):
            with DAG(dag_id, schedule=[Asset(uri)]) as consumer:
                EmptyOperator(task_id="use")
            globals()[dag_id] = consumer
        """,
}

# Reads back, in a child with the same AIRFLOW_HOME, the asset events of one run and the runs they queued.
READ_BACK = textwrap.dedent(
    """
    import json, sys
    from sqlalchemy import select
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = select(AssetEvent).where(AssetEvent.source_dag_id == sys.argv[1],
                                         AssetEvent.source_run_id == sys.argv[2])
        events = [{"uri": e.asset.uri, "task_id": e.source_task_id,
                   "aliases": sorted(a.name for a in e.source_aliases), "extra": e.extra}
                  for e in session.scalars(query)]
        queued = [[q.target_dag_id, session.get(AssetModel, q.asset_id).uri]
                  for q in session.scalars(select(AssetDagRunQueue))]
    print("READ_BACK " + json.dumps({"events": events, "queued": queued}))
    """
)


def expected_digest(files: dict[str, bytes]) -> str:
    """The content digest of a model folder, computed here from its bytes (docs/models.md)."""
    lines = sorted(
        f"{path}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n" for path, data in files.items()
    )
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def tiny_model(size: int) -> dict[str, bytes]:
    """What TinyTrainer saves for ``size``."""
    return {"weights.bin": bytes(range(256)) * size, "config.json": b'{"size": %d}' % size}


def bare_repo(path: Path) -> Path:
    subprocess.run(["git", "init", "--bare", "--quiet", str(path)], check=True)
    return path


# ------------------------------------------------------------------------------------------ declarations
def operator(**kwargs: Any) -> Any:
    """A local genius operator inside the DAG ``etl``."""
    from airflow.sdk import DAG

    from airflow_genius.operators.local import GeniusTaskOperator

    with DAG("etl", schedule=None):
        return GeniusTaskOperator(task_id="train", task_class=TRAINER, method="train", **kwargs)


def mapped(partial: dict[str, Any], **expand: Any) -> Any:
    """A mapped local genius operator inside the DAG ``etl``."""
    from airflow.sdk import DAG

    from airflow_genius.operators.local import GeniusTaskOperator

    with DAG("etl", schedule=None):
        return GeniusTaskOperator.partial(
            task_id="train", task_class=TRAINER, method="train", **partial
        ).expand(**expand)


def test_model_tasks_declare_the_model_alias_or_inlet_when_parsed() -> None:
    from airflow.sdk import Asset, AssetAlias

    from airflow_genius.operators.local import GeniusTaskOperator

    alias = AssetAlias("genius-model:etl.train")
    # a training task (a model store, no model name): the alias its saved versions' Assets join
    train = operator(model_uri="s3://ml/models/")
    assert train.outlets == [alias] and train.inlets == []
    # beside its output root
    both = operator(model_uri="git+file:///srv/models.git", output_uri="/data/out")
    assert both.outlets == [Asset("file:///data/out"), alias]
    # a loading task: the model is an inlet, named by the store's URI and the model's name
    assert operator(model_uri="s3://ml/models/", model_name="bert").inlets == [Asset("s3://ml/models/bert")]
    git = operator(model_uri="git+ssh://git@git.example.com/ml/models.git", model_name="bert")
    assert git.inlets == [Asset("ssh://git.example.com/ml/models.git/bert")] and git.outlets == []
    # no model store: no model Asset; outside a DAG there is no dag_id to name an alias with
    assert operator().outlets == [] and operator().inlets == []
    alone = GeniusTaskOperator(task_id="t", task_class=TRAINER, method="train", model_uri="s3://ml/m")
    assert alone.outlets == []
    # mapped: the same from partial(); a name from the expansion is known only at run time
    assert mapped({"model_uri": "s3://ml/m"}, method_kwargs=[{}, {}]).outlets == [alias]
    loading = mapped({"model_uri": "s3://ml/m", "model_name": "bert"}, method_kwargs=[{}, {}])
    assert loading.inlets == [Asset("s3://ml/m/bert")] and loading.outlets == []
    per_name = mapped({"model_uri": "s3://ml/m"}, model_name=["a", "b"])
    assert per_name.inlets == [] and per_name.outlets == [alias]
    assert mapped({}, model_uri=["s3://ml/a", "s3://ml/b"]).outlets == [alias]
    assert mapped({}, method_kwargs=[{}, {}]).outlets == []


def test_a_task_records_the_versions_its_model_manager_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from airflow_genius.core.models import open_model_manager
    from airflow_genius.core.task import MODELS_SAVED_METRIC

    (tmp_path / "genius_model_asset_tasks.py").write_text(TASKS)
    monkeypatch.syspath_prepend(str(tmp_path))
    tasks = importlib.import_module("genius_model_asset_tasks")
    repo = bare_repo(tmp_path / "models.git")
    with open_model_manager(f"git+file://{repo}") as manager:
        task = tasks.TinyTrainer(model=manager)
        assert task.metrics == {}  # nothing saved yet: no entry
        assert task.train("tiny", 2) == "v000001" and task.train("tiny", 4) == "v000002"
    assert task.metrics["size"] == 4  # log_metric's own metrics stay
    assert task.metrics[MODELS_SAVED_METRIC] == [
        {"uri": f"git+file://{repo}", "name": "tiny", "version": v, "digest": expected_digest(tiny_model(n))}
        for v, n in (("v000001", 2), ("v000002", 4))
    ]


def test_saved_versions_go_to_a_declared_asset_else_through_the_alias() -> None:
    from airflow.sdk import Asset, AssetAlias
    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_genius.core.state.base import RunKey, RunRecord, Status

    now = datetime.now(timezone.utc)
    saved = [
        {"uri": "s3://ml/models", "name": "bert", "version": v, "digest": f"d{v}"}
        for v in ("v000001", "v000002")
    ]
    record = RunRecord(
        key=RunKey("etl", "train", "manual__1", -1),
        status=Status.SUCCESS,
        try_number=1,
        history=(),
        created_at=now,
        updated_at=now,
        metrics={"models_saved": [*saved, {"uri": 3}]},  # a malformed entry is skipped
    )
    bert = Asset("s3://ml/models/bert")
    # the model Asset declared by hand (as before this feature): its event carries the first version
    task = operator(model_uri="s3://ml/models", outlets=[bert])
    events = OutletEventAccessors()
    task.emit_model_events({"outlet_events": events}, record)
    assert events[bert].extra == {
        "name": "bert",
        "version": "v000001",
        "digest": "dv000001",
        "registry": "s3://ml/models",
        "dag_id": "etl",
        "task_id": "train",
        "run_id": "manual__1",
        "map_index": -1,
        "runner": "local",
    }
    # the second version of the same Asset goes through the alias, as its own event
    (second,) = events[AssetAlias("genius-model:etl.train")].asset_alias_events
    assert second.dest_asset_key.uri == bert.uri and second.extra["version"] == "v000002"
    # a loading task declares no alias: nothing is emitted for what it saved
    loader = operator(model_uri="s3://ml/models", model_name="other")
    quiet = OutletEventAccessors()
    loader.emit_model_events({"outlet_events": quiet}, record)
    assert len(quiet) == 0
    assert [extra["version"] for _, extra in loader.genius_models] == ["v000001", "v000002"]


# ------------------------------------------------------------------------------------------ a real run
def test_saved_versions_emit_asset_events_that_queue_scheduled_dags(
    run_python: Any, airflow_env: dict[str, str], s3_bucket: str, tmp_path: Path
) -> None:
    import boto3

    dags, lineage, tasks = tmp_path / "dags", tmp_path / "lineage", tmp_path / "tasks"
    for folder in (dags, lineage, tasks):
        folder.mkdir()
    (tasks / "genius_model_asset_tasks.py").write_text(TASKS)
    for name, text in DAGS.items():
        (dags / f"{name}.py").write_text(textwrap.dedent(text))
    repo = bare_repo(tmp_path / "models.git")
    git_asset, s3_asset = f"file://{repo}/tiny", f"s3://{s3_bucket}/models/tiny"
    env = {
        **airflow_env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "genius-tests",
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(lineage / "events.jsonl"), "append": True}
        ),
        "PYTHONPATH": f"{tasks}:{airflow_env['PYTHONPATH']}",
        "GIT_REGISTRY": f"git+file://{repo}",
        "S3_REGISTRY": f"s3://{s3_bucket}/models/",
        "GIT_MODEL_ASSET": git_asset,
        "S3_MODEL_ASSET": s3_asset,
    }
    # the consumers exist (unpaused) in the metadata DB before the producer runs, as a dag-processor leaves them
    done = subprocess.run(
        [AIRFLOW, "dags", "reserialize"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result, log = dag_test(run_python, env, dags, "genius_model_producer")
    assert result["state"] == "success", log[-3000:]
    # predict loaded the version train_git saved (3 x 256 bytes of weights)
    assert {ti["task_id"]: ti["xcom"] for ti in result["tis"]}["predict"] == 3 * 256

    back = run_python(READ_BACK, env, args=["genius_model_producer", result["run_id"]])
    (line,) = [line for line in back.stdout.splitlines() if line.startswith("READ_BACK ")]
    found = json.loads(line.removeprefix("READ_BACK "))
    events = {e["task_id"]: e for e in found["events"]}
    assert set(events) == {"train_git", "train_s3"}, found["events"]  # predict saved nothing
    git_event, s3_event = events["train_git"], events["train_s3"]
    assert git_event["uri"] == git_asset and s3_event["uri"] == s3_asset
    for task_id, event in events.items():
        assert event["aliases"] == [f"genius-model:genius_model_producer.{task_id}"], event
        assert event["extra"]["name"] == "tiny" and event["extra"]["version"] == "v000001", event
        assert (event["extra"]["dag_id"], event["extra"]["task_id"]) == ("genius_model_producer", task_id)
        assert (event["extra"]["run_id"], event["extra"]["map_index"]) == (result["run_id"], -1)
    # the digest is the content's: computed here from the bytes, and from the S3 version's own manifest
    assert git_event["extra"]["digest"] == expected_digest(tiny_model(3))
    assert s3_event["extra"]["digest"] == expected_digest(tiny_model(5))
    body = boto3.client("s3").get_object(Bucket=s3_bucket, Key="models/tiny/v000001/manifest.json")["Body"]
    manifest = json.loads(body.read())
    lines = sorted(f"{f['path']}\0{f['size']}\0{f['sha256']}\n" for f in manifest["files"])
    assert s3_event["extra"]["digest"] == hashlib.sha256("".join(lines).encode()).hexdigest()
    # each event queued a run of the DAG scheduled on that model's Asset
    assert ["genius_model_consumer_git", git_asset] in found["queued"], found["queued"]
    assert ["genius_model_consumer_s3", s3_asset] in found["queued"], found["queued"]

    # OpenLineage: the saved version is an output dataset (with its version), the loaded model an input
    complete: dict[str, dict[str, Any]] = {}
    for text in (lineage / "events.jsonl").read_text().splitlines():
        event = json.loads(text)
        if event["eventType"] == "COMPLETE" and event["job"]["name"].startswith("genius_model_producer."):
            complete[event["job"]["name"].rpartition(".")[2]] = event
    (output,) = complete["train_git"]["outputs"]
    assert (output["namespace"], output["name"]) == ("file", f"{repo}/tiny")
    assert output["facets"]["version"]["datasetVersion"] == "v000001"
    (s3_output,) = complete["train_s3"]["outputs"]
    assert (s3_output["namespace"], s3_output["name"]) == (f"s3://{s3_bucket}", "models/tiny")
    assert [(d["namespace"], d["name"]) for d in complete["predict"]["inputs"]] == [("file", f"{repo}/tiny")]
