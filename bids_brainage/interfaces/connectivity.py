"""Nipype wrappers of the connectivity steps: the atlas into BOLD space and the connectivity
matrix and feature table (:mod:`bids_brainage.compute.connectivity`), censoring and denoising
(:mod:`bids_brainage.compute.denoise`), run QC and exclusion (:mod:`bids_brainage.compute.run_qc`)."""

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

from bids_brainage.compute.connectivity import atlas_to_bold, connectivity_relmat, feature_table
from bids_brainage.compute.denoise import HIGH_PASS, LOW_PASS, denoise_timeseries
from bids_brainage.compute.run_qc import run_qc
from bids_brainage.defaults import (
    CONNECTIVITY_KINDS,
    DEFAULT_FD_THRESHOLD,
    DEFAULT_MAX_SCRUBBED_FRACTION,
    DEFAULT_NUISANCE_REGRESSORS,
    NUISANCE_STRATEGIES,
)


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
    atlas_meta = traits.Dict(desc="sidecar entries: atlas, its source, sphere radius and its derivation")


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


class _DenoiseInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True)
    atlas_file = File(exists=True, mandatory=True)
    atlas_tsv = File(exists=True, mandatory=True)
    confounds = File(exists=True, mandatory=True)
    tr = traits.Float(mandatory=True)
    fd_threshold = traits.Float(DEFAULT_FD_THRESHOLD, usedefault=True)
    nuisance_regressors = traits.Enum(
        DEFAULT_NUISANCE_REGRESSORS, *NUISANCE_STRATEGIES, usedefault=True, desc="--nuisance-regressors"
    )
    high_pass = traits.Float(HIGH_PASS, usedefault=True)
    low_pass = traits.Float(LOW_PASS, usedefault=True)


class _DenoiseOutputSpec(TraitedSpec):
    timeseries = File(desc="denoised ROI time series of the retained volumes (TSV derivative)")
    timeseries_array = File(desc="the same at full precision (.npy)")
    regressors = traits.List(traits.Str, desc="confound columns regressed out")
    n_rois = traits.Int()
    missing_rois = traits.List(traits.Str, desc="ROIs without voxels")
    band_pass_applied = traits.Bool()


class DenoiseTimeseries(SimpleInterface):
    """Censor high-FD volumes and clean the ROI means (``--nuisance-regressors``, band-pass)
    (see :func:`bids_brainage.compute.denoise.denoise_timeseries`)."""

    input_spec = _DenoiseInputSpec
    output_spec = _DenoiseOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        self._results.update(
            denoise_timeseries(
                i.bold, i.atlas_file, i.atlas_tsv, i.confounds, i.tr, runtime.cwd,
                fd_threshold=i.fd_threshold, strategy=i.nuisance_regressors, high_pass=i.high_pass,
                low_pass=i.low_pass,
            )
        )  # fmt: skip
        return runtime


class _ConnectivityInputSpec(BaseInterfaceInputSpec):
    timeseries_array = File(exists=True, mandatory=True, desc="denoised time series (.npy)")
    atlas_tsv = File(exists=True, mandatory=True)
    kind = traits.Enum(*CONNECTIVITY_KINDS, usedefault=True)


class _ConnectivityOutputSpec(TraitedSpec):
    relmat = File(desc="connectivity matrix TSV (derivative: r, diagonal 1, Node column)")
    relmat_array = File(desc="the same at full precision (.npy)")


class ConnectivityMatrix(SimpleInterface):
    """ROI x ROI connectivity as estimated (see :func:`bids_brainage.compute.connectivity.connectivity_relmat`)."""

    input_spec = _ConnectivityInputSpec
    output_spec = _ConnectivityOutputSpec

    def _run_interface(self, runtime):
        self._results.update(
            connectivity_relmat(
                self.inputs.timeseries_array, self.inputs.atlas_tsv, self.inputs.kind, runtime.cwd
            )
        )
        return runtime


class _RunQCInputSpec(BaseInterfaceInputSpec):
    confounds = File(exists=True, mandatory=True)
    n_rois = traits.Int(mandatory=True)
    missing_rois = traits.List(traits.Str, desc="ROIs without voxels (from the denoising step)")
    band_pass_applied = traits.Bool(True, usedefault=True)
    tsnr = traits.Float(desc="median tSNR (from the confounds step)")
    fd_threshold = traits.Float(DEFAULT_FD_THRESHOLD, usedefault=True)
    max_scrubbed_fraction = traits.Float(DEFAULT_MAX_SCRUBBED_FRACTION, usedefault=True)
    min_volumes = traits.Int(mandatory=True, desc="fewest retained volumes (--min-time over the TR)")
    dummy_scans = traits.Int(0, usedefault=True)
    repetition_time = traits.Float(desc="TR (s): the exclusion reason then says seconds too")


class _RunQCOutputSpec(TraitedSpec):
    qc_tsv = File()
    qc_json = File()
    outliers = File(desc="censoring mask, XCP-D outliers.tsv (1 = censored)")
    outliers_json = File(desc="its sidecar")
    qc = traits.Dict(desc="the QC numbers (the features sidecar's QC block)")
    excluded = traits.Bool()
    exclusion_reason = traits.Str()


class RunQC(SimpleInterface):
    """Run QC and the exclusion rule (see :func:`bids_brainage.compute.run_qc.run_qc`)."""

    input_spec = _RunQCInputSpec
    output_spec = _RunQCOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        missing = list(i.missing_rois) if isdefined(i.missing_rois) else []
        self._results.update(
            run_qc(
                i.confounds, runtime.cwd, n_rois=i.n_rois, missing_rois=missing,
                band_pass_applied=i.band_pass_applied, fd_threshold=i.fd_threshold,
                max_scrubbed_fraction=i.max_scrubbed_fraction, min_volumes=i.min_volumes,
                dummy_scans=i.dummy_scans, tsnr=_optional(i.tsnr),
                repetition_time=_optional(i.repetition_time),
            )
        )  # fmt: skip
        return runtime


class _FeaturesInputSpec(BaseInterfaceInputSpec):
    relmat_array = File(
        exists=True, mandatory=True, desc="connectivity matrix (.npy, r; features are its Fisher z)"
    )
    atlas_tsv = File(exists=True, mandatory=True)
    participant_id = traits.Str(mandatory=True)
    session_id = traits.Str(desc="ses-Y when sessions exist")
    excluded = traits.Bool(mandatory=True)
    qc = traits.Dict(mandatory=True, desc="QC numbers of the run")
    regressors = traits.List(traits.Str, mandatory=True)
    kind = traits.Enum(*CONNECTIVITY_KINDS, usedefault=True)
    sphere_radius_mm = traits.Float(0.0, usedefault=True, desc="sphere radius used (0: label atlas)")
    fd_threshold = traits.Float(DEFAULT_FD_THRESHOLD, usedefault=True)
    high_pass = traits.Float(HIGH_PASS, usedefault=True)
    low_pass = traits.Float(LOW_PASS, usedefault=True)
    extra_meta = traits.Dict(desc="provenance added to the features sidecar")
    atlas_meta = traits.Dict(desc="atlas, source and sphere radius (from atlas_to_bold)")


class _FeaturesOutputSpec(TraitedSpec):
    features_tsv = File()
    features_json = File()


class FunctionalFeatures(SimpleInterface):
    """The run's feature table (see :func:`bids_brainage.compute.connectivity.feature_table`)."""

    input_spec = _FeaturesInputSpec
    output_spec = _FeaturesOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        self._results.update(
            feature_table(
                i.relmat_array, i.atlas_tsv, runtime.cwd, i.participant_id, excluded=i.excluded,
                qc=i.qc, kind=i.kind, regressors=list(i.regressors), high_pass=i.high_pass,
                low_pass=i.low_pass, fd_threshold=i.fd_threshold, sphere_radius_mm=i.sphere_radius_mm,
                session_id=_optional(i.session_id), extra_meta=_optional(i.extra_meta),
                atlas_meta=_optional(i.atlas_meta),
            )
        )  # fmt: skip
        return runtime
