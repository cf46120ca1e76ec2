"""DAG parse time: a file with 50 genius operators vs the same DAG with 50 PythonOperators.

    python bench/bench_dag_parse.py [--tasks 50] [--repeats 7]

What the DAG processor does per file is measured in two ways, both side by side and interleaved:

* **cold** — a fresh interpreter imports the file through Airflow's ``DagBag`` and serialises the DAG
  (what a new DAG-processor process pays, including importing our operator modules), minus the time
  the same interpreter needs for ``import airflow.sdk`` alone;
* **warm** — in one interpreter that has already imported everything, the file is parsed again and
  serialised, many times (what every later re-parse of the file costs).

Goal: genius/anchor ≤ 1.1x (issue: DAG parse of 50 genius operators vs 50 raw provider operators).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

GOAL = 1.1

GENIUS_DAG = """
from airflow.sdk import dag
from airflow_genius.operators.local import GeniusBoltOperator

@dag(dag_id="bench_genius", schedule=None, catchup=False)
def bench_genius():
    previous = None
    for i in range({n}):
        task = GeniusBoltOperator(
            task_id=f"bolt_{{i}}",
            task_class="airflow_genius.examples.tasks:WordCount",
            method="count",
            method_kwargs={{"top": i}},
            input_uri="/data/in",
            output_uri="/data/out",
        )
        if previous is not None:
            previous >> task
        previous = task

bench_genius()
"""

RAW_DAG = """
from airflow.sdk import dag
from airflow.providers.standard.operators.python import PythonOperator

def count(top):
    return top

@dag(dag_id="bench_raw", schedule=None, catchup=False)
def bench_raw():
    previous = None
    for i in range({n}):
        task = PythonOperator(
            task_id=f"python_{{i}}",
            python_callable=count,
            op_kwargs={{"top": i}},
        )
        if previous is not None:
            previous >> task
        previous = task

bench_raw()
"""

CHILD = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import airflow.sdk  # noqa: F401
    t1 = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    t2 = time.perf_counter()
    path, warm_rounds = sys.argv[1], int(sys.argv[2])

    def parse():
        bag = DagBag(dag_folder=path, safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        (dag,) = bag.dags.values()
        DagSerialization.to_dict(dag)
        return bag

    t3 = time.perf_counter()
    parse()
    cold = time.perf_counter() - t3
    warm = []
    for _ in range(warm_rounds):
        start = time.perf_counter()
        parse()
        warm.append(time.perf_counter() - start)
    print(json.dumps({"cold": cold, "warm": sorted(warm)[len(warm) // 2], "sdk_import": t1 - t0}))
    """
)


def measure(path: Path, warm_rounds: int, env: dict[str, str]) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(warm_rounds)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"child failed for {path.name}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warm-rounds", type=int, default=15)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "airflow"
        home.mkdir()
        env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        files = {}
        for name, template in (("genius", GENIUS_DAG), ("raw", RAW_DAG)):
            folder = Path(tmp) / name
            folder.mkdir()
            files[name] = folder / f"bench_{name}.py"
            files[name].write_text(template.format(n=options.tasks))
        results: dict[str, list[dict[str, float]]] = {"genius": [], "raw": []}
        for _ in range(options.repeats):  # interleaved: both see the same machine noise
            for name in ("genius", "raw"):
                results[name].append(measure(files[name], options.warm_rounds, env))

    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    print(f"DAG parse: {options.tasks} tasks per DAG, {options.repeats} interleaved repeats, medians")
    print(f"{'measure':<44}{'genius ms':>11}{'raw ms':>11}{'ratio':>8}")
    print("-" * 74)
    ratios = {}
    for field, label in (
        ("warm", "warm re-parse + serialise (per file)"),
        ("cold", "cold first parse in a new process"),
    ):
        ours, anchor = median("genius", field) * 1000, median("raw", field) * 1000
        ratios[field] = ours / anchor
        print(f"{label:<44}{ours:>11.1f}{anchor:>11.1f}{ratios[field]:>7.2f}x")
    verdict = "MET" if ratios["warm"] <= GOAL else "MISSED"
    print(
        f"\nverdict: {verdict} — warm re-parse {ratios['warm']:.2f}x, cold {ratios['cold']:.2f}x (goal ≤ {GOAL}x)"
    )


if __name__ == "__main__":
    main()
