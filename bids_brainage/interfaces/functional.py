"""BOLD input checks, dummy-scan removal, BOLD->T1w coregistration and fMRIPrep reuse."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_brainage.bids import data_path, repetition_time
from bids_brainage.defaults import DEFAULT_FD_THRESHOLD, DUMMY_KEYS
from bids_brainage.errors import InputError
from bids_brainage.interfaces.ants_registration import seeded_registration

MIN_BOLD_VOLUMES = 10  # below this nothing (HMC reference, filtering, correlation) is meaningful


def dummy_scans_from_metadata(meta: dict[str, Any]) -> int:
    """Volumes still to discard according to the sidecar, 0 when it does not say.

    ``NumberOfVolumesDiscardedByScanner``/``...ByUser`` in BIDS describe volumes *already*
    removed from the file; we only honour explicit non-steady-state counts still in the file.
    ``NumberOfVolumesDiscardedByUser`` is accepted for datasets that used it that way.
    """
    for key in DUMMY_KEYS:
        value = meta.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return int(value)
    return 0


def resolve_dummy_scans(meta: dict[str, Any], requested: int | None) -> int:
    """The one rule for dummy scans: ``--dummy-scans`` when given, else the sidecar's count."""
    return dummy_scans_from_metadata(meta) if requested is None else int(requested)


def validate_bold(
    bold_file: str, metadata: dict[str, Any], dummy_scans: int = 0
) -> tuple[nib.Nifti1Image, float]:
    """Load and check a BOLD run; raise :class:`InputError` naming the file otherwise.

    The only check of a BOLD run: it runs once per run, before the subject's workflow is
    built, so a bad run fails alone (the subject goes on without it).
    Checks: readable NIfTI, 4D, finite invertible affine with sane voxel sizes, a
    ``RepetitionTime`` in seconds within the plausible range, a non-negative number of dummy
    scans, at least :data:`MIN_BOLD_VOLUMES` volumes after them, no NaN/inf values.

    Returns
    -------
    img : nibabel image (data not yet loaded), tr : float
    """
    try:
        img = nib.load(bold_file)
    except Exception as err:  # nibabel raises many types for broken files
        raise InputError(bold_file, f"cannot read the BOLD image ({str(err).splitlines()[0]})") from None
    if len(img.shape) != 4 or (len(img.shape) == 4 and img.shape[3] == 1):
        raise InputError(bold_file, f"BOLD must be 4D, got shape {tuple(img.shape)}")
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputError(bold_file, "broken affine (not finite or not invertible)")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    if np.any(zooms < 0.3) or np.any(zooms > 20):
        raise InputError(bold_file, f"broken affine: implausible voxel size {np.round(zooms, 3).tolist()} mm")
    tr = repetition_time(metadata.get("RepetitionTime"), bold_file)
    if dummy_scans < 0:
        raise InputError(bold_file, f"the number of dummy scans must be >= 0, got {dummy_scans}")
    n_usable = img.shape[3] - dummy_scans
    if n_usable < MIN_BOLD_VOLUMES:
        raise InputError(
            bold_file,
            f"too few volumes: {img.shape[3]} ({dummy_scans} dummy), at least {MIN_BOLD_VOLUMES} needed",
        )
    data = np.asanyarray(img.dataobj)
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise InputError(bold_file, "BOLD contains NaN or infinite values")
    return img, tr


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
    """Drop the first ``dummy_scans`` volumes of a validated BOLD run and write it as float32
    with the TR in the header (no checks here: :func:`validate_bold` ran before the build)."""

    input_spec = _PrepareBoldInputSpec
    output_spec = _PrepareBoldOutputSpec

    def _run_interface(self, runtime):
        img = nib.load(self.inputs.in_file)
        n_dummy, tr = self.inputs.dummy_scans, self.inputs.tr
        data = np.asarray(img.dataobj, dtype=np.float32)[..., n_dummy:]
        header = img.header.copy()
        header.set_data_dtype(np.float32)
        header.set_xyzt_units("mm", "sec")
        zooms = list(header.get_zooms()[:3]) + [tr]
        header.set_zooms(zooms)
        out = os.path.join(runtime.cwd, "bold_valid.nii")
        # Pass the affine explicitly and keep sform == qform so every tool sees the same geometry.
        new = nib.Nifti1Image(data, img.affine, header)
        new.set_qform(img.affine, 1)
        new.set_sform(img.affine, 1)
        new.to_filename(out)
        self._results.update(out_file=out, tr=tr, dummy_scans=n_dummy, n_volumes=data.shape[-1])
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
    boldref_t1w = File(desc="boldref resampled into the T1w grid (for the report)")


class BoldT1wCoregistration(SimpleInterface):
    """Rigid BOLD->T1w registration with ANTs (Mattes mutual information, EPI vs T1w brain).

    The T1w brain is resampled to the BOLD voxel size (at least 3 mm) first: a 3 mm EPI carries
    no finer information, and registration then takes seconds.
    """

    input_spec = _CoregInputSpec
    output_spec = _CoregOutputSpec

    def _run_interface(self, runtime):
        import ants

        os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(self.inputs.omp_nthreads))
        t1w = ants.image_read(self.inputs.t1w_brain)
        # A 3 mm EPI carries nothing finer than ~3 mm: register at the BOLD resolution (>= 2 mm).
        bold_vox = max(3.0, float(np.min(ants.image_read(self.inputs.boldref).spacing)))
        fixed = ants.resample_image(t1w, (bold_vox,) * 3, use_voxels=False, interp_type=0)
        bref = ants.image_read(self.inputs.boldref)
        mask = ants.image_read(self.inputs.bold_mask)
        moving = bref * mask
        reg = seeded_registration(
            ants,
            fixed=fixed,
            moving=moving,
            type_of_transform="Rigid",
            aff_metric="mattes",
            aff_iterations=(50, 25) if self.inputs.sloppy else (100, 50),
            aff_shrink_factors=(2, 1),
            aff_smoothing_sigmas=(1, 0),
            aff_sampling=32,
            aff_random_sampling_rate=0.5,
            outprefix=os.path.join(runtime.cwd, "coreg_"),
            random_seed=self.inputs.random_seed,
        )
        xfm = os.path.join(runtime.cwd, "from-boldref_to-T1w_xfm.mat")
        os.replace(reg["fwdtransforms"][0], xfm)
        warped = ants.apply_transforms(fixed=t1w, moving=bref, transformlist=[xfm], interpolator="linear")
        out = os.path.join(runtime.cwd, "boldref_t1w.nii.gz")
        warped.to_filename(out)
        self._results.update(xfm=xfm, boldref_t1w=out)
        return runtime


# ----------------------------------------------------------------------------- fMRIPrep reuse
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
    """Take fMRIPrep's T1w-space BOLD and motion parameters instead of redoing HMC + coregistration."""

    input_spec = _FmriprepBoldInputSpec
    output_spec = _FmriprepBoldOutputSpec

    def _run_interface(self, runtime):
        from bids_brainage import hmc
        from bids_brainage.hmc import reference_mask

        img = nib.load(self.inputs.bold)
        n_dummy = self.inputs.dummy_scans
        data = np.asarray(img.dataobj, dtype=np.float32)[..., n_dummy:]
        cwd = runtime.cwd
        out_file = os.path.join(cwd, "bold_fmriprep.nii")
        nib.Nifti1Image(data, img.affine, img.header).to_filename(out_file)
        boldref = os.path.join(cwd, "boldref.nii.gz")
        nib.Nifti1Image(data.mean(-1), img.affine).to_filename(boldref)
        if isdefined(self.inputs.mask) and self.inputs.mask:
            mask = np.asarray(nib.load(self.inputs.mask).dataobj) > 0
        else:
            zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(0))
            mask = reference_mask(data.mean(-1), zooms)
        mask_file = os.path.join(cwd, "bold_mask.nii")
        nib.Nifti1Image(mask.astype(np.uint8), img.affine).to_filename(mask_file)
        conf = pd.read_csv(self.inputs.confounds, sep="\t").iloc[n_dummy:]
        motion = conf[list(hmc.PARAM_NAMES)].astype(float).reset_index(drop=True)
        motion["framewise_displacement"] = hmc.framewise_displacement(motion.to_numpy())
        motion_tsv = os.path.join(cwd, "motion.tsv")
        motion.to_csv(motion_tsv, sep="\t", index=False, float_format="%.6g")
        self._results.update(out_file=out_file, boldref=boldref, bold_mask=mask_file, motion_tsv=motion_tsv)
        self._results["xfm"] = identity_transform(os.path.join(cwd, "identity_xfm.mat"))
        return runtime


def identity_transform(path: str) -> str:
    """Write an identity ANTs/ITK affine transform file and return its path."""
    import ants

    tx = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    ants.write_transform(tx, path)
    return path


# ----------------------------------------------------------------------------- reportlets
class _FuncReportletsInputSpec(BaseInterfaceInputSpec):
    bold = File(exists=True, mandatory=True, desc="corrected BOLD (boldref grid)")
    bold_mask = File(exists=True, mandatory=True)
    tissue_dseg = File(exists=True, mandatory=True, desc="GM/WM/CSF labels in the BOLD grid (1, 2, 3)")
    confounds = File(exists=True, mandatory=True)
    boldref_t1w = File(exists=True, mandatory=True)
    t1w_brain = File(exists=True, mandatory=True)
    connectivity = File(exists=True, mandatory=True, desc="relmat TSV")
    networks = InputMultiObject(traits.Str, desc="network of each ROI")
    fd_threshold = traits.Float(DEFAULT_FD_THRESHOLD, usedefault=True)
    out_dir = traits.Str(mandatory=True, desc="OUTPUT_DIR/sub-X/figures")
    prefix = traits.Str(mandatory=True, desc="e.g. sub-01_task-rest")


class _FuncReportletsOutputSpec(TraitedSpec):
    out_files = traits.List(File())


class FunctionalReportlets(SimpleInterface):
    """Carpet plot with FD/DVARS, BOLD->T1w overlay and the network-ordered connectivity matrix."""

    input_spec = _FuncReportletsInputSpec
    output_spec = _FuncReportletsOutputSpec

    def _run_interface(self, runtime):
        from bids_brainage.reports import functional as rep

        out = Path(self.inputs.out_dir)
        prefix = self.inputs.prefix
        files = [
            rep.plot_carpet(
                self.inputs.bold, self.inputs.tissue_dseg, self.inputs.bold_mask, self.inputs.confounds,
                out / f"{prefix}_desc-carpet_bold.svg", fd_threshold=self.inputs.fd_threshold,
            ),
            rep.plot_coregistration(
                self.inputs.t1w_brain, self.inputs.boldref_t1w, out / f"{prefix}_desc-coreg_bold.svg"
            ),
            rep.plot_connectivity(
                self.inputs.connectivity, list(self.inputs.networks), out / f"{prefix}_desc-connectivity_bold.svg"
            ),
        ]  # fmt: skip
        self._results["out_files"] = [str(f) for f in files]
        return runtime
