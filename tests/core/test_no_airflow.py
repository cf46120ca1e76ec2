"""The core runs where Airflow is not installed: lean images and Slurm nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from test_import_layers import core_modules, imports_of

from airflow_genius.core import build_spec

TESTS_DIR = Path(__file__).resolve().parents[1]

# Makes `import airflow` fail in the child exactly as on a machine without Airflow, even where the
# test environment has Airflow installed.
BLOCK_AIRFLOW = textwrap.dedent(
    """
    import sys

    class NoAirflow:
        def find_spec(self, name, path=None, target=None):
            if name == "airflow" or name.startswith("airflow."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NoAirflow())
    try:
        import airflow  # noqa: F401
    except ModuleNotFoundError:
        pass
    else:
        sys.exit("airflow is still importable")
    """
)


def test_core_source_never_imports_airflow() -> None:
    """Every import of the core's source (function-level and ``import_module("…")`` ones too)."""
    offenders = [
        f"{found.module}:{found.line}: {found.target}"
        for module, path in core_modules().items()
        for found in imports_of(module, path)
        if found.target == "airflow" or found.target.startswith("airflow.")
    ]
    assert offenders == []


def test_genius_run_works_without_airflow(tmp_path: Path) -> None:
    state_uri = f"sqlite:///{tmp_path}/state.db"
    spec = build_spec(
        "airflow_genius.examples.tasks:QuoteSpout",
        "fetch",
        kind="spout",
        kwargs={"count": 3},
        output_uri=str(tmp_path / "out"),
        dag_id="lean",
        task_id="fetch",
        run_id="r1",
        state_uri=state_uri,
    )
    (tmp_path / "spec.json").write_text(spec.to_json())
    child = BLOCK_AIRFLOW + textwrap.dedent(
        f"""
        import airflow_genius.core
        from airflow_genius.core.cli import main
        code = main(["run", "--spec", {str(tmp_path / "spec.json")!r}])
        leaked = sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow."))
        assert not leaked, leaked
        from airflow_genius.core import open_state, RunKey
        record = open_state({state_uri!r}).require_run(RunKey("lean", "fetch", "r1"))
        print(record.status.value, record.result["records"])
        sys.exit(code)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SUCCESS", "3"]
