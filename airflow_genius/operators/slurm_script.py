"""The sbatch script of a genius Slurm job: a pure function of typed options (no Airflow, no SSH).

What reaches the script and how:

* ``#SBATCH`` options are validated (sbatch reads them itself, no shell): a value with a newline or a
  control character could smuggle in a line of shell, so it is refused; whitespace too.
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

SPEC_FILE = "spec.json"
SECRET_FILE = "secret.env"  # noqa: S105 - a file name, not a secret

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^\d+-\d+$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_NO_SPACE_OR_CONTROL = re.compile(r"^[^\s\x00-\x1f\x7f]+$")
_EXTRA_DIRECTIVE = re.compile(r"^--?[A-Za-z][A-Za-z0-9-]*(=[^\x00-\x1f\x7f]*)?$")
CONTAINER_RUNTIMES = ("podman", "apptainer", "singularity")


class SlurmOptionError(ValueError):
    """An sbatch option or environment entry that cannot be rendered safely."""


@dataclass(frozen=True)
class SlurmContainer:
    """Run ``genius`` inside a container image on the compute node.

    ``runtime="podman"`` runs the image's ENTRYPOINT (``genius``) with the host network;
    ``apptainer``/``singularity`` run ``genius`` from the image (``docker://…``, ``*.sif``).
    Environment is passed by name (``-e NAME``), so no value appears on a command line.
    """

    image: str
    runtime: str = "podman"
    options: Sequence[str] = ()

    def __post_init__(self) -> None:
        if self.runtime not in CONTAINER_RUNTIMES:
            raise SlurmOptionError(f"container runtime must be one of {', '.join(CONTAINER_RUNTIMES)}")
        _check_value("container image", self.image)


@dataclass(frozen=True)
class SlurmJobOptions:
    """Typed sbatch options (``None`` = leave to the cluster's defaults).

    Args:
        partition, account, qos, constraint, reservation: as the sbatch options of the same name.
        time: ``--time`` (``MM``, ``HH:MM:SS``, ``D-HH:MM``…).
        nodes, ntasks, cpus_per_task: counts.
        mem: ``--mem`` per node (``4G``, ``500M``).
        gpus: ``--gpus`` (``2`` or ``a100:2``).
        extra_directives: more ``#SBATCH`` lines, each ``--option`` or ``--option=value``.
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

    def directives(self) -> list[str]:
        """The ``--option=value`` pairs of the typed options, validated."""
        rendered: list[str] = []
        for name, value in (
            ("partition", self.partition),
            ("account", self.account),
            ("qos", self.qos),
            ("constraint", self.constraint),
            ("reservation", self.reservation),
        ):
            if value is not None:
                rendered.append(f"--{name}={_check_value(name, value)}")
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
            rendered.append(f"--gpus={_check_value('gpus', str(self.gpus))}")
        for line in self.extra_directives:
            if not _EXTRA_DIRECTIVE.match(line):
                raise SlurmOptionError(
                    f"extra directive {line!r} must look like --option or --option=value, on one line"
                )
            rendered.append(line)
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


def genius_body(job_dir: str, options: SlurmJobOptions) -> list[str]:
    """The lines that run the TaskSpec in ``job_dir`` with ``genius run`` (directly or in a container)."""
    spec = f"{job_dir}/{SPEC_FILE}"
    work = f"{job_dir}/work"
    container = options.container
    if container is None:
        command = [*shlex.split(options.genius_command), "run", "--spec", spec, "--work-dir", work]
        return [shlex.join(command)]
    names = sorted({*options.env, "GENIUS_STATE_PASSWORD"})
    env_args = [arg for name in names for arg in ("-e", name)]
    if container.runtime == "podman":
        command = [
            "-v",
            f"{job_dir}:{job_dir}",
            *env_args,
            *container.options,
            container.image,
            "run",
            "--spec",
            spec,
            "--work-dir",
            work,
        ]
        # The container runs as the job's user, so it can read the job's 0600 files.
        return ['podman run --rm --network=host --user "$(id -u):$(id -g)" ' + shlex.join(command)]
    else:  # apptainer / singularity pass the host environment through by default
        command = [
            container.runtime,
            "exec",
            "--bind",
            job_dir,
            *container.options,
            container.image,
            "genius",
            "run",
            "--spec",
            spec,
            "--work-dir",
            work,
        ]
    return [shlex.join(command)]


def render_sbatch_script(
    *,
    job_name: str,
    job_dir: str,
    options: SlurmJobOptions,
    body: Sequence[str],
    extra_env: Mapping[str, str] | None = None,
) -> str:
    """The whole sbatch script: directives, environment, the secret file, setup, then ``body``.

    Output goes to ``<job_dir>/slurm-<jobid>.out`` (stdout and stderr together, appended on requeue).
    """
    _check_value("job name", job_name)
    if "\n" in job_dir or not job_dir.startswith("/"):
        raise SlurmOptionError(f"job folder {job_dir!r} must be an absolute path on one line")
    directives = [
        f"--job-name={job_name}",
        f"--output={_directive_path(job_dir)}/slurm-%j.out",
        "--open-mode=append",
        *options.directives(),
    ]
    secret = f"{job_dir}/{SECRET_FILE}"
    lines = [
        "#!/bin/bash",
        *(f"#SBATCH {directive}" for directive in directives),
        "set -euo pipefail",
        f"cd {shlex.quote(job_dir)}",
        *options.exports(extra_env),
        # Secrets arrive in a 0600 file next to the spec; `set -a` exports what it defines.
        f"if [ -f {shlex.quote(secret)} ]; then set -a; . {shlex.quote(secret)}; set +a; fi",
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
