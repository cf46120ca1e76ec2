"""docker/compose.yaml for real: podman-compose runs the stack on the images the test rig builds.

`scripts/rig/compose.sh` (from `scripts/services`) builds the Airflow image from docker/Dockerfile.airflow
and PostgreSQL/Redis images from Debian packages, all on the debootstrapped base; the compose file's
image variables point at them here and keep the official images as their defaults for users.

The stack runs with the celery profile (CeleryExecutor, Redis broker, PostgreSQL result backend, two
workers): the API server answers its health endpoint, DAGs triggered through the REST API succeed and
write their run records to the stack's Redis, the mapped example's task instances run on both workers,
the deferrable bolt of ``genius_slurm_pipeline`` waits in the triggerer container while its job runs on
the rig's Slurm cluster, and ``down -v`` leaves no container, network or volume of the project behind.

For the Slurm example, tests/stack/compose.slurm.yaml adds what the rig needs: the stack's network on a
fixed subnet (Redis at an address the Slurm jobs on this host reach too) and the SSH connection to the
rig's sshd, which listens on 127.0.0.1 only and which this module relays from the bridge's gateway.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.containers, pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yaml"
RIG_OVERRIDE = Path(__file__).with_name("compose.slurm.yaml")
PROJECT = "genius-compose-test"
RIG_DIR = Path(os.environ.get("GENIUS_RIG_DIR", "/tmp/genius-rig"))
SSH_PORT = int(os.environ.get("GENIUS_SSH_PORT", "2222"))
SSH_KEY = RIG_DIR / "ssh" / "id_ed25519"
# The stack's network (compose.slurm.yaml): a subnet no other rig network uses.
SUBNET, GATEWAY, REDIS_IP = "10.213.7.0/24", "10.213.7.1", "10.213.7.10"
DATA_DIR = RIG_DIR / "compose-test-data"
SSH_DIR = RIG_DIR / "compose-test-ssh"
# The images scripts/rig/compose.sh builds (same variables, same defaults).
IMAGES = {
    "GENIUS_AIRFLOW_IMAGE": os.environ.get("GENIUS_AIRFLOW_IMAGE", "localhost/airflow-genius:dev"),
    "GENIUS_POSTGRES_IMAGE": os.environ.get("GENIUS_POSTGRES_IMAGE", "localhost/genius-postgres:dev"),
    "GENIUS_REDIS_IMAGE": os.environ.get("GENIUS_REDIS_IMAGE", "localhost/genius-redis:dev"),
}
HINT = "build them with `scripts/services` (scripts/rig/compose.sh)"
# Generous: on two busy cores the Airflow containers take minutes to start.
STACK_TIMEOUT = 900.0
RUN_TIMEOUT = 600.0


def _podman_compose() -> str:
    found = shutil.which("podman-compose") or str(Path(sys.executable).with_name("podman-compose"))
    if not Path(found).exists():
        pytest.fail("podman-compose is missing: install the dev extra (scripts/bootstrap)", pytrace=False)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _podman(*args: str, check: bool = True) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


class _Pipe(socketserver.BaseRequestHandler):
    """One relayed connection: bytes both ways until either side closes."""

    target: tuple[str, int]

    def handle(self) -> None:
        with socket.create_connection(self.target, timeout=30) as upstream:
            upstream.settimeout(None)

            def pump(src: socket.socket, dst: socket.socket) -> None:
                try:
                    while data := src.recv(65536):
                        dst.sendall(data)
                except OSError:
                    pass
                finally:
                    for sock in (src, dst):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)

            back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
            back.start()
            pump(self.request, upstream)
            back.join()


def relay(listen: tuple[str, int], target: tuple[str, int]) -> socketserver.ThreadingTCPServer:
    """A TCP relay from ``listen`` to ``target``, served in a daemon thread (``shutdown()`` stops it)."""
    handler = type("Pipe", (_Pipe,), {"target": target})
    server = socketserver.ThreadingTCPServer(listen, handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Stack:
    """The compose project under test: podman-compose commands, its containers, the REST API."""

    def __init__(self, port: int, ssh_port: int) -> None:
        self.port = port
        self.ssh_port = ssh_port
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            **IMAGES,
            "GENIUS_AIRFLOW_PORT": str(port),
            "GENIUS_EXECUTOR": "CeleryExecutor",
            # One task at a time per worker, so that the mapped instances spread over both workers.
            "GENIUS_WORKER_CONCURRENCY": "1",
            # compose.slurm.yaml
            "GENIUS_TEST_SUBNET": SUBNET,
            "GENIUS_TEST_GATEWAY": GATEWAY,
            "GENIUS_TEST_REDIS_IP": REDIS_IP,
            "GENIUS_TEST_SSH_PORT": str(self.ssh_port),
            "GENIUS_TEST_SSH_DIR": str(SSH_DIR),
            "GENIUS_TEST_DATA": str(DATA_DIR),
            "GENIUS_TEST_GENIUS_BIN": str(Path(sys.executable).parent),
        }
        self.token = ""

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """podman-compose on docker/compose.yaml with the celery profile (log in the rig folder)."""
        cmd = [_podman_compose(), "-p", PROJECT, "-f", str(COMPOSE_FILE), "-f", str(RIG_OVERRIDE)]
        cmd += ["--profile", "celery", *args]
        done = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        with open(RIG_DIR / "compose-test.log", "a") as log:
            log.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}\n")
        return done

    def container(self, service: str, index: int = 1) -> str:
        return f"{PROJECT}_{service}_{index}"

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"null")

    def wait_healthy(self) -> dict[str, Any]:
        """The health endpoint's answer once every component reports healthy."""
        deadline = time.monotonic() + STACK_TIMEOUT
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.request("GET", "/api/v2/monitor/health", auth=False)
                if all(part.get("status") == "healthy" for part in last.values()):
                    return dict(last)
            except (OSError, urllib.error.URLError, ValueError) as exc:
                last = exc
            time.sleep(5)
        raise AssertionError(
            f"the stack was not healthy within {STACK_TIMEOUT:g}s: {last}; {self.diagnose()}"
        )

    def login(self) -> None:
        """A JWT from /auth/token with the admin password the simple auth manager generated."""
        raw = _podman(
            "exec", self.container("airflow-apiserver"), "cat", "/opt/airflow/genius/passwords.json"
        )
        self.token = self.request(
            "POST", "/auth/token", {"username": "admin", "password": json.loads(raw)["admin"]}, auth=False
        )["access_token"]

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        """Unpause and trigger ``dag_id`` through the REST API; the finished dag run."""
        deadline = time.monotonic() + RUN_TIMEOUT
        while True:  # the DAG processor may not have parsed the example yet
            try:
                self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(3)
        run = self.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run['dag_run_id']}"
        while time.monotonic() < deadline:
            run = self.request("GET", path)
            if run["state"] in ("success", "failed"):
                return dict(run)
            time.sleep(3)
        raise AssertionError(f"{dag_id} run {run['dag_run_id']} still {run['state']}; {self.diagnose()}")

    def run_record(self, dag_id: str, task_id: str, run_id: str, map_index: int = -1) -> dict[str, Any]:
        """A run record from the stack's default state store (Redis), read by `genius state show`."""
        out = _podman(
            "exec", self.container("airflow-scheduler"), "genius", "state", "show",
            "--conn-id", "genius_redis_default", "--dag-id", dag_id, "--task-id", task_id,
            "--run-id", run_id, "--map-index", str(map_index),
        )  # fmt: skip
        return dict(json.loads(out))

    def project_leftovers(self) -> list[str]:
        """Containers, networks and volumes of the project that still exist."""
        found = []
        label = f"label=io.podman.compose.project={PROJECT}"
        found += _podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").split()
        found += [
            n for n in _podman("network", "ls", "--format", "{{.Name}}").split() if n.startswith(PROJECT)
        ]
        found += [
            v for v in _podman("volume", "ls", "--format", "{{.Name}}").split() if v.startswith(PROJECT)
        ]
        return found

    def diagnose(self) -> str:
        states = _podman("ps", "-a", "--filter", f"label=io.podman.compose.project={PROJECT}",
                         "--format", "{{.Names}} {{.Status}}", check=False)  # fmt: skip
        return f"containers:\n{states}(logs: podman logs <name>; commands in {RIG_DIR / 'compose-test.log'})"


def _prepare_slurm_files() -> None:
    """The rig's SSH key, readable by the containers' uid 50000, and the example's shared data folder."""
    if not SSH_KEY.exists() or shutil.which("sbatch") is None:
        pytest.fail(
            "the Slurm rig (sshd key, Slurm commands) is missing: run scripts/services", pytrace=False
        )
    for folder in (SSH_DIR, DATA_DIR):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.chown(folder, 50000, 0)
    key = SSH_DIR / "id_ed25519"
    shutil.copyfile(SSH_KEY, key)
    key.chmod(0o600)
    os.chown(key, 50000, 0)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """The celery-profile stack, up, with the sshd relay; ``down -v`` afterwards whatever the test did."""
    for image in IMAGES.values():
        if subprocess.run(["podman", "image", "exists", image], timeout=60).returncode != 0:
            pytest.fail(f"the image {image} is missing; {HINT}", pytrace=False)
    RIG_DIR.mkdir(parents=True, exist_ok=True)
    (RIG_DIR / "compose-test.log").write_text("")
    _prepare_slurm_files()
    stack = Stack(_free_port(), _free_port())
    stack.compose("down", "-v")  # what an interrupted earlier run left
    server = None
    try:
        # --no-deps: podman 4.3 cannot start a container whose --requires chain passes an exited
        # container (airflow-init); the Airflow containers wait for the database and migrations themselves.
        up = stack.compose("up", "-d", "--no-build", "--no-deps")
        assert up.returncode == 0, f"podman-compose up failed: {up.stderr[-3000:]}"
        # The gateway address exists once the network's first container runs.
        server = relay((GATEWAY, stack.ssh_port), ("127.0.0.1", SSH_PORT))
        yield stack
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        stack.compose("down", "-v")
        for folder in (SSH_DIR, DATA_DIR):
            shutil.rmtree(folder, ignore_errors=True)


def test_default_images_stay_official() -> None:
    """Without the rig's variables the compose file runs the official postgres and redis images."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENIUS_")}
    out = subprocess.run(
        [_podman_compose(), "-f", str(COMPOSE_FILE), "--profile", "celery", "config"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "image: postgres:16" in out
    assert "image: redis:7" in out
    assert "image: airflow-genius:dev" in out
    assert "AIRFLOW__CORE__EXECUTOR: LocalExecutor" in out


def test_celery_stack(stack: Stack) -> None:
    """Health, REST-triggered runs with run records in Redis, both workers busy, a deferred bolt through
    the triggerer, and a clean ``down -v``."""
    health = stack.wait_healthy()
    assert set(health) >= {"metadatabase", "scheduler", "triggerer", "dag_processor"}
    # The compose healthchecks themselves (podman without systemd does not run them on a timer).
    for service in ("postgres", "redis", "airflow-apiserver"):
        _podman("healthcheck", "run", stack.container(service))

    stack.login()
    run = stack.trigger("genius_batch_pipeline")
    assert run["state"] == "success", stack.diagnose()
    for task_id in ("fetch", "count"):
        record = stack.run_record("genius_batch_pipeline", task_id, run["dag_run_id"])
        assert record["status"] == "SUCCESS"
    assert stack.run_record("genius_batch_pipeline", "count", run["dag_run_id"])["result"]["records"] == 20

    # Celery: the mapped bolt's instances; each worker takes one task at a time, so its three instances
    # normally spread over both workers in one run. A few more runs only if they did not.
    workers = {
        _podman("inspect", "--format", "{{.Config.Hostname}}", stack.container("airflow-worker", i)).strip()
        for i in (1, 2)
    }
    assert len(workers) == 2
    hosts: set[str] = set()
    for _ in range(4):
        run = stack.trigger("genius_mapped_bolt")
        assert run["state"] == "success", stack.diagnose()
        for map_index in (0, 1, 2):
            record = stack.run_record("genius_mapped_bolt", "count", run["dag_run_id"], map_index)
            assert record["status"] == "SUCCESS"
            hosts.update(step["host"] for step in record["history"] if step["status"] == "RUNNING")
        if workers <= hosts:
            break
    assert workers <= hosts, f"mapped instances ran on {hosts}, workers are {workers}"

    # Deferred: the Slurm bolt waits in the triggerer while its job runs on the cluster (this host).
    run = stack.trigger("genius_slurm_pipeline", {"count": 12})
    assert run["state"] == "success", stack.diagnose()
    record = stack.run_record("genius_slurm_pipeline", "count", run["dag_run_id"])
    assert record["status"] == "SUCCESS"
    assert record["result"]["records"] == 12
    assert {step["host"] for step in record["history"]} == {socket.gethostname()}
    # Airflow writes what a trigger logs to a file of its own (…attempt=N.log.trigger.<job>.log) in the
    # container whose triggerer ran it.
    trigger_logs = _podman(
        "exec", stack.container("airflow-triggerer"), "find", "/opt/airflow/logs/dag_id=genius_slurm_pipeline",
        "-path", "*task_id=count*", "-name", "*.trigger.*", "-size", "+0",
    ).split()  # fmt: skip
    assert trigger_logs, "the triggerer container holds no trigger log of the Slurm bolt"
    text = _podman("exec", stack.container("airflow-triggerer"), "cat", *trigger_logs)
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    fired = [
        event
        for event in events
        if event.get("event") == "Trigger fired event" and event.get("run_id") == run["dag_run_id"]
    ]
    assert fired, text[-3000:]
    assert "'succeeded': True" in fired[0]["result"]
    assert any(event.get("event") == "trigger completed" for event in events), text[-3000:]

    down = stack.compose("down", "-v")
    assert down.returncode == 0, down.stderr[-3000:]
    assert stack.project_leftovers() == []
