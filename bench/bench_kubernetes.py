"""GeniusKubernetesOperator vs the plain KubernetesPodOperator running the same image and arguments, and
N deferred pod waits in one event loop: the genius trigger vs KPO's own.

    python bench/bench_kubernetes.py [--repeats 7] [--concurrent 20] [--sleep 20]
                                     [--check-interval 1] [--trigger-poll 2]
                                     [--docker-url unix:///tmp/genius-rig/podman.sock]
                                     [--image localhost/airflow-genius-runtime:dev]
                                     [--redis redis://127.0.0.1:6379/15]

Both parts run against the test rig's Pod API server (tests/support/pod_api: the Kubernetes REST API
subset KPO calls, each pod's container run by podman), started by this script in a CHILD process with
a kubeconfig and an Airflow ``kubernetes`` connection (``AIRFLOW_CONN_GENIUS_BENCH_K8S``) as the test
fixture does (tests/containers/kubernetes/conftest.py). A child, not a thread as in the fixture, so
that the stand-in apiserver's threads neither share this process's GIL with the operators in (a) nor
count in this process's CPU time in (b): in a real deployment the apiserver and the kubelet run
elsewhere. Stopping the child (its stdin closed) stops and removes every container it started.

(a) end to end, in the worker: a trivial genius task (``Echo.say("hi")``) in a fresh pod of the same
    image, with the same arguments after the ENTRYPOINT (``run --spec-env GENIUS_TASK_SPEC``), the
    same TaskSpec shape in the pod's environment and the same Redis state store (the pods use the
    host's network):

    ours:   ``GeniusKubernetesOperator.execute()`` — spec from the context, the reattach lookup
            (task_state_store, then KPO's label search), pod created, started, its log followed, pod
            deleted, result read from the run record. The genius-only steps (spec + pod request, run
            record read) are also timed on their own and printed (median ms per task): a figure the
            machine's noise disturbs far less than the ratio.
    anchor: ``KubernetesPodOperator.execute()`` with ``arguments``/``env_vars`` set by hand to the
            same launch (the spec built by the same ``build_spec``), ``do_xcom_push=False``; it reads
            no result (the pod's success is its end).

    Both sync (``deferrable=False``), ``get_logs=True``, ``on_finish_action="delete_pod"`` (KPO's
    defaults), and ``startup_check_interval_seconds=--check-interval`` (1 s, as the test DAGs; KPO's
    default 5 s would add the same 0-5 s start poll to both sides and only pull the ratio towards 1).
    After the log stream ends KPO reads the pod's phase and, when the stand-in has not marked it
    Succeeded yet, sleeps its fixed 2 s: both sides land on one side of that or the other, which is
    most of the spread between repeats.

    ``execute()`` in-process with a minimal task-instance context rather than ``dag.test()``: a DAG run
    adds the same seconds of bookkeeping to both sides and would only pull the ratio towards 1;
    everything the genius subclass does beyond KPO happens inside ``execute()``. Each repeat uses a
    new run id and new operator objects, as Airflow does per try; the sides are interleaved (who goes
    first alternates), after one warm-up of each; medians (the machine is noisy). Goal: ≤ 1.2x.

(b) deferral, two sides one after the other, ``--concurrent`` pods each: genius tasks
    ``Echo.sleep(--sleep)`` are started with ``GeniusKubernetesOperator(deferrable=True).execute()`` —
    each creates its pod and defers with the trigger the operator really uses (KPO's
    ``KubernetesPodTrigger`` swapped for :class:`GeniusKubernetesPodTrigger`). Then one trigger per pod
    runs in ONE asyncio loop, as the triggerer runs them: its events to the end, then its ``cleanup()``;
    with KPO's default intervals (``poll_interval=2``, pod start checked every
    ``startup_check_interval_seconds=5`` with the pod's events watched meanwhile; ``--trigger-poll``
    changes the former).

    ours:   the genius trigger (one API client shared by the deferred pods of the connection).
    anchor: KPO's own ``KubernetesPodTrigger`` with the same arguments, on its own pods: a new API
            client (SSL context, connection pool) per call — what the genius trigger inherited before
            it shared one.

    Reported per side: the wall time until every trigger has fired, and the CPU seconds of this process
    (``time.process_time``: every thread) over that time, per trigger-minute. Goal: ours ≤ 0.1 CPU s
    per trigger-minute. A deferred task holds no worker slot by construction (``execute()`` has returned
    by raising ``TaskDeferred``). The pods run the genius runtime itself (not a plainer ``sleep``
    container): on this 2-core machine many starts of the runtime image take podman a while, so the
    first pods may be done before the last have started — the wall time includes those starts, as a
    triggerer would see them. Afterwards (not timed) each task is resumed with ``trigger_reentry`` as the
    worker would: its log read, its pod deleted and its result (the slept seconds) read from the run
    record.

Every Redis key written (a unique prefix) is deleted at the end, and every pod/container started is
removed (the pods by the operators, anything left by the stand-in's stop; checked through podman).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL = 1.2
#: (b): CPU seconds of the triggers' event loop per deferred pod per minute.
TRIGGER_GOAL = 0.1
ECHO = "airflow_genius.examples.tasks:Echo"
CONN_ID = "genius_bench_k8s"
NAMESPACE = "genius-bench"


class _TI(SimpleNamespace):
    """The part of a task instance the operators read (identity) and write (XCom: pod name)."""

    def xcom_push(self, key: str, value: Any) -> None:
        return None


def _context(dag_id: str, run_id: str) -> dict[str, Any]:
    ti = _TI(dag_id=dag_id, task_id="echo", run_id=run_id, map_index=-1, try_number=1, start_date=None)
    return {"ti": ti, "run_id": run_id, "dag": None, "logical_date": None, "dag_run": None}


# ---------------------------------------------------------------------------- the Pod API stand-in
def _serve(docker_url: str, kubeconfig: str) -> None:
    """Child process: run the Pod API server until stdin closes, then stop it (removes its containers)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from support.pod_api import PodApiServer

    server = PodApiServer(docker_host=docker_url).start()
    server.write_kubeconfig(Path(kubeconfig), namespace=NAMESPACE)
    print(json.dumps({"server_id": server.server_id, "url": server.url}), flush=True)
    try:
        sys.stdin.read()  # EOF: the bench ended (or died)
    finally:
        server.stop()


class PodApi:
    """The stand-in apiserver in a child process (see the docstring), with its kubeconfig."""

    def __init__(self, docker_url: str) -> None:
        self.docker_url = docker_url
        self.folder = Path(tempfile.mkdtemp(prefix="genius-bench-k8s-"))
        self.kubeconfig = self.folder / "kubeconfig"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.kubeconfig), "--docker-url", docker_url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the Pod API server did not start (exit {self.process.wait()})")
        self.server_id: str = json.loads(line)["server_id"]

    def cpu_seconds(self) -> float:
        """User + system CPU of the stand-in process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        """Stop the child (it removes its containers); return how many of its containers podman still has."""
        import docker

        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.terminate()
                self.process.wait(timeout=30)
        client = docker.DockerClient(base_url=self.docker_url, timeout=60)
        try:
            left = client.api.containers(
                all=True, filters={"label": f"io.genius.pod-api.server={self.server_id}"}
            )
            for container in left:  # the child died before its own cleanup
                client.api.remove_container(container["Id"], force=True)
            return len(left)
        finally:
            client.close()
            self.kubeconfig.unlink(missing_ok=True)
            self.folder.rmdir()


# ---------------------------------------------------------------------------- (a) end to end
#: The steps GeniusKubernetesOperator adds around KPO's execute, timed on their own (seconds): the spec
#: and pod request, the run record read. (The reattach lookup is KPO's own with ``reattach_on_restart``,
#: its default; the Secret steps do nothing here: the Redis state store has no password.)
GENIUS_STEPS = ("prepare_launch", "finish_remote")
STEP_TIMES: dict[str, list[float]] = {name: [] for name in GENIUS_STEPS}


def _time_genius_steps() -> None:
    """Wrap the genius-only steps so each call's duration lands in :data:`STEP_TIMES`."""
    from airflow_genius.operators.kubernetes import GeniusKubernetesOperator

    def timed(name: str, method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                STEP_TIMES[name].append(time.perf_counter() - started)

        return wrapper

    for name in GENIUS_STEPS:
        setattr(GeniusKubernetesOperator, name, timed(name, getattr(GeniusKubernetesOperator, name)))


def ours(image: str, run_id: str, state_uri: str, check: float) -> Any:
    from airflow_genius.operators.kubernetes import GeniusKubernetesOperator

    op = GeniusKubernetesOperator(
        task_id="echo", task_class=ECHO, method="say", method_args=["hi"], state_uri=state_uri,
        kubernetes_conn_id=CONN_ID, namespace=NAMESPACE, image=image, startup_check_interval_seconds=check,
    )  # fmt: skip
    return op.execute(_context("bench_k8s", run_id))  # type: ignore[arg-type]  # a minimal context


def anchor(image: str, run_id: str, state_uri: str, check: float) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

    from airflow_genius.core.spec import build_spec
    from airflow_genius.operators.container import container_launch

    spec = build_spec(ECHO, "say", args=["hi"], dag_id="bench_k8s_plain", task_id="echo", run_id=run_id,
                      state_uri=state_uri)  # fmt: skip
    launch = container_launch(spec)
    op = KubernetesPodOperator(
        task_id="echo", kubernetes_conn_id=CONN_ID, namespace=NAMESPACE, image=image, arguments=launch.args,
        env_vars=dict(launch.env), do_xcom_push=False, startup_check_interval_seconds=check,
    )  # fmt: skip
    op.execute(_context("bench_k8s_plain", run_id))  # type: ignore[arg-type]  # a minimal context


def end_to_end(repeats: int, image: str, state_uri: str, check: float) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"ours": [], "anchor": []}
    _time_genius_steps()
    # warm up both paths (imports, clients, podman's caches); not counted
    assert ours(image, f"warm-{uuid.uuid4().hex[:6]}", state_uri, check) == "hi"
    anchor(image, f"warm-{uuid.uuid4().hex[:6]}", state_uri, check)
    for n in range(repeats):
        for side in ("ours", "anchor") if n % 2 == 0 else ("anchor", "ours"):  # alternate who goes first
            run_id = f"{side}-{n}-{uuid.uuid4().hex[:6]}"
            started = time.perf_counter()
            if side == "ours":
                result = ours(image, run_id, state_uri, check)
                assert result == "hi", result
            else:
                anchor(image, run_id, state_uri, check)
            times[side].append(time.perf_counter() - started)
    times.update({name: values[1:] for name, values in STEP_TIMES.items()})  # [1:]: not the warm-up
    return times


# ---------------------------------------------------------------------------- (b) deferral
#: (b)'s two sides: the genius trigger (one API client per connection, shared), and KPO's own trigger on
#: the same pods (a new API client per call: what the genius trigger inherited before it shared one).
TRIGGER_SIDES = ("ours", "anchor")


def deferral(
    concurrent: int, sleep: float, image: str, state_uri: str, poll: float, api: PodApi, side: str
) -> dict[str, Any]:
    import asyncio

    from airflow.providers.cncf.kubernetes.triggers.pod import KubernetesPodTrigger
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_genius.operators.kubernetes import GeniusKubernetesOperator

    tasks: list[tuple[GeniusKubernetesOperator, dict[str, Any], Any]] = []
    started = time.perf_counter()
    try:
        for n in range(concurrent):
            op = GeniusKubernetesOperator(
                task_id="echo", task_class=ECHO, method="sleep", method_kwargs={"seconds": sleep},
                state_uri=state_uri, kubernetes_conn_id=CONN_ID, namespace=NAMESPACE, image=image,
                deferrable=True, poll_interval=poll,
            )  # fmt: skip
            context = _context("bench_k8s_defer", f"defer-{n}-{uuid.uuid4().hex[:6]}")
            try:
                op.execute(context)  # type: ignore[arg-type]  # a minimal context
            except TaskDeferred as deferred:
                trigger = deferred.trigger
                if side == "anchor":
                    trigger = KubernetesPodTrigger(**trigger.serialize()[1])
                tasks.append((op, context, trigger))
            else:
                raise AssertionError("the operator did not defer")
        deferring = time.perf_counter() - started
        kinds = {type(trigger).__name__ for _, _, trigger in tasks}

        async def wait_all() -> list[dict[str, Any]]:
            async def until_fired(trigger: Any) -> dict[str, Any]:
                # as the triggerer: the event stream to its end, then the trigger's cleanup
                fired = [event.payload async for event in trigger.run()]
                await trigger.cleanup()
                assert len(fired) == 1, fired
                return fired[0]  # type: ignore[no-any-return]

            return await asyncio.gather(*(until_fired(trigger) for _, _, trigger in tasks))

        api_cpu = api.cpu_seconds()
        cpu, wall = time.process_time(), time.perf_counter()
        events = asyncio.run(wait_all())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        api_cpu = api.cpu_seconds() - api_cpu
        bad = [event for event in events if event.get("status") != "success"]
        assert not bad, bad[:3]
        results = [
            op.trigger_reentry(context, event) for (op, context, _), event in zip(tasks, events, strict=True)
        ]
        assert all(result == sleep for result in results), results
        tasks.clear()  # every pod deleted by its operator
    finally:
        for op, _, _ in tasks:  # a failure half-way: delete what was started
            try:
                op.client.delete_namespaced_pod(op.pod.metadata.name, NAMESPACE, grace_period_seconds=0)
            except Exception:  # best effort: the stand-in's stop removes the rest
                continue
    return {"kinds": ", ".join(sorted(kinds)), "deferring_s": deferring, "wall_s": wall, "cpu_s": cpu,
            "cpu_s_per_trigger_minute": cpu / (concurrent * wall / 60), "api_cpu_s": api_cpu}  # fmt: skip


@contextmanager
def _quiet() -> Iterator[None]:
    """Send this process's stdout/stderr to /dev/null: both sides log the same lines (the pods' output,
    KPO's progress, "outside the Task Runner" warnings); the log records are still formatted (a cost
    both sides and the triggerer pay), but terminal I/O is not what is measured."""
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


def _print_end_to_end(args: argparse.Namespace, times: dict[str, list[float]]) -> None:
    med = {side: statistics.median(times[side]) for side in ("ours", "anchor")}
    ratio = med["ours"] / med["anchor"]
    print(f"repeats={args.repeats} image={args.image} engine={args.docker_url} "
          f"startup_check_interval={args.check_interval:g}s")  # fmt: skip
    print(f"{'side':<44}{'median s':>10}{'min s':>10}{'max s':>10}")
    for side, label in (
        ("ours", "GeniusKubernetesOperator.execute"),
        ("anchor", "KubernetesPodOperator.execute (same launch)"),
    ):
        values = times[side]
        print(f"{label:<44}{med[side]:>10.3f}{min(values):>10.3f}{max(values):>10.3f}")
    print(f"  ours:   {', '.join(f'{t:.2f}' for t in times['ours'])}")
    print(f"  anchor: {', '.join(f'{t:.2f}' for t in times['anchor'])}")
    print("genius-only steps of ours (median ms per task):")
    for name in GENIUS_STEPS:
        print(f"  {name:<42}{statistics.median(times[name]) * 1000:>10.1f}")
    paired = statistics.median(o / a for o, a in zip(times["ours"], times["anchor"], strict=True))
    print(f"median of paired ratios: {paired:.2f}x")
    print(
        f"ratio ours/anchor (medians): {ratio:.2f}x (goal <= {GOAL}x) -> {'met' if ratio <= GOAL else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="pairs in (a); 0: skip (a)")
    parser.add_argument(
        "--concurrent", type=int, default=20, help="deferred waits per side in (b); 0: skip (b)"
    )
    parser.add_argument("--sleep", type=float, default=20.0, help="seconds each pod of (b) sleeps")
    parser.add_argument(
        "--check-interval", type=float, default=1.0, help="(a): startup_check_interval_seconds"
    )
    parser.add_argument(
        "--trigger-poll", type=float, default=2.0, help="(b): poll_interval (KPO's default 2)"
    )
    parser.add_argument(
        "--docker-url", default=os.environ.get("GENIUS_TEST_DOCKER_URL", "unix:///tmp/genius-rig/podman.sock")
    )
    parser.add_argument(
        "--image", default=os.environ.get("GENIUS_TEST_IMAGE", "localhost/airflow-genius-runtime:dev")
    )
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--serve", metavar="KUBECONFIG", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.docker_url, args.serve)
        return 0

    api = PodApi(args.docker_url)
    os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
        {"conn_type": "kubernetes", "extra": {"kube_config_path": str(api.kubeconfig), "in_cluster": False}}
    )
    prefix = f"benchk8s{uuid.uuid4().hex[:8]}"
    state_uri = f"{args.redis}?prefix={prefix}"
    times: dict[str, list[float]] = {}
    figures: dict[str, dict[str, Any]] = {}
    left = 0
    try:
        with _quiet():
            if args.repeats:
                times = end_to_end(args.repeats, args.image, state_uri, args.check_interval)
            for side in TRIGGER_SIDES if args.concurrent else ():
                figures[side] = deferral(
                    args.concurrent, args.sleep, args.image, state_uri, args.trigger_poll, api, side
                )
    finally:
        left = api.stop()
        import redis

        client = redis.Redis.from_url(args.redis)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)

    if times:
        _print_end_to_end(args, times)
    if figures:
        print(f"{args.concurrent} deferred waits on genius Echo.sleep({args.sleep:g}) pods per side, one event "
              f"loop, poll_interval={args.trigger_poll:g}s (worker slots held: 0):")  # fmt: skip
        for side in TRIGGER_SIDES:
            side_figures = figures[side]
            print(f"  {side} ({side_figures['kinds']}): deferring all {args.concurrent} tasks (pods created) "
                  f"in the worker {side_figures['deferring_s']:.1f} s; wall {side_figures['wall_s']:.1f} s, "
                  f"CPU {side_figures['cpu_s']:.2f} s = {side_figures['cpu_s_per_trigger_minute']:.3f} CPU s "
                  f"per trigger-minute (the stand-in apiserver's own CPU meanwhile, not counted: "
                  f"{side_figures['api_cpu_s']:.1f} s)")  # fmt: skip
        per_minute = figures["ours"]["cpu_s_per_trigger_minute"]
        print(f"ratio ours/anchor (CPU per trigger-minute): "
              f"{per_minute / figures['anchor']['cpu_s_per_trigger_minute']:.2f}x; "
              f"goal <= {TRIGGER_GOAL} CPU s per trigger-minute -> "
              f"{'met' if per_minute <= TRIGGER_GOAL else 'NOT met'}")  # fmt: skip
    load = os.getloadavg()
    leftover = f"{left} container(s) left by the stand-in, removed" if left else "no container left behind"
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {leftover}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
