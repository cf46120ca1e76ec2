"""Where offloaded XCom objects live (a local folder or an S3 prefix), and how bytes get there and back.

Writes stream: encoded chunks go through one background thread that compresses, hashes and writes them,
so JSON encoding (which holds the GIL) overlaps with zlib, sha256 and I/O (which release it). Reads do the
mirror image: a background thread reads, hashes and decompresses while the caller parses. Objects appear
atomically: a local file is written under a temporary name and renamed; an S3 upload (single or
multipart) only becomes visible when it completes. Readers verify size and sha256 before returning.

Usage::

    store = open_store("file:///data/xcom")
    obj = write_object(store, "dag/run/task/-1/return_value.xcom", [b"[\\n1\\n]"], "gzip", 1)
    assert b"".join(read_object(store, obj.uri, "gzip", obj.sha256, obj.size, obj.stored_size)) == b"[\\n1\\n]"
    store.delete(obj.uri)

No Airflow import here: boto3 is imported lazily, only for ``s3://`` stores.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from airflow_genius.core.errors import PathEscapeError
from airflow_genius.core.paths import safe_join, safe_relpath

#: Compressed bytes read per block (small enough that decompressing one block stays a few MiB).
READ_BLOCK = 1 << 20
#: Largest decompressed piece handed to the parser (with the queue, bounds what is in flight to ~5 MiB).
MAX_PIECE = 1 << 20
#: Chunks in flight between the caller and the background thread (bounds memory to a few MiB).
QUEUE_DEPTH = 4
#: S3 transfers: part size and parallelism; at most this many parts are buffered in memory.
S3_PART_BYTES = 8 << 20
S3_CONCURRENCY = 4

_WBITS = {"gzip": 31, "zlib": 15}


class XComStoreError(OSError):
    """An offloaded XCom object is missing, damaged, or its reference points outside the store."""


@dataclass(frozen=True)
class StoredObject:
    """What :func:`write_object` wrote: where, how big (raw and stored) and the sha256 of stored bytes."""

    uri: str
    size: int
    stored_size: int
    sha256: str


class ObjectWriter(Protocol):
    """Receives the stored bytes of one object; nothing is visible to readers before ``commit``."""

    def write(self, data: bytes | memoryview) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class XComStore(Protocol):
    """A root (folder or S3 prefix) under which every object of the backend lives."""

    root_uri: str

    def uri_of(self, relative: str) -> str: ...

    def open_writer(self, relative: str) -> ObjectWriter: ...

    def read(self, uri: str, emit: Callable[[bytes], None]) -> None: ...

    def delete(self, uri: str) -> bool: ...

    def exists(self, uri: str) -> bool: ...


# ------------------------------------------------------------------------------------------ local files
class _LocalWriter:
    """Writes to a hidden temporary file beside the target, then renames it over the target."""

    def __init__(self, target: Path) -> None:
        self._target = target
        self._tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self._tmp, flags, 0o666)  # the umask decides, as for any file
                break
            except FileNotFoundError:  # a concurrent purge pruned the empty folder: make it again
                if attempt == 2:
                    raise
        self._file = os.fdopen(fd, "wb", buffering=1 << 20)

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._tmp, self._target)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class LocalStore:
    """Objects as files under ``root``; every path is checked to stay inside it (symlinks included)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root_uri = self.root.as_uri()

    def path_of(self, uri: str) -> Path:
        """The file of ``uri``; refuses anything that is not a ``file://`` URI under the root."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise XComStoreError(f"XCom object {uri!r} is not under the configured store {self.root_uri}")
        path = Path(unquote(parts.path))
        try:
            relative = path.relative_to(self.root).as_posix()
            return safe_join(self.root, relative)
        except (ValueError, PathEscapeError) as exc:
            raise XComStoreError(
                f"XCom object {uri!r} is not under the configured store {self.root_uri}"
            ) from exc

    def uri_of(self, relative: str) -> str:
        return safe_join(self.root, relative).as_uri()

    def open_writer(self, relative: str) -> ObjectWriter:
        return _LocalWriter(safe_join(self.root, relative))

    def read(self, uri: str, emit: Callable[[bytes], None]) -> None:
        try:
            handle = open(self.path_of(uri), "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise XComStoreError(f"XCom object {uri} does not exist (purged, or written elsewhere?)") from exc
        with handle:
            while block := handle.read(READ_BLOCK):
                emit(block)

    def delete(self, uri: str) -> bool:
        path = self.path_of(uri)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # Prune the folders that became empty (dag/run/task/map_index), never the root itself.
        for parent in path.parents:
            if parent == self.root or self.root not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or raced with a writer): stop here
                break
        return True

    def exists(self, uri: str) -> bool:
        return self.path_of(uri).is_file()


# ------------------------------------------------------------------------------------------------- S3
@lru_cache(maxsize=4)
def _s3_client(pid: int) -> Any:
    """One client per process (boto3 clients are thread-safe but must not cross a fork)."""
    from airflow_genius.core.data import make_s3_client

    return make_s3_client(max_concurrency=S3_CONCURRENCY)


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=S3_PART_BYTES, multipart_chunksize=S3_PART_BYTES, max_concurrency=S3_CONCURRENCY
    )
    # Bound what s3transfer buffers from our non-seekable streams: a few parts, not the whole object.
    # (s3transfer options that boto3's TransferConfig does not take as arguments.)
    config.max_in_memory_upload_chunks = S3_CONCURRENCY
    config.max_in_memory_download_chunks = S3_CONCURRENCY * 2
    return config


_EOF = object()


class _Pipe:
    """A non-seekable file object fed from another thread: what ``upload_fileobj`` reads."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_DEPTH)
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._eof = False

    # -- writer side
    def put(self, item: Any, alive: Callable[[], bool]) -> None:
        while True:
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if not alive():  # the uploader stopped reading (it failed): do not wait forever
                    return

    # -- reader side (s3transfer)
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        # File semantics: block until ``size`` bytes or EOF (s3transfer takes a short first read for EOF).
        while (size < 0 or self._buffered < size) and not self._eof:
            item = self._queue.get()
            if item is _EOF:
                self._eof = True
            elif isinstance(item, BaseException):
                raise item
            else:
                self._chunks.append(item)
                self._buffered += len(item)
        data = b"".join(self._chunks)
        if 0 <= size < len(data):
            data, rest = data[:size], data[size:]
            self._chunks, self._buffered = [rest], len(rest)
        else:
            self._chunks, self._buffered = [], 0
        return data


class _S3Writer:
    """Streams into ``upload_fileobj`` (multipart above one part); the object appears only on success."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._pipe = _Pipe()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._upload, args=(client, bucket, key), name="genius-xcom-s3-upload", daemon=True
        )
        self._thread.start()

    def _upload(self, client: Any, bucket: str, key: str) -> None:
        try:
            client.upload_fileobj(self._pipe, bucket, key, Config=_transfer_config())
        except BaseException as exc:
            self._error = exc

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise XComStoreError(f"upload of the XCom object failed: {self._error}") from self._error

    def write(self, data: bytes | memoryview) -> None:
        self._raise_if_failed()
        self._pipe.put(bytes(data), self._thread.is_alive)

    def commit(self) -> None:
        self._pipe.put(_EOF, self._thread.is_alive)
        self._thread.join()
        self._raise_if_failed()

    def abort(self) -> None:
        # An exception read by s3transfer fails the transfer, which aborts any multipart upload.
        self._pipe.put(XComStoreError("XCom upload aborted"), self._thread.is_alive)
        self._thread.join()


class _EmitSink:
    """The non-seekable target of ``download_fileobj``: in-order writes go to ``emit``."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self._emit = emit

    def write(self, data: bytes) -> int:
        self._emit(data)
        return len(data)

    def seekable(self) -> bool:
        return False


class S3Store:
    """Objects under ``s3://bucket/prefix``; credentials and endpoint from boto3's default chain."""

    def __init__(self, bucket: str, prefix: str) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root_uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    @property
    def client(self) -> Any:
        return _s3_client(os.getpid())

    def _key(self, relative: str) -> str:
        relative = safe_relpath(relative)
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def key_of(self, uri: str) -> str:
        """The key of ``uri``; refuses other buckets, keys outside the prefix and any ``..``/``//``."""
        bucket, _, key = uri.removeprefix("s3://").partition("/") if uri.startswith("s3://") else ("", "", "")
        head = f"{self.prefix}/" if self.prefix else ""
        relative = key[len(head) :]
        try:
            if bucket != self.bucket or not key.startswith(head) or safe_relpath(relative) != relative:
                raise PathEscapeError(uri)
        except PathEscapeError as exc:
            raise XComStoreError(
                f"XCom object {uri!r} is not under the configured store {self.root_uri}"
            ) from exc
        return key

    def uri_of(self, relative: str) -> str:
        return f"s3://{self.bucket}/{self._key(relative)}"

    def open_writer(self, relative: str) -> ObjectWriter:
        return _S3Writer(self.client, self.bucket, self._key(relative))

    def read(self, uri: str, emit: Callable[[bytes], None]) -> None:
        key = self.key_of(uri)
        try:
            self.client.download_fileobj(self.bucket, key, _EmitSink(emit), Config=_transfer_config())
        except Exception as exc:
            from airflow_genius.core.data import s3_not_found

            if s3_not_found(exc):
                raise XComStoreError(f"XCom object {uri} does not exist (purged?)") from exc
            raise

    def delete(self, uri: str) -> bool:
        self.client.delete_object(Bucket=self.bucket, Key=self.key_of(uri))
        return True

    def exists(self, uri: str) -> bool:
        from airflow_genius.core.data import s3_not_found

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_of(uri))
        except Exception as exc:
            if s3_not_found(exc):
                return False
            raise
        return True


def open_store(path: str) -> XComStore:
    """The store of ``[genius] xcom_path``: ``file:///absolute/path``, ``s3://bucket/prefix`` or ``/path``.

    >>> open_store("s3://bucket/xcom/").root_uri
    's3://bucket/xcom'
    """
    text = path.strip()
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"[genius] xcom_path {path!r} names no bucket; expected s3://bucket/prefix")
        return S3Store(bucket, prefix)
    if text.startswith("file:"):
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"[genius] xcom_path {path!r} names a host; expected file:///absolute/path")
        text = unquote(parts.path)
    if "://" in text or not os.path.isabs(text):
        raise ValueError(
            f"[genius] xcom_path must be file:///absolute/path or s3://bucket/prefix, got {path!r}"
        )
    return LocalStore(Path(text))


# -------------------------------------------------------------------------------------------- pipelines
class _Stage:
    """Applies ``fn`` to each submitted item, in order, in one background thread (bounded queue)."""

    def __init__(self, fn: Callable[[Any], None]) -> None:
        self._fn = fn
        self._queue: queue.Queue[Any] = queue.Queue(QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="genius-xcom-write", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _EOF:
            if self._error is None:  # after a failure keep draining, so submit() never blocks
                try:
                    self._fn(item)
                except BaseException as exc:
                    self._error = exc

    def submit(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(_EOF)
        self._thread.join()
        if self._error is not None:
            raise self._error


class _Deflate:
    """Compress, hash and forward stored bytes; counts raw and stored sizes."""

    def __init__(self, writer: ObjectWriter, compression: str, level: int) -> None:
        self._writer = writer
        self._compressor = (
            zlib.compressobj(level, zlib.DEFLATED, _WBITS[compression]) if compression in _WBITS else None
        )
        self._hash = hashlib.sha256()
        self.size = 0
        self.stored_size = 0

    def _out(self, data: bytes | memoryview) -> None:
        if data:
            self._hash.update(data)
            self.stored_size += len(data)
            self._writer.write(data)

    def write(self, chunk: bytes | memoryview) -> None:
        self.size += len(chunk)
        self._out(self._compressor.compress(chunk) if self._compressor else chunk)

    def finish(self) -> str:
        if self._compressor:
            self._out(self._compressor.flush())
        return self._hash.hexdigest()


def write_object(
    store: XComStore, relative: str, chunks: Iterable[bytes | memoryview], compression: str, level: int
) -> StoredObject:
    """Write ``chunks`` as one object at ``relative`` (atomically); returns where and what was stored."""
    if compression not in (*_WBITS, "none"):
        raise ValueError(f"unknown XCom compression {compression!r}; expected gzip, zlib or none")
    writer = store.open_writer(relative)
    deflate = _Deflate(writer, compression, level)
    stage = _Stage(deflate.write)
    try:
        try:
            for chunk in chunks:
                stage.submit(chunk)
        finally:
            stage.close()
        digest = deflate.finish()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return StoredObject(store.uri_of(relative), deflate.size, deflate.stored_size, digest)


class _Cancelled(Exception):
    """The reader stopped early; the producer thread ends quietly."""


def read_object(
    store: XComStore, uri: str, compression: str, sha256: str, size: int, stored_size: int
) -> Iterator[bytes]:
    """Decompressed chunks of the object at ``uri``; raises at the end unless sizes and sha256 match.

    The caller must not keep a value built from the chunks if this raises (damaged or replaced object).
    """
    if compression not in (*_WBITS, "none"):
        raise XComStoreError(f"XCom object {uri} uses unknown compression {compression!r}")
    yield from _ObjectReader(store, uri, compression, sha256, size, stored_size).chunks()


class _ObjectReader:
    """One read of a stored object: a background thread reads, hashes and inflates it into a queue the
    caller drains. What is in flight stays bounded: QUEUE_DEPTH pieces of at most MAX_PIECE bytes, plus
    the READ_BLOCK being inflated."""

    def __init__(
        self, store: XComStore, uri: str, compression: str, sha256: str, size: int, stored_size: int
    ) -> None:
        self._store = store
        self._uri = uri
        self._expected = (sha256, size, stored_size)
        self._out: queue.Queue[Any] = queue.Queue(QUEUE_DEPTH)
        self._cancelled = threading.Event()
        self._decompressor = zlib.decompressobj(_WBITS[compression]) if compression in _WBITS else None
        self._digest = hashlib.sha256()
        self._size = 0
        self._stored_size = 0

    def chunks(self) -> Iterator[bytes]:
        """The decompressed pieces in order; the object's damage (or the store's error) is raised last."""
        thread = threading.Thread(target=self._produce, name="genius-xcom-read", daemon=True)
        thread.start()
        try:
            while (item := self._out.get()) is not _EOF:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._cancelled.set()
            thread.join()

    def _produce(self) -> None:
        try:
            self._store.read(self._uri, self._take_block)
            self._finish()
            self._put(_EOF)
        except _Cancelled:
            return
        except BaseException as exc:
            if isinstance(exc, zlib.error):
                exc = XComStoreError(f"XCom object {self._uri} is damaged: {exc}")
            try:
                self._put(exc)
            except _Cancelled:
                return

    def _take_block(self, block: bytes) -> None:
        """Hash a stored block and hand it on inflated, in pieces of at most MAX_PIECE bytes."""
        self._digest.update(block)
        self._stored_size += len(block)
        decompressor = self._decompressor
        if decompressor is None:
            self._hand_on(block)
            return
        data = decompressor.decompress(block, MAX_PIECE)
        while True:  # bounded pieces: a highly compressed block never inflates all at once
            if data:
                self._hand_on(data)
            tail = decompressor.unconsumed_tail
            if not tail:
                break
            data = decompressor.decompress(tail, MAX_PIECE)

    def _finish(self) -> None:
        """Hand on the end of the stream, then check it is whole and matches its reference."""
        decompressor = self._decompressor
        if decompressor is not None:
            rest = decompressor.flush()
            if rest:
                self._hand_on(rest)
            if not decompressor.eof or decompressor.unused_data:
                raise XComStoreError(f"XCom object {self._uri} is truncated or has trailing bytes")
        sha256, size, stored_size = self._expected
        if self._stored_size != stored_size or self._digest.hexdigest() != sha256 or self._size != size:
            raise XComStoreError(
                f"XCom object {self._uri} does not match its reference (sha256/size differ): "
                "it was damaged or replaced by a newer push"
            )

    def _hand_on(self, data: bytes) -> None:
        self._size += len(data)
        self._put(data)

    def _put(self, item: Any) -> None:
        """Queue ``item`` for the caller; raises :class:`_Cancelled` once the caller has stopped reading."""
        while not self._cancelled.is_set():
            try:
                self._out.put(item, timeout=0.5)
                return
            except queue.Full:
                continue
        raise _Cancelled
