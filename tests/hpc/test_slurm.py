"""Real SLURM runs (marked ``slurm``): a 5-subject participant array plus the dependent group
job through ``workflows/slurm/submit.sh`` (local-install variant), and one subject through
nipype's SLURM plugin with ``--use-plugin workflows/slurm.yml``.

Needs a running SLURM (``.ci/setup_tests.sh``, the first step of the README's test command); without one these tests fail, never skip.
Tiny settings (4 mm, 40 volumes, ``--sloppy``, one CPU per job) keep them within minutes.
Five subjects with 3-fold CV: every training fold then has >= 3 subjects, which the model
needs (with 4 subjects a fold trains on 2 and the group level fails).

Both runs start together (the ``slurm_runs`` fixture) and each test then waits for its own:
on a 2-CPU cluster the array's last task and the one-CPU group job left a CPU idle, and the
plugin run is a chain of short node jobs that mostly waits on sbatch/squeue; queued side by
side, SLURM fills both CPUs. Each run still has its own jobs, folders and assertions.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hpc_helpers import (
    LOCAL_CMD,
    PROJECT_ROOT,
    SLURM_DIR,
    job_states,
    log_tails,
    require_slurm,
    slurm_env,
    wait_for_jobs,
)

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

TIMEOUT_S = float(os.environ.get("BIDS_BRAINAGE_SLURM_TIMEOUT", 900))
# Participant options shared by both tests: sloppy, one process, short BOLD accepted.
PARTICIPANT_OPTS = ["--sloppy", "--nprocs", "1", "--omp-nthreads", "1", "--min-time", "40",
                    "--skip-bids-validation", "--random-seed", "1"]  # fmt: skip
JOB_RESOURCES = "--cpus-per-task=1 --mem=3G --time=00:15:00"
N_SUBJECTS = 5


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, list[str]]:
    """A simulated BIDS dataset of N_SUBJECTS and its subject labels (requested after require_slurm)."""
    bids_dir = tmp_path_factory.mktemp("hpc") / "bids"
    subprocess.run(
        [*LOCAL_CMD.split(), "simulate", str(bids_dir), "--n-subjects", str(N_SUBJECTS), "--resolution", "4",
         "--n-volumes", "40", "--seed", "1"],
        check=True,
    )  # fmt: skip
    with open(bids_dir / "participants.tsv", newline="") as fh:
        labels = [row["participant_id"].removeprefix("sub-") for row in csv.DictReader(fh, delimiter="\t")]
    assert len(labels) == N_SUBJECTS
    return bids_dir, labels


def _features(out_dir: Path, label: str) -> list[Path]:
    return sorted((out_dir / f"sub-{label}").rglob("*features*.tsv"))


ARRAY_TEST = "test_participant_array_then_group_job"
PLUGIN_TEST = "test_one_subject_with_the_nipype_slurm_plugin"


@dataclass
class SlurmRuns:
    """The two runs on the cohort, started by :func:`slurm_runs` (a run whose test is not
    selected is not started: its fields stay None)."""

    bids_dir: Path
    labels: list[str]
    array_out: Path
    array_work: Path
    submit: subprocess.CompletedProcess | None = None
    plugin_out: Path | None = None
    plugin_work: Path | None = None
    plugin_log: Path | None = None
    plugin: subprocess.Popen | None = None
    plugin_started: float = 0.0
    job_ids: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def slurm_runs(request, cohort, tmp_path_factory) -> Iterator[SlurmRuns]:
    """Start the nipype-plugin run (in the background) and submit the array + group jobs,
    without waiting: each test waits for its own run. Requested after require_slurm."""
    bids_dir, labels = cohort
    base = tmp_path_factory.mktemp("slurm_runs")
    runs = SlurmRuns(bids_dir, labels, array_out=base / "array" / "out", array_work=base / "array" / "work")
    selected = {item.name for item in request.session.items}
    if PLUGIN_TEST in selected:
        # Started first: its first node jobs are queued before the array's tasks.
        runs.plugin_out, runs.plugin_work = base / "plugin" / "out", base / "plugin" / "work"
        runs.plugin_log = base / "plugin" / "bids_brainage.log"
        runs.plugin_log.parent.mkdir(parents=True)
        runs.plugin_started = time.monotonic()
        with runs.plugin_log.open("w") as log:  # a file, not a pipe nobody reads while it runs
            runs.plugin = subprocess.Popen(
                [LOCAL_CMD, str(bids_dir), str(runs.plugin_out), "participant",
                 "--participant-label", labels[0], "--use-plugin", str(PROJECT_ROOT / "workflows" / "slurm.yml"),
                 "-w", str(runs.plugin_work), *PARTICIPANT_OPTS],
                env=slurm_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
    if ARRAY_TEST in selected:
        env = slurm_env(
            BIDS_BRAINAGE_CMD=LOCAL_CMD,  # local install instead of singularity
            WORK_ROOT=str(runs.array_work),
            PARTICIPANT_ARGS=JOB_RESOURCES,
            GROUP_ARGS=JOB_RESOURCES,
            GROUP_OPTIONS="--n-folds 3 --skip-bids-validation --random-seed 1",
        )
        runs.submit = subprocess.run(
            ["bash", str(SLURM_DIR / "submit.sh"), str(bids_dir), str(runs.array_out), *PARTICIPANT_OPTS],
            env=env,
            capture_output=True,
            text=True,
        )
        runs.job_ids = re.findall(r"job (\d+)", runs.submit.stdout)
    yield runs
    # A run whose test stopped early (failure, timeout) is not left running.
    if runs.plugin is not None and runs.plugin.poll() is None:
        runs.plugin.kill()
        runs.plugin.wait()
    if runs.job_ids:
        subprocess.run(["scancel", *runs.job_ids], capture_output=True, check=False)


def test_participant_array_then_group_job(request):
    require_slurm()  # a failure, not a skip or a fixture error, when SLURM is missing
    runs = request.getfixturevalue("slurm_runs")
    labels, out_dir, work_root, submit = runs.labels, runs.array_out, runs.array_work, runs.submit
    assert submit.returncode == 0, submit.stdout + submit.stderr
    array_id, group_id = runs.job_ids

    wait_for_jobs([array_id, group_id], TIMEOUT_S)
    logs = out_dir / "logs"
    tasks = job_states(array_id)
    assert sorted(tasks) == [str(i) for i in range(1, N_SUBJECTS + 1)], f"{tasks}\n{log_tails(logs)}"
    assert all(state == ("COMPLETED", "0:0") for state in tasks.values()), f"{tasks}\n{log_tails(logs)}"
    group_logs = "\n".join(p.read_text(errors="replace")[-6000:] for p in sorted(logs.rglob("group_*.log")))
    assert job_states(group_id)[""] == ("COMPLETED", "0:0"), group_logs

    # One SLURM log per task and one for the group job, where submit.sh puts them.
    slurm_logs = logs / "slurm"
    assert len(list(slurm_logs.glob(f"participant_{array_id}_*.log"))) == N_SUBJECTS
    assert (slurm_logs / f"group_{group_id}.log").is_file()
    # Per-subject features, a work dir per subject, and the group table at the root.
    for label in labels:
        assert _features(out_dir, label), f"no features for sub-{label}\n{log_tails(logs)}"
        assert (work_root / f"sub-{label}").is_dir()
    with open(out_dir / "brainage.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert sorted(row["participant_id"].removeprefix("sub-") for row in rows) == sorted(labels)


def test_one_subject_with_the_nipype_slurm_plugin(request):
    require_slurm()
    runs = request.getfixturevalue("slurm_runs")
    out_dir, work_dir, label = runs.plugin_out, runs.plugin_work, runs.labels[0]
    try:  # TIMEOUT_S from the run's start, as when it ran alone
        returncode = runs.plugin.wait(timeout=max(1.0, TIMEOUT_S - (time.monotonic() - runs.plugin_started)))
    except subprocess.TimeoutExpired:
        runs.plugin.kill()
        raise AssertionError(f"the nipype SLURM plugin run took over {TIMEOUT_S:.0f} s") from None
    output = runs.plugin_log.read_text(errors="replace")
    assert returncode == 0, output[-8000:] + log_tails(work_dir)
    assert _features(out_dir, label), log_tails(out_dir / "logs")
    # The nodes really ran as SLURM jobs: nipype leaves one slurm-<jobid>.out per node job.
    node_logs = list(work_dir.rglob("slurm-*.out"))
    assert node_logs, f"no nipype SLURM job logs under {work_dir}"
