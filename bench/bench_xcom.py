"""GeniusXComBackend vs XComObjectStorageBackend (common-io): push + pull of a large value.

    python bench/bench_xcom.py [--mb 200] [--repeats 3] [--payloads records,string] [--compression none,gzip]

Both backends write to the same local folder with the same threshold (64 KiB), with compression off for
both, then on for both (``gzip``: ours at its default level 1, the anchor through fsspec's gzip at
level 9 — each backend's own default; ``--level`` changes ours). Payloads, about ``--mb`` MB of compact JSON:

* ``records``: a list of dict records (ints, floats, bools, short strings, a small list, some non-ASCII),
* ``string``: one big str (CSV-like text lines).

Every push and every pull runs in a **fresh subprocess**: the child builds the value (push) or nothing
(pull), records its RSS as baseline, resets its peak RSS counter (``/proc/self/clear_refs``), runs the
backend's ``serialize_value`` (push) or ``deserialize_value`` (pull, given the reference as it comes back
from the database, i.e. through JSON), and reports ``resource.getrusage().ru_maxrss`` minus the baseline.
Pull also reports the memory the returned value keeps by itself (RSS after the pull minus baseline), so
"pull overhead" = peak - that = what the backend costs beyond the value it must return. Backends run
interleaved, ``--repeats`` times; medians are reported (the machine is noisy: read the ratios).

Goals: total time ours/anchor ≤ 1.0x; peak RSS over baseline ≤ 1.5x the payload size.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import namedtuple
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

THRESHOLD = 65536
TIME_GOAL = 1.0
RSS_GOAL = 1.5
BACKENDS = ("genius", "anchor")
COORDS = {
    "key": "return_value",
    "dag_id": "bench",
    "run_id": "manual__bench",
    "task_id": "push",
    "map_index": -1,
}
Wrapper = namedtuple("Wrapper", "value")


# --------------------------------------------------------------------------------------------- payloads
def _record(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "user": f"user_{i:08d}",
        "email": f"user{i}@example.com",
        "score": round(i * 0.37, 2),
        "active": i % 3 == 0,
        "tags": ["alpha", "beta", f"t{i % 97}"],
        "city": "Zürich" if i % 5 == 0 else "Berlin",
    }


def _records_count(mb: float) -> int:
    sample = json.dumps([_record(i) for i in range(1_000_000, 1_001_000)], separators=(",", ":"))
    return int(mb * 1_000_000 / (len(sample) / 1000))


def build_payload(kind: str, mb: float) -> Any:
    """A deterministic value of about ``mb`` MB of compact JSON."""
    if kind == "records":
        return [_record(i) for i in range(_records_count(mb))]
    if kind == "string":
        line = "{:09d},user_{:08d},{:.2f},{}\n"
        n = int(mb * 1_000_000 / 40)
        return "".join(line.format(i, i * 7, i * 0.37, "yes" if i % 3 else "no") for i in range(n))
    raise ValueError(kind)


# ------------------------------------------------------------------------------------------------ child
def _status(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _rss() -> int:
    return _status("VmRSS:")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:  # resets VmHWM and ru_maxrss (Linux >= 4.0)
        handle.write("5")


def _peak() -> int:
    # ru_maxrss is max(this address space's peak, a peak carried over exec from the parent process);
    # VmHWM is this address space's alone. They agree here (the parent is small); take the stricter one.
    return max(_status("VmHWM:"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _backend(name: str) -> Any:
    if name == "genius":
        from airflow_genius.xcom import GeniusXComBackend

        return GeniusXComBackend
    from airflow.providers.common.io.xcom.backend import XComObjectStorageBackend

    return XComObjectStorageBackend


def child(args: argparse.Namespace) -> None:
    cls = _backend(args.backend)
    if args.phase == "size":
        value = build_payload(args.payload, args.mb)
        print(json.dumps({"json_bytes": len(json.dumps(value, separators=(",", ":")))}))
        return
    if args.phase == "push":
        value = build_payload(args.payload, args.mb)
        gc.collect()
        base = _rss()
        _reset_peak()
        start = time.perf_counter()
        ref = cls.serialize_value(value, **COORDS)
        seconds = time.perf_counter() - start
        peak = _peak() - base
        ref = json.loads(json.dumps(ref))  # what the metadata DB hands back
        if len(json.dumps(ref)) > 2048:
            raise AssertionError(f"{args.backend}: the XCom row is not a small reference")
        print(json.dumps({"seconds": seconds, "peak": peak, "ref": ref}))
        return
    ref = json.loads(args.ref)
    gc.collect()
    base = _rss()
    _reset_peak()
    start = time.perf_counter()
    value = cls.deserialize_value(Wrapper(ref))
    seconds = time.perf_counter() - start
    peak = _peak() - base
    gc.collect()
    kept = _rss() - base
    ok = value == build_payload(args.payload, args.mb)
    cls.purge(Wrapper(ref))
    print(json.dumps({"seconds": seconds, "peak": peak, "kept": kept, "ok": ok}))


# ----------------------------------------------------------------------------------------------- parent
def _env(workdir: Path, compression: str, level: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(workdir / "home"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__GENIUS__XCOM_PATH": (workdir / "store" / "genius").as_uri(),
            "AIRFLOW__GENIUS__XCOM_THRESHOLD_BYTES": str(THRESHOLD),
            "AIRFLOW__GENIUS__XCOM_COMPRESSION": compression,
            "AIRFLOW__GENIUS__XCOM_COMPRESSION_LEVEL": str(level),
            "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_PATH": (workdir / "store" / "anchor").as_uri(),
            "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_THRESHOLD": str(THRESHOLD),
            "AIRFLOW__COMMON_IO__XCOM_OBJECTSTORAGE_COMPRESSION": ""
            if compression == "none"
            else compression,
        }
    )
    return env


def _run_child(env: dict[str, str], *argv: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *argv], env=env, capture_output=True, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        errors = [line for line in proc.stderr.splitlines() if not line.startswith(" ")]  # drop config dumps
        raise RuntimeError(
            f"child {argv} failed ({proc.returncode}):\n{proc.stdout}\n" + "\n".join(errors[-40:])
        )
    return json.loads(lines[-1])


def _stored_bytes(workdir: Path, backend: str) -> int:
    return sum(p.stat().st_size for p in (workdir / "store" / backend).rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--payloads", default="records,string")
    parser.add_argument("--compression", default="none,gzip")
    parser.add_argument("--level", type=int, default=1, help="our gzip level (the anchor's is fixed at 9)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("size", "push", "pull"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--payload", help=argparse.SUPPRESS)
    parser.add_argument("--ref", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    mb = args.mb
    print(
        f"payload ~{mb:g} MB of compact JSON, threshold {THRESHOLD} B, {args.repeats} interleaved repeats, "
        "medians; peaks are RSS over the child's baseline, in multiples of the payload's JSON size P"
    )
    header = (
        f"{'payload':8} {'compr':5} {'backend':7} {'push s':>7} {'pull s':>7} {'total s':>8} "
        f"{'stored MB':>9} {'push pk/P':>9} {'pull pk/P':>9} {'value/P':>8} {'pull ovh/P':>10}"
    )
    summary: list[str] = []
    verdicts: list[bool] = []
    for payload in args.payloads.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-xcom-") as tmp:
            workdir = Path(tmp)
            size = _run_child(
                _env(workdir, "none", args.level),
                "--phase",
                "size",
                "--backend",
                "genius",
                "--payload",
                payload,
                "--mb",
                str(mb),
            )["json_bytes"]
            for compression in args.compression.split(","):
                env = _env(workdir, compression, args.level)
                results: dict[str, list[dict[str, Any]]] = {b: [] for b in BACKENDS}
                for repeat in range(args.repeats):
                    order = BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]
                    for backend in order:
                        common = ("--backend", backend, "--payload", payload, "--mb", str(mb))
                        push = _run_child(env, "--phase", "push", *common)
                        stored = _stored_bytes(workdir, backend)
                        pull = _run_child(env, "--phase", "pull", *common, "--ref", json.dumps(push["ref"]))
                        if not pull["ok"]:
                            raise AssertionError(f"{backend} returned a different value")
                        results[backend].append({"push": push, "pull": pull, "stored": stored})
                        shutil.rmtree(workdir / "store" / backend, ignore_errors=True)
                print()
                print(header)
                med: dict[str, dict[str, float]] = {}
                for backend in BACKENDS:
                    runs = results[backend]
                    m = {
                        "push": statistics.median(r["push"]["seconds"] for r in runs),
                        "pull": statistics.median(r["pull"]["seconds"] for r in runs),
                        "total": statistics.median(r["push"]["seconds"] + r["pull"]["seconds"] for r in runs),
                        "push_pk": statistics.median(r["push"]["peak"] for r in runs) / size,
                        "pull_pk": statistics.median(r["pull"]["peak"] for r in runs) / size,
                        "kept": statistics.median(r["pull"]["kept"] for r in runs) / size,
                        "ovh": statistics.median(r["pull"]["peak"] - r["pull"]["kept"] for r in runs) / size,
                        "stored": statistics.median(r["stored"] for r in runs) / 1e6,
                    }
                    med[backend] = m
                    print(
                        f"{payload:8} {compression:5} {backend:7} {m['push']:7.2f} {m['pull']:7.2f} "
                        f"{m['total']:8.2f} {m['stored']:9.1f} {m['push_pk']:9.2f} {m['pull_pk']:9.2f} "
                        f"{m['kept']:8.2f} {m['ovh']:10.2f}"
                    )
                ours, anchor = med["genius"], med["anchor"]
                ratio = ours["total"] / anchor["total"]
                peak = max(ours["push_pk"], ours["pull_pk"])
                net = max(ours["push_pk"], ours["ovh"])
                time_ok = ratio <= TIME_GOAL
                rss_ok = peak <= RSS_GOAL
                net_ok = net <= RSS_GOAL
                verdicts.append(time_ok and net_ok)
                summary.append(
                    f"{payload:8} {compression:5} P={size / 1e6:6.1f} MB  time ours/anchor "
                    f"{ratio:5.2f}x ({'met' if time_ok else 'MISSED'})  "
                    f"peak {peak:4.2f}xP incl. the returned value ({'met' if rss_ok else 'missed'}; "
                    f"anchor {max(anchor['push_pk'], anchor['pull_pk']):4.2f}xP)  "
                    f"net of it {net:4.2f}xP ({'met' if net_ok else 'MISSED'}; "
                    f"anchor {max(anchor['push_pk'], anchor['ovh']):4.2f}xP)"
                )
    print()
    print(f"goals: time <= {TIME_GOAL}x of XComObjectStorageBackend, peak RSS <= {RSS_GOAL}x payload")
    for line in summary:
        print(line)
    print("verdict:", "all goals met" if all(verdicts) else "some goal missed (see above)")


if __name__ == "__main__":
    main()
