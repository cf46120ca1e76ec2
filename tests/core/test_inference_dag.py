"""The inference example DAG (dags_examples/genius_inference.py) parses, and its tasks build valid specs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.airflow

EXAMPLE = Path(__file__).resolve().parents[2] / "dags_examples" / "genius_inference.py"

# Loads the DAG file as the DAG processor does, renders the stream URIs for one run id and builds the
# TaskSpecs of the predictor and a worker from the operators' arguments; prints what the test checks.
PARSE = textwrap.dedent(
    """
    import json, sys
    import jinja2
    from airflow.dag_processing.dagbag import DagBag
    from airflow_genius.core.spec import build_spec
    bag = DagBag(dag_folder=sys.argv[1])
    assert not bag.import_errors, bag.import_errors
    dag = bag.dags["genius_inference"]
    render = lambda value: jinja2.Template(value).render(run_id="manual__2024-01-01T00:00:00+00:00")
    ids = {"dag_id": dag.dag_id, "run_id": "r"}
    predictor, worker = dag.get_task("start_predictor"), dag.get_task("worker_0")
    kwargs = {k: render(v) if isinstance(v, str) else v for k, v in predictor.genius_call["kwargs"].items()}
    predictor_spec = build_spec(predictor.task_class, predictor.method, kwargs=kwargs,
                                task_id=predictor.task_id, **ids, **predictor.genius_service)
    call = worker.genius_call
    worker_spec = build_spec(worker.task_class, worker.method, kind=worker.genius_kind,
                             input_uri=render(call["input_uri"]), output_uri=render(call["output_uri"]),
                             max_records=worker.max_records, max_seconds=worker.max_seconds,
                             unbounded=worker.unbounded, task_id=worker.task_id, **ids)
    print("DAG " + json.dumps({
        "tasks": sorted(dag.task_ids),
        "downstream": {t: sorted(dag.get_task(t).downstream_task_ids) for t in sorted(dag.task_ids)},
        "teardowns": sorted(t.task_id for t in dag.tasks if t.is_teardown),
        "predictor": predictor_spec.to_dict(),
        "worker": worker_spec.to_dict(),
    }))
    """
)


def test_the_inference_example_dag_parses_and_builds_valid_specs(  # type: ignore[no-untyped-def]
    run_python, airflow_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / EXAMPLE.name).write_text(EXAMPLE.read_text())
    done = run_python(PARSE, airflow_env, args=[str(folder)])
    line = next((x for x in done.stdout.splitlines() if x.startswith("DAG ")), None)
    assert line, done.stderr[-3000:]
    dag = json.loads(line.removeprefix("DAG "))
    workers = [f"worker_{i}" for i in range(3)]
    stops = [f"stop_worker_{i}" for i in range(3)]
    assert dag["tasks"] == sorted(["start_predictor", "ask", "stop_predictor", *workers, *stops])
    assert dag["downstream"]["start_predictor"] == ["ask", "stop_predictor"]
    assert dag["downstream"]["ask"] == sorted(["stop_predictor", *stops])
    assert all(dag["downstream"][w] == [] for w in workers)  # they run beside the others until stopped
    assert dag["teardowns"] == ["stop_predictor"]

    predictor, worker = dag["predictor"], dag["worker"]
    assert predictor["service"]["port"] == 8000
    requests = predictor["task"]["kwargs"]["requests"]
    assert requests.endswith("?stream=genius-inference-manual__2024-01-01T000000_0000:queries")
    assert worker["input"] == {
        "type": "stream",
        "uri": f"{requests}&group=sentiment&claim_idle=10",
        "partition_scheme": worker["input"]["partition_scheme"],
    }
    assert worker["output"]["uri"] == predictor["task"]["kwargs"]["replies"]
    assert worker["window"] == {"max_records": 32, "max_seconds": 1.0, "unbounded": True, "max_windows": None}
