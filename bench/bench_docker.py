"""GeniusDockerOperator vs the plain DockerOperator running the same image and command.

    python bench/bench_docker.py [--repeats 9] [--docker-url unix:///tmp/genius-rig/podman.sock]
                                 [--image localhost/airflow-genius-runtime:dev]
                                 [--redis redis://127.0.0.1:6379/15]

Both sides run a trivial genius task (``Echo.say("hi")``) end to end in a fresh container of the same
image, on the same engine, with the same arguments after the ENTRYPOINT (``run --spec-env
GENIUS_TASK_SPEC``), the same TaskSpec shape and the same Redis state store (host network):

(a) ours: ``GeniusDockerOperator.execute()`` — builds the spec from the context, looks for an earlier
    try's container, runs the container (output streamed into the log), reads its exit code, removes
    it, and reads the result from the run record. These genius-only steps are also timed on their own
    and printed (median ms per task): a figure the machine's noise disturbs far less than the ratio.
(b) anchor: ``DockerOperator`` with ``command``/``environment`` set by hand to the same launch (the
    spec built by the same ``build_spec``), ``auto_remove="force"``; its "result" is the last log line.

Each side's time covers building the operator and ``execute()``.

Why ``execute()`` in-process with a minimal context rather than ``dag.test()``: a ``dag.test()`` run
adds the same several seconds of DAG-run and task-runner bookkeeping to both sides, which would only
add noise and pull the ratio towards 1 without measuring the operator. Everything this operator does
beyond DockerOperator happens inside ``execute()``, so that is what is timed. Each repeat uses a new
run id (fresh run records) and a new operator object, as Airflow does per try; the two sides are
interleaved and reported as medians (the machine is noisy). Goal: ours/anchor ≤ 1.2x. Every Redis key
written is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL = 1.2
ECHO = "airflow_genius.examples.tasks:Echo"


class _TI(SimpleNamespace):
    """The part of a task instance the operators read (identity) and write (XCom)."""

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed = {key: value}


def _context(run_id: str) -> dict[str, Any]:
    ti = _TI(dag_id="bench_docker", task_id="echo", run_id=run_id, map_index=-1, try_number=1)
    return {"ti": ti, "logical_date": None, "dag_run": None}


#: The steps GeniusDockerOperator adds around DockerOperator.execute, timed on their own (seconds).
#: (``_exit_status`` runs only after a non-zero exit: a successful DockerOperator.execute means 0.)
GENIUS_STEPS = ("prepare_launch", "_previous_container", "_remove_container", "finish_remote")
STEP_TIMES: dict[str, list[float]] = {name: [] for name in GENIUS_STEPS}


def _time_genius_steps() -> None:
    """Wrap the genius-only steps so each call's duration lands in :data:`STEP_TIMES`."""
    from airflow_genius.operators.docker import GeniusDockerOperator

    def timed(name: str, method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                STEP_TIMES[name].append(time.perf_counter() - started)

        return wrapper

    for name in GENIUS_STEPS:
        setattr(GeniusDockerOperator, name, timed(name, getattr(GeniusDockerOperator, name)))


def ours(docker_url: str, image: str, run_id: str) -> Any:
    from airflow_genius.operators.docker import GeniusDockerOperator

    op = GeniusDockerOperator(
        task_id="echo", task_class=ECHO, method="say", method_args=["hi"],
        image=image, docker_url=docker_url, network_mode="host",
    )  # fmt: skip
    # The Docker client is created on first use (a /version round trip): inside DockerOperator.execute
    # for the anchor, in the reattach lookup for ours. Creating it here keeps the step times below
    # about genius work only; it is inside the timed total either way.
    op.hook.api_client  # noqa: B018 - creates the client
    return op.execute(_context(run_id))  # type: ignore[arg-type]  # a minimal context, see the docstring


def anchor(docker_url: str, image: str, run_id: str, state_uri: str) -> Any:
    from airflow.providers.docker.operators.docker import DockerOperator

    from airflow_genius.core.spec import build_spec
    from airflow_genius.operators.container import container_launch

    spec = build_spec(ECHO, "say", args=["hi"], dag_id="bench_docker", task_id="echo", run_id=run_id,
                      state_uri=state_uri)  # fmt: skip
    launch = container_launch(spec)
    op = DockerOperator(
        task_id="echo", image=image, docker_url=docker_url, network_mode="host", command=launch.args,
        environment=launch.env, auto_remove="force", mount_tmp_dir=False,
    )  # fmt: skip
    return op.execute(_context(run_id))  # type: ignore[arg-type]  # a minimal context, see the docstring


@contextmanager
def _quiet() -> Iterator[None]:
    """Send this process's stdout/stderr to /dev/null: both sides log the same lines (the containers'
    output, "outside the Task Runner" warnings), and terminal I/O is not what is measured."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--docker-url", default=os.environ.get("GENIUS_TEST_DOCKER_URL", "unix:///tmp/genius-rig/podman.sock")
    )
    parser.add_argument(
        "--image", default=os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev")
    )
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    args = parser.parse_args(argv)

    prefix = f"benchdocker{uuid.uuid4().hex[:8]}"
    state_uri = f"{args.redis}?prefix={prefix}"
    os.environ["AIRFLOW__GENIUS__STATE_URI"] = state_uri  # read by the genius operator's state lookup
    times: dict[str, list[float]] = {"ours": [], "anchor": []}
    _time_genius_steps()
    with _quiet():
        # warm up both paths (imports, image metadata, the engine's caches); not counted
        ours(args.docker_url, args.image, f"warm-{uuid.uuid4().hex[:6]}")
        anchor(args.docker_url, args.image, f"warm-{uuid.uuid4().hex[:6]}", state_uri)
        for n in range(args.repeats):
            sides = ("ours", "anchor") if n % 2 == 0 else ("anchor", "ours")  # alternate who goes first
            for side in sides:
                run_id = f"{side}-{n}-{uuid.uuid4().hex[:6]}"
                started = time.perf_counter()
                if side == "ours":
                    result = ours(args.docker_url, args.image, run_id)
                    assert result == "hi", result
                else:
                    anchor(args.docker_url, args.image, run_id, state_uri)
                times[side].append(time.perf_counter() - started)

    import redis

    client = redis.Redis.from_url(args.redis)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)

    med = {side: statistics.median(values) for side, values in times.items()}
    ratio = med["ours"] / med["anchor"]
    print(f"repeats={args.repeats} image={args.image} engine={args.docker_url}")
    print(f"{'side':<40}{'median s':>10}{'min s':>10}{'max s':>10}")
    for side, label in (
        ("ours", "GeniusDockerOperator.execute"),
        ("anchor", "DockerOperator.execute (same launch)"),
    ):
        values = times[side]
        print(f"{label:<40}{med[side]:>10.3f}{min(values):>10.3f}{max(values):>10.3f}")
    print("genius-only steps of ours (median ms per task; removal is done by the anchor too):")
    for name, values in STEP_TIMES.items():
        print(f"  {name:<38}{statistics.median(values[1:]) * 1000:>10.1f}")  # [1:]: not the warm-up
    # each repeat runs both sides back to back: the median of those pairs' ratios resists load drift
    paired = statistics.median(o / a for o, a in zip(times["ours"], times["anchor"], strict=True))
    print(f"median of paired ratios: {paired:.2f}x")
    print(
        f"ratio ours/anchor (medians): {ratio:.2f}x (goal <= {GOAL}x) -> {'met' if ratio <= GOAL else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
