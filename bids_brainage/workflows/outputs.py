"""Derivative writers (fMRIPrep's ``init_ds_*_wf``): every derivative of the participant level
goes through one sink class, :class:`~bids_brainage.interfaces.io.DerivativesDataSink`.

:func:`init_ds_anat_wf` is nested in the anatomical workflow, :func:`init_ds_func_wf` in each
functional workflow; the reportlets have their own writers in
:mod:`bids_brainage.workflows.reports`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_brainage.compute.confounds import CONFOUNDS_META
from bids_brainage.defaults import RELMAT_STAT
from bids_brainage.derivatives import derivative_path
from bids_brainage.interfaces.io import DerivativesDataSink
from bids_brainage.templates import TEMPLATE_SPACE

ANAT_INPUT_FIELDS = [
    "source_file", "t1w_preproc", "t1w_mask", "t1w_dseg", "t1w_tpms", "anat2std_xfm",
    "std2anat_xfm", "std_gm_modulated", "features_tsv", "features_meta",
]  # fmt: skip
FUNC_INPUT_FIELDS = [
    "confounds", "motion_tsv", "timeseries", "relmat", "outliers", "outliers_json", "qc_tsv", "qc_json",
    "features_tsv", "features_json", "boldref", "hmc_xfm", "coreg_xfm", "atlas_meta",
]  # fmt: skip
FUNC_OUTPUT_FIELDS = [
    "features_tsv",
    "features_json",
    "qc",
    "confounds",
    "motion_tsv",
    "timeseries",
    "relmat",
    "outliers",
]

# Ignored by nipype's hash (sink settings only), so editing them never re-runs the pipeline.
_DSEG_META = {
    "Description": "Atropos three-class segmentation with MNI152NLin2009aSym tissue priors",
    "Labels": {"0": "background", "1": "GM", "2": "WM", "3": "CSF"},
}


def _sink(name: str, output_dir: str, datatype: str, suffix: str, entities: dict, **inputs: Any) -> pe.Node:
    """A :class:`DerivativesDataSink` node (run in the main process: it only copies)."""
    node = pe.Node(
        DerivativesDataSink(base_directory=output_dir, datatype=datatype, suffix=suffix, entities=entities),
        name=name,
        run_without_submitting=True,
    )
    for key, value in inputs.items():
        if value is not None:
            setattr(node.inputs, key, value)
    return node


def init_ds_anat_wf(
    *,
    output_dir: str,
    subject: str,
    session: str | None,
    bids_root: str,
    resolution: int,
    name: str = "ds_anat_wf",
) -> pe.Workflow:
    """Write the anatomical derivatives: preprocessed T1w, brain mask, segmentation, tissue
    probabilities, the T1w <-> template transforms, the modulated GM and the structural
    features, each with its sidecar (``Sources`` as BIDS URIs).

    Parameters
    ----------
    output_dir : str
        OUTPUT_DIR.
    subject, session : str, str or None
        Checked labels without prefix.
    bids_root : str
        The raw BIDS dataset (for the T1w's BIDS URI).
    resolution : int
        Template resolution (mm) of the template-space outputs.
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    source_file : str
        The raw T1w.
    t1w_preproc, t1w_mask, t1w_dseg, std_gm_modulated : str
    t1w_tpms, anat2std_xfm, std2anat_xfm : list of str
    features_tsv : str
        Structural feature table; ``features_meta`` (dict) its sidecar content.

    Outputs (``outputnode``)
    ------------------------
    features_tsv, features_json : str
        The stored structural features and sidecar.
    """
    entities = {"sub": subject, "ses": session}
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=ANAT_INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["features_tsv", "features_json"]), name="outputnode")
    raw_sources = pe.Node(
        niu.Function(function=_raw_sources, input_names=["t1w", "bids_root"], output_names=["sources"]),
        name="raw_sources",
    )
    raw_sources.inputs.bids_root = bids_root

    def uri(suffix: str, ext: str, **ents: str | None) -> str:
        path = derivative_path(output_dir, "anat", suffix, ext, **entities, **ents)
        return "bids::" + path.relative_to(Path(output_dir)).as_posix()

    preproc_uri = uri("T1w", ".nii.gz", desc="preproc")
    mask_uri = uri("mask", ".nii.gz", desc="brain")
    tpm_uris = [uri("probseg", ".nii.gz", label=t) for t in ("GM", "WM", "CSF")]
    xfm_uri = uri("xfm", ".h5", **{"from": "T1w", "to": TEMPLATE_SPACE, "mode": "image"})
    template_uri = f"bids:{TEMPLATE_SPACE}:tpl-{TEMPLATE_SPACE}_res-0{resolution}_T1w.nii.gz"

    def sink(node_name: str, suffix: str, ents: dict, meta: dict | None = None) -> pe.Node:
        return _sink(node_name, output_dir, "anat", suffix, {**entities, **ents}, metadata=meta or None)

    native = {"SpatialReference": preproc_uri}  # same grid as the preprocessed T1w
    ds_preproc = sink(
        "ds_t1w_preproc", "T1w", {"desc": "preproc"},
        {"SkullStripped": False, "Description": "T1w after N4 bias-field correction, native space"},
    )  # fmt: skip
    ds_mask = sink(
        "ds_t1w_mask", "mask", {"desc": "brain"},
        {"Type": "Brain", "Description": "Brain mask of the preprocessed T1w", "Sources": [preproc_uri], **native},
    )  # fmt: skip
    ds_dseg = sink("ds_t1w_dseg", "dseg", {}, {**_DSEG_META, "Sources": [preproc_uri, mask_uri], **native})
    ds_tpms = pe.MapNode(
        DerivativesDataSink(base_directory=output_dir, datatype="anat", suffix="probseg"),
        iterfield=["in_file", "entities"],
        name="ds_t1w_tpms",
        run_without_submitting=True,
    )
    ds_tpms.inputs.entities = [{**entities, "label": t} for t in ("GM", "WM", "CSF")]
    ds_tpms.inputs.metadata = {
        "Description": "Tissue probability map (Atropos posterior, the tissue named by label)",
        "Sources": [preproc_uri, mask_uri], **native,
    }  # fmt: skip
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
         "Sources": [tpm_uris[0], xfm_uri], "Resolution": f"{resolution} mm", "SpatialReference": template_uri},
    )  # fmt: skip
    ds_features = sink("ds_features", "features", {"desc": "structural"})
    ds_features.inputs.source_files = [preproc_uri, mask_uri, *tpm_uris, xfm_uri]
    ds_features.inputs.extension = ".tsv"

    workflow.connect([
        (inputnode, raw_sources, [("source_file", "t1w")]),
        (raw_sources, ds_preproc, [("sources", "source_files")]),
        (inputnode, ds_preproc, [("t1w_preproc", "in_file")]),
        (inputnode, ds_mask, [("t1w_mask", "in_file")]),
        (inputnode, ds_dseg, [("t1w_dseg", "in_file")]),
        (inputnode, ds_tpms, [("t1w_tpms", "in_file")]),
        (inputnode, ds_fwd, [(("anat2std_xfm", _first), "in_file")]),
        (inputnode, ds_inv, [(("std2anat_xfm", _first), "in_file")]),
        (inputnode, ds_mod, [("std_gm_modulated", "in_file")]),
        (inputnode, ds_features, [("features_tsv", "in_file"), ("features_meta", "metadata")]),
        (ds_features, outputnode, [("out_file", "features_tsv"), ("out_meta", "features_json")]),
    ])  # fmt: skip
    return workflow


def init_ds_func_wf(
    *,
    output_dir: str,
    entities: dict[str, str],
    sources: list[str],
    tr: float,
    atlas: str,
    connectivity: str,
    hmc_and_coreg: bool,
    name: str = "ds_func_wf",
) -> pe.Workflow:
    """Write the derivatives of one BOLD run in XCP-D/fMRIPrep names: confounds, head motion
    (``desc-motion_timeseries``: BIDS's ``_motion`` suffix is motion capture), the censoring
    mask (``outliers``), boldref, denoised ROI time series and connectivity matrix (``space-``
    of the atlas, ``seg-<atlas>``), run QC and functional features (and, when this app did the
    head-motion correction and coregistration, their transforms, ITK text).

    Parameters
    ----------
    output_dir : str
        OUTPUT_DIR.
    entities : dict
        BIDS entities of the run (``sub``, ``ses``, ``task``, ``run``, ...; no empty values).
    sources : list of str
        BIDS URIs of the raw BOLD (and fMRIPrep's BOLD when reused).
    tr : float
        Repetition time (s), for ``SamplingFrequency``.
    atlas : str
        Atlas name (the ``seg`` entity, as XCP-D).
    connectivity : str
        Connectivity kind (the ``stat`` entity and ``RelationshipMeasure``).
    hmc_and_coreg : bool
        Also write the head-motion and BOLD->T1w transforms (False when fMRIPrep's are reused).
    name : str
        Workflow name.

    Inputs (``inputnode``)
    ----------------------
    confounds, motion_tsv, timeseries, relmat, outliers, qc_tsv, features_tsv, boldref : str
    qc_json, features_json, outliers_json : str
        Sidecar contents of the QC table, the features and the censoring mask (JSON files in
        the work dir).
    hmc_xfm, coreg_xfm : str
        Transforms, ITK text (only with ``hmc_and_coreg``).
    atlas_meta : dict
        Atlas, its source and the sphere radius (added to the time-series and relmat sidecars).

    Outputs (``outputnode``)
    ------------------------
    features_tsv, features_json, qc, confounds, motion_tsv, timeseries, relmat, outliers : str
        The stored files (``qc`` is the QC sidecar).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=FUNC_INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=FUNC_OUTPUT_FIELDS), name="outputnode")

    def sink(node_name, suffix, extra, metadata=None, ext=None):
        return _sink(
            node_name, output_dir, "func", suffix, {**entities, **extra},
            metadata={"Sources": sources, **(metadata or {})}, extension=ext,
        )  # fmt: skip

    ds_conf = sink("ds_confounds", "timeseries", {"desc": "confounds"}, CONFOUNDS_META)
    ds_motion = sink(
        "ds_motion", "timeseries", {"desc": "motion"},
        {"Description": "Rigid head motion of each volume relative to the reference volume, and Power FD",
         **{f"trans_{a}": {"Description": f"translation along {a}", "Units": "mm"} for a in "xyz"},
         **{f"rot_{a}": {"Description": f"rotation about {a}", "Units": "rad"} for a in "xyz"},
         "framewise_displacement": {"Description": "framewise displacement (Power 2012)", "Units": "mm"},
         "SamplingFrequency": 1.0 / tr},
    )  # fmt: skip
    ds_outliers = sink("ds_outliers", "outliers", {})
    parcel = {"space": TEMPLATE_SPACE, "seg": atlas}
    ts_meta = {
        "Description": "Denoised mean time series per ROI (retained volumes only); the atlas, defined "
        f"in {TEMPLATE_SPACE}, was carried onto the BOLD grid (the BOLD is never resampled)",
        "SamplingFrequency": 1.0 / tr,
    }
    ds_ts = sink("ds_timeseries", "timeseries", {**parcel, "stat": "mean"})
    relmat_meta = {
        "Description": f"ROI x ROI {connectivity} of the denoised time series as estimated (not Fisher "
        "z-transformed; the functional features are its Fisher z); first column Node names the ROI of "
        "each row, diagonal 1",
        "RelationshipMeasure": RELMAT_STAT[connectivity], "Weighted": True, "Directed": False,
        "ValidDiagonal": False, "StorageFormat": "Full",
    }  # fmt: skip
    ds_relmat = sink("ds_relmat", "relmat", {**parcel, "stat": RELMAT_STAT[connectivity]})
    ds_feat = sink("ds_features", "features", {"desc": "functional"})
    ds_qc = sink("ds_qc", "qc", {"desc": "functional"}, ext=".tsv")
    ds_ref = sink("ds_boldref", "boldref", {"desc": "hmc"})
    workflow.connect([
        (inputnode, ds_conf, [("confounds", "in_file")]),
        (inputnode, ds_motion, [("motion_tsv", "in_file")]),
        (inputnode, ds_outliers, [("outliers", "in_file"),
                                  (("outliers_json", _read_json, {"Sources": sources}), "metadata")]),
        (inputnode, ds_ts, [("timeseries", "in_file"),
                            (("atlas_meta", _merge, {"Sources": sources, **ts_meta}), "metadata")]),
        (inputnode, ds_relmat, [("relmat", "in_file"),
                                (("atlas_meta", _merge, {"Sources": sources, **relmat_meta}), "metadata")]),
        (inputnode, ds_qc, [("qc_tsv", "in_file"), (("qc_json", _read_json), "metadata")]),
        (inputnode, ds_ref, [("boldref", "in_file")]),
        (inputnode, ds_feat, [("features_tsv", "in_file"), (("features_json", _read_json), "metadata")]),
        (ds_feat, outputnode, [("out_file", "features_tsv"), ("out_meta", "features_json")]),
        (ds_qc, outputnode, [("out_meta", "qc")]),
        (ds_conf, outputnode, [("out_file", "confounds")]),
        (ds_motion, outputnode, [("out_file", "motion_tsv")]),
        (ds_ts, outputnode, [("out_file", "timeseries")]),
        (ds_relmat, outputnode, [("out_file", "relmat")]),
        (ds_outliers, outputnode, [("out_file", "outliers")]),
    ])  # fmt: skip
    if hmc_and_coreg:
        ds_hmc = sink(
            "ds_hmc_xfm", "xfm", {"from": "orig", "to": "boldref", "mode": "image", "desc": "hmc"},
            {"Description": "Head-motion correction: one ITK affine per volume (boldref -> volume, LPS), ITK text"},
        )  # fmt: skip
        ds_coreg = sink(
            "ds_coreg_xfm", "xfm", {"from": "boldref", "to": "T1w", "mode": "image", "desc": "coreg"},
            {"Description": "ANTs rigid BOLD reference -> T1w transform, ITK text (as fMRIPrep writes it)"},
        )  # fmt: skip
        workflow.connect([
            (inputnode, ds_hmc, [("hmc_xfm", "in_file")]),
            (inputnode, ds_coreg, [("coreg_xfm", "in_file")]),
        ])  # fmt: skip
    return workflow


def _raw_sources(t1w: str, bids_root: str) -> list[str]:
    from bids_brainage.derivatives import bids_uri

    return [bids_uri(t1w, bids_root, "raw")]


def _read_json(path, extra=None):
    import json

    with open(path) as fh:
        return {**json.load(fh), **(extra or {})}


def _merge(meta, extra):
    """``extra`` (static sidecar entries) then ``meta`` (computed ones, e.g. the atlas)."""
    return {**extra, **(meta or {})}


def _first(values: list[str] | str) -> str:
    # nipype may collapse one-element lists into a plain string.
    return values if isinstance(values, str) else values[0]
