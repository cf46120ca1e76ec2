"""Crash tests: `genius run` subprocesses SIGKILLed at random points of the window protocol, then
retried (or abandoned and adopted by the next run) until the stream is drained. Every input record
must appear in the committed output exactly once, counted by its id."""

from __future__ import annotations

import ast
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from stream_helpers import StreamPlace, fill

from airflow_genius.core.spec import build_spec
from airflow_genius.core.state import RunKey, open_state
from airflow_genius.core.streams import crash
from airflow_genius.core.streams.crash import CRASH_ENV, CRASH_POINTS

HERE = Path(__file__).resolve().parent
RECORDS = 30
FANOUT = 2


def genius_run(spec_json: str, crash_at: str | None) -> int:
    env = {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop(CRASH_ENV, None)
    if crash_at:
        env[CRASH_ENV] = crash_at
    done = subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", "run", "--spec", "-"],
        input=spec_json,
        text=True,
        capture_output=True,
        env=env,
        timeout=60,
    )
    if crash_at is None:
        assert done.returncode == 0, done.stderr
    return done.returncode


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_anywhere_yields_each_output_exactly_once(
    place: StreamPlace, tmp_path: Path, unique_name: str, seed: int
) -> None:
    rng = random.Random(seed * 7919 + (place.backend == "redis"))
    if place.backend == "redis":
        state_uri = f"{place.base}?prefix={unique_name}-state"
    else:
        state_uri = f"sqlite:///{tmp_path}/state.db"
    fill(place.open("in"), RECORDS)
    crashes: Counter[str] = Counter()
    run, try_number, drained = 0, 1, False
    for _ in range(80):
        spec = build_spec(
            "genius_stream_tasks:PassThrough",
            "process",
            kind="bolt",
            kwargs={"fanout": FANOUT},
            input_uri=place.uri("in", "g"),
            output_uri=place.uri("out", flush_every=3),
            state_uri=state_uri,
            dag_id="crash",
            task_id="bolt",
            run_id=f"r{run}",
            try_number=try_number,
            max_records=4,
        )
        crash_at = rng.choice(CRASH_POINTS) if rng.random() < 0.6 else None
        code = genius_run(spec.to_json(), crash_at)
        if code == -9:
            crashes[crash_at or ""] += 1
            if rng.random() < 0.25:
                run, try_number = run + 1, 1  # abandon the run: the next one adopts its open window
            else:
                try_number += 1  # Airflow's retry of the same run
            continue
        assert code == 0, f"{crash_at=} ended {code}"
        with open_state(state_uri) as state:
            record = state.require_run(RunKey("crash", "bolt", f"r{run}"))
        if record.window and record.window["count"] == 0:
            drained = True
            break
        run, try_number = run + 1, 1
    assert drained, f"stream not drained; crashes: {dict(crashes)}"
    assert sum(crashes.values()) >= 5 and len(crashes) >= 4, crashes  # many kills, at varied points
    produced = Counter((m.data["src"], m.data["k"]) for m in place.open("out").read_all())
    expected = {(n, k) for n in range(RECORDS) for k in range(FANOUT)}
    assert set(produced) == expected, f"missing {expected - set(produced)}"
    duplicated = {key: count for key, count in produced.items() if count != 1}
    assert not duplicated, f"duplicates {duplicated}; crashes {dict(crashes)}"
    assert place.open("in").pending_ids("g") == []


def test_the_crash_points_of_the_code_are_the_listed_ones() -> None:
    """The crash test draws its kills from CRASH_POINTS: every point the code calls must be listed there,
    and every listed point must still be called somewhere."""
    core = Path(crash.__file__).resolve().parents[1]
    called = set()
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "crash_point":
                argument = node.args[0]
                assert isinstance(argument, ast.Constant), f"{path}:{node.lineno}: name the point literally"
                called.add(argument.value)
    assert called == set(CRASH_POINTS)
