"""W&B model store: what can be tested without a W&B server.

Tested here: the missing-extra error, URI parsing, and ``save`` in offline mode (``WANDB_MODE=offline``):
the artifact record (name, type, metadata, file paths, sizes, md5 digests) is read back from the offline
run file that ``wandb sync`` would upload, and the staged copies of the files are compared byte for byte.
Not tested (needs a W&B server): the version id assigned online, ``load`` and ``list_versions``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from models_testutil import SMALL_MODEL

from airflow_genius.core.errors import BackendUnavailableError
from airflow_genius.core.models import ModelError, open_model_manager

ENTITY, PROJECT = "genius-tests", "models"


def test_missing_extra_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` fail, as without the extra
    with pytest.raises(BackendUnavailableError) as info:
        open_model_manager("wandb://entity/project")
    assert str(info.value) == (
        "the 'wandb' package is required for this backend: pip install 'airflow-provider-genius[wandb]'"
    )


@pytest.mark.parametrize(
    "uri", ["wandb://entity", "wandb:///project", "wandb://entity/a/b", "wandb://entity/project?x=1"]
)
def test_bad_uris(uri: str) -> None:
    with pytest.raises(ModelError, match=r"wandb://entity/project|must not have a query"):
        open_model_manager(uri)


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Offline W&B whose every file (runs, staging, cache, config) stays under tmp_path."""
    import wandb

    root = tmp_path / "wandb-home"
    for var, sub in (
        ("WANDB_DIR", "runs"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ):
        (root / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(root / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    monkeypatch.chdir(tmp_path)
    yield root
    if wandb.run is not None:
        wandb.run.finish()
    wandb.teardown()  # stop the wandb-core service so no process outlives the test


def _log_records(path: Path) -> Iterator[bytes]:
    """Records of a ``.wandb`` file: a 7-byte W&B header, then LevelDB log blocks of 32 KiB."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # too little room left in this block for a header: padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0 and length == 0:
            continue
        pending += chunk
        if kind in (1, 4):  # FULL or LAST: a complete record
            yield pending
            pending = b""


def _artifacts(run_dir: Path, *, flush: bool = True) -> list[Any]:
    """Artifact records of an offline run (``flush``: first let W&B write everything out)."""
    import wandb
    from wandb.proto import wandb_internal_pb2

    if flush:
        # finish() hands records to the wandb-core service, which writes the run file asynchronously;
        # teardown() waits for the service to drain and stop (process exit does the same).
        wandb.teardown()

    found = []
    for raw in _log_records(next(run_dir.glob("run-*.wandb"))):
        record = wandb_internal_pb2.Record()  # type: ignore[attr-defined]  # generated protobuf
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") == "artifact":
            found.append(record.artifact)
    return found


def _md5_b64(content: bytes) -> str:
    return base64.b64encode(hashlib.md5(content).digest()).decode()  # W&B digests files with md5


def test_offline_save_records_the_artifact(
    wandb_offline: Path, make_model: Callable[..., Path], tmp_path: Path
) -> None:
    mm = open_model_manager(f"wandb://{ENTITY}/{PROJECT}")
    version = mm.save(make_model(SMALL_MODEL), "bert", {"accuracy": 0.9, "tags": ["base"]})
    assert version.startswith("offline-") and len(version) > len("offline-")

    runs = list((wandb_offline / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # a short run of its own, finished
    (artifact,) = _artifacts(runs[0], flush=False)  # on disk as soon as save returns
    assert (artifact.name, artifact.type) == ("bert", "model")
    assert (artifact.entity, artifact.project) == (ENTITY, PROJECT)
    assert json.loads(artifact.metadata) == {"accuracy": 0.9, "tags": ["base"]}
    assert version == f"offline-{artifact.digest}"
    entries = {entry.path: entry for entry in artifact.manifest.contents}
    assert set(entries) == set(SMALL_MODEL)
    for path, content in SMALL_MODEL.items():
        assert entries[path].size == len(content)
        assert entries[path].digest == _md5_b64(content)
        # The staged copy is what `wandb sync` uploads; it lives under WANDB_DATA_DIR, not in $HOME.
        staged = Path(entries[path].local_path)
        assert staged.is_relative_to(wandb_offline)
        assert staged.read_bytes() == content


def test_offline_save_uses_the_active_run(wandb_offline: Path, make_model: Callable[..., Path]) -> None:
    import wandb

    run = wandb.init(entity=ENTITY, project=PROJECT, job_type="train")
    mm = open_model_manager(f"wandb://{ENTITY}/{PROJECT}")
    mm.save(make_model({"w.bin": b"1"}), "lora")
    assert wandb.run is run  # still running: the caller's run is not ours to finish
    run.finish()
    runs = list((wandb_offline / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert [a.name for a in _artifacts(runs[0])] == ["lora"]


def test_active_run_of_another_project_is_refused(
    wandb_offline: Path, make_model: Callable[..., Path]
) -> None:
    import wandb

    wandb.init(entity=ENTITY, project="elsewhere")
    mm = open_model_manager(f"wandb://{ENTITY}/{PROJECT}")
    with pytest.raises(ModelError, match=r"active W&B run logs to .*/elsewhere"):
        mm.save(make_model({"w.bin": b"1"}), "lora")


def test_invalid_versions_are_refused_before_any_request() -> None:
    mm = open_model_manager(f"wandb://{ENTITY}/{PROJECT}")
    for bad in ("../x", "v1/../../x", "", "a:b"):
        with pytest.raises(ModelError, match="invalid W&B artifact version"):
            mm.load("bert", bad)
    with pytest.raises(ModelError, match="invalid model name"):
        mm.load("../bert")
