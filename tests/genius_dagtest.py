"""Run one DAG file with ``dag.test()`` in a child process (fresh AIRFLOW_HOME from the ``airflow_env``
fixture of tests/airflow/conftest.py) and read back what the tests check.

    result, output = dag_test(run_python, env, folder, "genius_batch_pipeline", {"count": 7})
    result["state"], result["tis"][0]["xcom"]
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

# Runs one DAG file with dag.test() in the child and prints one JSON line with what the test checks.
DAG_TEST = textwrap.dedent(
    """
    import importlib.util, json, sys
    from datetime import datetime
    from airflow.sdk import DAG
    path, dag_id, conf = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    spec = importlib.util.spec_from_file_location(dag_id, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = getattr(module, dag_id)
    dag = dag if isinstance(dag, DAG) else dag()
    extra = {"logical_date": datetime.fromisoformat(sys.argv[4])} if len(sys.argv) > 4 else {}
    run = dag.test(run_conf=conf or None, **extra)
    tis = [{"task_id": ti.task_id, "map_index": ti.map_index, "state": str(ti.state), "try": ti.try_number,
            "xcom": ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)}
           for ti in run.get_task_instances()]
    # one write, so a log line from another thread (the OpenLineage adapter's) cannot land inside it
    sys.stdout.write("DAG_TEST_RESULT " + json.dumps({"state": str(run.state), "run_id": run.run_id, "tis": tis}, default=str) + "\\n")
    sys.stdout.flush()
    """
)


def dag_test(
    run_python: Any,
    env: dict[str, str],
    folder: Path,
    dag_id: str,
    conf: dict[str, Any] | None = None,
    *,
    file: str | None = None,
    logical_date: str | None = None,
    timeout: float = 300,
) -> tuple[dict[str, Any], str]:
    """Run ``dag_id`` (a ``@dag`` function or a DAG object in ``folder/<file or dag_id>.py``) with
    ``dag.test()``; the same ``logical_date`` gives the same run id (a second call re-runs that run,
    as a retry would). Returns the result dict and the whole output (the task logs)."""
    env = {**env, "AIRFLOW__CORE__DAGS_FOLDER": str(folder)}
    done = run_python(
        DAG_TEST,
        env,
        args=[
            str(folder / f"{file or dag_id}.py"),
            dag_id,
            json.dumps(conf or {}),
            *([logical_date] if logical_date else []),
        ],
        timeout=timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("DAG_TEST_RESULT ")]
    assert lines, (
        f"dag.test() printed no result\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    )
    # raw_decode: text another thread wrote after the JSON on the same line is not part of it
    result, _ = json.JSONDecoder().raw_decode(lines[-1].removeprefix("DAG_TEST_RESULT "))
    return result, done.stdout + done.stderr
