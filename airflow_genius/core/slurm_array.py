"""A mapped genius Slurm task as one job array: the pure parts (no Airflow, no I/O) — names, the
``--array`` range, the element folders and the coordination record the mapped task instances share
through the state store.

How the instances of one mapped task (one DAG run, first try) make one array:

1. every instance writes its own TaskSpec and secret file into ``<array folder>/element-<i>/``;
2. the first instance to win :meth:`~airflow_genius.core.state.base.StateManager.compare_and_set_state`
   on the coordination record (absent → :meth:`ArrayClaim.claimed`) submits the whole array **held**
   (``--array=0-(N-1)%P --hold``: held elements use nothing), then records the array's job id
   (claimed → :meth:`ArrayClaim.submitted`, again a compare-and-set);
3. every instance (the submitter too) reads the job id from the record, ``scontrol release``\\ s its own
   element ``<array id>_<i>`` once its spec is in place, and waits for that element as for any job.

A claim whose submitter died before recording a job id is taken over after ``stale_after`` seconds
(:meth:`ArrayClaim.is_stale`), by a compare-and-set from that very claim, so only one instance does it.

>>> claim = ArrayClaim.claimed(size=50, by=3, now=100.0)
>>> claim.submitted("812").to_dict()
{'size': 50, 'claimed_by': 3, 'claimed_at': 100.0, 'job_id': '812'}
>>> array_range(50, 8), element_job_id("812", 7), element_folder(7)
('0-49%8', '812_7', 'element-7')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from airflow_genius.core.naming import instance_name

#: The task-state key (scope: namespace, dag id, task id) of one DAG run's array record.
ARRAY_STATE_KEY = "slurm-array:{run_id}"
#: Each element's folder inside the array's folder (its spec, secret file and work folder).
ELEMENT_FOLDER = "element-{index}"
#: The output file of one element (``%A_%a`` in the ``--output`` directive), as
#: :data:`~airflow_genius.core.slurm_protocol.OUTPUT_FILE` names it for the job id ``<array>_<index>``.
ARRAY_OUTPUT_PATTERN = "slurm-%A_%a.out"
#: Seconds a claim may stay without a job id before another instance takes it over.
STALE_AFTER = 120.0


def array_state_key(run_id: str) -> str:
    """The key of a DAG run's array record (in the task's scope).

    >>> array_state_key("manual__1")
    'slurm-array:manual__1'
    """
    return ARRAY_STATE_KEY.format(run_id=run_id)


def array_job_name(dag_id: str, task_id: str, run_id: str) -> str:
    """The ``--job-name`` of a mapped task's array in one DAG run (one name for every element).

    >>> array_job_name("etl", "clean", "manual__2024-05-06T00:00:00+00:00")
    'genius-array-etl-clean-eb6b083fb016'
    """
    return instance_name(dag_id, task_id, run_id, -1, prefix="genius-array")


def array_range(size: int, max_parallel: int | None = None) -> str:
    """The ``--array`` value: elements ``0..size-1``, at most ``max_parallel`` running at once."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"an array needs a positive element count, got {size!r}")
    if max_parallel is not None and (isinstance(max_parallel, bool) or max_parallel < 1):
        raise ValueError(f"max_parallel must be a positive integer, got {max_parallel!r}")
    return f"0-{size - 1}" + (f"%{max_parallel}" if max_parallel else "")


def element_job_id(array_job_id: str, index: int) -> str:
    """The Slurm id of one element (``squeue``/``sacct``/``scancel``/``scontrol release`` take it)."""
    return f"{array_job_id}_{int(index)}"


def element_folder(index: int) -> str:
    """The folder name of element ``index`` inside the array's folder."""
    return ELEMENT_FOLDER.format(index=int(index))


def is_element_id(job_id: str) -> bool:
    """Whether ``job_id`` names an element of an array (``812_7``), not a whole job.

    >>> is_element_id("812_7"), is_element_id("812")
    (True, False)
    """
    return "_" in str(job_id)


@dataclass(frozen=True)
class ArrayClaim:
    """The coordination record of one DAG run's array (a JSON dict in the state store).

    ``job_id`` is None between the claim and the submission."""

    size: int
    claimed_by: int
    claimed_at: float
    job_id: str | None = None

    @classmethod
    def claimed(cls, *, size: int, by: int, now: float) -> ArrayClaim:
        return cls(size=size, claimed_by=by, claimed_at=now)

    def submitted(self, job_id: str) -> ArrayClaim:
        return replace(self, job_id=str(job_id))

    def is_stale(self, now: float, stale_after: float = STALE_AFTER) -> bool:
        """A claim that never got its job id within ``stale_after`` seconds (its submitter died)."""
        return self.job_id is None and now - self.claimed_at >= stale_after

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ArrayClaim | None:
        if not data:
            return None
        job_id = data.get("job_id")
        return cls(
            size=int(data["size"]),
            claimed_by=int(data["claimed_by"]),
            claimed_at=float(data["claimed_at"]),
            job_id=None if job_id is None else str(job_id),
        )
