"""Run a genius task as a Slurm job over SSH.

.. code-block:: python

    from airflow_genius.operators.slurm import GeniusSlurmBoltOperator

    count = GeniusSlurmBoltOperator(
        task_id="count",
        ssh_conn_id="hpc_login",
        task_class="my_project.tasks:WordCount",
        method="count",
        input_uri="s3://lake/quotes/",
        output_uri="s3://lake/counts/",
        state_conn_id="genius_postgres",        # the compute node must reach it
        partition="cpu", time="00:30:00", cpus_per_task=4, mem="8G",
        setup=["module load python/3.11", "source ~/venvs/genius/bin/activate"],
        deferrable=True,
    )

What happens: the TaskSpec is written to ``<remote_base_dir>/<job name>/spec.json`` (mode 0600; the
state password, if any, to ``secret.env`` next to it), and an sbatch script that runs
``genius run --spec …`` is submitted with ``sbatch --parsable`` on stdin. The job name is the same on
every try of the task instance, so a retry after a worker crash finds the job still queued or running
and waits for it instead of submitting another. The job's output is tailed into the task log; the
result comes from the run record. Killing the task ``scancel``s the job, from the worker or, when
deferred, from the triggerer.

A mapped task's first try runs as one held job array (``max_parallel`` elements at once): the instances
agree on it through a compare-and-set record in the state store, and each releases, waits for and
cancels only its own element ``<array id>_<map index>`` (:meth:`GeniusSlurmOperator.launch_array_element`,
:mod:`airflow_genius.core.slurm_array`, docs/runners/slurm.md "Mapped tasks as one job array").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from airflow.sdk import BaseOperator
from airflow.sdk.configuration import conf

from airflow_genius.links.output import GeniusOutputLink
from airflow_genius.links.record import GeniusRecordLink
from airflow_genius.operators.base import (
    GENIUS_TEMPLATE_FIELDS,
    LOG_TAIL_LINES,
    GeniusOperatorMixin,
    identity_from_context,
    task_state_get,
    task_state_set,
)
from airflow_genius.operators.slurm_script import SlurmContainer, SlurmJobOptions
from airflow_genius.operators.state_reach import slurm_reach

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_genius.core.spec import TaskSpec
    from airflow_genius.hooks.slurm import SlurmHook
    from airflow_genius.operators.base import StateTarget

#: task_state_store key of the submitted job id (Airflow 3.3+), checked before squeue on a retry.
JOB_ID_KEY = "slurm_job_id"


@dataclass(frozen=True)
class SlurmJob:
    """The Slurm job of one task instance: submitted by this try, or one an earlier try left."""

    job_id: str
    name: str
    job_dir: str
    reattached: bool = False

    @property
    def output_path(self) -> str:
        """The job's output file (stdout and stderr), as ``render_sbatch_script`` names it."""
        from airflow_genius.core.slurm_protocol import OUTPUT_FILE

        return f"{self.job_dir}/{OUTPUT_FILE.format(job_id=self.job_id)}"

    @property
    def end_mark(self) -> str:
        """The file the job's script touches when it exits (what a waiting poll watches for)."""
        from airflow_genius.core.slurm_protocol import END_MARK_FILE

        return f"{self.job_dir}/{END_MARK_FILE.format(job_id=self.job_id)}"


class SlurmJobMixin(BaseOperator):
    """Submit-or-reattach, wait (in the worker or deferred) and cancel: shared by the genius Slurm
    operator and the service operator. Expects ``ssh_conn_id``, ``poll_interval``, ``lost_after``,
    ``pending_timeout``, ``remote_base_dir`` and ``deferrable`` attributes."""

    ssh_conn_id: str
    poll_interval: float
    lost_after: float
    pending_timeout: float | None
    remote_base_dir: str
    deferrable: bool
    job_id: str | None = None
    #: "ssh": sbatch/squeue/sacct/scancel on the login node; "rest": slurmrestd (docs/runners/slurm-rest.md)
    transport: str = "ssh"
    slurm_rest_conn_id: str | None = None

    def configure_job(
        self,
        *,
        ssh_conn_id: str,
        remote_base_dir: str,
        poll_interval: float,
        lost_after: float,
        pending_timeout: float | None = None,
        deferrable: bool = False,
    ) -> None:
        """Keep the settings the methods below read (an operator's ``__init__`` calls this once)."""
        self.ssh_conn_id = ssh_conn_id
        self.remote_base_dir = remote_base_dir
        self.poll_interval = poll_interval
        self.lost_after = lost_after
        self.pending_timeout = pending_timeout
        self.deferrable = deferrable
        self.job_id = None

    def slurm_hook(self) -> SlurmHook:
        """The hook of this operator's transport (SlurmRestTransport has SlurmHook's methods for it)."""
        if self.transport == "rest":
            from airflow_genius.hooks.slurm_rest import SlurmRestTransport

            rest = SlurmRestTransport(str(self.slurm_rest_conn_id), ssh_conn_id=self.ssh_conn_id or None)
            return cast("SlurmHook", rest)
        from airflow_genius.hooks.slurm import SlurmHook

        return SlurmHook(self.ssh_conn_id)

    def job_name_for(self, context: Context) -> str:
        from airflow_genius.core.slurm_protocol import job_name

        who = identity_from_context(context)
        return job_name(who["dag_id"], who["task_id"], who["run_id"], who["map_index"])

    def find_previous_job(
        self, hook: SlurmHook, context: Context, name: str, *, live_only: bool = False
    ) -> str | None:
        """A job an earlier try of this task instance left queued or running (or finished
        successfully, when Airflow's task_state_store remembers it and not ``live_only``), else None."""
        from airflow_genius.core.slurm_protocol import check_job_id

        stored = task_state_get(context, JOB_ID_KEY)
        if stored:
            verdict = hook.poll(check_job_id(str(stored))).verdict
            if (not verdict.finished and not verdict.missing) or (verdict.succeeded and not live_only):
                self.log.info("reattaching to Slurm job %s (%s) from an earlier try", stored, verdict.state)
                return str(stored)
        live = hook.find_live_job(name)
        if live:
            self.log.info(
                "reattaching to Slurm job %s (%s) named %s from an earlier try", live[0], live[1], name
            )
            return live[0]
        return None

    def submit_or_reattach(
        self,
        context: Context,
        hook: SlurmHook,
        prepare: Callable[[str, str], tuple[str, dict[str, bytes]]],
        *,
        what: str,
        live_only: bool = False,
    ) -> SlurmJob:
        """This task instance's job: the one an earlier try left (see :meth:`find_previous_job`), else a
        new one — ``prepare(job name, job folder)`` returns its sbatch script and the files to write
        beside it (name → content), submitted together in one round trip. ``what`` names the job in
        the log."""
        name = self.job_name_for(context)
        job_id = self.find_previous_job(hook, context, name, live_only=live_only)
        reattached = job_id is not None
        if job_id is None:
            job_dir = self.job_dir_for(hook, name)
            script, files = prepare(name, job_dir)
            job_id = hook.submit(script, work_dir=job_dir, files=files)
            self.log.info("submitted Slurm job %s (%s) for %s", job_id, name, what)
        else:  # after the look-up, which also read $HOME; an array element's files are the array's
            name, job_dir = self.job_folder(hook, context, job_id)
        self.remember_job(context, job_id)
        return SlurmJob(job_id=job_id, name=name, job_dir=job_dir, reattached=reattached)

    def job_dir_for(self, hook: SlurmHook, name: str) -> str:
        """The folder on the cluster of the job called ``name`` (spec, secret file, output)."""
        return hook.resolve_path(f"{self.remote_base_dir.rstrip('/')}/{name}")

    def job_folder(self, hook: SlurmHook, context: Context, job_id: str) -> tuple[str, str]:
        """The name and folder of this task instance's job ``job_id``: its own, or for an element of a
        mapped task's array (``812_7``) the array's (see :mod:`airflow_genius.core.slurm_array`)."""
        from airflow_genius.core.slurm_array import array_job_name, is_element_id

        who = identity_from_context(context)
        if is_element_id(job_id):
            name = array_job_name(who["dag_id"], who["task_id"], who["run_id"])
        else:
            name = self.job_name_for(context)
        return name, self.job_dir_for(hook, name)

    def job_log_tail(self, context: Context, job_id: str) -> str:
        """The last lines of this task instance's job output file, read after the job ended (for a
        failure message: the cause of a job that died before ``genius run`` is only there)."""
        with self.slurm_hook() as hook:
            name, job_dir = self.job_folder(hook, context, job_id)
            job = SlurmJob(job_id=job_id, name=name, job_dir=job_dir)
            return hook.tail(job.output_path, LOG_TAIL_LINES)

    def remember_job(self, context: Context, job_id: str) -> None:
        self.job_id = job_id
        task_state_set(context, JOB_ID_KEY, job_id)

    def wait_for_job(self, hook: SlurmHook, job: SlurmJob) -> dict[str, Any]:
        """Wait for the job to end (deferred to the triggerer when ``deferrable``), tailing its output."""
        if self.deferrable:
            from airflow.triggers.base import BaseTrigger

            trigger: BaseTrigger
            if self.transport == "rest":
                from airflow_genius.triggers.slurm_rest import GeniusSlurmRestTrigger

                trigger = GeniusSlurmRestTrigger(
                    slurm_rest_conn_id=str(self.slurm_rest_conn_id),
                    ssh_conn_id=self.ssh_conn_id or None,
                    api_version=cast("Any", hook).api_version,
                    job_id=job.job_id,
                    output_path=job.output_path,
                    poll_interval=self.poll_interval,
                    lost_after=self.lost_after,
                    pending_timeout=self.pending_timeout,
                    started_at=time.time(),
                )
            else:
                from airflow_genius.triggers.slurm import GeniusSlurmTrigger

                trigger = GeniusSlurmTrigger(
                    ssh_conn_id=self.ssh_conn_id,
                    job_id=job.job_id,
                    output_path=job.output_path,
                    end_mark=job.end_mark,
                    poll_interval=self.poll_interval,
                    lost_after=self.lost_after,
                    pending_timeout=self.pending_timeout,
                    started_at=time.time(),
                )
            self.defer(trigger=trigger, method_name="execute_complete")
        return hook.wait(
            job.job_id,
            output_path=job.output_path,
            end_mark=job.end_mark,
            poll_interval=self.poll_interval,
            lost_after=self.lost_after,
            pending_timeout=self.pending_timeout,
            log=self.log,
        )

    def on_kill(self) -> None:
        """Cancel the Slurm job this worker submitted or reattached to (idempotent)."""
        if self.job_id:
            with self.slurm_hook() as hook:
                hook.cancel(self.job_id)
            self.log.info("cancelled Slurm job %s", self.job_id)


class GeniusSlurmOperator(SlurmJobMixin, GeniusOperatorMixin):
    """Run a genius task on a Slurm cluster reached over SSH; the run record's result is the XCom.

    Args (besides the genius arguments of :class:`~airflow_genius.operators.base.GeniusOperatorMixin`):
        ssh_conn_id: SSH connection to a login node with ``sbatch``/``squeue``/``sacct``/``scancel``
            (with ``transport="rest"``: only for the job's files and output, see docs/runners/slurm-rest.md).
        transport: ``"ssh"`` (default) or ``"rest"``: submit, state, cancel and reattach through slurmrestd.
        slurm_rest_conn_id: the ``genius_slurm_rest`` connection (``transport="rest"``).
        partition, time, nodes, ntasks, cpus_per_task, mem, gpus, account, qos, constraint,
        reservation, extra_directives: sbatch options (see
            :class:`~airflow_genius.operators.slurm_script.SlurmJobOptions`).
        setup: shell lines before the task (``module load …``, activating a virtualenv).
        env: environment of the job (templated); values are shell-quoted.
        genius_command: ``genius`` on the compute node (default: on PATH after ``setup``).
        container: run in an image (``SlurmContainer(image=…, runtime="podman"|"apptainer"|"singularity"|"pyxis")``).
        (``service=<task id of a service operator>`` — a genius argument — adds that service's
        ``SERVICE_NAME/HOSTNAME/PORT/URL`` to the job's environment.)
        remote_base_dir: where job folders live on the cluster (default ``~/.genius/slurm``).
        deferrable: wait in the triggerer instead of a worker slot (default: ``[operators]
            default_deferrable``, as for the official operators).
        poll_interval: seconds between polls.
        lost_after: seconds a job may be missing from both squeue and sacct before it counts as lost (and
            a job sacct shows REQUEUED/PREEMPTED may stay out of squeue before it counts as not requeued).
        pending_timeout: give up (and cancel) a job still pending after this many seconds, before it first
            ran (a requeued job is waited for: see docs/runners/slurm.md, "Requeue and preemption").
        array: run the first try of a mapped task's instances as **one** job array, each instance its
            own element (default True; see docs/runners/slurm.md, "Mapped tasks as one job array").
            Ignored for an unmapped task; a later try runs its map index as a job of its own.
        max_parallel: at most this many elements of the array run at once (``--array=0-N%P``).
        array_size: the number of mapped instances, when Airflow cannot tell (default: asked of Airflow).
        array_claim_timeout: seconds an instance waits for the array another instance claimed before it
            takes the claim over (that instance died before submitting).
    """

    template_fields: Sequence[str] = (*GENIUS_TEMPLATE_FIELDS, "env")
    template_fields_renderers: ClassVar[dict[str, str]] = {"genius_call": "json", "env": "json"}
    operator_extra_links = (GeniusOutputLink(), GeniusRecordLink())
    ui_color = "#b58900"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        ssh_conn_id: str,
        transport: Literal["ssh", "rest"] = "ssh",
        slurm_rest_conn_id: str | None = None,
        partition: str | None = None,
        time: str | None = None,
        nodes: int | None = None,
        ntasks: int | None = None,
        cpus_per_task: int | None = None,
        mem: str | None = None,
        gpus: str | int | None = None,
        account: str | None = None,
        qos: str | None = None,
        constraint: str | None = None,
        reservation: str | None = None,
        extra_directives: Sequence[str] = (),
        setup: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        genius_command: str = "genius",
        container: SlurmContainer | None = None,
        remote_base_dir: str = "~/.genius/slurm",
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        lost_after: float = 120.0,
        pending_timeout: float | None = None,
        array: bool = True,
        max_parallel: int | None = None,
        array_size: int | None = None,
        array_claim_timeout: float = 120.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from airflow_genius.core.slurm_array import array_range

        array_range(array_size or 1, max_parallel)  # a bad count fails when the DAG is parsed
        self.array = array
        self.max_parallel = max_parallel
        self.array_size = array_size
        self.array_claim_timeout = array_claim_timeout
        self.configure_job(
            ssh_conn_id=ssh_conn_id, remote_base_dir=remote_base_dir, poll_interval=poll_interval,
            lost_after=lost_after, pending_timeout=pending_timeout, deferrable=deferrable,
        )  # fmt: skip
        if transport not in ("ssh", "rest"):
            raise ValueError(f"transport must be 'ssh' or 'rest', not {transport!r}")
        if transport == "rest" and not slurm_rest_conn_id:
            raise ValueError('transport="rest" needs slurm_rest_conn_id (a genius_slurm_rest connection)')
        self.transport = transport
        self.slurm_rest_conn_id = slurm_rest_conn_id
        self.sbatch_options: dict[str, Any] = {
            "partition": partition, "time": time, "nodes": nodes, "ntasks": ntasks,
            "cpus_per_task": cpus_per_task, "mem": mem, "gpus": gpus, "account": account, "qos": qos,
            "constraint": constraint, "reservation": reservation,
            "extra_directives": tuple(extra_directives), "setup": tuple(setup),
            "genius_command": genius_command, "container": container,
        }  # fmt: skip
        self.env: dict[str, str] = dict(env or {})

    def genius_remote_job_id(self) -> str | None:
        return self.job_id

    def job_options(self, context: Context) -> SlurmJobOptions:
        """The typed sbatch options of this task instance: the rendered ``env`` over the ``SERVICE_*``
        environment of the service this task is a client of (the DAG's own environment wins)."""
        return SlurmJobOptions(**self.sbatch_options, env={**self.service_env(context), **self.env})

    def execute(self, context: Context) -> Any:
        target = self.genius_state()
        # refused before anything reaches the cluster when its nodes cannot reach the store
        spec = self.build_task_spec(context, state_uri=target.uri, remote=slurm_reach(self.ssh_conn_id))
        options = self.job_options(context)  # validated before anything reaches the cluster
        with self.slurm_hook() as hook:
            job = self.launch_array_element(context, hook, spec, options, target)
            if job is None:
                job = self.launch_genius_job(context, hook, spec, options, target)
            event = self.wait_for_job(hook, job)
        return self.execute_complete(context, event)

    def array_count(self, context: Context) -> int | None:
        """How many instances this mapped task has in this DAG run: ``array_size``, else Airflow's
        count of its task instances; None when neither is known."""
        if self.array_size:
            return self.array_size
        who = identity_from_context(context)
        try:
            count = context["ti"].get_ti_count(
                dag_id=who["dag_id"], task_ids=[who["task_id"]], run_ids=[who["run_id"]]
            )
        except Exception as exc:  # no supervisor to ask (a direct call): one job per instance
            self.log.info("the count of mapped instances is unknown (%s): one Slurm job per instance", exc)
            return None
        return int(count) if count else None

    def launch_array_element(
        self, context: Context, hook: SlurmHook, spec: TaskSpec, options: SlurmJobOptions, target: StateTarget
    ) -> SlurmJob | None:
        """This mapped instance's element of the task's job array (first try only), else None: the
        caller runs a job of its own. Writes the element's files (spec, secret, environment), gets the
        array's id from the coordination record — submitting the held array if this instance wins the
        claim (:meth:`array_job_id`) — and releases its own element ``<array id>_<map index>``."""
        from airflow_genius.core.slurm_array import array_job_name, element_folder, element_job_id
        from airflow_genius.hooks.slurm import SlurmCommandError
        from airflow_genius.operators.slurm_script import (
            ENV_FILE,
            SECRET_FILE,
            SPEC_FILE,
            secret_file_content,
        )

        who = identity_from_context(context)
        index = who["map_index"]
        if not self.array or index < 0 or who["try_number"] > 1 or spec.service is not None:
            return None
        if self.transport == "rest":  # the REST transport cannot write element files or release yet
            return None
        size = self.array_count(context)
        if size is None or size < 2 or index >= size:
            return None
        name = array_job_name(who["dag_id"], who["task_id"], who["run_id"])
        array_dir = self.job_dir_for(hook, name)
        env = "".join(f"{line}\n" for line in options.exports())
        files = {
            SPEC_FILE: spec.to_json().encode(),
            SECRET_FILE: secret_file_content(target.secret_env),
            ENV_FILE: env.encode(),
        }
        element_dir = f"{array_dir}/{element_folder(index)}"
        found = self.array_job_id(
            hook, spec, options, target, name=name, folder=array_dir, size=size, element=(element_dir, files)
        )
        if found is None:
            return None
        array_id, written = found
        job_id = element_job_id(array_id, index)
        try:  # the element's files go with the release (one round trip) unless the submitter wrote them
            hook.release(job_id, folder=element_dir, files=None if written else files)
        except SlurmCommandError as exc:  # the array was cancelled (or purged): run on a job of its own
            self.log.warning("cannot release element %s of Slurm array %s (%s): submitting a job of its own",
                             job_id, array_id, exc)  # fmt: skip
            return None
        self.log.info("released element %s of Slurm array %s (%s, %d elements)", job_id, array_id, name, size)
        self.remember_job(context, job_id)
        return SlurmJob(job_id=job_id, name=name, job_dir=array_dir)

    def array_job_id(
        self,
        hook: SlurmHook,
        spec: TaskSpec,
        options: SlurmJobOptions,
        target: StateTarget,
        *,
        name: str,
        folder: str,
        size: int,
        element: tuple[str, Mapping[str, bytes]],
    ) -> tuple[str, bool] | None:
        """The id of this DAG run's array, from the coordination record in the state store: the instance
        that wins the compare-and-set from "no record" (or from a stale claim) writes its ``element``
        files (folder, name → content) and submits the held array, then records its id; the others wait
        for that id. Returns ``(array id, whether this instance wrote its element files)``; None: the
        array is smaller than this map index."""
        from airflow_genius.core.slurm_array import ArrayClaim, array_range, array_state_key
        from airflow_genius.core.slurm_protocol import poll_delays
        from airflow_genius.core.state.base import TaskScope
        from airflow_genius.operators.slurm_script import genius_body, render_sbatch_script

        run = spec.run
        scope, key = TaskScope(spec.state.namespace, run.dag_id, run.task_id), array_state_key(run.run_id)
        delays = poll_delays(min(self.poll_interval, 2.0))
        with target.open() as state:
            while True:
                stored = state.get_state(scope, key)
                claim = ArrayClaim.from_dict(stored)
                now = time.time()
                if claim is not None and claim.job_id is not None:
                    return (claim.job_id, False) if run.map_index < claim.size else None
                if claim is None or claim.is_stale(now, self.array_claim_timeout):
                    mine = ArrayClaim.claimed(size=size, by=run.map_index, now=now)
                    if state.compare_and_set_state(scope, key, stored, mine.to_dict()):
                        # a stale claim's submitter may have reached sbatch before it died
                        live = hook.find_live_job(name) if claim is not None else None
                        if live:
                            array_id, written = live[0].split("_")[0], False
                        else:
                            hook.write_files(*element)
                            script = render_sbatch_script(
                                job_name=name, job_dir=folder, options=options,
                                body=genius_body(folder, options, element=True),
                                array=array_range(size, self.max_parallel),
                            )  # fmt: skip
                            array_id, written = hook.submit(script, work_dir=folder), True
                            self.log.info(
                                "submitted Slurm array %s (%s) of %d elements", array_id, name, size
                            )
                        if not state.compare_and_set_state(
                            scope, key, mine.to_dict(), mine.submitted(array_id).to_dict()
                        ):
                            self.log.warning(
                                "the claim of Slurm array %s was taken over: it runs anyway", array_id
                            )
                        return array_id, written
                    continue  # another instance won the claim: read it
                time.sleep(next(delays))

    def launch_genius_job(
        self,
        context: Context,
        hook: SlurmHook,
        spec: TaskSpec,
        options: SlurmJobOptions,
        target: StateTarget,
        *,
        live_only: bool = False,
    ) -> SlurmJob:
        """Reattach to the job an earlier try left, else write the spec and the secret file and submit
        ``genius run`` (:meth:`submit_or_reattach`). A service's script runs genius with ``exec``, so a
        signal to the batch shell (the service's stop) reaches the runtime itself."""
        from airflow_genius.operators.slurm_script import (
            SECRET_FILE,
            SPEC_FILE,
            genius_body,
            render_sbatch_script,
            secret_file_content,
        )

        def prepare(name: str, job_dir: str) -> tuple[str, dict[str, bytes]]:
            body = genius_body(job_dir, options)
            if spec.service is not None:
                body[-1] = f"exec {body[-1]}"
            files = {SPEC_FILE: spec.to_json().encode(), SECRET_FILE: secret_file_content(target.secret_env)}
            return render_sbatch_script(job_name=name, job_dir=job_dir, options=options, body=body), files

        what = f"{spec.task.class_path}.{spec.task.method}"
        return self.submit_or_reattach(context, hook, prepare, what=what, live_only=live_only)

    @staticmethod
    def submitted_try(hook: SlurmHook, job: SlurmJob) -> int | None:
        """The try number in the spec a job was submitted with (an earlier try's, for a reattached job);
        None if the spec file cannot be read."""
        from airflow_genius.operators.slurm_script import SPEC_FILE

        try:
            spec = json.loads(hook.read_file(f"{job.job_dir}/{SPEC_FILE}"))
            return int(spec["run"]["try_number"])
        except Exception:  # the spec is gone or unreadable: the caller falls back to this try
            return None

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """The job ended (in the worker or the triggerer): the run record decides the result."""
        self.job_id = str(event["job_id"])
        if event.get("cancel"):
            with self.slurm_hook() as hook:
                hook.cancel(self.job_id)
        failure = None if event.get("succeeded") else str(event.get("reason") or event.get("state"))
        if failure:
            self.log.error("%s", failure)
        job_id = self.job_id
        return self.finish_remote(
            context, failure=failure, log_tail=lambda: self.job_log_tail(context, job_id)
        )


class GeniusSlurmSpoutOperator(GeniusSlurmOperator):
    """A genius :class:`~airflow_genius.core.task.Spout` on Slurm."""

    genius_kind = "spout"


class GeniusSlurmBoltOperator(GeniusSlurmOperator):
    """A genius :class:`~airflow_genius.core.task.Bolt` on Slurm."""

    genius_kind = "bolt"
