"""Fixtures for tests that run real Airflow (marker ``airflow``), for every test folder (registered in
tests/conftest.py as a plugin).

Airflow runs in child processes, never in the pytest process: each child gets a fresh, migrated
``AIRFLOW_HOME`` through its environment, so tests cannot leak Airflow configuration into each other or
into the core tests (which must keep running without Airflow).

    def test_something(airflow_env, run_python, tmp_path):
        env = {**airflow_env, "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path)}
        done = run_python("from airflow.sdk import DAG; print('ok')", env)
        assert done.returncode == 0 and done.stdout.strip() == "ok"
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
#: The venv's interpreter and CLI (pytest runs from the project's .venv).
PYTHON = sys.executable
AIRFLOW = str(Path(sys.executable).with_name("airflow"))

RunPython = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a fresh AIRFLOW_HOME with a migrated SQLite metadata DB (once per session).

    The caller's own ``AIRFLOW_*`` variables are dropped so the developer's Airflow never leaks in.
    Override ``AIRFLOW__CORE__DAGS_FOLDER`` (default: an empty folder) and add what a test needs.
    """
    home = tmp_path_factory.mktemp("airflow_home")
    (home / "dags").mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{home}/genius/state.db",
            "AIRFLOW__GENIUS__WORK_DIR": str(home / "genius" / "work"),
            # tests/ holds genius_samples (task classes used by test DAGs)
            "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
        }
    )
    done = subprocess.run(
        [AIRFLOW, "db", "migrate"], capture_output=True, text=True, env=env, cwd=home, timeout=300
    )
    if done.returncode != 0:
        pytest.fail(
            f"airflow db migrate failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}", pytrace=False
        )
    return env


def _run_python(
    code: str,
    env: dict[str, str],
    *,
    args: Sequence[str] = (),
    cwd: str | os.PathLike[str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the venv's python in ``env``; ``args`` become ``sys.argv[1:]``."""
    return subprocess.run(
        [PYTHON, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or env.get("AIRFLOW_HOME"),
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def run_python() -> RunPython:
    """``run_python(code, env, *, args=(), cwd=None, timeout=300) -> CompletedProcess``."""
    return _run_python
