"""Geniusfile: a YAML description of a pipeline (spouts, bolts, their data and state) that anyone can
write, validated here and rendered into an Airflow DAG by :mod:`airflow_genius.dag_factory`.

.. code-block:: yaml

    version: 1
    dag:
      id: quotes_pipeline
      schedule: "@daily"
      params: {count: 20}
    spouts:
      fetch:
        class: airflow_genius.examples.tasks:QuoteSpout
        method: fetch
        kwargs: {count: "{{ params.count }}"}
        output: /data/quotes
    bolts:
      count:
        class: airflow_genius.examples.tasks:WordCount
        method: count
        input: fetch                 # the committed output partition of the spout 'fetch'
        output: /data/counts

Usage::

    gf = load_geniusfile("dags/quotes.genius.yaml")
    gf.summary()                                         # '1 spout, 1 bolt'
    [(t.name, t.input_task) for t in gf.tasks]           # [('fetch', None), ('count', 'fetch')]

Every problem is one :class:`GeniusfileError` line naming the entry and the field, e.g.
``bolts.count.input: unknown upstream 'fech' (known: fetch)``. This module is part of the core: it never
imports Airflow, so ``genius dag validate`` runs in CI without it. PyYAML comes with the ``yaml`` extra.
The format's reference is ``docs/geniusfile.md``.
"""

from __future__ import annotations

import keyword
import math
import os
import re
from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from airflow_genius.core.defaults import DEFAULT_NAMESPACE
from airflow_genius.core.errors import GeniusError, SpecError, missing_extra

# The TaskSpec's own rules, as plain values: not core.spec, whose dataclasses only a running task needs.
from airflow_genius.core.spec_rules import (
    _data_type_of,
    check_data_uri,
    check_stream_uri,
    model_fields,
    refuse_secret,
    service_fields,
    state_fields,
    task_fields,
)
from airflow_genius.core.uris import ALIAS_PREFIXES, DATA_CREDENTIALS_HINT

#: Geniusfile format versions this package reads.
GENIUSFILE_VERSIONS = frozenset({1})
#: A folder's Geniusfiles are the files whose names end with this.
GENIUSFILE_SUFFIX = ".genius.yaml"
#: Runners a step may name (``airflow_genius.dag_factory.OPERATORS`` has each one's operators).
RUNNERS = ("local", "docker", "kubernetes", "ecs", "batch", "slurm")
#: Runners with service operators (start and stop); a Batch job cannot serve.
SERVICE_RUNNERS = ("local", "docker", "kubernetes", "ecs", "slurm")
#: Operator arguments the Geniusfile sets from its own keys: never in ``platform`` or ``operator``.
#: Maps each to the key that sets it (shown in the error).
GENIUS_ARGUMENTS: Mapping[str, str] = {
    "task_id": "the entry's name",
    "task_class": "class",
    "method": "method",
    "method_args": "args",
    "method_kwargs": "kwargs",
    "input_uri": "input",
    "output_uri": "output",
    "state_conn_id": "state",
    "state_uri": "state",
    "state_namespace": "state",
    "model_uri": "model",
    "model_name": "model",
    "model_version": "model",
    "service": "service",
    "service_port": "port",
    "health_path": "health_path",
    "ready_timeout": "ready_timeout_seconds",
    "start_timeout": "start_timeout_seconds",
    "service_name": "the service's name",
    "service_map_index": "the service's name",
    "retries": "retries",
    "retry_delay": "retry_delay_seconds",
    "execution_timeout": "timeout_seconds",
    "pool": "pool",
    "queue": "queue",
    "doc_md": "doc",
    "dag": "the file itself",
    "task_group": "the file itself",
}
#: Airflow's rule for dag_id and task_id (ASCII only here: names also end up in URIs and paths).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+$")
ID_MAX_LENGTH = 250
#: Schedule presets Airflow understands besides cron expressions.
SCHEDULE_PRESETS = (
    "@once",
    "@continuous",
    "@hourly",
    "@daily",
    "@weekly",
    "@monthly",
    "@quarterly",
    "@yearly",
)
#: JSON-schema keywords a detailed param may carry (they become the Airflow Param's schema).
PARAM_KEYS = frozenset(
    {
        "default",
        "type",
        "title",
        "description",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "examples",
    }
)
_JSON_TYPES = ("string", "integer", "number", "boolean", "array", "object", "null")

_TOP_KEYS = frozenset({"version", "dag", "runners", "defaults", "spouts", "bolts", "services"})
_DAG_KEYS = frozenset({"id", "schedule", "start_date", "catchup", "tags", "params", "description", "doc"})
_DEFAULT_KEYS = frozenset(
    {"runner", "retries", "retry_delay_seconds", "state", "timeout_seconds", "pool", "queue", "operator"}
)
_STEP_KEYS = frozenset(
    {"class", "method", "args", "kwargs", "after", "doc", "model", "platform", *_DEFAULT_KEYS}
)
_SPOUT_KEYS = _STEP_KEYS | {"output", "map", "service"}
_BOLT_KEYS = _SPOUT_KEYS | {"input"}
_SERVICE_KEYS = _STEP_KEYS | {
    "input",
    "port",
    "health_path",
    "ready_timeout_seconds",
    "start_timeout_seconds",
}
_KEYS_OF = {"spout": _SPOUT_KEYS, "bolt": _BOLT_KEYS, "service": _SERVICE_KEYS}
_SECTIONS = {"spout": "spouts", "bolt": "bolts", "service": "services"}
#: The stop task of service ``serve`` is ``serve_stop``.
STOP_SUFFIX = "_stop"
_STATE_KEYS = frozenset({"conn_id", "uri", "namespace"})
_MAP_KEYS = frozenset({"kwargs"})

#: The conditions an asset schedule may combine its assets with (Airflow's ``&`` and ``|``).
ASSET_CONDITIONS = ("all", "any")

_ENV_VAR = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")
_PARAM_REF = re.compile(r"\bparams\.([A-Za-z_][A-Za-z0-9_]*)")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?#-]+$")


class GeniusfileError(SpecError):
    """A Geniusfile is malformed. ``str()`` is one line: ``[<file>: ]<entry.field>: <problem>``.

    >>> str(GeniusfileError("bolts.count.input", "unknown upstream 'fech' (known: fetch)"))
    "bolts.count.input: unknown upstream 'fech' (known: fetch)"
    """

    def __init__(self, field: str, problem: str, *, got: object = ..., source: str | None = None) -> None:
        super().__init__(field, problem, got=got)
        self.detail = str(self.args[0])
        self.source = source

    def __str__(self) -> str:
        return f"{self.source}: {self.detail}" if self.source else self.detail


# ---------------------------------------------------------------------- the parsed Geniusfile
# Immutable records as NamedTuples, not frozen dataclasses: the DAG processor imports this module in
# every process that parses a Geniusfile, and a frozen dataclass costs about ten times as much to
# define (its methods are generated and compiled at import). Type checkers see typing.NamedTuple; at
# run time _Record builds the same class without typing's check of each field's type, which compiles
# every annotation (all are strings here) and took 1.5 ms of the module's 1.7 ms import.
if TYPE_CHECKING:
    from typing import NamedTuple as _Record
else:

    class _RecordType(type):
        """``class X(_Record)`` is what ``class X(typing.NamedTuple)`` makes: a ``collections.namedtuple``
        of the annotated fields, with their defaults, the class's methods and its docstring."""

        def __new__(metacls, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> type:
            if not bases:  # _Record itself
                return super().__new__(metacls, name, bases, namespace)
            fields = tuple(namespace.get("__annotations__", {}))
            defaults = [namespace[field] for field in fields if field in namespace]
            if any(field in namespace for field in fields[: len(fields) - len(defaults)]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            record = namedtuple(name, fields, defaults=defaults, module=namespace["__module__"])
            for key, value in namespace.items():
                if key not in fields and key not in ("__module__", "__qualname__"):
                    setattr(record, key, value)
            record.__qualname__ = namespace["__qualname__"]
            return record

    _Record = _RecordType("_Record", (), {})

#: The default of a mapping field: shared by every record, so it cannot be changed.
_NOTHING: Mapping[str, Any] = MappingProxyType({})


class StateSettings(_Record):
    """Where run records live: an Airflow connection (``conn_id``) or a state URI, and a namespace."""

    conn_id: str | None = None
    uri: str | None = None
    namespace: str = DEFAULT_NAMESPACE


class ModelSettings(_Record):
    """A step's ``model``: the model manager URI, the model's name and version (the TaskSpec's
    ``model`` section)."""

    uri: str
    name: str | None = None
    version: str = "latest"


class ParamSettings(_Record):
    """One DAG param (a field of the trigger form): its default and JSON-schema keywords."""

    name: str
    default: Any = None
    has_default: bool = True
    schema: Mapping[str, Any] = _NOTHING


class AssetSchedule(_Record):
    """A schedule on assets: run once ``all`` (or ``any``) of ``items`` were updated since the last run.

    Each item is an asset URI as written (``${VAR}`` expanded; ``dag_factory`` normalises it the way
    genius operators name their outlets), a ``genius-output:<dag_id>.<task_id>`` or
    ``genius-model:<dag_id>.<task_id>`` alias, or a nested
    :class:`AssetSchedule`. ``schedule: [/data/quotes]`` is ``AssetSchedule("all", ("/data/quotes",))``.
    """

    condition: str
    items: tuple[str | AssetSchedule, ...]

    def names(self) -> tuple[str, ...]:
        """Every URI and alias, nested ones included, in file order."""
        return tuple(
            name
            for item in self.items
            for name in (item.names() if isinstance(item, AssetSchedule) else (item,))
        )


class DagSettings(_Record):
    """The ``dag:`` section; ``schedule`` is a cron expression or preset, an :class:`AssetSchedule`,
    or None (manual runs only)."""

    id: str
    schedule: str | AssetSchedule | None = None
    start_date: datetime | None = None
    catchup: bool = False
    tags: tuple[str, ...] = ()
    params: tuple[ParamSettings, ...] = ()
    description: str | None = None
    doc: str | None = None


class Defaults(_Record):
    """The ``defaults:`` section; every task inherits these unless it sets its own (``operator``: key
    by key)."""

    runner: str = "local"
    retries: int | None = None
    retry_delay_seconds: float | None = None
    state: StateSettings | None = None
    timeout_seconds: float | None = None
    pool: str | None = None
    queue: str | None = None
    operator: Mapping[str, Any] = _NOTHING


class ServiceSettings(_Record):
    """How a service listens and how long it may take (None: the operator's default)."""

    port: int = 8000
    health_path: str = "/health"
    ready_timeout_seconds: float | None = None
    start_timeout_seconds: float | None = None


class TaskEntry(_Record):
    """One spout, bolt or service with the defaults already applied.

    ``input_task`` names the upstream whose committed output this bolt reads; ``input_uri`` is a fixed
    folder instead. ``map_kwargs`` (mapped tasks) holds one complete kwargs mapping per mapped instance.
    ``platform`` holds the entry's own platform arguments (:meth:`Geniusfile.platform_of` merges them
    over its runner's); ``service`` names the service this entry is a client of; ``serves`` is set on
    services only.
    """

    name: str
    kind: str
    class_path: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = _NOTHING
    input_task: str | None = None
    input_uri: str | None = None
    output_uri: str | None = None
    after: tuple[str, ...] = ()
    map_kwargs: tuple[dict[str, Any], ...] | None = None
    runner: str = "local"
    retries: int | None = None
    retry_delay_seconds: float | None = None
    state: StateSettings | None = None
    model: ModelSettings | None = None
    doc: str | None = None
    timeout_seconds: float | None = None
    pool: str | None = None
    queue: str | None = None
    operator: Mapping[str, Any] = _NOTHING
    platform: Mapping[str, Any] = _NOTHING
    service: str | None = None
    serves: ServiceSettings | None = None

    @property
    def where(self) -> str:
        """The entry's name in error messages: ``spouts.fetch``, ``bolts.count``, ``services.serve``."""
        return f"{_SECTIONS[self.kind]}.{self.name}"

    @property
    def stop_name(self) -> str:
        """The task id of a service's stop task (``serve_stop``)."""
        return self.name + STOP_SUFFIX

    @property
    def mapped(self) -> bool:
        return self.map_kwargs is not None

    @property
    def upstream(self) -> tuple[str, ...]:
        """Tasks that must finish first: the input task, the service (its start task), then ``after``."""
        return tuple(name for name, _ in self.upstream_fields())

    def upstream_fields(self) -> tuple[tuple[str, str], ...]:
        """Each upstream with the field that names it (``input``, ``service`` or ``after``)."""
        fields = [(self.input_task, "input"), (self.service, "service")]
        fields += [(name, "after") for name in self.after]
        seen: dict[str, str] = {}
        for name, via in fields:
            if name and name not in seen:
                seen[name] = via
        return tuple(seen.items())


class Geniusfile(_Record):
    """A validated Geniusfile; ``tasks`` is in dependency order (upstream first, then file order)."""

    version: int
    dag: DagSettings
    defaults: Defaults
    tasks: tuple[TaskEntry, ...]
    source: str | None = None
    #: ``runners:``: each runner's platform arguments.
    runners: Mapping[str, Mapping[str, Any]] = _NOTHING
    #: Things worth knowing that are not errors (a service without a client), one line each.
    notes: tuple[str, ...] = ()

    @property
    def spouts(self) -> tuple[TaskEntry, ...]:
        return tuple(t for t in self.tasks if t.kind == "spout")

    @property
    def bolts(self) -> tuple[TaskEntry, ...]:
        return tuple(t for t in self.tasks if t.kind == "bolt")

    @property
    def services(self) -> tuple[TaskEntry, ...]:
        return tuple(t for t in self.tasks if t.kind == "service")

    def clients_of(self, service: str) -> tuple[TaskEntry, ...]:
        """The spouts and bolts whose ``service`` is ``service``."""
        return tuple(t for t in self.tasks if t.service == service)

    def platform_of(self, entry: TaskEntry) -> dict[str, Any]:
        """The entry's platform arguments: its runner's block, then its own ``platform`` key by key."""
        return {**self.runners.get(entry.runner, {}), **entry.platform}

    def task(self, name: str) -> TaskEntry:
        """The task called ``name`` (KeyError if there is none)."""
        for entry in self.tasks:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def summary(self) -> str:
        """``2 spouts, 1 bolt`` (and ``, 1 service`` when there are services)."""
        counts = [("spout", len(self.spouts)), ("bolt", len(self.bolts))]
        if self.services:
            counts.append(("service", len(self.services)))
        return ", ".join(f"{n} {what}{'' if n == 1 else 's'}" for what, n in counts)


# ---------------------------------------------------------------------- entry points
def load_geniusfile(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Geniusfile:
    """Read and validate the Geniusfile at ``path``; errors carry the path as their ``source``.

    >>> gf = load_geniusfile("dags_examples/quotes.genius.yaml")      # doctest: +SKIP
    >>> gf.summary()                                                   # doctest: +SKIP
    '1 spout, 2 bolts'
    """
    source = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_YAML_BYTES + 1)  # never more: a huge file is refused unread
        _check_yaml_size(len(raw))
        text = raw.decode("utf-8")
    except GeniusfileError as exc:
        exc.source = source
        raise
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise GeniusfileError("file", f"cannot read: {reason}", source=source) from None
    return parse_geniusfile(text, source=source, env=env)


def parse_geniusfile(
    text: str, *, source: str | None = None, env: Mapping[str, str] | None = None
) -> Geniusfile:
    """Parse and validate Geniusfile text. ``${VAR}`` / ``${VAR:-default}`` in ``input``, ``output``,
    ``state.uri`` and ``model.uri`` expand from ``env`` (default ``os.environ``)."""
    try:
        data = _load_yaml(text)
        return _Parser(os.environ if env is None else env).parse(data, source)
    except GeniusfileError as exc:
        exc.source = source
        raise


def find_geniusfiles(folder: str | os.PathLike[str]) -> list[Path]:
    """The ``*.genius.yaml`` files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).glob(f"*{GENIUSFILE_SUFFIX}") if p.is_file())


def check_task_classes(geniusfile: Geniusfile) -> None:
    """Import every task class and check its kind, method and keyword arguments.

    Not part of :func:`parse_geniusfile` on purpose: the DAG processor must not import task code (it
    may need ML libraries that live only in the runner's image). ``genius dag validate`` calls it.
    """
    from airflow_genius.core.discovery import load_task_class

    for entry in geniusfile.tasks:
        try:
            cls = load_task_class(entry.class_path)
        except GeniusError as exc:
            raise GeniusfileError(f"{entry.where}.class", str(exc), source=geniusfile.source) from None
        # A service may be any kind of task class: serving is what its method does, not its kind.
        if entry.kind != "service" and cls.kind not in (entry.kind, "task"):
            raise GeniusfileError(
                f"{entry.where}.class",
                f"{entry.class_path} is a {cls.kind}; list it under {cls.kind}s",
                source=geniusfile.source,
            )
        methods = cls.task_methods()
        if entry.method not in methods:
            raise GeniusfileError(
                f"{entry.where}.method",
                f"{cls.__name__} has no task method {entry.method!r} (has: {', '.join(sorted(methods))})",
                source=geniusfile.source,
            )
        signature = methods[entry.method]
        takes = ", ".join(list(signature.parameters)[1:]) or "no arguments"
        calls = (
            [(f"{entry.where}.map.kwargs[{i}]", kwargs) for i, kwargs in enumerate(entry.map_kwargs)]
            if entry.map_kwargs is not None
            else [(f"{entry.where}.kwargs", entry.kwargs)]
        )
        for where, kwargs in calls:
            try:
                signature.bind(None, *entry.args, **kwargs)  # None stands in for self
            except TypeError as exc:
                raise GeniusfileError(
                    where, f"{cls.__name__}.{entry.method}() {exc} (takes: {takes})", source=geniusfile.source
                ) from None


#: Entry point group of checks ``genius dag validate`` runs after parsing: callables taking a
#: :class:`Geniusfile` and raising :class:`GeniusfileError`. This package registers the check of
#: platform and operator arguments against the operators' signatures (``airflow_genius.dag_factory``).
CHECKS_ENTRY_POINT_GROUP = "genius.geniusfile_checks"


def load_geniusfile_checks() -> tuple[list[Callable[[Geniusfile], None]], list[str]]:
    """The checks registered under :data:`CHECKS_ENTRY_POINT_GROUP`, and a note for each that cannot
    run here (it needs Airflow, which is not installed) — the core never imports Airflow itself."""
    from importlib.metadata import entry_points

    checks: list[Callable[[Geniusfile], None]] = []
    notes: list[str] = []
    found = entry_points(group=CHECKS_ENTRY_POINT_GROUP)
    for point in found:
        try:
            checks.append(point.load())
        except ModuleNotFoundError as exc:
            missing = exc.name or str(exc)
            if missing != "airflow" and not missing.startswith("airflow."):
                raise
            notes.append(f"check {point.name!r} ({point.value}) not run: Airflow is not installed")
    if not found:
        notes.append(
            f"no {CHECKS_ENTRY_POINT_GROUP} entry point is installed: platform arguments not checked"
        )
    return checks, notes


# ---------------------------------------------------------------------- YAML
#: Limits of a Geniusfile's YAML, checked before any value is built (real pipelines need a fraction):
#: its size in bytes, how deep values nest, and how many values it holds once aliases are expanded —
#: nine levels of ten ``*aliases`` each are 10**9 values written in 1 KB (a "billion laughs" file).
MAX_YAML_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 100
MAX_YAML_VALUES = 20_000


def _check_yaml_size(size: int) -> None:
    if size > MAX_YAML_BYTES:
        raise GeniusfileError("file", f"larger than {MAX_YAML_BYTES:,} bytes, the limit of a Geniusfile")


def _load_yaml(text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise missing_extra("yaml", "yaml") from None
    _check_yaml_size(len(text.encode("utf-8", "surrogatepass")))
    if yaml.__with_libyaml__:
        # libyaml scans and parses several times faster (most of a DAG file's parse time). A plain
        # document (the usual Geniusfile) is composed in C and its values built directly; anything
        # else is composed again under the checks below, whose errors name the field. On any problem
        # the pure-Python loader reads the text again, so errors keep PyYAML's words and the
        # scanner's own depth check.
        try:
            return _plain_yaml(text)
        except (_NotPlain, yaml.YAMLError, ValueError):  # ValueError: also a bad date, a UnicodeError
            pass
        try:
            return yaml.load(text, Loader=_strict_loader(fast=True))  # noqa: S506 - a SafeConstructor
        except (yaml.YAMLError, UnicodeError):
            pass
    try:
        return yaml.load(text, Loader=_strict_loader(fast=False))  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        where = f"line {mark.line + 1} column {mark.column + 1}" if mark else "yaml"
        raise GeniusfileError(where, f"invalid YAML: {problem}{_yaml_hint(problem)}") from None
    except yaml.YAMLError as exc:
        raise GeniusfileError("yaml", f"invalid YAML: {exc}") from None


class _NotPlain(Exception):
    """The document needs the checked loader: an anchor, a merge key, an explicit tag, a duplicate
    or unhashable key, a lone surrogate, or a limit reached."""


#: Tags of the values a plain document holds (what SafeLoader builds from untagged YAML).
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


def _plain_yaml(text: str) -> Any:
    """The document's values, as SafeLoader under :func:`_strict_loader`'s checks would build them,
    from libyaml's node graph; raises :class:`_NotPlain` (or YAML's own error) where that loader
    must decide.

    Refusing is always safe here: the checked loader then reads the text again and either builds the
    same values or reports the problem in its words. So every node is visited once (a repeated
    collection is an alias, whose expansion the checked loader counts), nesting stops short of
    :data:`MAX_YAML_DEPTH`, and only the scalar tags SafeLoader resolves without a tag are built.
    """
    import yaml
    from yaml.nodes import MappingNode, ScalarNode, SequenceNode

    from airflow_genius.core.state.values import has_lone_surrogate

    scalars = _plain_scalar_constructors()
    loader = yaml.CSafeLoader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is None:
        return None
    collections: set[Any] = set()
    values = 1

    def build(node: Any, depth: int) -> Any:
        nonlocal values
        kind = type(node)
        if kind is ScalarNode:
            value = node.value
            if not value.isascii() and has_lone_surrogate(value):
                raise _NotPlain
            if node.tag == _STR_TAG:
                return value
            construct = scalars.get(node.tag)
            if construct is None:
                raise _NotPlain
            return construct(loader, node)
        if depth >= MAX_YAML_DEPTH - 1 or node in collections:
            raise _NotPlain
        collections.add(node)
        items = node.value
        if kind is MappingNode and node.tag == _MAP_TAG:
            values += 2 * len(items)
            mapping: dict[Any, Any] = {}
            for key_node, value_node in items:
                if type(key_node) is not ScalarNode:
                    raise _NotPlain
                key = build(key_node, depth + 1)
                if key in mapping:
                    raise _NotPlain
                mapping[key] = build(value_node, depth + 1)
            return mapping
        if kind is SequenceNode and node.tag == _SEQ_TAG:
            values += len(items)
            return [build(item, depth + 1) for item in items]
        raise _NotPlain

    document = build(root, 0)
    if values > MAX_YAML_VALUES:
        raise _NotPlain
    return document


@lru_cache(maxsize=1)
def _plain_scalar_constructors() -> dict[str, Callable[[Any, Any], Any]]:
    """SafeLoader's constructors of the implicit scalar tags other than text, by tag."""
    from yaml.constructor import SafeConstructor

    return {
        f"tag:yaml.org,2002:{name}": getattr(SafeConstructor, f"construct_yaml_{name}")
        for name in ("null", "bool", "int", "float", "timestamp")
    }


def _yaml_hint(problem: str) -> str:
    # The two mistakes people make most; PyYAML's own words do not say what to do.
    if "'@'" in problem or "'`'" in problem:
        return ' (quote values that start with @, e.g. schedule: "@daily")'
    if "'\\t'" in problem:
        return " (indent with spaces, not tabs)"
    return ""


@lru_cache(maxsize=2)
def _strict_loader(*, fast: bool) -> type:
    """A SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one) and, while the
    document is composed (before any value is built), YAML bombs and text that is not Unicode:
    more than :data:`MAX_YAML_VALUES` values counting each alias at its expanded size, an alias used
    inside its own anchor, nesting deeper than :data:`MAX_YAML_DEPTH`, and lone surrogates
    (``"\\ud800"``). Errors name the field's path and the line.

    ``fast``: libyaml's scanner and parser (``CParser``, which stops at 1,000 levels of flow nesting
    itself) under the same Python composer, constructor and checks.
    """
    import yaml
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import Resolver

    from airflow_genius.core.state.values import has_lone_surrogate

    bases: tuple[type, ...]
    if fast:
        from yaml.cyaml import CParser

        # Composer first: its Python compose_node (with the checks below) replaces CParser's C
        # composer, whose events (check_event/peek_event/get_event) it consumes.
        bases = (Composer, CParser, SafeConstructor, Resolver)

        def start(loader: Any, stream: Any) -> None:
            CParser.__init__(loader, stream)
            SafeConstructor.__init__(loader)
            Resolver.__init__(loader)
            Composer.__init__(loader)
    else:
        bases = (yaml.SafeLoader,)

        def start(loader: Any, stream: Any) -> None:
            yaml.SafeLoader.__init__(loader, stream)

    class StrictLoader(*bases):  # type: ignore[misc]
        def __init__(self, stream: Any) -> None:
            start(self, stream)
            self.values = 0  # values composed so far, each alias counted at its anchor's expanded size
            self.sizes: dict[str, int] = {}  # expanded size of each anchor whose node is complete
            self.path: list[str] = []

        def fetch_flow_collection_start(self, token_class: Any) -> None:
            # Refused while scanning too: PyYAML's look-ahead over "[[[[..." costs depth squared.
            if self.flow_level >= MAX_YAML_DEPTH:
                mark = self.get_mark()
                raise GeniusfileError(
                    f"line {mark.line + 1} column {mark.column + 1}",
                    f"nested deeper than {MAX_YAML_DEPTH} levels",
                )
            super().fetch_flow_collection_start(token_class)

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if type(event) is yaml.ScalarEvent and event.anchor is None:
                # Most nodes: one plain value. The same checks, on the path that parse time goes.
                if len(self.path) >= MAX_YAML_DEPTH or (
                    not event.value.isascii() and has_lone_surrogate(event.value)
                ):
                    return self.compose_checked(parent, index, event)
                node = self.compose_scalar_node(None)  # what Composer.compose_node does for it
                self.values += 1
                if self.values > MAX_YAML_VALUES:
                    self.values -= 1
                    self.count(1, _yaml_step(index), event)  # raises, naming the field
                return node
            return self.compose_checked(parent, index, event)

        def compose_checked(self, parent: Any, index: Any, event: Any) -> Any:
            step = _yaml_step(index)
            if isinstance(event, yaml.AliasEvent):
                size = self.sizes.get(event.anchor)
                if size is None and event.anchor in self.anchors:
                    raise self.refuse(step, event, f"alias *{event.anchor} is used inside its own anchor")
                self.count(size or 0, step, event)  # an undefined alias: PyYAML reports it
                return super().compose_node(parent, index)
            if len(self.path) >= MAX_YAML_DEPTH:
                raise self.refuse(step, event, f"nested deeper than {MAX_YAML_DEPTH} levels")
            if isinstance(event, yaml.ScalarEvent) and has_lone_surrogate(event.value):
                raise self.refuse(step, event, "contains a lone surrogate, which is not text")
            before = self.values
            self.path.append(step)
            node = super().compose_node(parent, index)
            self.path.pop()
            self.count(1, step, event)
            if event.anchor is not None:
                self.sizes[event.anchor] = self.values - before
            return node

        def count(self, size: int, step: str, event: Any) -> None:
            self.values += size
            if self.values > MAX_YAML_VALUES:
                raise self.refuse(
                    step, event, f"more than {MAX_YAML_VALUES:,} values once aliases are expanded"
                )

        def refuse(self, step: str, event: Any, problem: str) -> GeniusfileError:
            where = "".join(s if s.startswith("[") else f".{s}" for s in [*self.path, step] if s).lstrip(".")
            where = where if len(where) <= 80 else where[:77] + "..."  # a deep path stays one short line
            mark = event.start_mark
            return GeniusfileError(
                where or "yaml", f"{problem} (line {mark.line + 1} column {mark.column + 1})"
            )

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # '<<: *anchor' merges may be overridden by explicit keys
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    first = seen.get(key)
                except TypeError:  # unhashable key; SafeLoader reports it below
                    continue
                if first is not None:
                    raise GeniusfileError(
                        f"line {line} column {key_node.start_mark.column + 1}",
                        f"duplicate key {key!r} (first at line {first})",
                    )
                seen[key] = line
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _yaml_step(index: Any) -> str:
    """The path step of a node PyYAML composes at ``index`` of its parent: a key's name, ``[n]``, or ``""``."""
    if isinstance(index, int):
        return f"[{index}]"
    if index is None:  # the root, or a mapping key (part of its mapping's path)
        return ""
    value = getattr(index, "value", None)
    return value if isinstance(value, str) else "?"


# ---------------------------------------------------------------------- validation
class _Parser:
    """Validates the decoded YAML top-down; each check raises the first problem it finds."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.params: tuple[str, ...] = ()

    def parse(self, data: Any, source: str | None) -> Geniusfile:
        if data is None:
            raise GeniusfileError("version", "missing; the file is empty (start it with 'version: 1')")
        top = _mapping(data, "geniusfile")
        _only(top, "", _TOP_KEYS)
        if "version" not in top:
            raise GeniusfileError("version", "missing; start the file with 'version: 1'")
        version = top["version"]
        if isinstance(version, bool) or version not in GENIUSFILE_VERSIONS:
            raise GeniusfileError(
                "version",
                f"expected one of {sorted(GENIUSFILE_VERSIONS)} (the versions this package reads)",
                got=version,
            )
        if "dag" not in top:
            raise GeniusfileError("dag", "missing; give at least 'dag: {id: my_pipeline}'")
        dag = self.dag(top["dag"])
        self.params = tuple(p.name for p in dag.params)
        runners = self.runners(top.get("runners"))
        defaults = self.defaults(top.get("defaults"))
        raw = self.entries(top)
        names = {name: kind for kind, entries in raw for name in entries}
        services = tuple(name for name, kind in names.items() if kind == "service")
        tasks = [
            self.task(name, kind, body, defaults, names, services)
            for kind, entries in raw
            for name, body in entries.items()
        ]
        ordered = _dependency_order(tasks)  # a cycle is reported before what it would confuse
        self.check_inputs(tasks)
        notes = tuple(
            f"{s.where}: no spout or bolt names it as its 'service'; it starts and is stopped at once"
            for s in tasks
            if s.kind == "service" and not any(t.service == s.name for t in tasks)
        )
        return Geniusfile(
            version=version,
            dag=dag,
            defaults=defaults,
            tasks=ordered,
            source=source,
            runners=runners,
            notes=notes,
        )

    # -------------------------------------------------------------- dag
    def dag(self, data: Any) -> DagSettings:
        obj = _mapping(data, "dag")
        _only(obj, "dag", _DAG_KEYS)
        dag_id = _identifier(obj.get("id"), "dag.id")
        schedule = self.schedule(obj.get("schedule"))
        catchup = obj.get("catchup", False)
        if not isinstance(catchup, bool):
            raise GeniusfileError("dag.catchup", "expected true or false", got=catchup)
        tags = obj.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 100 for t in tags):
            raise GeniusfileError("dag.tags", "expected a list of short texts, e.g. [genius, nlp]", got=tags)
        return DagSettings(
            id=dag_id,
            schedule=schedule,
            start_date=_start_date(obj.get("start_date")),
            catchup=catchup,
            tags=tuple(tags),
            params=self.params_of(obj.get("params")),
            description=_optional_text(obj, "description", "dag"),
            doc=_optional_text(obj, "doc", "dag"),
        )

    def schedule(self, value: Any) -> str | AssetSchedule | None:
        """A cron expression or preset; or assets: a list (all of them) or ``{any: [...]}`` /
        ``{all: [...]}``, nested as needed."""
        if value is None:
            return None
        if isinstance(value, list):
            return self.asset_schedule("all", value, "dag.schedule")
        if isinstance(value, dict):
            return self.asset_condition(value, "dag.schedule")
        if isinstance(value, str) and _names_asset(value):
            raise GeniusfileError(
                "dag.schedule", f"a schedule on assets is a list: schedule: [{value}]", got=value
            )
        return _check_schedule(value)

    def asset_condition(self, data: dict[Any, Any], where: str) -> AssetSchedule:
        if len(data) != 1:
            raise GeniusfileError(where, "expected one key, 'all' or 'any', with a list of assets", got=data)
        _only(data, where, frozenset(ASSET_CONDITIONS))
        ((condition, items),) = data.items()
        return self.asset_schedule(condition, items, f"{where}.{condition}")

    def asset_schedule(self, condition: str, items: Any, where: str) -> AssetSchedule:
        if not isinstance(items, list) or not items:
            raise GeniusfileError(where, "expected a non-empty list of asset URIs or aliases", got=items)
        parsed: list[str | AssetSchedule] = []
        for index, item in enumerate(items):
            item_where = f"{where}[{index}]"
            if isinstance(item, dict):
                parsed.append(self.asset_condition(item, item_where))
            else:
                parsed.append(self.asset(item, item_where))
        return AssetSchedule(condition, tuple(parsed))

    def asset(self, value: Any, where: str) -> str:
        """An asset URI a genius task writes (folder, ``s3://`` prefix, stream) or a genius output or
        model alias; checked by the TaskSpec's rules for outputs, as the upstream task's output is."""
        expected = (
            "expected an asset URI (/abs/path, file:///abs/path, s3://bucket/prefix, "
            "redis://host/0?stream=name), an alias genius-output:<dag_id>.<task_id> or "
            "genius-model:<dag_id>.<task_id>, "
            "or {any: [...]} / {all: [...]}"
        )
        if not isinstance(value, str) or not value.strip():
            raise GeniusfileError(where, expected, got=value)
        prefix = next((prefix for prefix in ALIAS_PREFIXES if value.startswith(prefix)), None)
        if prefix is not None:
            dag_task = value[len(prefix) :]
            if not ID_PATTERN.match(dag_task) or "." not in dag_task.strip("."):
                raise GeniusfileError(where, f"expected an alias {prefix}<dag_id>.<task_id>", got=value)
            return value
        uri = self.expand(value, where)
        if _is_template(uri):
            raise GeniusfileError(where, "a schedule is read when the file is parsed: no templates", got=uri)
        if not _names_asset(uri):
            raise GeniusfileError(where, expected, got=uri)
        with _Renamed(where, where):
            if _data_type_of(uri) == "stream":
                check_stream_uri(uri, where, need_group=False)
            else:
                check_data_uri(uri, where)
        return uri

    def params_of(self, data: Any) -> tuple[ParamSettings, ...]:
        if data is None:
            return ()
        obj = _mapping(data, "dag.params")
        params = []
        for name, value in obj.items():
            where = f"dag.params.{name}"
            if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
                raise GeniusfileError(
                    "dag.params",
                    "every param name must be a Python identifier (used as params.NAME)",
                    got=name,
                )
            if not isinstance(value, dict):  # a plain value is the default
                _json_value(value, where)
                params.append(ParamSettings(name, value, True, _inferred_type(value)))
                continue
            _only(value, where, PARAM_KEYS)
            schema = {k: v for k, v in value.items() if k != "default"}
            _json_value(schema, where)
            declared = schema.get("type")
            if declared is not None:
                types = declared if isinstance(declared, list) else [declared]
                if not types or not all(t in _JSON_TYPES for t in types):
                    raise GeniusfileError(
                        f"{where}.type", f"expected one of {', '.join(_JSON_TYPES)}", got=declared
                    )
            if "default" in value:
                default = value["default"]
                _json_value(default, f"{where}.default")
                if declared is not None and not _has_type(default, declared):
                    raise GeniusfileError(
                        f"{where}.default", f"does not match type {declared!r}", got=default
                    )
                schema = {**_inferred_type(default), **schema}
            params.append(ParamSettings(name, value.get("default"), "default" in value, schema))
        return tuple(params)

    # -------------------------------------------------------------- defaults
    def defaults(self, data: Any) -> Defaults:
        if data is None:
            return Defaults()
        obj = _mapping(data, "defaults")
        _only(obj, "defaults", _DEFAULT_KEYS)
        return Defaults(
            runner=_runner(obj.get("runner", "local"), "defaults.runner"),
            retries=_retries(obj.get("retries"), "defaults.retries"),
            retry_delay_seconds=_seconds(obj.get("retry_delay_seconds"), "defaults.retry_delay_seconds"),
            state=self.state(obj.get("state"), "defaults.state"),
            timeout_seconds=_timeout(obj.get("timeout_seconds"), "defaults.timeout_seconds"),
            pool=_name(obj.get("pool"), "defaults.pool"),
            queue=_name(obj.get("queue"), "defaults.queue"),
            operator=self.arguments(obj.get("operator"), "defaults.operator"),
        )

    # -------------------------------------------------------------- runners, platform, operator
    def runners(self, data: Any) -> dict[str, dict[str, Any]]:
        if data is None:
            return {}
        obj = _mapping(data, "runners")
        for name in obj:
            _runner(name, f"runners.{name}")
        return {name: self.arguments(block, f"runners.{name}") for name, block in obj.items()}

    def arguments(self, data: Any, where: str) -> dict[str, Any]:
        """A mapping of operator arguments (``runners.<r>``, ``platform``, ``operator``): identifier
        keys the Geniusfile does not set itself, JSON values, ``${VAR}`` expanded in texts. Whether
        the operator takes them is checked where operators are known (``dag_factory``)."""
        if data is None:
            return {}
        obj = _mapping(data, where)
        for key in obj:
            if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
                raise GeniusfileError(where, "every key must be a Python identifier", got=key)
            if key in GENIUS_ARGUMENTS:
                owner = GENIUS_ARGUMENTS[key]
                how = f"use '{owner}'" if owner.isidentifier() else f"it is {owner}"
                raise GeniusfileError(f"{where}.{key}", f"set by the Geniusfile itself; {how}")
        _json_value(obj, where)
        return {key: self.expand_texts(value, f"{where}.{key}") for key, value in obj.items()}

    def expand_texts(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            return self.expand(value, where)
        if isinstance(value, list):
            return [self.expand_texts(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if isinstance(value, dict):
            return {key: self.expand_texts(item, f"{where}.{key}") for key, item in value.items()}
        return value

    def state(self, data: Any, where: str) -> StateSettings | None:
        if data is None:
            return None
        obj = _mapping(data, where)
        _only(obj, where, _STATE_KEYS)
        conn_id, uri = obj.get("conn_id"), obj.get("uri")
        if (conn_id is None) == (uri is None):
            raise GeniusfileError(
                where, "set either conn_id (an Airflow connection) or uri, not both or neither"
            )
        namespace = obj.get("namespace", DEFAULT_NAMESPACE)
        if conn_id is not None:
            conn_id = _identifier(conn_id, f"{where}.conn_id", what="a connection id")
            if not isinstance(namespace, str) or not namespace:
                raise GeniusfileError(f"{where}.namespace", "expected a non-empty string", got=namespace)
            return StateSettings(conn_id=conn_id, namespace=namespace)
        if not isinstance(uri, str) or not uri.strip():
            raise GeniusfileError(f"{where}.uri", "expected a state store URI", got=uri)
        uri = self.expand(uri, f"{where}.uri")
        with _Renamed("state", where):
            uri, namespace = state_fields({"uri": uri, "namespace": namespace})
        return StateSettings(uri=uri, namespace=namespace)

    # -------------------------------------------------------------- spouts and bolts
    def entries(self, top: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        found: list[tuple[str, dict[str, Any]]] = []
        seen: dict[str, str] = {}
        for section in ("spouts", "bolts", "services"):
            entries = top.get(section) or {}
            entries = _mapping(entries, section)
            for name in entries:
                if not isinstance(name, str):
                    raise GeniusfileError(section, "every task name must be a text (quote it)", got=name)
                _identifier(name, f"{section}.{name}", what="a task name")
                if name in seen:
                    raise GeniusfileError(f"{section}.{name}", f"duplicate task name (also in {seen[name]})")
                seen[name] = section
            found.append((section[:-1], entries))
        for name in top.get("services") or {}:
            stop = name + STOP_SUFFIX
            if stop in seen:
                raise GeniusfileError(
                    f"services.{name}", f"its stop task {stop!r} has the name of {seen[stop]}.{stop}"
                )
        if not any(section != "services" for section in seen.values()):
            raise GeniusfileError("spouts", "a Geniusfile needs at least one spout or bolt")
        return found

    def task(
        self,
        name: str,
        kind: str,
        data: Any,
        defaults: Defaults,
        names: Mapping[str, str],
        services: Sequence[str],
    ) -> TaskEntry:
        where = f"{_SECTIONS[kind]}.{name}"
        obj = _mapping(data, where)
        if kind == "spout" and "input" in obj:
            raise GeniusfileError(
                f"{where}.input", "a spout ingests data itself and takes no input; make it a bolt"
            )
        _only(obj, where, _KEYS_OF[kind])
        for required in ("class", "method"):
            if required not in obj:
                raise GeniusfileError(f"{where}.{required}", "missing")
        raw_task = {k: obj[k] for k in ("class", "method", "args", "kwargs") if k in obj}
        with _Renamed("task", where):
            class_path, method, args, kwargs = task_fields(raw_task)
        _json_value(list(args), f"{where}.args")
        _json_value(kwargs, f"{where}.kwargs")
        self.check_param_refs(list(args), f"{where}.args")
        self.check_param_refs(kwargs, f"{where}.kwargs")

        input_task = input_uri = None
        if kind == "bolt" and "input" not in obj:
            raise GeniusfileError(
                f"{where}.input",
                "missing; a bolt reads the output of an upstream task (its name) or a folder URI",
            )
        if "input" in obj:
            input_task, input_uri = self.input(obj["input"], f"{where}.input", names, name)
        output_uri = self.data_uri(obj.get("output"), f"{where}.output")

        after = obj.get("after", [])
        if isinstance(after, str):
            after = [after]
        if not isinstance(after, list):
            raise GeniusfileError(f"{where}.after", "expected a task name or a list of task names", got=after)
        for other in after:
            _known_task(other, f"{where}.after", names)
        map_kwargs = self.map(obj.get("map"), f"{where}.map", kwargs) if "map" in obj else None

        state = self.state(obj.get("state"), f"{where}.state") if "state" in obj else defaults.state
        model = None
        if obj.get("model") is not None:
            model_obj = dict(_mapping(obj["model"], f"{where}.model"))
            if isinstance(model_obj.get("uri"), str):
                model_obj["uri"] = self.expand(model_obj["uri"], f"{where}.model.uri")
            with _Renamed("model", f"{where}.model"):
                found = model_fields(model_obj)
            model = None if found is None else ModelSettings(*found)
        runner = _runner(obj["runner"], f"{where}.runner") if "runner" in obj else defaults.runner
        serves = self.serves(obj, where, runner, "runner" in obj) if kind == "service" else None
        service = None
        if obj.get("service") is not None:
            service = obj["service"]
            if not isinstance(service, str) or service not in services:
                known = ", ".join(services) or "none; declare it under services"
                raise GeniusfileError(f"{where}.service", f"unknown service {service!r} (known: {known})")
        return TaskEntry(
            name=name,
            kind=kind,
            class_path=class_path,
            method=method,
            args=args,
            kwargs=kwargs,
            input_task=input_task,
            input_uri=input_uri,
            output_uri=output_uri,
            after=tuple(dict.fromkeys(after)),
            map_kwargs=map_kwargs,
            runner=runner,
            retries=_retries(obj["retries"], f"{where}.retries") if "retries" in obj else defaults.retries,
            retry_delay_seconds=_seconds(obj["retry_delay_seconds"], f"{where}.retry_delay_seconds")
            if "retry_delay_seconds" in obj
            else defaults.retry_delay_seconds,
            state=state,
            model=model,
            doc=_optional_text(obj, "doc", where),
            timeout_seconds=_timeout(obj["timeout_seconds"], f"{where}.timeout_seconds")
            if "timeout_seconds" in obj
            else defaults.timeout_seconds,
            pool=_name(obj["pool"], f"{where}.pool") if "pool" in obj else defaults.pool,
            queue=_name(obj["queue"], f"{where}.queue") if "queue" in obj else defaults.queue,
            operator={**defaults.operator, **self.arguments(obj.get("operator"), f"{where}.operator")},
            platform=self.arguments(obj.get("platform"), f"{where}.platform"),
            service=service,
            serves=serves,
        )

    def serves(self, obj: Mapping[str, Any], where: str, runner: str, own_runner: bool) -> ServiceSettings:
        if runner not in SERVICE_RUNNERS:
            whose = "" if own_runner else " (from defaults.runner)"
            raise GeniusfileError(
                f"{where}.runner",
                f"runner {runner!r}{whose} has no service operators (use one of {', '.join(SERVICE_RUNNERS)})",
            )
        section = {
            "port": self.port(obj.get("port", 8000), f"{where}.port"),
            "health_path": obj.get("health_path", "/health"),
        }
        with _Renamed("service", where):
            fields = service_fields(section)
        assert fields is not None  # a section was given
        port, health_path, _, _ = fields
        return ServiceSettings(
            port=port,
            health_path=health_path,
            ready_timeout_seconds=_timeout(
                obj.get("ready_timeout_seconds"), f"{where}.ready_timeout_seconds"
            ),
            start_timeout_seconds=_timeout(
                obj.get("start_timeout_seconds"), f"{where}.start_timeout_seconds"
            ),
        )

    def port(self, value: Any, where: str) -> Any:
        """A service's port: a number, or a text of ``${VAR:-8000}`` that expands to one (a free port
        per host comes from the environment); the TaskSpec's rule checks the range."""
        if not isinstance(value, str):
            return value
        expanded = self.expand(value, where).strip()
        return int(expanded) if expanded.isascii() and expanded.isdigit() else expanded

    def input(
        self, value: Any, where: str, names: Mapping[str, str], name: str
    ) -> tuple[str | None, str | None]:
        if not isinstance(value, str) or not value.strip():
            raise GeniusfileError(
                where,
                "expected one upstream task name or a folder URI (order other tasks with 'after')",
                got=value,
            )
        if value in names:
            return value, None
        if not _looks_like_uri(value):
            others = sorted(other for other in names if other != name)
            raise GeniusfileError(where, f"unknown upstream {value!r} (known: {', '.join(others) or 'none'})")
        return None, self.data_uri(value, where)

    def data_uri(self, value: Any, where: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise GeniusfileError(
                where, "expected a folder: /abs/path, file:///abs/path or s3://bucket/prefix", got=value
            )
        uri = self.expand(value, where)
        if _is_template(uri):
            with _Renamed(where, where):
                refuse_secret(uri, where, DATA_CREDENTIALS_HINT, what="credentials")
            self.check_param_refs(uri, where)
            return uri  # rendered by Airflow at run time; the operator validates the result
        with _Renamed(where, where):
            check_data_uri(uri, where)
        return uri

    def map(self, data: Any, where: str, base: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
        obj = _mapping(data, where)
        _only(obj, where, _MAP_KEYS)
        items = obj.get("kwargs")
        if not isinstance(items, list) or not items:
            raise GeniusfileError(
                f"{where}.kwargs",
                "expected a non-empty list of kwargs mappings, one per mapped run",
                got=items,
            )
        merged = []
        for index, item in enumerate(items):
            item_where = f"{where}.kwargs[{index}]"
            item = _mapping(item, item_where)
            for key in item:
                if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
                    raise GeniusfileError(item_where, "every key must be a Python identifier", got=key)
            _json_value(item, item_where)
            self.check_param_refs(item, item_where)
            merged.append({**base, **item})  # each mapped run: the task's kwargs, overridden by its item
        return tuple(merged)

    def check_inputs(self, tasks: Sequence[TaskEntry]) -> None:
        by_name = {t.name: t for t in tasks}
        for entry in tasks:
            if entry.input_task is None:
                continue
            upstream = by_name[entry.input_task]
            if upstream.kind == "service":
                raise GeniusfileError(
                    f"{entry.where}.input",
                    f"{upstream.name!r} is a service and writes no output; to use it, set 'service: "
                    f"{upstream.name}'",
                )
            if upstream.output_uri is None:
                raise GeniusfileError(
                    f"{entry.where}.input",
                    f"upstream {upstream.name!r} writes no output (give {upstream.where} an 'output')",
                )
            if upstream.mapped:
                raise GeniusfileError(
                    f"{entry.where}.input",
                    f"upstream {upstream.name!r} is mapped and has one output per mapped run; "
                    "read a fixed folder or use 'after' instead",
                )

    def check_param_refs(self, value: Any, where: str) -> None:
        """``{{ params.cnt }}`` with no param ``cnt`` would fail only at run time: catch it now."""
        if isinstance(value, str):
            if _is_template(value):
                for name in _PARAM_REF.findall(value):
                    if name not in self.params:
                        known = ", ".join(self.params) or "none; declare them in dag.params"
                        raise GeniusfileError(where, f"unknown param {name!r} (known: {known})")
        elif isinstance(value, Mapping):
            for key, item in value.items():
                self.check_param_refs(item, f"{where}.{key}")
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                self.check_param_refs(item, f"{where}[{index}]")

    def expand(self, value: str, where: str) -> str:
        """``${VAR}`` / ``${VAR:-default}`` from the environment; ``$$`` is a literal ``$``."""
        if "$" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            found = self.env.get(name)
            if found:
                return found
            if default is not None:
                return default
            raise GeniusfileError(
                where,
                f"environment variable {name!r} is not set (write ${{{name}:-default}} to give a default)",
            )

        return _ENV_VAR.sub(replace, value)


# ---------------------------------------------------------------------- graph
def _known_task(name: Any, where: str, names: Mapping[str, str]) -> str:
    if not isinstance(name, str) or name not in names:
        raise GeniusfileError(where, f"unknown task {name!r} (known: {', '.join(sorted(names))})")
    return name


def _dependency_order(tasks: Sequence[TaskEntry]) -> tuple[TaskEntry, ...]:
    """Upstream first, file order otherwise; a cycle is an error naming the field that closes it."""
    ordered: list[TaskEntry] = []
    done: set[str] = set()
    visiting: list[str] = []
    by_name = {t.name: t for t in tasks}

    def visit(entry: TaskEntry) -> None:
        if entry.name in done:
            return
        visiting.append(entry.name)
        for up, via in entry.upstream_fields():
            if up in visiting:
                # Shown in data-flow order: each task feeds the next.
                cycle = [up, *reversed(visiting[visiting.index(up) :])]
                raise GeniusfileError(f"{entry.where}.{via}", f"cycle: {' -> '.join(cycle)}")
            visit(by_name[up])
        visiting.pop()
        done.add(entry.name)
        ordered.append(entry)

    for entry in tasks:
        visit(entry)
    return tuple(ordered)


# ---------------------------------------------------------------------- small checks
class _Renamed:
    """Re-raise a TaskSpec check's error under the Geniusfile's field name (``task.class`` →
    ``spouts.fetch.class``), so one set of rules serves both formats: ``with _Renamed("task", where):``.

    A class rather than a ``@contextmanager`` generator: it wraps several checks of every step.
    """

    __slots__ = ("new", "old")

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if not isinstance(exc, SpecError) or isinstance(exc, GeniusfileError):
            return
        tail = exc.field[len(self.old) :] if exc.field.startswith(self.old) else f".{exc.field}"
        # The message is "<field>: <problem>[, got <value>]"; keep everything after the field.
        raise GeniusfileError(self.new + tail, str(exc)[len(exc.field) + 2 :]) from None


def _mapping(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise GeniusfileError(where, "expected a mapping (key: value lines)", got=data)
    return data


def _only(obj: Mapping[Any, Any], where: str, known: frozenset[str]) -> None:
    for key in obj:
        if key in known:
            continue
        name = key if isinstance(key, str) else repr(key)
        path = f"{where}.{name}" if where else name
        raise GeniusfileError(
            path, f"unknown key{did_you_mean(name, known)} (known: {', '.join(sorted(known))})"
        )


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """The hint an error about an unknown ``word`` ends with: the closest of ``known``, if any.

    >>> did_you_mean("shedule", {"schedule", "tags"})
    "; did you mean 'schedule'?"
    >>> did_you_mean("zzz", {"schedule"})
    ''
    """
    import difflib  # only when a file is wrong: not on the DAG processor's path

    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _identifier(value: Any, where: str, *, what: str = "an id") -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value) or len(value) > ID_MAX_LENGTH:
        if value is None:
            raise GeniusfileError(where, f"missing; expected {what} of letters, digits, '_', '.' and '-'")
        raise GeniusfileError(
            where,
            f"expected {what} of letters, digits, '_', '.' and '-' (at most {ID_MAX_LENGTH} characters)",
            got=value,
        )
    return value


def _optional_text(obj: Mapping[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise GeniusfileError(f"{where}.{key}", "expected a text", got=value)
    return value


def _check_schedule(value: Any) -> str:
    expected = (
        "expected a cron expression such as '0 6 * * *', a preset such as '@daily', "
        "a list of asset URIs, or null"
    )
    if not isinstance(value, str):
        raise GeniusfileError("dag.schedule", expected, got=value)
    if value.startswith("@"):
        if value not in SCHEDULE_PRESETS:
            raise GeniusfileError(
                "dag.schedule", f"unknown preset (known: {', '.join(SCHEDULE_PRESETS)})", got=value
            )
        return value
    fields = value.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise GeniusfileError("dag.schedule", expected + " (a cron expression has 5 fields)", got=value)
    return value


def _start_date(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise GeniusfileError("dag.start_date", "expected a date such as 2024-01-01", got=value) from None
    else:
        raise GeniusfileError("dag.start_date", "expected a date such as 2024-01-01", got=value)
    # Airflow needs an aware datetime; a bare date in a Geniusfile means midnight UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _runner(value: Any, where: str) -> str:
    if isinstance(value, str) and value in RUNNERS:
        return value
    hint = did_you_mean(str(value), RUNNERS)
    raise GeniusfileError(where, f"unknown runner{hint} (known: {', '.join(RUNNERS)})", got=value)


def _timeout(value: Any, where: str) -> float | None:
    """Seconds > 0 (a timeout of 0 would fail every run)."""
    if value is None:
        return None
    seconds = _seconds(value, where)
    if not seconds:
        raise GeniusfileError(where, "expected a number of seconds > 0", got=value)
    return seconds


def _name(value: Any, where: str) -> str | None:
    """A pool or queue name: a short text without control characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 256 or not value.isprintable():
        raise GeniusfileError(where, "expected a name (a short text)", got=value)
    return value


def _retries(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise GeniusfileError(where, "expected an integer >= 0", got=value)
    return value


def _seconds(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value < 0
        or not math.isfinite(value)
    ):
        raise GeniusfileError(where, "expected a number of seconds >= 0", got=value)
    return float(value)


def _json_value(value: Any, where: str) -> None:
    """Arguments travel as JSON in the TaskSpec: refuse what JSON cannot carry (YAML dates, sets)."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise GeniusfileError(where, "expected a finite number", got=value)
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _json_value(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise GeniusfileError(where, "every key must be a text (quote it)", got=key)
            _json_value(item, f"{where}.{key}")
        return
    hint = "; quote dates and times" if isinstance(value, (date, datetime)) else ""
    raise GeniusfileError(
        where, f"expected text, a number, true/false, null, a list or a mapping{hint}", got=value
    )


def _inferred_type(value: Any) -> dict[str, Any]:
    """The form field type of a plain default (so the trigger form shows a number box for 20)."""
    for python_type, json_type in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (dict, "object"),
    ):
        if isinstance(value, python_type):
            return {"type": json_type}
    return {}


def _has_type(value: Any, declared: str | list[str]) -> bool:
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    types = declared if isinstance(declared, list) else [declared]
    return any(checks[t](value) for t in types)


def _names_asset(value: str) -> bool:
    """Whether a text of ``dag.schedule`` names an asset rather than a cron expression or preset."""
    return value.startswith(("/", *ALIAS_PREFIXES)) or "://" in value


def _looks_like_uri(value: str) -> bool:
    return value.startswith("/") or "://" in value or "$" in value or _is_template(value)


def _is_template(value: str) -> bool:
    return "{{" in value or "{%" in value
