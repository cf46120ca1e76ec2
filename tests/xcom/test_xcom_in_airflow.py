"""The genius XCom backend inside real Airflow: ``dag.test()`` moves a 200 MB value between two tasks.

Airflow runs in child processes with a fresh AIRFLOW_HOME (it reads its configuration at import). The
test then looks at what Airflow itself stored: the ``xcom`` table must hold only the reference, the
object must be in the store, and re-running the producer (what a clear or a retry does) must make
Airflow purge the object through the backend.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from xcom_helpers import files_under, is_reference

pytestmark = [pytest.mark.slow, pytest.mark.airflow]

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "genius_xcom_big"
RECORDS = 200_000  # ~1,070 bytes of JSON each: a ~214 MB value

DAG_FILE = textwrap.dedent(
    """
    from __future__ import annotations

    import os
    from datetime import datetime

    from airflow.sdk import dag, task

    N = int(os.environ["GENIUS_XCOM_TEST_RECORDS"])
    BASE = "".join(chr(32 + (i * 7) % 90) for i in range(2000)) + "é✓"


    def records(n: int) -> list[dict]:
        return [
            {"id": i, "text": BASE[i % 997 : i % 997 + 1000], "score": i * 0.5, "ok": i % 2 == 0}
            for i in range(n)
        ]


    @dag(dag_id="genius_xcom_big", schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
    def genius_xcom_big():
        @task
        def produce():
            if os.environ.get("GENIUS_XCOM_TEST_MODE") == "small":
                return {"small": True}
            return records(N)

        @task
        def consume(value):
            assert value == records(N), "the pulled value differs from the pushed one"
            return len(value)

        consume(produce())


    the_dag = genius_xcom_big()
    """
)

DRIVER = textwrap.dedent(
    """
    import json, sys
    from datetime import datetime, timezone

    sys.path.insert(0, sys.argv[1])
    import genius_xcom_big

    run = genius_xcom_big.the_dag.test(logical_date=datetime(2024, 1, 2, tzinfo=timezone.utc))
    print(json.dumps({"state": str(run.state), "run_id": run.run_id}))
    """
)


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"{args[:3]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return done


def _xcom_rows(db: Path) -> dict[str, str]:
    """The raw JSON text of each task's return_value row, as Airflow stored it."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT task_id, CAST(value AS TEXT) FROM xcom WHERE dag_id = ? AND key = 'return_value'",
            (DAG_ID,),
        )
        return dict(rows.fetchall())


def test_dag_test_moves_200mb_through_the_store_and_clear_purges_it(tmp_path: Path) -> None:
    home, dags, store = tmp_path / "home", tmp_path / "dags", tmp_path / "store"
    home.mkdir()
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(DAG_FILE)
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__XCOM_BACKEND": "airflow_genius.xcom.GeniusXComBackend",
            "AIRFLOW__GENIUS__XCOM_PATH": store.as_uri(),
            "GENIUS_XCOM_TEST_RECORDS": str(RECORDS),
        }
    )
    _run([AIRFLOW, "db", "migrate"], env, home)

    done = _run([sys.executable, "-c", DRIVER, str(dags)], env, home)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["state"] == "success", done.stderr[-5000:]

    rows = _xcom_rows(home / "airflow.db")
    assert len(rows["produce"]) < 1024, "Airflow's DB holds only a small reference"
    reference = json.loads(rows["produce"])
    assert is_reference(reference)
    assert reference["size"] > 200_000_000
    assert json.loads(rows["consume"]) == RECORDS, "the downstream task saw every record"
    path = Path(unquote(urlsplit(reference["uri"]).path))
    assert path.is_relative_to(store) and files_under(store) == [path]
    data = path.read_bytes()
    assert len(data) == reference["stored_size"] and hashlib.sha256(data).hexdigest() == reference["sha256"]

    # Re-run the producer in the same DAG run (what clearing it or a retry does): before the task runs,
    # Airflow deletes its old XComs through XCom.delete, which calls the backend's purge.
    _run(
        [AIRFLOW, "tasks", "test", DAG_ID, "produce", result["run_id"]],
        {**env, "GENIUS_XCOM_TEST_MODE": "small"},
        home,
    )
    assert files_under(store) == [], "the offloaded object was purged"
    assert json.loads(_xcom_rows(home / "airflow.db")["produce"]) == {"small": True}
