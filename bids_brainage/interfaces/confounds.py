"""Nipype wrapper of :func:`bids_brainage.compute.confounds.bold_confounds`."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_brainage.compute.confounds import bold_confounds
from bids_brainage.defaults import DEFAULT_FD_THRESHOLD


class _ConfoundsInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="motion-corrected BOLD")
    bold_mask = File(exists=True, mandatory=True)
    boldref = File(exists=True, mandatory=True)
    motion_tsv = File(exists=True, mandatory=True)
    t1w_tpms = InputMultiObject(File(exists=True), mandatory=True, desc="GM, WM, CSF in T1w space")
    xfm = File(exists=True, mandatory=True, desc="boldref -> T1w transform (ANTs)")
    fd_threshold = traits.Float(
        DEFAULT_FD_THRESHOLD, usedefault=True, desc="FD (mm) above which a volume is censored"
    )


class _ConfoundsOutputSpec(TraitedSpec):
    confounds = File(desc="fMRIPrep-style confounds TSV")
    tissue_dseg = File(desc="1 GM, 2 WM, 3 CSF in the BOLD grid (argmax of the warped maps)")
    brain_mask = File(desc="brain mask in the BOLD grid (GM+WM+CSF >= 0.5)")
    tsnr = traits.Float(desc="median temporal SNR in the brain")


class BoldConfounds(SimpleInterface):
    """The confounds table (fMRIPrep column names) of a corrected BOLD run
    (see :func:`bids_brainage.compute.confounds.bold_confounds`)."""

    input_spec = _ConfoundsInputSpec
    output_spec = _ConfoundsOutputSpec

    def _run_interface(self, runtime):
        self._results.update(
            bold_confounds(
                self.inputs.bold, self.inputs.bold_mask, self.inputs.boldref, self.inputs.motion_tsv,
                list(self.inputs.t1w_tpms), self.inputs.xfm, self.inputs.fd_threshold, runtime.cwd,
            )
        )  # fmt: skip
        return runtime
