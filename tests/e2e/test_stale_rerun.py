"""A rerun that fails must not leave the group level with the subject's old features
(issue 20.4): the real participant level, then the group level, through the console script."""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
from console import console_script
from pipeline_cohort import FAST_OPTIONS as COMMON
from pipeline_cohort import TRAIN

STALE = TRAIN[1]


def test_failed_rerun_leaves_the_subject_out_of_the_group_level(pipeline_run, tmp_path):
    bids_dir, out, work = tmp_path / "bids", tmp_path / "out", tmp_path / "work"
    shutil.copytree(pipeline_run.bids_dir, bids_dir)
    shutil.copytree(pipeline_run.out_dir, out, ignore=shutil.ignore_patterns("brainage.*"))
    t1w = bids_dir / f"sub-{STALE}" / "anat" / f"sub-{STALE}_T1w.nii.gz"
    img = nib.load(t1w)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine), t1w)
    script = console_script()
    rerun = subprocess.run([script, str(bids_dir), str(out), "participant", "--participant-label", STALE,
                            "-w", str(work), *COMMON], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert rerun.returncode == 1 and f"sub-{STALE}_T1w.nii.gz: is empty" in rerun.stderr
    status = json.loads((out / "logs" / "participants" / f"sub-{STALE}.json").read_text())
    assert status["outcomes"]["anat"] == "failed"
    # The old features are still on disk: the group level must not use them.
    assert (out / f"sub-{STALE}" / "anat" / f"sub-{STALE}_desc-structural_features.tsv").exists()
    # Two subjects keep the run short (the group level rebuilds their reports).
    other = TRAIN[0]
    group = subprocess.run([script, str(bids_dir), str(out), "group", "-w", str(work), "--model",
                            str(pipeline_run.out_dir / "model"), "--participant-label", other, STALE, *COMMON],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert group.returncode == 0, group.stderr[-2000:]
    assert f"sub-{STALE} (its latest participant run failed: " in group.stderr
    assert list(pd.read_csv(out / "brainage.tsv", sep="\t")["participant_id"]) == [f"sub-{other}"]
