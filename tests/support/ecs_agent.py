"""A test-side ECS container agent: runs the tasks moto's ECS accepts, through podman's Docker API.

moto's ECS never runs a container: ``run_task`` answers RUNNING and every describe moves the task on
until STOPPED with ``exitCode`` 0. This agent plays the part of the ECS agent on a container instance:

1. it pins moto's task state machine (``POST /moto-api/state-manager/set-transition``, model
   ``ecs::task``, manual progression that never advances on its own), so a task stays RUNNING until
   someone calls ``stop_task``;
2. it watches the cluster (``list_tasks`` + ``describe_tasks``) and runs each new task's container with
   the task definition's image, command and environment merged with the task's ``containerOverrides``
   (command replaced, environment merged — as ECS does), ``network_mode="host"`` (so the container
   reaches Redis/Postgres/moto on 127.0.0.1 like the Airflow worker);
3. it copies the container's output into CloudWatch Logs on moto, where the task definition's
   ``awslogs`` options say (group, stream ``<prefix>/<container>/<task id>``), while the task runs;
4. when the container exits it calls ``stop_task`` (reason ``Essential container in task exited
   (exit code N)``); when someone else stops the task (``on_kill``) it stops the container (SIGTERM,
   which the genius runtime records as CANCELLED — or, for a service, as its normal SUCCESS end).

A long-running task (a genius service) simply runs until ``stop_task``. :meth:`EcsAgent.address` says
where its container is reachable: the containers share the host network, so a service listens on the
machine's primary address — what the runtime in the container records as its hostname, and what a
service operator publishes when the task has no ENI of its own (moto cannot run ``awsvpc`` tasks).

moto still reports ``exitCode`` 0 and container ``lastStatus`` PENDING for every task: the exit code is
in the stop reason, and whether the genius task succeeded comes from its run record (the run record decides, see docs/architecture.md).
Secrets declared in the task definition are not resolved (moto has no such machinery).

    agent = EcsAgent(cluster="genius", endpoint="http://127.0.0.1:5055",
                     docker_host="unix:///tmp/genius-rig/podman.sock")
    agent.start()        # a daemon thread; agent.stop() stops it (and the containers it runs)

The transition is global to moto's ECS; nothing else in this project depends on moto's own ECS
progression, and the agent only touches tasks of its own cluster.
"""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.request
from dataclasses import dataclass, field
from typing import Any

#: Manual progression that needs this many describe calls to advance: in practice, never.
NEVER = 10**9


@dataclass
class _Running:
    """A task whose container this agent runs."""

    arn: str
    container: Any
    log_group: str | None
    log_stream: str | None
    copied: int = 0  # output lines already put into CloudWatch Logs
    stopping: bool = False


@dataclass
class EcsAgent:
    """Run moto ECS tasks of ``cluster`` as podman containers (see the module docstring)."""

    cluster: str
    endpoint: str
    docker_host: str
    region: str = "us-east-1"
    poll_interval: float = 0.5
    stop_timeout: int = 10
    running: dict[str, _Running] = field(default_factory=dict)
    finished: dict[str, int] = field(default_factory=dict)  # task arn -> container exit code

    def __post_init__(self) -> None:
        import boto3

        import docker

        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        self.ecs = boto3.client("ecs", endpoint_url=self.endpoint, region_name=self.region, **creds)
        self.logs = boto3.client("logs", endpoint_url=self.endpoint, region_name=self.region, **creds)
        self.docker = docker.DockerClient(base_url=self.docker_host, timeout=60)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._taskdefs: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []

    # ------------------------------------------------------------------ lifecycle
    def pin_task_states(self) -> None:
        """Tasks stay RUNNING until ``stop_task`` (moto's state manager, manual progression)."""
        body = json.dumps(
            {"model_name": "ecs::task", "transition": {"progression": "manual", "times": NEVER}}
        )
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/state-manager/set-transition", data=body.encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def start(self) -> EcsAgent:
        self.pin_task_states()
        self._thread = threading.Thread(target=self._loop, name=f"ecs-agent-{self.cluster}", daemon=True)
        self._thread.start()
        return self

    def address(self, arn: str) -> str | None:
        """Where the container of task ``arn`` is reachable (None if this agent does not run it): its own
        address on a podman network, else (host network) the machine's primary address."""
        run = self.running.get(arn)
        if run is None:
            return None
        from airflow_genius.core.service import advertised_host

        own = (run.container.attrs.get("NetworkSettings") or {}).get("IPAddress")
        return str(own) if own else advertised_host({})

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for run in list(self.running.values()):
            self._remove(run)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # keep serving; the tests read agent.errors when they fail
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self._stop.wait(self.poll_interval)

    # ------------------------------------------------------------------ one round
    def poll_once(self) -> None:
        live = set(self.ecs.list_tasks(cluster=self.cluster, desiredStatus="RUNNING")["taskArns"])
        for arn in sorted(live - set(self.running) - set(self.finished)):
            self._launch(arn)
        for arn, run in list(self.running.items()):
            if arn not in live and not run.stopping:
                run.stopping = True  # stop_task from someone else (the operator's on_kill)
                run.container.stop(timeout=self.stop_timeout)
            run.container.reload()
            self._copy_logs(run)
            if run.container.status in ("exited", "dead", "stopped"):
                self._finish(run)

    def _launch(self, arn: str) -> None:
        (task,) = self.ecs.describe_tasks(cluster=self.cluster, tasks=[arn])["tasks"]
        taskdef = self._taskdef(task["taskDefinitionArn"])
        definition = taskdef["containerDefinitions"][0]
        override = next(
            (
                o
                for o in task.get("overrides", {}).get("containerOverrides", [])
                if o.get("name") == definition["name"]
            ),
            {},
        )
        env = {e["name"]: e["value"] for e in definition.get("environment") or ()}
        env.update({e["name"]: e["value"] for e in override.get("environment") or ()})
        options = (definition.get("logConfiguration") or {}).get("options") or {}
        task_id = arn.rsplit("/", 1)[-1]
        group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
        stream = f"{prefix}/{definition['name']}/{task_id}" if group and prefix else None
        if group and stream:
            self._ensure_stream(group, stream)
        container = self.docker.containers.run(
            definition["image"],
            override.get("command") or definition.get("command"),
            environment=env,
            network_mode="host",
            name=f"ecs-{self.cluster}-{task_id}",
            labels={"genius.ecs.task": arn},
            detach=True,
        )
        self.running[arn] = _Running(arn, container, group, stream)

    def _finish(self, run: _Running) -> None:
        code = int(run.container.attrs.get("State", {}).get("ExitCode", -1))
        self._copy_logs(run)
        self.finished[run.arn] = code
        if not run.stopping:
            reason = f"Essential container in task exited (exit code {code})"
            self.ecs.stop_task(cluster=self.cluster, task=run.arn, reason=reason)
        self._remove(run)

    def _remove(self, run: _Running) -> None:
        self.running.pop(run.arn, None)
        try:
            run.container.remove(force=True)
        except Exception as exc:
            self.errors.append(f"removing {run.container.name}: {exc}")

    # ------------------------------------------------------------------ logs
    def _copy_logs(self, run: _Running) -> None:
        """Put the container's output lines not copied yet into the task's CloudWatch stream (the
        whole output is re-read each round: simple, and test outputs are small)."""
        if not run.log_stream:
            return
        lines = (
            run.container.logs(stdout=True, stderr=True, timestamps=True)
            .decode(errors="replace")
            .splitlines()
        )
        fresh = lines[run.copied :]
        if not fresh:
            return
        events = []
        for line in fresh:
            stamp, _, message = line.partition(" ")
            events.append({"timestamp": _unix_millis(stamp), "message": message or " "})
        self.logs.put_log_events(
            logGroupName=run.log_group, logStreamName=run.log_stream,
            logEvents=sorted(events, key=lambda e: e["timestamp"]),
        )  # fmt: skip
        run.copied = len(lines)

    def _ensure_stream(self, group: str, stream: str) -> None:
        for call, args in (
            (self.logs.create_log_group, {"logGroupName": group}),
            (self.logs.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
        ):
            with contextlib.suppress(self.logs.exceptions.ResourceAlreadyExistsException):
                call(**args)

    def _taskdef(self, arn: str) -> dict[str, Any]:
        if arn not in self._taskdefs:
            self._taskdefs[arn] = self.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        return self._taskdefs[arn]


def _unix_millis(stamp: str) -> int:
    from datetime import datetime

    # podman: 2026-11-23T17:50:29.400123456Z (nanoseconds); fromisoformat takes at most microseconds
    head, _, frac = stamp.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(f"{head}.{(frac or '0')[:6]:0<6}+00:00")
    return int(moment.timestamp() * 1000)
