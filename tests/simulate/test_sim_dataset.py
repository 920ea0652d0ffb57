"""The simulated dataset is valid BIDS, complete, and deterministic."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_brainage.simulate import simulate_dataset
from tests.simulate.conftest import TINY


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_validator_reports_no_errors(tiny_dataset: Path) -> None:
    exe = shutil.which("bids-validator-deno")
    if exe is None:
        pytest.fail("bids-validator-deno is not installed (a dependency of bids_brainage: pip install -e .)")
    proc = subprocess.run(
        [exe, "--format", "json", str(tiny_dataset)], capture_output=True, text=True, timeout=300
    )
    report = json.loads(proc.stdout)
    errors = [i for i in report["issues"]["issues"] if i["severity"] == "error"]
    assert errors == [], errors[:5]


def test_layout_and_metadata(tiny_dataset: Path) -> None:
    participants = pd.read_csv(tiny_dataset / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "age", "sex", "site"]
    assert list(participants.participant_id) == ["sub-001", "sub-002", "sub-003"]
    assert set(participants.sex) == {"F", "M"} and set(participants.site) == {"site1", "site2"}
    for sub in participants.participant_id:
        for ses in ("ses-01", "ses-02"):
            anat = tiny_dataset / sub / ses / "anat" / f"{sub}_{ses}_T1w.nii.gz"
            bold = tiny_dataset / sub / ses / "func" / f"{sub}_{ses}_task-rest_bold.nii.gz"
            assert anat.exists() and bold.exists()
            meta = json.loads(bold.with_name(bold.name.replace(".nii.gz", ".json")).read_text())
            assert meta["RepetitionTime"] == 2.0 and meta["TaskName"] == "rest"
            img = nib.load(bold)
            assert img.shape[3] == TINY["n_volumes"] and img.header.get_zooms()[3] == 2.0
        sessions = pd.read_csv(tiny_dataset / sub / f"{sub}_sessions.tsv", sep="\t")
        assert sessions.age.iloc[1] - sessions.age.iloc[0] == pytest.approx(30, abs=6.5)

    truth_root = tiny_dataset / "derivatives" / "simulation"
    truth = pd.read_csv(truth_root / "truth.tsv", sep="\t")
    assert len(truth) == 6
    for col in ("biological_age", "brain_age_gap", "GM_total", "WM_total", "CSF_total", "TIV", "ventricles"):
        assert truth[col].notna().all()
    assert any(c.startswith("GM_L_") for c in truth.columns)
    np.testing.assert_allclose(truth.biological_age - truth.age, truth.brain_age_gap, atol=0.02)
    anat = truth_root / "sub-001" / "ses-01" / "anat"
    for name in (
        "sub-001_ses-01_label-GM_probseg.nii.gz",
        "sub-001_ses-01_desc-brain_mask.nii.gz",
        "sub-001_ses-01_atlas-DK83_dseg.nii.gz",
        "sub-001_ses-01_from-MNI152NLin2009aSym_to-T1w_mode-image_xfm.nii.gz",
    ):
        assert (anat / name).exists() and (anat / name.replace(".nii.gz", ".json")).exists()
    func = truth_root / "sub-001" / "ses-01" / "func"
    motion = pd.read_csv(func / "sub-001_ses-01_task-rest_desc-motion_timeseries.tsv", sep="\t")
    assert list(motion.columns[:6]) == ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    assert len(motion) == TINY["n_volumes"] and (motion.iloc[0, :6] == 0).all()
    relmat = pd.read_csv(func / "sub-001_ses-01_task-rest_atlas-Seitzman300_desc-model_relmat.tsv", sep="\t")
    assert relmat.shape == (300, 300) and np.allclose(np.diag(relmat.to_numpy()), 1)


def test_truth_mask_matches_image(tiny_dataset: Path) -> None:
    """The true brain mask covers the bright tissue of the T1w (a Dice reference must be right)."""
    sub = tiny_dataset / "sub-002" / "ses-01"
    t1w = nib.load(sub / "anat" / "sub-002_ses-01_T1w.nii.gz").get_fdata()
    mask_path = (
        tiny_dataset / "derivatives/simulation/sub-002/ses-01/anat/sub-002_ses-01_desc-brain_mask.nii.gz"
    )
    mask = nib.load(mask_path).get_fdata() > 0
    assert mask.shape == t1w.shape
    truth = pd.read_csv(tiny_dataset / "derivatives/simulation/truth.tsv", sep="\t").iloc[2]
    assert mask.sum() * 4.0**3 == pytest.approx(truth.TIV, rel=0.1)
    wm_level = np.median(t1w[mask])
    assert np.median(t1w[~mask]) < 0.3 * wm_level


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    kwargs = {"n_subjects": 2, "seed": 4, "n_volumes": 10, "resolution": 4.0, "bold_resolution": 4.0}
    first = _hashes(simulate_dataset(tmp_path / "a", **kwargs))
    # A second run in two worker processes must not change a byte.
    second = _hashes(simulate_dataset(tmp_path / "b", n_jobs=2, **kwargs))
    assert first == second
    third = _hashes(simulate_dataset(tmp_path / "c", **{**kwargs, "seed": 5, "n_subjects": 1}))
    assert third["sub-001/anat/sub-001_T1w.nii.gz"] != first["sub-001/anat/sub-001_T1w.nii.gz"]
