"""Slurm runner vs raw ``ssh host 'sbatch --wait …'``, and 50 deferred Slurm waits in one event loop.

    python bench/bench_slurm.py [--repeats 5] [--poll 1.0] [--concurrent 50] [--sleep 20]

Needs the test rig's Slurm + sshd (``scripts/services``).

(a) ours: ``GeniusSlurmOperator.execute()`` of a trivial genius task (``Echo.say``), called in this
    process with a minimal task-instance context (no scheduler, so only the operator's own cost is
    measured): build the TaskSpec, write spec + secret files over SSH, render and submit the sbatch
    script, poll squeue/sacct every ``--poll`` seconds while tailing the output, read the run record.
(b) anchor: one ``ssh`` command that writes the same spec and runs ``sbatch --wait`` of a script calling
    the same ``genius run --spec`` — what a hand-written BashOperator would do, minus reading a result.
Both run interleaved ``--repeats`` times; medians and their ratio are printed (goal: ours <= 1.3x).

(c) deferral: ``--concurrent`` jobs sleeping ``--sleep`` seconds are submitted, then one
    :class:`GeniusSlurmTrigger` per job runs in one asyncio loop, as the triggerer runs them. A deferred
    task holds no worker slot by construction; what it costs is the triggerer's CPU, reported as CPU
    seconds of this process while all triggers wait, per trigger-minute of waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RIG_DIR = Path(os.environ.get("GENIUS_RIG_DIR", "/tmp/genius-rig"))
SSH_PORT = int(os.environ.get("GENIUS_SSH_PORT", "2222"))
KEY = RIG_DIR / "ssh" / "id_ed25519"
GENIUS = str(Path(sys.executable).with_name("genius"))
GOAL = 1.3
SSH = ["ssh", "-p", str(SSH_PORT), "-i", str(KEY), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
       "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "root@127.0.0.1"]  # fmt: skip

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="genius-bench-slurm-"))
os.environ["AIRFLOW_CONN_GENIUS_SLURM"] = json.dumps(
    {
        "conn_type": "ssh",
        "host": "127.0.0.1",
        "port": SSH_PORT,
        "login": "root",
        "extra": {"key_file": str(KEY), "no_host_key_check": True},
    }
)


class BenchTaskInstance(SimpleNamespace):
    """The few task-instance attributes the operator reads, and a sink for its XComs."""

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def ours(state_uri: str, poll: float) -> float:
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
    result = operator.execute({"ti": ti, "logical_date": None, "dag_run": None})  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert result == "hi", result
    return elapsed


def anchor(state_uri: str) -> float:
    from airflow_genius.core.spec import build_spec

    run_id = f"bench_raw_{uuid.uuid4().hex[:10]}"
    spec = build_spec("airflow_genius.examples.tasks:Echo", "say", args=["hi"], state_uri=state_uri,
                      dag_id="bench_slurm", task_id="raw", run_id=run_id)  # fmt: skip
    folder = f"/root/.genius/bench/{run_id}"
    script = f"#!/bin/bash\n{shlex.quote(GENIUS)} run --spec {folder}/spec.json\n"
    remote = (
        f"mkdir -p {folder} && cd {folder} && printf %s {shlex.quote(spec.to_json())} > spec.json && "
        f"printf %s {shlex.quote(script)} > job.sh && sbatch --wait --quiet --output={folder}/out job.sh"
    )
    started = time.perf_counter()
    subprocess.run([*SSH, remote], check=True, capture_output=True)
    return time.perf_counter() - started


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--poll", type=float, default=1.0, help="operator poll interval (seconds)")
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--sleep", type=float, default=20.0)
    parser.add_argument("--state", default=f"sqlite:///{tempfile.mkdtemp(prefix='genius-bench-')}/state.db")
    options = parser.parse_args()
    ours(options.state, options.poll)  # warm-up: imports, SSH host keys, first job
    anchor(options.state)
    mine, raw = [], []
    for _ in range(options.repeats):
        mine.append(ours(options.state, options.poll))
        raw.append(anchor(options.state))
    ratio = statistics.median(mine) / statistics.median(raw)
    print(f"trivial genius job, {options.repeats} runs each, operator poll {options.poll:g} s")
    print(
        f"  GeniusSlurmOperator.execute   median {statistics.median(mine):6.2f} s  {sorted(round(x, 2) for x in mine)}"
    )
    print(
        f"  ssh … 'sbatch --wait …'       median {statistics.median(raw):6.2f} s  {sorted(round(x, 2) for x in raw)}"
    )
    print(f"  ratio ours/raw: {ratio:.2f}x (goal <= {GOAL}x) {'OK' if ratio <= GOAL else 'MISSED'}")
    if options.concurrent:
        figures = deferral(options.concurrent, options.sleep)
        print(
            f"{options.concurrent} deferred waits on jobs of {options.sleep:g} s, one event loop (the triggerer's):"
        )
        print(f"  wall {figures['wall_s']:.1f} s, CPU {figures['cpu_s']:.2f} s "
              f"= {figures['cpu_s_per_trigger_minute']:.3f} CPU s per trigger-minute; worker slots held: 0")  # fmt: skip


if __name__ == "__main__":
    main()
