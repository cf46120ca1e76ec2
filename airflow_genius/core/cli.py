"""The ``genius`` command: run a TaskSpec, discover and describe task classes, look at run records.

    genius run --spec spec.json            # or --spec - (stdin), or --spec-env GENIUS_TASK_SPEC
    genius rise pkg.mod:Class method --arg 3 --kwarg top=5 --input /data/in --output /data/out
                                           # the kind (spout/bolt/task) comes from the class
    genius list pkg.mod                    # task classes in a module (or --entry-points)
    genius describe pkg.mod:Class          # methods and signatures
    genius state show --dag-id D --task-id T --run-id R
    genius state list --status FAILED
    genius state list --conn-id genius_redis   # the store of an Airflow connection (needs Airflow)
    genius state apply-spool --work-dir .genius/work   # outcomes a store outage kept back
    genius report --dag-id D [--run-id R] -o report.html   # charts and records of a DAG as one HTML file
    genius dag validate pipelines/*.genius.yaml   # Geniusfiles: one OK/ERROR line each
    genius data sweep /data/out --grace 0  # remove staging left by killed writers (--dry-run: list only)

Exit codes: 0 success, 1 the task failed or was cancelled, 2 bad input (spec, class, args, path),
3 the run's state says this try cannot run (it already runs elsewhere or has finished), 4 the state
store stayed unavailable for its fault budget (the outcome, if the run finished, is in the spool).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow_genius import __version__
from airflow_genius.core.errors import GeniusError, TransitionConflict
from airflow_genius.core.state import DEFAULT_STATE_URI, RunKey, Status, open_state
from airflow_genius.core.state.faults import StoreUnavailable

if TYPE_CHECKING:
    from airflow_genius.core.state import StateManager

EXIT_OK, EXIT_TASK_FAILED, EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_STORE_UNAVAILABLE = 0, 1, 2, 3, 4
#: Environment variable that carries the TaskSpec JSON into a container (``genius run --spec-env``).
SPEC_ENV = "GENIUS_TASK_SPEC"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genius`` console script."""
    parser = _parser()
    options = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(options.handler(options))
    except TransitionConflict as exc:
        print(f"genius: {exc}", file=sys.stderr)
        return EXIT_CONFLICT
    except StoreUnavailable as exc:  # the store failed, not the task: one line, its own exit code
        print(f"genius: {exc}", file=sys.stderr)
        return EXIT_STORE_UNAVAILABLE
    except GeniusError as exc:
        print(f"genius: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


# ---------------------------------------------------------------------- commands
def _cmd_run(options: argparse.Namespace) -> int:
    from airflow_genius.core.runtime import cancel_on_signals, run_spec
    from airflow_genius.core.spec import TaskSpec

    spec = TaskSpec.from_json(_read_spec_text(options))
    with cancel_on_signals():
        outcome = run_spec(spec, work_dir=options.work_dir)
    return _report(outcome, print_result=options.print_result)


def _cmd_rise(options: argparse.Namespace) -> int:
    from airflow_genius.core.runtime import cancel_on_signals, run_spec
    from airflow_genius.core.spec import build_spec

    now = datetime.now(timezone.utc)
    args = [_json_or_text(value) for value in options.arg]
    kwargs = dict(_key_value(item) for item in options.kwarg)
    kind = _rise_kind(options)
    spec = build_spec(
        options.task_class,
        options.method,
        args=args,
        kwargs=kwargs,
        kind=kind,
        input_uri=_absolute(options.input),
        output_uri=_absolute(options.output),
        partition_scheme=options.partition_scheme,
        state_uri=options.state,
        namespace=options.namespace,
        model_uri=options.model,
        model_name=options.model_name,
        model_version=options.model_version,
        dag_id=options.dag_id,
        task_id=options.task_id or options.method,
        run_id=options.run_id or f"rise__{now:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:6]}",
        logical_date=now,
    )
    if options.print_spec:
        print(spec.to_json(indent=2))
        return EXIT_OK
    with cancel_on_signals():
        outcome = run_spec(spec, work_dir=options.work_dir)
    print(
        f"genius: run {outcome.record.key} ended {outcome.status.value}; state: {options.state}",
        file=sys.stderr,
    )
    if outcome.ok and "output_location" in outcome.record.metrics:
        print(f"genius: output committed at {outcome.record.metrics['output_location']}", file=sys.stderr)
    return _report(outcome, print_result=True)


def _rise_kind(options: argparse.Namespace) -> str:
    """The kind ``genius rise`` runs the class as: the class's own, or ``--kind`` where it agrees.

    ``--kind task`` runs any class as a plain task (no input or output required); a plain Task class
    may run as any kind. Anything else that disagrees, and a bolt without ``--input`` or a spout
    with one, is one line (exit 2) before anything runs.
    """
    from airflow_genius.core.discovery import load_task_class

    cls = load_task_class(options.task_class)
    kind = options.kind or cls.kind
    if kind != "task" and cls.kind not in (kind, "task"):
        raise GeniusError(
            f"--kind {kind}: {options.task_class} is a {cls.kind}; drop --kind (the class sets it) "
            "or use --kind task"
        )
    if kind == "bolt" and not options.input:
        raise GeniusError(
            f"{options.task_class} is a bolt: a bolt needs --input (the folder or URI it reads)"
        )
    if kind == "spout" and options.input:
        raise GeniusError(f"{options.task_class} is a spout: a spout takes no --input (it ingests itself)")
    return kind


def _cmd_list(options: argparse.Namespace) -> int:
    from airflow_genius.core.discovery import class_path_of, tasks_from_entry_points, tasks_in_module

    if options.entry_points is not None:
        classes = tasks_from_entry_points(options.entry_points)
    elif options.module:
        classes = tasks_in_module(options.module)
    else:
        raise GeniusError("name a module (genius list pkg.module) or use --entry-points")
    for cls in classes:
        doc = (cls.__doc__ or "").strip().splitlines()
        print(f"{class_path_of(cls):<50} {cls.kind:<6} {doc[0] if doc else ''}".rstrip())
    if not classes:
        print("no genius task classes found", file=sys.stderr)
    return EXIT_OK


def _cmd_describe(options: argparse.Namespace) -> int:
    from airflow_genius.core.discovery import describe, load_task_class

    info = describe(load_task_class(options.task_class))
    if options.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print(f"{info['class']} ({info['kind']})")
    if info["doc"]:
        print(f"  {info['doc']}")
    for method in info["methods"]:
        print(f"\n  {method['signature']}")
        for line in method["doc"].splitlines():
            print(f"      {line}")
    return EXIT_OK


def _cmd_state_show(options: argparse.Namespace) -> int:
    with _open_store(options) as state:
        record = state.get_run(RunKey(options.dag_id, options.task_id, options.run_id, options.map_index))
    if record is None:
        print(
            f"genius: no run record for {options.dag_id}.{options.task_id}@{options.run_id}", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    print(json.dumps(record.to_dict(), indent=2, default=str))
    return EXIT_OK


def _cmd_state_apply_spool(options: argparse.Namespace) -> int:
    from airflow_genius.core.runtime import DEFAULT_WORK_DIR
    from airflow_genius.core.spool import Spool

    spool = Spool.in_work_dir(options.work_dir or os.environ.get("GENIUS_WORK_DIR", DEFAULT_WORK_DIR))
    outcomes = spool.pending()
    for outcome in outcomes:
        with _open_store(options, default=outcome.state_uri) as state:
            record = spool.apply(state, outcome.key)
        done = f"applied: record is {record.status.value}" if record else "dropped: the record had moved on"
        print(f"{outcome.key} try {outcome.try_number} {outcome.status.value}: {done}")
    if not outcomes:
        print(f"genius: nothing spooled in {spool.folder}", file=sys.stderr)
    return EXIT_OK


def _cmd_state_list(options: argparse.Namespace) -> int:
    with _open_store(options) as state:
        records = state.list_runs(
            dag_id=options.dag_id,
            task_id=options.task_id,
            status=Status(options.status) if options.status else None,
            limit=options.limit,
        )
    for record in records:
        took = record.duration_seconds
        print(
            f"{record.updated_at:%Y-%m-%d %H:%M:%S}  {record.status.value:<9} try {record.try_number}  "
            f"{record.key}{'' if took is None else f'  {took:.2f}s'}"
        )
    return EXIT_OK


def _cmd_report(options: argparse.Namespace) -> int:
    from airflow_genius.core.report import write_report

    with _open_store(options) as state:
        written = write_report(state, options.output, dag_id=options.dag_id, run_id=options.run_id)
    print(f"genius: report written to {written}", file=sys.stderr)
    return EXIT_OK


def _cmd_data_sweep(options: argparse.Namespace) -> int:
    from airflow_genius.core.data.sweep import resolve_grace, sweep_root

    grace = resolve_grace(options.grace, what="--grace")
    root = _absolute(options.root) if options.root.strip() else options.root  # "" is refused, not the cwd
    report = sweep_root(root or "", grace=grace, dry_run=options.dry_run)
    verb = "would remove" if options.dry_run else "removed"
    for entry in report.removed:
        if entry.kind != "lock":  # lock files are counted in the summary, not listed
            print(f"{verb} {entry.path} ({entry.kind}, {entry.files} files, {entry.bytes} bytes)")
    for aside, target in report.restored:
        print(f"{'would restore' if options.dry_run else 'restored'} {aside} -> {target}")
    print(f"{report.staging_dir}: {report.summary()}")
    return EXIT_OK


def _cmd_dag_validate(options: argparse.Namespace) -> int:
    from airflow_genius.core.geniusfile import (
        GeniusfileError,
        check_task_classes,
        load_geniusfile,
        load_geniusfile_checks,
    )

    failed = False
    owners: dict[str, str] = {}  # dag_id -> file: the DAG factory refuses two files with one dag_id
    checks: list[Any] | None = None
    for path in _geniusfile_paths(options.files):
        try:
            geniusfile = load_geniusfile(path)
            dag_id = geniusfile.dag.id
            if dag_id in owners:
                raise GeniusfileError("dag.id", f"{dag_id!r} is already used by {owners[dag_id]}")
            if checks is None:  # loaded once a file parses: they may import Airflow, which takes a second
                # Checks that need the operators (platform arguments) come through entry points: the
                # core never imports Airflow; where it is not installed, a note says they did not run.
                checks, skipped = load_geniusfile_checks()
                for note in skipped:
                    print(f"note: {note}", file=sys.stderr)
            for check in checks:
                check(geniusfile)
            if options.import_classes:
                check_task_classes(geniusfile)
        except GeniusError as exc:  # also a missing PyYAML: the message names the extra
            failed = True
            print(f"ERROR {path}: {exc.detail if isinstance(exc, GeniusfileError) else exc}")
            continue
        owners[dag_id] = path
        print(f"OK {path}: {geniusfile.summary()}")
        for note in geniusfile.notes:
            print(f"note: {path}: {note}", file=sys.stderr)
    return EXIT_BAD_INPUT if failed else EXIT_OK


def _geniusfile_paths(names: Sequence[str]) -> list[str]:
    """Files as given; a folder stands for the ``*.genius.yaml`` files in it. Each file once."""
    from airflow_genius.core.geniusfile import find_geniusfiles

    paths: dict[str, str] = {}  # real path -> the name to print
    for name in names:
        if os.path.isdir(name):
            found = [str(p) for p in find_geniusfiles(name)]
            if not found:
                raise GeniusError(f"no *.genius.yaml file in folder {name!r}")
        else:
            found = [name]
        for path in found:
            paths.setdefault(os.path.realpath(path), path)
    return list(paths.values())


# ---------------------------------------------------------------------- helpers
def _open_store(options: argparse.Namespace, *, default: str | None = None) -> StateManager:
    """The state store of ``--conn-id`` (an Airflow connection), else ``--state``, else ``default``.

    The connection path needs Airflow, imported here only: the core runs where it is not installed.
    The connection's password reaches the store as ``GENIUS_STATE_PASSWORD`` the way it reaches a
    task (the state hook's ``secret_env``); it is never in a URI, argv or output.
    """
    if not options.conn_id:
        return open_state(options.state or default or DEFAULT_STATE_URI)
    if not options.verbose:  # Airflow logs its configuration at INFO while it loads: not this command's news
        logging.getLogger("airflow").setLevel(logging.WARNING)
    try:
        from airflow_genius.hooks.state import state_hook
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "airflow":
            raise
        raise GeniusError(
            "--conn-id needs the airflow extra (pip install 'airflow-provider-genius[airflow]'); "
            "without Airflow name the store with --state URI"
        ) from None
    # Airflow's logging writes to standard output, which carries this command's records: keep it clean.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            return state_hook(options.conn_id).open_state()
        except GeniusError:
            raise
        except Exception as exc:  # unknown connection, not a genius state connection: one line
            raise GeniusError(f"--conn-id {options.conn_id!r}: {exc}") from None


def _report(outcome: Any, *, print_result: bool) -> int:
    if outcome.ok:
        if print_result:
            print(json.dumps(outcome.result, indent=2))
        return EXIT_OK
    if isinstance(outcome.exception, StoreUnavailable):  # the task's own store calls ran out of budget
        print(f"genius: {outcome.exception}", file=sys.stderr)
        return EXIT_STORE_UNAVAILABLE
    if isinstance(outcome.exception, GeniusError):
        # Bad input (unknown class, wrong args, path escape): one clear line; the record keeps the rest.
        print(f"genius: error: {outcome.exception}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if outcome.status is Status.FAILED and outcome.error:
        print(outcome.error.get("traceback") or "", file=sys.stderr, end="")
        print(f"genius: task failed: {outcome.error['type']}: {outcome.error['message']}", file=sys.stderr)
    else:
        print(f"genius: run ended {outcome.status.value}", file=sys.stderr)
    return EXIT_TASK_FAILED


def _read_spec_text(options: argparse.Namespace) -> str:
    if options.spec_env:
        text = os.environ.get(options.spec_env)
        if not text:
            raise GeniusError(f"environment variable {options.spec_env} is not set or empty")
        return text
    if options.spec == "-":
        try:
            return sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GeniusError(f"the spec on standard input is not UTF-8 text (byte {exc.start})") from None
    try:
        with open(options.spec, encoding="utf-8") as handle:
            return handle.read()
    except OSError as exc:
        raise GeniusError(f"cannot read spec file {options.spec!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise GeniusError(f"spec file {options.spec!r} is not UTF-8 text (byte {exc.start})") from None


def _json_or_text(value: str) -> Any:
    """Flags take JSON (``3``, ``true``, ``[1,2]``, ``{"a":1}``); anything else is a string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _key_value(item: str) -> tuple[str, Any]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise GeniusError(f"--kwarg {item!r}: expected KEY=VALUE")
    return key, _json_or_text(value)


def _absolute(path_or_uri: str | None) -> str | None:
    if path_or_uri is None or "://" in path_or_uri:
        return path_or_uri
    return os.path.abspath(path_or_uri)


_Commands = argparse._SubParsersAction  # what add_subparsers returns: each _add_* adds its command to it
_WORK_DIR_HELP = "local folder for input mirrors and output staging"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genius",
        description="Run genius spouts and bolts: the runtime behind every airflow-genius operator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in (
        _add_run,
        _add_rise,
        _add_list,
        _add_describe,
        _add_state,
        _add_report,
        _add_data,
        _add_dag,
    ):
        add_command(commands)
    return parser


def _add_run(commands: _Commands) -> None:
    run = commands.add_parser(
        "run", help="run a TaskSpec", description="Run one TaskSpec and record it in its state store."
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("--spec", metavar="FILE", help="spec JSON file, or - for standard input")
    source.add_argument(
        "--spec-env",
        metavar="VAR",
        help=f"read the spec JSON from this environment variable (e.g. {SPEC_ENV})",
    )
    run.add_argument("--work-dir", help=_WORK_DIR_HELP)
    run.add_argument("--print-result", action="store_true", help="print the JSON result on standard output")
    run.set_defaults(handler=_cmd_run)


def _add_rise(commands: _Commands) -> None:
    rise = commands.add_parser(
        "rise",
        help="run a task class quickly from flags",
        description="Build a TaskSpec from flags and run it locally (embedded SQLite state by default).",
    )
    rise.add_argument("task_class", help="package.module:ClassName")
    rise.add_argument("method", help="the method to call")
    rise.add_argument(
        "--arg", action="append", default=[], help="positional argument (JSON or text), repeatable"
    )
    rise.add_argument(
        "--kwarg", action="append", default=[], help="KEY=VALUE keyword argument (JSON or text), repeatable"
    )
    rise.add_argument(
        "--kind",
        choices=("spout", "bolt", "task"),
        help="default: the class's own (Spout, Bolt or Task subclass); 'task' runs any class plainly",
    )
    rise.add_argument("--input", help="input folder or URI (s3://bucket/prefix)")
    rise.add_argument("--output", help="output folder or URI")
    rise.add_argument("--partition-scheme", default="%Y/%m/%d", help="strftime pattern of output partitions")
    rise.add_argument(
        "--state", default=DEFAULT_STATE_URI, help=f"state store URI (default {DEFAULT_STATE_URI})"
    )
    rise.add_argument("--namespace", default="default", help="namespace of task-scoped state")
    rise.add_argument("--model", help="model manager URI")
    rise.add_argument("--model-name", help="model to load before the method runs")
    rise.add_argument("--model-version", default="latest")
    rise.add_argument("--dag-id", default="genius_rise", help="run identity: DAG id (default genius_rise)")
    rise.add_argument("--task-id", help="run identity: task id (default: the method name)")
    rise.add_argument("--run-id", help="run identity: run id (default: a fresh one)")
    rise.add_argument("--work-dir", help=_WORK_DIR_HELP)
    rise.add_argument("--print-spec", action="store_true", help="print the TaskSpec instead of running it")
    rise.set_defaults(handler=_cmd_rise)


def _add_list(commands: _Commands) -> None:
    lister = commands.add_parser("list", help="list task classes", description="List genius task classes.")
    lister.add_argument("module", nargs="?", help="module to search, e.g. airflow_genius.examples.tasks")
    lister.add_argument(
        "--entry-points",
        nargs="?",
        const="genius.tasks",
        metavar="GROUP",
        help="list classes advertised by installed packages (default group genius.tasks)",
    )
    lister.set_defaults(handler=_cmd_list)


def _add_describe(commands: _Commands) -> None:
    describer = commands.add_parser(
        "describe", help="show a task class's methods", description="Describe a task class."
    )
    describer.add_argument("task_class", help="package.module:ClassName")
    describer.add_argument("--json", action="store_true", help="machine-readable output")
    describer.set_defaults(handler=_cmd_describe)


def _add_state(commands: _Commands) -> None:
    actions = _add_action_group(commands, "state")
    show = actions.add_parser("show", help="one run record as JSON")
    show.add_argument("--dag-id", required=True)
    show.add_argument("--task-id", required=True)
    show.add_argument("--run-id", required=True)
    show.add_argument("--map-index", type=int, default=-1)
    show.set_defaults(handler=_cmd_state_show)
    listing = actions.add_parser("list", help="recent run records")
    listing.add_argument("--dag-id")
    listing.add_argument("--task-id")
    listing.add_argument("--status", choices=[s.value for s in Status])
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_cmd_state_list)
    for sub in (show, listing):
        _store_options(sub, default=DEFAULT_STATE_URI)
    apply_spool = actions.add_parser(
        "apply-spool",
        help="write outcomes a store outage kept in the spool",
        description="Apply the run outcomes spooled in WORK_DIR/spool while the state store was unavailable.",
    )
    apply_spool.add_argument(
        "--work-dir", help="the runs' work folder (default $GENIUS_WORK_DIR or .genius/work)"
    )
    _store_options(apply_spool, default=None, what="the one each outcome belongs to")
    apply_spool.set_defaults(handler=_cmd_state_apply_spool)


def _add_report(commands: _Commands) -> None:
    report = commands.add_parser(
        "report",
        help="write an HTML report of a DAG's run records",
        description="Write one self-contained HTML file (inline SVG charts, no external resource): "
        "benchmark clients' latency and throughput, each task's duration and metrics across runs, "
        "stream window throughput, and a table of the run records.",
    )
    _store_options(report, default=DEFAULT_STATE_URI)
    report.add_argument("--dag-id", required=True)
    report.add_argument("--run-id", help="report this run only (default: every run of the DAG)")
    report.add_argument("-o", "--output", required=True, metavar="FILE", help="the HTML file to write")
    report.set_defaults(handler=_cmd_report)


def _add_data(commands: _Commands) -> None:
    actions = _add_action_group(commands, "data")
    sweep = actions.add_parser(
        "sweep",
        help="remove staging leftovers of killed writers",
        description="Remove what killed writers left in ROOT/.genius-staging (staging folders, "
        "'.replaced-N' copies, lock files) and print it; staging of live writers is never touched. "
        "For an s3:// ROOT, sweeps this machine's local S3 staging folder.",
    )
    sweep.add_argument(
        "root", metavar="ROOT", help="output root: folder, file:///abs/path or s3://bucket/prefix"
    )
    sweep.add_argument(
        "--grace",
        metavar="SECONDS",
        help="keep leftovers younger than this (default $GENIUS_STAGING_GRACE_SECONDS or 3600)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="print what would be removed, remove nothing")
    sweep.set_defaults(handler=_cmd_data_sweep)


def _add_dag(commands: _Commands) -> None:
    actions = _add_action_group(commands, "dag")
    validate = actions.add_parser(
        "validate",
        help="validate Geniusfiles (Airflow optional)",
        description="Validate Geniusfiles: print 'OK FILE: N spouts, M bolts' or 'ERROR FILE: field: "
        "problem' per file; exit 2 if any file is invalid. Platform and operator arguments are checked "
        "against the operators' signatures where Airflow is installed (a note says when they are not).",
    )
    validate.add_argument(
        "files", nargs="+", metavar="FILE", help="a Geniusfile, or a folder of *.genius.yaml files"
    )
    validate.add_argument(
        "--no-import",
        dest="import_classes",
        action="store_false",
        help="do not import the task classes (skips checking classes, methods and keyword arguments)",
    )
    validate.set_defaults(handler=_cmd_dag_validate)


#: The commands whose first argument is an ACTION (``genius state show``): name -> (help, description).
_ACTION_GROUPS = {
    "state": ("look at run records", "Show or list run records."),
    "data": ("batch output housekeeping", "Housekeeping of batch output roots."),
    "dag": (
        "check Geniusfiles (pipelines in YAML)",
        "Work with Geniusfiles: pipelines written in YAML that become Airflow DAGs.",
    ),
}


def _add_action_group(commands: _Commands, name: str) -> _Commands:
    """The command ``name`` of :data:`_ACTION_GROUPS`: returns where its actions are added."""
    summary, description = _ACTION_GROUPS[name]
    group = commands.add_parser(name, help=summary, description=description)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def _store_options(parser: argparse.ArgumentParser, *, default: str | None, what: str = "") -> None:
    """``--state URI`` or ``--conn-id ID``: the same pair on every command that reads run records."""
    store = parser.add_mutually_exclusive_group()
    store.add_argument("--state", default=default, help=f"state store URI (default: {what or default})")
    store.add_argument(
        "--conn-id",
        metavar="ID",
        help="read the store of this Airflow genius state connection instead (its password included; "
        "needs the airflow extra)",
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
