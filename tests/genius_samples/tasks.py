"""Sample tasks for the runtime and CLI tests."""

from __future__ import annotations

import os
import time
from typing import Any

from airflow_genius.core import Bolt, Spout, Task


class Adder(Task):
    """Adds numbers."""

    def add(self, a: int, b: int = 0) -> int:
        """Return a + b."""
        self.log_metric("calls", 1)
        return a + b

    def counter(self) -> int:
        """Increment a counter kept in task state."""
        assert self.state is not None
        value = int(self.state.get("n", 0)) + 1
        self.state.set("n", value)
        return value


class Exploding(Task):
    """Always fails."""

    def run(self, message: str = "kaboom") -> None:
        raise ValueError(message)

    def unserialisable(self) -> Any:
        return {1, 2, 3}

    def sleep(self, seconds: float) -> str:
        """Sleep (to be cancelled by a signal)."""
        with open(os.environ["GENIUS_TEST_READY_FILE"], "w") as handle:
            handle.write("ready")
        time.sleep(seconds)
        return "woke up"


class Copier(Bolt):
    """Copies every input file to the output, upper-cased."""

    def copy(self) -> dict[str, int]:
        assert self.input is not None and self.output is not None
        names = self.input.files()
        for name in names:
            self.output.save(self.input.read_text(name).upper(), name)
        return {"files": len(names)}

    def escape(self, filename: str) -> None:
        """Try to write outside the output folder."""
        assert self.output is not None
        self.output.save("x", filename)


class Lines(Spout):
    """Writes numbered lines."""

    def emit(self, n: int) -> int:
        assert self.output is not None
        self.output.save("".join(f"line {i}\n" for i in range(n)), "lines.txt")
        return n


class BadInit(Task):
    """Defines __init__ without the genius keywords."""

    def __init__(self) -> None:  # wrong on purpose
        super().__init__()

    def go(self) -> None:
        return None


class NotATask:
    """Not derived from Task."""

    def go(self) -> None:
        return None


class ModelReader(Task):
    """Reads the model the spec named."""

    def weights(self) -> str:
        assert self.model_path is not None
        return (self.model_path / "weights.txt").read_text()


class Flaky(Task):
    """Fails on the first try, succeeds on the next."""

    def attempt(self) -> int:
        assert self.identity is not None
        if self.identity.try_number == 1:
            raise ConnectionError("first try always fails")
        return self.identity.try_number


class SecretProbe(Task):
    """Says whether a secret reached the task's environment, without ever returning it."""

    def check(self, name: str = "GENIUS_STATE_PASSWORD", seconds: float = 0.0) -> dict[str, object]:
        time.sleep(seconds)  # time for a test to look at every process's argv
        value = os.environ.get(name)
        return {"present": bool(value), "length": len(value or "")}


class Ledger(Task):
    """Works for a while, then returns (or raises): each start and each completion is written to a
    ledger file, so a test can count how often the method really ran; a ``returning`` file appears just
    before the method returns, so a test can time a fault across the run's final write."""

    def work(self, ledger: str, seconds: float, value: int, fail: bool = False) -> dict[str, int]:
        with open(ledger, "a", encoding="utf-8") as handle:
            handle.write("start\n")
        time.sleep(seconds)
        with open(ledger, "a", encoding="utf-8") as handle:
            handle.write("done\n")
        with open(ledger + ".returning", "w", encoding="utf-8") as handle:
            handle.write("1")
        if fail:
            raise ValueError(f"bad value {value}")
        return {"value": value, "squared": value * value}


class Unstorable(Bolt):
    """Writes an output file, then returns (or logs) a value no state store can hold."""

    def result(self, kind: str) -> Any:
        self.output.save({"written": True}, "out.json")
        return {"nan": float("nan"), "inf": float("inf"), "nul": "a\x00b", "surrogate": "\ud800"}[kind]

    def metric_then_fail(self) -> None:
        self.log_metric("loss", float("nan"))
        raise ValueError("bad\x00value \udc80")
