"""Nipype wrappers of :mod:`bids_brainage.compute.connectivity`: the atlas into BOLD space,
and denoising, connectivity features and run QC."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_brainage.compute.connectivity import HIGH_PASS, LOW_PASS, atlas_to_bold, connectivity_features
from bids_brainage.defaults import CONNECTIVITY_KINDS, DEFAULT_FD_THRESHOLD


def _optional(value):
    """``None`` for an undefined nipype input."""
    return value if isdefined(value) else None


class _AtlasToBoldInputSpec(BaseInterfaceInputSpec):
    atlas = traits.Str(mandatory=True, desc="atlas name or user NIfTI in MNI152NLin2009aSym")
    boldref = File(exists=True, mandatory=True)
    brain_mask = File(exists=True, mandatory=True, desc="brain mask in the BOLD grid")
    xfm = File(exists=True, mandatory=True, desc="boldref -> T1w (ANTs), inverted here")
    std2anat_xfm = InputMultiObject(File(exists=True), mandatory=True, desc="MNI -> T1w (ANTs)")
    sphere_radius = traits.Float(desc="sphere radius (mm); default max(atlas radius, 2.5 x BOLD voxel)")


class _AtlasToBoldOutputSpec(TraitedSpec):
    atlas_file = File(desc="ROI labels on the BOLD grid (0 = none)")
    atlas_tsv = File(desc="index, name, network")
    atlas_name = traits.Str()
    networks = traits.List(traits.Str)
    radius_mm = traits.Float(desc="sphere radius used (coordinate atlases)")


class AtlasToBold(SimpleInterface):
    """Carry the atlas into BOLD space in one resampling of the atlas
    (see :func:`bids_brainage.compute.connectivity.atlas_to_bold`)."""

    input_spec = _AtlasToBoldInputSpec
    output_spec = _AtlasToBoldOutputSpec

    def _run_interface(self, runtime):
        self._results.update(
            atlas_to_bold(
                self.inputs.atlas, self.inputs.boldref, self.inputs.brain_mask, self.inputs.xfm,
                list(self.inputs.std2anat_xfm), _optional(self.inputs.sphere_radius), runtime.cwd,
            )
        )  # fmt: skip
        return runtime


class _FCInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True)
    atlas_file = File(exists=True, mandatory=True)
    atlas_tsv = File(exists=True, mandatory=True)
    confounds = File(exists=True, mandatory=True)
    tr = traits.Float(mandatory=True)
    tsnr = traits.Float(desc="median tSNR (from the confounds step)")
    kind = traits.Enum(*CONNECTIVITY_KINDS, usedefault=True)
    sphere_radius_mm = traits.Float(0.0, usedefault=True, desc="sphere radius used (0: label atlas)")
    fd_threshold = traits.Float(DEFAULT_FD_THRESHOLD, usedefault=True)
    max_scrubbed_fraction = traits.Float(0.5, usedefault=True)
    min_volumes = traits.Int(50, usedefault=True)
    global_signal = traits.Bool(False, usedefault=True)
    high_pass = traits.Float(HIGH_PASS, usedefault=True)
    low_pass = traits.Float(LOW_PASS, usedefault=True)
    participant_id = traits.Str(mandatory=True)
    session_id = traits.Str(desc="ses-Y when sessions exist")
    dummy_scans = traits.Int(0, usedefault=True)
    extra_meta = traits.Dict(desc="provenance added to the features sidecar")


class _FCOutputSpec(TraitedSpec):
    timeseries = File(desc="denoised ROI time series of the retained volumes")
    relmat = File(desc="connectivity matrix TSV")
    features_tsv = File()
    features_json = File()
    qc_tsv = File()
    qc_json = File()
    excluded = traits.Bool()
    exclusion_reason = traits.Str()


class FunctionalConnectivity(SimpleInterface):
    """Denoise ROI time series (24P + WM + CSF [+ GS], band-pass, scrubbing) and compute
    connectivity (see :func:`bids_brainage.compute.connectivity.connectivity_features`)."""

    input_spec = _FCInputSpec
    output_spec = _FCOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        self._results.update(
            connectivity_features(
                i.bold, i.atlas_file, i.atlas_tsv, i.confounds, i.tr, runtime.cwd, i.participant_id,
                kind=i.kind, sphere_radius_mm=i.sphere_radius_mm, fd_threshold=i.fd_threshold,
                max_scrubbed_fraction=i.max_scrubbed_fraction, min_volumes=i.min_volumes,
                global_signal=i.global_signal, high_pass=i.high_pass, low_pass=i.low_pass,
                dummy_scans=i.dummy_scans, tsnr=_optional(i.tsnr), session_id=_optional(i.session_id),
                extra_meta=_optional(i.extra_meta),
            )
        )  # fmt: skip
        return runtime
