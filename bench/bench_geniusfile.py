"""DAG parse time: a 100-step Geniusfile vs a hand-written DAG file of the same operators.

    python bench/bench_geniusfile.py [--steps 100] [--repeats 7] [--warm-rounds 15]

Both DAGs are one spout and ``steps - 1`` bolts of the local runner, each bolt reading the output of
the one before (an XCom template), with retries, a timeout, a pool, a queue and a param, rendered with
``render_template_as_native_obj``. The Geniusfile's DAG file is the usual two-line loader
(``load_geniusfiles``) beside the YAML. Measured as in ``bench_dag_parse.py`` (same child), side by
side and interleaved, medians:

* **warm** — in one interpreter that has imported everything, the file is parsed again through
  Airflow's ``DagBag`` and serialised, many times;
* **first** — a fresh interpreter that has imported the modules the DAG file imports (what Airflow's
  DAG processor does before it forks a parsing process, ``[dag_processor] parsing_pre_import_modules``,
  on by default) and frozen its heap for the garbage collector (``gc.freeze()``, as the processor does
  before it forks) parses the file once;
* **cold** — the same plus those imports (a processor with pre-import turned off).

Both have imported ``airflow.sdk`` before any clock starts. Bytecode is cached first (in a private
``PYTHONPYCACHEPREFIX``), as an installed package has it.

Goal: Geniusfile / hand-written ≤ 1.1x.
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

LOADER = """
from pathlib import Path
from airflow_genius.dag_factory import load_geniusfiles  # builds an airflow DAG per Geniusfile

load_geniusfiles(Path(__file__).resolve().parent, globals())
"""

HAND_WRITTEN = """
from datetime import timedelta
from airflow.sdk import DAG, Param
from airflow_genius.operators.local import GeniusBoltOperator, GeniusSpoutOperator

COMMON = {{"retries": 1, "retry_delay": timedelta(seconds=5), "execution_timeout": timedelta(seconds=600),
          "pool": "default_pool", "queue": "default"}}

with DAG(dag_id="bench_hand", schedule=None, catchup=False, params={{"top": Param(5, type="integer")}},
         render_template_as_native_obj=True) as dag:
    previous = GeniusSpoutOperator(
        task_id="step_0", task_class="airflow_genius.examples.tasks:QuoteSpout", method="fetch",
        method_kwargs={{"count": 10}}, output_uri="/data/step_0", **COMMON,
    )
    for i in range(1, {n}):
        task = GeniusBoltOperator(
            task_id=f"step_{{i}}", task_class="airflow_genius.examples.tasks:WordCount", method="count",
            method_kwargs={{"top": "{{{{ params.top }}}}"}}, output_uri=f"/data/step_{{i}}",
            input_uri=f"{{{{{{{{ ti.xcom_pull(task_ids='step_{{i - 1}}', key='genius_output') }}}}}}}}",
            **COMMON,
        )
        previous >> task
        previous = task
"""


# One fresh interpreter per call: the DAG file's own imports (found as Airflow's DAG processor finds them
# for [dag_processor] parsing_pre_import_modules), then the first parse + serialisation, then warm
# re-parses. "cold" = imports + first parse (a processor without pre-import); "first" = the first parse
# alone (the processor imported the modules before it forked the parsing process).
CHILD = textwrap.dedent(
    """
    import ast, gc, importlib, json, sys, time
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    path, warm_rounds = sys.argv[1], int(sys.argv[2])

    def parse():
        bag = DagBag(dag_folder=path, safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        (dag,) = bag.dags.values()
        DagSerialization.to_dict(dag)

    t0 = time.perf_counter()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("airflow_genius"):
            importlib.import_module(node.module)
    gc.freeze()  # as the DAG processor does before it forks a parsing process
    t1 = time.perf_counter()
    parse()
    t2 = time.perf_counter()
    warm = []
    for _ in range(warm_rounds):
        start = time.perf_counter()
        parse()
        warm.append(time.perf_counter() - start)
    print(json.dumps({"cold": t2 - t0, "first": t2 - t1, "warm": sorted(warm)[len(warm) // 2]}))
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
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def geniusfile(steps: int) -> str:
    lines = [
        "version: 1",
        "dag: {id: bench_geniusfile, params: {top: 5}}",
        "defaults: {runner: local, retries: 1, retry_delay_seconds: 5, timeout_seconds: 600,",
        "           pool: default_pool, queue: default}",
        "spouts:",
        "  step_0:",
        "    class: airflow_genius.examples.tasks:QuoteSpout",
        "    method: fetch",
        "    kwargs: {count: 10}",
        "    output: /data/step_0",
        "bolts:",
    ]
    for i in range(1, steps):
        lines += [
            f"  step_{i}:",
            "    class: airflow_genius.examples.tasks:WordCount",
            "    method: count",
            f"    input: step_{i - 1}",
            '    kwargs: {top: "{{ params.top }}"}',
            f"    output: /data/step_{i}",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warm-rounds", type=int, default=15)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "airflow"
        home.mkdir()
        env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        # Bytecode as an installed package has it: cached once (in a private folder), then read by
        # every measured process — else each cold run would compile our modules' source again.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        files = {}
        for name in ("geniusfile", "hand"):
            folder = Path(tmp) / name
            folder.mkdir()
            files[name] = folder / f"bench_{name}.py"
        files["geniusfile"].write_text(LOADER)
        (files["geniusfile"].parent / "bench.genius.yaml").write_text(geniusfile(options.steps))
        files["hand"].write_text(HAND_WRITTEN.format(n=options.steps))
        for path in files.values():  # untimed: writes the bytecode cache
            measure(path, 1, env)
        results: dict[str, list[dict[str, float]]] = {"geniusfile": [], "hand": []}
        for _ in range(options.repeats):  # interleaved: both see the same machine noise
            for name in ("geniusfile", "hand"):
                results[name].append(measure(files[name], options.warm_rounds, env))

    def median(name: str, field: str) -> float:
        return statistics.median(r[field] for r in results[name])

    print(f"DAG parse: {options.steps} steps, {options.repeats} interleaved repeats, medians")
    print(f"{'measure':<44}{'yaml ms':>11}{'hand ms':>11}{'ratio':>8}")
    print("-" * 74)
    ratios = {}
    for field, label in (
        ("warm", "warm re-parse + serialise (per file)"),
        ("first", "first parse, modules pre-imported"),
        ("cold", "cold: imports + first parse"),
    ):
        ours, anchor = median("geniusfile", field) * 1000, median("hand", field) * 1000
        ratios[field] = ours / anchor
        print(f"{label:<44}{ours:>11.1f}{anchor:>11.1f}{ratios[field]:>7.2f}x")
    verdict = "MET" if ratios["warm"] <= GOAL else "MISSED"
    print(
        f"\nverdict (warm): {verdict} — warm {ratios['warm']:.2f}x, first {ratios['first']:.2f}x, "
        f"cold {ratios['cold']:.2f}x (goal ≤ {GOAL}x)"
    )


if __name__ == "__main__":
    main()
