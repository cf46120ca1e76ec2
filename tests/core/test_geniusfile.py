"""Geniusfiles: parsing, one-line errors naming entry and field, and `genius dag validate` (no Airflow)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from airflow_genius.core.geniusfile import (
    AssetSchedule,
    GeniusfileError,
    check_task_classes,
    find_geniusfiles,
    load_geniusfile,
    parse_geniusfile,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "dags_examples" / "quotes.genius.yaml"
ML_EXAMPLE = ROOT / "dags_examples" / "ml.genius.yaml"
TESTS_DIR = ROOT / "tests"

BASE = textwrap.dedent(
    """\
    version: 1
    dag:
      id: quotes
      schedule: "@daily"
      start_date: 2024-01-01
      tags: [genius]
      params: {count: 20, top: {default: 5, minimum: 1, description: Words to report}}
    defaults:
      runner: local
      retries: 1
      state: {conn_id: genius_redis_default}
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
        input: fetch
        output: /data/counts
        kwargs: {top: 5}
        map: {kwargs: [{top: 3}, {top: 5, min_length: 4}]}
      report:
        class: airflow_genius.examples.tasks:WordCount
        method: count
        input: /data/fixed
        after: count
        retries: 0
    """
)


def parse(text: str = BASE, **env: str):  # type: ignore[no-untyped-def]
    return parse_geniusfile(text, env=env)


def variant(old: str, new: str) -> str:
    """BASE with one change (the change must apply, or the test would prove nothing)."""
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def scheduled(value: str) -> str:
    """BASE with ``value`` as its ``dag.schedule``."""
    return variant('schedule: "@daily"', f"schedule: {value}")


# ---------------------------------------------------------------------- valid files
def test_valid_geniusfile_parses_into_tasks_in_dependency_order() -> None:
    gf = parse()
    assert gf.version == 1 and gf.dag.id == "quotes" and gf.dag.schedule == "@daily"
    assert gf.dag.start_date == datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert [(p.name, p.default, p.schema) for p in gf.dag.params] == [
        ("count", 20, {"type": "integer"}),
        ("top", 5, {"type": "integer", "minimum": 1, "description": "Words to report"}),
    ]
    assert [(t.name, t.kind, t.upstream) for t in gf.tasks] == [
        ("fetch", "spout", ()),
        ("count", "bolt", ("fetch",)),
        ("report", "bolt", ("count",)),
    ]
    fetch, count, report = gf.tasks
    assert fetch.kwargs == {"count": "{{ params.count }}"} and fetch.output_uri == "/data/quotes"
    assert count.input_task == "fetch" and count.input_uri is None and count.mapped
    # each mapped run: the task's kwargs overridden by its own item
    assert count.map_kwargs == ({"top": 3}, {"top": 5, "min_length": 4})
    assert report.input_task is None and report.input_uri == "/data/fixed" and report.after == ("count",)
    # defaults apply unless the task sets its own
    assert fetch.retries == 1 and report.retries == 0
    assert fetch.state is not None and fetch.state.conn_id == "genius_redis_default"
    assert gf.summary() == "1 spout, 2 bolts"
    assert gf.task("count") is count


def test_minimal_geniusfile_and_defaults() -> None:
    gf = parse(
        "version: 1\ndag: {id: tiny}\n"
        "spouts:\n  hello: {class: 'airflow_genius.examples.tasks:Echo', method: say}\n"
    )
    (task,) = gf.tasks
    assert gf.dag.schedule is None and gf.dag.params == () and gf.dag.catchup is False
    assert task.runner == "local" and task.retries is None and task.state is None and task.output_uri is None


def test_environment_variables_expand_in_data_and_state_uris() -> None:
    text = variant("output: /data/quotes", "output: ${DATA_ROOT}/quotes").replace(
        "state: {conn_id: genius_redis_default}", "state: {uri: 'sqlite:///${STATE_DIR:-/var/genius}/s.db'}"
    )
    gf = parse(text, DATA_ROOT="/lake")
    assert gf.task("fetch").output_uri == "/lake/quotes"
    assert gf.task("fetch").state.uri == "sqlite:////var/genius/s.db"  # type: ignore[union-attr]
    templated = parse(variant("input: /data/fixed", 'input: "{{ params.top }}/in"'))
    assert templated.task("report").input_uri == "{{ params.top }}/in"  # left for Airflow to render


def test_schedule_on_assets_lists_uris_aliases_and_conditions() -> None:
    listed = parse(scheduled('["${DATA_ROOT}/quotes/", "genius-output:etl.fetch"]'), DATA_ROOT="/lake")
    # as written, variables expanded: dag_factory normalises the URIs as the producer's outlet does
    assert listed.dag.schedule == AssetSchedule("all", ("/lake/quotes/", "genius-output:etl.fetch"))
    nested = parse(
        scheduled("{any: [s3://lake/clean, {all: [file:///data/a, 'redis://r/0?stream=ev&group=g']}]}")
    )
    inner = AssetSchedule("all", ("file:///data/a", "redis://r/0?stream=ev&group=g"))
    assert nested.dag.schedule == AssetSchedule("any", ("s3://lake/clean", inner))
    assert isinstance(nested.dag.schedule, AssetSchedule)
    assert nested.dag.schedule.names() == (
        "s3://lake/clean",
        "file:///data/a",
        "redis://r/0?stream=ev&group=g",
    )


#: Errors of a schedule on assets, checked with MALFORMED below.
SCHEDULE_ERRORS = [
    pytest.param(
        scheduled("/data/quotes"),
        "dag.schedule: a schedule on assets is a list: schedule: [/data/quotes], got '/data/quotes'",
        id="bare-uri",
    ),
    pytest.param(
        scheduled("[]"),
        "dag.schedule: expected a non-empty list of asset URIs or aliases, got []",
        id="empty",
    ),
    pytest.param(
        scheduled("[data/quotes]"),
        "dag.schedule[0]: expected an asset URI (/abs/path, file:///abs/path, s3://bucket/prefix, "
        "redis://host/0?stream=name), an alias genius-output:<dag_id>.<task_id> or genius-model:<dag_id>.<task_id>, or {any: [...]} / "
        "{all: [...]}, got 'data/quotes'",
        id="relative-path",
    ),
    pytest.param(
        scheduled("[/data/a, genius-output:etl]"),
        "dag.schedule[1]: expected an alias genius-output:<dag_id>.<task_id>, got 'genius-output:etl'",
        id="alias-without-task",
    ),
    pytest.param(
        scheduled("{anyy: [/data/a]}"),
        "dag.schedule.anyy: unknown key; did you mean 'any'? (known: all, any)",
        id="unknown-condition",
    ),
    pytest.param(
        scheduled("{any: [/data/a], all: [/data/b]}"),
        "dag.schedule: expected one key, 'all' or 'any', with a list of assets, "
        "got {'any': ['/data/a'], 'all': ['/data/b']}",
        id="two-conditions",
    ),
    pytest.param(
        scheduled("{all: [/data/a, {any: /data/b}]}"),
        "dag.schedule.all[1].any: expected a non-empty list of asset URIs or aliases, got '/data/b'",
        id="nested-not-a-list",
    ),
    pytest.param(
        scheduled("['redis://r/0?group=g']"),
        "dag.schedule[0]: needs ?stream=<name>, got 'redis://r/0?group=g'",
        id="stream-without-name",
    ),
    pytest.param(
        scheduled("['s3://key:secret@lake/clean']"),
        "dag.schedule[0]: must not embed credentials; pass them through the environment (AWS variables, "
        "a profile or an instance role), got 's3://key:***@lake/clean'",
        id="credentials",
    ),
    pytest.param(
        scheduled("['gs://lake/clean']"),
        "dag.schedule[0]: expected an absolute path, file:///abs/path or s3://bucket/prefix, "
        "got 'gs://lake/clean'",
        id="unknown-scheme",
    ),
    pytest.param(
        scheduled("['/data/{{ ds }}']"),
        "dag.schedule[0]: a schedule is read when the file is parsed: no templates, got '/data/{{ ds }}'",
        id="template",
    ),
    pytest.param(
        scheduled("['${NOT_SET_ANYWHERE}/a']"),
        "dag.schedule[0]: environment variable 'NOT_SET_ANYWHERE' is not set "
        "(write ${NOT_SET_ANYWHERE:-default} to give a default)",
        id="unset-variable",
    ),
]


def test_example_geniusfile_is_valid_and_its_classes_check_out() -> None:
    gf = load_geniusfile(EXAMPLE, env={})
    assert gf.source == str(EXAMPLE)
    assert [t.name for t in gf.tasks] == ["fetch", "count", "long_words"]
    assert gf.task("long_words").mapped
    check_task_classes(gf)
    assert find_geniusfiles(EXAMPLE.parent) == [ML_EXAMPLE, EXAMPLE]


def test_ml_example_geniusfile_runs_every_step_on_the_runner_of_one_line() -> None:
    gf = load_geniusfile(ML_EXAMPLE, env={"GENIUS_EXAMPLE_ML_PORT": "18080"})
    assert [t.name for t in gf.tasks] == ["ingest", "train", "evaluate", "serve", "bench", "report"]
    assert {t.runner for t in gf.tasks} == {gf.defaults.runner} == {"local"}
    assert gf.clients_of("serve") == (gf.task("bench"),) and gf.task("bench").mapped
    assert gf.task("serve").serves.port == 18080  # type: ignore[union-attr]
    assert set(gf.runners) == {"docker", "kubernetes", "slurm", "ecs", "batch"}
    # remote runners' settings come from the environment
    remote = load_geniusfile(ML_EXAMPLE, env={"GENIUS_EXAMPLE_IMAGE": "registry.local/genius:ml"})
    assert (
        remote.runners["kubernetes"]["image"]
        == remote.runners["docker"]["image"]
        == "registry.local/genius:ml"
    )
    check_task_classes(gf)


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = textwrap.dedent(
        """\
        version: 1
        dag: {id: anchors}
        spouts:
          a: &base {class: 'airflow_genius.examples.tasks:Echo', method: say, kwargs: {message: hi}}
          b:
            <<: *base
            kwargs: {message: again}
        """
    )
    gf = parse(text)
    assert gf.task("b").kwargs == {"message": "again"} and gf.task("b").class_path.endswith(":Echo")


# ---------------------------------------------------------------------- malformed files
MALFORMED = [
    pytest.param(
        variant('schedule: "@daily"', "schedule: @daily"),
        "line 4 column 13: invalid YAML: found character '@' that cannot start any token "
        '(quote values that start with @, e.g. schedule: "@daily")',
        id="yaml-syntax",
    ),
    pytest.param(
        variant("  tags: [genius]\n", "  tags: [genius]\n  id: again\n"),
        "line 7 column 3: duplicate key 'id' (first at line 3)",
        id="yaml-duplicate-key",
    ),
    pytest.param(
        variant("bolts:", "bolt:"),
        "bolt: unknown key; did you mean 'bolts'? (known: bolts, dag, defaults, runners, services, spouts, "
        "version)",
        id="unknown-top-key",
    ),
    pytest.param(
        variant("    input: fetch", "    inptu: fetch"),
        "bolts.count.inptu: unknown key; did you mean 'input'? (known: after, args, class, doc, input, "
        "kwargs, map, method, model, operator, output, platform, pool, queue, retries, retry_delay_seconds, "
        "runner, service, state, timeout_seconds)",
        id="unknown-task-key",
    ),
    pytest.param(
        variant("input: fetch", "input: fech"),
        "bolts.count.input: unknown upstream 'fech' (known: fetch, report)",
        id="unknown-upstream",
    ),
    pytest.param(
        variant("airflow_genius.examples.tasks:QuoteSpout", "airflow_genius.examples.tasks.QuoteSpout"),
        "spouts.fetch.class: expected an import path 'package.module:ClassName', "
        "got 'airflow_genius.examples.tasks.QuoteSpout'",
        id="bad-class-path",
    ),
    pytest.param(
        variant("method: fetch", "method: _fetch"),
        "spouts.fetch.method: private and dunder methods cannot be run, got '_fetch'",
        id="private-method",
    ),
    pytest.param(
        variant("  report:", "  fetch:"),
        "bolts.fetch: duplicate task name (also in spouts)",
        id="duplicate-task-name",
    ),
    pytest.param(
        variant("input: fetch", "input: report"),
        "bolts.report.after: cycle: count -> report -> count",
        id="cycle",
    ),
    pytest.param(
        variant("    output: /data/quotes", "    input: /data/in\n    output: /data/quotes"),
        "spouts.fetch.input: a spout ingests data itself and takes no input; make it a bolt",
        id="spout-with-input",
    ),
    pytest.param(
        variant("    input: /data/fixed\n", ""),
        "bolts.report.input: missing; a bolt reads the output of an upstream task (its name) or a folder URI",
        id="bolt-without-input",
    ),
    pytest.param(
        variant('schedule: "@daily"', "schedule: 5"),
        "dag.schedule: expected a cron expression such as '0 6 * * *', a preset such as '@daily', "
        "a list of asset URIs, or null, got 5",
        id="schedule-type",
    ),
    pytest.param(
        variant('schedule: "@daily"', 'schedule: "0 6 * *"'),
        "dag.schedule: expected a cron expression such as '0 6 * * *', a preset such as '@daily', "
        "a list of asset URIs, or null (a cron expression has 5 fields), got '0 6 * *'",
        id="schedule-cron-fields",
    ),
    pytest.param(
        variant("id: quotes", "id: quotes pipeline"),
        "dag.id: expected an id of letters, digits, '_', '.' and '-' (at most 250 characters), "
        "got 'quotes pipeline'",
        id="bad-dag-id",
    ),
    pytest.param(
        variant("  fetch:", "  fetch/all:").replace("input: fetch", "input: fetch/all"),
        "spouts.fetch/all: expected a task name of letters, digits, '_', '.' and '-' "
        "(at most 250 characters), got 'fetch/all'",
        id="bad-task-name",
    ),
    pytest.param(
        variant("runner: local", "runner: lokal"),
        "defaults.runner: unknown runner; did you mean 'local'? "
        "(known: local, docker, kubernetes, ecs, batch, slurm), got 'lokal'",
        id="unknown-runner",
    ),
    pytest.param(
        variant("    retries: 0", "    retries: 0\n    runner: kube"),
        "bolts.report.runner: unknown runner (known: local, docker, kubernetes, ecs, batch, slurm), got 'kube'",
        id="unknown-runner-per-task",
    ),
    pytest.param(
        variant("version: 1", "version: 2"),
        "version: expected one of [1] (the versions this package reads), got 2",
        id="version",
    ),
    pytest.param(
        variant("kwargs: {top: 5}", "kwargs: {top: 5, since: 2024-05-01}"),
        "bolts.count.kwargs.since: expected text, a number, true/false, null, a list or a mapping; "
        "quote dates and times, got datetime.date(2024, 5, 1)",
        id="kwargs-not-json",
    ),
    pytest.param(
        variant("{{ params.count }}", "{{ params.cuont }}"),
        "spouts.fetch.kwargs.count: unknown param 'cuont' (known: count, top)",
        id="unknown-param",
    ),
    pytest.param(
        variant("input: /data/fixed", "input: count"),
        "bolts.report.input: upstream 'count' is mapped and has one output per mapped run; "
        "read a fixed folder or use 'after' instead",
        id="mapped-upstream-as-input",
    ),
    pytest.param(
        variant("map: {kwargs: [{top: 3}, {top: 5, min_length: 4}]}", "map: {kwargs: []}"),
        "bolts.count.map.kwargs: expected a non-empty list of kwargs mappings, one per mapped run, got []",
        id="empty-map",
    ),
    pytest.param(
        variant("output: /data/counts", "output: data/counts"),
        "bolts.count.output: expected an absolute path, file:///abs/path or s3://bucket/prefix, "
        "got 'data/counts'",
        id="relative-output",
    ),
    pytest.param(
        variant("    output: /data/quotes\n", ""),
        "bolts.count.input: upstream 'fetch' writes no output (give spouts.fetch an 'output')",
        id="upstream-without-output",
    ),
    pytest.param(
        variant("{conn_id: genius_redis_default}", "{uri: 'postgresql://app:secret@db/genius'}"),
        "defaults.state.uri: must not embed a password; pass it in GENIUS_STATE_PASSWORD, "
        "got 'postgresql://app:***@db/genius'",
        id="state-password",
    ),
    pytest.param(
        variant("{conn_id: genius_redis_default}", "{conn_id: genius_redis_default, uri: 'memory://'}"),
        "defaults.state: set either conn_id (an Airflow connection) or uri, not both or neither",
        id="state-both",
    ),
    pytest.param(
        variant("output: /data/quotes", "output: ${NOT_SET_ANYWHERE}/quotes"),
        "spouts.fetch.output: environment variable 'NOT_SET_ANYWHERE' is not set "
        "(write ${NOT_SET_ANYWHERE:-default} to give a default)",
        id="env-unset",
    ),
    pytest.param(
        variant("after: count", "after: [count, cuont]"),
        "bolts.report.after: unknown task 'cuont' (known: count, fetch, report)",
        id="unknown-after",
    ),
    pytest.param(
        variant("top: {default: 5,", "top: {type: integer, default: five,"),
        "dag.params.top.default: does not match type 'integer', got 'five'",
        id="param-type",
    ),
    pytest.param(
        variant("kwargs: {top: 5}", "kwargs: {top-n: 5}"),
        "bolts.count.kwargs: every key must be a Python identifier, got 'top-n'",
        id="kwargs-key",
    ),
    pytest.param(
        variant("retries: 1", "retries: -1"),
        "defaults.retries: expected an integer >= 0, got -1",
        id="retries",
    ),
    pytest.param("", "version: missing; the file is empty (start it with 'version: 1')", id="empty-file"),
    pytest.param(
        "version: 1\ndag: {id: x}\nspouts: {}\n",
        "spouts: a Geniusfile needs at least one spout or bolt",
        id="no-tasks",
    ),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED + SCHEDULE_ERRORS)
def test_malformed_geniusfile_gives_one_line_naming_entry_and_field(text: str, message: str) -> None:
    with pytest.raises(GeniusfileError) as caught:
        parse(text)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith(caught.value.field + ": ")


def test_error_from_a_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.genius.yaml"
    path.write_text(variant("input: fetch", "input: fech"))
    with pytest.raises(GeniusfileError) as caught:
        load_geniusfile(path)
    assert str(caught.value) == f"{path}: bolts.count.input: unknown upstream 'fech' (known: fetch, report)"
    assert caught.value.field == "bolts.count.input" and caught.value.source == str(path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "tasks:QuoteSpout",
            "tasks:QuoteSpot",
            "spouts.fetch.class: task class 'airflow_genius.examples.tasks:QuoteSpot': "
            "module 'airflow_genius.examples.tasks' has no 'QuoteSpot'",
        ),
        (
            "tasks:QuoteSpout",
            "tasks:WordCount",
            "spouts.fetch.class: airflow_genius.examples.tasks:WordCount is a bolt; list it under bolts",
        ),
        (
            "method: fetch",
            "method: fletch",
            "spouts.fetch.method: QuoteSpout has no task method 'fletch' (has: fetch)",
        ),
        (
            "min_length: 4",
            "min_len: 4",
            "bolts.count.map.kwargs[1]: WordCount.count() got an unexpected keyword argument 'min_len' "
            "(takes: top, min_length)",
        ),
    ],
)
def test_check_task_classes_imports_and_binds(old: str, new: str, message: str) -> None:
    with pytest.raises(GeniusfileError) as caught:
        check_task_classes(parse(variant(old, new)))
    assert str(caught.value) == message


# ---------------------------------------------------------------------- runners, services, task settings
PLATFORM = textwrap.dedent(
    """\
    version: 1
    dag: {id: ml}
    runners:
      docker: {image: "${IMAGE:-localhost/airflow-genius-runtime:dev}", network_mode: host}
      slurm: {ssh_conn_id: slurm_default, partition: debug}
    defaults:
      runner: docker
      timeout_seconds: 600
      pool: genius_pool
      queue: gpu
      operator: {priority_weight: 2, owner: data}
    spouts:
      fetch:
        class: airflow_genius.examples.tasks:QuoteSpout
        method: fetch
        output: /data/quotes
        runner: local
        pool: local_pool
        operator: {owner: ingest}
    bolts:
      ask:
        class: airflow_genius.examples.tasks:ServiceClient
        method: call
        input: fetch
        service: serve
        platform: {network_mode: bridge, environment: {MODE: fast}}
        timeout_seconds: 30
    services:
      serve:
        class: airflow_genius.examples.tasks:EchoService
        method: serve
        port: 8001
        health_path: /ready
        ready_timeout_seconds: 120
        start_timeout_seconds: 300
        runner: slurm
        queue: cpu
    """
)


def platform_variant(old: str, new: str) -> str:
    assert old in PLATFORM, old
    return PLATFORM.replace(old, new, 1)


def test_runners_platform_and_task_settings_merge_over_defaults() -> None:
    gf = parse(PLATFORM, IMAGE="registry.local/genius:2")
    fetch, ask, serve = gf.task("fetch"), gf.task("ask"), gf.task("serve")
    assert gf.runners["docker"] == {"image": "registry.local/genius:2", "network_mode": "host"}  # ${IMAGE}
    assert (fetch.runner, ask.runner, serve.runner) == ("local", "docker", "slurm")
    # a step's platform merges over its runner's block, key by key
    assert gf.platform_of(ask) == {
        "image": "registry.local/genius:2",
        "network_mode": "bridge",
        "environment": {"MODE": "fast"},
    }
    assert ask.platform == {"network_mode": "bridge", "environment": {"MODE": "fast"}}
    assert gf.platform_of(serve) == {"ssh_conn_id": "slurm_default", "partition": "debug"}
    assert gf.platform_of(fetch) == {}  # no runners.local block
    # timeout, pool, queue: the step's own value, else the default; operator: merged key by key
    assert (fetch.timeout_seconds, fetch.pool, fetch.queue) == (600.0, "local_pool", "gpu")
    assert (ask.timeout_seconds, ask.pool, ask.queue) == (30.0, "genius_pool", "gpu")
    assert serve.queue == "cpu"
    assert fetch.operator == {"priority_weight": 2, "owner": "ingest"}
    assert ask.operator == {"priority_weight": 2, "owner": "data"}
    assert gf.defaults.operator == {"priority_weight": 2, "owner": "data"}


def test_services_their_clients_and_notes() -> None:
    gf = parse(PLATFORM)
    serve, ask = gf.task("serve"), gf.task("ask")
    assert serve.kind == "service" and serve.where == "services.serve" and serve.stop_name == "serve_stop"
    assert serve.serves is not None
    assert (serve.serves.port, serve.serves.health_path) == (8001, "/ready")
    assert (serve.serves.ready_timeout_seconds, serve.serves.start_timeout_seconds) == (120.0, 300.0)
    # a client runs after its service is up (and after its input)
    assert ask.service == "serve" and ask.upstream == ("fetch", "serve")
    assert [t.name for t in gf.tasks] == ["fetch", "serve", "ask"]
    assert gf.services == (serve,) and gf.clients_of("serve") == (ask,)
    assert gf.summary() == "1 spout, 1 bolt, 1 service" and gf.notes == ()
    # a service nobody uses is allowed, with a note
    lonely = parse(platform_variant("    service: serve\n", ""))
    assert lonely.notes == (
        "services.serve: no spout or bolt names it as its 'service'; it starts and is stopped at once",
    )
    defaults = parse(platform_variant("    port: 8001\n    health_path: /ready\n", "")).task("serve").serves
    assert defaults is not None and (defaults.port, defaults.health_path) == (8000, "/health")


def test_a_service_port_may_come_from_the_environment() -> None:
    # a free port differs per host: `port: ${VAR:-default}` expands to the number
    text = platform_variant("port: 8001", "port: ${ML_PORT:-8001}")
    assert parse(text).task("serve").serves.port == 8001
    assert parse(text, ML_PORT="18765").task("serve").serves.port == 18765


PLATFORM_ERRORS = [
    pytest.param(
        platform_variant("  slurm: {", "  slurmm: {"),
        "runners.slurmm: unknown runner; did you mean 'slurm'? (known: local, docker, kubernetes, ecs, batch, "
        "slurm), got 'slurmm'",
        id="unknown-runner-block",
    ),
    pytest.param(
        platform_variant("network_mode: bridge,", "task_class: x,"),
        "bolts.ask.platform.task_class: set by the Geniusfile itself; use 'class'",
        id="platform-genius-argument",
    ),
    pytest.param(
        platform_variant("partition: debug}", "partition: debug, execution_timeout: 5}"),
        "runners.slurm.execution_timeout: set by the Geniusfile itself; use 'timeout_seconds'",
        id="runner-block-task-argument",
    ),
    pytest.param(
        platform_variant("{priority_weight: 2, owner: data}", "{priority_weight: 2, task_id: x}"),
        "defaults.operator.task_id: set by the Geniusfile itself; it is the entry's name",
        id="operator-task-id",
    ),
    pytest.param(
        platform_variant("operator: {owner: ingest}", "operator: {retries: 3}"),
        "spouts.fetch.operator.retries: set by the Geniusfile itself; use 'retries'",
        id="operator-retries",
    ),
    pytest.param(
        platform_variant("environment: {MODE: fast}", "2bad: 1"),
        "bolts.ask.platform: every key must be a Python identifier, got '2bad'",
        id="platform-key",
    ),
    pytest.param(
        platform_variant("network_mode: bridge,", "since: 2024-01-01,"),
        "bolts.ask.platform.since: expected text, a number, true/false, null, a list or a mapping; quote dates "
        "and times, got datetime.date(2024, 1, 1)",
        id="platform-value",
    ),
    pytest.param(
        platform_variant("network_mode: bridge", "network_mode: '${NO_SUCH_NETWORK}'"),
        "bolts.ask.platform.network_mode: environment variable 'NO_SUCH_NETWORK' is not set "
        "(write ${NO_SUCH_NETWORK:-default} to give a default)",
        id="platform-env",
    ),
    pytest.param(
        platform_variant("platform: {", "platform: [").replace("fast}}", "fast}]"),
        "bolts.ask.platform: expected a mapping (key: value lines), got [{'network_mode': 'bridge'}, "
        "{'environment': {'MODE': 'fast'}}]",
        id="platform-not-mapping",
    ),
    pytest.param(
        platform_variant("timeout_seconds: 30", "timeout_seconds: 0"),
        "bolts.ask.timeout_seconds: expected a number of seconds > 0, got 0",
        id="timeout-zero",
    ),
    pytest.param(
        platform_variant("timeout_seconds: 600", "timeout_seconds: ten minutes"),
        "defaults.timeout_seconds: expected a number of seconds >= 0, got 'ten minutes'",
        id="timeout-text",
    ),
    pytest.param(
        platform_variant("pool: local_pool", "pool: ''"),
        "spouts.fetch.pool: expected a name (a short text), got ''",
        id="pool-empty",
    ),
    pytest.param(
        platform_variant("queue: gpu", "queue: [gpu]"),
        "defaults.queue: expected a name (a short text), got ['gpu']",
        id="queue-list",
    ),
    pytest.param(
        platform_variant("service: serve", "service: serv"),
        "bolts.ask.service: unknown service 'serv' (known: serve)",
        id="unknown-service",
    ),
    pytest.param(
        platform_variant("    service: serve\n", "    service: ''\n"),
        "bolts.ask.service: unknown service '' (known: serve)",
        id="empty-service",
    ),
    pytest.param(
        platform_variant("services:", "spares:").split("spares:")[0],
        "bolts.ask.service: unknown service 'serve' (known: none; declare it under services)",
        id="client-without-services",
    ),
    pytest.param(
        platform_variant("port: 8001", "port: ${NO_SUCH_PORT}"),
        "services.serve.port: environment variable 'NO_SUCH_PORT' is not set "
        "(write ${NO_SUCH_PORT:-default} to give a default)",
        id="service-port-env-unset",
    ),
    pytest.param(
        platform_variant("port: 8001", "port: ${NO_SUCH_PORT:-http}"),
        "services.serve.port: expected a TCP port (1-65535), got 'http'",
        id="service-port-env-text",
    ),
    pytest.param(
        platform_variant("runner: slurm", "runner: batch"),
        "services.serve.runner: runner 'batch' has no service operators "
        "(use one of local, docker, kubernetes, ecs, slurm)",
        id="service-on-batch",
    ),
    pytest.param(
        platform_variant("    runner: slurm\n", "").replace("runner: docker", "runner: batch"),
        "services.serve.runner: runner 'batch' (from defaults.runner) has no service operators "
        "(use one of local, docker, kubernetes, ecs, slurm)",
        id="service-on-default-batch",
    ),
    pytest.param(
        platform_variant("    queue: cpu\n", "    queue: cpu\n    after: ask\n"),
        "services.serve.after: cycle: ask -> serve -> ask",
        id="cycle-through-service",
    ),
    pytest.param(
        platform_variant("  ask:", "  serve_stop:"),
        "services.serve: its stop task 'serve_stop' has the name of bolts.serve_stop",
        id="stop-name-clash",
    ),
    pytest.param(
        platform_variant("input: fetch", "input: serve"),
        "bolts.ask.input: 'serve' is a service and writes no output; to use it, set 'service: serve'",
        id="service-as-input",
    ),
    pytest.param(
        platform_variant("port: 8001", "port: 80000"),
        "services.serve.port: expected a TCP port (1-65535), got 80000",
        id="service-port",
    ),
    pytest.param(
        platform_variant("health_path: /ready", "health_path: ready"),
        "services.serve.health_path: expected a URL path starting with '/' (no spaces, no '?#'), got 'ready'",
        id="service-health-path",
    ),
    pytest.param(
        platform_variant("ready_timeout_seconds: 120", "ready_timeout_seconds: -1"),
        "services.serve.ready_timeout_seconds: expected a number of seconds >= 0, got -1",
        id="service-ready-timeout",
    ),
    pytest.param(
        platform_variant("    queue: cpu\n", "    queue: cpu\n    map: {kwargs: [{a: 1}]}\n"),
        "services.serve.map: unknown key (known: after, args, class, doc, health_path, input, kwargs, method, "
        "model, operator, platform, pool, port, queue, ready_timeout_seconds, retries, retry_delay_seconds, "
        "runner, start_timeout_seconds, state, timeout_seconds)",
        id="service-map",
    ),
    pytest.param(
        platform_variant("    queue: cpu\n", "    queue: cpu\n    service: serve\n"),
        "services.serve.service: unknown key (known: after, args, class, doc, "
        "health_path, input, kwargs, method, model, operator, platform, pool, port, queue, ready_timeout_seconds, "
        "retries, retry_delay_seconds, runner, start_timeout_seconds, state, timeout_seconds)",
        id="service-of-service",
    ),
]


@pytest.mark.parametrize(("text", "message"), PLATFORM_ERRORS)
def test_runner_service_and_task_setting_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(GeniusfileError) as caught:
        parse(text)
    assert str(caught.value) == message
    assert "\n" not in str(caught.value)


def test_a_file_of_services_only_still_needs_a_spout_or_bolt() -> None:
    text = "version: 1\ndag: {id: x}\nservices:\n  s: {class: 'airflow_genius.examples.tasks:EchoService', method: serve}\n"
    with pytest.raises(GeniusfileError, match=r"^spouts: a Geniusfile needs at least one spout or bolt$"):
        parse(text)


def test_check_task_classes_accepts_any_class_kind_for_a_service() -> None:
    check_task_classes(parse(PLATFORM))  # EchoService is a Task; ServiceClient too
    with pytest.raises(GeniusfileError) as caught:
        check_task_classes(parse(platform_variant("method: serve", "method: sreve")))
    assert str(caught.value).startswith("services.serve.method: EchoService has no task method 'sreve'")


# ---------------------------------------------------------------------- genius dag validate
def genius(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
        cwd=cwd,
        timeout=60,
    )


def test_validate_ok(tmp_path: Path) -> None:
    done = genius("dag", "validate", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"OK {EXAMPLE}: 1 spout, 2 bolts\n"
    # a folder stands for its *.genius.yaml files; a file named twice is checked once
    done = genius("dag", "validate", str(EXAMPLE.parent), str(EXAMPLE))
    assert done.returncode == 0 and done.stdout == (
        f"OK {ML_EXAMPLE}: 3 spouts, 2 bolts, 1 service\nOK {EXAMPLE}: 1 spout, 2 bolts\n"
    )


def test_validate_reports_every_file_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "a.genius.yaml").write_text(BASE)
    (tmp_path / "b.genius.yaml").write_text(variant("input: fetch", "input: fech"))
    (tmp_path / "c.genius.yaml").write_text(BASE)  # same dag id as a.genius.yaml
    (tmp_path / "d.genius.yaml").write_text(
        variant("tasks:QuoteSpout", "tasks:QuoteSpot").replace("id: quotes", "id: d")
    )
    done = genius(
        "dag", "validate", "a.genius.yaml", "b.genius.yaml", "c.genius.yaml", "d.genius.yaml", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        "OK a.genius.yaml: 1 spout, 2 bolts",
        "ERROR b.genius.yaml: bolts.count.input: unknown upstream 'fech' (known: fetch, report)",
        "ERROR c.genius.yaml: dag.id: 'quotes' is already used by a.genius.yaml",
        "ERROR d.genius.yaml: spouts.fetch.class: task class 'airflow_genius.examples.tasks:QuoteSpot': "
        "module 'airflow_genius.examples.tasks' has no 'QuoteSpot'",
    ]
    # --no-import checks the structure only
    done = genius("dag", "validate", "--no-import", "d.genius.yaml", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "OK d.genius.yaml: 1 spout, 2 bolts\n"


def test_validate_missing_file_empty_folder_and_usage(tmp_path: Path) -> None:
    done = genius("dag", "validate", str(tmp_path / "nope.genius.yaml"))
    assert done.returncode == 2
    assert (
        done.stdout
        == f"ERROR {tmp_path / 'nope.genius.yaml'}: file: cannot read: No such file or directory\n"
    )
    done = genius("dag", "validate", str(tmp_path))
    assert done.returncode == 2 and f"no *.genius.yaml file in folder {str(tmp_path)!r}" in done.stderr
    assert genius("dag", "validate").returncode == 2  # argparse: FILE is required
    assert "validate" in genius("dag", "--help").stdout


def test_validate_runs_without_airflow(tmp_path: Path) -> None:
    # `import airflow` fails in the child as on a lean image; validation must not need it. The check of
    # platform arguments (an entry point that needs Airflow) is then skipped, with a note on stderr.
    lonely = tmp_path / "ml.genius.yaml"
    lonely.write_text(platform_variant("    service: serve\n", ""))
    child = textwrap.dedent(
        f"""
        import sys

        class NoAirflow:
            def find_spec(self, name, path=None, target=None):
                if name == "airflow" or name.startswith("airflow."):
                    raise ModuleNotFoundError(name)

        sys.meta_path.insert(0, NoAirflow())
        from airflow_genius.core.cli import main
        code = main(["dag", "validate", {str(EXAMPLE)!r}, {str(lonely)!r}])
        assert not [m for m in sys.modules if m == "airflow" or m.startswith("airflow.")]
        sys.exit(code)
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"OK {EXAMPLE}: 1 spout, 2 bolts",
        f"OK {lonely}: 1 spout, 1 bolt, 1 service",
    ]
    assert done.stderr.splitlines() == [
        "note: check 'platform_arguments' (airflow_genius.dag_factory:check_platform_arguments) not run: "
        "Airflow is not installed",
        f"note: {lonely}: services.serve: no spout or bolt names it as its 'service'; it starts and is "
        "stopped at once",
    ]


def test_parsing_does_not_define_the_task_spec() -> None:
    # The DAG processor parses each Geniusfile in a new process: the TaskSpec's dataclasses
    # (core.spec) are for running tasks, and defining them would add to every parse. The example
    # has a model and a service, so every rule of spec_rules is used.
    child = textwrap.dedent(
        f"""
        import sys
        from airflow_genius.core.geniusfile import load_geniusfile
        gf = load_geniusfile({str(ML_EXAMPLE)!r}, env={{}})
        assert any(t.model for t in gf.tasks) and gf.services, gf.summary()
        print(sorted(m for m in sys.modules if m.startswith("airflow_genius.core.spec")))
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["['airflow_genius.core.spec_rules']"]
