"""Large values are streamed: pushing costs a few MiB, pulling costs about the value itself.

Each measurement runs in a fresh child process whose peak RSS counter is reset right before the call
(``/proc/self/clear_refs``), so the peak is that of the push or the pull alone. The peak is read from
``VmHWM``, not ``getrusage().ru_maxrss``: Linux carries the parent's peak into ``ru_maxrss`` across the
exec of a child, so a child of a big pytest process would report the parent's size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import collections, gc, json, sys

    def status(field):
        with open("/proc/self/status") as lines:
            return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))

    def measure(call):
        gc.collect()
        base = status("VmRSS:")
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM, the peak RSS of this address space
        result = call()
        return result, status("VmHWM:") - base

    from airflow_genius.xcom import GeniusXComBackend as X

    kind, phase = sys.argv[1], sys.argv[2]
    build = {
        "text": lambda: "".join(f"{i:09d},some text of a line\\n" for i in range(3_000_000)),
        "list": lambda: [f"{i:06d}" + "x" * 100_000 for i in range(1_000)],
    }[kind]
    coords = dict(key="k", dag_id="d", run_id="r", task_id=kind, map_index=-1)
    if phase == "push":
        value = build()
        ref, peak = measure(lambda: X.serialize_value(value, **coords))
        print(json.dumps({"ref": ref, "peak": peak, "size": len(json.dumps(value))}))
    else:
        Row = collections.namedtuple("Row", "value")
        ref = json.loads(sys.argv[3])
        value, peak = measure(lambda: X.deserialize_value(Row(ref)))
        assert value == build()
        print(json.dumps({"peak": peak}))
    """
)


def _child(env: dict[str, str], *args: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["text", "list"])
@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_push_and_pull_memory_is_bounded(kind: str, compression: str, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(tmp_path / "home"),
            "AIRFLOW__GENIUS__XCOM_PATH": (tmp_path / "xcom").as_uri(),
            "AIRFLOW__GENIUS__XCOM_COMPRESSION": compression,
        }
    )
    push = _child(env, kind, "push")
    size = push["size"]  # ~100 MB of JSON; in memory the value is about as big
    assert push["peak"] < 0.25 * size, f"push used {push['peak'] / size:.2f}x the value's size"
    pull = _child(env, kind, "pull", json.dumps(push["ref"]))
    assert pull["peak"] < 1.5 * size, f"pull used {pull['peak'] / size:.2f}x the value's size"
