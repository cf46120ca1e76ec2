"""Container output as kubelet serves it: podman's timestamped log records → whole K8s log lines."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from datetime import UTC, datetime

_STAMP = re.compile(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}) ")


class RecordSplitter:
    """Podman's timestamped log stream → whole lines ``(timestamp, message)``.

    Podman keeps a write without a newline as a *partial* record and streams it as ``TS text`` with no
    newline, the rest following as ``TS rest\\n``: one line, as kubelet would report it (with the first
    timestamp).
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.stamp: bytes | None = None  # of the line being assembled
        self.message = b""

    def feed(self, chunk: bytes) -> Iterator[tuple[bytes, bytes]]:
        self.buffer += chunk
        while self.buffer:
            start = _STAMP.match(self.buffer)
            if start is None:
                if len(self.buffer) < 40 and b"\n" not in self.buffer:
                    return  # maybe a timestamp cut by the chunking: wait for more
                head, sep, rest = self.buffer.partition(b"\n")  # not a record start: plain text
                self.message += head
                if not sep:
                    self.buffer = b""
                    return
                self.buffer = rest
                yield self._emit()
                continue
            body = self.buffer[start.end() :]
            newline = body.find(b"\n")
            following = _STAMP.search(body)
            if newline >= 0 and (following is None or newline < following.start()):
                self.stamp = self.stamp or start.group()[:-1]
                self.message += body[:newline]
                self.buffer = body[newline + 1 :]
                yield self._emit()
            elif following is not None:  # a partial record: the line goes on in the next record
                self.stamp = self.stamp or start.group()[:-1]
                self.message += body[: following.start()]
                self.buffer = body[following.start() :]
            else:
                return  # the record is not complete yet

    def close(self) -> Iterator[tuple[bytes, bytes]]:
        if self.buffer:
            start = _STAMP.match(self.buffer)
            if start is not None:
                self.stamp = self.stamp or start.group()[:-1]
                self.message += self.buffer[start.end() :]
            else:
                self.message += self.buffer
            self.buffer = b""
        if self.stamp is not None or self.message:
            yield self._emit()

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
