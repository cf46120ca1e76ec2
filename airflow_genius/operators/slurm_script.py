"""The sbatch script of a genius Slurm job: a pure function of typed options (no Airflow, no SSH).

What reaches the script and how:

* ``#SBATCH`` options are validated (sbatch reads them itself, no shell): a value with a newline or a
  control character could smuggle in a line of shell, so it is refused; whitespace too. Names
  (partition, account, qos, reservation, constraint) must use Slurm's own character set.
* ``extra_directives`` must be long options from :data:`EXTRA_DIRECTIVES`, spelled in full: sbatch
  accepts abbreviations (``--out=`` is ``--output=``) and bundled short options (``-Ho/x``), so only
  an allow-list keeps a job from moving its output, working directory or environment.
* environment values are shell-quoted ``export`` lines; names must be identifiers.
* the TaskSpec and the secret environment are **files** in the job's folder (mode 0600), sourced or
  read by path — never in the script, never in argv.
* ``setup`` lines (``module load …``, ``source venv/bin/activate``) are the DAG author's shell code and
  are copied as they are.

>>> options = SlurmJobOptions(partition="gpu", time="01:00:00", cpus_per_task=4, env={"A": "x y"})
>>> print(render_sbatch_script(job_name="genius-x", job_dir="/h/.genius/slurm/genius-x",
...                            options=options, body=genius_body("/h/.genius/slurm/genius-x", options)))
... # doctest: +ELLIPSIS
#!/bin/bash
#SBATCH --job-name=genius-x
...
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

SPEC_FILE = "spec.json"
SECRET_FILE = "secret.env"  # noqa: S105 - a file name, not a secret
#: An array element's own environment (``export`` lines, mode 0600), sourced by the array's script:
#: ``env`` is templated per task instance, the script is the submitter's.
ENV_FILE = "env.sh"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_NO_SPACE_OR_CONTROL = re.compile(r"^[^\s\x00-\x1f\x7f]+$")
# Slurm names (partitions, accounts, QOS, reservations, node features): letters, digits, _ - .
_SLURM_NAME = r"[A-Za-z0-9_.-]+"
_ONE_NAME = re.compile(rf"^{_SLURM_NAME}$")
_NAME_LIST = re.compile(rf"^{_SLURM_NAME}(,{_SLURM_NAME})*$")
# --constraint: feature names joined by & | , and grouped with ( ) [ ], with counts (*2) (sbatch(1))
_CONSTRAINT = re.compile(r"^[A-Za-z0-9_.\-&|,:*()\[\]]+$")
_GPUS = re.compile(rf"^({_SLURM_NAME}:)?[1-9][0-9]*$")
_LONG_OPTION = re.compile(r"^--([a-z][a-z0-9-]*)(=(.*))?$")
# sbatch's #SBATCH parser strips quotes and backslashes and ends the line at '#'
_SBATCH_PARSED = re.compile(r"[\"'\\#]")
_ARRAY = re.compile(r"^[0-9]+-[0-9]+(%[1-9][0-9]*)?$")
#: The folder of the running element of an array, in the script (a shell word, not a literal path).
_ELEMENT_DIR = '/element-"${SLURM_ARRAY_TASK_ID:-}"'
CONTAINER_RUNTIMES = ("podman", "apptainer", "singularity", "pyxis")
# Pyxis options SlurmContainer.options may add: its own long options (``--container-…``), so no other
# srun option moves the step's output or environment. Pyxis refuses a second image or workdir, and the
# names of --container-env come from env=.
_PYXIS_OPTION = re.compile(r"^--(no-)?container-[a-z-]+(=.+)?$")
_PYXIS_GENIUS_SETS = ("container-image", "container-workdir", "container-env")
# What each runtime's mount option splits a path on: podman's -v src:dst[:opts]; apptainer's
# --bind src[:dst[:opts]][,…]; Pyxis' --container-mounts src:dst[:flags][,…], handed to enroot as an
# fstab line (split on whitespace). The job folder is mounted, so it may hold none of these.
_MOUNT_SEPARATORS: Mapping[str, str] = MappingProxyType(
    {"podman": ":", "apptainer": ":,", "singularity": ":,", "pyxis": ":, \t"}
)

#: The long sbatch options ``extra_directives`` may use, each with how it takes a value:
#: ``"value"`` only as ``--option=value`` (a bare ``--option`` would swallow the next directive as its
#: value), ``"flag"`` only as ``--option``, ``"either"`` both. Anything else is refused.
EXTRA_DIRECTIVES: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(
            ("contiguous", "no-requeue", "overcommit", "oversubscribe", "reboot", "requeue",
             "spread-job", "use-min-nodes"),
            "flag",
        ),
        **dict.fromkeys(("exclusive", "nice", "no-kill", "propagate"), "either"),
        **dict.fromkeys(
            ("acctg-freq", "batch", "begin", "comment", "core-spec", "cores-per-socket", "cpu-freq",
             "cpus-per-gpu", "deadline", "delay-boot", "dependency", "distribution", "exclude",
             "extra-node-info", "gpu-bind", "gpu-freq", "gpus-per-node", "gpus-per-socket",
             "gpus-per-task", "gres", "gres-flags", "hint", "kill-on-invalid-dep", "licenses",
             "mail-type", "mail-user", "mcs-label", "mem-bind", "mem-per-cpu", "mem-per-gpu", "mincpus",
             "network", "nodelist", "ntasks-per-core", "ntasks-per-gpu", "ntasks-per-node",
             "ntasks-per-socket", "power", "prefer", "priority", "profile", "signal", "sockets-per-node",
             "switches", "thread-spec", "threads-per-core", "time-min", "tmp", "wait-all-nodes", "wckey"),
            "value",
        ),
    }
)  # fmt: skip

# Options genius sets or relies on, with why they are refused in extra_directives.
_OWN_OUTPUT = "genius keeps the job's output in its job folder"
_OWN_ENV = "genius sets the job's environment (use env=)"
_OWN_SUBMIT = "genius submits the job and reads sbatch's reply itself"
_REFUSED_DIRECTIVES: Mapping[str, str] = MappingProxyType(
    {
        "job-name": "genius names the job (a retry finds it by that name)",
        "output": _OWN_OUTPUT,
        "error": _OWN_OUTPUT,
        "open-mode": _OWN_OUTPUT,
        "input": "the job reads only its job folder",
        "chdir": "the job runs in its job folder",
        "wrap": "genius writes the job's script",
        "export": _OWN_ENV,
        "export-file": _OWN_ENV,
        "get-user-env": _OWN_ENV,
        "uid": "the job runs as the SSH user",
        "gid": "the job runs as the SSH user",
        "clusters": "genius watches the job on the login node's own cluster",
        "cluster-constraint": "genius watches the job on the login node's own cluster",
        "array": "a mapped task's instances share one array genius submits itself (array=True)",
        "container": "use container=SlurmContainer(...)",
        **dict.fromkeys(
            ("parsable", "test-only", "wait", "hold", "quiet", "verbose", "usage", "help", "version"),
            _OWN_SUBMIT,
        ),
    }
)
# Typed options: refused as extra directives so their values always pass the typed checks.
_TYPED_DIRECTIVES: Mapping[str, str] = MappingProxyType(
    {
        "partition": "partition", "time": "time", "nodes": "nodes", "ntasks": "ntasks",
        "cpus-per-task": "cpus_per_task", "mem": "mem", "gpus": "gpus", "account": "account",
        "qos": "qos", "constraint": "constraint", "reservation": "reservation",
    }
)  # fmt: skip
# Every long option sbatch 22.05 knows, to name what an abbreviation would expand to.
_SBATCH_LONG_OPTIONS = frozenset(
    {*EXTRA_DIRECTIVES, *_REFUSED_DIRECTIVES, *_TYPED_DIRECTIVES, "bb", "bbf", "ignore-pbs", "nodefile"}
)


class SlurmOptionError(ValueError):
    """An sbatch option or environment entry that cannot be rendered safely."""


@dataclass(frozen=True)
class SlurmContainer:
    """Run ``genius`` inside a container image on the compute node.

    ``runtime="podman"`` runs the image's ENTRYPOINT (``genius``) with the host network;
    ``apptainer``/``singularity`` run ``genius`` from the image (``docker://…``, ``*.sif``);
    ``pyxis`` runs ``genius`` from the image in a job step, ``srun --container-image=…`` (the Pyxis
    plugin with enroot on the cluster; ``options`` are more Pyxis options, ``--container-…``).
    Environment is passed by name, so no value appears on a command line.

    >>> SlurmContainer(image="nvcr.io#nvidia/pytorch:24.05-py3", runtime="pyxis",
    ...                options=["--container-mounts=/scratch:/scratch:ro", "--no-container-mount-home"])
    ... # doctest: +ELLIPSIS
    SlurmContainer(image='nvcr.io#nvidia/pytorch:24.05-py3', runtime='pyxis', ...)
    """

    image: str
    runtime: str = "podman"
    options: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.runtime not in CONTAINER_RUNTIMES:
            raise SlurmOptionError(f"container runtime must be one of {', '.join(CONTAINER_RUNTIMES)}")
        _check_value("container image", self.image)
        if self.image.startswith("-"):  # the runtime would read it as one of its options
            raise SlurmOptionError(f"container image {self.image!r} must not start with '-'")
        if isinstance(self.options, str):
            raise SlurmOptionError(f"container options must be a list of strings, got {self.options!r}")
        if self.runtime == "pyxis":
            for option in self.options:
                _check_pyxis_option(option)


def _check_pyxis_option(option: object) -> None:
    """Refuse a Pyxis option that is not one word of Pyxis' own or that genius sets itself."""
    if not isinstance(option, str):
        raise SlurmOptionError(f"pyxis option {option!r} must be a string like --container-…")
    _check_value("pyxis option", option)
    if not _PYXIS_OPTION.match(option):
        raise SlurmOptionError(
            f"pyxis option {option!r} is refused: only Pyxis' own --container-… options are allowed"
        )
    name = option[2:].split("=", 1)[0]
    if name in _PYXIS_GENIUS_SETS:
        raise SlurmOptionError(
            f"pyxis option {option!r} is refused: genius sets --{name} (environment names: use env=)"
        )


@dataclass(frozen=True)
class SlurmJobOptions:
    """Typed sbatch options (``None`` = leave to the cluster's defaults).

    Args:
        partition, account, qos, constraint, reservation: as the sbatch options of the same name.
        time: ``--time`` (``MM``, ``HH:MM:SS``, ``D-HH:MM``…).
        nodes, ntasks, cpus_per_task: counts.
        mem: ``--mem`` per node (``4G``, ``500M``).
        gpus: ``--gpus`` (``2`` or ``a100:2``).
        extra_directives: more ``#SBATCH`` lines, each a long option of :data:`EXTRA_DIRECTIVES` spelled
            in full (``--exclusive``, ``--signal=B:USR1@60``); one word each.
        setup: shell lines run before the task (``module load python/3.11``) — trusted code.
        env: environment of the task (shell-quoted exports).
        genius_command: how to call ``genius`` on the node (a path if it is not on PATH).
        container: run inside a container image instead (see :class:`SlurmContainer`).
    """

    partition: str | None = None
    time: str | None = None
    nodes: int | None = None
    ntasks: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    gpus: str | int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    reservation: str | None = None
    extra_directives: Sequence[str] = ()
    setup: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    genius_command: str = "genius"
    container: SlurmContainer | None = None

    def __post_init__(self) -> None:
        # Validate on construction, so a bad option fails before anything reaches the cluster.
        self.directives()
        self.exports()
        from airflow_genius.operators.container import check_environment

        try:  # the same names are the launch's own on Slurm (the password travels in the 0600 file)
            check_environment(self.env, where="env")
        except ValueError as exc:
            raise SlurmOptionError(str(exc)) from None

    def directives(self) -> list[str]:
        """The ``#SBATCH`` arguments: the typed options as ``--option=value``, then the extra directives.

        Raises:
            SlurmOptionError: one line naming the first option or directive that cannot be rendered.
        """
        rendered: list[str] = []
        chars = "letters, digits, _ - ."
        for name, value, pattern, what in (
            ("partition", self.partition, _NAME_LIST, f"partition names ({chars}), comma-separated"),
            ("account", self.account, _ONE_NAME, f"an account name ({chars})"),
            ("qos", self.qos, _ONE_NAME, f"a QOS name ({chars})"),
            ("constraint", self.constraint, _CONSTRAINT,
             f"node features ({chars}) joined by & | , : * and grouped by ( ) [ ]"),
            ("reservation", self.reservation, _NAME_LIST, f"reservation names ({chars}), comma-separated"),
        ):  # fmt: skip
            if value is not None:
                rendered.append(f"--{name}={_check_name(name, value, pattern, what)}")
        if self.time is not None:
            if not _TIME.match(str(self.time)):
                raise SlurmOptionError(f"time {self.time!r} is not a Slurm time (MM, HH:MM:SS, D-HH:MM)")
            rendered.append(f"--time={self.time}")
        for name, count in (
            ("nodes", self.nodes),
            ("ntasks", self.ntasks),
            ("cpus-per-task", self.cpus_per_task),
        ):
            if count is not None:
                if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                    raise SlurmOptionError(f"{name} must be a positive integer, got {count!r}")
                rendered.append(f"--{name}={count}")
        if self.mem is not None:
            if not _MEM.match(str(self.mem)):
                raise SlurmOptionError(f"mem {self.mem!r} is not a Slurm memory size (e.g. 500M, 4G)")
            rendered.append(f"--mem={self.mem}")
        if self.gpus is not None:
            what = "a GPU count, optionally after a type (2, a100:2)"
            rendered.append(f"--gpus={_check_name('gpus', self.gpus, _GPUS, what)}")
        if isinstance(self.extra_directives, str):
            raise SlurmOptionError(
                f"extra_directives must be a list of strings, got {self.extra_directives!r}"
            )
        rendered.extend(_check_extra_directive(line) for line in self.extra_directives)
        return rendered

    def exports(self, extra: Mapping[str, str] | None = None) -> list[str]:
        """``export NAME='value'`` lines of the environment."""
        lines = []
        for name, value in {**self.env, **(extra or {})}.items():
            if not _ENV_NAME.match(name):
                raise SlurmOptionError(f"environment name {name!r} is not a shell identifier")
            lines.append(f"export {name}={shlex.quote(str(value))}")
        return lines


def _check_value(name: str, value: object) -> str:
    text = str(value)
    if not _NO_SPACE_OR_CONTROL.match(text):
        raise SlurmOptionError(f"{name} {text!r} must be one word without spaces or control characters")
    return text


def _check_name(name: str, value: object, pattern: re.Pattern[str], what: str) -> str:
    """``value`` as text if it matches Slurm's character set for the option ``name``."""
    text = _check_value(name, value)
    if isinstance(value, bool) or not pattern.match(text):
        raise SlurmOptionError(f"{name} {text!r} must be {what}")
    return text


def _check_extra_directive(line: object) -> str:
    """``line`` if it is a full-length long option of :data:`EXTRA_DIRECTIVES` with a safe value.

    Every refusal is one line naming the directive.
    """
    if not isinstance(line, str):
        raise SlurmOptionError(f"extra directive {line!r} must be a string like --option=value")
    if not _NO_SPACE_OR_CONTROL.match(line):
        # sbatch splits #SBATCH lines on whitespace: `--comment=a b` would be two arguments
        raise SlurmOptionError(
            f"extra directive {line!r} must be one word without spaces or control characters"
        )
    match = _LONG_OPTION.match(line)
    if match is None:
        # short options bundle (-Ho/x is --hold --output=/x), so only long ones are readable
        raise SlurmOptionError(f"extra directive {line!r} must be a long option: --option or --option=value")
    name, value = match.group(1), match.group(3)
    if name in _REFUSED_DIRECTIVES:
        raise SlurmOptionError(f"extra directive {line!r} is refused: {_REFUSED_DIRECTIVES[name]}")
    if name in _TYPED_DIRECTIVES:
        raise SlurmOptionError(
            f"extra directive {line!r} is refused: use the {_TYPED_DIRECTIVES[name]} argument instead"
        )
    kind = EXTRA_DIRECTIVES.get(name)
    if kind is None:
        longer = sorted(option for option in _SBATCH_LONG_OPTIONS if option.startswith(name))
        if longer and name not in _SBATCH_LONG_OPTIONS:  # sbatch expands unambiguous abbreviations
            expands = " or ".join([*(f"--{option}" for option in longer[:3]), *(["…"] if longer[3:] else [])])
            raise SlurmOptionError(
                f"extra directive {line!r} is refused: --{name} abbreviates {expands}; "
                "write allowed options in full"
            )
        raise SlurmOptionError(
            f"extra directive {line!r} is refused: --{name} is not an allowed sbatch option (EXTRA_DIRECTIVES)"
        )
    if kind == "flag" and value is not None:
        raise SlurmOptionError(f"extra directive {line!r}: --{name} takes no value")
    if (kind == "value" and value is None) or value == "":
        raise SlurmOptionError(f"extra directive {line!r}: --{name} needs a value, as --{name}=value")
    if value is not None and _SBATCH_PARSED.search(value):
        raise SlurmOptionError(
            f"extra directive {line!r}: quotes, backslashes and '#' are not allowed (sbatch strips them)"
        )
    return line


class _Shell(str):
    """A word of a command line that is shell code already (it expands a variable): not quoted again."""


def _join(words: Sequence[str]) -> str:
    return " ".join(word if isinstance(word, _Shell) else shlex.quote(word) for word in words)


def genius_body(job_dir: str, options: SlurmJobOptions, *, element: bool = False) -> list[str]:
    """The lines that run the TaskSpec in ``job_dir`` with ``genius run`` (directly or in a container).

    ``element``: ``job_dir`` is an array's folder and each element runs the spec of its own
    ``element-$SLURM_ARRAY_TASK_ID`` folder (see :mod:`airflow_genius.core.slurm_array`).
    """
    folder = _Shell(shlex.quote(job_dir) + _ELEMENT_DIR) if element else job_dir
    spec = _Shell(f"{folder}/{SPEC_FILE}") if element else f"{job_dir}/{SPEC_FILE}"
    work = _Shell(f"{folder}/work") if element else f"{job_dir}/work"
    run = ["run", "--spec", spec, "--work-dir", work]
    container = options.container
    if container is None:
        return [_join([*shlex.split(options.genius_command), *run])]
    from airflow_genius.core.runtime import ATTEMPT_ENV

    unsafe = [char for char in _MOUNT_SEPARATORS[container.runtime] if char in job_dir]
    if unsafe:
        raise SlurmOptionError(
            f"job folder {job_dir!r} cannot be mounted by {container.runtime}: "
            f"it must not contain {' '.join(map(repr, unsafe))}"
        )
    names = sorted({*options.env, "GENIUS_STATE_PASSWORD", ATTEMPT_ENV})
    if container.runtime == "podman":
        env_args = [arg for name in names for arg in ("-e", name)]
        command = ["-v", f"{job_dir}:{job_dir}", *env_args, *container.options, container.image, *run]
        # The container runs as the job's user, so it can read the job's 0600 files.
        return ['podman run --rm --network=host --user "$(id -u):$(id -g)" ' + _join(command)]
    if container.runtime == "pyxis":
        # One job step in the image (Pyxis' options are srun's); the job folder (spec, secret file, work
        # folder, output) mounted at its own path. The step gets the batch shell's environment
        # (--export=ALL: env, the sourced secret file); --container-env names the variables whose host
        # value wins over the image's ENV, so only names reach argv.
        workdir = f"--container-workdir={folder}"
        command = [
            "srun", "--nodes=1", "--ntasks=1", "--export=ALL", f"--container-image={container.image}",
            f"--container-mounts={job_dir}:{job_dir}", _Shell(workdir) if element else workdir,
            f"--container-env={','.join(names)}", *container.options, "genius", *run,
        ]  # fmt: skip
        return [_join(command)]
    # apptainer / singularity pass the host environment through by default
    command = [
        container.runtime,
        "exec",
        "--bind",
        job_dir,
        *container.options,
        container.image,
        "genius",
        *run,
    ]
    return [_join(command)]


def render_sbatch_script(
    *,
    job_name: str,
    job_dir: str,
    options: SlurmJobOptions,
    body: Sequence[str],
    extra_env: Mapping[str, str] | None = None,
    array: str | None = None,
) -> str:
    """The whole sbatch script: directives, environment, the secret file, setup, then ``body``.

    Output goes to ``<job_dir>/slurm-<jobid>.out`` (stdout and stderr together, appended on requeue);
    when the script exits it touches ``<job_dir>/slurm-<jobid>.end``, the mark a waiting poll watches
    for (see :func:`~airflow_genius.core.slurm_protocol.poll_command`).

    A job Slurm requeued (``scontrol requeue``, preemption, a node failure) runs the script again with
    ``SLURM_RESTART_COUNT`` set: the script says so in the output, clears the end mark its earlier run
    left, and passes the count to ``genius run`` as ``GENIUS_ATTEMPT``, so the restart takes the try over
    from the run it replaces (see :mod:`airflow_genius.core.runtime`).

    ``array`` (``0-49%8``, :func:`~airflow_genius.core.slurm_array.array_range`): submit a job array,
    held (each element is released on its own); element ``i`` runs in ``<job_dir>/element-i`` (its spec,
    secret file, :data:`ENV_FILE` and work folder: ``body`` from ``genius_body(..., element=True)``;
    ``options.env`` and ``extra_env`` are not in the script then, each element has its own), its output is
    ``slurm-<array id>_<i>.out`` and its end mark ``slurm-<array id>_<i>.end``.
    """
    from airflow_genius.core.runtime import ATTEMPT_ENV
    from airflow_genius.core.slurm_protocol import END_MARK_FILE, OUTPUT_FILE

    _check_value("job name", job_name)
    if "\n" in job_dir or not job_dir.startswith("/"):
        raise SlurmOptionError(f"job folder {job_dir!r} must be an absolute path on one line")
    from airflow_genius.core.slurm_array import ARRAY_OUTPUT_PATTERN

    if array is not None and not _ARRAY.match(array):
        raise SlurmOptionError(f"array {array!r} must be a range like 0-49 or 0-49%8")
    output = ARRAY_OUTPUT_PATTERN if array else OUTPUT_FILE.format(job_id="%j")
    directives = [
        f"--job-name={job_name}",
        f"--output={_directive_path(job_dir)}/{output}",
        "--open-mode=append",
        *([f"--array={array}", "--hold"] if array else []),
        *options.directives(),
    ]
    folder = shlex.quote(job_dir) + (_ELEMENT_DIR if array else "")
    secret = f"{folder}/{SECRET_FILE}"
    job_id = '"${SLURM_ARRAY_JOB_ID:-}_${SLURM_ARRAY_TASK_ID:-}"' if array else '"${SLURM_JOB_ID:-}"'
    end_mark = shlex.quote(f"{job_dir}/") + END_MARK_FILE.format(job_id=job_id)
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {directive}" for directive in directives),
        "set -euo pipefail",
        # the end mark: the poll waiting on the login node sees the job end at once (its exit status stays)
        f"trap {shlex.quote(f'touch -- {end_mark} 2>/dev/null || true')} EXIT",
        # a requeued job runs this script again: say so, and drop the mark the stopped run left
        f'export {ATTEMPT_ENV}="${{SLURM_RESTART_COUNT:-0}}"',
        f'if [ "${ATTEMPT_ENV}" != 0 ]; then rm -f -- {end_mark}; '
        f'echo "genius: Slurm restarted job ${{SLURM_JOB_ID:-}} (restart ${ATTEMPT_ENV})"; fi',
        f"cd {folder}",
        *(
            options.exports(extra_env)
            if not array
            else [f"if [ -f {folder}/{ENV_FILE} ]; then . {folder}/{ENV_FILE}; fi"]
        ),
        # Secrets arrive in a 0600 file next to the spec; `set -a` exports what it defines.
        f"if [ -f {secret} ]; then set -a; . {secret}; set +a; fi",
        *options.setup,
        *body,
        "",
    ]
    return "\n".join(lines)


def _directive_path(path: str) -> str:
    # sbatch splits #SBATCH lines on whitespace; a path with spaces is quoted for sbatch's parser.
    return f'"{path}"' if re.search(r"\s", path) else path


def secret_file_content(secret_env: Mapping[str, str]) -> bytes:
    """The 0600 secret file: ``NAME='value'`` lines, sourced by the script with ``set -a``."""
    for name in secret_env:
        if not _ENV_NAME.match(name):
            raise SlurmOptionError(f"secret name {name!r} is not a shell identifier")
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in secret_env.items()).encode()
