"""Reuse of fMRIPrep outputs: find a run's files and take its T1w-space BOLD and motion
parameters (no nipype; wrapped by :mod:`bids_brainage.interfaces.functional`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_brainage.bids import data_path
from bids_brainage.compute import hmc
from bids_brainage.compute.hmc import reference_mask


def find_fmriprep_run(
    fmriprep_dir: str | os.PathLike, bold_file: str, bids_root: str | os.PathLike
) -> dict[str, str] | None:
    """fMRIPrep outputs of a raw BOLD run, when all we need are there (else ``None``).

    Needs ``<stem>_space-T1w_desc-preproc_bold.nii.gz``, ``<stem>_desc-confounds_timeseries.tsv``
    and a ``<stem>_from-*_to-T1w_mode-image*_xfm.*`` transform (evidence that the BOLD was
    coregistered); uses ``<stem>_space-T1w_desc-brain_mask.nii.gz`` when present.
    """
    raw = Path(bold_file)
    stem = raw.name.split("_bold.nii")[0]
    try:
        # The link's own folder, not the annex object's (DataLad datasets symlink their files).
        rel = data_path(raw).parent.relative_to(Path(bids_root).resolve())
    except ValueError:
        return None
    func_dir = Path(fmriprep_dir) / rel
    found = {
        "bold": func_dir / f"{stem}_space-T1w_desc-preproc_bold.nii.gz",
        "confounds": func_dir / f"{stem}_desc-confounds_timeseries.tsv",
    }
    if not all(p.exists() for p in found.values()):
        return None
    xfms = sorted(func_dir.glob(f"{stem}_from-*_to-T1w_mode-image*_xfm.*"))
    if not xfms:
        return None
    out = {key: str(p) for key, p in found.items()}
    out["xfm"] = str(xfms[0])
    mask = func_dir / f"{stem}_space-T1w_desc-brain_mask.nii.gz"
    if mask.exists():
        out["mask"] = str(mask)
    return out


def reuse_fmriprep_bold(
    bold: str, confounds: str, mask: str | None, dummy_scans: int, out_dir: str
) -> dict[str, Any]:
    """Take fMRIPrep's T1w-space BOLD and motion parameters instead of redoing HMC +
    coregistration: the BOLD without dummy scans, its mean (boldref), a brain mask (fMRIPrep's
    when given), the motion table and an identity BOLD -> T1w transform, written in ``out_dir``."""
    img = nib.load(bold)
    n_dummy = dummy_scans
    data = np.asarray(img.dataobj, dtype=np.float32)[..., n_dummy:]
    out_file = os.path.join(out_dir, "bold_fmriprep.nii")
    nib.Nifti1Image(data, img.affine, img.header).to_filename(out_file)
    boldref = os.path.join(out_dir, "boldref.nii.gz")
    nib.Nifti1Image(data.mean(-1), img.affine).to_filename(boldref)
    if mask:
        inside = np.asarray(nib.load(mask).dataobj) > 0
    else:
        zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(0))
        inside = reference_mask(data.mean(-1), zooms)
    mask_file = os.path.join(out_dir, "bold_mask.nii")
    nib.Nifti1Image(inside.astype(np.uint8), img.affine).to_filename(mask_file)
    conf = pd.read_csv(confounds, sep="\t").iloc[n_dummy:]
    motion = conf[list(hmc.PARAM_NAMES)].astype(float).reset_index(drop=True)
    motion["framewise_displacement"] = hmc.framewise_displacement(motion.to_numpy())
    motion_tsv = os.path.join(out_dir, "motion.tsv")
    motion.to_csv(motion_tsv, sep="\t", index=False, float_format="%.6g")
    xfm = identity_transform(os.path.join(out_dir, "identity_xfm.mat"))
    return dict(out_file=out_file, boldref=boldref, bold_mask=mask_file, motion_tsv=motion_tsv, xfm=xfm)


def identity_transform(path: str) -> str:
    """Write an identity ANTs/ITK affine transform file and return its path."""
    import ants

    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    ants.write_transform(tx, path)
    return path
