"""Nipype interface around :mod:`bids_brainage.hmc` (fast rigid head-motion correction)."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits
from scipy import ndimage

from bids_brainage import hmc


class _HMCInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="4D BOLD (dummy scans removed)")
    passes = traits.Int(2, usedefault=True, desc="1: to one volume; 2: then to the mean")


class _HMCOutputSpec(TraitedSpec):
    out_file = File(desc="motion-corrected BOLD on the boldref grid")
    boldref = File(desc="mean of the corrected series")
    bold_mask = File(desc="head mask of the boldref (dilated)")
    motion_tsv = File(desc="trans_x..rot_z (mm, rad) and framewise_displacement")
    xfm_file = File(desc="ITK text file, one AffineTransform per volume (boldref -> volume)")


class HeadMotionCorrection(SimpleInterface):
    """Estimate six rigid parameters per volume and resample the series once.

    See :func:`bids_brainage.hmc.realign` for the method. Parameters follow fMRIPrep's
    confound conventions (translations in mm, rotations in radians, relative to the
    first volume's head position).
    """

    input_spec = _HMCInputSpec
    output_spec = _HMCOutputSpec

    def _run_interface(self, runtime):
        img = nib.load(self.inputs.in_file)
        data = np.asarray(img.dataobj, dtype=np.float32)
        result = hmc.realign(data, img.affine, passes=self.inputs.passes)
        # Resample only near the head: the rest of an EPI field of view is air.
        near = ndimage.binary_dilation(result.mask, iterations=2)
        corrected = hmc.resample(data, img.affine, result.matrices, within=near)
        cwd = runtime.cwd
        header = img.header.copy()
        header.set_data_dtype(np.float32)
        out_file = os.path.join(cwd, "bold_hmc.nii")
        nib.Nifti1Image(corrected, img.affine, header).to_filename(out_file)
        ref_hdr = nib.Nifti1Header()
        ref_hdr.set_xyzt_units("mm")
        boldref = os.path.join(cwd, "boldref.nii.gz")
        nib.Nifti1Image(corrected.mean(-1), img.affine, ref_hdr).to_filename(boldref)
        mask_file = os.path.join(cwd, "bold_mask.nii")
        nib.Nifti1Image(result.mask.astype(np.uint8), img.affine, ref_hdr).to_filename(mask_file)
        motion = pd.DataFrame(result.params, columns=list(hmc.PARAM_NAMES))
        motion["framewise_displacement"] = hmc.framewise_displacement(result.params)
        motion_tsv = os.path.join(cwd, "motion.tsv")
        motion.to_csv(motion_tsv, sep="\t", index=False, float_format="%.6g", na_rep="n/a")
        xfm_file = os.path.join(cwd, "hmc_xfm.txt")
        with open(xfm_file, "w") as fh:
            fh.write(hmc.itk_transform_text(result.matrices))
        self._results.update(
            out_file=out_file, boldref=boldref, bold_mask=mask_file, motion_tsv=motion_tsv, xfm_file=xfm_file
        )
        return runtime
