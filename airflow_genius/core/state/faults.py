"""The fault budget of a state store: bounded calls, retries of what is safe to retry, one clear error.

A store blips (a restart, a failover, a dropped connection); the run record must survive it. Every call a
:class:`~airflow_genius.core.state.base.StateManager` makes goes through :func:`call_with_budget`:

* each attempt is bounded by the backend's own timeouts (``call_timeout`` seconds: socket/read timeouts
  on Redis, DynamoDB and S3, a watchdog on PostgreSQL's socket), so a silent endpoint cannot hang a run;
* a *transient* failure (connection refused or reset, the server restarting) is retried with exponential
  backoff until ``seconds`` have passed since the first attempt — every primitive is idempotent or a
  compare-and-set whose lost reply the caller detects (see ``StateManager._write_loop``);
* an attempt that timed out is retried at most ``timeout_retries`` times: a server that accepts and never
  answers fails in about ``call_timeout * (1 + timeout_retries)`` seconds, not after the whole budget;
* anything else (a bad value, a missing table) is not a fault and is raised at once.

When the budget is spent, :class:`StoreUnavailable` says which store and why, in one line. It is never
mistaken for the task's own failure: the runtime spools the outcome instead (``core/spool.py``).

>>> budget = FaultBudget(seconds=1.0, first_delay=0.01)
>>> attempts = []
>>> def flaky():
...     attempts.append(1)
...     if len(attempts) < 3:
...         raise ConnectionError("connection refused")
...     return "ok"
>>> call_with_budget(flaky, budget=budget, store="redis://db:6379/0", transient=lambda e: True)
'ok'
>>> len(attempts)
3
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_genius.core.errors import StateError

T = TypeVar("T")

#: Environment variables that tune the budget (seconds).
BUDGET_ENV = "GENIUS_STATE_FAULT_BUDGET"
CALL_TIMEOUT_ENV = "GENIUS_STATE_CALL_TIMEOUT"


class StoreUnavailable(StateError):
    """The state store did not answer within its fault budget (not the task's failure)."""


@dataclass(frozen=True)
class FaultBudget:
    """How long one store call may keep failing before the store counts as unavailable.

    >>> FaultBudget.from_env({"GENIUS_STATE_FAULT_BUDGET": "90", "GENIUS_STATE_CALL_TIMEOUT": "5"})
    FaultBudget(seconds=90.0, call_timeout=5.0, timeout_retries=1, first_delay=0.1, max_delay=5.0)
    """

    #: Total seconds a call may be retried after transient failures.
    seconds: float = 60.0
    #: Bound on one attempt (connect, request, reply).
    call_timeout: float = 10.0
    #: Attempts that timed out are retried this often at most (a silent endpoint fails fast).
    timeout_retries: int = 1
    first_delay: float = 0.1
    max_delay: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> FaultBudget:
        """The budget from ``GENIUS_STATE_FAULT_BUDGET`` / ``GENIUS_STATE_CALL_TIMEOUT`` (defaults 60/10)."""
        source = os.environ if env is None else env
        return cls(
            seconds=_seconds(source, BUDGET_ENV, cls.seconds, minimum=0.0),
            call_timeout=_seconds(source, CALL_TIMEOUT_ENV, cls.call_timeout, minimum=0.5),
        )


def _seconds(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or value > 86400:
        raise StateError(f"{name}={raw!r} must be a number of seconds between {minimum:g} and 86400")
    return value


def call_with_budget(
    call: Callable[..., T],
    *args: Any,
    budget: FaultBudget,
    store: str | Callable[[], str],
    transient: Callable[[BaseException], bool],
    timed_out: Callable[[BaseException], bool] = lambda exc: False,
    what: str = "call",
    on_retry: Callable[[], None] | None = None,
) -> T:
    """Run ``call(*args)``; retry transient failures with backoff until ``budget.seconds`` have passed.

    ``store`` is the (redacted) name used in the error, or a function giving it; ``on_retry`` runs before each retry (e.g. to drop
    a broken connection). The first attempt costs one ``try``: the clock starts at the first failure.
    """
    try:
        return call(*args)
    except Exception as exc:
        if not transient(exc):
            raise
        failure: BaseException = exc
    started = time.monotonic()
    deadline = started + budget.seconds
    delay = budget.first_delay
    timeouts = 0
    while True:
        slow = timed_out(failure)
        timeouts += slow
        now = time.monotonic()
        if (slow and timeouts > budget.timeout_retries) or now + delay > deadline:
            raise StoreUnavailable(
                f"state store {store if isinstance(store, str) else store()} unavailable: {what} failed for {now - started:.1f}s "
                f"(fault budget {budget.seconds:g}s): {_one_line(failure)}"
            ) from failure
        time.sleep(delay)
        delay = min(delay * 2, budget.max_delay)
        if on_retry is not None:
            on_retry()
        try:
            return call(*args)
        except Exception as exc:
            if not transient(exc):
                raise
            failure = exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
