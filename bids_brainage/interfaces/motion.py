"""Nipype wrapper of :func:`bids_brainage.compute.motion.correct_motion` (fast rigid head-motion correction)."""

from __future__ import annotations

from nipype.interfaces.base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits

from bids_brainage.compute.motion import correct_motion


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
    """Estimate six rigid parameters per volume and resample the series once
    (see :func:`bids_brainage.compute.motion.correct_motion`)."""

    input_spec = _HMCInputSpec
    output_spec = _HMCOutputSpec

    def _run_interface(self, runtime):
        self._results.update(correct_motion(self.inputs.in_file, self.inputs.passes, runtime.cwd))
        return runtime
