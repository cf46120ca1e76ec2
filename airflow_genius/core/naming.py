"""Names of one task instance on remote platforms: the same on every try, so a retry finds the
container, pod, Secret or job an earlier try started instead of launching another.

>>> instance_name("etl", "clean", "manual__2024-05-06T00:00:00+00:00")
'genius-etl-clean-eb6b083fb016'
"""

from __future__ import annotations

import hashlib
import re


def instance_digest(dag_id: str, task_id: str, run_id: str, map_index: int = -1, *, length: int = 12) -> str:
    """A hex digest of one task instance, the same on every try: what every runner's remote names
    (containers, pods, Secrets, jobs) are made of, so a retry finds what an earlier try started.

    >>> instance_digest("etl", "clean", "manual__2024-05-06T00:00:00+00:00")
    'eb6b083fb016'
    """
    return hashlib.sha256(f"{dag_id}\0{task_id}\0{run_id}\0{map_index}".encode()).hexdigest()[:length]


def instance_name(
    dag_id: str, task_id: str, run_id: str, map_index: int = -1, *, prefix: str = "genius"
) -> str:
    """A readable, unique name of one task instance (``[A-Za-z0-9_.-]``, the ids cut to 80 characters,
    then the digest): a Slurm job name, a Docker container name.

    >>> instance_name("etl", "clean", "manual__2024-05-06T00:00:00+00:00")
    'genius-etl-clean-eb6b083fb016'
    """
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dag_id}-{task_id}")[:80]
    return f"{prefix}-{readable}-{instance_digest(dag_id, task_id, run_id, map_index)}"
