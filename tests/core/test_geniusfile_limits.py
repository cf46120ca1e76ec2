"""Hostile Geniusfiles: YAML bombs, deep nesting, huge files and lone surrogates are refused quickly
with one line naming the field, in process and through `genius dag validate` (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
#: Seconds a bomb may take to be refused (they take milliseconds; the margin is for a busy machine).
BOMB_SECONDS = 1.0


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
    started = time.perf_counter()
    with pytest.raises(GeniusfileError) as caught:
        parse_geniusfile(text)
    elapsed = time.perf_counter() - started
    message = str(caught.value)
    assert "\n" not in message and len(message) < 250, message
    assert message.startswith(field) and problem in message and "line " in message, message
    # A long file of plain aliases is not exponential: the value limit bounds its (linear) cost.
    assert elapsed < (10 if field == "spouts.fetch.args[" else BOMB_SECONDS), f"{elapsed:.2f}s"


def test_a_file_larger_than_the_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.genius.yaml"
    path.write_text(HEAD + "# " + "x" * MAX_YAML_BYTES + "\n")
    for parse in (lambda: load_geniusfile(path), lambda: parse_geniusfile(path.read_text())):
        started = time.perf_counter()
        with pytest.raises(GeniusfileError) as caught:
            parse()
        assert time.perf_counter() - started < BOMB_SECONDS
        assert caught.value.detail == f"file: larger than {MAX_YAML_BYTES:,} bytes, the limit of a Geniusfile"


def test_yaml_within_the_limits_still_loads() -> None:
    anchors = HEAD + "    kwargs:\n" + "\n".join(laughs(3, "      ")) + "\n"  # 1,000 values: fine
    assert parse_geniusfile(anchors).task("fetch").kwargs["a3"][9][9][9] == ["lol"] * 10
    assert parse_geniusfile(flow_nesting(MAX_YAML_DEPTH - 10)).task("fetch").args
    assert parse_geniusfile(block_nesting(MAX_YAML_DEPTH - 10)).task("fetch").args


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
    started = time.perf_counter()
    done = genius("dag", "validate", "--no-import", path.name, cwd=tmp_path)
    elapsed = time.perf_counter() - started
    assert done.returncode == 2, done.stderr[-500:]
    assert done.stderr == ""  # no traceback
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ERROR {path.name}: {field}"), lines
    assert elapsed < 20, f"{elapsed:.1f}s"  # interpreter start-up included; the refusal itself is ms
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
