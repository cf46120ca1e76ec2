"""Unbounded mode: one run processes successive windows until it is stopped (``window.unbounded``).

Each iteration is exactly a bounded window of :class:`~airflow_genius.core.streams.window.StreamWindow`
(open → the method → commit), under its own origin; ``max_records`` / ``max_seconds`` bound each
window, i.e. each checkpoint interval. SIGTERM/SIGINT (:class:`~airflow_genius.core.errors.RunCancelled`)
during a window abandons it — left ``open`` in the checkpoint, adopted by the next run — and during a
commit is deferred until the commit is done. The run then ends SUCCESS with a summary of the committed
windows (see ``docs/streams.md``).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from airflow_genius.core.errors import RunCancelled
from airflow_genius.core.streams.io import StreamingOutput
from airflow_genius.core.streams.window import StreamWindow

#: Seconds to wait before reading again after an empty window that did not block (count-only bounds).
IDLE_POLL_SECONDS = 0.1


def run_unbounded(
    task: Any,
    call: Callable[[], Any],
    *,
    window: StreamWindow,
    max_windows: int | None,
    check_result: Callable[[Any], None],
    stop_if_signalled: Callable[[], None],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Loop ``window`` on ``task`` until stopped; returns (result summary, metrics).

    ``stop_if_signalled`` raises :class:`RunCancelled` when SIGTERM/SIGINT arrived: it is called between
    windows, as an idle stream never runs the method, where the runtime acts on a stop.
    """
    placeholder = task.input
    window.log.ensure_group(window.group, start="0")
    sink = task.output if isinstance(task.output, StreamingOutput) else None
    windows = records = written = skipped = reads = 0
    last: Any = None
    stopped = "max_windows"
    try:
        while max_windows is None or reads < max_windows:
            reads += 1
            source = window.next()
            if source is None:
                stop_if_signalled()
                if window.bounds.max_seconds is None:
                    time.sleep(IDLE_POLL_SECONDS)  # the read did not block: do not spin
                continue
            task.input = source
            if sink is not None:
                task.output = StreamingOutput(
                    sink.log, scope=window.origin, source=source, flush_every=sink.flush_every
                )
            last = call()
            check_result(last)
            with _deferred_signals():
                window.commit(source, task.output)
                windows += 1
                records += len(source)
                if isinstance(task.output, StreamingOutput):
                    written += task.output.written
                    skipped += task.output.skipped
                window.state.update_run(window.key, metrics={"windows": windows, "records": records})
    except RunCancelled as exc:
        stopped = str(exc) or "cancelled"
        if isinstance(task.output, StreamingOutput):
            task.output.abort()  # the window stays open in the checkpoint: the next run adopts it
    finally:
        task.input = placeholder  # the runtime closes the connections through the task's managers
        if sink is not None:
            task.output = sink
    summary = {"windows": windows, "records": records, "stopped": stopped, "last_result": last}
    metrics = {
        "windows": windows,
        "records": records,
        "reads": reads,
        "output_written": written,
        "output_skipped": skipped,
    }
    return summary, metrics


@contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGTERM/SIGINT while a window commits; raise :class:`RunCancelled` once it is committed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def note(signum: int, frame: Any) -> None:
        caught.append(signum)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        if callable(signal.getsignal(sig)):
            previous[sig] = signal.signal(sig, note)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    if caught:
        raise RunCancelled(f"received {signal.Signals(caught[0]).name}")
