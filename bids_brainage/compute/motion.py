"""Head-motion correction of a BOLD file: :mod:`bids_brainage.compute.hmc` applied to the
image, with its outputs written as files (no nipype; wrapped by :mod:`bids_brainage.interfaces.motion`)."""

from __future__ import annotations

import os
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from bids_brainage.compute import hmc


def correct_motion(in_file: str, passes: int, out_dir: str) -> dict[str, Any]:
    """Estimate six rigid parameters per volume and resample the series once.

    See :func:`bids_brainage.compute.hmc.realign` for the method. Parameters follow fMRIPrep's
    confound conventions (translations in mm, rotations in radians, relative to the first
    volume's head position). Writes in ``out_dir`` the corrected BOLD, its mean (boldref), the
    head mask, the motion table (with FD) and the per-volume ITK transforms; returns their paths.
    """
    img = nib.load(in_file)
    data = np.asarray(img.dataobj, dtype=np.float32)
    result = hmc.realign(data, img.affine, passes=passes)
    # Resample only near the head: the rest of an EPI field of view is air.
    near = ndimage.binary_dilation(result.mask, iterations=2)
    corrected = hmc.resample(data, img.affine, result.matrices, within=near)
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    out_file = os.path.join(out_dir, "bold_hmc.nii")
    nib.Nifti1Image(corrected, img.affine, header).to_filename(out_file)
    ref_hdr = nib.Nifti1Header()
    ref_hdr.set_xyzt_units("mm")
    boldref = os.path.join(out_dir, "boldref.nii.gz")
    nib.Nifti1Image(corrected.mean(-1), img.affine, ref_hdr).to_filename(boldref)
    mask_file = os.path.join(out_dir, "bold_mask.nii")
    nib.Nifti1Image(result.mask.astype(np.uint8), img.affine, ref_hdr).to_filename(mask_file)
    motion = pd.DataFrame(result.params, columns=list(hmc.PARAM_NAMES))
    motion["framewise_displacement"] = hmc.framewise_displacement(result.params)
    motion_tsv = os.path.join(out_dir, "motion.tsv")
    motion.to_csv(motion_tsv, sep="\t", index=False, float_format="%.6g", na_rep="n/a")
    xfm_file = os.path.join(out_dir, "hmc_xfm.txt")
    with open(xfm_file, "w") as fh:
        fh.write(hmc.itk_transform_text(result.matrices))
    return dict(
        out_file=out_file, boldref=boldref, bold_mask=mask_file, motion_tsv=motion_tsv, xfm_file=xfm_file
    )
