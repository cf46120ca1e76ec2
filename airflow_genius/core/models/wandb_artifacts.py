"""Models as Weights & Biases artifacts (optional extra ``wandb``).

A model named ``bert`` in ``wandb://entity/project`` is the artifact collection
``entity/project/bert`` of type ``model``; each ``save`` logs a new artifact version whose files are the
folder's files and whose metadata is the metadata dict. Version ids are W&B's own (``v0``, ``v1``, …,
numbered from 0) and ``load`` accepts any W&B alias (``latest``, ``v3``, ``production``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from airflow_genius.core.clock import parse_time
from airflow_genius.core.errors import missing_extra
from airflow_genius.core.models.base import (
    LocalFile,
    ModelError,
    ModelManager,
    ModelNotFoundError,
    ModelVersion,
)
from airflow_genius.core.paths import safe_relpath
from airflow_genius.core.uris import split_uri

ARTIFACT_TYPE = "model"
_ALIAS_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_WANDB_VERSION = re.compile(r"v([0-9]+)")


def _wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise missing_extra("wandb", "wandb") from None
    return wandb


class WandbModelManager(ModelManager):
    """Versioned model folders as W&B artifacts of type ``model`` in ``entity/project``.

    Usage::

        mm = open_model_manager("wandb://my-team/llm")
        version = mm.save("out/model", "bert", {"accuracy": 0.91})   # 'v3' (online)
        folder = mm.load("bert", "production")                      # any alias

    ``save`` logs on the active run (``wandb.run``) when it belongs to the same entity/project, so the
    artifact is linked to the training run; otherwise it starts a short run (``job_type=genius-model``)
    and finishes it. ``WANDB_MODE=offline`` works for ``save`` (air-gapped nodes, e.g. Slurm): the artifact
    is recorded in the offline run directory (``WANDB_DIR``), its files staged under ``WANDB_DATA_DIR``,
    and ``wandb sync`` uploads them later. The version number is only assigned by the server, so ``save``
    then returns ``offline-<digest>`` (the artifact's content digest, shown on the version once synced).
    With a run of its own, an offline ``save`` returns only once the run file is on disk.
    ``load`` (``use_artifact``/``Api().artifact`` + ``download``) and ``list_versions`` (public API)
    query the W&B server and need it.

    What the test suite covers (offline, no server): ``save`` in offline mode, on its own run and on the
    active run, by reading the artifact record (name, type, entity/project, metadata, file paths, sizes,
    md5 digests) back from the offline run file and comparing the staged copies byte for byte; URI,
    name and version validation; the missing-extra error. NOT covered (needs a W&B server): online
    ``save`` and the version it returns, ``load``, ``list_versions``.
    """

    def __init__(self, entity: str, project: str, *, artifact_type: str = ARTIFACT_TYPE) -> None:
        for label, value in (("entity", entity), ("project", project)):
            if not value or "/" in value or not value.strip():
                raise ModelError(f"W&B model store needs an {label}: expected wandb://entity/project")
        self.wandb = _wandb()  # fail on open, not at the first save deep inside a task
        self.entity = entity
        self.project = project
        self.artifact_type = artifact_type
        self.uri = f"wandb://{entity}/{project}"

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> WandbModelManager:
        """``wandb://entity/project`` → manager."""
        parts = split_uri(uri)
        project = parts.path.strip("/")
        if parts.scheme.lower() != "wandb" or not parts.netloc or not project or "/" in project:
            raise ModelError(f"invalid W&B model URI {uri!r}: expected wandb://entity/project")
        if parts.query or parts.fragment:
            raise ModelError(f"W&B model URI {uri!r} must not have a query or fragment")
        return cls(parts.netloc, project, **options)

    def _check_version(self, version: str) -> str:
        # W&B versions are its own ids and aliases, not our zero-padded numbers: pass them through.
        if not isinstance(version, str) or not _ALIAS_RE.fullmatch(version):
            raise ModelError(f"invalid W&B artifact version or alias {version!r}")
        return version

    def _qualified(self, name: str, version: str | None = None) -> str:
        base = f"{self.entity}/{self.project}/{name}"
        return f"{base}:{version}" if version else base

    def _active_run(self) -> Any:
        """The current run if it logs to our entity/project; a run elsewhere is an error, not a guess."""
        run = self.wandb.run
        if run is None:
            return None
        if run.project != self.project or (run.entity and run.entity != self.entity):
            raise ModelError(
                f"an active W&B run logs to {run.entity}/{run.project}, not {self.entity}/{self.project}; "
                "finish it or use a model URI for that project"
            )
        return run

    def _save(self, root: Path, files: list[LocalFile], name: str, metadata: dict[str, Any]) -> str:
        wandb = self.wandb
        artifact = wandb.Artifact(name, type=self.artifact_type, metadata=metadata)
        for f in files:
            # File by file from the validated list (not add_dir): symlinks that escape are already refused.
            artifact.add_file(str(f.path), name=f.relpath)
        run = self._active_run()
        own_run = run is None
        if own_run:
            run = wandb.init(entity=self.entity, project=self.project, job_type="genius-model")
        offline = bool(run.offline)
        try:
            run.log_artifact(artifact)
            if offline:
                return f"offline-{artifact.digest}"
            artifact.wait()  # online: returns once the server committed the version
            return str(artifact.version)
        finally:
            if own_run:
                run.finish()
                if offline:
                    # finish() hands the records to the wandb-core service, which writes the offline run
                    # file asynchronously; teardown waits until it is on disk, so a returned save is durable
                    # even if the process is killed right after. The next wandb.init starts a new service.
                    wandb.teardown()

    def _load_into(self, name: str, version: str, dest: Path) -> None:
        qualified = self._qualified(name, version)
        run = self.wandb.run
        try:
            if run is not None and not run.offline and run.project == self.project:
                artifact = run.use_artifact(qualified, type=self.artifact_type)  # records lineage
            else:
                artifact = self.wandb.Api().artifact(qualified, type=self.artifact_type)
        except Exception as exc:  # wandb raises CommError/ValueError/… depending on its version
            raise _translate(exc, f"cannot fetch W&B artifact {qualified!r}") from None
        for path in artifact.manifest.entries:
            safe_relpath(path)  # paths come from the server: refuse any that would leave `dest`
        try:
            artifact.download(root=str(dest))
        except Exception as exc:
            raise _translate(exc, f"download of W&B artifact {qualified!r} failed") from None

    def _list_versions(self, name: str) -> list[ModelVersion]:
        try:
            found = list(self.wandb.Api().artifacts(type_name=self.artifact_type, name=self._qualified(name)))
        except Exception as exc:
            error = _translate(exc, f"cannot list W&B artifacts {self._qualified(name)!r}")
            if isinstance(error, ModelNotFoundError):  # a missing collection: no versions, as elsewhere
                return []
            raise error from None
        versions = [
            ModelVersion(
                name=name,
                version=str(art.version),
                created_at=parse_time(art.created_at),
                metadata=dict(art.metadata or {}),
                files=tuple(sorted(art.manifest.entries)),
                size=int(art.size or 0),
                location=str(art.qualified_name) + f":{art.version}",
            )
            for art in found
        ]

        def number(v: ModelVersion) -> int:
            match = _WANDB_VERSION.fullmatch(v.version)
            return int(match.group(1)) if match else -1

        return sorted(versions, key=number)


def _translate(exc: Exception, what: str) -> ModelError:
    """A one-line ModelError for a wandb exception; "not found" answers become ModelNotFoundError."""
    lines = str(exc).strip().splitlines()
    detail = lines[0] if lines else type(exc).__name__
    lowered = str(exc).lower()
    if "not found" in lowered or "could not find" in lowered or "does not exist" in lowered:
        return ModelNotFoundError(f"{what}: {detail}")
    return ModelError(f"{what}: {detail}")
