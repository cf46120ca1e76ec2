"""TaskSpec: the one contract between every runner and the ``genius run`` runtime.

A runner (the local operator, a pod, an ECS task, a Batch job, an sbatch script) launches the same
serialized TaskSpec; the runtime inside executes it. The spec is versioned JSON and is validated on
load: every problem is reported as ``field: what was expected, got <value>``.

>>> spec = build_spec("my_pkg.tasks:Clean", "process", kind="bolt",
...                   input_uri="/data/in", output_uri="/data/out",
...                   dag_id="etl", task_id="clean", run_id="manual__1")
>>> TaskSpec.from_json(spec.to_json()) == spec
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from airflow_genius.core.defaults import DEFAULT_NAMESPACE, DEFAULT_PARTITION_SCHEME
from airflow_genius.core.errors import SpecError

# The field rules live in spec_rules (the Geniusfile checks them without defining these dataclasses);
# re-exported here, where they have always been importable from.
from airflow_genius.core.spec_rules import (  # noqa: F401 - re-exported
    _CLASS_PATH,
    _DATA_SCHEMES,
    _HEALTH_PATH,
    _IDENT,
    _SERVICE_NAME,
    _data_type_of,
    _is_stream_scheme,
    _object,
    _only,
    _string,
    check_data_uri,
    check_stream_uri,
    model_fields,
    refuse_secret,
    service_fields,
    state_fields,
    task_fields,
)
from airflow_genius.core.state import DEFAULT_STATE_URI
from airflow_genius.core.state.values import find_unstorable
from airflow_genius.core.uris import split_uri

SPEC_VERSION = 1
SUPPORTED_SPEC_VERSIONS = frozenset({1})
KINDS = ("spout", "bolt", "task")
DATA_TYPES = ("batch", "stream")

#: Largest spec accepted, in bytes of JSON: arguments are for parameters, data goes through input.
MAX_SPEC_BYTES = 8 * 1024 * 1024
#: Deepest nesting of objects and arrays accepted anywhere in a spec (the spec itself is level 1).
MAX_SPEC_DEPTH = 100
#: Largest ``window.max_records``: a window's ids are recorded in its run record.
MAX_WINDOW_RECORDS = 1_000_000
#: Largest ``run.map_index`` / ``run.try_number`` (Airflow keeps both as 32-bit integers).
MAX_RUN_NUMBER = 2**31 - 1


@dataclass(frozen=True)
class TaskRef:
    """Which class to instantiate and which of its methods to call, with what."""

    class_path: str
    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataRef:
    """Input or output of a task: a batch folder (``/abs``, ``file:///abs`` or ``s3://bucket/prefix``)
    or, with ``type="stream"``, a stream (``redis://host:6379/0?stream=s&group=g``,
    ``sqlite:///path.db?stream=s&group=g``; ``group`` is required on an input)."""

    uri: str
    type: str = "batch"
    partition_scheme: str = DEFAULT_PARTITION_SCHEME


@dataclass(frozen=True)
class StateRef:
    """The state store (URI without password) and the namespace of task-scoped state."""

    uri: str = DEFAULT_STATE_URI
    namespace: str = DEFAULT_NAMESPACE


@dataclass(frozen=True)
class ModelRef:
    """A model manager URI and the model to load before the method runs."""

    uri: str
    name: str | None = None
    version: str = "latest"


@dataclass(frozen=True)
class RunIdentity:
    """Who this run is in Airflow's terms; one run record exists per (dag, task, run, map_index)."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1
    logical_date: str | None = None

    @property
    def logical_datetime(self) -> datetime | None:
        return datetime.fromisoformat(self.logical_date) if self.logical_date else None


@dataclass(frozen=True)
class Window:
    """Bounds of one run of a streaming task (at most ``max_records`` or ``max_seconds``).

    With ``unbounded``, the run processes successive windows until stopped (SIGTERM/SIGINT, or after
    ``max_windows`` windows) and the bounds apply to each window (= each checkpoint interval).
    """

    max_records: int | None = None
    max_seconds: float | None = None
    unbounded: bool = False
    max_windows: int | None = None


@dataclass(frozen=True)
class ServiceRef:
    """This run serves until stopped (``core/service.py``): where, and how readiness is judged."""

    port: int = 8000
    health_path: str = "/health"
    #: Name published to clients (default: the task id).
    name: str | None = None
    #: Seconds the service has to answer ``health_path`` with 2xx.
    ready_timeout: float = 300.0


@dataclass(frozen=True)
class TaskSpec:
    """A complete, validated description of one run. Build with :func:`build_spec`."""

    task: TaskRef
    run: RunIdentity
    kind: str = "task"
    state: StateRef = field(default_factory=StateRef)
    input: DataRef | None = None
    output: DataRef | None = None
    model: ModelRef | None = None
    window: Window | None = None
    service: ServiceRef | None = None
    spec_version: int = SPEC_VERSION

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the wire format)."""
        data = asdict(self)
        task = data.pop("task")
        data["task"] = {
            "class": task["class_path"],
            "method": task["method"],
            "args": list(task["args"]),
            "kwargs": task["kwargs"],
        }
        return {key: data[key] for key in _FIELD_ORDER}

    def to_json(self, *, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskSpec:
        """Parse and validate a JSON document; raises :class:`SpecError` naming the bad field.

        At most :data:`MAX_SPEC_BYTES` bytes and :data:`MAX_SPEC_DEPTH` levels of nesting.
        """
        size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_SPEC_BYTES:
            raise SpecError("spec", f"is {size:,} bytes; at most {MAX_SPEC_BYTES:,} are accepted")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(
                "spec", f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        except RecursionError:  # the decoder recurses per level; deeper than Python's stack allows
            raise SpecError("spec", f"nested deeper than {MAX_SPEC_DEPTH} levels") from None
        except UnicodeDecodeError:
            raise SpecError("spec", "is not UTF-8 text") from None
        except ValueError:  # the only other decoder failure: an integer beyond Python's digit limit
            raise SpecError("spec", "holds a number with too many digits") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> TaskSpec:
        """Validate a decoded spec; raises :class:`SpecError` naming the bad field."""
        return _parse_spec(data)


_FIELD_ORDER = (
    "spec_version", "kind", "task", "input", "output", "state", "model", "run", "window", "service",
)  # fmt: skip


def build_spec(
    class_path: str,
    method: str,
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    kind: str = "task",
    input_uri: str | None = None,
    output_uri: str | None = None,
    partition_scheme: str = DEFAULT_PARTITION_SCHEME,
    state_uri: str = DEFAULT_STATE_URI,
    namespace: str = DEFAULT_NAMESPACE,
    model_uri: str | None = None,
    model_name: str | None = None,
    model_version: str = "latest",
    map_index: int = -1,
    try_number: int = 1,
    logical_date: datetime | str | None = None,
    max_records: int | None = None,
    max_seconds: float | None = None,
    unbounded: bool = False,
    max_windows: int | None = None,
    input_type: str | None = None,
    output_type: str | None = None,
    service_port: int | None = None,
    health_path: str = "/health",
    service_name: str | None = None,
    ready_timeout: float = 300.0,
) -> TaskSpec:
    """The one place a TaskSpec is assembled from plain values (CLI flags, operator arguments).

    The result is validated exactly as a spec read from JSON is. ``input_type``/``output_type``
    default to ``"stream"`` for ``redis``/``rediss``/``sqlite`` URIs and ``"batch"`` otherwise. A
    ``service_port`` makes the run a service (``core/service.py``).
    """
    if isinstance(logical_date, datetime):
        logical_date = logical_date.isoformat()
    raw: dict[str, Any] = {
        "spec_version": SPEC_VERSION,
        "kind": kind,
        "task": {"class": class_path, "method": method, "args": list(args), "kwargs": dict(kwargs or {})},
        "input": {"type": input_type or _data_type_of(input_uri), "uri": input_uri} if input_uri else None,
        "output": {
            "type": output_type or _data_type_of(output_uri),
            "uri": output_uri,
            "partition_scheme": partition_scheme,
        }
        if output_uri
        else None,
        "state": {"uri": state_uri, "namespace": namespace},
        "model": {"uri": model_uri, "name": model_name, "version": model_version} if model_uri else None,
        "run": {
            "dag_id": dag_id,
            "task_id": task_id,
            "run_id": run_id,
            "map_index": map_index,
            "try_number": try_number,
            "logical_date": logical_date,
        },
        "window": {
            "max_records": max_records,
            "max_seconds": max_seconds,
            "unbounded": unbounded,
            "max_windows": max_windows,
        }
        if (max_records is not None or max_seconds is not None or unbounded)
        else None,
        "service": {
            "port": service_port,
            "health_path": health_path,
            "name": service_name,
            "ready_timeout": ready_timeout,
        }
        if service_port is not None
        else None,
    }
    return _parse_spec(raw)


# ---------------------------------------------------------------------- validation
def _parse_spec(data: Any) -> TaskSpec:
    check_values(data)
    obj = _object(data, "spec")
    _only(obj, "spec", set(_FIELD_ORDER))
    version = obj.get("spec_version")
    if version not in SUPPORTED_SPEC_VERSIONS or isinstance(version, bool):
        raise SpecError(
            "spec_version",
            f"expected one of {sorted(SUPPORTED_SPEC_VERSIONS)} (this runtime's versions)",
            got=version,
        )
    kind = obj.get("kind", "task")
    if kind not in KINDS:
        raise SpecError("kind", f"expected one of {', '.join(KINDS)}", got=kind)
    task = parse_task(obj.get("task"))
    input_ref = _parse_data(obj.get("input"), "input")
    output_ref = _parse_data(obj.get("output"), "output")
    if kind == "spout" and input_ref is not None:
        raise SpecError("input", "a spout ingests data itself and takes no input; use kind 'bolt' or 'task'")
    if kind == "bolt" and input_ref is None:
        raise SpecError("input", "a bolt needs an input (an object with 'uri')", got=None)
    window = _parse_window(obj.get("window"))
    if window is not None and window.unbounded and (input_ref is None or input_ref.type != "stream"):
        raise SpecError("window.unbounded", "an unbounded task needs a stream input", got=True)
    if window is not None and window.unbounded and output_ref is not None and output_ref.type != "stream":
        # A batch output is one partition per run: successive windows would replace each other.
        raise SpecError("window.unbounded", "an unbounded task writes to a stream output (or none)", got=True)
    return TaskSpec(
        spec_version=version,
        kind=kind,
        task=task,
        input=input_ref,
        output=output_ref,
        state=parse_state(obj.get("state")),
        model=parse_model(obj.get("model")),
        run=_parse_run(obj.get("run")),
        window=window,
        service=_parse_service(obj.get("service")),
    )


def parse_task(data: Any) -> TaskRef:
    class_path, method, args, kwargs = task_fields(data)
    return TaskRef(class_path=class_path, method=method, args=args, kwargs=kwargs)


def _parse_data(data: Any, where: str) -> DataRef | None:
    if data is None:
        return None
    obj = _object(data, where)
    _only(obj, where, {"type", "uri", "partition_scheme"})
    data_type = obj.get("type", "batch")
    if data_type not in DATA_TYPES:
        raise SpecError(f"{where}.type", f"expected one of {', '.join(DATA_TYPES)}", got=data_type)
    uri = _string(obj, "uri", where)
    if data_type == "stream":
        if uri.startswith("/") or not _is_stream_scheme(split_uri(uri).scheme):
            # The type contradicts the URI (a folder): name the type, the field most likely wrong.
            raise SpecError(
                f"{where}.type",
                f"expected one of {', '.join(DATA_TYPES)} matching the URI ('stream' needs redis://, "
                "rediss:// or sqlite:// with ?stream=)",
                got=data_type,
            )
        check_stream_uri(uri, f"{where}.uri", need_group=where == "input")
    else:
        check_data_uri(uri, f"{where}.uri")
    scheme = obj.get("partition_scheme", DEFAULT_PARTITION_SCHEME)
    if not isinstance(scheme, str) or not scheme or "\x00" in scheme:
        raise SpecError(
            f"{where}.partition_scheme", "expected a strftime pattern such as '%Y/%m/%d'", got=scheme
        )
    if ".." in scheme.split("/") or scheme.startswith("/"):
        raise SpecError(
            f"{where}.partition_scheme", "must stay relative (no '..', no leading '/')", got=scheme
        )
    return DataRef(uri=uri, type=data_type, partition_scheme=scheme)


def parse_state(data: Any) -> StateRef:
    uri, namespace = state_fields(data)
    return StateRef(uri=uri, namespace=namespace)


def parse_model(data: Any) -> ModelRef | None:
    fields = model_fields(data)
    return None if fields is None else ModelRef(*fields)


def _parse_run(data: Any) -> RunIdentity:
    obj = _object(data, "run")
    _only(obj, "run", {"dag_id", "task_id", "run_id", "map_index", "try_number", "logical_date"})
    dag_id = _string(obj, "dag_id", "run")
    task_id = _string(obj, "task_id", "run")
    run_id = _string(obj, "run_id", "run")
    map_index = _integer(obj, "map_index", "run", default=-1, minimum=-1)
    try_number = _integer(obj, "try_number", "run", default=1, minimum=1)
    logical_date = obj.get("logical_date")
    if logical_date is not None:
        if not isinstance(logical_date, str):
            raise SpecError(
                "run.logical_date", "expected an ISO 8601 timestamp string or null", got=logical_date
            )
        try:
            datetime.fromisoformat(logical_date)
        except ValueError:
            raise SpecError("run.logical_date", "expected an ISO 8601 timestamp", got=logical_date) from None
    return RunIdentity(dag_id, task_id, run_id, map_index, try_number, logical_date)


def _parse_window(data: Any) -> Window | None:
    if data is None:
        return None
    from airflow_genius.core.streams.base import MAX_COUNT, MAX_SECONDS

    obj = _object(data, "window")
    _only(obj, "window", {"max_records", "max_seconds", "unbounded", "max_windows"})
    max_records = _window_bound(obj, "max_records", MAX_WINDOW_RECORDS, integer=True)
    max_seconds = _window_bound(obj, "max_seconds", MAX_SECONDS, integer=False)
    if max_records is None and max_seconds is None:
        raise SpecError("window", "set max_records, max_seconds or both (or leave window null)")
    unbounded = obj.get("unbounded", False)
    if not isinstance(unbounded, bool):
        raise SpecError("window.unbounded", "expected true or false", got=unbounded)
    max_windows = _window_bound(obj, "max_windows", MAX_COUNT, integer=True)
    if max_windows is not None and not unbounded:
        raise SpecError("window.max_windows", "only meaningful with unbounded: true", got=max_windows)
    return Window(
        max_records=max_records, max_seconds=max_seconds, unbounded=unbounded, max_windows=max_windows
    )


def _parse_service(data: Any) -> ServiceRef | None:
    fields = service_fields(data)
    return None if fields is None else ServiceRef(*fields)


def _window_bound(obj: Mapping[str, Any], name: str, maximum: int, *, integer: bool) -> Any:
    """An optional bound of ``window``: null, or an integer (a number) > 0 and <= ``maximum``."""
    value = obj.get(name)
    kinds = int if integer else (int, float)
    # "not 0 < value <= maximum" also refuses NaN, for which every comparison is false.
    if value is not None and (
        not isinstance(value, kinds) or isinstance(value, bool) or not 0 < value <= maximum
    ):
        what = "integer" if integer else "number"
        raise SpecError(f"window.{name}", f"expected a positive {what} up to {maximum:,} or null", got=value)
    return value


# ---------------------------------------------------------------------- small checks
def check_values(data: Any) -> None:
    """Refuse, anywhere in a decoded spec, what no store or runner can carry: nesting deeper than
    :data:`MAX_SPEC_DEPTH`, text with a lone surrogate, and NaN or infinite numbers (not JSON). The
    walk is the state stores' (``core/state/values.py``); a NUL is fine in arguments.

    >>> check_values({"run": {"run_id": float("nan")}})
    Traceback (most recent call last):
    ...
    airflow_genius.core.errors.SpecError: run.run_id: expected a finite number (JSON has no NaN or Infinity), got nan
    """
    found = find_unstorable(data, allow_nul=True, max_depth=MAX_SPEC_DEPTH)
    if found is not None:
        path, problem, value = found
        nested: Any = None
        for part in path:
            nested = (nested, part)
        deep = isinstance(value, (dict, list, tuple))  # the path already says where; no need to echo it
        raise SpecError(_path(nested), problem, **({} if deep else {"got": value}))


def _path(path: Any) -> str:
    """``task.kwargs.x`` / ``task.args[0]`` from the nested ``(parent, key)`` pairs of :func:`check_values`."""
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    where = "".join(reversed(parts)).lstrip(".") or "spec"
    return where if len(where) <= 80 else where[:77] + "..."  # a deep path stays one short line


def _integer(obj: Mapping[str, Any], name: str, where: str, *, default: int, minimum: int) -> int:
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"{where}.{name}", f"expected an integer >= {minimum}", got=value)
    if value > MAX_RUN_NUMBER:  # stores and Airflow keep it in 32 bits
        raise SpecError(f"{where}.{name}", f"expected an integer <= {MAX_RUN_NUMBER:,}", got=value)
    return value
