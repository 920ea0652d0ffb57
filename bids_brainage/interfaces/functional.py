"""Nipype wrappers of the BOLD input steps: dummy-scan removal (:mod:`bids_brainage.compute.bold`),
BOLD->T1w coregistration (:mod:`bids_brainage.compute.coregistration`), fMRIPrep reuse
(:mod:`bids_brainage.compute.fmriprep`), and the functional reportlets."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_brainage.compute.bold import drop_dummy_scans
from bids_brainage.compute.coregistration import coregister_bold
from bids_brainage.compute.fmriprep import reuse_fmriprep_bold
from bids_brainage.defaults import DEFAULT_FD_THRESHOLD


class _PrepareBoldInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="a BOLD run that passed validate_bold")
    tr = traits.Float(mandatory=True, desc="RepetitionTime (s), checked by validate_bold")
    dummy_scans = traits.Int(0, usedefault=True)


class _PrepareBoldOutputSpec(TraitedSpec):
    out_file = File(desc="float32 BOLD without the dummy scans")
    tr = traits.Float()
    dummy_scans = traits.Int()
    n_volumes = traits.Int(desc="volumes left")


class PrepareBold(SimpleInterface):
    """Drop the dummy scans of a validated BOLD run (see :func:`bids_brainage.compute.bold.drop_dummy_scans`)."""

    input_spec = _PrepareBoldInputSpec
    output_spec = _PrepareBoldOutputSpec

    def _run_interface(self, runtime):
        self._results.update(
            drop_dummy_scans(self.inputs.in_file, self.inputs.tr, self.inputs.dummy_scans, runtime.cwd)
        )
        return runtime


class _CoregInputSpec(BaseInterfaceInputSpec):
    boldref = File(exists=True, mandatory=True)
    bold_mask = File(exists=True, mandatory=True)
    t1w_brain = File(exists=True, mandatory=True)
    sloppy = traits.Bool(False, usedefault=True)
    omp_nthreads = traits.Int(1, usedefault=True)
    random_seed = traits.Int(0, usedefault=True, desc="the app's --random-seed (registration sampling)")


class _CoregOutputSpec(TraitedSpec):
    xfm = File(
        desc="ANTs rigid transform; apply_transforms(fixed=T1w, moving=boldref, [xfm]) maps BOLD to T1w"
    )
    xfm_txt = File(desc="the same transform as ITK text (the derivative, as fMRIPrep writes it)")
    boldref_t1w = File(desc="boldref resampled into the T1w grid (for the report)")


class BoldT1wCoregistration(SimpleInterface):
    """Rigid BOLD->T1w registration with ANTs (see :func:`bids_brainage.compute.coregistration.coregister_bold`)."""

    input_spec = _CoregInputSpec
    output_spec = _CoregOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        self._results.update(
            coregister_bold(
                i.boldref, i.bold_mask, i.t1w_brain, i.sloppy, i.omp_nthreads, i.random_seed, runtime.cwd
            )
        )
        return runtime


class _FmriprepBoldInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="fMRIPrep space-T1w_desc-preproc_bold")
    confounds = File(exists=True, mandatory=True)
    mask = File(desc="fMRIPrep space-T1w brain mask")
    dummy_scans = traits.Int(0, usedefault=True)


class _FmriprepBoldOutputSpec(TraitedSpec):
    out_file = File()
    boldref = File()
    bold_mask = File()
    motion_tsv = File()
    xfm = File(desc="identity: the BOLD is already in T1w space")


class FmriprepBold(SimpleInterface):
    """Take fMRIPrep's T1w-space BOLD and motion parameters instead of redoing HMC + coregistration
    (see :func:`bids_brainage.compute.fmriprep.reuse_fmriprep_bold`)."""

    input_spec = _FmriprepBoldInputSpec
    output_spec = _FmriprepBoldOutputSpec

    def _run_interface(self, runtime):
        mask = self.inputs.mask if isdefined(self.inputs.mask) and self.inputs.mask else None
        self._results.update(
            reuse_fmriprep_bold(
                self.inputs.bold, self.inputs.confounds, mask, self.inputs.dummy_scans, runtime.cwd
            )
        )
        return runtime


# ----------------------------------------------------------------------------- reportlets
class _FuncReportletsInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="corrected BOLD (boldref grid)")
    bold_mask = File(exists=True, mandatory=True)
    tissue_dseg = File(exists=True, mandatory=True, desc="GM/WM/CSF labels in the BOLD grid (1, 2, 3)")
    confounds = File(exists=True, mandatory=True)
    boldref_t1w = File(exists=True, mandatory=True)
    t1w_brain = File(exists=True, mandatory=True)
    t1w_dseg = File(exists=True, desc="T1w tissue labels (WM = 2): edges of the coregistration flicker")
    connectivity = File(exists=True, mandatory=True, desc="relmat TSV")
    networks = InputMultiObject(traits.Str, desc="network of each ROI")
    fd_threshold = traits.Float(DEFAULT_FD_THRESHOLD, usedefault=True)


class _FuncReportletsOutputSpec(TraitedSpec):
    out_carpet = File(exists=True, desc="carpet plot with FD and DVARS")
    out_coreg = File(exists=True, desc="BOLD->T1w overlay")
    out_connectivity = File(exists=True, desc="network-ordered connectivity matrix")


class FunctionalReportlets(SimpleInterface):
    """Carpet plot with FD/DVARS, BOLD->T1w overlay and the network-ordered connectivity matrix
    (see :mod:`bids_brainage.reports.functional`), drawn in the node's directory; the
    ``ds_report_*`` sinks store them."""

    input_spec = _FuncReportletsInputSpec
    output_spec = _FuncReportletsOutputSpec

    def _run_interface(self, runtime):
        from bids_brainage.reports import functional as rep

        cwd = Path(runtime.cwd)
        i = self.inputs
        self._results["out_carpet"] = str(
            rep.plot_carpet(
                i.bold,
                i.tissue_dseg,
                i.bold_mask,
                i.confounds,
                cwd / "carpet.svg",
                fd_threshold=i.fd_threshold,
            )
        )
        self._results["out_coreg"] = str(
            rep.plot_coregistration(
                i.t1w_brain, i.boldref_t1w, cwd / "coreg.svg", i.t1w_dseg if isdefined(i.t1w_dseg) else None
            )
        )
        self._results["out_connectivity"] = str(
            rep.plot_connectivity(i.connectivity, list(i.networks), cwd / "connectivity.svg")
        )
        return runtime
