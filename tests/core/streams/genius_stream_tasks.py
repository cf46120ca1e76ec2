"""Stream tasks used by the stream tests (imported by `genius run` subprocesses via PYTHONPATH)."""

from __future__ import annotations

import time

from airflow_genius.core import Bolt, Spout


class PassThrough(Bolt):
    """Sends each input record ``fanout`` times tagged with its position; counts records in operator state."""

    def process(self, fanout: int = 1, fail_on_try: int | None = None, pause: float = 0.0) -> dict:
        assert self.input is not None and self.output is not None
        sources = []
        for record in self.input:
            for k in range(fanout):
                self.output.send({"src": record["n"], "k": k})
            sources.append(record["n"])
        if pause:
            time.sleep(pause)  # unbounded tests: let a SIGTERM land mid-window
        seen = self.input.state.get("seen", 0) + len(sources)
        self.input.state["seen"] = seen
        if self.identity is not None and self.identity.try_number == fail_on_try:
            raise RuntimeError(f"failing try {fail_on_try} on purpose")
        return {"sources": sources, "seen": seen}


class Counter(Spout):
    """Emits ``count`` numbered records to a stream output."""

    def emit(self, count: int = 3) -> int:
        assert self.output is not None
        for n in range(count):
            self.output.send({"n": n})
        return count


class StreamToFiles(Bolt):
    """Stream input, batch output: writes the window's records into one file of the run's partition."""

    def dump(self) -> int:
        assert self.input is not None and self.output is not None
        self.output.save([record["n"] for record in self.input], "window.json")
        return len(self.input)


class FilesToStream(Bolt):
    """Batch input, stream output: sends every line of every input file."""

    def send_lines(self) -> int:
        assert self.input is not None and self.output is not None
        sent = 0
        for name in self.input.files():
            for line in self.input.read_text(name).splitlines():
                self.output.send({"line": line})
                sent += 1
        return sent
