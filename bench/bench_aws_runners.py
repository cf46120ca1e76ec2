"""GeniusBatchOperator vs the plain BatchOperator, GeniusEcsOperator vs the plain EcsRunTaskOperator,
running the same image and command on the test rig's moto_server.

    python bench/bench_aws_runners.py [--repeats 7] [--endpoint http://127.0.0.1:5055]
                                      [--docker-host unix:///tmp/genius-rig/podman.sock]
                                      [--image localhost/airflow-genius-runtime:dev]
                                      [--redis redis://127.0.0.1:6379/15] [--only batch|ecs]

Both sides of a pair run a trivial genius task (``Echo.say("hi")``) end to end in a fresh container of
the same image, with the same arguments after the ENTRYPOINT (``run --spec-env GENIUS_TASK_SPEC``), the
same TaskSpec shape and the same Redis state store (host network):

(a) ours: ``execute()`` of the genius operator — builds the spec from the context, looks for an earlier
    try's job/task (``list_jobs`` by name / ``list_tasks`` by startedBy), submits, waits in the worker
    (CloudWatch log copied into the log), reads the result from the run record.
(b) anchor: the provider operator with ``containerOverrides`` set by hand to the same launch (the spec
    built by the same ``build_spec``), waiting in the worker with its own log fetching.

Engines: moto runs each Batch job's container through podman (``DOCKER_HOST`` in moto_server's
environment); ECS tasks are run by the test-side agent (tests/support/ecs_agent.py), started here.
moto's ECS reports every container as PENDING, so the plain ``EcsRunTaskOperator`` ends with "This task
is still pending" after the task stopped; the anchor's time is taken up to that point (it did all its
work). The Batch hook pauses between status checks at random (1 to 10 s, then a jittered
exponential back-off ~1 + (0.6 n)² s): with those draws the ratio of medians of two *identical*
operators swings 0.75-1.34x over 7 repeats, so here every pause of the hook is a fixed
``BATCH_POLL_SECONDS`` on both sides and the ratio compares the operators, not the draws; ECS waits with
``waiter_delay=1`` on both sides.

``execute()`` in-process with a minimal context rather than ``dag.test()``: a DAG run adds the same
seconds of bookkeeping to both sides and would only pull the ratio towards 1. The two sides are
interleaved, each repeat with a new run id; medians (the machine is noisy). Goal: ours/anchor ≤ 1.2x.
Redis keys written are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

GOAL = 1.2
#: Every pause of the Batch hook between status checks, on both sides (see the module docstring).
BATCH_POLL_SECONDS = 0.25
ECHO = "airflow_genius.examples.tasks:Echo"


class _TI(SimpleNamespace):
    """The part of a task instance the operators read (identity) and write (XCom, links)."""

    def xcom_push(self, key: str, value: Any) -> None:
        return None


def _context(dag_id: str, run_id: str) -> dict[str, Any]:
    ti = _TI(dag_id=dag_id, task_id="echo", run_id=run_id, map_index=-1, try_number=1)
    return {"ti": ti, "logical_date": None, "dag_run": None}


def _launch_env(dag_id: str, run_id: str, state_uri: str, extra: dict[str, str]) -> list[dict[str, str]]:
    """The anchor's environment: the same launch the genius operator builds."""
    from airflow_genius.core.spec import build_spec
    from airflow_genius.operators.aws_common import env_list
    from airflow_genius.operators.container import container_launch

    spec = build_spec(
        ECHO, "say", args=["hi"], dag_id=dag_id, task_id="echo", run_id=run_id, state_uri=state_uri
    )
    return env_list(container_launch(spec, extra_env=extra).env)


def _timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def _report(name: str, ours: list[float], anchor: list[float]) -> float:
    mine, theirs = statistics.median(ours), statistics.median(anchor)
    ratio = mine / theirs
    print(f"{name:6} ours   median {mine:6.2f} s  ({', '.join(f'{t:.2f}' for t in ours)})")
    print(f"{name:6} anchor median {theirs:6.2f} s  ({', '.join(f'{t:.2f}' for t in anchor)})")
    print(
        f"{name:6} ratio ours/anchor {ratio:.2f}x  (goal <= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'})"
    )
    return ratio


def bench_batch(repeats: int, state_uri: str, env: dict[str, str]) -> float:
    from airflow.providers.amazon.aws.hooks.batch_client import BatchClientHook
    from airflow.providers.amazon.aws.operators.batch import BatchOperator
    from containers.aws import rig

    from airflow_genius.operators.batch import GeniusBatchOperator

    # Every pause of the hook (its random first pauses and its jittered back-off) fixed, both sides alike.
    BatchClientHook.delay = staticmethod(lambda delay=None: time.sleep(BATCH_POLL_SECONDS))  # type: ignore[method-assign]
    names = rig.batch_setup(rig.secret_arn(rig.unique("bench-secret"), "unused"))
    common = {"job_queue": names["queue"], "job_definition": names["jobdef"], "aws_conn_id": None,
              "awslogs_enabled": True}  # fmt: skip
    ours: list[float] = []
    anchor: list[float] = []
    for repeat in range(repeats):
        run_id = uuid.uuid4().hex

        def genius(run_id: str = run_id) -> None:
            op = GeniusBatchOperator(task_id="echo", task_class=ECHO, method="say", method_args=["hi"],
                                     state_uri=state_uri, environment=env, **common)  # fmt: skip
            assert op.execute(_context("bench_batch", run_id)) == "hi"

        def plain(run_id: str = run_id) -> None:
            overrides = {"command": ["run", "--spec-env", "GENIUS_TASK_SPEC"],
                         "environment": _launch_env("bench_batch_plain", run_id, state_uri, env)}  # fmt: skip
            op = BatchOperator(
                task_id="echo", job_name=f"plain-{run_id}", container_overrides=overrides, **common
            )
            op.execute(_context("bench_batch_plain", run_id))

        sides = [(genius, ours), (plain, anchor)]
        for run, times in sides if repeat % 2 == 0 else sides[::-1]:  # neither side always goes first
            times.append(_timed(run))
    return _report("batch", ours, anchor)


def bench_ecs(repeats: int, state_uri: str, env: dict[str, str], docker_host: str) -> float:
    from airflow.providers.amazon.aws.operators.ecs import EcsRunTaskOperator
    from airflow.providers.common.compat.sdk import AirflowException
    from containers.aws import rig
    from support.ecs_agent import EcsAgent

    from airflow_genius.operators.ecs import GeniusEcsOperator

    names = rig.ecs_setup(rig.secret_arn(rig.unique("bench-secret"), "unused"))
    agent = EcsAgent(cluster=names["cluster"], endpoint=rig.ENDPOINT, docker_host=docker_host).start()
    common = {"cluster": names["cluster"], "task_definition": names["taskdef"], "aws_conn_id": None,
              "launch_type": "FARGATE", "container_name": "genius", "awslogs_group": names["log_group"],
              "awslogs_stream_prefix": names["log_prefix"], "waiter_delay": 1}  # fmt: skip
    ours, anchor = [], []
    try:
        for _ in range(repeats):
            run_id = uuid.uuid4().hex

            def genius(run_id: str = run_id) -> None:
                op = GeniusEcsOperator(task_id="echo", task_class=ECHO, method="say", method_args=["hi"],
                                       state_uri=state_uri, environment=env, **common)  # fmt: skip
                assert op.execute(_context("bench_ecs", run_id)) == "hi"

            def plain(run_id: str = run_id) -> None:
                overrides = {"containerOverrides": [{"name": "genius", "command": ["run", "--spec-env", "GENIUS_TASK_SPEC"],
                             "environment": _launch_env("bench_ecs_plain", run_id, state_uri, env)}]}  # fmt: skip
                op = EcsRunTaskOperator(task_id="echo", overrides=overrides, **common)
                try:
                    op.execute(_context("bench_ecs_plain", run_id))
                except AirflowException as exc:  # moto: containers stay PENDING (see the docstring)
                    if "still pending" not in str(exc):
                        raise

            ours.append(_timed(genius))
            anchor.append(_timed(plain))
    finally:
        agent.stop()
    return _report("ecs", ours, anchor)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--endpoint", default="http://127.0.0.1:5055")
    parser.add_argument("--docker-host", default="unix:///tmp/genius-rig/podman.sock")
    parser.add_argument("--image", default="localhost/airflow-genius-runtime:dev")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--only", choices=["batch", "ecs"])
    options = parser.parse_args()
    for name, value in {"AWS_ENDPOINT_URL": options.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "GENIUS_TEST_AWS_ENDPOINT": options.endpoint, "GENIUS_TEST_IMAGE": options.image,
                        "GENIUS_TEST_DOCKER_HOST": options.docker_host}.items():  # fmt: skip
        os.environ.setdefault(name, value)
    import logging

    logging.basicConfig(level=logging.WARNING)  # the operators' INFO lines would swamp the figures
    from containers.aws import rig

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    state_uri = f"{options.redis}?prefix={prefix}"
    print(f"{options.repeats} repeats per side, Echo.say('hi'), image {options.image}, state {state_uri}")
    try:
        if options.only in (None, "batch"):
            bench_batch(options.repeats, state_uri, rig.CONTAINER_ENV)
        if options.only in (None, "ecs"):
            bench_ecs(options.repeats, state_uri, rig.CONTAINER_ENV, options.docker_host)
    finally:
        import redis

        client = redis.Redis.from_url(options.redis)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)


if __name__ == "__main__":
    main()
