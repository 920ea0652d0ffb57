"""The real pipeline through the installed console script on a DataLad-style dataset
(NIfTIs are symlinks into .git/annex/objects): SIGTERM mid-run stops every worker and
leaves no half-written file; the rerun on the same work dir completes with the outputs
of the plain dataset (docs/robustness.md, issue 20.1 and 20.9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from annex_layout import make_annexed_copy
from console import console_script
from pipeline_cohort import FAST_OPTIONS as COMMON
from pipeline_cohort import TRAIN

from bids_brainage.utils.interrupt import descendants

LABEL = TRAIN[2]


@pytest.fixture(scope="module")
def annexed(pipeline_run, tmp_path_factory) -> tuple[Path, Path]:
    """(DataLad-style copy of the simulated dataset, a work dir shared by the tests here)."""
    root = tmp_path_factory.mktemp("datalad")
    links = make_annexed_copy(pipeline_run.bids_dir, root / "ds")
    assert links[f"sub-{LABEL}_T1w.nii.gz"].resolve().name.startswith("MD5E-")
    return root / "ds", root / "work"


def _command(bids_dir: Path, out: Path, work: Path) -> list[str]:
    return [console_script(), str(bids_dir), str(out), "participant", "--participant-label", LABEL,
            "-w", str(work), *COMMON]  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_sigterm_stops_every_worker_and_leaves_no_partial_file(annexed, tmp_path):
    bids_dir, work = annexed
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _command(bids_dir, out, work), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        workers: list[int] = []
        # Signal once some nodes have finished and nipype's workers are running.
        while time.monotonic() < deadline and proc.poll() is None:
            workers = descendants(proc.pid)
            if len(list(work.rglob("result_*.pklz"))) >= 3 and len(workers) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be interrupted"
        workers = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)  # to the main process only, as `kill PID` does
        code = proc.wait(timeout=120)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert code == 128 + signal.SIGTERM, err[-2000:]
    assert "bids_brainage: interrupted by SIGTERM" in err and "Traceback" not in err
    assert [pid for pid in workers if _alive(pid)] == []
    before = _files(out)
    time.sleep(2)
    assert _files(out) == before, "files changed after the run was stopped"
    assert [p for p in out.rglob("*") if ".tmp" in p.name] == []
    assert not (out / "logs" / "participants" / f"sub-{LABEL}.json").exists()


def test_datalad_dataset_runs_like_a_plain_one(annexed, pipeline_run, tmp_path):
    """Resumes the interrupted run's work dir; outputs equal those of the plain dataset."""
    bids_dir, work = annexed
    out = tmp_path / "out"
    proc = subprocess.run(_command(bids_dir, out, work), capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((out / "logs" / "participants" / f"sub-{LABEL}.json").read_text())
    assert status["ok"] and status["outcomes"] == {
        "anat": "ok",
        "bold": {f"sub-{LABEL}_task-rest_bold.nii.gz": "ok"},
    }
    for datatype, desc in (("anat", "structural"), ("func", "functional")):
        name = f"sub-{LABEL}_desc-{desc}_features.tsv" if datatype == "anat" else (
            f"sub-{LABEL}_task-rest_desc-{desc}_features.tsv")  # fmt: skip
        ours = pd.read_csv(out / f"sub-{LABEL}" / datatype / name, sep="\t")
        plain = pd.read_csv(pipeline_run.out_dir / f"sub-{LABEL}" / datatype / name, sep="\t")
        assert list(ours.columns) == list(plain.columns)
        numeric = plain.select_dtypes("number").columns
        np.testing.assert_allclose(ours[numeric].to_numpy(float), plain[numeric].to_numpy(float), rtol=1e-6)
    # Provenance names the BIDS file, not the annex key the symlink points to.
    sidecar = json.loads((out / f"sub-{LABEL}" / "anat" / f"sub-{LABEL}_desc-preproc_T1w.json").read_text())
    assert sidecar["Sources"] == [f"bids:raw:sub-{LABEL}/anat/sub-{LABEL}_T1w.nii.gz"]
    assert "MD5E-" not in "".join(p.name for p in out.rglob("*"))
