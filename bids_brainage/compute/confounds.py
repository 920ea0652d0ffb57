"""Nuisance regressors of a BOLD run: 24 motion parameters, WM/CSF (global) means, FD, DVARS
(no nipype; wrapped by :mod:`bids_brainage.interfaces.confounds`)."""

from __future__ import annotations

import os
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_brainage.compute.hmc import PARAM_NAMES

TISSUE_THRESHOLD = 0.9  # posterior needed for a BOLD voxel to count as "pure" WM/CSF


def expand_motion(motion: pd.DataFrame) -> pd.DataFrame:
    """Friston 24-parameter expansion in fMRIPrep names (first-row derivatives are NaN)."""
    out = {}
    for name in PARAM_NAMES:
        x = motion[name].astype(float)
        d = x.diff()
        out[name] = x
        out[f"{name}_derivative1"] = d
        out[f"{name}_power2"] = x**2
        out[f"{name}_derivative1_power2"] = d**2
    return pd.DataFrame(out)


def dvars(data2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DVARS (Power 2012) and its standardised form (Nichols 2013, robust null expectation).

    ``data2d`` is (voxels, time) already scaled to a grand median of 1000. Returns arrays of
    length T whose first element is NaN.
    """
    diff = np.diff(data2d, axis=1)
    dv = np.sqrt((diff**2).mean(0))
    # Null expectation per voxel: robust SD of the series (IQR/1.349), var of a difference = 2 sd^2.
    q75, q25 = np.percentile(data2d, [75, 25], axis=1)
    sd = (q75 - q25) / 1.349
    expected = np.sqrt(np.mean(2 * sd**2))
    std = dv / expected if expected > 0 else np.full_like(dv, np.nan)
    return np.concatenate([[np.nan], dv]), np.concatenate([[np.nan], std])


def tissue_to_bold(tpms: list[str], boldref: str, xfm: str) -> list[np.ndarray]:
    """T1w probability maps resampled onto the BOLD grid through the inverse coregistration."""
    import ants

    fixed = ants.image_read(boldref)
    out = []
    for tpm in tpms:
        moved = ants.apply_transforms(
            fixed=fixed,
            moving=ants.image_read(tpm),
            transformlist=[xfm],
            whichtoinvert=[True],
            interpolator="linear",
        )
        out.append(np.clip(moved.numpy(), 0, 1))
    return out


def _tissue_mask(prob: np.ndarray, inside: np.ndarray, min_voxels: int = 10) -> np.ndarray:
    mask = (prob >= TISSUE_THRESHOLD) & inside
    if mask.sum() < min_voxels:
        # Thin tissue at 3 mm (CSF in young brains): take the most probable voxels instead.
        vals = np.where(inside, prob, 0)
        thr = np.sort(vals.ravel())[-min_voxels]
        mask = (vals >= thr) & (vals > 0)
    return mask


def motion_outliers(fd: np.ndarray, threshold: float) -> pd.DataFrame:
    """fMRIPrep's ``motion_outlierXX`` spike regressors: one column per volume with FD above
    ``threshold`` (mm), 1 at that volume and 0 elsewhere; no columns when none is censored."""
    flagged = np.flatnonzero(np.nan_to_num(fd, nan=0.0) > threshold)
    columns = {
        f"motion_outlier{k:02d}": (np.arange(len(fd)) == index).astype(int) for k, index in enumerate(flagged)
    }
    return pd.DataFrame(columns, index=range(len(fd)))


def bold_confounds(
    bold: str,
    bold_mask: str,
    boldref: str,
    motion_tsv: str,
    t1w_tpms: list[str],
    xfm: str,
    fd_threshold: float,
    out_dir: str,
) -> dict[str, Any]:
    """The confounds table (fMRIPrep column names) of a corrected BOLD run, written in ``out_dir``.

    Columns: ``trans_x`` ... ``rot_z_derivative1_power2`` (24P), ``white_matter``, ``csf``,
    ``global_signal``, ``framewise_displacement``, ``dvars``, ``std_dvars``, and one
    ``motion_outlierXX`` column per censored volume (1 at that volume, as fMRIPrep writes them;
    FD above ``fd_threshold``, the rule the connectivity step censors by). Which of them
    regress out is decided downstream. Also writes the tissue labels and the brain mask on the
    BOLD grid; returns the three paths and the median temporal SNR in the brain (``tsnr``).
    """
    img = nib.load(bold)
    data = np.asarray(img.dataobj, dtype=np.float32)
    head = np.asarray(nib.load(bold_mask).dataobj) > 0
    gm, wm, csf = tissue_to_bold(list(t1w_tpms), boldref, xfm)
    total = gm + wm + csf
    brain = (total >= 0.5) & head
    if brain.sum() < 50:  # failed coregistration or segmentation: fall back to the EPI mask
        brain = head
    dseg = np.where(brain, 1 + np.argmax(np.stack([gm, wm, csf]), axis=0), 0).astype(np.uint8)
    series = data[brain]  # (V, T)
    # Grand-median scaling to 1000 makes DVARS comparable across runs and scanners.
    scale = 1000.0 / max(float(np.median(series.mean(1))), 1e-6)
    series = series * scale
    motion = pd.read_csv(motion_tsv, sep="\t")
    conf = expand_motion(motion)
    conf["white_matter"] = data[_tissue_mask(wm, brain)].mean(0) * scale
    conf["csf"] = data[_tissue_mask(csf, brain)].mean(0) * scale
    conf["global_signal"] = series.mean(0)
    fd = motion["framewise_displacement"].astype(float).to_numpy().copy()
    fd[0] = np.nan
    conf["framewise_displacement"] = fd
    conf["dvars"], conf["std_dvars"] = dvars(series)
    conf = pd.concat([conf, motion_outliers(fd, fd_threshold)], axis=1)
    mean, sd = series.mean(1), series.std(1)
    tsnr = float(np.median(mean[sd > 0] / sd[sd > 0])) if np.any(sd > 0) else 0.0
    out = os.path.join(out_dir, "confounds.tsv")
    conf.to_csv(out, sep="\t", index=False, float_format="%.6g", na_rep="n/a")
    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm")
    dseg_file = os.path.join(out_dir, "tissue_dseg.nii")
    nib.Nifti1Image(dseg, img.affine, hdr).to_filename(dseg_file)
    brain_file = os.path.join(out_dir, "brain_mask.nii")
    nib.Nifti1Image(brain.astype(np.uint8), img.affine, hdr).to_filename(brain_file)
    return dict(confounds=out, tissue_dseg=dseg_file, brain_mask=brain_file, tsnr=tsnr)


CONFOUNDS_META = {
    "trans_x": {
        "Description": "Translation along x (head motion, relative to the reference volume)",
        "Units": "mm",
    },
    "rot_x": {
        "Description": "Rotation about x (head motion, relative to the reference volume)",
        "Units": "rad",
    },
    "white_matter": {"Description": "Mean signal in white matter (posterior >= 0.9), grand median 1000"},
    "csf": {"Description": "Mean signal in CSF (posterior >= 0.9), grand median 1000"},
    "global_signal": {"Description": "Mean signal in the brain mask, grand median 1000"},
    "framewise_displacement": {
        "Description": "Framewise displacement (Power 2012, 50 mm sphere)",
        "Units": "mm",
    },
    "dvars": {"Description": "RMS of the temporal difference in the brain (Power 2012), grand median 1000"},
    "std_dvars": {"Description": "DVARS divided by its null expectation (Nichols 2013, robust SD)"},
    "motion_outlier00": {
        "Description": "Censored volume (FD above the threshold): 1 at that volume, 0 elsewhere; one "
        "motion_outlierXX column per censored volume, numbered from 00 (fMRIPrep's convention)",
    },
}
