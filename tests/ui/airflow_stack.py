"""A real Airflow 3 stack on loopback for browser tests: api-server, scheduler and dag-processor.

One fresh ``AIRFLOW_HOME`` (SQLite metadata DB, LocalExecutor with two task slots, one API worker), the
genius dashboard plugin in its plugins folder, SimpleAuthManager with one admin whose password the test
writes itself (``simple_auth_manager_passwords_file``), and a free port. Each component runs in its own
process group and is stopped with SIGTERM (then SIGKILL) on :meth:`AirflowStack.stop`.

    stack = AirflowStack(home, dags_folder, extra_env={"AIRFLOW__GENIUS__DASHBOARD_STATE_URIS": "..."})
    stack.start()           # migrates, starts the three components, waits for the API and the DAG
    token = stack.token()   # a JWT for the REST API
    stack.stop()
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
PLUGIN_FILE = "from airflow_genius.plugins.dashboard import GeniusDashboardPlugin  # noqa: F401\n"
COMPONENTS = ("api-server", "scheduler", "dag-processor")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowStack:
    """Airflow's server components in child processes (see the module docstring)."""

    user = "admin"

    def __init__(self, home: Path, dags_folder: Path, *, extra_env: dict[str, str] | None = None) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.password = secrets.token_urlsafe(12)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        plugins = home / "plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        (plugins / "genius_dashboard.py").write_text(PLUGIN_FILE)
        passwords = home / "passwords.json"
        passwords.write_text(json.dumps({self.user: self.password}))
        env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "60",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
                "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{home}/genius/state.db",
                "AIRFLOW__GENIUS__WORK_DIR": str(home / "genius" / "work"),
                "GENIUS_EXAMPLE_DATA": str(home / "genius" / "data"),
            }
        )
        env.update(extra_env or {})
        self.env = env

    # ------------------------------------------------------------------ lifecycle
    def start(self, *, timeout: float = 240) -> None:
        """Migrate the DB, start the components, wait until the API answers."""
        done = subprocess.run(
            [AIRFLOW, "db", "migrate"],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        for name in COMPONENTS:
            log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            self.procs[name] = subprocess.Popen(
                [AIRFLOW, name],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() ends its children too
            )
        self._wait(lambda: self._get("/api/v2/monitor/health") is not None, timeout, "the API server")

    def stop(self, *, grace: float = 20) -> None:
        """SIGTERM every component's process group, SIGKILL what is left after ``grace`` seconds."""
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def logs(self, lines: int = 40) -> str:
        """The tail of every component's log (for failure messages)."""
        parts = []
        for name in COMPONENTS:
            path = self.home / f"{name}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    # ------------------------------------------------------------------ REST helpers
    def token(self) -> str:
        """A JWT for the REST API (``POST /auth/token`` with the admin's password)."""
        body = json.dumps({"username": self.user, "password": self.password}).encode()
        request = urllib.request.Request(
            f"{self.url}/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return str(json.load(answer)["access_token"])

    def api(self, path: str, token: str | None = None) -> Any:
        """GET a JSON document of the API server (``None`` while it is not answering)."""
        return self._get(path, token)

    def post(self, path: str, body: dict[str, Any], token: str) -> Any:
        """POST JSON to the API server and return the JSON answer (HTTP errors raise)."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def _get(self, path: str, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"{self.url}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.load(answer)
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def finished_run(self, token: str, dag_id: str, match: Any) -> dict[str, Any] | None:
        """The newest run of ``dag_id`` for which ``match(run)`` holds, once it succeeded or failed."""
        runs = self.api(f"/api/v2/dags/{dag_id}/dagRuns?order_by=-run_after", token) or {}
        for run in runs.get("dag_runs", []):
            if match(run) and run["state"] in ("success", "failed"):
                return dict(run)
        return None

    def wait_for(self, check: Any, timeout: float, what: str) -> Any:
        """Poll ``check()`` every second until it returns something truthy; fail with the logs."""
        return self._wait(check, timeout, what)

    def _wait(self, check: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode}\n{self.logs()}")
            value = check()
            if value:
                return value
            time.sleep(1)
        raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.logs()}")
