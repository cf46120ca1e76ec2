"""The sbatch script renderer: typed options, quoting, secrets kept out of the script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_genius.operators.slurm_script import (
    SECRET_FILE,
    SPEC_FILE,
    SlurmContainer,
    SlurmJobOptions,
    SlurmOptionError,
    genius_body,
    render_sbatch_script,
    secret_file_content,
)

HOSTILE = [
    "a'b",
    'a"b',
    "$(touch {canary})",
    "`touch {canary}`",
    "x; touch {canary}",
    "line1\ntouch {canary}",
    "$HOME ${{PATH}}",
    "back\\slash",
    "&& touch {canary} &",
]


def test_typed_options_render_as_directives() -> None:
    options = SlurmJobOptions(
        partition="gpu", time="1-02:00:00", nodes=1, ntasks=2, cpus_per_task=4, mem="8G", gpus="a100:2",
        account="proj", qos="high", constraint="v100|a100", extra_directives=["--exclusive", "--signal=B:USR1@60"],
    )  # fmt: skip
    script = render_sbatch_script(job_name="genius-j", job_dir="/h/jobs/j", options=options, body=["true"])
    for line in (
        "#SBATCH --job-name=genius-j", "#SBATCH --output=/h/jobs/j/slurm-%j.out", "#SBATCH --partition=gpu",
        "#SBATCH --time=1-02:00:00", "#SBATCH --nodes=1", "#SBATCH --ntasks=2", "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=8G", "#SBATCH --gpus=a100:2", "#SBATCH --account=proj", "#SBATCH --qos=high",
        "#SBATCH --constraint=v100|a100", "#SBATCH --exclusive", "#SBATCH --signal=B:USR1@60",
    ):  # fmt: skip
        assert line in script.splitlines()


@pytest.mark.parametrize(
    "options",
    [
        {"partition": "debug\n#SBATCH --uid=0"},
        {"partition": "a b"},
        {"account": "x\r"},
        {"time": "1:00; rm -rf ~"},
        {"mem": "8G\nrm"},
        {"cpus_per_task": 0},
        {"nodes": True},
        {"gpus": "1\ntouch x"},
        {"extra_directives": ["--comment=ok\ntouch x"]},
        {"extra_directives": ["touch x"]},
        {"env": {"BAD NAME": "x"}},
        {"env": {"X;touch y": "x"}},
    ],
)
def test_unsafe_options_are_refused(options: dict) -> None:
    with pytest.raises(SlurmOptionError):
        render_sbatch_script(job_name="j", job_dir="/h/j", options=SlurmJobOptions(**options), body=["true"])


def test_job_folder_and_name_are_checked() -> None:
    with pytest.raises(SlurmOptionError):
        render_sbatch_script(job_name="j\nx", job_dir="/h/j", options=SlurmJobOptions(), body=[])
    with pytest.raises(SlurmOptionError):
        render_sbatch_script(job_name="j", job_dir="relative/j", options=SlurmJobOptions(), body=[])


def test_hostile_environment_values_arrive_verbatim_and_never_execute(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    job_dir = tmp_path / "job dir"
    job_dir.mkdir()
    env = {f"V{i}": value.format(canary=canary) for i, value in enumerate(HOSTILE)}
    secret = {"GENIUS_STATE_PASSWORD": "p'w $(touch " + str(canary) + ")\n`x`"}
    (job_dir / SECRET_FILE).write_bytes(secret_file_content(secret))
    (job_dir / SPEC_FILE).write_text("{}")
    # A stand-in for `genius`: prints its argv and the environment it got.
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'env': {k: v for k, v in os.environ.items()"
        " if k.startswith('V') or k == 'GENIUS_STATE_PASSWORD'}}))\n"
    )
    options = SlurmJobOptions(env=env, genius_command=f"{sys.executable} {probe}")
    script = render_sbatch_script(
        job_name="j", job_dir=str(job_dir), options=options, body=genius_body(str(job_dir), options)
    )
    assert "p'w" not in script  # the secret stays in its file
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    seen = json.loads(done.stdout)
    assert seen["env"] == {**env, **secret}
    assert seen["argv"] == ["run", "--spec", f"{job_dir}/{SPEC_FILE}", "--work-dir", f"{job_dir}/work"]
    assert not canary.exists()


def test_container_wrappers_pass_environment_by_name_only() -> None:
    options = SlurmJobOptions(
        env={"TOKEN_LIKE": "s3cr3t"},
        container=SlurmContainer(image="localhost/genius:1", options=["--pull=never"]),
    )
    podman = genius_body("/h/j", options)[0]
    assert podman.startswith('podman run --rm --network=host --user "$(id -u):$(id -g)" ')
    assert "-e TOKEN_LIKE" in podman and "s3cr3t" not in podman
    assert podman.endswith("localhost/genius:1 run --spec /h/j/spec.json --work-dir /h/j/work")
    apptainer = genius_body(
        "/h/j", SlurmJobOptions(container=SlurmContainer(image="genius.sif", runtime="apptainer"))
    )[0]
    assert (
        apptainer
        == "apptainer exec --bind /h/j genius.sif genius run --spec /h/j/spec.json --work-dir /h/j/work"
    )
    with pytest.raises(SlurmOptionError):
        SlurmContainer(image="x", runtime="docker")
    with pytest.raises(SlurmOptionError):
        SlurmContainer(image="x y")


@pytest.mark.parametrize(("restarts", "attempt"), [(None, "0"), ("2", "2")])
def test_a_requeued_job_passes_its_restart_count_as_the_attempt(
    tmp_path: Path, restarts: str | None, attempt: str
) -> None:
    """Slurm sets SLURM_RESTART_COUNT in a requeued job: the script says so, drops the end mark the
    stopped run left, and hands the count to genius as GENIUS_ATTEMPT (0 on the first run)."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os, sys\n"
        "print('attempt=' + os.environ['GENIUS_ATTEMPT'], 'stale mark:', os.path.exists(os.path.dirname(sys.argv[3]) + '/slurm-5.end'))\n"
    )
    options = SlurmJobOptions(genius_command=f"{sys.executable} {probe}")
    script = render_sbatch_script(
        job_name="j", job_dir=str(tmp_path), options=options, body=genius_body(str(tmp_path), options)
    )
    stale = tmp_path / "slurm-5.end"
    stale.touch()
    env = {
        "PATH": "/usr/bin:/bin",
        "SLURM_JOB_ID": "5",
        **({"SLURM_RESTART_COUNT": restarts} if restarts else {}),
    }
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env=env)
    restarted = f"genius: Slurm restarted job 5 (restart {restarts})"
    # on a restart the mark the stopped run left is gone before genius runs (this run's exit makes a new one)
    seen = f"attempt={attempt} stale mark: {not restarts}"
    assert done.stdout.splitlines() == ([restarted] if restarts else []) + [seen]
    assert stale.exists()
    podman = genius_body("/h/j", SlurmJobOptions(container=SlurmContainer(image="localhost/genius:1")))[0]
    assert "-e GENIUS_ATTEMPT" in podman


PYXIS = SlurmContainer(image="nvcr.io#nvidia/pytorch:24.05-py3", runtime="pyxis")


def test_pyxis_runs_genius_in_a_one_task_step_with_the_job_folder_mounted() -> None:
    options = SlurmJobOptions(
        env={"TOKEN_LIKE": "s3cr3t"},
        container=SlurmContainer(
            image=PYXIS.image, runtime="pyxis", options=["--container-mounts=/scratch:/data:ro+rprivate"]
        ),
    )
    (line,) = genius_body("/h/j", options)
    assert line == (
        "srun --nodes=1 --ntasks=1 --export=ALL '--container-image=nvcr.io#nvidia/pytorch:24.05-py3'"
        " --container-mounts=/h/j:/h/j --container-workdir=/h/j"
        " --container-env=GENIUS_ATTEMPT,GENIUS_STATE_PASSWORD,TOKEN_LIKE"
        " --container-mounts=/scratch:/data:ro+rprivate genius run --spec /h/j/spec.json --work-dir /h/j/work"
    )
    assert "s3cr3t" not in line
    # an array element mounts the array's folder and works in its own element folder
    (element,) = genius_body("/h/a", SlurmJobOptions(container=PYXIS), element=True)
    assert element == (
        "srun --nodes=1 --ntasks=1 --export=ALL '--container-image=nvcr.io#nvidia/pytorch:24.05-py3'"
        ' --container-mounts=/h/a:/h/a --container-workdir=/h/a/element-"${SLURM_ARRAY_TASK_ID:-}"'
        " --container-env=GENIUS_ATTEMPT,GENIUS_STATE_PASSWORD genius run"
        ' --spec /h/a/element-"${SLURM_ARRAY_TASK_ID:-}"/spec.json'
        ' --work-dir /h/a/element-"${SLURM_ARRAY_TASK_ID:-}"/work'
    )


def test_pyxis_script_passes_hostile_values_as_single_words_and_the_secret_by_environment(
    tmp_path: Path,
) -> None:
    """The rig has no Pyxis (no enroot): a stand-in ``srun`` on PATH records the argv and environment
    the rendered script hands it, which is what this test is about — quoting, not the container."""
    canary = tmp_path / "canary"
    job_dir = tmp_path / "job'$(touch${IFS}canary)`x`"
    job_dir.mkdir()
    password = "p'w $(touch " + str(canary) + ")"
    (job_dir / SECRET_FILE).write_bytes(secret_file_content({"GENIUS_STATE_PASSWORD": password}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),"
        " 'env': {k: os.environ.get(k) for k in ('GENIUS_STATE_PASSWORD', 'V0', 'GENIUS_ATTEMPT')}}))\n"
    )
    srun.chmod(0o755)
    image = "reg#img:1;touch${IFS}" + str(canary) + "&`id`"
    mount = "--container-mounts=/s$(touch${IFS}" + str(canary) + "):/s"
    env = {"V0": "$(touch " + str(canary) + ")"}
    options = SlurmJobOptions(
        env=env, container=SlurmContainer(image=image, runtime="pyxis", options=[mount])
    )
    script = render_sbatch_script(
        job_name="j", job_dir=str(job_dir), options=options, body=genius_body(str(job_dir), options)
    )
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert "p'w" not in script
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, check=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "SLURM_JOB_ID": "7"},
    )  # fmt: skip
    seen = json.loads(done.stdout)
    assert seen["argv"] == [
        "--nodes=1", "--ntasks=1", "--export=ALL", f"--container-image={image}",
        f"--container-mounts={job_dir}:{job_dir}", f"--container-workdir={job_dir}",
        "--container-env=GENIUS_ATTEMPT,GENIUS_STATE_PASSWORD,V0", mount,
        "genius", "run", "--spec", f"{job_dir}/{SPEC_FILE}", "--work-dir", f"{job_dir}/work",
    ]  # fmt: skip
    assert password not in " ".join(seen["argv"])
    assert seen["env"] == {"GENIUS_STATE_PASSWORD": password, "V0": env["V0"], "GENIUS_ATTEMPT": "0"}
    assert seen["cwd"] == str(job_dir)
    assert not canary.exists()
