"""Nipype interfaces of the anatomical workflow (thin wrappers of :mod:`bids_brainage.compute.anat_ops`).

Every interface writes into its node directory, so nipype caches each step in the work
directory and a rerun with the same inputs does nothing. Interfaces that call ITK take
``omp_nthreads`` and set ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` before working.
"""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_brainage.compute import anat_ops
from bids_brainage.compute.anat_ops import check_t1w

__all__ = [
    "AnatReportlets",
    "AtroposSegmentation",
    "InitialBrainMask",
    "ModulatedGM",
    "N4BiasFieldCorrection",
    "RegisterToTemplate",
    "StructuralFeatures",
    "ValidateT1w",
    "check_t1w",
]


class _ThreadsInputSpec(BaseInterfaceInputSpec):
    sloppy = traits.Bool(False, usedefault=True, desc="fewer iterations (tests and demos)")
    omp_nthreads = traits.Int(1, usedefault=True, desc="ITK threads")


class _ValidateT1wInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw T1w")


class _ValidateT1wOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="float32 T1w reoriented to RAS")


class ValidateT1w(SimpleInterface):
    """Refuse an unusable T1w with a one-line :class:`~bids_brainage.errors.InputError`."""

    input_spec = _ValidateT1wInputSpec
    output_spec = _ValidateT1wOutputSpec

    def _run_interface(self, runtime):
        img = check_t1w(self.inputs.in_file)
        out = Path(runtime.cwd) / "t1w_valid.nii.gz"
        nib.save(img, str(out))
        self._results["out_file"] = str(out)
        return runtime


class _N4InputSpec(_ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True)


class _N4OutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected T1w, head 99th percentile = 1000")


class N4BiasFieldCorrection(SimpleInterface):
    """N4 bias-field correction (see :func:`bids_brainage.compute.anat_ops.n4_correct`)."""

    input_spec = _N4InputSpec
    output_spec = _N4OutputSpec

    def _run_interface(self, runtime):
        anat_ops.set_itk_threads(self.inputs.omp_nthreads)
        out = str(Path(runtime.cwd) / "t1w_n4.nii.gz")
        self._results["out_file"] = anat_ops.n4_correct(self.inputs.in_file, out)
        return runtime


class _InitialBrainMaskInputSpec(_N4InputSpec):
    random_seed = traits.Int(0, usedefault=True, desc="the app's --random-seed (registration sampling)")


class _InitialBrainMaskOutputSpec(TraitedSpec):
    out_prior = File(exists=True, desc="template brain mask (probability) in T1w space")
    out_affine = File(exists=True, desc="T1w-to-template affine (ANTs .mat)")


class InitialBrainMask(SimpleInterface):
    """First pass of the brain extraction (see :func:`bids_brainage.compute.anat_ops.initial_brain_mask`)."""

    input_spec = _InitialBrainMaskInputSpec
    output_spec = _InitialBrainMaskOutputSpec

    def _run_interface(self, runtime):
        anat_ops.set_itk_threads(self.inputs.omp_nthreads)
        res = anat_ops.initial_brain_mask(
            self.inputs.in_file, runtime.cwd, self.inputs.sloppy, random_seed=self.inputs.random_seed
        )
        self._results.update(out_prior=res["prior"], out_affine=res["affine"])
        return runtime


class _RegisterInputSpec(_ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    in_prior = File(exists=True, mandatory=True, desc="first-pass brain probability")
    init_affine = File(exists=True, mandatory=True, desc="first-pass affine")
    resolution = traits.Enum(1, 2, usedefault=True, desc="template resolution (mm)")
    random_seed = traits.Int(0, usedefault=True, desc="the app's --random-seed (registration sampling)")


class _RegisterOutputSpec(TraitedSpec):
    anat2std_xfm = traits.List(File(exists=True), desc="T1w→MNI composite transform")
    std2anat_xfm = traits.List(File(exists=True), desc="MNI→T1w composite transform")
    std_t1w = File(exists=True, desc="T1w resampled to the template")
    out_priors = traits.List(File(exists=True), desc="GM, WM, CSF template priors in T1w space")
    out_brain_prior = File(exists=True, desc="template brain mask (probability) in T1w space")


class RegisterToTemplate(SimpleInterface):
    """T1w brain → MNI152NLin2009aSym, SyN from the first-pass affine (see :func:`bids_brainage.compute.anat_ops.register_to_template`)."""

    input_spec = _RegisterInputSpec
    output_spec = _RegisterOutputSpec

    def _run_interface(self, runtime):
        anat_ops.set_itk_threads(self.inputs.omp_nthreads)
        res = anat_ops.register_to_template(
            self.inputs.in_file,
            self.inputs.in_prior,
            self.inputs.init_affine,
            int(self.inputs.resolution),
            self.inputs.sloppy,
            runtime.cwd,
            random_seed=self.inputs.random_seed,
        )
        self._results.update(
            anat2std_xfm=res["anat2std"],
            std2anat_xfm=res["std2anat"],
            std_t1w=res["std_t1w"],
            out_priors=res["priors"],
            out_brain_prior=res["brain_prior"],
        )
        return runtime


class _AtroposInputSpec(_ThreadsInputSpec):
    in_file = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    in_prior = File(exists=True, mandatory=True, desc="template brain probability in T1w space")
    priors = InputMultiObject(File(exists=True), mandatory=True, desc="GM, WM, CSF priors")


class _AtroposOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="refined brain mask")
    out_brain = File(exists=True, desc="skull-stripped T1w")
    out_dseg = File(exists=True, desc="1 GM, 2 WM, 3 CSF")
    out_tpms = traits.List(File(exists=True), desc="GM, WM, CSF probabilities")


class AtroposSegmentation(SimpleInterface):
    """Atropos three-class segmentation and brain-mask refinement (see :func:`bids_brainage.compute.anat_ops.segment`)."""

    input_spec = _AtroposInputSpec
    output_spec = _AtroposOutputSpec

    def _run_interface(self, runtime):
        anat_ops.set_itk_threads(self.inputs.omp_nthreads)
        res = anat_ops.segment(
            self.inputs.in_file,
            self.inputs.in_prior,
            list(self.inputs.priors),
            self.inputs.sloppy,
            runtime.cwd,
        )
        self._results.update(
            out_mask=res["mask"], out_brain=res["brain"], out_dseg=res["dseg"], out_tpms=res["tpms"]
        )
        return runtime


class _ModulatedGMInputSpec(_ThreadsInputSpec):
    in_gm = File(exists=True, mandatory=True, desc="GM probability in T1w space")
    in_t1w = File(exists=True, mandatory=True, desc="any image on the T1w grid")
    anat2std_xfm = InputMultiObject(File(exists=True), mandatory=True)
    resolution = traits.Enum(1, 2, usedefault=True)


class _ModulatedGMOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="Jacobian-modulated GM in template space")
    out_jacobian = File(exists=True, desc="Jacobian determinant (template→T1w) on the template grid")


class ModulatedGM(SimpleInterface):
    """Jacobian-modulated GM in MNI space (see :func:`bids_brainage.compute.anat_ops.modulate_gm`)."""

    input_spec = _ModulatedGMInputSpec
    output_spec = _ModulatedGMOutputSpec

    def _run_interface(self, runtime):
        anat_ops.set_itk_threads(self.inputs.omp_nthreads)
        xfm = list(self.inputs.anat2std_xfm)
        jac = anat_ops.jacobian_determinant(xfm, self.inputs.in_t1w, int(self.inputs.resolution), runtime.cwd)
        self._results["out_jacobian"] = jac
        self._results["out_file"] = anat_ops.modulate_gm(self.inputs.in_gm, xfm, jac, runtime.cwd)
        return runtime


class _FeaturesInputSpec(_ThreadsInputSpec):
    in_tpms = InputMultiObject(File(exists=True), mandatory=True, desc="GM, WM, CSF in T1w space")
    in_mask = File(exists=True, mandatory=True)
    in_modulated = File(exists=True, mandatory=True, desc="modulated GM in template space")
    in_dseg = File(exists=True, mandatory=True)
    std2anat_xfm = InputMultiObject(File(exists=True), mandatory=True)
    in_t1w = File(exists=True, mandatory=True, desc="bias-corrected T1w (for the segmentation QC)")
    in_priors = InputMultiObject(
        File(exists=True), mandatory=True, desc="GM, WM, CSF template priors in T1w space (for the QC)"
    )
    subject = traits.Str(mandatory=True)
    session = traits.Either(None, traits.Str, default=None, usedefault=True)
    atlas = traits.Either(None, traits.Dict, default=None, usedefault=True, desc="user atlas")
    thickness = traits.Bool(False, usedefault=True, desc="add regional KellyKapowski thickness")


class _FeaturesOutputSpec(TraitedSpec):
    out_tsv = File(exists=True, desc="one-row feature table")
    out_metadata = traits.Dict(desc="sidecar content (columns, units, atlases)")


class StructuralFeatures(SimpleInterface):
    """Global volumes and regional GM (and thickness) (see :mod:`bids_brainage.compute.anat_features`), and the
    segmentation QC (:func:`bids_brainage.compute.anat_ops.segmentation_qc`) in the sidecar's ``QC``."""

    input_spec = _FeaturesInputSpec
    output_spec = _FeaturesOutputSpec

    def _run_interface(self, runtime):
        from bids_brainage.compute import anat_features

        anat_ops.set_itk_threads(self.inputs.omp_nthreads)
        table, meta = anat_features.structural_features(
            tpms=list(self.inputs.in_tpms),
            mask=self.inputs.in_mask,
            modulated_gm=self.inputs.in_modulated,
            dseg=self.inputs.in_dseg,
            std2anat=list(self.inputs.std2anat_xfm),
            subject=self.inputs.subject,
            session=self.inputs.session,
            atlas=self.inputs.atlas,
            thickness=self.inputs.thickness,
            sloppy=self.inputs.sloppy,
            work_dir=runtime.cwd,
        )
        qc = anat_ops.segmentation_qc(
            self.inputs.in_t1w,
            self.inputs.in_mask,
            self.inputs.in_dseg,
            list(self.inputs.in_tpms),
            list(self.inputs.in_priors),
        )
        meta["QC"] = {
            "excluded": qc["failed"],
            "exclusion_reason": "; ".join(qc["reasons"]),
            **{k: _finite(v) for k, v in qc.items() if k not in ("failed", "reasons")},
            "Description": "automatic segmentation QC (docs/anatomical.md); a run with excluded = true "
            "is kept out of the model by the group level",
        }
        out = Path(runtime.cwd) / "structural_features.tsv"
        table.to_csv(out, sep="\t", index=False, na_rep="n/a")
        self._results.update(out_tsv=str(out), out_metadata=meta)
        return runtime


def _finite(value):
    """QC numbers for a JSON sidecar: NaN (an empty class) becomes null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return None if isinstance(value, float) and not math.isfinite(value) else value


class _ReportletsInputSpec(BaseInterfaceInputSpec):
    in_t1w = File(exists=True, mandatory=True, desc="bias-corrected T1w")
    in_mask = File(exists=True, mandatory=True)
    in_dseg = File(exists=True, mandatory=True)
    std_t1w = File(exists=True, mandatory=True, desc="T1w in template space")
    resolution = traits.Enum(1, 2, usedefault=True)
    label = traits.Str("participant", usedefault=True)


class _ReportletsOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="brain-mask contour on the T1w")
    out_dseg = File(exists=True, desc="GM/WM/CSF contours on the T1w")
    out_registration = File(exists=True, desc="before/after fade, T1w in MNI vs template")


class AnatReportlets(SimpleInterface):
    """The three anatomical SVG reportlets (see :mod:`bids_brainage.reports.anatomical`)."""

    input_spec = _ReportletsInputSpec
    output_spec = _ReportletsOutputSpec

    def _run_interface(self, runtime):
        from bids_brainage.reports import anatomical as rep

        cwd = Path(runtime.cwd)
        self._results["out_mask"] = str(
            rep.plot_brain_mask(self.inputs.in_t1w, self.inputs.in_mask, cwd / "mask.svg")
        )
        self._results["out_dseg"] = str(
            rep.plot_segmentation(self.inputs.in_t1w, self.inputs.in_dseg, cwd / "dseg.svg")
        )
        self._results["out_registration"] = str(
            rep.plot_registration(
                self.inputs.std_t1w, int(self.inputs.resolution), cwd / "reg.svg", label=self.inputs.label
            )
        )
        return runtime
