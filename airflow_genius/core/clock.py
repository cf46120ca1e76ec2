"""Aware UTC time for everything the core stores: run records, task state, model manifests and tags.

>>> utcnow().tzinfo
datetime.timezone.utc
>>> parse_time("2024-01-01T00:00:00Z"), parse_time("not a time"), parse_time(None)
(datetime.datetime(2024, 1, 1, 0, 0, tzinfo=datetime.timezone.utc), None, None)
"""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    """The current instant, timezone-aware in UTC (what every stored timestamp is)."""
    return datetime.now(timezone.utc)


def parse_time(text: object) -> datetime | None:
    """ISO-8601 text (as the stores write it) to an aware datetime; None for empty, non-text or bad text.

    A trailing ``Z`` is read as UTC (Python 3.10's ``fromisoformat`` does not), and so is a time
    without an offset: no stored time is local.
    """
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if text[-1] != "Z":
            return None
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00")
        except ValueError:
            return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
