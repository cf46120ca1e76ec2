"""Hostile Geniusfiles: YAML bombs, deep nesting, huge files and lone surrogates are refused quickly
with one line naming the field, in process and through `genius dag validate` (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_genius.core import geniusfile
from airflow_genius.core.geniusfile import (
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    GeniusfileError,
    load_geniusfile,
    parse_geniusfile,
)

TESTS_DIR = Path(__file__).resolve().parents[1]
HEAD = """\
version: 1
dag:
  id: hostile
  params:
    count: 3
spouts:
  fetch:
    class: airflow_genius.examples.tasks:QuoteSpout
    method: fetch
"""
#: Bytes a bomb may allocate while it is refused: an expanded one would take gigabytes (measured as
#: traced allocations, not time, so a busy machine cannot make the test fail).
BOMB_BYTES = 64 << 20


def peak_allocation(call: Callable[[], object]) -> int:
    """The most memory Python held at once while ``call`` ran (it is expected to raise)."""
    tracemalloc.start()
    try:
        call()
    except Exception:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def laughs(levels: int, indent: str, width: int = 10) -> list[str]:
    """``levels`` of ``width`` aliases each: ``width ** levels`` values from a few hundred bytes."""
    lines = [f"{indent}a0: &a0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, levels + 1):
        lines.append(f"{indent}a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width)}]")
    return lines


def nine_levels_in_kwargs() -> str:
    return HEAD + "    kwargs:\n" + "\n".join(laughs(9, "      ")) + "\n"


def eight_levels_in_params() -> str:
    text = HEAD.replace("    count: 3\n", "\n".join(laughs(8, "    ")) + "\n")
    return text


def merge_keys() -> str:
    lines = ["    kwargs:", "      m0: &m0 {k0: 1, k1: 2, k2: 3}"]
    for level in range(1, 10):
        merged = ", ".join([f"*m{level - 1}"] * 10)
        lines.append(f"      m{level}: &m{level} {{<<: [{merged}], k{level}: {level}}}")
    return HEAD + "\n".join(lines) + "\n"


def flow_nesting(depth: int) -> str:
    return HEAD + f"    args: [{'[' * depth}1{']' * depth}]\n"


def block_nesting(depth: int) -> str:
    lines = ["    args:"] + [" " * (6 + 2 * level) + "-" for level in range(depth)]
    return HEAD + "\n".join(lines) + " 1\n"


BOMBS = [
    pytest.param(
        nine_levels_in_kwargs(), "spouts.fetch.kwargs.a", "values once aliases are expanded", id="9x10"
    ),
    pytest.param(
        eight_levels_in_params(), "dag.params.a", "values once aliases are expanded", id="params-8x10"
    ),
    pytest.param(merge_keys(), "spouts.fetch.kwargs.m", "values once aliases are expanded", id="merge-keys"),
    pytest.param(
        HEAD + "    kwargs: {loop: &me [1, *me]}\n",
        "spouts.fetch.kwargs.loop[1]",
        "alias *me is used inside its own anchor",
        id="recursive",
    ),
    pytest.param(
        HEAD + "    kwargs: &me {again: *me}\n",
        "spouts.fetch.kwargs.again",
        "alias *me is used inside its own anchor",
        id="recursive-mapping",
    ),
    pytest.param(
        flow_nesting(200_000), "line 10 column", f"nested deeper than {MAX_YAML_DEPTH} levels", id="flow-200k"
    ),
    pytest.param(
        block_nesting(MAX_YAML_DEPTH + 20),
        "spouts.fetch.args[0][0]",
        f"nested deeper than {MAX_YAML_DEPTH} levels",
        id="block-deep",
    ),
    pytest.param(
        HEAD + '    kwargs: {name: "run\\ud800"}\n',
        "spouts.fetch.kwargs.name",
        "contains a lone surrogate, which is not text",
        id="surrogate-value",
    ),
    pytest.param(
        HEAD.replace("id: hostile", 'id: "\\udfffx"'),
        "dag.id",
        "contains a lone surrogate, which is not text",
        id="surrogate-dag-id",
    ),
    pytest.param(
        HEAD + f"    args: [&one 1, {'*one, ' * (MAX_YAML_VALUES + 10)}1]\n",
        "spouts.fetch.args[",
        "values once aliases are expanded",
        id="many-aliases",
    ),
]


@pytest.mark.parametrize(("text", "field", "problem"), BOMBS)
def test_a_bomb_is_refused_quickly_with_one_line_naming_the_field(
    text: str, field: str, problem: str
) -> None:
    with pytest.raises(GeniusfileError) as caught:
        parse_geniusfile(text)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 250, message
    assert message.startswith(field) and problem in message and "line " in message, message
    # Refused before it is expanded. (A long file of plain aliases is not exponential: the value limit
    # bounds its linear cost.)
    peak = peak_allocation(lambda: parse_geniusfile(text))
    assert peak < BOMB_BYTES, f"{peak / 2**20:.0f} MiB"


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.genius.yaml"
    path.write_text(HEAD + "# " + "x" * MAX_YAML_BYTES + "\n")
    for parse in (lambda: load_geniusfile(path), lambda: parse_geniusfile(path.read_text())):
        with pytest.raises(GeniusfileError) as caught:
            parse()
        assert caught.value.detail == f"file: larger than {MAX_YAML_BYTES:,} bytes, the limit of a Geniusfile"
    # unread: no more than the limit is ever read, however large the file
    path.write_text(HEAD + "# " + "x" * (16 * MAX_YAML_BYTES) + "\n")
    assert peak_allocation(lambda: load_geniusfile(path)) < 3 * MAX_YAML_BYTES


def test_yaml_within_the_limits_still_loads() -> None:
    anchors = HEAD + "    kwargs:\n" + "\n".join(laughs(3, "      ")) + "\n"  # 1,000 values: fine
    assert parse_geniusfile(anchors).task("fetch").kwargs["a3"][9][9][9] == ["lol"] * 10
    assert parse_geniusfile(flow_nesting(MAX_YAML_DEPTH - 10)).task("fetch").args
    assert parse_geniusfile(block_nesting(MAX_YAML_DEPTH - 10)).task("fetch").args


# ---------------------------------------------------------------------- the loaders agree
def flat_list(values: int) -> str:
    """A document of exactly ``values`` values: the root mapping, its key, a list and its items."""
    return "a: [" + ", ".join(["0"] * (values - 3)) + "]\n"


def nested(depth: int, *, flow: bool) -> str:
    """A list inside lists: ``depth`` collections under the root mapping."""
    if flow:
        return "a: " + "[" * depth + "1" + "]" * depth + "\n"
    return "a:\n" + "\n".join(" " * (2 + 2 * level) + "-" for level in range(depth)) + " 1\n"


#: Documents a Geniusfile's values come from. "plain": libyaml composes it and its values are built in
#: one pass; the others are read by the checked loader. Either way the outcome must be the same.
DOCUMENTS = [
    pytest.param(HEAD, True, id="geniusfile"),
    pytest.param("", True, id="empty"),
    pytest.param(
        "a: [~, null, true, false, yes, no, on, off, 0o17, 017, 0x1F, 1_000, 12:30:00, 3.5, .inf, -.inf,\n"
        "    .nan, 1e3, 2024-01-02, 2024-01-02T03:04:05Z, 2024-01-02 03:04:05.5+02:00, '123', \"x\", é, 🚀]\n",
        True,
        id="scalar-types",
    ),
    pytest.param("{1: a, 2.5: b, null: c, false: d, 2024-01-02: e, x: {y: [1, {z: w}]}}\n", True, id="keys"),
    pytest.param("a: !!str 5\nb: !!int '7'\nc: !!float '1'\nd: |\n  two\n  lines\n", True, id="std-tags"),
    pytest.param(nested(MAX_YAML_DEPTH - 10, flow=True), True, id="flow-depth-90"),
    pytest.param(nested(MAX_YAML_DEPTH - 10, flow=False), True, id="block-depth-90"),
    pytest.param(flat_list(MAX_YAML_VALUES), True, id="values-at-limit"),
    pytest.param("a: &x 1\nb: *x\n", None, id="scalar-alias"),
    pytest.param("a: &x [1, 2]\nb: *x\n", False, id="collection-alias"),
    pytest.param("a: &b {k: 1}\nc:\n  <<: *b\n  j: 2\n", False, id="merge-key"),
    pytest.param("a: !!binary aGk=\nb: !!set {x, y}\n", False, id="other-std-tags"),
    pytest.param("a: !custom x\n", False, id="custom-tag"),
    pytest.param("a: !!python/object:os.system x\n", False, id="python-tag"),
    pytest.param("a: 1\nb: 2\na: 3\n", False, id="duplicate-key"),
    pytest.param("1: a\n1.0: b\n", False, id="equal-keys"),
    pytest.param("? [1, 2]\n: a\n", False, id="collection-key"),
    pytest.param('a: "\\ud800"\n', False, id="lone-surrogate"),
    pytest.param('"\\udfff": 1\n', False, id="lone-surrogate-key"),
    pytest.param("d: 2024-02-30\n", False, id="impossible-date"),
    pytest.param("a: 1\n---\nb: 2\n", False, id="two-documents"),
    pytest.param("a:\n\t- 1\n", False, id="tab"),
    pytest.param("schedule: @daily\n", False, id="at-sign"),
    pytest.param("a: [1, 2\n", False, id="unclosed"),
    pytest.param(flat_list(MAX_YAML_VALUES + 1), False, id="values-over-limit"),
    *(
        pytest.param(
            nested(depth, flow=flow),
            None if depth < MAX_YAML_DEPTH else False,
            id=f"{'flow' if flow else 'block'}-depth-{depth}",
        )
        for flow in (True, False)
        for depth in (MAX_YAML_DEPTH - 2, MAX_YAML_DEPTH - 1, MAX_YAML_DEPTH, MAX_YAML_DEPTH + 1)
    ),
]


def outcome(load: Callable[[str], Any], text: str) -> tuple[str, ...]:
    """What loading ``text`` gives: its values (repr tells True from 1 and 1 from 1.0), or the error."""
    try:
        return ("values", repr(load(text)))
    except Exception as exc:  # the outcome compared: the error's type and its one line
        return ("error", type(exc).__name__, str(exc))


@pytest.mark.parametrize(("text", "plain"), DOCUMENTS)
def test_every_yaml_loader_gives_the_same_values_or_the_same_error(
    text: str, plain: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    assert yaml.__with_libyaml__  # the [yaml] extra's PyYAML wheels carry libyaml
    got = outcome(geniusfile._load_yaml, text)
    if plain:  # the usual Geniusfile takes the fast path, which builds the values itself
        assert outcome(geniusfile._plain_yaml, text) == got
    elif plain is False:  # the fast path defers to the checked loader (or YAML's own error)
        with pytest.raises((geniusfile._NotPlain, yaml.YAMLError, ValueError)):
            geniusfile._plain_yaml(text)

    def deferred(_: str) -> Any:
        raise geniusfile._NotPlain

    monkeypatch.setattr(geniusfile, "_plain_yaml", deferred)
    assert outcome(geniusfile._load_yaml, text) == got  # libyaml's scanner, the checked composer
    monkeypatch.setattr(yaml, "__with_libyaml__", False)
    # PyYAML alone: the same values or the same kind of error (its scanner stops deep flow nesting
    # itself, naming the line rather than the field).
    assert outcome(geniusfile._load_yaml, text)[:2] == got[:2]


# ---------------------------------------------------------------------- genius dag validate
def genius(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_genius.core.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
        cwd=cwd,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("lol9", nine_levels_in_kwargs(), "spouts.fetch.kwargs.a"),
        ("params8", eight_levels_in_params(), "dag.params.a"),
        ("deep", flow_nesting(200_000), "line 10 column"),
        ("big", HEAD + "# " + "x" * MAX_YAML_BYTES + "\n", "file: larger than"),
    ],
)
def test_genius_dag_validate_refuses_a_bomb_with_exit_2_and_one_line(
    tmp_path: Path, name: str, text: str, field: str
) -> None:
    path = tmp_path / f"{name}.genius.yaml"
    path.write_text(text)
    before = path.read_bytes()
    done = genius("dag", "validate", "--no-import", path.name, cwd=tmp_path)
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr == ""  # no traceback
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ERROR {path.name}: {field}"), lines
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
