"""The official providers' private members the genius runners rely on still exist, with the parameters
``airflow_genius._provider_compat`` calls them with; the runners reach them only through that module;
and the installed providers are within the extras' bounds and the versions the runner docs name.

A provider release that removes or renames one fails here with one line naming the provider, its
version, the member and the compat function that uses it. Fast: providers are imported and, for
instance attributes, their operators constructed; no engine is contacted.
"""

from __future__ import annotations

import importlib
import inspect
import re
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from packaging.requirements import Requirement

from airflow_genius import _provider_compat as compat

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[2]
K8S = "apache-airflow-providers-cncf-kubernetes"
AMAZON = "apache-airflow-providers-amazon"
DOCKER = "apache-airflow-providers-docker"
KPO = "airflow.providers.cncf.kubernetes.operators.pod:KubernetesPodOperator"
ECS = "airflow.providers.amazon.aws.operators.ecs:EcsRunTaskOperator"
BATCH = "airflow.providers.amazon.aws.operators.batch:BatchOperator"
DOCKER_OP = "airflow.providers.docker.operators.docker:DockerOperator"


class Private(NamedTuple):
    """A private member of a provider and the compat function that uses it.

    ``parameters``: the names the provider's signature must have (a method or function), or None for an
    instance attribute, which ``probe`` (constructor keywords) creates and ``still_used`` names a method
    of the provider whose code must still mention it (e.g. where the provider sets or reads it).
    """

    distribution: str
    owner: str
    member: str
    used_by: str
    parameters: tuple[str, ...] | None = None
    probe: dict[str, Any] | None = None
    still_used: str | None = None


PRIVATES = [
    Private(K8S, KPO, "_get_ti_pod_labels", "kpo_task_instance_labels", ("context", "include_try_number")),
    Private(K8S, KPO, "_get_pod_from_task_state_store", "kpo_pod_from_task_state", ("self", "context")),
    Private(K8S, KPO, "_persist_pod_identity_to_task_state_store", "kpo_remember_pod",
            ("self", "context", "pod")),
    Private(K8S, KPO, "_killed", "kpo_was_killed", probe={"image": "i"}, still_used="on_kill"),
    Private(K8S, "airflow.providers.cncf.kubernetes.hooks.kubernetes:AsyncKubernetesHook", "_load_config",
            "k8s_async_hook_load_config", ("self",)),
    Private(AMAZON, ECS, "_aws_logs_enabled", "ecs_logs_enabled", ("self",)),
    Private(AMAZON, ECS, "_get_task_log_fetcher", "ecs_log_fetcher", ("self",)),
    Private(AMAZON, ECS, "_try_reattach_task", "ecs_reattach", ("self", "started_by")),
    Private(AMAZON, ECS, "_start_task", "ecs_start_task", ("self",)),
    Private(AMAZON, ECS, "_started_by", "ecs_start_task",
            probe={"cluster": "c", "task_definition": "td", "overrides": {}}, still_used="_start_task"),
    Private(AMAZON, BATCH, "_get_batch_log_fetcher", "batch_log_fetcher", ("self", "job_id")),
    Private(DOCKER, DOCKER_OP, "_private_environment", "docker_private_environment", probe={"image": "i"},
            still_used="_run_image_with_mounts"),
    Private(DOCKER, DOCKER_OP, "_private_environment", "set_docker_private_environment", probe={"image": "i"},
            still_used="_run_image_with_mounts"),
]  # fmt: skip


def resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    found = importlib.import_module(module)
    return getattr(found, name) if name else found


def gone(private: Private, what: str = "removed/renamed") -> str:
    return (
        f"{private.distribution} {version(private.distribution)} {what} {private.owner}.{private.member} "
        f"used by airflow_genius._provider_compat.{private.used_by}"
    )


@pytest.mark.parametrize("private", PRIVATES, ids=lambda p: f"{p.member}-{p.used_by}")
def test_a_private_member_the_runners_use_still_exists(private: Private) -> None:
    owner = resolve(private.owner)
    if private.parameters is not None:
        member = inspect.getattr_static(owner, private.member, None)
        assert member is not None, gone(private)
        function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        names = tuple(inspect.signature(function).parameters)
        assert names == private.parameters, gone(
            private, f"changed the parameters {private.parameters} to {names} of"
        )
        return
    instance = owner(task_id="compat_probe", **(private.probe or {}))
    assert hasattr(instance, private.member), gone(private)
    assert private.still_used is not None
    code = inspect.getsource(getattr(owner, private.still_used))
    assert f"self.{private.member}" in code, gone(private, f"no longer uses (in {private.still_used})")


@pytest.mark.parametrize(("owner", "method", "genius"), compat.OVERRIDDEN_PRIVATE_METHODS)
def test_an_overridden_private_method_is_still_defined_and_called(
    owner: str, method: str, genius: str
) -> None:
    provider = resolve(owner)
    distribution = K8S if ".cncf." in owner else AMAZON
    where = f"{distribution} {version(distribution)}"
    assert callable(getattr(provider, method, None)), (
        f"{where} removed/renamed {owner}.{method} overridden by {genius}"
    )
    assert f"self.{method}(" in inspect.getsource(provider), (
        f"{where} no longer calls {owner}.{method}: the override in {genius} would never run"
    )
    assert method in vars(resolve(genius)), (
        f"{genius} does not override {method} any more: drop it from the list"
    )


def test_every_compat_function_names_the_private_it_uses() -> None:
    functions = {
        name for name, value in vars(compat).items()
        if inspect.isfunction(value) and value.__module__ == compat.__name__
    }  # fmt: skip
    assert functions == {p.used_by for p in PRIVATES}


def test_the_runners_reach_provider_privates_only_through_the_compat_module() -> None:
    """A module that imports a provider's package may not touch that provider's private members itself
    (its own private names may coincide: a module that does not import the provider is not checked)."""
    modules = [
        p
        for folder in ("operators", "triggers", "hooks")
        for p in (ROOT / "airflow_genius" / folder).glob("*.py")
    ]
    offenders = []
    for private in PRIVATES:
        package = ".".join(private.owner.split(":")[0].split(".")[: 4 if ".cncf." in private.owner else 3])
        use = re.compile(rf"(\.|import\s+|,\s*){re.escape(private.member)}\b")
        for module in modules:
            text = module.read_text()
            if package in text and use.search(text):
                offenders.append(f"{module.relative_to(ROOT)}: {private.member}")
    assert not offenders, f"use airflow_genius._provider_compat instead: {sorted(set(offenders))}"


# ---------------------------------------------------------------- versions
EXTRAS = {"airflow": "apache-airflow", "amazon": AMAZON, "kubernetes": K8S, "docker": DOCKER,
          "ssh": "apache-airflow-providers-ssh"}  # fmt: skip
#: The runner docs that state which provider version was tested.
DOCS = {AMAZON: ("ecs.md", "batch.md"), K8S: ("kubernetes.md",), DOCKER: ("docker.md",),
        "apache-airflow-providers-ssh": ("slurm.md",)}  # fmt: skip


def extra_requirement(extra: str, distribution: str) -> Requirement:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (found,) = [r for r in map(Requirement, extras[extra]) if r.name == distribution]
    return found


@pytest.mark.parametrize(("extra", "distribution"), EXTRAS.items())
def test_the_installed_provider_is_within_its_extras_tested_bounds(extra: str, distribution: str) -> None:
    requirement = extra_requirement(extra, distribution)
    installed = version(distribution)
    assert any(spec.operator == "<" for spec in requirement.specifier), (
        f"the `{extra}` extra has no upper bound on {distribution}: bound it to the tested major"
    )
    assert requirement.specifier.contains(installed, prereleases=True), (
        f"installed {distribution} {installed} is outside the `{extra}` extra ({requirement.specifier}): "
        "run the runner's tests on it, then move the bounds"
    )


@pytest.mark.parametrize(("distribution", "pages"), DOCS.items())
def test_the_runner_docs_name_a_tested_version_of_the_installed_major(
    distribution: str, pages: tuple[str, ...]
) -> None:
    # Same major, not the same release: a clean install may resolve a newer patch or minor within the
    # extra's bounds (checked above), and that must not fail CI; a new major must update the docs.
    installed = version(distribution)
    for page in pages:
        text = (ROOT / "docs" / "runners" / page).read_text()
        found = re.search(rf"Tested with `{re.escape(distribution)}` (\d+)\.[\w.]+", text)
        assert found, f"docs/runners/{page} does not say which {distribution} it was tested with"
        assert found.group(1) == installed.split(".")[0], (
            f"docs/runners/{page} says {found.group(0)!r} but {distribution} {installed} is installed: "
            "after the runner's tests passed on the new major, update its tested version"
        )
