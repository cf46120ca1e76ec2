"""Container output as kubelet serves it: podman's timestamped log records → whole K8s log lines."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime

_STAMP = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}) ")


class RecordSplitter:
    """Podman's log records → whole lines ``(timestamp, message)``, as kubelet reports them.

    Feed one record at a time: one frame of the multiplexed log stream, ``TS text`` (podman sends each
    record in its own frame). Only the record's LEADING timestamp is podman's; a timestamp later in the
    text is the container's output and stays in the message. A write without a newline is a *partial*
    record: ``TS text`` with no newline, the rest following as ``TS rest\\n`` — one line, as kubelet
    would report it (with the first timestamp).

        records = RecordSplitter()
        lines = [*records.feed(b"2026-01-02T03:04:05Z at 2020-01-01T00:00:00Z done\\n"), *records.close()]
        # [(b"2026-01-02T03:04:05Z", b"at 2020-01-01T00:00:00Z done")]
    """

    def __init__(self) -> None:
        self.stamp: bytes | None = None  # of the line being assembled
        self.message = b""

    def feed(self, record: bytes) -> Iterator[tuple[bytes, bytes]]:
        start = _STAMP.match(record)
        stamp, text = (start.group()[:-1], record[start.end() :]) if start else (None, record)
        *complete, partial = text.split(b"\n")
        for line in complete:
            self._append(stamp, line)
            yield self._emit()
        if partial:  # the line goes on in the next record
            self._append(stamp, partial)

    def close(self) -> Iterator[tuple[bytes, bytes]]:
        if self.stamp is not None or self.message:
            yield self._emit()

    def _append(self, stamp: bytes | None, text: bytes) -> None:
        self.stamp = self.stamp or stamp  # a line's timestamp is its first record's
        self.message += text

    def _emit(self) -> tuple[bytes, bytes]:
        line = (self.stamp or b"", self.message)
        self.stamp, self.message = None, b""
        return line


def format_line(stamp: bytes, message: bytes, since: float | None, timestamps: bool) -> bytes | None:
    when = parse_time(stamp.decode(errors="replace"))
    if since is not None and when is not None and when < since:
        return None
    if not timestamps:
        return message + b"\n"
    rendered = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if when else stamp.decode()
    return rendered.encode() + b" " + message + b"\n"


def parse_time(value: str | None) -> float | None:
    if not value or value.startswith("0001-"):
        return None
    value = value.replace("Z", "+00:00")
    if "." in value:  # Python takes at most microseconds: cut nanoseconds
        head, rest = value.split(".", 1)
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        value = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def docker_time(value: str | None) -> str | None:
    when = parse_time(value)
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else None
