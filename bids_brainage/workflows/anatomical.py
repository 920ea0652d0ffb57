"""Anatomical workflow: N4 → brain extraction → T1w→MNI (SyN) → Atropos → features.

See :func:`init_anat_wf`; the image operations live in
:mod:`bids_brainage.compute.anat_ops` and the nipype wrappers in
:mod:`bids_brainage.interfaces.anatomical`.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_brainage.derivatives import bids_name, check_label, derivative_path
from bids_brainage.interfaces.anatomical import (
    AnatReportlets,
    AtroposSegmentation,
    InitialBrainMask,
    ModulatedGM,
    N4BiasFieldCorrection,
    RegisterToTemplate,
    ReportletSink,
    StructuralFeatures,
    ValidateT1w,
)
from bids_brainage.interfaces.io import DerivativesDataSink
from bids_brainage.templates import TEMPLATE_SPACE

OUTPUT_FIELDS = [
    "t1w_preproc",
    "t1w_brain",
    "t1w_mask",
    "t1w_dseg",
    "t1w_tpms",
    "anat2std_xfm",
    "std2anat_xfm",
    "std_gm_modulated",
    "features_tsv",
    "features_json",
    "reportlets",
]

# Ignored by nipype's hash (sink settings only), so editing them never re-runs the pipeline.
_DSEG_META = {
    "Description": "Atropos three-class segmentation with MNI152NLin2009aSym tissue priors",
    "Labels": {"0": "background", "1": "GM", "2": "WM", "3": "CSF"},
}


def _raw_sources(t1w: str, bids_root: str) -> list[str]:
    from bids_brainage.derivatives import bids_uri

    return [bids_uri(t1w, bids_root, "raw")]


def init_anat_wf(
    *,
    output_dir: str,
    subject: str,
    session: str | None,
    bids_root: str,
    sloppy: bool,
    omp_nthreads: int,
    atlas: dict | None = None,
    thickness: bool = False,
    random_seed: int = 0,
    name: str = "anat_wf",
) -> pe.Workflow:
    """Build the anatomical workflow of one subject/session.

    Steps: validation of the T1w (one-line error for unusable files) → N4 bias-field
    correction → template-based brain extraction (affine fit of the MNI brain to the head,
    refitted to the T1w's own brain with the scalp removed, then the MNI brain mask warped
    back through the SyN registration and refined with Atropos) →
    registration to ``MNI152NLin2009aSym`` (SyN from the first-pass affine on the 2 mm
    template brain; outputs on the 1 mm grid, 2 mm when ``sloppy``) → Atropos GM/WM/CSF with warped template priors → Jacobian-modulated GM in
    template space → structural features and the segmentation QC (in the features sidecar)
    → reportlets and derivatives.

    Parameters
    ----------
    output_dir : str
        OUTPUT_DIR (a BIDS derivative dataset).
    subject, session : str, str or None
        Labels without the ``sub-``/``ses-`` prefix.
    bids_root : str
        The input BIDS dataset (for ``Sources`` BIDS URIs).
    sloppy : bool
        2 mm template and fewer iterations (tests and demos).
    omp_nthreads : int
        ITK threads per step.
    atlas : dict, optional
        User atlas ``{"image": NIfTI, "labels": TSV with index/name, "name"?, "space"?}``
        in ``MNI152NLin2009aSym``; its regional GM volumes are added to the features.
    thickness : bool
        Add regional cortical thickness (``ants.kelly_kapowski``; slow).
    random_seed : int
        The app's ``--random-seed``: seeds the registrations' metric sampling.
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    t1w : str
        Path of the raw T1w.

    Outputs (``outputnode``)
    ------------------------
    t1w_preproc : str
        Bias-corrected T1w (RAS, T1w space). Every T1w-space output shares its grid.
    t1w_brain : str
        Skull-stripped T1w.
    t1w_mask : str
        Brain mask (uint8).
    t1w_dseg : str
        Segmentation: 0 background, 1 GM, 2 WM, 3 CSF.
    t1w_tpms : list of str
        Probability maps, in the order GM, WM, CSF.
    anat2std_xfm : list of str
        One ANTs composite transform (HDF5), T1w → MNI152NLin2009aSym:
        ``ants.apply_transforms(fixed=<MNI image>, moving=<T1w-space image>, transformlist=anat2std_xfm)``.
    std2anat_xfm : list of str
        One ANTs composite transform (HDF5), MNI152NLin2009aSym → T1w:
        ``ants.apply_transforms(fixed=<T1w-space image>, moving=<MNI image>, transformlist=std2anat_xfm)``.
        Neither list needs ``whichtoinvert``.
    std_gm_modulated : str
        Jacobian-modulated GM in template space (sums to the T1w GM volume).
    features_tsv, features_json : str
        The stored ``desc-structural_features`` table and its sidecar.
    reportlets : list of str
        SVGs in ``OUTPUT_DIR/sub-X/figures``: brain mask, segmentation, registration.
    """
    subject = check_label(subject, "sub")
    session = check_label(session, "ses") if session else None
    resolution = 2 if sloppy else 1
    entities = {"sub": subject, "ses": session}
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["t1w"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")

    threads = {"sloppy": sloppy, "omp_nthreads": omp_nthreads}
    validate = pe.Node(ValidateT1w(), name="validate")
    n4 = pe.Node(N4BiasFieldCorrection(**threads), name="n4", n_procs=omp_nthreads)
    init_mask = pe.Node(
        InitialBrainMask(random_seed=random_seed, **threads), name="initial_brain_mask", n_procs=omp_nthreads
    )
    register = pe.Node(
        RegisterToTemplate(resolution=resolution, random_seed=random_seed, **threads),
        name="register",
        n_procs=omp_nthreads,
        mem_gb=2.0,
    )
    segment = pe.Node(AtroposSegmentation(**threads), name="atropos", n_procs=omp_nthreads, mem_gb=2.0)
    modulate = pe.Node(
        ModulatedGM(resolution=resolution, **threads), name="modulated_gm", n_procs=omp_nthreads
    )
    features = pe.Node(
        StructuralFeatures(subject=subject, session=session, atlas=atlas, thickness=thickness, **threads),
        name="features",
        n_procs=omp_nthreads,
    )
    label = f"sub-{subject}" + (f" ses-{session}" if session else "")
    reports = pe.Node(AnatReportlets(resolution=resolution, label=label), name="reportlets")
    raw_sources = pe.Node(
        niu.Function(function=_raw_sources, input_names=["t1w", "bids_root"], output_names=["sources"]),
        name="raw_sources",
    )
    raw_sources.inputs.bids_root = bids_root

    workflow.connect([
        (inputnode, validate, [("t1w", "in_file")]),
        (inputnode, raw_sources, [("t1w", "t1w")]),
        (validate, n4, [("out_file", "in_file")]),
        (n4, init_mask, [("out_file", "in_file")]),
        (n4, register, [("out_file", "in_file")]),
        (init_mask, register, [("out_prior", "in_prior"), ("out_affine", "init_affine")]),
        (n4, segment, [("out_file", "in_file")]),
        (register, segment, [("out_brain_prior", "in_prior"), ("out_priors", "priors")]),
        (segment, modulate, [(("out_tpms", _first), "in_gm")]),
        (n4, modulate, [("out_file", "in_t1w")]),
        (register, modulate, [("anat2std_xfm", "anat2std_xfm")]),
        (segment, features, [("out_tpms", "in_tpms"), ("out_mask", "in_mask"), ("out_dseg", "in_dseg")]),
        (modulate, features, [("out_file", "in_modulated")]),
        (register, features, [("std2anat_xfm", "std2anat_xfm"), ("out_priors", "in_priors")]),
        (n4, features, [("out_file", "in_t1w")]),
        (n4, reports, [("out_file", "in_t1w")]),
        (segment, reports, [("out_mask", "in_mask"), ("out_dseg", "in_dseg")]),
        (register, reports, [("std_t1w", "std_t1w")]),
        (n4, outputnode, [("out_file", "t1w_preproc")]),
        (segment, outputnode, [
            ("out_brain", "t1w_brain"),
            ("out_mask", "t1w_mask"),
            ("out_dseg", "t1w_dseg"),
            ("out_tpms", "t1w_tpms"),
        ]),
        (register, outputnode, [("anat2std_xfm", "anat2std_xfm"), ("std2anat_xfm", "std2anat_xfm")]),
        (modulate, outputnode, [("out_file", "std_gm_modulated")]),
    ])  # fmt: skip

    # ---- derivatives ------------------------------------------------------------------
    def uri(suffix: str, ext: str, **ents: str | None) -> str:
        path = derivative_path(output_dir, "anat", suffix, ext, **entities, **ents)
        return "bids::" + path.relative_to(Path(output_dir)).as_posix()

    preproc_uri = uri("T1w", ".nii.gz", desc="preproc")
    mask_uri = uri("mask", ".nii.gz", desc="brain")
    tpm_uris = [uri("probseg", ".nii.gz", label=t) for t in ("GM", "WM", "CSF")]
    xfm_uri = uri("xfm", ".h5", **{"from": "T1w", "to": TEMPLATE_SPACE, "mode": "image"})
    template_uri = f"bids:{TEMPLATE_SPACE}:tpl-{TEMPLATE_SPACE}_res-0{resolution}_T1w.nii.gz"

    def sink(node_name: str, suffix: str, ents: dict, meta: dict | None = None) -> pe.Node:
        node = pe.Node(
            DerivativesDataSink(
                base_directory=output_dir, datatype="anat", suffix=suffix, entities={**entities, **ents}
            ),
            name=node_name,
            run_without_submitting=True,
        )
        if meta:
            node.inputs.metadata = meta
        return node

    ds_preproc = sink("ds_t1w_preproc", "T1w", {"desc": "preproc"}, {"SkullStripped": False})
    ds_mask = sink("ds_t1w_mask", "mask", {"desc": "brain"}, {"Type": "Brain", "Sources": [preproc_uri]})
    ds_dseg = sink("ds_t1w_dseg", "dseg", {}, {**_DSEG_META, "Sources": [preproc_uri, mask_uri]})
    ds_tpms = pe.MapNode(
        DerivativesDataSink(base_directory=output_dir, datatype="anat", suffix="probseg"),
        iterfield=["in_file", "entities"],
        name="ds_t1w_tpms",
        run_without_submitting=True,
    )
    ds_tpms.inputs.entities = [{**entities, "label": t} for t in ("GM", "WM", "CSF")]
    ds_tpms.inputs.metadata = {"Sources": [preproc_uri, mask_uri]}
    xfm_meta = {
        "Sources": [preproc_uri, mask_uri, template_uri],
        "Software": "ANTs (antspyx) antsRegistration",
    }
    ds_fwd = sink(
        "ds_anat2std_xfm", "xfm", {"from": "T1w", "to": TEMPLATE_SPACE, "mode": "image"},
        {**xfm_meta, "Description": "ANTs composite transform (affine + SyN), HDF5", "FromSpace": "T1w",
         "ToSpace": TEMPLATE_SPACE},
    )  # fmt: skip
    ds_inv = sink(
        "ds_std2anat_xfm", "xfm", {"from": TEMPLATE_SPACE, "to": "T1w", "mode": "image"},
        {**xfm_meta, "Description": "ANTs composite transform (inverse SyN + affine), HDF5",
         "FromSpace": TEMPLATE_SPACE, "ToSpace": "T1w"},
    )  # fmt: skip
    ds_mod = sink(
        "ds_std_gm_modulated", "probseg", {"space": TEMPLATE_SPACE, "label": "GM", "desc": "modulated"},
        {"Description": "GM probability warped to the template times the Jacobian determinant of the "
                        "template-to-T1w mapping; sum x voxel volume = the participant's GM volume",
         "Sources": [tpm_uris[0], xfm_uri], "Resolution": f"{resolution} mm"},
    )  # fmt: skip
    ds_features = sink("ds_features", "features", {"desc": "structural"})
    ds_features.inputs.source_files = [preproc_uri, mask_uri, *tpm_uris, xfm_uri]
    ds_features.inputs.datatype = "anat"
    ds_features.inputs.extension = ".tsv"

    base = bids_name("", "", **entities).rstrip("_")
    figures = pe.Node(
        ReportletSink(
            base_directory=output_dir,
            subject=subject,
            out_names=[
                f"{base}_desc-brain_mask.svg",
                f"{base}_dseg.svg",
                f"{base}_space-{TEMPLATE_SPACE}_T1w.svg",
            ],
        ),
        name="ds_reportlets",
        run_without_submitting=True,
    )
    merge_reports = pe.Node(niu.Merge(3), name="merge_reportlets", run_without_submitting=True)

    workflow.connect([
        (raw_sources, ds_preproc, [("sources", "source_files")]),
        (n4, ds_preproc, [("out_file", "in_file")]),
        (segment, ds_mask, [("out_mask", "in_file")]),
        (segment, ds_dseg, [("out_dseg", "in_file")]),
        (segment, ds_tpms, [("out_tpms", "in_file")]),
        (register, ds_fwd, [(("anat2std_xfm", _first), "in_file")]),
        (register, ds_inv, [(("std2anat_xfm", _first), "in_file")]),
        (modulate, ds_mod, [("out_file", "in_file")]),
        (features, ds_features, [("out_tsv", "in_file"), ("out_metadata", "metadata")]),
        (reports, merge_reports, [("out_mask", "in1"), ("out_dseg", "in2"), ("out_registration", "in3")]),
        (merge_reports, figures, [("out", "in_files")]),
        (ds_features, outputnode, [("out_file", "features_tsv"), ("out_meta", "features_json")]),
        (figures, outputnode, [("out_files", "reportlets")]),
    ])  # fmt: skip
    return workflow


def _first(values: list[str] | str) -> str:
    # nipype may collapse one-element lists into a plain string.
    return values if isinstance(values, str) else values[0]
