"""Fixtures for tests against the real single-node Slurm + sshd of the test rig (scripts/rig/slurm.sh).

The rig's sshd listens on 127.0.0.1:${GENIUS_SSH_PORT:-2222} and accepts the key in
``${GENIUS_RIG_DIR:-/tmp/genius-rig}/ssh/id_ed25519`` for root. An unreachable rig fails the tests.

    def test_x(slurm_hook):
        job = slurm_hook.submit("#!/bin/bash\ntrue\n", work_dir="/tmp")
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slurm.rig import CONN_ID, CONN_JSON, GENIUS, require_rig


@pytest.fixture(scope="session")
def slurm_conn() -> str:
    """The connection URI (JSON) of the rig's login node, after checking the rig is up."""
    require_rig()
    return CONN_JSON


@pytest.fixture(autouse=True)
def _slurm_connection(slurm_conn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", slurm_conn)


@pytest.fixture
def slurm_hook(slurm_conn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from airflow_genius.hooks.slurm import SlurmHook

    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", slurm_conn)
    with SlurmHook(CONN_ID) as hook:
        yield hook


@pytest.fixture
def slurm_env(airflow_env: dict[str, str], slurm_conn: str, tmp_path: Path) -> dict[str, str]:
    """Airflow env + the SSH connection + a private SQLite state store (the node is this machine)."""
    return {
        **airflow_env,
        f"AIRFLOW_CONN_{CONN_ID.upper()}": slurm_conn,
        "AIRFLOW__GENIUS__STATE_URI": f"sqlite:///{tmp_path}/state.db",
        "AIRFLOW__GENIUS__WORK_DIR": str(tmp_path / "work"),
        "GENIUS_EXAMPLE_DATA": str(tmp_path / "data"),
        "GENIUS_EXAMPLE_SSH_CONN_ID": CONN_ID,
        "GENIUS_EXAMPLE_SLURM_SETUP": f"export PATH={Path(GENIUS).parent}:$PATH",
        "GENIUS_TEST_GENIUS": GENIUS,
        "GENIUS_TEST_CANARY": str(tmp_path / "canary"),
    }
