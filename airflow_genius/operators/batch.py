"""Run a genius task as an AWS Batch job (a thin subclass of the amazon provider's ``BatchOperator``).

.. code-block:: python

    from airflow_genius.operators.batch import GeniusBatchBoltOperator

    count = GeniusBatchBoltOperator(
        task_id="count",
        job_queue="genius-queue",
        job_definition="genius-runtime",        # image: the genius runtime image (ENTRYPOINT ["genius"])
        task_class="airflow_genius.examples.tasks:WordCount",
        method="count",
        input_uri="s3://lake/quotes/",
        output_uri="s3://lake/counts/",
        state_conn_id="genius_redis",            # the job must reach it; its password: see below
        environment={"AWS_DEFAULT_REGION": "eu-west-1"},
        deferrable=True,
    )

What happens: the TaskSpec goes into ``containerOverrides.environment`` (``GENIUS_TASK_SPEC``) and
``containerOverrides.command`` is ``["run", "--spec-env", "GENIUS_TASK_SPEC"]``, so the image's
ENTRYPOINT stays in charge. ``execute`` is ``BatchOperator``'s: genius only overrides its steps. The job
name is the same on every try of a task instance, so a retry after a worker crash waits for the job the
earlier try left running (found through Airflow's ``task_state_store``, else ``list_jobs`` by name)
instead of submitting another. The job's CloudWatch
log goes to the task log; the result comes from the run record (docs/architecture.md#the-run-record-decides). Killing the task
terminates the job, from the worker (``on_kill``) or, deferred, from the triggerer.

Secrets: Batch container overrides cannot carry ``secrets``. If the state store needs a password, declare
it in the job definition (``containerProperties.secrets: [{"name": "GENIUS_STATE_PASSWORD", "valueFrom":
<secret ARN>}]``); the operator checks that and otherwise refuses to submit (it never puts the value in
the overrides).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.amazon.aws.operators.batch import BatchOperator
from airflow.providers.amazon.aws.triggers.batch import BatchJobTrigger
from airflow.providers.common.compat.sdk import AirflowException

from airflow_genius import _provider_compat as compat
from airflow_genius.operators.aws_common import (
    GeniusAwsContainerMixin,
    aws_extra_links,
    aws_template_fields,
    aws_template_renderers,
    check_platform_secrets,
    deterministic_name,
    merge_env,
)
from airflow_genius.operators.base import (
    LOG_TAIL_LINES,
    identity_from_context,
    task_state_get,
    task_state_set,
)
from airflow_genius.operators.container import ContainerLaunch
from airflow_genius.triggers.batch import GeniusBatchJobTrigger

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.utils.task_log_fetcher import AwsTaskLogFetcher
    from airflow.sdk import Context


#: task_state_store key of the submitted job id (Airflow 3.3+), checked before ``list_jobs`` on a retry.
JOB_ID_KEY = "batch_job_id"
#: Batch states of a job that is still on its way (a retry waits for it rather than submitting another).
LIVE_STATES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING")
#: Batch states of a job that ended.
ENDED_STATES = ("SUCCEEDED", "FAILED")


def batch_container_overrides(
    launch: ContainerLaunch,
    *,
    base: Mapping[str, Any] | None = None,
    platform_secrets: Collection[str] = (),
    where: str = "the job definition",
) -> dict[str, Any]:
    """The ``containerOverrides`` of ``submit_job`` for ``launch`` (pure).

    ``command`` is ``launch.args`` (the image ENTRYPOINT ``genius`` stays); ``environment`` is ``base``'s
    environment plus ``launch.env`` (the genius names win). Secret values are never included: every
    name in ``launch.secret_env`` must be in ``platform_secrets`` (the job definition's ``secrets``),
    else :class:`~airflow_genius.operators.aws_common.SecretNotDeliverable` is raised.

    >>> from airflow_genius.core.spec import build_spec
    >>> from airflow_genius.operators.container import container_launch
    >>> launch = container_launch(build_spec("m:T", "go", dag_id="d", task_id="t", run_id="r"))
    >>> overrides = batch_container_overrides(launch, base={"vcpus": 2})
    >>> overrides["command"], [e["name"] for e in overrides["environment"]], overrides["vcpus"]
    (['run', '--spec-env', 'GENIUS_TASK_SPEC'], ['GENIUS_TASK_SPEC'], 2)
    """
    check_platform_secrets(launch.secret_env, declared=platform_secrets, where=where)
    overrides = dict(base or {})
    overrides["command"] = list(launch.args)
    overrides["environment"] = merge_env(overrides.get("environment"), launch.env)
    return overrides


def job_definition_secrets(job_definition: Mapping[str, Any]) -> set[str]:
    """Names of the ``secrets`` a (described) job definition injects into its container."""
    props = job_definition.get("containerProperties") or {}
    return {secret["name"] for secret in props.get("secrets") or ()}


class GeniusBatchOperator(GeniusAwsContainerMixin, BatchOperator):
    """Run a genius task as an AWS Batch job; the run record's result is the XCom.

    Args (besides the genius arguments of :class:`~airflow_genius.operators.base.GeniusOperatorMixin`
    and those of ``BatchOperator``: ``job_queue``, ``job_definition``, ``aws_conn_id``, ``region_name``,
    ``container_overrides`` (vcpus, memory, resourceRequirements …), ``deferrable`` (default
    ``[operators] default_deferrable``), ``poll_interval``,
    ``tags``, ``retry_strategy`` …):
        job_name: the Batch job name (templated), as in ``BatchOperator``. Default: one derived from
            the task instance, ``genius-<dag>-<task>-<digest>``, the same on every try. A retry
            reattaches to a live job of this name on the queue, so a name you give must be unique per
            task instance (e.g. templated with ``{{ run_id }}``).
        environment: plain environment of the container (templated); never put secrets here.
        reattach: on a retry, wait for the job an earlier try left running instead of submitting again.
        awslogs_enabled: copy the job's CloudWatch log into the task log (default True).
    """

    # BatchOperator annotates its links as a fixed-length tuple of its own four; ours add two.
    operator_extra_links = aws_extra_links(BatchOperator)  # type: ignore[assignment]
    template_fields: Sequence[str] = aws_template_fields(BatchOperator)
    template_fields_renderers: ClassVar[dict[str, str]] = aws_template_renderers(BatchOperator)
    trigger_swap = (BatchJobTrigger, GeniusBatchJobTrigger)
    platform_job = "the Batch job"

    def __init__(
        self,
        *,
        job_queue: str,
        job_definition: str,
        job_name: str | None = None,
        reattach: bool = True,
        awslogs_enabled: bool = True,
        awslogs_fetch_interval: timedelta = timedelta(seconds=5),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            job_queue=job_queue,
            job_definition=job_definition,
            job_name=job_name or "",  # "": derived from the task instance when it runs
            awslogs_enabled=awslogs_enabled,
            awslogs_fetch_interval=awslogs_fetch_interval,
            **kwargs,
        )
        self.reattach = reattach
        self.log_streamed = False

    # ------------------------------------------------------------------ request
    def platform_secrets(self) -> set[str]:
        """Names of the secrets the job definition injects (one describe call)."""
        found = self.described_job_definition()
        return job_definition_secrets(found) if found else set()

    def described_job_definition(self) -> dict[str, Any] | None:
        """The job definition a submit uses (a bare name: its latest ACTIVE revision), described; None
        if Batch has none of that name."""
        client: Any = self.hook.client  # boto3's batch client (the provider types it as a protocol)
        name = self.job_definition
        if name.startswith("arn:") or ":" in name:
            found = client.describe_job_definitions(jobDefinitions=[name])["jobDefinitions"]
        else:  # a bare name means its latest ACTIVE revision
            found = client.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
            found = sorted(found, key=lambda d: d.get("revision", 0))[-1:]
        return dict(found[0]) if found else None

    def platform_definition(self) -> str:
        return f"job definition {self.job_definition!r}"

    def platform_mounts(self) -> tuple[Sequence[Mapping[str, Any]], Sequence[Mapping[str, Any]]]:
        """The job definition's ``containerProperties`` ``volumes`` and ``mountPoints`` (one call)."""
        props = (self.described_job_definition() or {}).get("containerProperties") or {}
        return props.get("volumes") or [], props.get("mountPoints") or []

    def build_overrides(self, context: Context) -> dict[str, Any]:
        """This task instance's ``containerOverrides`` (secrets checked against the job definition)."""
        launch, declared = self.checked_launch(context)
        return batch_container_overrides(
            launch,
            base=self.container_overrides,
            platform_secrets=declared,
            where=self.platform_definition(),
        )

    def instance_job_name(self, context: Context) -> str:
        """The default job name of this task instance (the same on every try)."""
        who = identity_from_context(context)
        return deterministic_name(who["dag_id"], who["task_id"], who["run_id"], who["map_index"])

    # ------------------------------------------------------------------ reattach
    def find_previous_job(self, context: Context) -> str | None:
        """A job an earlier try of this task instance left on its way, else None.

        Only live jobs count: a finished one is never taken for this try's result, so clearing a task
        really runs it again (at worst a crash right after the job ended reruns it; partitions are
        idempotent)."""
        stored = task_state_get(context, JOB_ID_KEY)
        if stored:
            jobs = self.hook.get_conn().describe_jobs(jobs=[str(stored)])["jobs"]
            status = jobs[0]["status"] if jobs else None
            if status in LIVE_STATES:
                self.log.info("reattaching to AWS Batch job %s (%s) from an earlier try", stored, status)
                return str(stored)
        client: Any = self.hook.client
        found = client.list_jobs(
            jobQueue=self.job_queue, filters=[{"name": "JOB_NAME", "values": [self.job_name]}]
        )["jobSummaryList"]
        live = sorted(
            (job for job in found if job.get("jobName") == self.job_name and job["status"] in LIVE_STATES),
            key=lambda job: job.get("createdAt", 0),
        )
        if live:
            job = live[-1]
            if len(live) > 1:
                self.log.warning("%d live jobs named %s; waiting for the newest", len(live), self.job_name)
            self.log.info(
                "reattaching to AWS Batch job %s (%s) named %s from an earlier try",
                job["jobId"], job["status"], self.job_name,
            )  # fmt: skip
            return str(job["jobId"])
        return None

    # ------------------------------------------------------------------ run (BatchOperator.execute's steps)
    def execute(self, context: Context) -> Any:
        """``BatchOperator.execute`` (submit, then wait here or defer), then the run record decides."""
        self.container_overrides = self.build_overrides(context)  # refused before anything is submitted
        self.job_name = self.job_name or self.instance_job_name(context)
        self.log_streamed = False
        failure = self.batch_verdict(super().execute, context)
        if self.awslogs_enabled and not self.log_streamed:
            # The log stream only showed up after the job ended (short jobs; engines that publish the
            # stream at the end): copy the whole log now.
            self.copy_whole_log()
        return self.finish_remote(context, failure=failure, log_tail=self.cloudwatch_tail)

    def submit_job(self, context: Context) -> None:
        """Submit this task instance's job, or (``reattach``) take the one an earlier try left on its
        way; either way remember its id in ``task_state_store`` for the next try."""
        previous = self.find_previous_job(context) if self.reattach else None
        if previous:
            self.job_id = previous
        else:
            super().submit_job(context)
        task_state_set(context, JOB_ID_KEY, self.job_id)

    def _get_batch_log_fetcher(self, job_id: str) -> AwsTaskLogFetcher | None:
        """The provider's log fetcher, noting whether there was one: ``monitor_job`` streams the log
        with it while the job runs, and :meth:`execute` copies the whole log when there was none.

        Overrides a private method of ``BatchOperator`` (listed in
        :data:`airflow_genius._provider_compat.OVERRIDDEN_PRIVATE_METHODS`)."""
        fetcher = compat.batch_log_fetcher(self, job_id)
        self.log_streamed = self.log_streamed or fetcher is not None
        return fetcher

    def batch_verdict(self, step: Callable[..., object], *args: Any) -> str | None:
        """Run a step of ``BatchOperator`` that raises unless the job SUCCEEDED; return what Batch says
        went wrong (None: it succeeded) for :meth:`finish_remote` to combine with the run record. An
        error about a job that has not ended (submission refused, polling gave up …) stands."""
        try:
            step(*args)
        except AirflowException:
            job = self.ended_job()
            if job is None:
                raise
            return job_failure(job)
        return None

    def ended_job(self) -> dict[str, Any] | None:
        """The job's description if it ended (SUCCEEDED or FAILED), else None."""
        job = self.hook.get_job_description(self.job_id) if self.job_id else {}
        return dict(job) if job.get("status") in ENDED_STATES else None

    def copy_whole_log(self) -> None:
        """Forward every event of the job's CloudWatch stream into the task log, once."""
        fetcher = compat.batch_log_fetcher(self, self.job_id) if self.job_id else None
        if fetcher is None:
            self.log.warning("AWS Batch job %s has no CloudWatch log stream", self.job_id)
            return
        fetcher.stop()
        fetcher.run()  # stopped: forwards every event once, in this thread

    def cloudwatch_tail(self) -> list[str]:
        """The last lines of the job's CloudWatch stream ([] without one), read once the job ended."""
        fetcher = (
            compat.batch_log_fetcher(self, self.job_id) if self.awslogs_enabled and self.job_id else None
        )
        return [] if fetcher is None else list(fetcher.get_last_log_messages(LOG_TAIL_LINES))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Back from the triggerer: the provider copies the log and reads Batch's verdict, then the run
        record decides."""
        failure = self.batch_verdict(super().execute_complete, context, event)
        return self.finish_remote(context, failure=failure, log_tail=self.cloudwatch_tail)

    def genius_remote_job_id(self) -> str | None:
        return self.job_id

    def on_kill(self) -> None:
        """Terminate the job this worker submitted or reattached to."""
        if self.job_id:
            super().on_kill()


def job_failure(job: Mapping[str, Any]) -> str | None:
    """What Batch says went wrong with a finished job (None: it succeeded).

    >>> job_failure({"jobId": "j1", "status": "FAILED", "statusReason": "Essential container exited",
    ...              "container": {"exitCode": 1}})
    'AWS Batch job j1 FAILED (exit code 1): Essential container exited'
    """
    status = job.get("status")
    if status == "SUCCEEDED":
        return None
    attempts = job.get("attempts") or [{}]
    exit_code = (job.get("container") or {}).get(
        "exitCode", (attempts[-1].get("container") or {}).get("exitCode")
    )
    text = f"AWS Batch job {job.get('jobId')} {status}"
    if exit_code is not None:
        text += f" (exit code {exit_code})"
    if job.get("statusReason"):
        text += f": {job['statusReason']}"
    return text


class GeniusBatchSpoutOperator(GeniusBatchOperator):
    """A genius :class:`~airflow_genius.core.task.Spout` as an AWS Batch job."""

    genius_kind = "spout"


class GeniusBatchBoltOperator(GeniusBatchOperator):
    """A genius :class:`~airflow_genius.core.task.Bolt` as an AWS Batch job."""

    genius_kind = "bolt"
