"""One task instance's remote names: the same digest on every runner, stable across tries."""

from __future__ import annotations

import doctest

from airflow_genius.core import naming
from airflow_genius.core.naming import instance_digest, instance_name
from airflow_genius.core.slurm_protocol import job_name
from airflow_genius.operators.aws_common import deterministic_name
from airflow_genius.operators.docker_request import container_name_for
from airflow_genius.operators.kubernetes_request import secret_name_for

RUN = ("etl", "clean", "manual__2024-05-06T00:00:00+00:00", 3)


def test_doctests() -> None:
    assert doctest.testmod(naming).failed == 0


def test_every_runner_names_an_instance_by_the_same_digest() -> None:
    digest = instance_digest(*RUN)
    assert job_name(*RUN).endswith(digest)
    assert container_name_for(*RUN).endswith(digest)
    assert deterministic_name(*RUN).endswith(digest)
    assert secret_name_for(*RUN).endswith(instance_digest(*RUN, length=20))


def test_each_part_of_the_identity_changes_the_name() -> None:
    names = {
        instance_name(*RUN),
        instance_name("etl2", *RUN[1:]),
        instance_name("etl", "clean2", *RUN[2:]),
        instance_name("etl", "clean", "manual__other", 3),
        instance_name("etl", "clean", RUN[2], 4),
        # the separator keeps ("a-b", "c") and ("a", "b-c") apart even though they read alike
        instance_name("etl-clean", "x", RUN[2], 3),
        instance_name("etl", "clean-x", RUN[2], 3),
    }
    assert len(names) == 7
