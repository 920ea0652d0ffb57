"""Reuse of an fMRIPrep derivative, and the real pumi BOLD run end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fixtures import run_func_wf

from bids_brainage.bids import run_validator
from bids_brainage.compute import hmc


def _fake_fmriprep(run, dest):
    """An fMRIPrep-shaped derivative of the simulated subject: T1w-space preproc BOLD, confounds, xfm.

    The preprocessed BOLD is the workflow's own motion-corrected series carried into the T1w
    (3 mm) grid through its coregistration; the confounds hold the *true* motion, so the test
    can tell fMRIPrep's parameters were used.
    """
    import ants

    work = run["work"] / "func_wf"
    func = dest / "sub-001" / "func"
    func.mkdir(parents=True)
    (dest / "dataset_description.json").write_text(
        json.dumps({"Name": "fMRIPrep", "BIDSVersion": "1.10.0", "DatasetType": "derivative"})
    )
    t1w = ants.image_read(run["anat"]["t1w_brain"])
    ref = ants.resample_image(t1w, (3.0, 3.0, 3.0), use_voxels=False, interp_type=0)
    bold = ants.image_read(str(work / "hmc" / "bold_hmc.nii"))
    xfm = str(work / "coreg" / "from-boldref_to-T1w_xfm.mat")
    moved = ants.apply_transforms(fixed=ref, moving=bold, transformlist=[xfm], imagetype=3)
    moved.to_filename(str(func / "sub-001_task-rest_space-T1w_desc-preproc_bold.nii.gz"))
    # fMRIPrep writes its BOLD->T1w transform as ITK text.
    ants.write_transform(
        ants.read_transform(xfm),
        str(func / "sub-001_task-rest_from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt"),
    )
    truth = run["bids"] / "derivatives/simulation/sub-001/func/sub-001_task-rest_desc-motion_timeseries.tsv"
    motion = pd.read_csv(truth, sep="\t")
    motion.to_csv(func / "sub-001_task-rest_desc-confounds_timeseries.tsv", sep="\t", index=False)
    return motion


def test_fmriprep_outputs_are_reused(simulated_run, tmp_path):
    fmriprep = tmp_path / "fmriprep"
    motion = _fake_fmriprep(simulated_run, fmriprep)
    out = tmp_path / "out"
    bold = simulated_run["bids"] / "sub-001" / "func" / "sub-001_task-rest_bold.nii.gz"
    wf = run_func_wf(
        bold, simulated_run["bids"], out, tmp_path / "work", simulated_run["anat"], "001",
        atlas="Dosenbach160", fmriprep_dir=str(fmriprep),
    )  # fmt: skip
    assert wf.get_node("hmc") is None and wf.get_node("coreg") is None
    func = out / "sub-001" / "func"
    used = pd.read_csv(func / "sub-001_task-rest_desc-motion_timeseries.tsv", sep="\t")
    np.testing.assert_allclose(used[list(hmc.PARAM_NAMES)], motion[list(hmc.PARAM_NAMES)], atol=1e-5)
    feats = pd.read_csv(func / "sub-001_task-rest_desc-functional_features.tsv", sep="\t")
    assert feats.filter(like="fmri__").shape[1] == 160 * 159 // 2
    meta = json.loads((func / "sub-001_task-rest_desc-functional_features.json").read_text())
    assert meta["MotionCorrection"] == "fMRIPrep"
    assert any(s.startswith("bids:fmriprep:") for s in meta["Sources"])
    assert np.isfinite(feats.filter(like="fmri__").to_numpy()).mean() > 0.9


@pytest.fixture
def pumi_anat(pumi_copy, tmp_path):
    """Anatomical inputs for pumi from the app's first-pass brain extraction (template affine).

    The mask is the warped template brain; the tissue maps are the template priors carried
    by the same affine. (A plain template-to-head affine is unstable on this head: with two
    ITK threads it landed on z-scales from 0.46 to 0.51, and the BOLD's ROI coverage varied
    from 192 to 225 ROIs.)
    """
    import ants

    from bids_brainage.compute.anat_ops import TISSUES, initial_brain_mask, template_file

    work = tmp_path / "anat"
    work.mkdir()
    t1w_file = pumi_copy / "sub-001" / "anat" / "sub-001_T1w.nii.gz"
    first_pass = initial_brain_mask(str(t1w_file), str(work), sloppy=True)
    t1w = ants.image_read(str(t1w_file))
    mask = ants.image_read(first_pass["prior"]) > 0.5
    files = {"t1w_mask": work / "mask.nii.gz", "t1w_brain": work / "brain.nii.gz"}
    mask.to_filename(str(files["t1w_mask"]))
    (t1w * mask).to_filename(str(files["t1w_brain"]))
    # The first-pass affine maps the T1w onto the template; the atlas needs the inverse.
    std2anat = str(work / "std2anat.mat")
    ants.write_transform(ants.read_transform(first_pass["affine"]).invert(), std2anat)
    tpms = []
    for name in TISSUES:
        moving = ants.image_read(template_file(name, 2, work))
        moved = ants.apply_transforms(fixed=t1w, moving=moving, transformlist=[std2anat])
        path = work / f"label-{name}_probseg.nii.gz"
        (moved * mask).to_filename(str(path))
        tpms.append(str(path))
    return {
        "t1w_preproc": str(t1w_file), "t1w_brain": str(files["t1w_brain"]), "t1w_mask": str(files["t1w_mask"]),
        "t1w_dseg": str(files["t1w_mask"]), "t1w_tpms": tpms, "std2anat_xfm": [std2anat],
    }  # fmt: skip


def test_real_pumi_bold_runs_through(pumi_copy, pumi_anat, tmp_path):
    """The real 20-volume, 5 mm BOLD: processed end to end; with the default minimum it is excluded."""
    bold = pumi_copy / "sub-001" / "func" / "sub-001_task-rest_bold.nii.gz"
    out = tmp_path / "out"
    run_func_wf(bold, pumi_copy, out, tmp_path / "work", pumi_anat, "001", min_volumes=10)
    func = out / "sub-001" / "func"
    feats = pd.read_csv(func / "sub-001_task-rest_desc-functional_features.tsv", sep="\t")
    values = feats.filter(like="fmri__").to_numpy()
    assert values.shape[1] == 300 * 299 // 2
    qc = json.loads((func / "sub-001_task-rest_desc-functional_qc.json").read_text())
    # The 26-slice, 5 mm run spans 130 mm: ROIs that get no voxel (outside the field of view)
    # are n/a and listed in the QC, the rest are finite. (With this fixture all 300 are in.)
    n_present = 300 - qc["n_rois_missing"]
    assert n_present >= 200
    assert np.isfinite(values).sum() == n_present * (n_present - 1) // 2
    assert qc["n_volumes"] == 20 and qc["excluded"] is False
    assert qc["max_fd"] < 5.0  # a compliant volunteer: HMC did not diverge
    assert len(list((out / "sub-001" / "figures").glob("*.svg"))) == 3
    # The functional derivatives of a real run are valid BIDS (.bidsignore: only kinds without a rule).
    n_errors, _, summary = run_validator(out)
    assert n_errors == 0, summary
