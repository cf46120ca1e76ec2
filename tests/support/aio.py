"""Run a coroutine to completion from a test, whatever the main thread is doing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` in a thread of its own: Playwright's sync API keeps its own loop marked running in
    the main thread for as long as a browser fixture lives, where ``asyncio.run`` would refuse to start."""
    outcome: dict[str, Any] = {}

    def main() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    runner = threading.Thread(target=main, name="test-coroutine")
    runner.start()
    runner.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
