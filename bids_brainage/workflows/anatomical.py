"""Anatomical workflow: N4 → brain extraction → T1w→MNI (SyN) → Atropos → features.

See :func:`init_anat_wf`; the image operations live in
:mod:`bids_brainage.compute.anat_ops` and the nipype wrappers in
:mod:`bids_brainage.interfaces.anatomical`.
"""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_brainage.defaults import DEFAULT_RANDOM_SEED
from bids_brainage.derivatives import check_label
from bids_brainage.interfaces.anatomical import (
    AtroposSegmentation,
    InitialBrainMask,
    ModulatedGM,
    N4BiasFieldCorrection,
    RegisterToTemplate,
    StructuralFeatures,
    ValidateT1w,
)
from bids_brainage.workflows.outputs import init_ds_anat_wf
from bids_brainage.workflows.reports import init_anat_reports_wf

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


def anat_methods(*, sloppy: bool, thickness: bool, user_atlas: bool = False) -> str:
    """Methods text of :func:`init_anat_wf` built with these settings (its ``__desc__``).

    Citations are ``[key]`` keys of :data:`bids_brainage.reports.citation.REFERENCES`.
    """
    resolution = (
        "at reduced resolution and with shortened optimisation schedules (--sloppy: for testing only, "
        "not for analysis)"
        if sloppy
        else "at full resolution"
    )
    return (
        f"The T1-weighted (T1w) image was corrected for intensity non-uniformity with N4 [n4] as "
        f"implemented in ANTsPy (antspyx) [antsx], brain-extracted with a template-based mask and "
        f"registered to the MNI152 ICBM 2009a symmetric template (MNI152NLin2009aSym) [fonov2009; "
        f"fonov2011] with symmetric image normalisation (SyN) [syn], {resolution}. Grey matter (GM), "
        f"white matter (WM) and cerebrospinal fluid (CSF) were segmented with Atropos [atropos] using "
        f"template tissue priors. Structural features were the global GM, WM and CSF volumes, the total "
        f"intracranial volume and Jacobian-modulated regional GM volumes in the Desikan-Killiany atlas "
        f"[desikan2006]"
        + (" and in the user-supplied atlas" if user_atlas else "")
        + (", plus regional cortical thickness from KellyKapowski [kellykapowski]" if thickness else "")
        + "."
    )


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
    random_seed: int = DEFAULT_RANDOM_SEED,
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
    → derivatives (``ds_anat_wf``, :func:`~bids_brainage.workflows.outputs.init_ds_anat_wf`)
    and reportlets (``anat_reports_wf``, :func:`~bids_brainage.workflows.reports.init_anat_reports_wf`).

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
    workflow = pe.Workflow(name=name)
    workflow.__desc__ = anat_methods(sloppy=sloppy, thickness=thickness, user_atlas=atlas is not None)
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

    workflow.connect([
        (inputnode, validate, [("t1w", "in_file")]),
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

    # ---- derivatives and reportlets ------------------------------------------------------
    ds_wf = init_ds_anat_wf(
        output_dir=output_dir, subject=subject, session=session, bids_root=bids_root, resolution=resolution
    )
    reports_wf = init_anat_reports_wf(
        output_dir=output_dir, subject=subject, session=session, resolution=resolution
    )
    workflow.connect([
        (inputnode, ds_wf, [("t1w", "inputnode.source_file")]),
        (n4, ds_wf, [("out_file", "inputnode.t1w_preproc")]),
        (segment, ds_wf, [("out_mask", "inputnode.t1w_mask"), ("out_dseg", "inputnode.t1w_dseg"),
                          ("out_tpms", "inputnode.t1w_tpms")]),
        (register, ds_wf, [("anat2std_xfm", "inputnode.anat2std_xfm"),
                           ("std2anat_xfm", "inputnode.std2anat_xfm")]),
        (modulate, ds_wf, [("out_file", "inputnode.std_gm_modulated")]),
        (features, ds_wf, [("out_tsv", "inputnode.features_tsv"), ("out_metadata", "inputnode.features_meta")]),
        (ds_wf, outputnode, [("outputnode.features_tsv", "features_tsv"),
                             ("outputnode.features_json", "features_json")]),
        (n4, reports_wf, [("out_file", "inputnode.t1w_preproc")]),
        (segment, reports_wf, [("out_mask", "inputnode.t1w_mask"), ("out_dseg", "inputnode.t1w_dseg")]),
        (register, reports_wf, [("std_t1w", "inputnode.std_t1w")]),
        (reports_wf, outputnode, [("outputnode.reportlets", "reportlets")]),
    ])  # fmt: skip
    return workflow


def _first(values: list[str] | str) -> str:
    # nipype may collapse one-element lists into a plain string.
    return values if isinstance(values, str) else values[0]
