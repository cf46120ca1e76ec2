"""Slurm runner: our overhead beyond the job's own Submit→End span, quiet and with both cores busy; the
raw ``ssh host 'sbatch --wait …'`` beside it; and 50 deferred Slurm waits in one event loop.

    python bench/bench_slurm.py [--repeats 9] [--poll 10] [--concurrent 50] [--sleep 20] [--no-load]
    python bench/bench_slurm.py --array 200 [--max-parallel 0] [--singles-first]    # only (d)

Needs the test rig's Slurm + sshd (``scripts/services``).

(a) ours: ``GeniusSlurmOperator.execute()`` of a trivial genius task (``Echo.say``), called in this
    process with a minimal task-instance context (no scheduler, so only the operator's own cost is
    measured): build the TaskSpec, connect over SSH, write spec + secret files, submit the sbatch
    script, wait for the end while tailing the output, read the run record. **Overhead** is the wall time
    of ``execute()`` minus the job's own span in sacct (Submit → End): what the job costs beyond running.
    sacct's times have a resolution of one second, so each overhead is ±1 s; the median of the repeats
    is what is compared (``--repeats`` ≥ 9).
(b) anchor: one ``ssh`` command that writes the same spec and runs ``sbatch --wait`` of a script calling
    the same ``genius run --spec`` — what a hand-written BashOperator would do, minus reading a result.
    ``sbatch --wait`` checks the job after sleeping 2 s, then 8 s, then every 10 s (``_job_wait`` in
    sbatch.c), so its wall time is the job's end rounded up to 2 s or 10 s after submit: a job just
    over 2 s long costs it ~10 s, and its times are bimodal.
Both run interleaved, ``--repeats`` times, first on the quiet machine, then with one busy loop per core
started by this bench (``--no-load`` skips that phase). Goal: median overhead ≤ 0.5 s quiet, ≤ 1.0 s loaded.

(c) deferral: ``--concurrent`` jobs sleeping ``--sleep`` seconds are submitted, then one
    :class:`GeniusSlurmTrigger` per job runs in one asyncio loop, as the triggerer runs them. A deferred
    task holds no worker slot by construction; what it costs is the triggerer's CPU, reported as CPU
    seconds of this process while all triggers wait, per trigger-minute of waiting.
(d) job array: ``--array`` mapped instances of ``Echo.say`` started the way the operator starts them —
    as one held array (``launch_array_element`` for each map index: write the element's files, the
    first one claims and submits the array, each releases its element) against one job each
    (``launch_genius_job``), one after the other in this process over one SSH connection. **Submit** is
    the time until every element/job is in Slurm's hands; **total** until sacct shows all ended (the
    single node runs as many at once as it has CPUs). Each run record is then checked SUCCESS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RIG_DIR = Path(os.environ.get("GENIUS_RIG_DIR", "/tmp/genius-rig"))
SSH_PORT = int(os.environ.get("GENIUS_SSH_PORT", "2222"))
KEY = RIG_DIR / "ssh" / "id_ed25519"
GENIUS = str(Path(sys.executable).with_name("genius"))
GOAL_QUIET, GOAL_LOADED = 0.5, 1.0
SSH = ["ssh", "-p", str(SSH_PORT), "-i", str(KEY), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
       "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@127.0.0.1"]  # fmt: skip

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="genius-bench-slurm-"))
os.environ["AIRFLOW_CONN_GENIUS_SLURM"] = json.dumps(
    {
        "conn_type": "ssh",
        "host": "127.0.0.1",
        "port": SSH_PORT,
        "login": "root",
        # the node is this machine: the SQLite state store under /tmp is shared with it
        "extra": {"key_file": str(KEY), "no_host_key_check": True, "shared_paths": ["/tmp"]},
    }
)


class BenchTaskInstance(SimpleNamespace):
    """The few task-instance attributes the operator reads, and a sink for its XComs."""

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def sacct_span(job_id: str) -> float:
    """Seconds from the job's Submit to its End, as sacct records them (1 s resolution)."""
    for _ in range(50):
        out = subprocess.run(
            ["sacct", "-j", job_id, "-X", "--noheader", "--parsable2", "--format=Submit,End"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        submit, _, end = out.partition("|")
        if end and end != "Unknown":
            return (datetime.fromisoformat(end) - datetime.fromisoformat(submit)).total_seconds()
        time.sleep(0.1)
    raise RuntimeError(f"sacct has no End for job {job_id}: {out!r}")


def ours(state_uri: str, poll: float) -> tuple[float, float]:
    """(wall time of execute(), the job's Submit→End span)."""
    from airflow_genius.operators.slurm import GeniusSlurmOperator

    run_id = f"bench_{uuid.uuid4().hex[:10]}"
    operator = GeniusSlurmOperator(
        task_id="echo", ssh_conn_id="genius_slurm", task_class="airflow_genius.examples.tasks:Echo",
        method="say", method_args=["hi"], state_uri=state_uri, genius_command=GENIUS, poll_interval=poll,
    )  # fmt: skip
    ti = BenchTaskInstance(
        dag_id="bench_slurm", task_id="echo", run_id=run_id, map_index=-1, try_number=1, pushed={}
    )
    started = time.perf_counter()
    result = operator.execute({"ti": ti, "logical_date": None, "dag_run": None})  # type: ignore[arg-type,typeddict-item]
    elapsed = time.perf_counter() - started
    assert result == "hi", result
    assert operator.job_id is not None
    return elapsed, sacct_span(operator.job_id)


def anchor(state_uri: str) -> tuple[float, float]:
    """(wall time of the raw ssh + sbatch --wait, the job's Submit→End span)."""
    from airflow_genius.core.spec import build_spec

    run_id = f"bench_raw_{uuid.uuid4().hex[:10]}"
    spec = build_spec("airflow_genius.examples.tasks:Echo", "say", args=["hi"], state_uri=state_uri,
                      dag_id="bench_slurm", task_id="raw", run_id=run_id)  # fmt: skip
    folder = f"/root/.genius/bench/{run_id}"
    script = f"#!/bin/bash\n{shlex.quote(GENIUS)} run --spec {folder}/spec.json\n"
    remote = (
        f"mkdir -p {folder} && cd {folder} && printf %s {shlex.quote(spec.to_json())} > spec.json && "
        f"printf %s {shlex.quote(script)} > job.sh && sbatch --wait --parsable --output={folder}/out job.sh"
    )
    started = time.perf_counter()
    done = subprocess.run([*SSH, remote], check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    return elapsed, sacct_span(done.stdout.strip().splitlines()[0].split(";")[0])


@contextlib.contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """``count`` busy loops (one per core) for the duration: the loaded machine."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def measure(options: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    """``--repeats`` interleaved runs of ours and the anchor: {"ours": [(wall, span)…], "raw": […]}."""
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "raw": []}
    for _ in range(options.repeats):
        runs["ours"].append(ours(options.state, options.poll))
        runs["raw"].append(anchor(options.state))
    return runs


def report(title: str, runs: dict[str, list[tuple[float, float]]], goal: float) -> None:
    overhead = {name: [wall - span for wall, span in rows] for name, rows in runs.items()}
    wall = {name: [w for w, _ in rows] for name, rows in runs.items()}
    print(f"{title}:")
    for name, label in (("ours", "GeniusSlurmOperator.execute"), ("raw", "ssh … 'sbatch --wait …'  ")):
        print(
            f"  {label}  wall median {statistics.median(wall[name]):5.2f} s  "
            f"overhead median {statistics.median(overhead[name]):5.2f} s  "
            f"{sorted(round(x, 2) for x in overhead[name])}"
        )
    mine = statistics.median(overhead["ours"])
    ratio = statistics.median(wall["ours"]) / statistics.median(wall["raw"])
    print(f"  our overhead {mine:.2f} s (goal <= {goal:g} s) {'OK' if mine <= goal else 'MISSED'}; "
          f"wall ours/raw {ratio:.2f}x")  # fmt: skip


def deferral(concurrent: int, sleep: float) -> dict[str, float]:
    from airflow_genius.hooks.slurm import SlurmHook
    from airflow_genius.triggers.slurm import GeniusSlurmTrigger

    with SlurmHook("genius_slurm") as hook:
        jobs = [hook.submit(f"#!/bin/bash\n#SBATCH --output=/dev/null\nsleep {sleep}\n", work_dir="/tmp")
                for _ in range(concurrent)]  # fmt: skip

    async def wait_all() -> list[Any]:
        triggers = [
            GeniusSlurmTrigger(ssh_conn_id="genius_slurm", job_id=job, poll_interval=10.0) for job in jobs
        ]

        async def first_event(trigger: GeniusSlurmTrigger) -> Any:
            async for event in trigger.run():
                return event.payload
            return None

        return await asyncio.gather(*(first_event(t) for t in triggers))

    cpu, wall = time.process_time(), time.perf_counter()
    events = asyncio.run(wait_all())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(event and event["succeeded"] for event in events), events
    return {"cpu_s": cpu, "wall_s": wall, "cpu_s_per_trigger_minute": cpu / (concurrent * wall / 60)}


def array_vs_singles(
    count: int, state_uri: str, max_parallel: int | None, *, singles_first: bool = False
) -> dict[str, dict[str, float]]:
    """(d): submit and total wall time of ``count`` mapped instances as one array and as single jobs
    (``singles_first``: in that order, to see what the machine's changing load does to each side)."""
    from airflow_genius.core import RunKey, Status, open_state
    from airflow_genius.operators.slurm import GeniusSlurmOperator

    figures: dict[str, dict[str, float]] = {}
    for side in ("singles", "array") if singles_first else ("array", "singles"):
        run_id = f"bench_{side}_{uuid.uuid4().hex[:8]}"
        operator = GeniusSlurmOperator(
            task_id="echo", ssh_conn_id="genius_slurm", task_class="airflow_genius.examples.tasks:Echo",
            method="say", method_args=["hi"], state_uri=state_uri, genius_command=GENIUS,
            array_size=count, max_parallel=max_parallel or None,
        )  # fmt: skip
        target = operator.genius_state()
        jobs: list[str] = []
        started = time.perf_counter()
        with operator.slurm_hook() as hook:
            for index in range(count):
                ti = BenchTaskInstance(dag_id="bench_slurm", task_id="echo", run_id=run_id, map_index=index,
                                       try_number=1, pushed={})  # fmt: skip
                context: Any = {"ti": ti, "logical_date": None, "dag_run": None}
                spec = operator.build_task_spec(context, state_uri=target.uri)
                options = operator.job_options(context)
                if side == "array":
                    job = operator.launch_array_element(context, hook, spec, options, target)
                    assert job is not None, "the array path was not taken"
                else:
                    job = operator.launch_genius_job(context, hook, spec, options, target)
                jobs.append(job.job_id)
        submitted = time.perf_counter() - started
        selector = jobs[0].split("_")[0] if side == "array" else ",".join(jobs)
        while True:
            out = subprocess.run(
                ["sacct", "-j", selector, "-X", "--noheader", "--parsable2", "--format=JobID,State"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            ended = [line for line in out.splitlines() if line.split("|")[-1].split()[0] in ("COMPLETED", "FAILED", "CANCELLED")]  # fmt: skip
            if len(ended) >= count:
                break
            time.sleep(0.2)
        total = time.perf_counter() - started
        with open_state(state_uri) as state:
            done = sum(
                (record := state.get_run(RunKey("bench_slurm", "echo", run_id, index))) is not None
                and record.status is Status.SUCCESS
                for index in range(count)
            )
        assert done == count, f"{side}: {done} of {count} run records SUCCESS"
        figures[side] = {"submit_s": submitted, "total_s": total, "jobs": float(len(set(jobs)))}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--poll", type=float, default=10.0, help="operator poll interval (seconds)")
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=20.0)
    parser.add_argument("--no-load", action="store_true", help="skip the phase with both cores busy")
    parser.add_argument("--state", default=f"sqlite:///{tempfile.mkdtemp(prefix='genius-bench-')}/state.db")
    parser.add_argument("--array", type=int, default=0, help="(d) only: this many mapped inputs")
    parser.add_argument("--max-parallel", type=int, default=0, help="(d): the array's %%limit (0: none)")
    parser.add_argument("--singles-first", action="store_true", help="(d): run the single jobs first")
    options = parser.parse_args()
    if options.array:
        print(f"uptime: {os.getloadavg()}; {options.array} mapped inputs of Echo.say")
        sides = array_vs_singles(
            options.array, options.state, options.max_parallel, singles_first=options.singles_first
        )
        for side, row in sides.items():
            print(f"  {side:8s} submit {row['submit_s']:7.1f} s   total {row['total_s']:7.1f} s")
        array, singles = sides["array"], sides["singles"]
        print(f"  ratio singles/array: submit {singles['submit_s'] / array['submit_s']:.2f}x, "
              f"total {singles['total_s'] / array['total_s']:.2f}x")  # fmt: skip
        return
    ours(options.state, options.poll)  # warm-up: imports, SSH host keys, first job
    anchor(options.state)
    print(
        f"trivial genius job, {options.repeats} runs each, interleaved, operator poll_interval {options.poll:g} s"
    )
    report("quiet machine", measure(options), GOAL_QUIET)
    if not options.no_load:
        with busy_cores(os.cpu_count() or 2):
            report(f"{os.cpu_count()} busy loops (every core loaded)", measure(options), GOAL_LOADED)
    if options.concurrent:
        figures = deferral(options.concurrent, options.sleep)
        print(
            f"{options.concurrent} deferred waits on jobs of {options.sleep:g} s, one event loop (the triggerer's):"
        )
        print(f"  wall {figures['wall_s']:.1f} s, CPU {figures['cpu_s']:.2f} s "
              f"= {figures['cpu_s_per_trigger_minute']:.3f} CPU s per trigger-minute; worker slots held: 0")  # fmt: skip


if __name__ == "__main__":
    main()
