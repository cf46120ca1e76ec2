"""Airflow Assets and OpenLineage datasets of genius operators: pure builders (docs/lineage.md).

A genius operator's output root is an outlet Asset and its input root (when written as a plain URI) an
inlet: ``file://`` for local folders, ``s3://`` for S3 prefixes, and the stream's own ``redis://``,
``rediss://`` or ``sqlite://`` URI for streams, reduced to where the log lives and the stream's name
(:func:`stream_asset_uri`), so a producer's and a consumer's URIs name one Asset. The provider registers
:func:`sanitize_stream_uri` for those schemes (``asset-uris`` in ``provider_info.py``), so a downstream
DAG's ``Asset("redis://redis:6379/0?stream=events&group=g")`` normalises the same way.

>>> asset_uri("/data/quotes/")
'file:///data/quotes'
>>> asset_uri("redis://redis/0?stream=events&group=counter&batch=50")
'redis://redis:6379/0?stream=events'
>>> asset_uri("{{ ti.xcom_pull(task_ids='fetch', key='genius_output') }}") is None
True

A model version a task saves is an event on the model's Asset, its store's URI plus ``/<name>``
(:func:`model_asset_uri`); a task that loads a model has that Asset as an inlet.

Kept light: Airflow imports this module while it loads providers (the URI handler).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlencode, urlunsplit

from airflow_genius.core.streams.base import STREAM_SCHEMES
from airflow_genius.core.uris import MODEL_ALIAS_PREFIX, OUTPUT_ALIAS_PREFIX

if TYPE_CHECKING:
    from airflow.sdk import Asset, AssetAlias

    from airflow_genius.core.data.manifest import Manifest
    from airflow_genius.core.state.base import RunRecord

#: Redis port a stream URI without one means (``redis://host/0`` and ``redis://host:6379/0`` are one Asset).
REDIS_DEFAULT_PORT = 6379
#: The runner modules of ``airflow_genius.operators``: the first one in an operator's MRO names its runner.
RUNNERS = ("local", "docker", "kubernetes", "ecs", "batch", "slurm")
#: Schema of the ``genius`` run facet (documented in docs/lineage.md).
RUN_FACET_SCHEMA = "urn:airflow-provider-genius:openlineage:genius-run-facet:1"


# ---------------------------------------------------------------------------------------------- URIs
def is_templated(value: object) -> bool:
    """Whether ``value`` is only known when the task runs: a Jinja template, or not a string at all
    (an XComArg)."""
    return not isinstance(value, str) or "{{" in value or "{%" in value


def _canonical_stream(parts: SplitResult) -> SplitResult:
    """The stream's identity: scheme, host and port (Redis) or file (SQLite), database, ``?stream=``."""
    scheme = parts.scheme.lower()
    stream = [value for name, value in parse_qsl(parts.query) if name == "stream"]
    if len(stream) != 1 or not stream[0]:
        raise ValueError(f"a {scheme}:// stream Asset URI needs exactly one ?stream=<name>")
    query = urlencode({"stream": stream[0]})
    if scheme == "sqlite":
        # A SQLite log names no host: a "host" here is the first folder of an absolute path that
        # Python 3.11's urlunsplit folded into one (sqlite:////var/s.db -> sqlite://var/s.db).
        path = f"//{parts.netloc}{parts.path}" if parts.netloc else parts.path
        return SplitResult(scheme, "", path, query, "")
    host = (parts.hostname or "localhost").lower()
    netloc = f"{host}:{parts.port or REDIS_DEFAULT_PORT}"
    db = parts.path.strip("/") or "0"
    return SplitResult(scheme, netloc, f"/{db}", query, "")


def is_stream(uri: object) -> bool:
    """Whether ``uri`` names a stream (``redis://``, ``rediss://``, ``sqlite://``) rather than a folder."""
    from airflow_genius.core.uris import split_uri

    return isinstance(uri, str) and split_uri(uri).scheme.lower() in STREAM_SCHEMES


def stream_asset_uri(uri: str) -> str:
    """The Asset URI of a stream: its ``redis://host:port/db`` or ``sqlite:///file`` plus ``?stream=``;
    the reading and writing parameters (group, consumer, batch, maxlen…) and any user name are dropped.

    >>> stream_asset_uri("sqlite:////var/genius/streams.db?group=g&stream=quotes")
    'sqlite:////var/genius/streams.db?stream=quotes'
    """
    from airflow_genius.core.uris import split_uri

    return _render(_canonical_stream(split_uri(uri)))


def _render(parts: SplitResult) -> str:
    """``urlunsplit`` that keeps ``sqlite:////abs.db`` (Python 3.11 drops two of its slashes)."""
    if parts.scheme == "sqlite":
        return f"sqlite://{parts.path}?{parts.query}" if parts.query else f"sqlite://{parts.path}"
    return urlunsplit(parts)


def sanitize_stream_uri(uri: SplitResult) -> SplitResult:
    """Airflow's URI handler for stream Assets (``asset-uris`` of ``provider_info.py``): the
    canonical form of :func:`stream_asset_uri`; a URI without ``?stream=`` raises ``ValueError``."""
    return _canonical_stream(uri)


def create_stream_asset(*, uri: str, extra: dict[str, Any] | None = None) -> Asset:
    """Airflow's Asset factory for stream URIs."""
    from airflow.sdk import Asset

    return Asset(uri=stream_asset_uri(uri), extra=extra)


def asset_uri(uri: object) -> str | None:
    """The Asset URI of a batch root or a stream (``file:///…``, ``s3://…``, ``redis://…?stream=``), or
    None when it is templated or not a location genius can read (the run reports that itself).

    >>> asset_uri("s3://lake/raw/events/"), asset_uri("file:///data/in")
    ('s3://lake/raw/events', 'file:///data/in')
    """
    if is_templated(uri) or not uri:
        return None
    assert isinstance(uri, str)
    from airflow_genius.core.data.locations import DataError, parse_data_uri

    if is_stream(uri):
        try:
            return stream_asset_uri(uri)
        except ValueError:
            return None
    try:
        location = parse_data_uri(uri)
    except DataError:
        return None
    return location.uri.rstrip("/") or location.uri


def alias_name(dag_id: str, task_id: str) -> str:
    """The AssetAlias of a task whose ``output_uri`` is templated: its rendered root is attached at run
    time. ``genius-output:etl.fetch``."""
    return f"{OUTPUT_ALIAS_PREFIX}{dag_id}.{task_id}"


def model_alias_name(dag_id: str, task_id: str) -> str:
    """The AssetAlias of a task that may save model versions: ``genius-model:train.fit``."""
    return f"{MODEL_ALIAS_PREFIX}{dag_id}.{task_id}"


def model_asset_uri(registry: object, name: object) -> str | None:
    """The Asset URI of model ``name`` in the model store ``registry``: the store's URI plus ``/<name>``.
    A git store drops ``git+`` and the user name (``git@``); S3 and local paths are normalised as
    :func:`asset_uri` does. None when either is templated or missing.

    >>> model_asset_uri("s3://ml/models/", "bert"), model_asset_uri("git+file:///srv/models.git", "bert")
    ('s3://ml/models/bert', 'file:///srv/models.git/bert')
    >>> model_asset_uri("git+ssh://git@git.example.com/ml/models.git", "bert")
    'ssh://git.example.com/ml/models.git/bert'
    >>> model_asset_uri("wandb://team/llm", "bert")
    'wandb://team/llm/bert'
    """
    if is_templated(registry) or is_templated(name) or not registry or not name:
        return None
    assert isinstance(registry, str) and isinstance(name, str)
    from airflow_genius.core.uris import split_uri

    text = registry.strip()
    # git+file://, git+ssh://: the repository's own URL names it (the part git is given)
    text = text[len("git+") :] if text.lower().startswith("git+") else text
    try:
        parts = split_uri(text)
    except ValueError:
        return None
    if not parts.scheme:
        return None
    path = "/".join([*(segment for segment in parts.path.split("/") if segment), name])
    netloc = parts.netloc.rpartition("@")[2]  # a user name is how one reaches the store, not which
    if parts.scheme in ("file", "s3") and (uri := asset_uri(f"{parts.scheme}://{netloc}/{path}")):
        return uri
    return urlunsplit((parts.scheme, netloc, f"/{path}", "", ""))


def declared_assets(
    input_uri: object,
    output_uri: object,
    *,
    dag_id: str | None,
    task_id: str,
    model_uri: object = None,
    model_name: object = None,
) -> tuple[list[Asset], list[Asset | AssetAlias]]:
    """The (inlets, outlets) an operator declares when the DAG is parsed.

    A plain ``output_uri`` is an outlet Asset; a templated one an AssetAlias (:func:`alias_name`, only
    inside a DAG) that the rendered root's Asset joins when the run commits. A plain ``input_uri`` is an
    inlet; a templated one (an upstream partition from XCom) is none: its upstream task's outlet is the
    Asset. With a ``model_uri``: a plain ``model_name`` (a model the task loads) is an inlet
    (:func:`model_asset_uri`); without one the task may save versions of any name, so it declares the
    AssetAlias :func:`model_alias_name` (inside a DAG) that each saved version's Asset joins.
    """
    from airflow.sdk import Asset, AssetAlias

    inlets: list[Asset] = []
    outlets: list[Asset | AssetAlias] = []
    if (uri := asset_uri(input_uri)) is not None:
        inlets.append(Asset(uri))
    if (uri := asset_uri(output_uri)) is not None:
        outlets.append(Asset(uri))
    elif output_uri and is_templated(output_uri) and dag_id:
        outlets.append(AssetAlias(alias_name(dag_id, task_id)))
    if model_uri:
        if isinstance(model_name, str) and model_name and not is_templated(model_name):
            if (uri := model_asset_uri(model_uri, model_name)) is not None:
                inlets.append(Asset(uri))
        elif dag_id:
            outlets.append(AssetAlias(model_alias_name(dag_id, task_id)))
    return inlets, outlets


def expanded_keys(value: object) -> set[str] | None:
    """The arguments a mapped operator's ``expand()`` / ``expand_kwargs()`` gives (its expand input's
    ``value``); None when they are only known when the task runs (``expand_kwargs`` of an XCom)."""
    if isinstance(value, Mapping):
        return set(value)
    if isinstance(value, (list, tuple)) and all(isinstance(item, Mapping) for item in value):
        return {key for item in value for key in item}
    return None


def mapped_declared_assets(
    partial_kwargs: Mapping[str, Any], expanded: set[str] | None, *, dag_id: str | None, task_id: str
) -> tuple[list[Asset], list[Asset | AssetAlias]]:
    """The (inlets, outlets) of a mapped genius operator (``partial().expand()``), when the DAG is
    parsed: as :func:`declared_assets` for the arguments given to ``partial()``; an ``output_uri`` that
    comes from the expansion (``expanded`` names it, or is None: not known yet) is templated for this
    purpose, so its alias is declared; an expanded ``input_uri`` declares nothing. A ``model_uri`` in
    ``partial()`` or the expansion declares the model alias unless ``partial()`` names the model."""
    output_uri = partial_kwargs.get("output_uri")
    if output_uri is None and (expanded is None or "output_uri" in expanded):
        output_uri = _EXPANDED
    model_uri = partial_kwargs.get("model_uri")
    if model_uri is None and expanded is not None and "model_uri" in expanded:
        model_uri = _EXPANDED
    model_name = partial_kwargs.get("model_name")
    if model_name is None and (expanded is None or "model_name" in expanded):
        model_name = _EXPANDED
    return declared_assets(
        partial_kwargs.get("input_uri"),
        output_uri,
        dag_id=dag_id,
        task_id=task_id,
        model_uri=model_uri,
        model_name=model_name,
    )


#: Stands for an argument that each mapped instance gets from ``expand()``: known only at run time.
_EXPANDED = object()


@functools.cache
def genius_partial_class() -> type:
    """``OperatorPartial`` of genius operators (``GeniusOperatorMixin.partial``): ``expand()`` and
    ``expand_kwargs()`` declare the mapped operator's inlets and outlets (:func:`mapped_declared_assets`),
    since Airflow only builds the operator, and runs its ``__init__``, when each mapped instance runs."""
    from airflow.sdk.definitions.mappedoperator import OperatorPartial

    class GeniusOperatorPartial(OperatorPartial):  # type: ignore[misc]
        __slots__ = ()  # the layout of OperatorPartial: partial() swaps the class of its result

        def _expand(self, expand_input: Any, *, strict: bool) -> Any:
            mapped = super()._expand(expand_input, strict=strict)
            dag = self.kwargs.get("dag")
            inlets, outlets = mapped_declared_assets(
                self.kwargs,
                expanded_keys(expand_input.value),
                dag_id=dag.dag_id if dag is not None else None,
                task_id=mapped.task_id,
            )
            mapped.inlets = [*mapped.inlets, *(a for a in inlets if a not in mapped.inlets)]
            mapped.outlets = [*mapped.outlets, *(a for a in outlets if a not in mapped.outlets)]
            return mapped

    return GeniusOperatorPartial


# ---------------------------------------------------------------------------------------------- commits
def manifest_digest(manifest: Manifest) -> str:
    """sha256 of the ``_SUCCESS`` manifest as committed (its JSON is canonical: sorted keys)."""
    return hashlib.sha256(manifest.to_json().encode()).hexdigest()


def read_committed_manifest(location: str) -> Manifest | None:
    """The manifest of a committed batch partition; None for a stream, a partition not committed, or
    one this worker cannot read (no S3 credentials here): the event then goes without a digest."""
    import logging

    from airflow_genius.core.data.manifest import read_manifest

    try:
        return read_manifest(location)
    except Exception as exc:
        logging.getLogger(__name__).warning("could not read the manifest of %s: %s", location, exc)
        return None


def run_extra(record: RunRecord, *, runner: str) -> dict[str, Any]:
    """What every asset event of a run carries in its ``extra``: the run's identity and its runner."""
    return {
        "dag_id": record.key.dag_id,
        "task_id": record.key.task_id,
        "run_id": record.key.run_id,
        "map_index": record.key.map_index,
        "runner": runner,
    }


def commit_extra(
    record: RunRecord, *, runner: str, remote_job_id: str | None, manifest: Manifest | None
) -> dict[str, Any]:
    """The ``extra`` of the asset event a committed run emits: run identity, where the partition is,
    how many files and the manifest's digest (JSON only)."""
    metrics = record.metrics
    extra = run_extra(record, runner=runner)
    location = metrics.get("output_location")
    extra["stream_uri" if is_stream(location) else "partition_uri"] = location
    if remote_job_id:
        extra["remote_job_id"] = remote_job_id
    if "output_files" in metrics:
        extra["file_count"] = metrics["output_files"]
    if manifest is not None:
        extra["file_count"] = len(manifest.files)
        extra["total_bytes"] = manifest.total_bytes
        extra["partition"] = manifest.partition
        extra["manifest_sha256"] = manifest_digest(manifest)
    if "window_records" in metrics:
        extra["window_records"] = metrics["window_records"]
    return extra


def model_events(record: RunRecord, *, runner: str) -> list[tuple[str, dict[str, Any]]]:
    """(Asset URI, ``extra``) of each model version the run saved, from its ``models_saved`` metric
    (``core/task.py``), in save order: the model's name, version and content digest, its store
    (``registry``) and the run (:func:`run_extra`). Entries that are not a saved version are skipped."""
    from airflow_genius.core.task import MODELS_SAVED_METRIC
    from airflow_genius.core.uris import redact

    saved = record.metrics.get(MODELS_SAVED_METRIC)
    events = []
    for entry in saved if isinstance(saved, list) else []:
        if not isinstance(entry, Mapping) or not all(
            isinstance(entry.get(key), str) for key in ("uri", "name", "version", "digest")
        ):
            continue
        uri = model_asset_uri(entry["uri"], entry["name"])
        if uri is None:
            continue
        extra = {
            "name": entry["name"],
            "version": entry["version"],
            "digest": entry["digest"],
            "registry": redact(entry["uri"]),
            **run_extra(record, runner=runner),
        }
        events.append((uri, extra))
    return events


def partition_root(manifest: Manifest) -> str | None:
    """The output root a committed partition belongs to (its Asset), from the manifest's run identity;
    None when the location does not end with that layout.

    >>> from airflow_genius.core.data.manifest import Manifest, PartitionKey
    >>> m = Manifest(run=PartitionKey("etl", "fetch", "r:1"), partition="2024/01/02",
    ...              location="s3://lake/quotes/etl/fetch/2024/01/02/r~3A1/")
    >>> partition_root(m)
    's3://lake/quotes'
    """
    from airflow_genius.core.data.manifest import identity_segment

    run = manifest.run
    parts = [identity_segment("dag_id", run.dag_id), identity_segment("task_id", run.task_id)]
    parts += [manifest.partition, identity_segment("run_id", run.run_id)]
    if run.map_index >= 0:
        parts.append(f"map_index={run.map_index}")
    suffix = "/" + "/".join(parts) + "/"
    # A local location is a file:// URI, percent-encoded ("+" of a run id as %2B): compare it decoded.
    location = manifest.location if manifest.location.startswith("s3://") else unquote(manifest.location)
    if not location.endswith(suffix):
        return None
    return location[: -len(suffix)] or None


def upstream_root(input_uri: object) -> str | None:
    """The output root of the upstream task whose committed partition ``input_uri`` is (what its
    ``genius_output`` XCom gave); None for a stream, a plain folder or a partition not committed."""
    if asset_uri(input_uri) is None or is_stream(input_uri):
        return None
    assert isinstance(input_uri, str)
    manifest = read_committed_manifest(input_uri)
    return partition_root(manifest) if manifest is not None else None


def runner_name(operator_class: type) -> str:
    """``local``, ``docker``, ``kubernetes``, ``ecs``, ``batch`` or ``slurm``: the first genius runner
    module in the class's MRO (a service operator or a user's subclass counts as its runner); else the
    class's own module name."""
    for klass in operator_class.__mro__:
        module = klass.__module__
        if module.startswith("airflow_genius.operators."):
            name = module.rsplit(".", 1)[-1]
            if name in RUNNERS:
                return name
    return operator_class.__module__.rsplit(".", 1)[-1]


# ---------------------------------------------------------------------------------------------- OpenLineage
def openlineage_id(uri: object) -> tuple[str, str] | None:
    """OpenLineage's (namespace, name) of a location, as the official providers name them: ``file`` +
    path, ``s3://bucket`` + key prefix, ``redis://host:port/db`` (or ``sqlite:///file``) + stream.

    >>> openlineage_id("s3://lake/raw/events/"), openlineage_id("/data/in")
    (('s3://lake', 'raw/events'), ('file', '/data/in'))
    """
    canonical = asset_uri(uri)
    if canonical is None:
        return None
    from airflow_genius.core.uris import split_uri

    return _openlineage_parts(split_uri(canonical))


def model_openlineage_id(uri: str) -> tuple[str, str]:
    """OpenLineage's (namespace, name) of a model Asset URI (:func:`model_asset_uri`): as
    :func:`openlineage_id` for S3 and local stores, else ``scheme://host`` + the path.

    >>> model_openlineage_id("s3://ml/models/bert"), model_openlineage_id("wandb://team/llm/bert")
    (('s3://ml', 'models/bert'), ('wandb://team', 'llm/bert'))
    """
    from airflow_genius.core.uris import split_uri

    return _openlineage_parts(split_uri(uri))


def _openlineage_parts(parts: SplitResult) -> tuple[str, str]:
    if parts.scheme in STREAM_SCHEMES:
        parts = _canonical_stream(parts)
        stream = dict(parse_qsl(parts.query))["stream"]
        return _render(parts._replace(query="")), stream
    if parts.scheme == "s3":
        return f"s3://{parts.netloc}", parts.path.strip("/") or "/"
    if parts.scheme == "file":
        return "file", unquote(parts.path)
    return f"{parts.scheme}://{parts.netloc}", unquote(parts.path).strip("/") or "/"


def convert_stream_asset_to_openlineage(asset: Asset, lineage_context: Any) -> Any:
    """Airflow's OpenLineage converter for stream Assets (``asset-uris`` of ``provider_info.py``)."""
    from openlineage.client.event_v2 import Dataset

    found = openlineage_id(asset.uri)
    if found is None:
        raise ValueError(f"not a genius stream Asset: {asset.uri!r}")
    return Dataset(namespace=found[0], name=found[1])


@functools.cache
def _run_facet_class() -> type:
    """The ``genius`` run facet, defined once the OpenLineage client is importable."""
    from attrs import define
    from openlineage.client.facet_v2 import RunFacet

    @define
    class GeniusRunFacet(RunFacet):  # type: ignore[misc]
        """What ran where: the runner, its remote job, the task class and method, the commit."""

        runner: str
        remoteJobId: str | None  # noqa: N815 - OpenLineage facets use camelCase
        taskClass: str  # noqa: N815
        method: str
        kind: str
        partitionUri: str | None = None  # noqa: N815
        fileCount: int | None = None  # noqa: N815
        manifestSha256: str | None = None  # noqa: N815

        @staticmethod
        def _get_schema() -> str:
            return RUN_FACET_SCHEMA

    return GeniusRunFacet


def operator_lineage(
    *,
    input_uri: object,
    output_uri: object,
    runner: str,
    remote_job_id: str | None,
    task_class: str,
    method: str,
    kind: str,
    commit: Mapping[str, Any] | None,
    input_root: str | None = None,
    model_input: str | None = None,
    models: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> Any:
    """The ``OperatorLineage`` of a genius task: its input and output datasets (output statistics when
    it committed) and the ``genius`` run facet. ``commit`` is the asset event's extra
    (:func:`commit_extra`); ``input_root`` the upstream root when the input is a committed partition;
    ``model_input`` the Asset URI of the model it loads; ``models`` the versions it saved
    (:func:`model_events`): one output dataset each, with its version."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset, output_statistics_output_dataset

    inputs, outputs = [], []
    if (found := openlineage_id(input_root or input_uri)) is not None:
        inputs.append(InputDataset(namespace=found[0], name=found[1]))
    if model_input is not None:
        namespace, name = model_openlineage_id(model_input)
        inputs.append(InputDataset(namespace=namespace, name=name))
    commit = commit or {}
    if (found := openlineage_id(output_uri)) is not None:
        facets: dict[str, Any] = {}
        if commit.get("file_count") is not None:
            facets["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                fileCount=commit["file_count"], size=commit.get("total_bytes")
            )
        outputs.append(OutputDataset(namespace=found[0], name=found[1], outputFacets=facets))
    for uri, extra in models:
        namespace, name = model_openlineage_id(uri)
        version = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(extra["version"]))
        outputs.append(OutputDataset(namespace=namespace, name=name, facets={"version": version}))
    facet = _run_facet_class()(
        runner=runner,
        remoteJobId=remote_job_id,
        taskClass=task_class,
        method=method,
        kind=kind,
        partitionUri=commit.get("partition_uri"),
        fileCount=commit.get("file_count"),
        manifestSha256=commit.get("manifest_sha256"),
    )
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets={"genius": facet})
