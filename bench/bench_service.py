"""Service start-to-ready: GeniusDockerServiceOperator vs DockerOperator + a hand-written readiness poll.

    python bench/bench_service.py [--repeats 9] [--docker-url unix:///tmp/genius-rig/podman.sock]
                                  [--image localhost/airflow-genius-runtime:dev]
                                  [--redis redis://127.0.0.1:6379/15]

Both sides start the same genius service (``EchoService.serve``: ``GET /health``, ``POST /echo``) in a
fresh container of the same image, on the same engine, with the same launch (``run --spec-env
GENIUS_TASK_SPEC``, the same TaskSpec with its ``service`` section, the same Redis state store, host
network), and the time is taken from building the operator to *the service answers its health path*:

(a) ours: ``GeniusDockerServiceOperator.execute()`` — builds the spec, looks for an earlier try's
    container, starts the container detached, and returns once the service's run record says it
    answered its health path (the runtime probes it from beside the service, ``core/service.py``).
(b) anchor: ``DockerOperator`` with ``command``/``environment`` set by hand to the same launch. It
    cannot start a service (its ``execute()`` returns when the container exits), so it runs in a thread
    while the caller polls ``http://127.0.0.1:<port>/health`` every 50 ms — what a user would write.

After each start the container is stopped (not timed). The two sides are interleaved and reported as
medians and as the median of paired ratios (the machine is noisy). Goal: ours/anchor <= 1.2x. The
physical floor — the container's own start plus the service's import and bind — is inside both.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_docker import _quiet

GOAL = 1.2
SERVICE = "airflow_genius.examples.tasks:EchoService"


class _TI(SimpleNamespace):
    """The part of a task instance the operators read (identity) and write (XCom)."""

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed = {key: value}


def _context(run_id: str, task_id: str) -> dict[str, Any]:
    ti = _TI(dag_id="bench_service", task_id=task_id, run_id=run_id, map_index=-1, try_number=1)
    return {"ti": ti, "logical_date": None, "dag_run": None}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return 200 <= answer.status < 300
    except OSError:
        return False


def ours(docker_url: str, image: str, run_id: str, port: int) -> float:
    from airflow_genius.operators.docker_service import (
        GeniusDockerServiceOperator,
        GeniusDockerServiceStopOperator,
    )

    started = time.perf_counter()
    op = GeniusDockerServiceOperator(
        task_id="svc", task_class=SERVICE, method="serve", service_port=port, image=image,
        docker_url=docker_url, network_mode="host",
    )  # fmt: skip
    published = op.execute(_context(run_id, "svc"))  # type: ignore[arg-type]  # a minimal context
    took = time.perf_counter() - started
    assert published["port"] == port and _healthy(port), published
    stop = GeniusDockerServiceStopOperator(
        task_id="stop", service="svc", image=image, docker_url=docker_url, network_mode="host"
    )
    stop.execute(_context(run_id, "stop"))  # type: ignore[arg-type]
    return took


def anchor(docker_url: str, image: str, run_id: str, port: int, state_uri: str) -> float:
    from airflow.providers.docker.operators.docker import DockerOperator

    import docker
    from airflow_genius.core.spec import build_spec
    from airflow_genius.operators.container import container_launch

    started = time.perf_counter()
    spec = build_spec(SERVICE, "serve", dag_id="bench_service", task_id="svc", run_id=run_id,
                      state_uri=state_uri, service_port=port)  # fmt: skip
    launch = container_launch(spec)
    name = f"bench-anchor-{uuid.uuid4().hex[:10]}"
    op = DockerOperator(
        task_id="svc", image=image, docker_url=docker_url, network_mode="host", command=launch.args,
        environment=launch.env, auto_remove="force", mount_tmp_dir=False, container_name=name,
    )  # fmt: skip
    runner = threading.Thread(target=op.execute, args=(_context(run_id, "svc"),), daemon=True)
    runner.start()
    while not _healthy(port):
        if not runner.is_alive():
            raise RuntimeError("the anchor's container ended before it was healthy")
        time.sleep(0.05)
    took = time.perf_counter() - started
    client = docker.DockerClient(base_url=docker_url)
    try:
        client.containers.get(name).stop(timeout=10)
    finally:
        client.close()
    runner.join(timeout=60)
    return took


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

    prefix = f"benchsvc{uuid.uuid4().hex[:8]}"
    state_uri = f"{args.redis}?prefix={prefix}"
    os.environ["AIRFLOW__GENIUS__STATE_URI"] = state_uri  # read by the genius operator's state lookup
    times: dict[str, list[float]] = {"ours": [], "anchor": []}
    with _quiet():
        ours(args.docker_url, args.image, f"warm-{uuid.uuid4().hex[:6]}", _free_port())  # not counted
        anchor(args.docker_url, args.image, f"warm-{uuid.uuid4().hex[:6]}", _free_port(), state_uri)
        for n in range(args.repeats):
            sides = ("ours", "anchor") if n % 2 == 0 else ("anchor", "ours")  # alternate who goes first
            for side in sides:
                run_id = f"{side}-{n}-{uuid.uuid4().hex[:6]}"
                if side == "ours":
                    times[side].append(ours(args.docker_url, args.image, run_id, _free_port()))
                else:
                    times[side].append(anchor(args.docker_url, args.image, run_id, _free_port(), state_uri))

    import redis

    client = redis.Redis.from_url(args.redis)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)

    med = {side: statistics.median(values) for side, values in times.items()}
    ratio = med["ours"] / med["anchor"]
    print(f"repeats={args.repeats} image={args.image} engine={args.docker_url}")
    print(f"{'start to ready':<46}{'median s':>10}{'min s':>10}{'max s':>10}")
    for side, label in (
        ("ours", "GeniusDockerServiceOperator.execute"),
        ("anchor", "DockerOperator (thread) + 50 ms health poll"),
    ):
        values = times[side]
        print(f"{label:<46}{med[side]:>10.3f}{min(values):>10.3f}{max(values):>10.3f}")
    paired = statistics.median(o / a for o, a in zip(times["ours"], times["anchor"], strict=True))
    print(f"median of paired ratios: {paired:.2f}x")
    print(
        f"ratio ours/anchor (medians): {ratio:.2f}x (goal <= {GOAL}x) -> {'met' if ratio <= GOAL else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
