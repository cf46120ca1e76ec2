"""The docs are tested: their Python examples compile and import what exists, their Geniusfiles validate,
their relative links resolve, and every `genius` command line they show parses with the real CLI."""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path

import pytest

from airflow_genius.core.cli import _parser
from airflow_genius.core.geniusfile import parse_geniusfile

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", ROOT / "docker" / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`\n]*`")


def blocks(language: str) -> list[tuple[str, str]]:
    """(``file:line``, code) of every fenced block in ``language``."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in FENCE.finditer(text):
            if match.group(1) == language:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{doc.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", doc.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize(("where", "code"), blocks("python"), ids=lambda v: v if ":" in str(v) else "")
def test_python_examples_compile(where: str, code: str) -> None:
    try:
        ast.parse(code)
    except SyntaxError as exc:
        pytest.fail(f"{where}: {exc}")


def airflow_genius_imports() -> list[tuple[str, str, str]]:
    found = []
    for where, code in blocks("python"):
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_genius"):
                found += [(where, node.module or "", alias.name) for alias in node.names]
    return found


@pytest.mark.airflow
def test_python_examples_import_names_that_exist() -> None:
    missing = []
    for where, module, name in airflow_genius_imports():
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{where}: {module} ({exc})")
            continue
        if not hasattr(imported, name):
            missing.append(f"{where}: {module} has no {name}")
    assert airflow_genius_imports(), "no example imports anything from airflow_genius"
    assert not missing, "\n".join(missing)


def test_geniusfile_examples_validate() -> None:
    geniusfiles = [(where, code) for where, code in blocks("yaml") if re.search(r"^version: 1$", code, re.M)]
    assert geniusfiles, "the docs show no Geniusfile"
    for where, code in geniusfiles:
        parse_geniusfile(code, source=where)  # raises GeniusfileError (one line) if the example is wrong


def test_relative_links_resolve() -> None:
    broken = []
    for doc in DOCS:
        for target in LINK.findall(INLINE_CODE.sub("", FENCE.sub("", doc.read_text()))):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto: not checked here (no network in tests)
            path, _, anchor = target.partition("#")
            resolved = (doc.parent / path).resolve() if path else doc
            if not resolved.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no {resolved})")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{doc.relative_to(ROOT)}: {target} (no heading #{anchor})")
    assert not broken, "\n".join(broken)


def genius_command_lines() -> list[tuple[str, list[str]]]:
    """Every ``genius …`` line of the docs' shell blocks, as argv (comments and placeholders dropped)."""
    found = []
    for language in ("bash", "text", ""):
        for where, code in blocks(language):
            for line in code.splitlines():
                line = line.split("  #")[0].strip()
                if not line.startswith("genius "):
                    continue
                try:
                    argv = shlex.split(line)[1:]
                except ValueError:
                    continue
                found.append((where, argv))
    return found


def test_genius_command_lines_parse() -> None:
    parser = _parser()
    lines = genius_command_lines()
    assert len(lines) >= 5, lines
    refused = []
    for where, argv in lines:
        # The README's synopsis uses `a | b` alternatives and `[OPTIONAL]` brackets: check each flag only.
        argv = [word.strip("[]") for word in argv if word not in ("|", "...")]
        flags = [word for word in argv if word.startswith("--")]
        command = [word for word in argv[:2] if not word.startswith("-")]
        try:
            sub = parser
            for word in command:
                choices = next(
                    a.choices
                    for a in sub._actions
                    if getattr(a, "choices", None) and isinstance(a.choices, dict)
                )
                if word not in choices:
                    break
                sub = choices[word]
        except StopIteration:
            pass
        known = {option for action in sub._actions for option in action.option_strings}
        unknown = [flag.split("=")[0] for flag in flags if flag.split("=")[0] not in known]
        if unknown:
            refused.append(f"{where}: genius {' '.join(command)}: unknown {unknown}")
    assert not refused, "\n".join(refused)


def operator_calls() -> list[tuple[str, str, str, list[str]]]:
    """(where, module, class, keywords) of every ``GeniusX(...)`` / ``GeniusX.partial(...)`` call of an
    operator a docs example imports from ``airflow_genius.operators``."""
    found = []
    for where, code in blocks("python"):
        tree = ast.parse(code)
        imported = {
            alias.asname or alias.name: node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("airflow_genius.operators")
            for alias in node.names
        }
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "partial":
                func = func.value
            if isinstance(func, ast.Name) and func.id in imported:
                keywords = [k.arg for k in node.keywords if k.arg is not None]
                found.append((where, str(imported[func.id]), func.id, keywords))
    return found


@pytest.mark.airflow
def test_operator_arguments_in_examples_exist() -> None:
    from airflow.sdk import BaseOperator

    from airflow_genius.dag_factory import operator_arguments

    calls = operator_calls()
    assert len(calls) >= 10, calls
    unknown = []
    for where, module, name, keywords in calls:
        cls = getattr(importlib.import_module(module), name)
        if not (isinstance(cls, type) and issubclass(cls, BaseOperator)):
            continue
        accepted = operator_arguments(cls).accepted
        unknown += [f"{where}: {name}({keyword}=…)" for keyword in keywords if keyword not in accepted]
    assert not unknown, "arguments no operator takes:\n" + "\n".join(unknown)
