"""Functional workflow of one resting-state BOLD run (fMRIPrep/XCP-D style)."""

from __future__ import annotations

import math
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_brainage import bids
from bids_brainage.compute.bold import MIN_BOLD_VOLUMES, resolve_dummy_scans
from bids_brainage.compute.connectivity import load_atlas
from bids_brainage.compute.fmriprep import find_fmriprep_run
from bids_brainage.defaults import (
    DEFAULT_ATLAS,
    DEFAULT_BAND_PASS,
    DEFAULT_CONNECTIVITY,
    DEFAULT_FD_THRESHOLD,
    DEFAULT_MAX_SCRUBBED_FRACTION,
    DEFAULT_MIN_TIME,
    DEFAULT_NUISANCE_REGRESSORS,
    DEFAULT_RANDOM_SEED,
    DUMMY_KEYS,
    NUISANCE_STRATEGIES,
    SPHERE_RADIUS_VOXELS,
    connectivity_kind,
)
from bids_brainage.derivatives import ENTITY_ORDER, bids_uri, check_label
from bids_brainage.interfaces.confounds import BoldConfounds
from bids_brainage.interfaces.connectivity import (
    AtlasToBold,
    ConnectivityMatrix,
    DenoiseTimeseries,
    FunctionalFeatures,
    RunQC,
)
from bids_brainage.interfaces.functional import BoldT1wCoregistration, FmriprepBold, PrepareBold
from bids_brainage.interfaces.motion import HeadMotionCorrection
from bids_brainage.templates import PUBLISHED_RADIUS_MM
from bids_brainage.workflows.outputs import FUNC_OUTPUT_FIELDS, init_ds_func_wf
from bids_brainage.workflows.reports import init_func_reports_wf

INPUT_FIELDS = ["t1w_preproc", "t1w_brain", "t1w_mask", "t1w_dseg", "t1w_tpms", "std2anat_xfm"]
OUTPUT_FIELDS = [
    "features_tsv", "features_json", "qc", "confounds", "motion_tsv", "timeseries", "relmat", "outliers",
    "boldref", "bold2anat_xfm", "excluded", "exclusion_reason", "reportlets",
]  # fmt: skip

#: How the methods text names each atlas, and the references it cites.
ATLAS_TEXT = {
    "Seitzman300": ("the 300 regions of Seitzman et al.", ["seitzman2018"]),
    "Power264": ("the 264 regions of Power et al.", ["power2011"]),
    "Dosenbach160": ("the 160 regions of Dosenbach et al.", ["dosenbach2010"]),
    "DK83": ("the 83-region Desikan-Killiany volumetric atlas", ["desikan2006"]),
    "custom": ("a user-supplied volumetric atlas", []),
}
#: How the methods text names each connectivity measure, and the references it cites.
CONNECTIVITY_TEXT = {
    "correlation": ("Pearson correlation, Fisher z-transformed", []),
    "ledoit-wolf": (
        "Pearson correlation of the Ledoit-Wolf shrunk covariance, Fisher z-transformed",
        ["ledoit2004"],
    ),
    "partial-correlation": ("partial correlation, Fisher z-transformed", []),
}


def _range_text(values: list[float], unit: str) -> str:
    if len(values) == 1:
        return f"{values[0]:g}{unit}"
    return f"{values[0]:g}-{values[-1]:g}{unit}"


def _regression_text(strategy: str) -> str:
    """What ``--nuisance-regressors`` regressed out, with its references."""
    if strategy == "none":
        return "Only a linear trend was regressed out (`--nuisance-regressors none`)"
    cite = "; satterthwaite2013" if strategy == "36P" else ""
    return (
        f"The {strategy} confound set ({NUISANCE_STRATEGIES[strategy]}) [friston1996{cite}] and a linear "
        "trend were regressed out"
    )


def _filter_text(band_pass: tuple[float, float] | None) -> str:
    """The temporal filter: band-pass, only one edge (the other 0) or none."""
    low, high = band_pass or (0.0, 0.0)
    if low > 0 and high > 0:
        return f"band-pass filtered ({low:g}-{high:g} Hz)"
    if low > 0:
        return f"high-pass filtered (above {low:g} Hz)"
    if high > 0:
        return f"low-pass filtered (below {high:g} Hz)"
    return "not temporally filtered (`--disable-bandpass-filter`)"


def min_volumes_for(min_time: float, tr: float) -> int:
    """Fewest retained volumes that hold ``min_time`` seconds of data at this TR."""
    return max(1, math.ceil(min_time / tr - 1e-6))


def func_methods(
    *,
    atlas: str = DEFAULT_ATLAS,
    connectivity: str = DEFAULT_CONNECTIVITY,
    fd_threshold: float = DEFAULT_FD_THRESHOLD,
    max_scrubbed_fraction: float = DEFAULT_MAX_SCRUBBED_FRACTION,
    min_time: float = DEFAULT_MIN_TIME,
    min_volumes: int | None = None,
    dummy_scans: int | None = None,
    nuisance_regressors: str = DEFAULT_NUISANCE_REGRESSORS,
    band_pass: tuple[float, float] | None = DEFAULT_BAND_PASS,
    sphere_radius: float | None = None,
    fmriprep: bool = False,
    dummy_counts: list[int] | None = None,
    sphere_radii: list[float] | None = None,
) -> str:
    """Methods text of :func:`init_func_wf` built with these settings (its ``__desc__``).

    ``dummy_counts`` and ``sphere_radii`` are values a finished run recorded in its sidecars
    (the report adds them; a workflow being built describes the rule). ``band_pass`` None (or
    0 for an edge) is no filter (at that edge); ``min_volumes`` (deprecated ``--min-volumes``)
    replaces ``min_time``; ``sphere_radius`` (mm, ``--sphere-radius``) replaces the radius rule.
    Citations are ``[key]`` keys of :data:`bids_brainage.reports.citation.REFERENCES`.
    """
    kind = connectivity_kind(connectivity)
    atlas_text, atlas_refs = ATLAS_TEXT.get(atlas, ATLAS_TEXT["custom"])
    kind_text, kind_refs = CONNECTIVITY_TEXT[kind]
    if dummy_scans is not None:
        dummy_text = f"the first {int(dummy_scans)} volumes were discarded as non-steady-state (dummy) scans."
    else:
        dummy_text = (
            "the initial volumes that the run's JSON sidecar marks as non-steady-state "
            f"({', '.join(f'`{k}`' for k in DUMMY_KEYS)}) were discarded"
            + (
                f" ({_range_text(dummy_counts, '')} per run in this dataset)."
                if dummy_counts
                else "; none when it does not say."
            )
        )
    if atlas in PUBLISHED_RADIUS_MM and sphere_radius:
        atlas_text += (
            f", as spheres of radius {sphere_radius:g} mm, each voxel assigned to its nearest centre"
        )
    elif atlas in PUBLISHED_RADIUS_MM:
        atlas_text += (
            f", as spheres of radius max({PUBLISHED_RADIUS_MM[atlas]:g} mm as published, "
            f"{SPHERE_RADIUS_VOXELS:g} x the BOLD voxel size)"
            + (f", {_range_text(sphere_radii, ' mm')} in this dataset," if sphere_radii else ",")
            + " each voxel assigned to its nearest centre"
        )
    motion = (
        "Head motion parameters and the BOLD-to-T1w transform were taken from fMRIPrep's outputs, "
        "and its T1w-space preprocessed BOLD series was used."
        if fmriprep
        else "Head motion was estimated with a rigid-body Gauss-Newton realignment to a reference "
        "volume, and the reference was coregistered to the T1w."
    )
    atlas_cite = f" [{'; '.join(atlas_refs)}]" if atlas_refs else ""
    minimum = (
        f"fewer than {min_volumes} remaining volumes"
        if min_volumes is not None
        else f"less than {min_time:g} s of data remaining"
    )
    return (
        f"For each resting-state BOLD run, {dummy_text} {motion} "
        "Confounds estimated were the 24 motion parameters, the mean WM, CSF and global signals, "
        f"framewise displacement (FD) and DVARS [power2012]. {_regression_text(nuisance_regressors)}, "
        f"and the signals were {_filter_text(band_pass)}; volumes with FD > {fd_threshold:g} mm were censored "
        f"(scrubbing) [power2014]. Runs with more than {max_scrubbed_fraction:.0%} of volumes censored "
        f"or {minimum} were excluded. Regional time series were "
        f"extracted from {atlas_text}{atlas_cite} and functional connectivity computed as {kind_text}"
        + (f" [{'; '.join(kind_refs)}]" if kind_refs else "")
        + " with nilearn [nilearn]."
    )


def bold_entities(bold_file: str) -> dict[str, str]:
    """BIDS entities of a raw BOLD file name that derivative names keep (sub, ses, task, acq, run, ...)."""
    name = Path(bold_file).name.split(".")[0]
    out = {}
    for part in name.split("_")[:-1]:
        key, _, value = part.partition("-")
        if key in ENTITY_ORDER and value:
            out[key] = value
    return out


def init_func_wf(
    *,
    bold_file: str,
    output_dir: str,
    subject: str,
    session: str | None,
    bids_root: str,
    task: str = "rest",
    sloppy: bool,
    omp_nthreads: int,
    atlas: str = DEFAULT_ATLAS,
    connectivity: str = DEFAULT_CONNECTIVITY,
    fd_threshold: float = DEFAULT_FD_THRESHOLD,
    max_scrubbed_fraction: float = DEFAULT_MAX_SCRUBBED_FRACTION,
    min_time: float = DEFAULT_MIN_TIME,
    min_volumes: int | None = None,
    dummy_scans: int | None = None,
    nuisance_regressors: str = DEFAULT_NUISANCE_REGRESSORS,
    band_pass: tuple[float, float] | None = DEFAULT_BAND_PASS,
    sphere_radius: float | None = None,
    fmriprep_dir: str | None = None,
    random_seed: int = DEFAULT_RANDOM_SEED,
    name: str = "func_wf",
) -> pe.Workflow:
    """Build the workflow of one resting-state BOLD run.

    Steps (node names in brackets): dummy-scan removal [``prepare_bold``] → head-motion
    correction [``hmc``] (:mod:`bids_brainage.compute.hmc`, one resampling) → BOLD→T1w rigid
    coregistration [``coreg``] (ANTs) → confounds [``confounds``] (24P, WM, CSF, GS, FD, DVARS)
    → the atlas carried into BOLD space [``atlas_to_bold``] (the atlas is resampled, never the
    BOLD) → ROI time series, censoring and denoising [``denoise``] (``nilearn.signal.clean``:
    detrend, confounds, band-pass ``band_pass``, scrubbing) → connectivity [``connectivity``]
    (Fisher z) → run QC and exclusion [``run_qc``] → feature table [``features``] →
    derivatives [``ds_func_wf``, :func:`~bids_brainage.workflows.outputs.init_ds_func_wf`] and
    reportlets [``func_reports_wf``, :func:`~bids_brainage.workflows.reports.init_func_reports_wf`]. With ``fmriprep_dir`` holding this run's
    ``space-T1w_desc-preproc_bold``, confounds and transforms, HMC and coregistration are
    skipped and fMRIPrep's motion parameters are used.

    Parameters
    ----------
    bold_file : str
        Raw BOLD run (4D NIfTI) inside ``bids_root``.
    output_dir, bids_root : str
        OUTPUT_DIR (derivative dataset) and the raw BIDS dataset.
    subject, session : str, str or None
        Labels without prefix.
    task : str
        Task label used when the file name has none.
    sloppy : bool
        Fewer registration iterations (tests).
    omp_nthreads : int
        Threads for ANTs.
    atlas : str
        ``Seitzman300`` (default), ``Power264``, ``Dosenbach160``, ``DK83`` or a NIfTI in
        MNI152NLin2009aSym with ``<name>.tsv`` (``index``, ``name`` [, ``network``]) next to it.
    connectivity : str
        one of :data:`bids_brainage.defaults.CONNECTIVITY_KINDS` (Fisher z-transformed).
    fd_threshold : float
        Volumes with FD (Power) above this (mm) are scrubbed.
    max_scrubbed_fraction, min_time : float, float
        A run scrubbing more than this fraction or keeping less than ``min_time`` seconds of
        data (``ceil(min_time / TR)`` volumes) is excluded (its features are written as n/a and
        its sidecars say why).
    min_volumes : int, optional
        The deprecated ``--min-volumes``: a minimum in volumes, replacing ``min_time``.
    dummy_scans : int, optional
        Initial volumes to discard; default from the sidecar
        (``NumberOfVolumesDiscardedByUser``/``NumberOfDummyScans``/...) or 0.
    nuisance_regressors : str
        Confound set regressed out, a key of :data:`bids_brainage.defaults.NUISANCE_STRATEGIES`.
    band_pass : (float, float) or None
        High-pass and low-pass edges (Hz) of the time-series filter; an edge of 0 is left out,
        None is no filter (``--disable-bandpass-filter``).
    sphere_radius : float, optional
        Fixed sphere radius (mm) of coordinate atlases (``--sphere-radius``); default
        ``max(published radius, SPHERE_RADIUS_VOXELS x BOLD voxel)``.
    fmriprep_dir : str, optional
        An fMRIPrep derivative folder to reuse.
    random_seed : int
        The app's ``--random-seed``: seeds the BOLD->T1w registration's metric sampling.
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    t1w_preproc, t1w_brain, t1w_mask : str
        From the anatomical workflow (T1w space).
    t1w_dseg : str
        0 background, 1 GM, 2 WM, 3 CSF.
    t1w_tpms : list of str
        GM, WM, CSF probability maps.
    std2anat_xfm : list of str
        ANTs transforms bringing MNI152NLin2009aSym images into T1w space.

    Outputs (``outputnode``)
    ------------------------
    features_tsv, features_json : str
        ``desc-functional_features`` table (one row: ``participant_id``[, ``session_id``],
        then ``fmri__<roiA>__<roiB>`` for the n(n-1)/2 ROI pairs) and its sidecar (``QC`` block
        with ``excluded``/``exclusion_reason``).
    qc : str
        QC sidecar ``*_desc-functional_qc.json`` (of the ``*_desc-functional_qc.tsv`` table).
    confounds, motion_tsv, timeseries, relmat, outliers : str
        Stored derivatives (``relmat``: the measure as estimated, diagonal 1; ``outliers``: the
        censoring mask).
    boldref, bold2anat_xfm : str
        Working-directory boldref and the ANTs boldref→T1w transform.
    excluded, exclusion_reason : bool, str
    reportlets : list of str
        Carpet plot, coregistration overlay, connectivity matrix (``OUTPUT_DIR/sub-X/figures``).

    Raises
    ------
    InputError
        The sidecar has no usable ``RepetitionTime``. The run itself must have passed
        :func:`~bids_brainage.compute.bold.validate_bold` (done once, in
        :func:`~bids_brainage.workflows.base.run_subject`).
    """
    subject = check_label(subject, "sub")
    session = check_label(session, "ses") if session else None
    connectivity = connectivity_kind(connectivity)
    # The run was checked once by validate_bold before this build (workflows.base.run_subject).
    meta = bids.sidecar_metadata(bids_root, bold_file)
    tr = bids.repetition_time(meta.get("RepetitionTime"), bold_file)
    n_dummy = resolve_dummy_scans(meta, dummy_scans)
    min_kept = min_volumes if min_volumes is not None else min_volumes_for(min_time, tr)
    high_pass, low_pass = band_pass or (0.0, 0.0)
    atlas_info = load_atlas(atlas)
    ents = {"sub": subject, "ses": session, **bold_entities(bold_file)}
    ents.setdefault("task", task)
    ents["sub"], ents["ses"] = subject, session
    src = [bids_uri(bold_file, bids_root)]
    fmriprep = find_fmriprep_run(fmriprep_dir, bold_file, bids_root) if fmriprep_dir else None

    wf = pe.Workflow(name=name)
    wf.__desc__ = func_methods(
        atlas=atlas, connectivity=connectivity, fd_threshold=fd_threshold,
        max_scrubbed_fraction=max_scrubbed_fraction, min_time=min_time, min_volumes=min_volumes,
        dummy_scans=dummy_scans, nuisance_regressors=nuisance_regressors, band_pass=band_pass,
        sphere_radius=sphere_radius, fmriprep=bool(fmriprep),
    )  # fmt: skip
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")
    prepare = pe.Node(PrepareBold(in_file=bold_file, tr=tr, dummy_scans=n_dummy), name="prepare_bold")

    if fmriprep:
        prep = pe.Node(
            FmriprepBold(bold=fmriprep["bold"], confounds=fmriprep["confounds"], dummy_scans=n_dummy),
            name="fmriprep_bold",
        )
        if "mask" in fmriprep:
            prep.inputs.mask = fmriprep["mask"]
        bold_src, ref_src, xfm_src, xfm_field = prep, prep, prep, "xfm"
        wf.add_nodes([prepare, prep])
        coreg_report_src, coreg_report_field = prep, "boldref"
        src.append(bids_uri(fmriprep["bold"], fmriprep_dir, dataset="fmriprep"))
    else:
        hmc = pe.Node(HeadMotionCorrection(), name="hmc")
        coreg = pe.Node(
            BoldT1wCoregistration(sloppy=sloppy, omp_nthreads=omp_nthreads, random_seed=random_seed),
            name="coreg",
        )
        wf.connect([
            (prepare, hmc, [("out_file", "in_file")]),
            (hmc, coreg, [("boldref", "boldref"), ("bold_mask", "bold_mask")]),
            (inputnode, coreg, [("t1w_brain", "t1w_brain")]),
        ])  # fmt: skip
        bold_src, ref_src, xfm_src, xfm_field = hmc, hmc, coreg, "xfm"
        coreg_report_src, coreg_report_field = coreg, "boldref_t1w"

    confounds = pe.Node(BoldConfounds(fd_threshold=fd_threshold), name="confounds")
    to_bold = pe.Node(AtlasToBold(atlas=atlas), name="atlas_to_bold")
    if sphere_radius:
        to_bold.inputs.sphere_radius = sphere_radius
    denoise = pe.Node(
        DenoiseTimeseries(
            fd_threshold=fd_threshold,
            nuisance_regressors=nuisance_regressors,
            high_pass=high_pass,
            low_pass=low_pass,
        ),
        name="denoise",
    )
    conn = pe.Node(ConnectivityMatrix(kind=connectivity), name="connectivity")
    run_qc = pe.Node(
        RunQC(fd_threshold=fd_threshold, max_scrubbed_fraction=max_scrubbed_fraction,
              min_volumes=min_kept, dummy_scans=n_dummy, repetition_time=tr),
        name="run_qc",
    )  # fmt: skip
    features = pe.Node(
        FunctionalFeatures(
            kind=connectivity, fd_threshold=fd_threshold, participant_id=f"sub-{subject}",
            high_pass=high_pass, low_pass=low_pass,
            extra_meta={"Sources": src, "Atlas": atlas_info.name, "Space": "MNI152NLin2009aSym",
                        "NuisanceRegressors": nuisance_regressors, "MinimumRetainedVolumes": min_kept,
                        **({} if min_volumes is not None else {"MinimumRetainedTime": min_time}),
                        "MotionCorrection": "fMRIPrep" if fmriprep else "bids_brainage.compute.hmc"},
        ),
        name="features",
    )  # fmt: skip
    if session:
        features.inputs.session_id = f"ses-{session}"
    wf.connect([
        (bold_src, confounds, [("out_file", "bold"), ("bold_mask", "bold_mask"), ("boldref", "boldref"),
                               ("motion_tsv", "motion_tsv")]),
        (xfm_src, confounds, [(xfm_field, "xfm")]),
        (inputnode, confounds, [("t1w_tpms", "t1w_tpms")]),
        (ref_src, to_bold, [("boldref", "boldref")]),
        (confounds, to_bold, [("brain_mask", "brain_mask")]),
        (xfm_src, to_bold, [(xfm_field, "xfm")]),
        (inputnode, to_bold, [("std2anat_xfm", "std2anat_xfm")]),
        (bold_src, denoise, [("out_file", "bold")]),
        (prepare, denoise, [("tr", "tr")]),
        (to_bold, denoise, [("atlas_file", "atlas_file"), ("atlas_tsv", "atlas_tsv")]),
        (confounds, denoise, [("confounds", "confounds")]),
        (denoise, conn, [("timeseries_array", "timeseries_array")]),
        (to_bold, conn, [("atlas_tsv", "atlas_tsv")]),
        (confounds, run_qc, [("confounds", "confounds"), ("tsnr", "tsnr")]),
        (denoise, run_qc, [("n_rois", "n_rois"), ("missing_rois", "missing_rois"),
                           ("band_pass_applied", "band_pass_applied")]),
        (conn, features, [("relmat_array", "relmat_array")]),
        (to_bold, features, [("atlas_tsv", "atlas_tsv"), ("radius_mm", "sphere_radius_mm"),
                             ("atlas_meta", "atlas_meta")]),
        (denoise, features, [("regressors", "regressors")]),
        (run_qc, features, [("excluded", "excluded"), ("qc", "qc")]),
    ])  # fmt: skip
    if fmriprep:
        wf.connect([(prepare, prep, [("dummy_scans", "dummy_scans")])])

    # ------------------------------------------------------------------ derivatives
    func_ents = {k: v for k, v in ents.items() if v}
    ds_wf = init_ds_func_wf(
        output_dir=output_dir, entities=func_ents, sources=src, tr=tr, atlas=atlas_info.name,
        connectivity=connectivity, hmc_and_coreg=not fmriprep,
    )  # fmt: skip
    wf.connect([
        (confounds, ds_wf, [("confounds", "inputnode.confounds")]),
        (bold_src, ds_wf, [("motion_tsv", "inputnode.motion_tsv")]),
        (denoise, ds_wf, [("timeseries", "inputnode.timeseries")]),
        (conn, ds_wf, [("relmat", "inputnode.relmat")]),
        (run_qc, ds_wf, [("qc_tsv", "inputnode.qc_tsv"), ("qc_json", "inputnode.qc_json"),
                         ("outliers", "inputnode.outliers"), ("outliers_json", "inputnode.outliers_json")]),
        (to_bold, ds_wf, [("atlas_meta", "inputnode.atlas_meta")]),
        (features, ds_wf, [("features_tsv", "inputnode.features_tsv"),
                           ("features_json", "inputnode.features_json")]),
        (ref_src, ds_wf, [("boldref", "inputnode.boldref")]),
        (ds_wf, outputnode, [(f"outputnode.{f}", f) for f in FUNC_OUTPUT_FIELDS]),
        (ref_src, outputnode, [("boldref", "boldref")]),
        (xfm_src, outputnode, [(xfm_field, "bold2anat_xfm")]),
        (run_qc, outputnode, [("excluded", "excluded"), ("exclusion_reason", "exclusion_reason")]),
    ])  # fmt: skip
    if not fmriprep:
        wf.connect([
            (bold_src, ds_wf, [("xfm_file", "inputnode.hmc_xfm")]),
            (coreg, ds_wf, [("xfm_txt", "inputnode.coreg_xfm")]),
        ])  # fmt: skip

    # ------------------------------------------------------------------ reportlets
    reports_wf = init_func_reports_wf(output_dir=output_dir, entities=func_ents, fd_threshold=fd_threshold)
    wf.connect([
        (bold_src, reports_wf, [("out_file", "inputnode.bold"), ("bold_mask", "inputnode.bold_mask")]),
        (confounds, reports_wf, [("tissue_dseg", "inputnode.tissue_dseg"), ("confounds", "inputnode.confounds")]),
        (coreg_report_src, reports_wf, [(coreg_report_field, "inputnode.boldref_t1w")]),
        (inputnode, reports_wf, [("t1w_brain", "inputnode.t1w_brain"), ("t1w_dseg", "inputnode.t1w_dseg")]),
        (conn, reports_wf, [("relmat", "inputnode.relmat")]),
        (to_bold, reports_wf, [("networks", "inputnode.networks")]),
        (reports_wf, outputnode, [("outputnode.reportlets", "reportlets")]),
    ])  # fmt: skip
    return wf


__all__ = ["init_func_wf", "func_methods", "INPUT_FIELDS", "OUTPUT_FIELDS", "MIN_BOLD_VOLUMES"]
