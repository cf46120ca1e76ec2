"""What the sbatch options refuse, each with its one-line message (pure: no cluster is contacted).

sbatch reads ``#SBATCH`` lines with getopt: it accepts unambiguous abbreviations of long options
(``--out=`` is ``--output=``), bundled short options (``-Ho/x`` is ``--hold --output=/x``) and a bare
``--option`` takes the next directive as its value. Only full long options of ``EXTRA_DIRECTIVES``
pass; names must use Slurm's character set.
"""

from __future__ import annotations

from typing import Any

import pytest

from airflow_genius.operators.slurm_script import (
    EXTRA_DIRECTIVES,
    SlurmContainer,
    SlurmJobOptions,
    SlurmOptionError,
    genius_body,
    render_sbatch_script,
)

OUTPUT = "is refused: genius keeps the job's output in its job folder"
ENV = "is refused: genius sets the job's environment (use env=)"
SUBMIT = "is refused: genius submits the job and reads sbatch's reply itself"
LONG = "must be a long option: --option or --option=value"
ONE_WORD = "must be one word without spaces or control characters"
QUOTES = "quotes, backslashes and '#' are not allowed (sbatch strips them)"
NAME = "letters, digits, _ - ."

REFUSED_DIRECTIVES = [
    # where the job writes or reads: every spelling sbatch accepts
    ("--output=/elsewhere/x", OUTPUT),
    ("--output", OUTPUT),
    ("--out=/elsewhere/x", "is refused: --out abbreviates --output; write allowed options in full"),
    ("--outp=/elsewhere/x", "is refused: --outp abbreviates --output; write allowed options in full"),
    ("--output /elsewhere/x", ONE_WORD),
    ("-o/elsewhere/x", LONG),
    ("-o /elsewhere/x", ONE_WORD),
    ("-Ho/elsewhere/x", LONG),
    ("--error=/elsewhere/x", OUTPUT),
    ("--err=/elsewhere/x", "is refused: --err abbreviates --error; write allowed options in full"),
    ("-e/elsewhere/x", LONG),
    ("--open-mode=truncate", OUTPUT),
    ("--input=/etc/passwd", "is refused: the job reads only its job folder"),
    ("-i/etc/passwd", LONG),
    ("--chdir=/elsewhere", "is refused: the job runs in its job folder"),
    ("--ch=/elsewhere", "is refused: --ch abbreviates --chdir; write allowed options in full"),
    ("-D/elsewhere", LONG),
    ("--wrap=touch_x", "is refused: genius writes the job's script"),
    # the environment genius sets
    ("--export=ALL,GENIUS_STATE_PASSWORD=x", ENV),
    ("--export-file=/tmp/env", ENV),
    ("--exp=NONE", "is refused: --exp abbreviates --export or --export-file; write allowed options in full"),
    ("--get-user-env", ENV),
    ("--uid=0", "is refused: the job runs as the SSH user"),
    # the job's identity and how it is submitted and watched
    ("--job-name=other", "is refused: genius names the job (a retry finds it by that name)"),
    ("--job=other", "is refused: --job abbreviates --job-name; write allowed options in full"),
    ("-Jother", LONG),
    ("--parsable", SUBMIT),
    ("--wait", SUBMIT),
    ("--test-only", SUBMIT),
    ("--hold", SUBMIT),
    ("--clusters=other", "is refused: genius watches the job on the login node's own cluster"),
    (
        "--array=1-10",
        "is refused: a mapped task's instances share one array genius submits itself (array=True)",
    ),
    ("--partition=other", "is refused: use the partition argument instead"),
    ("--cpus-per-task=4", "is refused: use the cpus_per_task argument instead"),
    # not on the allow-list, or spelled so that sbatch would read something else
    ("--nodefile=/tmp/nodes", "is refused: --nodefile is not an allowed sbatch option (EXTRA_DIRECTIVES)"),
    ("--made-up", "is refused: --made-up is not an allowed sbatch option (EXTRA_DIRECTIVES)"),
    ("--excl", "is refused: --excl abbreviates --exclude or --exclusive; write allowed options in full"),
    ("--Output=/elsewhere/x", LONG),
    ("---output=/elsewhere/x", LONG),
    ("touch x", ONE_WORD),
    # values: one word, as sbatch will read it
    ("--comment=a b", ONE_WORD),
    ("--comment=a\tb", ONE_WORD),
    ("--comment=ok\ntouch x", ONE_WORD),
    ("--comment", ": --comment needs a value, as --comment=value"),
    ("--comment=", ": --comment needs a value, as --comment=value"),
    ("--exclusive=", ": --exclusive needs a value, as --exclusive=value"),
    ("--contiguous=yes", ": --contiguous takes no value"),
    ('--comment="a"', f": {QUOTES}"),
    ("--comment=a'b", f": {QUOTES}"),
    ("--comment=a\\b", f": {QUOTES}"),
    ("--comment=a#b", f": {QUOTES}"),
]


@pytest.mark.parametrize(("directive", "reason"), REFUSED_DIRECTIVES, ids=repr)
def test_refused_extra_directives_name_the_directive(directive: str, reason: str) -> None:
    sep = "" if reason.startswith(":") else " "
    expected = f"extra directive {directive!r}{sep}{reason}"
    with pytest.raises(SlurmOptionError) as raised:
        SlurmJobOptions(extra_directives=["--exclusive", directive])
    assert str(raised.value) == expected
    assert "\n" not in str(raised.value)


REFUSED_OPTIONS: list[tuple[dict[str, Any], str]] = [
    (
        {"partition": "debug;touch_x"},
        f"partition 'debug;touch_x' must be partition names ({NAME}), comma-separated",
    ),
    ({"partition": "debug;touch x"}, f"partition 'debug;touch x' {ONE_WORD}"),
    ({"partition": "debug\n#SBATCH --uid=0"}, f"partition 'debug\\n#SBATCH --uid=0' {ONE_WORD}"),
    ({"partition": "cpu,,gpu"}, f"partition 'cpu,,gpu' must be partition names ({NAME}), comma-separated"),
    ({"partition": "$(id)"}, f"partition '$(id)' must be partition names ({NAME}), comma-separated"),
    ({"account": "proj`id`"}, f"account 'proj`id`' must be an account name ({NAME})"),
    ({"account": "a,b"}, f"account 'a,b' must be an account name ({NAME})"),
    ({"qos": "high|low"}, f"qos 'high|low' must be a QOS name ({NAME})"),
    ({"qos": "x\r"}, f"qos 'x\\r' {ONE_WORD}"),
    (
        {"reservation": "maint;x"},
        f"reservation 'maint;x' must be reservation names ({NAME}), comma-separated",
    ),
    (
        {"constraint": "a100&$(id)"},
        f"constraint 'a100&$(id)' must be node features ({NAME}) joined by & | , : * and grouped by ( ) [ ]",
    ),
    (
        {"constraint": "a100>b"},
        f"constraint 'a100>b' must be node features ({NAME}) joined by & | , : * and grouped by ( ) [ ]",
    ),
    ({"constraint": "a100 b"}, f"constraint 'a100 b' {ONE_WORD}"),
    ({"gpus": "a100:2;x"}, "gpus 'a100:2;x' must be a GPU count, optionally after a type (2, a100:2)"),
    ({"gpus": 0}, "gpus '0' must be a GPU count, optionally after a type (2, a100:2)"),
    ({"gpus": True}, "gpus 'True' must be a GPU count, optionally after a type (2, a100:2)"),
    ({"extra_directives": "--exclusive"}, "extra_directives must be a list of strings, got '--exclusive'"),
    ({"extra_directives": [7]}, "extra directive 7 must be a string like --option=value"),
]


@pytest.mark.parametrize(("options", "expected"), REFUSED_OPTIONS, ids=repr)
def test_refused_option_values_name_the_option(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(SlurmOptionError) as raised:
        SlurmJobOptions(**options)  # refused on construction, before any script exists
    assert str(raised.value) == expected
    assert "\n" not in str(raised.value)


def test_allowed_values_render_as_written() -> None:
    extra = [
        "--exclusive", "--exclusive=user", "--nice", "--nice=-5", "--no-kill=off", "--requeue",
        "--signal=B:USR1@60", "--dependency=afterok:12:13", "--mail-type=END,FAIL",
        "--mail-user=ops@example.org", "--nodelist=node[1-4,7]", "--begin=now+1hour", "--comment=nightly-run",
        "--gres=gpu:tesla:2", "--mem-per-cpu=2G",
    ]  # fmt: skip
    options = SlurmJobOptions(
        partition="cpu,gpu-long", account="proj.x_1", qos="high", reservation="maint_1,maint-2",
        constraint="[(rack1|rack2)*1&rack3*2]", gpus="a100:2", extra_directives=extra,
    )  # fmt: skip
    script = render_sbatch_script(job_name="genius-j", job_dir="/h/j", options=options, body=["true"])
    lines = script.splitlines()
    for directive in [
        "--partition=cpu,gpu-long", "--account=proj.x_1", "--qos=high", "--reservation=maint_1,maint-2",
        "--constraint=[(rack1|rack2)*1&rack3*2]", "--gpus=a100:2", *extra,
    ]:  # fmt: skip
        assert f"#SBATCH {directive}" in lines
    # genius' own directives come first and are never repeated by the options
    assert [line for line in lines if line.startswith(("#SBATCH --output", "#SBATCH --job-name"))] == [
        "#SBATCH --job-name=genius-j",
        "#SBATCH --output=/h/j/slurm-%j.out",
    ]


def test_the_allow_list_holds_no_option_genius_sets() -> None:
    own = {"output", "error", "input", "chdir", "wrap", "export", "export-file", "parsable", "job-name",
           "open-mode", "uid", "gid", "clusters", "wait", "test-only"}  # fmt: skip
    assert not own & set(EXTRA_DIRECTIVES)
    assert set(EXTRA_DIRECTIVES.values()) == {"flag", "either", "value"}


@pytest.mark.parametrize("name", ["GENIUS_STATE_PASSWORD", "GENIUS_TASK_SPEC"])
def test_env_may_not_set_the_names_genius_sets_itself(name: str) -> None:
    with pytest.raises(SlurmOptionError) as refused:
        SlurmJobOptions(env={name: "evil"})
    assert str(refused.value).startswith(f"env: {name!r} is reserved: genius sets it itself")
    assert "evil" not in str(refused.value)


PYXIS_OWN = "is refused: only Pyxis' own --container-… options are allowed"
REFUSED_CONTAINERS: list[tuple[dict[str, Any], str]] = [
    ({"image": "x", "runtime": "docker"}, "container runtime must be one of podman, apptainer, singularity, pyxis"),
    ({"image": "img x", "runtime": "pyxis"}, f"container image 'img x' {ONE_WORD}"),
    ({"image": "img\ntouch_x", "runtime": "pyxis"}, f"container image 'img\\ntouch_x' {ONE_WORD}"),
    # an image the runtime would read as one of its own options
    ({"image": "--container-mounts=/:/host", "runtime": "pyxis"},
     "container image '--container-mounts=/:/host' must not start with '-'"),
    ({"image": "--privileged"}, "container image '--privileged' must not start with '-'"),
    ({"image": "img", "options": "--pull=never"}, "container options must be a list of strings, got '--pull=never'"),
    # Pyxis options: srun would take any srun option, so only Pyxis' own pass
    ({"image": "img", "runtime": "pyxis", "options": ["--output=/elsewhere/x"]},
     f"pyxis option '--output=/elsewhere/x' {PYXIS_OWN}"),
    ({"image": "img", "runtime": "pyxis", "options": ["--export=NONE"]}, f"pyxis option '--export=NONE' {PYXIS_OWN}"),
    ({"image": "img", "runtime": "pyxis", "options": ["-o/elsewhere/x"]}, f"pyxis option '-o/elsewhere/x' {PYXIS_OWN}"),
    ({"image": "img", "runtime": "pyxis", "options": ["--container-mounts=/a b:/b"]},
     f"pyxis option '--container-mounts=/a b:/b' {ONE_WORD}"),
    ({"image": "img", "runtime": "pyxis", "options": ["--container-mounts=/a\n/b"]},
     f"pyxis option '--container-mounts=/a\\n/b' {ONE_WORD}"),
    ({"image": "img", "runtime": "pyxis", "options": ["--container-mounts="]},
     f"pyxis option '--container-mounts=' {PYXIS_OWN}"),
    ({"image": "img", "runtime": "pyxis", "options": [7]}, "pyxis option 7 must be a string like --container-…"),
    *(
        ({"image": "img", "runtime": "pyxis", "options": [f"--{name}=x"]},
         f"pyxis option '--{name}=x' is refused: genius sets --{name} (environment names: use env=)")
        for name in ("container-image", "container-workdir", "container-env")
    ),
]  # fmt: skip


@pytest.mark.parametrize(("container", "expected"), REFUSED_CONTAINERS, ids=repr)
def test_refused_containers_name_the_value(container: dict[str, Any], expected: str) -> None:
    with pytest.raises(SlurmOptionError) as raised:
        SlurmContainer(**container)
    assert str(raised.value) == expected
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("runtime", "job_dir", "unsafe"),
    [
        ("pyxis", "/h/a,b", "','"),
        ("pyxis", "/h/a:b,c", "':' ','"),
        ("pyxis", "/h/a b", "' '"),
        ("pyxis", "/h/a\tb", "'\\t'"),
        ("podman", "/h/a:b", "':'"),
        ("apptainer", "/h/a,b", "','"),
        ("singularity", "/h/a:b", "':'"),
    ],
)
def test_a_job_folder_the_runtime_cannot_mount_is_refused(runtime: str, job_dir: str, unsafe: str) -> None:
    """Mount options split paths: -v and --bind on ':' (--bind also on ','), Pyxis on ':' and ',' and
    then writes an fstab line for enroot (split on whitespace)."""
    options = SlurmJobOptions(container=SlurmContainer(image="img", runtime=runtime))
    with pytest.raises(SlurmOptionError) as raised:
        genius_body(job_dir, options)
    assert (
        str(raised.value)
        == f"job folder {job_dir!r} cannot be mounted by {runtime}: it must not contain {unsafe}"
    )


def test_a_job_folder_with_spaces_is_one_mount_word_for_podman_and_apptainer() -> None:
    podman = genius_body("/h/a b", SlurmJobOptions(container=SlurmContainer(image="img")))[0]
    assert " -v '/h/a b:/h/a b' " in podman
    apptainer = genius_body(
        "/h/a b", SlurmJobOptions(container=SlurmContainer(image="i", runtime="apptainer"))
    )
    assert apptainer[0].startswith("apptainer exec --bind '/h/a b' i genius run")


def test_pyxis_options_of_its_own_render_as_written() -> None:
    own = ["--container-mounts=/scratch:/scratch:ro+rprivate", "--no-container-mount-home",
           "--container-remap-root", "--container-writable", "--container-name=genius:exec"]  # fmt: skip
    options = SlurmJobOptions(container=SlurmContainer(image="img", runtime="pyxis", options=own))
    (line,) = genius_body("/h/j", options)
    assert " --container-env=GENIUS_ATTEMPT,GENIUS_STATE_PASSWORD " + " ".join(own) + " genius run " in line
