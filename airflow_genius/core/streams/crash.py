"""TEST HOOK (the only one in the code): kill ``genius run`` at a named step of the window protocol.

The crash tests (``tests/core/streams/test_stream_crash.py``) set ``GENIUS_TEST_CRASH_AT=<point>`` on a
``genius run`` subprocess; the stream code calls :func:`crash_point` at each step of ``docs/streams.md``'s
protocol, and the process SIGKILLs itself at the named one, so a retry must replay the window and write
nothing twice. Unset in production: one dict lookup per point.

>>> crash_point("after_read")  # GENIUS_TEST_CRASH_AT unset: nothing happens
"""

from __future__ import annotations

import os
import signal

#: The environment variable naming the point to die at.
CRASH_ENV = "GENIUS_TEST_CRASH_AT"
#: Every point, in protocol order: reading a window, recording it open, writing output, acking the
#: input, advancing the checkpoint.
CRASH_POINTS = (
    "after_read",
    "after_open",
    "before_output",
    "mid_output",
    "after_output",
    "after_ack",
    "after_checkpoint",
)


def crash_point(name: str) -> None:
    """SIGKILL this process if the crash tests asked for a kill at ``name`` (one of :data:`CRASH_POINTS`)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
