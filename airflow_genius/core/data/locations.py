"""Where batch data lives: parsing the folder URIs of inputs and outputs.

A batch location is a folder, either local (``/abs/path`` or ``file:///abs/path``) or an S3 prefix
(``s3://bucket/prefix``). Anything else is refused with a one-line :class:`DataURIError` that says what
was expected, so a typo in a TaskSpec fails at the start of a run and not half-way through it.

>>> parse_data_uri("s3://bucket/raw/events/").key("2024/a.json")
'raw/events/2024/a.json'
>>> parse_data_uri("file:///data/in").path
PosixPath('/data/in')
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from airflow_genius.core.errors import GeniusError
from airflow_genius.core.paths import safe_relpath
from airflow_genius.core.uris import split_uri

#: Schemes a batch location may use (a plain absolute path counts as ``file``).
SUPPORTED_SCHEMES = ("file", "s3")


class DataError(GeniusError):
    """A batch input or output could not do what was asked (missing folder, bad manifest, misuse)."""


class DataURIError(DataError, ValueError):
    """A batch location URI is malformed or uses an unsupported scheme."""


@dataclass(frozen=True)
class DataLocation:
    """A parsed batch location: a local folder (``path``) or an S3 prefix (``bucket`` + ``prefix``).

    ``prefix`` never starts or ends with ``/`` and is ``""`` for the root of a bucket.

    >>> loc = parse_data_uri("s3://b/out")
    >>> loc.child("dag/task").uri
    's3://b/out/dag/task/'
    """

    scheme: str
    path: Path | None = None
    bucket: str = ""
    prefix: str = ""

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    @property
    def uri(self) -> str:
        """Canonical URI of the folder, with a trailing ``/`` (``file:///…/`` or ``s3://bucket/…/``)."""
        if self.is_s3:
            return f"s3://{self.bucket}/{self.prefix}/" if self.prefix else f"s3://{self.bucket}/"
        assert self.path is not None
        return self.path.as_uri().rstrip("/") + "/"

    def key(self, relative: str) -> str:
        """The S3 key of ``relative`` (a clean relative POSIX path) under this prefix."""
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def child(self, relative: str) -> DataLocation:
        """The location of the sub-folder ``relative`` (must already be a safe relative path)."""
        relative = safe_relpath(relative)
        if self.is_s3:
            return DataLocation("s3", bucket=self.bucket, prefix=self.key(relative))
        assert self.path is not None
        return DataLocation("file", path=self.path / relative)


def parse_data_uri(uri: str | os.PathLike[str]) -> DataLocation:
    """Parse a batch folder URI: ``/abs/path``, ``file:///abs/path`` or ``s3://bucket/prefix``.

    Relative local paths are refused (a runtime in a pod or on a Slurm node has no meaningful working
    directory), as are query strings (silently ignoring ``?x=y`` would hide a mistake).

    >>> parse_data_uri("s3://bucket")
    DataLocation(scheme='s3', path=None, bucket='bucket', prefix='')
    >>> parse_data_uri("gs://bucket/x")
    Traceback (most recent call last):
    ...
    airflow_genius.core.data.locations.DataURIError: unsupported batch URI scheme 'gs' in 'gs://bucket/x'; \
expected an absolute path, file:///abs/path or s3://bucket/prefix
    """
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri.strip():
        raise DataURIError(f"batch location must be a non-empty URI string, got {uri!r}")
    text = uri.strip()
    if "\x00" in text:
        raise DataURIError(f"batch location {text!r} contains a NUL byte")
    if text.startswith("/"):
        return DataLocation("file", path=Path(os.path.normpath(text)))
    parts = split_uri(text)
    scheme = parts.scheme.lower()
    if not scheme or (len(scheme) == 1 and text[1:2] == ":"):
        # No scheme ("data/in") or a Windows drive letter ("c:/data"): both are relative here.
        raise DataURIError(
            f"batch location {text!r} is a relative path; use an absolute path, file:///abs/path "
            "or s3://bucket/prefix"
        )
    if scheme not in SUPPORTED_SCHEMES:
        raise DataURIError(
            f"unsupported batch URI scheme {scheme!r} in {text!r}; "
            "expected an absolute path, file:///abs/path or s3://bucket/prefix"
        )
    if parts.query or parts.fragment:
        raise DataURIError(f"batch location {text!r} must not carry a query string or fragment")
    if scheme == "file":
        return _parse_file(text, parts.netloc, parts.path)
    return _parse_s3(text, parts.netloc, parts.path)


def _parse_file(text: str, netloc: str, path: str) -> DataLocation:
    if netloc not in ("", "localhost"):
        raise DataURIError(
            f"file URI {text!r} names host {netloc!r}; use file:///abs/path (three slashes) for a folder"
        )
    local = unquote(path)
    if not local.startswith("/"):
        raise DataURIError(f"file URI {text!r} has a relative path; use file:///abs/path")
    return DataLocation("file", path=Path(os.path.normpath(local)))


def _parse_s3(text: str, netloc: str, path: str) -> DataLocation:
    bucket = netloc
    if not bucket:
        raise DataURIError(f"S3 URI {text!r} has no bucket; expected s3://bucket/prefix")
    if "@" in bucket or ":" in bucket:
        raise DataURIError(f"S3 URI {text!r} has an invalid bucket name {bucket!r}")
    # Keys are not percent-decoded: `s3://b/my file.json` is how the AWS CLI spells keys too.
    segments = [seg for seg in path.split("/") if seg]
    if any(seg in (".", "..") for seg in segments):
        raise DataURIError(f"S3 URI {text!r} has a '.' or '..' segment; S3 prefixes are literal")
    return DataLocation("s3", bucket=bucket, prefix=posixpath.join(*segments) if segments else "")
