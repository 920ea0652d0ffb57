"""Functional workflow of one resting-state BOLD run (fMRIPrep/XCP-D style)."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_brainage import bids
from bids_brainage.compute.bold import MIN_BOLD_VOLUMES, resolve_dummy_scans
from bids_brainage.compute.confounds import CONFOUNDS_META
from bids_brainage.compute.connectivity import load_atlas
from bids_brainage.compute.fmriprep import find_fmriprep_run
from bids_brainage.defaults import DEFAULT_FD_THRESHOLD, RELMAT_STAT, connectivity_kind
from bids_brainage.derivatives import ENTITY_ORDER, bids_uri, check_label
from bids_brainage.interfaces.confounds import BoldConfounds
from bids_brainage.interfaces.connectivity import AtlasToBold, FunctionalConnectivity
from bids_brainage.interfaces.functional import (
    BoldT1wCoregistration,
    FmriprepBold,
    FunctionalReportlets,
    PrepareBold,
)
from bids_brainage.interfaces.io import DerivativesDataSink
from bids_brainage.interfaces.motion import HeadMotionCorrection

INPUT_FIELDS = ["t1w_preproc", "t1w_brain", "t1w_mask", "t1w_dseg", "t1w_tpms", "std2anat_xfm"]
OUTPUT_FIELDS = [
    "features_tsv", "features_json", "qc", "confounds", "motion_tsv", "timeseries", "relmat",
    "boldref", "bold2anat_xfm", "excluded", "exclusion_reason", "reportlets",
]  # fmt: skip
DEFAULT_MIN_VOLUMES = 50  # ~2 min at TR 2.5 s; shorter runs give unreliable correlations


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
    atlas: str = "Seitzman300",
    connectivity: str = "correlation",
    fd_threshold: float = DEFAULT_FD_THRESHOLD,
    max_scrubbed_fraction: float = 0.5,
    min_volumes: int = DEFAULT_MIN_VOLUMES,
    dummy_scans: int | None = None,
    global_signal: bool = False,
    fmriprep_dir: str | None = None,
    random_seed: int = 0,
    name: str = "func_wf",
) -> pe.Workflow:
    """Build the workflow of one resting-state BOLD run.

    Steps: dummy-scan removal → head-motion correction (:mod:`bids_brainage.compute.hmc`,
    one resampling) → BOLD→T1w rigid coregistration (ANTs) → WM/CSF maps and the atlas carried
    into BOLD space (the atlas is resampled, never the BOLD) → confounds (24P, WM, CSF, GS, FD,
    DVARS) → ROI time series → denoising (``nilearn.signal.clean``: detrend, confounds,
    band-pass 0.01-0.1 Hz, scrubbing) → connectivity (Fisher z) → features, QC, exclusion →
    derivatives and reportlets. With ``fmriprep_dir`` holding this run's
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
    max_scrubbed_fraction, min_volumes : float, int
        A run scrubbing more than this fraction or keeping fewer volumes is excluded (its
        features are written as n/a and its sidecars say why).
    dummy_scans : int, optional
        Initial volumes to discard; default from the sidecar
        (``NumberOfVolumesDiscardedByUser``/``NumberOfDummyScans``/...) or 0.
    global_signal : bool
        Also regress the global signal.
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
    confounds, motion_tsv, timeseries, relmat : str
        Stored derivatives.
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
    atlas_info = load_atlas(atlas)
    ents = {"sub": subject, "ses": session, **bold_entities(bold_file)}
    ents.setdefault("task", task)
    ents["sub"], ents["ses"] = subject, session
    src = [bids_uri(bold_file, bids_root)]
    fmriprep = find_fmriprep_run(fmriprep_dir, bold_file, bids_root) if fmriprep_dir else None

    wf = pe.Workflow(name=name)
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
    fc = pe.Node(
        FunctionalConnectivity(
            kind=connectivity, fd_threshold=fd_threshold, max_scrubbed_fraction=max_scrubbed_fraction,
            min_volumes=min_volumes, global_signal=global_signal, participant_id=f"sub-{subject}",
            dummy_scans=n_dummy,
            extra_meta={"Sources": src, "Atlas": atlas_info.name, "Space": "MNI152NLin2009aSym",
                        "MotionCorrection": "fMRIPrep" if fmriprep else "bids_brainage.compute.hmc"},
        ),
        name="connectivity",
    )  # fmt: skip
    if session:
        fc.inputs.session_id = f"ses-{session}"
    wf.connect([
        (bold_src, confounds, [("out_file", "bold"), ("bold_mask", "bold_mask"), ("boldref", "boldref"),
                               ("motion_tsv", "motion_tsv")]),
        (xfm_src, confounds, [(xfm_field, "xfm")]),
        (inputnode, confounds, [("t1w_tpms", "t1w_tpms")]),
        (ref_src, to_bold, [("boldref", "boldref")]),
        (confounds, to_bold, [("brain_mask", "brain_mask")]),
        (xfm_src, to_bold, [(xfm_field, "xfm")]),
        (inputnode, to_bold, [("std2anat_xfm", "std2anat_xfm")]),
        (bold_src, fc, [("out_file", "bold")]),
        (prepare, fc, [("tr", "tr")]),
        (to_bold, fc, [("atlas_file", "atlas_file"), ("atlas_tsv", "atlas_tsv"), ("radius_mm", "sphere_radius_mm")]),
        (confounds, fc, [("confounds", "confounds"), ("tsnr", "tsnr")]),
    ])  # fmt: skip
    if fmriprep:
        wf.connect([(prepare, prep, [("dummy_scans", "dummy_scans")])])

    # ------------------------------------------------------------------ derivatives
    func_ents = {k: v for k, v in ents.items() if v}

    def sink(node_name, suffix, extra, metadata=None, ext=None):
        node = DerivativesDataSink(
            base_directory=output_dir, datatype="func", suffix=suffix, entities={**func_ents, **extra}
        )
        node.inputs.metadata = {"Sources": src, **(metadata or {})}
        if ext:
            node.inputs.extension = ext
        return pe.Node(node, name=node_name, run_without_submitting=True)

    stat = RELMAT_STAT[connectivity]
    ds_conf = sink("ds_confounds", "timeseries", {"desc": "confounds"}, CONFOUNDS_META)
    ds_motion = sink(
        "ds_motion", "motion", {},
        {"trans_x": {"Units": "mm"}, "rot_x": {"Units": "rad"},
         "Description": "Rigid head motion relative to the reference volume and Power FD",
         "SamplingFrequency": 1.0 / tr},
    )  # fmt: skip
    ds_ts = sink(
        "ds_timeseries", "timeseries", {"atlas": atlas_info.name, "stat": "mean"},
        {"Description": "Denoised mean time series per ROI (retained volumes only)",
         "SamplingFrequency": 1.0 / tr},
    )  # fmt: skip
    ds_relmat = sink(
        "ds_relmat", "relmat", {"atlas": atlas_info.name, "stat": stat},
        {"Description": f"ROI x ROI {connectivity} (Fisher z)", "RelationshipMeasure": connectivity},
    )  # fmt: skip
    ds_feat = sink("ds_features", "features", {"desc": "functional"})
    ds_qc = sink("ds_qc", "qc", {"desc": "functional"}, ext=".tsv")
    ds_ref = sink("ds_boldref", "boldref", {"desc": "hmc"})
    wf.connect([
        (confounds, ds_conf, [("confounds", "in_file")]),
        (bold_src, ds_motion, [("motion_tsv", "in_file")]),
        (fc, ds_ts, [("timeseries", "in_file")]),
        (fc, ds_relmat, [("relmat", "in_file")]),
        (fc, ds_qc, [("qc_tsv", "in_file")]),
        (ref_src, ds_ref, [("boldref", "in_file")]),
        (fc, ds_feat, [("features_tsv", "in_file"), (("features_json", _read_json), "metadata")]),
        (ds_feat, outputnode, [("out_file", "features_tsv"), ("out_meta", "features_json")]),
        (fc, ds_qc, [(("qc_json", _read_json), "metadata")]),
        (ds_qc, outputnode, [("out_meta", "qc")]),
        (ds_conf, outputnode, [("out_file", "confounds")]),
        (ds_motion, outputnode, [("out_file", "motion_tsv")]),
        (ds_ts, outputnode, [("out_file", "timeseries")]),
        (ds_relmat, outputnode, [("out_file", "relmat")]),
        (ref_src, outputnode, [("boldref", "boldref")]),
        (xfm_src, outputnode, [(xfm_field, "bold2anat_xfm")]),
        (fc, outputnode, [("excluded", "excluded"), ("exclusion_reason", "exclusion_reason")]),
    ])  # fmt: skip
    if not fmriprep:
        ds_hmc = sink(
            "ds_hmc_xfm", "xfm", {"from": "orig", "to": "boldref", "mode": "image", "desc": "hmc"},
            {"Description": "Head-motion correction: one ITK affine per volume (boldref -> volume, LPS)"},
        )  # fmt: skip
        ds_coreg = sink(
            "ds_coreg_xfm", "xfm", {"from": "boldref", "to": "T1w", "mode": "image", "desc": "coreg"},
            {"Description": "ANTs rigid BOLD->T1w transform (ITK binary)"},
        )  # fmt: skip
        wf.connect([
            (bold_src, ds_hmc, [("xfm_file", "in_file")]),
            (coreg, ds_coreg, [("xfm", "in_file")]),
        ])  # fmt: skip

    # ------------------------------------------------------------------ reportlets
    prefix = "_".join(f"{k}-{v}" for k, v in func_ents.items() if k in ("sub", "ses", "task", "acq", "run"))
    reports = pe.Node(
        FunctionalReportlets(
            fd_threshold=fd_threshold,
            out_dir=str(Path(output_dir) / f"sub-{subject}" / "figures"),
            prefix=prefix,
        ),
        name="reportlets",
    )
    wf.connect([
        (bold_src, reports, [("out_file", "bold"), ("bold_mask", "bold_mask")]),
        (confounds, reports, [("tissue_dseg", "tissue_dseg"), ("confounds", "confounds")]),
        (coreg_report_src, reports, [(coreg_report_field, "boldref_t1w")]),
        (inputnode, reports, [("t1w_brain", "t1w_brain")]),
        (fc, reports, [("relmat", "connectivity")]),
        (to_bold, reports, [("networks", "networks")]),
        (reports, outputnode, [("out_files", "reportlets")]),
    ])  # fmt: skip
    return wf


def _read_json(path):
    import json

    with open(path) as fh:
        return json.load(fh)


__all__ = ["init_func_wf", "INPUT_FIELDS", "OUTPUT_FIELDS", "MIN_BOLD_VOLUMES"]
