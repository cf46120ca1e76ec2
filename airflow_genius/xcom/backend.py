"""The genius XCom backend: large values go to an object store, Airflow's DB keeps a small reference.

Enable it for workers (and ``dag.test()``) with::

    [core]
    xcom_backend = airflow_genius.xcom.GeniusXComBackend

    [genius]
    xcom_path = s3://my-bucket/airflow/xcom      # or file:///shared/xcom (default: $AIRFLOW_HOME/genius/xcom)
    xcom_threshold_bytes = 65536                 # -1: never offload, 0: always
    xcom_compression = gzip                      # gzip | zlib | none

Values whose compact JSON is at most ``xcom_threshold_bytes`` are stored exactly as ``BaseXCom`` stores
them. Larger ones are streamed (encoded in batches, compressed, hashed and written in a background thread)
to ``<xcom_path>/<dag_id>/<run_id>/<task_id>/<map_index>/<key>.xcom`` and the XCom row holds only::

    {"__genius_xcom__": 1, "uri": "s3://my-bucket/airflow/xcom/etl/manual__.../load/-1/return_value.xcom",
     "size": 209715230, "stored_size": 21474836, "sha256": "9f2c...", "compression": "gzip",
     "layout": "list", "serde": false}

which is also what the Airflow UI shows for that XCom. Pulling resolves the reference (checking size and
sha256); clearing or re-running the task purges the object (Airflow calls ``purge`` through
``XCom.delete`` before the task runs again).
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any

from airflow.sdk.bases.xcom import BaseXCom

from airflow_genius.core.errors import PathEscapeError
from airflow_genius.core.paths import safe_segment
from airflow_genius.xcom import _codec, _store
from airflow_genius.xcom.config import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_THRESHOLD_BYTES,
    DEFAULT_XCOM_PATH,
    SECTION,
    check_xcom_path,
)

log = logging.getLogger(__name__)

#: Key that marks a reference in the XCom row; its value is the reference format version.
REFERENCE_MARKER = "__genius_xcom__"
REFERENCE_VERSION = 1
_REFERENCE_FIELDS = ("uri", "size", "stored_size", "sha256", "compression", "layout", "serde")
#: Longest path segment built from an identifier (file systems allow 255 bytes; S3 keys 1,024 in all).
_MAX_SEGMENT = 100


@dataclass(frozen=True)
class XComSettings:
    """The ``[genius]`` options of the backend, read from Airflow's configuration on every use.

    >>> XComSettings("file:///tmp/x", 10, "none", 1).offloads(11)
    True
    """

    path: str
    threshold: int
    compression: str
    level: int

    @classmethod
    def from_conf(cls) -> XComSettings:
        """Read ``[genius] xcom_*`` (``AIRFLOW__GENIUS__XCOM_*`` environment variables win, as always)."""
        from airflow.sdk.configuration import conf  # the task SDK's config: what workers read

        path = conf.get(SECTION, "xcom_path", fallback="") or DEFAULT_XCOM_PATH
        # Defaults carry {AIRFLOW_HOME}; Airflow expands it for registered provider defaults, not fallbacks.
        home = os.path.expanduser(os.environ.get("AIRFLOW_HOME", "~/airflow"))
        path = os.path.expanduser(os.path.expandvars(path.replace("{AIRFLOW_HOME}", home)))
        threshold = conf.getint(SECTION, "xcom_threshold_bytes", fallback=DEFAULT_THRESHOLD_BYTES)
        compression = (conf.get(SECTION, "xcom_compression", fallback=DEFAULT_COMPRESSION) or "none").strip()
        level = conf.getint(SECTION, "xcom_compression_level", fallback=DEFAULT_COMPRESSION_LEVEL)
        settings = cls(path, threshold, compression.lower(), level)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ValueError`` naming the option that is wrong."""
        check_xcom_path(self.path)
        if self.threshold < -1:
            raise ValueError(f"[{SECTION}] xcom_threshold_bytes must be -1 or more, got {self.threshold}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"[{SECTION}] xcom_compression must be one of {', '.join(COMPRESSIONS)}, "
                f"got {self.compression!r}"
            )
        if not 1 <= self.level <= 9:
            raise ValueError(f"[{SECTION}] xcom_compression_level must be 1..9, got {self.level}")

    def offloads(self, size: int) -> bool:
        """True if a value of ``size`` JSON bytes goes to the store."""
        return self.threshold >= 0 and size > self.threshold

    def store(self) -> _store.XComStore:
        return _store.open_store(self.path)


def _segment(value: object) -> str:
    """One path segment for an Airflow identifier; distinct identifiers never share a segment.

    ``safe_segment`` maps e.g. ``a/b`` and ``a_b`` to the same text, so whenever it changes anything (or
    the result is long) a short hash of the original is appended after ``~`` (a character it never
    emits, so a hashed segment cannot equal an unchanged one).

    >>> _segment("scheduled__2024-01-01T00:00:00+00:00")
    'scheduled__2024-01-01T00_00_00+00_00~d1a4594e3632'
    >>> _segment("extract")
    'extract'
    """
    text = str(value)
    try:
        cleaned = safe_segment(text)
    except PathEscapeError:  # "", "." or ".."
        cleaned = "_"
    if cleaned != text or len(cleaned) > _MAX_SEGMENT:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        cleaned = f"{cleaned[:_MAX_SEGMENT]}~{digest}"
    return cleaned


def object_path(
    dag_id: str | None, run_id: str | None, task_id: str | None, map_index: int | None, key: str | None
) -> str:
    """Relative path of the object of one XCom: ``<dag_id>/<run_id>/<task_id>/<map_index>/<key>.xcom``.

    >>> object_path("etl", "manual_1", "load", -1, "return_value")
    'etl/manual_1/load/-1/return_value.xcom'
    """
    if not (dag_id and run_id and task_id and key):
        # Called outside a task (no coordinates): a unique name that can collide with nothing.
        return f"_unscoped/{uuid.uuid4().hex}.xcom"
    index = -1 if map_index is None else int(map_index)
    return "/".join(
        (_segment(dag_id), _segment(run_id), _segment(task_id), str(index), _segment(key) + ".xcom")
    )


def reference_of(value: Any) -> dict[str, Any] | None:
    """The reference stored in an XCom row, or None if the row holds an ordinary value.

    >>> reference_of({"a": 1}) is None
    True
    """
    if not isinstance(value, dict) or value.get(REFERENCE_MARKER) is None:
        return None
    if value[REFERENCE_MARKER] != REFERENCE_VERSION or any(field not in value for field in _REFERENCE_FIELDS):
        raise ValueError(
            f"XCom holds a genius reference of an unknown format (version {value[REFERENCE_MARKER]!r}); "
            f"this backend reads version {REFERENCE_VERSION}"
        )
    return value


def _crosses_threshold(
    settings: XComSettings, plan: _codec.Plan, chunks: Iterator[bytes], head: list[bytes | memoryview]
) -> bool:
    """Whether ``plan``'s value is larger than the offload threshold.

    Text is stored raw: decided on its JSON size (escaping computed only when it can matter). Anything
    else is encoded only until the threshold is crossed; the chunks consumed are appended to ``head``,
    where they start the object.
    """
    if plan.layout == _codec.LAYOUT_TEXT:
        return settings.offloads(plan.text_length) or settings.offloads(plan.json_size())
    seen = 0
    for chunk in chunks:
        head.append(chunk)
        seen += len(chunk)
        if settings.offloads(seen - plan.framing):
            return True
    return False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while millions of containers are built: they form no cycles, and each full
    collection would walk all of them again (it roughly halves the time to parse a large JSON list)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class GeniusXComBackend(BaseXCom):
    """XCom backend that offloads large values to ``[genius] xcom_path`` and keeps a reference in the DB.

    Small values (compact JSON up to ``[genius] xcom_threshold_bytes``) behave exactly as with
    ``BaseXCom``. Large values are streamed to the store without ever holding their whole encoding in
    memory; types that Airflow's serde supports (tuples, sets, datetimes, dataclasses...) come back as
    they went in. Usage in a DAG needs nothing special::

        @task
        def extract() -> list[dict]:
            return rows              # 200 MB of rows: stored in the object store, a reference in the DB

        @task
        def load(rows: list[dict]) -> None:
            ...                      # the reference is resolved (and verified) before the task sees it
    """

    @staticmethod
    def serialize_value(  # type: ignore[override]
        value: Any,
        *,
        key: str | None = None,
        task_id: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        map_index: int | None = None,
    ) -> Any:
        """Return what the XCom row stores: the value as ``BaseXCom`` stores it, or a reference."""
        settings = XComSettings.from_conf()
        # A user dict that carries our marker key is always offloaded (whatever the threshold), so that
        # a row holding the marker is always a genuine reference when it is read back.
        forced = isinstance(value, dict) and REFERENCE_MARKER in value
        if settings.threshold < 0 and not forced:
            return BaseXCom.serialize_value(value)
        with _gc_paused():
            plan = _codec.plan_value(value)
            head: list[bytes | memoryview] = []
            chunks = plan.chunks()
            if not forced and not _crosses_threshold(settings, plan, chunks, head):
                return BaseXCom.serialize_value(value)
            stored = _store.write_object(
                settings.store(),
                object_path(dag_id, run_id, task_id, map_index, key),
                chain(head, chunks),
                settings.compression,
                settings.level,
            )
        return {
            REFERENCE_MARKER: REFERENCE_VERSION,
            "uri": stored.uri,
            "size": stored.size,
            "stored_size": stored.stored_size,
            "sha256": stored.sha256,
            "compression": settings.compression,
            "layout": plan.layout,
            "serde": plan.serde,
        }

    @staticmethod
    def deserialize_value(result: Any) -> Any:
        """Resolve a reference (verifying size and sha256), or deserialize an inline value like BaseXCom."""
        reference = reference_of(result.value)
        if reference is None:
            return BaseXCom.deserialize_value(result)
        return read_reference(reference)

    @classmethod
    def purge(cls, xcom: Any, *args: Any) -> None:
        """Delete the offloaded object of an XCom row (Airflow calls this from ``XCom.delete``)."""
        try:
            reference = reference_of(getattr(xcom, "value", None))
        except ValueError as exc:  # a reference from a newer version of the backend: leave it alone
            log.warning("Not purging XCom object: %s", exc)
            return
        if reference is None:
            return
        try:
            XComSettings.from_conf().store().delete(reference["uri"])
        except _store.XComStoreError as exc:
            # Not under the configured store (xcom_path changed, or a forged row): never delete it, and
            # do not fail the task run that is clearing its old XComs either.
            log.warning("Not purging XCom object: %s", exc)

    @staticmethod
    def orm_deserialize_value(result: Any) -> Any:
        """What to show for a row without loading the blob: the reference itself (or the inline value).

        Airflow 3.3 no longer calls this (its UI and API stringify the raw row, which for an offloaded
        value is the reference too); it stays for tools written against Airflow 2's interface.
        """
        value = getattr(result, "value", result)
        if reference_of(value) is not None:
            return value
        return BaseXCom.deserialize_value(result)


def read_reference(reference: dict[str, Any]) -> Any:
    """Load the value a reference points to, from the store configured in ``[genius] xcom_path``.

    The URI must lie under that store: a forged row cannot make a worker read arbitrary files.
    """
    store = XComSettings.from_conf().store()
    chunks = _store.read_object(
        store,
        reference["uri"],
        reference["compression"],
        reference["sha256"],
        int(reference["size"]),
        int(reference["stored_size"]),
    )
    try:
        with _gc_paused():
            return _codec.decode(reference["layout"], bool(reference["serde"]), chunks)
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise _store.XComStoreError(f"XCom object {reference['uri']} could not be decoded: {exc}") from exc
