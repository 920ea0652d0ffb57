"""Anatomical inputs for the functional workflow from a simulated dataset's truth (no anat_wf
run), and a runner of the functional workflow alone."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np


def anat_inputs_from_truth(bids_dir: Path, subject: str, work: Path) -> dict:
    """The anatomical workflow's outputnode contract, filled from ``derivatives/simulation``.

    The true tissue maps, brain mask and MNI->T1w displacement field stand in for N4,
    brain extraction, Atropos and SyN, so the functional tests take seconds, not minutes.
    """
    truth = Path(bids_dir) / "derivatives" / "simulation" / f"sub-{subject}" / "anat"
    t1w = Path(bids_dir) / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
    work.mkdir(parents=True, exist_ok=True)
    img = nib.load(t1w)
    mask = nib.load(truth / f"sub-{subject}_desc-brain_mask.nii.gz")
    brain = np.asarray(img.dataobj, np.float32) * (np.asarray(mask.dataobj) > 0)
    brain_file = work / f"sub-{subject}_desc-brain_T1w.nii.gz"
    nib.Nifti1Image(brain, img.affine).to_filename(brain_file)
    tpms = [str(truth / f"sub-{subject}_label-{t}_probseg.nii.gz") for t in ("GM", "WM", "CSF")]
    probs = np.stack([np.asarray(nib.load(t).dataobj) for t in tpms])
    dseg = np.where(probs.sum(0) > 0.5, 1 + probs.argmax(0), 0).astype(np.uint8)
    dseg_file = work / f"sub-{subject}_dseg.nii.gz"
    nib.Nifti1Image(dseg, img.affine).to_filename(dseg_file)
    return {
        "t1w_preproc": str(t1w),
        "t1w_brain": str(brain_file),
        "t1w_mask": str(truth / f"sub-{subject}_desc-brain_mask.nii.gz"),
        "t1w_dseg": str(dseg_file),
        "t1w_tpms": tpms,
        "std2anat_xfm": [str(truth / f"sub-{subject}_from-MNI152NLin2009aSym_to-T1w_mode-image_xfm.nii.gz")],
    }


def run_func_wf(bold_file, bids_root, out_dir, work_dir, anat, subject, **kwargs):
    """Build and run :func:`init_func_wf` with the anatomical inputs ``anat``; return the workflow."""
    from bids_brainage.derivatives import init_derivatives
    from bids_brainage.workflows.functional import init_func_wf

    init_derivatives(out_dir, bids_root)
    wf = init_func_wf(
        bold_file=str(bold_file), output_dir=str(out_dir), subject=subject, session=None,
        bids_root=str(bids_root), sloppy=True, omp_nthreads=1, **kwargs,
    )  # fmt: skip
    for key, value in anat.items():
        setattr(wf.inputs.inputnode, key, value)
    wf.base_dir = str(work_dir)
    wf.config["execution"]["crashfile_format"] = "txt"
    wf.config["execution"]["crashdump_dir"] = str(work_dir)
    wf.run()
    return wf
