"""Helpers for the SLURM tests: find SLURM, wait for jobs with a bound, read job states.

SLURM comes from ``.ci/setup_slurm.sh`` (run by ``.ci/setup_tests.sh``, the first step of the README's test command). Without ``sbatch`` the
tests fail with a message saying how to start a cluster; they never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SLURM_DIR = PROJECT_ROOT / "workflows" / "slurm"
# The app as a local install: the interpreter running pytest (its virtual environment).
# The installed console script of this environment, as docs/hpc.md sets BIDS_BRAINAGE_CMD.
LOCAL_CMD = str(Path(sys.executable).with_name("bids_brainage"))
NO_SLURM = (
    "SLURM is not available ({why}). The HPC tests need a running cluster: "
    "run `sudo bash .ci/setup_slurm.sh` (single node on localhost; the README's test command runs it through .ci/setup_tests.sh)."
)


def require_slurm() -> None:
    """Fail (not skip) unless sbatch is on PATH and the controller answers."""
    for tool in ("sbatch", "squeue", "scontrol", "sinfo"):
        if shutil.which(tool) is None:
            raise AssertionError(NO_SLURM.format(why=f"'{tool}' is not on PATH"))
    ping = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if ping.returncode != 0 or not ping.stdout.strip():
        raise AssertionError(NO_SLURM.format(why=f"sinfo: {ping.stderr.strip() or 'no nodes'}"))


def slurm_env(**extra: str) -> dict[str, str]:
    """Environment for sbatch and for nipype's SLURM plugin (it needs LOGNAME for job names)."""
    env = dict(os.environ)
    env.setdefault("LOGNAME", env.get("USER") or "ci")
    env.update(extra)
    return env


def wait_for_jobs(job_ids: list[str], timeout_s: float, poll_s: float = 3.0) -> float:
    """Wait until none of ``job_ids`` is queued or running; cancel them and fail after ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        queue = subprocess.run(
            ["squeue", "-h", "-o", "%i %T", "-j", ",".join(job_ids)], capture_output=True, text=True
        )
        if queue.returncode == 0 and not queue.stdout.strip():
            return time.monotonic() - start
        time.sleep(poll_s)
    subprocess.run(["scancel", *job_ids], check=False)
    raise AssertionError(f"SLURM jobs {job_ids} still queued or running after {timeout_s:.0f} s (cancelled)")


def job_states(job_id: str) -> dict[str, tuple[str, str]]:
    """``{task: (state, exit code)}`` of a job (array tasks keyed by index, else ``""``).

    Read from ``scontrol`` (slurmctld keeps finished jobs for MinJobAge seconds), falling
    back to ``sacct`` on clusters with accounting.
    """
    out = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    states = {}
    for line in out.stdout.splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        if "JobState" in fields:
            states[fields.get("ArrayTaskId", "")] = (fields["JobState"], fields.get("ExitCode", ""))
    if states:
        return states
    acct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State,ExitCode"],
        capture_output=True,
        text=True,
    )
    for line in acct.stdout.splitlines():
        jid, state, code = line.split("|")
        states[jid.partition("_")[2]] = (state.split()[0], code)
    return states


def log_tails(folder: Path, lines: int = 25) -> str:
    """The last lines of every log under ``folder`` (for assertion messages)."""
    parts = []
    for log in sorted(folder.rglob("*.log")) + sorted(folder.rglob("slurm-*.out")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log}\n" + "\n".join(text))
    return "\n".join(parts) or f"(no logs under {folder})"
