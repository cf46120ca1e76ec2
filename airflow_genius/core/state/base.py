"""The state model shared by every backend: run records, task state, and the transition rules.

A backend implements a handful of storage primitives (read a record with its version, insert if
absent, replace if the version still matches, and the task-state key/value calls). Everything with
meaning — which transitions are allowed, how history grows, how a lost race is detected — lives once,
here, in :class:`StateManager`.

>>> from airflow_genius.core.state import open_state
>>> state = open_state("memory://")
>>> key = RunKey("etl", "clean", "manual__1")
>>> state.start_run(key, try_number=1).status
<Status.RUNNING: 'RUNNING'>
>>> state.finish_run(key, Status.SUCCESS, try_number=1, result={"rows": 3}).result
{'rows': 3}
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any, NamedTuple

from airflow_genius.core.clock import parse_time, utcnow
from airflow_genius.core.errors import RunNotFound, StateError, TransitionConflict
from airflow_genius.core.state.faults import FaultBudget, call_with_budget
from airflow_genius.core.state.values import check_storable, storable_error

#: How often a read-modify-write is retried when another writer changed the record meanwhile.
MAX_WRITE_ATTEMPTS = 50


class Status(str, Enum):
    """Lifecycle of one run: QUEUED → RUNNING → SUCCESS | FAILED | CANCELLED."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELLED})

#: Moves allowed within one try. A new try (higher try_number) may start from any status.
_SAME_TRY_MOVES: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED, Status.FAILED}),
    Status.RUNNING: frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELLED}),
    Status.SUCCESS: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True, order=True)
class RunKey:
    """Identity of one run record: one per (dag_id, task_id, run_id, map_index); tries share it."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1

    def __post_init__(self) -> None:
        for name in ("dag_id", "task_id", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise StateError(f"run key {name} must be a non-empty string, got {value!r}")
        if not isinstance(self.map_index, int) or isinstance(self.map_index, bool) or self.map_index < -1:
            raise StateError(f"run key map_index must be an integer >= -1, got {self.map_index!r}")

    def parts(self) -> tuple[str, str, str, int]:
        return (self.dag_id, self.task_id, self.run_id, self.map_index)

    def __str__(self) -> str:
        suffix = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id}.{self.task_id}{suffix}@{self.run_id}"


@dataclass(frozen=True, order=True)
class TaskScope:
    """Owner of task state that outlives runs: a spout's cursor, a stream checkpoint, an aggregate."""

    namespace: str
    dag_id: str
    task_id: str

    def __post_init__(self) -> None:
        for name in ("namespace", "dag_id", "task_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise StateError(f"task scope {name} must be a non-empty string, got {value!r}")

    def parts(self) -> tuple[str, str, str]:
        return (self.namespace, self.dag_id, self.task_id)


@dataclass(frozen=True)
class Transition:
    """One entry of a run's append-only history."""

    status: Status
    at: datetime
    try_number: int
    host: str | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "at": _iso(self.at),
            "try_number": self.try_number,
            "host": self.host,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Transition:
        return cls(
            status=Status(data["status"]),
            at=parse_time(data["at"]) or utcnow(),
            try_number=int(data["try_number"]),
            host=data.get("host"),
            message=data.get("message"),
        )


@dataclass(frozen=True)
class RunRecord:
    """Everything known about one run. Immutable: changes produce a new record with ``version + 1``."""

    key: RunKey
    status: Status
    try_number: int
    history: tuple[Transition, ...]
    created_at: datetime
    updated_at: datetime
    heartbeat_at: datetime | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    window: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``genius state`` prints and document stores keep)."""
        return {
            "dag_id": self.key.dag_id,
            "task_id": self.key.task_id,
            "run_id": self.key.run_id,
            "map_index": self.key.map_index,
            "status": self.status.value,
            "try_number": self.try_number,
            "history": [entry.to_dict() for entry in self.history],
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "heartbeat_at": _iso(self.heartbeat_at),
            "result": self.result,
            "error": self.error,
            "metrics": self.metrics,
            "window": self.window,
            "info": self.info,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        return cls(
            key=RunKey(data["dag_id"], data["task_id"], data["run_id"], int(data["map_index"])),
            status=Status(data["status"]),
            try_number=int(data["try_number"]),
            history=tuple(Transition.from_dict(item) for item in data.get("history") or ()),
            created_at=parse_time(data["created_at"]) or utcnow(),
            updated_at=parse_time(data["updated_at"]) or utcnow(),
            heartbeat_at=parse_time(data.get("heartbeat_at")),
            result=data.get("result"),
            error=data.get("error"),
            metrics=dict(data.get("metrics") or {}),
            window=data.get("window"),
            info=dict(data.get("info") or {}),
            version=int(data.get("version", 1)),
        )

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from the last RUNNING entry to the terminal entry that followed it."""
        started = next((e.at for e in reversed(self.history) if e.status is Status.RUNNING), None)
        if started is None or not self.status.terminal:
            return None
        return (self.history[-1].at - started).total_seconds()


class _MoveData(NamedTuple):
    """What a status move writes besides the status: its history message, the try's outputs, info."""

    message: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    info: Mapping[str, Any] | None = None


def allowed(record: RunRecord, to: Status, try_number: int) -> bool:
    """Whether ``record`` may move to ``to`` for the given try.

    >>> r = RunRecord(RunKey("d", "t", "r"), Status.FAILED, 1, (), utcnow(), utcnow())
    >>> allowed(r, Status.RUNNING, 1), allowed(r, Status.RUNNING, 2)
    (False, True)
    """
    if try_number > record.try_number:
        return to in (Status.QUEUED, Status.RUNNING)
    if try_number < record.try_number:
        return False
    return to in _SAME_TRY_MOVES[record.status]


class StateManager(ABC):
    """Run records and task state on one backend.

    Subclasses implement the ``_``-prefixed storage primitives only. Every status change is a
    compare-and-set on the record's ``version``: when two processes race the same transition, exactly
    one succeeds and the other gets :class:`TransitionConflict`.

    Usage::

        state = open_state("sqlite:///tmp/genius.db")
        key = RunKey("etl", "clean", "manual__1")
        state.queue_run(key, try_number=1, info={"task": "pkg.mod:Clean"})
        state.start_run(key, try_number=1)
        state.finish_run(key, Status.FAILED, try_number=1, error={"type": "ValueError", ...})
        state.set_state(TaskScope("default", "etl", "clean"), "cursor", 42)
    """

    def __init__(self, *, budget: FaultBudget | None = None) -> None:
        self.host = socket.gethostname()
        #: Fault budget of every store call (``core/state/faults.py``); ``GENIUS_STATE_*`` by default.
        self.budget = budget if budget is not None else FaultBudget.from_env()

    @classmethod
    @abstractmethod
    def from_uri(cls, uri: str, env: Mapping[str, str] | None = None) -> StateManager:
        """Open the backend described by ``uri``; secrets are read from ``env``, never the URI."""

    # ---------------------------------------------------------------- run records
    def get_run(self, key: RunKey) -> RunRecord | None:
        """The current record of ``key``, or ``None``."""
        return self._call("read", self._read, key)

    def require_run(self, key: RunKey) -> RunRecord:
        """Like :meth:`get_run` but raises :class:`RunNotFound`."""
        record = self.get_run(key)
        if record is None:
            raise RunNotFound(f"no run record for {key}")
        return record

    def queue_run(
        self, key: RunKey, *, try_number: int = 1, info: Mapping[str, Any] | None = None
    ) -> RunRecord:
        """Create the record in QUEUED, or queue a new try of an existing one.

        Queuing the same try again is a no-op that returns the current record (so a launcher that
        retries its own call does not fail). Queuing a try that already started or finished, or an
        older try than the record's, raises :class:`TransitionConflict`.
        """
        record = self.get_run(key)
        if record is None:
            created = self._new_record(key, Status.QUEUED, try_number, info)
            if self._call("insert", self._insert, created):
                return created

        def change(current: RunRecord) -> RunRecord | None:
            if current.try_number == try_number and current.status is Status.QUEUED:
                return None
            # Without this check a same-try re-queue would pull a RUNNING or finished try back to
            # QUEUED (letting a second runner start it), and an older try would overwrite a newer one.
            if not allowed(current, Status.QUEUED, try_number):
                raise TransitionConflict(
                    f"{key}: cannot queue try {try_number}; "
                    f"record is {current.status.value} at try {current.try_number}"
                )
            return self._moved(current, Status.QUEUED, try_number, _MoveData(info=info))

        return self._write_loop(key, change)

    def start_run(
        self, key: RunKey, *, try_number: int = 1, info: Mapping[str, Any] | None = None
    ) -> RunRecord:
        """Move the run to RUNNING for ``try_number`` (creating it if absent).

        Raises :class:`TransitionConflict` when this try already runs elsewhere or is finished.
        """
        if self.get_run(key) is None:
            # Insert-if-absent: retrying it after a lost reply is harmless.
            self._call("insert", self._insert, self._new_record(key, Status.QUEUED, try_number, info))
        return self.transition(key, Status.RUNNING, try_number=try_number, info=info)

    def finish_run(
        self,
        key: RunKey,
        status: Status,
        *,
        try_number: int,
        result: Any = None,
        error: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        message: str | None = None,
        attempt: int | None = None,
    ) -> RunRecord:
        """Record the end of a try: SUCCESS with its result, FAILED with its error, or CANCELLED.

        ``attempt``: the attempt of the try that ends (see :meth:`start_attempt`); a later attempt that
        took the try over makes this write a :class:`TransitionConflict`. None: no such check.
        """
        if not status.terminal:
            raise StateError(f"finish_run needs a terminal status, got {status.value}")
        return self.transition(
            key,
            status,
            try_number=try_number,
            result=result,
            # An error is always recorded, whatever characters its text holds (escaped, never refused).
            error=storable_error(error) if error is not None else None,
            metrics=metrics,
            message=message,
            attempt=attempt,
        )

    def start_attempt(
        self, key: RunKey, *, try_number: int, attempt: int, info: Mapping[str, Any] | None = None
    ) -> RunRecord:
        """Move the run to RUNNING for attempt ``attempt`` (>= 1) of try ``try_number``: the platform
        started the same try again (a Slurm job requeued, preempted or restarted after a node failure).

        Attempt ``attempt`` takes over a record of the same try that an earlier attempt left CANCELLED
        (the platform stopped it to requeue it) or RUNNING (its node died), in one compare-and-set; a
        record of an earlier try, or still QUEUED, starts as :meth:`start_run` would. The record's
        ``info["attempt"]`` is the attempt that owns the try and ``info["attempts"]`` lists every attempt
        (``attempt``, ``host``, ``started_at``, ``ended_at``, ``status``, ``reason``); each entry is
        closed when its attempt ends or is taken over.

        Raises :class:`TransitionConflict` when the try already ended SUCCESS or FAILED, or when this
        attempt (or a later one) already owns it.

        >>> from airflow_genius.core.state import open_state
        >>> state = open_state("memory://")
        >>> key = RunKey("etl", "clean", "manual__1")
        >>> _ = state.start_run(key, try_number=1)
        >>> _ = state.finish_run(key, Status.CANCELLED, try_number=1, message="received SIGTERM")
        >>> record = state.start_attempt(key, try_number=1, attempt=1)
        >>> [(a["attempt"], a["status"]) for a in record.info["attempts"]], record.status.value
        ([(0, 'CANCELLED'), (1, 'RUNNING')], 'RUNNING')
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise StateError(f"an attempt number must be an integer >= 1, got {attempt!r}")
        if self.get_run(key) is None:
            self._call("insert", self._insert, self._new_record(key, Status.QUEUED, try_number, info))

        def change(current: RunRecord) -> RunRecord:
            now = utcnow()
            entry = {"attempt": attempt, "host": self.host, "started_at": _iso(now), "ended_at": None,
                     "status": Status.RUNNING.value, "reason": None}  # fmt: skip
            if allowed(current, Status.RUNNING, try_number):  # a new try, or this try still QUEUED
                attempts = {"attempt": attempt, "attempts": [entry]}
                return self._moved(
                    current, Status.RUNNING, try_number, _MoveData(info={**(info or {}), **attempts})
                )
            owner = current_attempt(current)
            if (
                current.try_number != try_number
                or current.status not in (Status.RUNNING, Status.CANCELLED)
                or owner >= attempt
            ):
                raise TransitionConflict(
                    f"{key}: attempt {attempt} of try {try_number} cannot start; record is "
                    f"{current.status.value} at try {current.try_number}, attempt {owner}"
                )
            # An attempt that never recorded its end (its node died) ends with its last heartbeat.
            earlier = _close_attempt(current, current.status, at=current.heartbeat_at or now)
            message = f"attempt {attempt} takes over from attempt {owner} ({earlier[-1]['status']})"
            takeover = {"attempt": attempt, "attempts": [*earlier, entry]}
            return replace(
                current,
                status=Status.RUNNING,
                history=(*current.history, Transition(Status.RUNNING, now, try_number, self.host, message)),
                updated_at=now,
                heartbeat_at=now,
                result=None,
                error=None,
                info={**current.info, **(info or {}), **takeover},
                version=current.version + 1,
            )

        return self._write_loop(key, change)

    def transition(
        self,
        key: RunKey,
        to: Status,
        *,
        try_number: int,
        message: str | None = None,
        result: Any = None,
        error: dict[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        attempt: int | None = None,
    ) -> RunRecord:
        """Atomically move ``key`` to ``to``; :class:`TransitionConflict` if not allowed (now), or if
        ``attempt`` is given and another attempt owns the try (see :meth:`start_attempt`)."""
        check_storable(result, "result")
        check_storable(metrics, "metrics")
        check_storable(info, "info")

        data = _MoveData(message, result, error, metrics, info)

        def change(current: RunRecord) -> RunRecord:
            if not allowed(current, to, try_number):
                raise TransitionConflict(
                    f"{key}: cannot move try {try_number} to {to.value}; "
                    f"record is {current.status.value} at try {current.try_number}"
                )
            if (
                attempt is not None
                and current.try_number == try_number
                and current_attempt(current) != attempt
            ):
                raise TransitionConflict(
                    f"{key}: attempt {attempt} of try {try_number} cannot move to {to.value}; "
                    f"attempt {current_attempt(current)} took the try over"
                )
            return self._moved(current, to, try_number, data)

        return self._write_loop(key, change)

    def heartbeat(self, key: RunKey, *, try_number: int | None = None) -> RunRecord | None:
        """Stamp ``heartbeat_at`` while the given try is RUNNING; returns None if it no longer is."""

        def change(current: RunRecord) -> RunRecord | None:
            if current.status is not Status.RUNNING:
                return None
            if try_number is not None and current.try_number != try_number:
                return None
            now = utcnow()
            return replace(current, heartbeat_at=now, updated_at=now, version=current.version + 1)

        return self._write_loop(key, change, none_means_unchanged=False)

    def update_run(
        self,
        key: RunKey,
        *,
        metrics: Mapping[str, Any] | None = None,
        window: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Merge ``metrics``/``info`` and set ``window`` without changing the status."""
        check_storable(metrics, "metrics")
        check_storable(window, "window")
        check_storable(info, "info")

        def change(current: RunRecord) -> RunRecord:
            return replace(
                current,
                metrics={**current.metrics, **(metrics or {})},
                info={**current.info, **(info or {})},
                window=dict(window) if window is not None else current.window,
                updated_at=utcnow(),
                version=current.version + 1,
            )

        return self._write_loop(key, change)

    def list_runs(
        self,
        *,
        dag_id: str | None = None,
        task_id: str | None = None,
        status: Status | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Records filtered by DAG/task/status, most recently updated first (none for ``limit <= 0``)."""
        if limit <= 0:
            return []
        return self._call(
            "list", lambda: self._list(dag_id=dag_id, task_id=task_id, status=status, limit=limit)
        )

    def delete_run(self, key: RunKey) -> bool:
        """Delete a record; True if it existed."""
        return self._call("delete", self._delete, key)

    # ---------------------------------------------------------------- task state
    def get_state(self, scope: TaskScope, key: str, default: Any = None) -> Any:
        """Value stored under ``key`` for ``scope``, or ``default``."""
        found, value = self._call("state get", self._state_get, scope, _state_key(key))
        return value if found else default

    def set_state(self, scope: TaskScope, key: str, value: Any) -> None:
        """Store a JSON-serialisable ``value`` under ``key`` for ``scope``."""
        check_storable(value, f"task state {key!r}")
        self._call("state set", self._state_set, scope, _state_key(key), value)

    def delete_state(self, scope: TaskScope, key: str) -> bool:
        """Remove ``key``; True if it existed."""
        return self._call("state delete", self._state_delete, scope, _state_key(key))

    def list_state(self, scope: TaskScope) -> dict[str, Any]:
        """All keys and values of ``scope``."""
        return self._call("state list", self._state_list, scope)

    def compare_and_set_state(self, scope: TaskScope, key: str, expected: Any, value: Any) -> bool:
        """Set ``key`` to ``value`` only if it currently equals ``expected`` (``None``: absent).

        Used for checkpoints that two processes must not both advance.
        """
        name = _state_key(key)
        check_storable(value, f"task state {key!r}")
        retried = False

        def attempt() -> bool:
            nonlocal retried
            if retried and self._state_get(scope, name) == (True, value):
                return True  # our write landed before its reply was lost
            retried = True
            return self._state_cas(scope, name, expected, value)

        return self._call("state compare-and-set", attempt)

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:  # noqa: B027 - optional hook for backends holding connections
        """Release connections. Safe to call twice."""

    def __enter__(self) -> StateManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- helpers shared by backends
    def _new_record(
        self, key: RunKey, status: Status, try_number: int, info: Mapping[str, Any] | None
    ) -> RunRecord:
        now = utcnow()
        return RunRecord(
            key=key,
            status=status,
            try_number=try_number,
            history=(Transition(status, now, try_number, self.host),),
            created_at=now,
            updated_at=now,
            info=dict(info or {}),
            version=1,
        )

    def _moved(self, current: RunRecord, to: Status, try_number: int, data: _MoveData) -> RunRecord:
        now = utcnow()
        new_try = try_number > current.try_number
        info = {**current.info, **(data.info or {})}
        if new_try:  # attempts describe one try: a new one starts without them unless it brings its own
            for name in ("attempt", "attempts"):
                if name not in (data.info or {}):
                    info.pop(name, None)
        elif to.terminal and "attempts" in info:
            info["attempts"] = _close_attempt(replace(current, info=info), to, at=now, reason=data.message)
        return replace(
            current,
            status=to,
            try_number=try_number,
            history=(*current.history, Transition(to, now, try_number, self.host, data.message)),
            updated_at=now,
            heartbeat_at=now if to is Status.RUNNING else current.heartbeat_at,
            # A new try starts clean; within a try the terminal write sets result/error.
            result=data.result if (to.terminal or new_try) else current.result,
            error=data.error if (to.terminal or new_try) else current.error,
            metrics={**({} if new_try else current.metrics), **(data.metrics or {})},
            info=info,
            version=current.version + 1,
        )

    def _write_loop(self, key: RunKey, change: Any, *, none_means_unchanged: bool = True) -> Any:
        """Read, apply ``change``, compare-and-set; retry when another writer got in between."""
        for _ in range(MAX_WRITE_ATTEMPTS):
            current = self.get_run(key)
            if current is None:
                raise RunNotFound(f"no run record for {key}")
            updated = change(current)
            if updated is None:
                return current if none_means_unchanged else None
            if self._call("write", self._replace_once(updated, current.version)):
                return updated
        raise TransitionConflict(f"{key}: gave up after {MAX_WRITE_ATTEMPTS} concurrent updates")

    def _replace_once(self, updated: RunRecord, expected_version: int) -> Callable[[], bool]:
        """The compare-and-set of ``updated``, safe to retry after a fault.

        A replace whose reply was lost may have landed: a retry first looks whether the stored record is
        our own write (same version, timestamp and history), which counts as done, not as a lost race.
        """
        attempts = 0

        def replace() -> bool:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                stored = self._read(updated.key)
                if stored is not None and _same_write(stored, updated):
                    return True
            return self._replace(updated, expected_version)

        return replace

    # ---------------------------------------------------------------- faults
    def _call(self, what: str, primitive: Callable[..., Any], *args: Any) -> Any:
        """Run one storage primitive within the fault budget (``core/state/faults.py``).

        What the store refuses for good (see :meth:`_refusal`) is raised at once as a :class:`StateError`
        naming the store; the budget is for outages, which waiting can fix.
        """
        try:
            return call_with_budget(
                primitive,
                *args,
                budget=self.budget,
                store=self.store_label,  # named only when it fails: redacting costs more than a call
                transient=self._is_transient,
                timed_out=self._is_timeout,
                what=what,
                on_retry=self._reset_connection,
            )
        except Exception as exc:
            reason = self._refusal(exc)
            if reason is None:
                raise
            raise StateError(f"state store {self.store_label()} refused {what}: {reason}") from exc

    def store_label(self) -> str:
        """How errors name this store (redacted URI or table)."""
        return type(self).__name__

    def _is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a store fault worth retrying (connection lost, server restarting)."""
        return False

    def _refusal(self, exc: BaseException) -> str | None:
        """Why ``exc`` is a final no from the store (bad credentials, no permission, an invalid request).

        None for anything else. A refusal must not be transient: waiting does not fix a wrong password.
        """
        return None

    def _is_timeout(self, exc: BaseException) -> bool:
        """Whether ``exc`` means an attempt got no answer in time (retried once only)."""
        return False

    def _reset_connection(self) -> None:  # noqa: B027 - optional hook
        """Drop a connection a fault may have broken, before the next attempt."""

    # ---------------------------------------------------------------- backend primitives
    @abstractmethod
    def _read(self, key: RunKey) -> RunRecord | None:
        """Return the stored record (with its stored ``version``) or None."""

    @abstractmethod
    def _insert(self, record: RunRecord) -> bool:
        """Store ``record`` if no record exists for its key; False if one does."""

    @abstractmethod
    def _replace(self, record: RunRecord, expected_version: int) -> bool:
        """Store ``record`` only if the stored version still equals ``expected_version``."""

    @abstractmethod
    def _list(
        self, *, dag_id: str | None, task_id: str | None, status: Status | None, limit: int
    ) -> list[RunRecord]:
        """Filtered records, most recently updated first; ``limit`` is at least 1."""

    @abstractmethod
    def _delete(self, key: RunKey) -> bool: ...

    @abstractmethod
    def _state_get(self, scope: TaskScope, key: str) -> tuple[bool, Any]: ...

    @abstractmethod
    def _state_set(self, scope: TaskScope, key: str, value: Any) -> None: ...

    @abstractmethod
    def _state_delete(self, scope: TaskScope, key: str) -> bool: ...

    @abstractmethod
    def _state_list(self, scope: TaskScope) -> dict[str, Any]: ...

    @abstractmethod
    def _state_cas(self, scope: TaskScope, key: str, expected: Any, value: Any) -> bool: ...


def current_attempt(record: RunRecord) -> int:
    """The attempt that owns the record's try (0 unless a platform restarted it: :meth:`StateManager.start_attempt`).

    >>> record = RunRecord(RunKey("d", "t", "r"), Status.RUNNING, 1, (), utcnow(), utcnow(), info={"attempt": 2})
    >>> current_attempt(record)
    2
    """
    value = record.info.get("attempt", 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _close_attempt(
    record: RunRecord, status: Status, *, at: datetime, reason: str | None = None
) -> list[dict[str, Any]]:
    """``record.info["attempts"]`` with the owning attempt's entry ended: as the record's own terminal
    entry says when it has one, else ``status`` at ``at`` — RUNNING there means the attempt never recorded
    its end and is taken over (INTERRUPTED). An attempt that ran before attempts were counted (attempt 0)
    gets its entry from the history."""
    attempts = [dict(entry) for entry in record.info.get("attempts") or () if isinstance(entry, Mapping)]
    owner = current_attempt(record)
    if not attempts or attempts[-1].get("attempt") != owner:
        started = next(
            (
                e
                for e in reversed(record.history)
                if e.status is Status.RUNNING and e.try_number == record.try_number
            ),
            None,
        )
        attempts.append({"attempt": owner, "host": started.host if started else None,
                         "started_at": _iso(started.at) if started else None, "ended_at": None,
                         "status": Status.RUNNING.value, "reason": None})  # fmt: skip
    last = attempts[-1]
    if last.get("ended_at") is None:
        ending = record.history[-1] if record.status.terminal and record.history else None
        if ending is not None:  # it recorded its own end (CANCELLED by the platform's SIGTERM)
            last.update(ended_at=_iso(ending.at), status=ending.status.value, reason=ending.message)
        elif status is Status.RUNNING:  # it never recorded its end: its node died, or it was killed
            last.update(
                ended_at=_iso(at), status="INTERRUPTED", reason=reason or "no end recorded; last heartbeat"
            )
        else:
            last.update(ended_at=_iso(at), status=status.value, reason=reason)
    return attempts


def _same_write(stored: RunRecord, sent: RunRecord) -> bool:
    return (
        stored.version == sent.version
        and stored.updated_at == sent.updated_at
        and stored.status is sent.status
        and len(stored.history) == len(sent.history)
    )


def _state_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise StateError(f"task state key must be a non-empty string, got {key!r}")
    return key
