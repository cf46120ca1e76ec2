"""The outcome spool: a run's final write that the state store could not take, kept durably beside the run.

When a run has finished but its state store stays unavailable for the whole fault budget
(``core/state/faults.py``), the outcome — status, result or error, metrics — is written here, one JSON
file per run key, atomically (temporary file, fsync, rename). It is applied:

* by the next ``genius run`` of the same run with the same work folder (a retry), *before* it runs
  anything: a spooled SUCCESS completes the record and the method is not run again;
* by ``genius state apply-spool --work-dir DIR``, at any time.

A spooled outcome applies only to the try it belongs to, and only while the record is still RUNNING at
that try; if the record has moved on (finished, or a newer try started elsewhere) the file is dropped.

>>> import tempfile
>>> from airflow_genius.core.state import RunKey, Status, open_state
>>> state = open_state("memory://")
>>> key = RunKey("etl", "load", "manual__1")
>>> _ = state.start_run(key, try_number=1)
>>> spool = Spool(tempfile.mkdtemp())
>>> path = spool.put(SpooledOutcome(key, 1, Status.SUCCESS, "memory://", result={"rows": 3}))
>>> spool.apply(state, key).status, state.get_run(key).result
(<Status.SUCCESS: 'SUCCESS'>, {'rows': 3})
>>> spool.pending()
[]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_genius.core.errors import TransitionConflict
from airflow_genius.core.state import RunKey, RunRecord, StateManager, Status

log = logging.getLogger("airflow_genius.spool")

#: Folder under the work folder that holds spooled outcomes.
SPOOL_DIR = "spool"


@dataclass(frozen=True)
class SpooledOutcome:
    """The final write of one try that did not reach the store."""

    key: RunKey
    try_number: int
    status: Status
    #: The state store it belongs to (never with a password: spec URIs cannot hold one).
    state_uri: str
    result: Any = None
    error: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": {
                "dag_id": self.key.dag_id,
                "task_id": self.key.task_id,
                "run_id": self.key.run_id,
                "map_index": self.key.map_index,
            },
            "try_number": self.try_number,
            "status": self.status.value,
            "state_uri": self.state_uri,
            "result": self.result,
            "error": self.error,
            "metrics": self.metrics,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpooledOutcome:
        key = data["key"]
        return cls(
            key=RunKey(key["dag_id"], key["task_id"], key["run_id"], int(key["map_index"])),
            try_number=int(data["try_number"]),
            status=Status(data["status"]),
            state_uri=str(data["state_uri"]),
            result=data.get("result"),
            error=data.get("error"),
            metrics=dict(data.get("metrics") or {}),
            message=data.get("message"),
        )


class Spool:
    """Spooled outcomes in ``folder`` (usually ``<work dir>/spool``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    @classmethod
    def in_work_dir(cls, work_dir: str | os.PathLike[str]) -> Spool:
        return cls(Path(work_dir) / SPOOL_DIR)

    def path_of(self, key: RunKey) -> Path:
        # A digest keeps any run id (slashes, colons, 300 characters) a valid, fixed-size file name.
        digest = hashlib.sha256(json.dumps(key.parts()).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.folder / f"{digest}.json"

    def put(self, outcome: SpooledOutcome) -> Path:
        """Write ``outcome`` durably (atomic replace); returns its file."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path_of(outcome.key)
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(outcome.to_dict(), handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o600)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_dir(self.folder)
        return target

    def get(self, key: RunKey) -> SpooledOutcome | None:
        path = self.path_of(key)
        try:
            return SpooledOutcome.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None

    def pending(self) -> list[SpooledOutcome]:
        """Every spooled outcome, oldest file first."""
        if not self.folder.is_dir():
            return []
        files = sorted(self.folder.glob("[0-9a-f]*.json"), key=lambda p: p.stat().st_mtime)
        return [SpooledOutcome.from_dict(json.loads(p.read_text(encoding="utf-8"))) for p in files]

    def apply(self, state: StateManager, key: RunKey) -> RunRecord | None:
        """Write the spooled outcome of ``key`` to ``state`` and drop the file.

        Returns the record it completed, or None when nothing was spooled or the record had moved on
        (the file is dropped then too). A store fault propagates and keeps the file.
        """
        outcome = self.get(key)
        if outcome is None:
            return None
        record = state.get_run(key)
        if record is None:  # a store that lost the record (restarted without persistence): recreate it
            record = state.start_run(key, try_number=outcome.try_number, info={"restored_from_spool": True})
        completed: RunRecord | None = None
        if record.try_number == outcome.try_number and record.status is Status.RUNNING:
            try:
                completed = state.finish_run(
                    key,
                    outcome.status,
                    try_number=outcome.try_number,
                    result=outcome.result,
                    error=outcome.error,
                    metrics={**outcome.metrics, "spooled": True},
                    message=outcome.message or "applied from the outcome spool",
                )
            except TransitionConflict:  # another process finished it meanwhile
                completed = None
        elif record.try_number == outcome.try_number and record.status.terminal:
            completed = record  # the write had landed before its reply was lost
        else:
            log.warning(
                "dropping the spooled %s of %s try %d: the record is %s",
                outcome.status.value,
                key,
                outcome.try_number,
                f"{record.status.value} at try {record.try_number}",
            )
        self.path_of(key).unlink(missing_ok=True)
        return completed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
