"""Fixtures for tests against the real single-node Slurm + sshd of the test rig (scripts/rig/slurm.sh).

The rig's sshd listens on 127.0.0.1:${GENIUS_SSH_PORT:-2222} and accepts the key in
``${GENIUS_RIG_DIR:-/tmp/genius-rig}/ssh/id_ed25519`` for root. An unreachable rig fails the tests.

    def test_x(slurm_hook):
        job = slurm_hook.submit("#!/bin/bash\ntrue\n", work_dir="/tmp")
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slurm.rig import CONN_ID, CONN_JSON, require_rig


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
