"""DAG parse time: a 100-step Geniusfile vs a hand-written DAG file of the same operators.

    python bench/bench_geniusfile.py [--steps 100] [--repeats 21] [--warm-rounds 10]

Both DAGs are one spout and ``steps - 1`` bolts of the local runner, each bolt reading the output of
the one before (an XCom template), with retries, a timeout, a pool, a queue and a param, rendered with
``render_template_as_native_obj``. The Geniusfile's DAG file is the usual two-line loader
(``load_geniusfiles``) beside the YAML. Each repeat runs one fresh interpreter per file, the two
interleaved (both see the same machine noise), and measures:

* **cold** (the goal's measure: what Airflow's DAG processor pays per parse) — the interpreter has
  imported ``airflow.sdk`` and the modules the processor pre-imports for the file
  (``[dag_processor] parsing_pre_import_modules``, on by default: only the imported modules whose names
  start with ``airflow.``, found by ``airflow.utils.file.iter_airflow_imports``) and frozen its heap
  (``gc.freeze()``, as the processor's manager does); then the file is parsed through Airflow's
  ``DagBag`` and the DAG serialised. The parse includes importing ``airflow_genius`` modules: the
  processor never pre-imports them, and it parses each file in a new process, so every parse pays it;
* **first** — the same parse after the ``airflow_genius`` modules the DAG file itself imports were
  imported too (not what the processor does: how much of cold is those imports);
* **warm** — the file parsed and serialised again in that interpreter, many times (not what Airflow 3
  does, which parses each file in a new process: the cost of the parse alone).

Bytecode is cached first (in a private ``PYTHONPYCACHEPREFIX``), as an installed package has it. Times
are the process's CPU time, medians over the repeats (the machine is shared: wall time adds the waits
for a core, which other processes decide); wall-time medians and CPU minimums are printed as well.

Goal: Geniusfile / hand-written ≤ 1.1x, cold, CPU median.
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


# One fresh interpreter per call: the DAG processor's pre-imports, then (cold) the first parse +
# serialisation, with our modules imported inside it, or (first) the same after importing the
# airflow_genius modules the DAG file names; then warm re-parses. Each in CPU and wall time.
CHILD = textwrap.dedent(
    """
    import ast, gc, importlib, json, sys, time
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.file import iter_airflow_imports
    path, mode, warm_rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def parse():
        bag = DagBag(dag_folder=path, safe_mode=False)
        assert not bag.import_errors, bag.import_errors
        (dag,) = bag.dags.values()
        DagSerialization.to_dict(dag)

    def now():
        return time.process_time(), time.perf_counter()

    for module in iter_airflow_imports(path):  # what the DAG processor pre-imports: airflow.* only
        importlib.import_module(module)
    gc.freeze()  # as the DAG processor's manager does before it starts parsing processes
    if mode == "first":
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_genius"):
                importlib.import_module(node.module)
    start = now()
    parse()
    end = now()
    warm = {"cpu": [], "wall": []}
    for _ in range(warm_rounds):
        before = now()
        parse()
        after = now()
        warm["cpu"].append(after[0] - before[0])
        warm["wall"].append(after[1] - before[1])
    result = {}
    for index, clock in enumerate(("cpu", "wall")):
        result[clock] = {mode: end[index] - start[index]}
        if warm_rounds:
            result[clock]["warm"] = sorted(warm[clock])[len(warm[clock]) // 2]
    print(json.dumps(result))
    """
)


def measure(path: Path, mode: str, warm_rounds: int, env: dict[str, str]) -> dict[str, dict[str, float]]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode, str(warm_rounds)],
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
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--warm-rounds", type=int, default=10)
    options = parser.parse_args()

    names = ("geniusfile", "hand")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "airflow"
        home.mkdir()
        env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
        # Bytecode as an installed package has it: cached once (in a private folder), then read by
        # every measured process — else each cold run would compile our modules' source again.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        files = {}
        for name in names:
            folder = Path(tmp) / name
            folder.mkdir()
            files[name] = folder / f"bench_{name}.py"
        files["geniusfile"].write_text(LOADER)
        (files["geniusfile"].parent / "bench.genius.yaml").write_text(geniusfile(options.steps))
        files["hand"].write_text(HAND_WRITTEN.format(n=options.steps))
        for path in files.values():  # untimed: writes the bytecode cache
            measure(path, "first", 1, env)
        results: dict[str, list[dict[str, dict[str, float]]]] = {name: [] for name in names}
        for _ in range(options.repeats):  # interleaved: both see the same machine noise
            for name in names:
                cold = measure(files[name], "cold", 0, env)
                first = measure(files[name], "first", options.warm_rounds, env)
                results[name].append({clock: {**cold[clock], **first[clock]} for clock in cold})
    load_after = os.getloadavg()

    def statistic(name: str, clock: str, field: str, pick: str) -> float:
        values = [r[clock][field] for r in results[name]]
        return (statistics.median(values) if pick == "median" else min(values)) * 1000

    print(
        f"DAG parse: {options.steps} steps, {options.repeats} interleaved repeats, load average "
        f"{load_before[0]:.1f} -> {load_after[0]:.1f}"
    )
    ratios = {}
    for clock, pick in (("cpu", "median"), ("wall", "median"), ("cpu", "min")):
        title = f"{clock} time, {pick}"
        print(f"\n{title:<44}{'yaml ms':>10}{'hand ms':>10}{'ratio':>8}")
        print("-" * 72)
        for field, label in (
            ("cold", "cold: parse, our imports included (goal)"),
            ("first", "first: parse, our imports done before"),
            ("warm", "warm: re-parse in the same process"),
        ):
            ours, anchor = statistic("geniusfile", clock, field, pick), statistic("hand", clock, field, pick)
            ratios[clock, pick, field] = ours / anchor
            print(f"{label:<44}{ours:>10.1f}{anchor:>10.1f}{ours / anchor:>7.2f}x")
    ratio = ratios["cpu", "median", "cold"]
    verdict = "MET" if ratio <= GOAL else "MISSED"
    print(f"\nverdict: {verdict} — cold {ratio:.2f}x, CPU medians (goal ≤ {GOAL}x)")


if __name__ == "__main__":
    main()
