"""The participant workflows as graphs (built, not run; fast): every step is a named node, the
derivatives are written by ``ds_*`` nodes of one sink class inside ``ds_anat_wf``/``ds_func_wf``,
and the reportlets by their own workflows (``anat_reports_wf``/``func_reports_wf``)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_brainage.derivatives import derivative_path
from bids_brainage.interfaces.io import DerivativesDataSink
from bids_brainage.workflows.anatomical import init_anat_wf
from bids_brainage.workflows.functional import init_func_wf

FUNC_STEPS = ["prepare_bold", "confounds", "atlas_to_bold", "denoise", "connectivity", "run_qc", "features"]
FUNC_SINKS = [
    "ds_func_wf.ds_boldref", "ds_func_wf.ds_confounds", "ds_func_wf.ds_features", "ds_func_wf.ds_motion",
    "ds_func_wf.ds_qc", "ds_func_wf.ds_relmat", "ds_func_wf.ds_timeseries", "ds_func_wf.ds_outliers",
]  # fmt: skip
FUNC_REPORTS = [
    "func_reports_wf.reportlets", "func_reports_wf.ds_report_carpet", "func_reports_wf.ds_report_coreg",
    "func_reports_wf.ds_report_connectivity",
]  # fmt: skip


def _bold(root: Path, session: str | None = None) -> Path:
    folder = root / "sub-01" / (f"ses-{session}" if session else "") / "func"
    folder.mkdir(parents=True, exist_ok=True)
    name = "sub-01" + (f"_ses-{session}" if session else "") + "_task-rest_run-2_bold"
    nib.Nifti1Image(np.zeros((4, 4, 4, 10), np.float32), np.eye(4)).to_filename(folder / f"{name}.nii.gz")
    (folder / f"{name}.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    return folder / f"{name}.nii.gz"


def _func_wf(tmp_path: Path, session: str | None = None, **options):
    root = tmp_path / "bids"
    return init_func_wf(
        bold_file=str(_bold(root, session)), output_dir=str(tmp_path / "out"), subject="01", session=session,
        bids_root=str(root), sloppy=True, omp_nthreads=1, **options,
    )  # fmt: skip


def _names(workflow) -> set[str]:
    """Every node of the flattened graph, named relative to ``workflow``."""
    prefix = workflow.name + "."
    return {node.fullname.removeprefix(prefix) for node in workflow._get_all_nodes()}


def _sinks(workflow) -> list:
    return [n for n in workflow._get_all_nodes() if isinstance(n.interface, DerivativesDataSink)]


def _writes_output_dir(workflow, output_dir: Path) -> list[str]:
    """Nodes other than the sink that were given OUTPUT_DIR (they could write there)."""
    return [
        node.fullname
        for node in workflow._get_all_nodes()
        if not isinstance(node.interface, DerivativesDataSink) and str(output_dir) in str(node.inputs)
    ]


def _planned_paths(workflow, output_dir: Path) -> set[str]:
    """Where each sink writes (without the extension, which comes from the file at run time)."""
    out = set()
    for node in _sinks(workflow):
        i = node.inputs
        entity_sets = i.entities if isinstance(i.entities, list) else [i.entities]
        for ents in entity_sets:
            path = derivative_path(i.base_directory, i.datatype or None, i.suffix, "", **ents)
            out.add(path.relative_to(output_dir).as_posix())
    return out


def test_functional_steps_are_named_nodes_and_sinks_are_one_class(tmp_path):
    wf = _func_wf(tmp_path)
    names = _names(wf)
    for name in [*FUNC_STEPS, "hmc", "coreg", *FUNC_SINKS, "ds_func_wf.ds_hmc_xfm", "ds_func_wf.ds_coreg_xfm",
                 *FUNC_REPORTS]:  # fmt: skip
        assert name in names, name
    assert "fmriprep_bold" not in names
    # Every node that stores something is the one sink class, and only sinks see OUTPUT_DIR.
    ds_nodes = {n for n in names if n.rsplit(".", 1)[-1].startswith("ds_")}
    assert ds_nodes == {n.fullname.removeprefix(wf.name + ".") for n in _sinks(wf)}
    assert _writes_output_dir(wf, tmp_path / "out") == []
    stem = "sub-01/func/sub-01_task-rest_run-2"
    assert _planned_paths(wf, tmp_path / "out") == {
        f"{stem}_desc-hmc_boldref", f"{stem}_desc-confounds_timeseries",
        f"{stem}_desc-functional_features", f"{stem}_desc-motion_timeseries", f"{stem}_desc-functional_qc",
        f"{stem}_outliers",
        f"{stem}_space-MNI152NLin2009aSym_seg-Seitzman300_stat-pearsoncorrelation_relmat",
        f"{stem}_space-MNI152NLin2009aSym_seg-Seitzman300_stat-mean_timeseries",
        f"{stem}_from-orig_to-boldref_mode-image_desc-hmc_xfm",
        f"{stem}_from-boldref_to-T1w_mode-image_desc-coreg_xfm",
        "sub-01/figures/sub-01_task-rest_run-2_desc-carpet_bold",
        "sub-01/figures/sub-01_task-rest_run-2_desc-coreg_bold",
        "sub-01/figures/sub-01_task-rest_run-2_desc-connectivity_bold",
    }  # fmt: skip


def test_functional_options_reach_their_nodes(tmp_path):
    wf = _func_wf(
        tmp_path, session="2", connectivity="partial-correlation", nuisance_regressors="27P", fd_threshold=0.3,
        atlas="Power264", min_time=40.0, band_pass=(0.02, 0.08), sphere_radius=6.5,
    )  # fmt: skip
    assert wf.get_node("denoise").inputs.nuisance_regressors == "27P"
    assert wf.get_node("denoise").inputs.fd_threshold == 0.3
    assert (wf.get_node("denoise").inputs.high_pass, wf.get_node("denoise").inputs.low_pass) == (0.02, 0.08)
    assert (wf.get_node("features").inputs.high_pass, wf.get_node("features").inputs.low_pass) == (0.02, 0.08)
    assert wf.get_node("atlas_to_bold").inputs.sphere_radius == 6.5
    assert wf.get_node("connectivity").inputs.kind == "partial-correlation"
    assert wf.get_node("run_qc").inputs.min_volumes == 20  # 40 s at TR 2 s
    assert wf.get_node("features").inputs.session_id == "ses-2"
    assert wf.get_node("features").inputs.extra_meta["Atlas"] == "Power264"
    paths = _planned_paths(wf, tmp_path / "out")
    stem = "sub-01/ses-2/func/sub-01_ses-2_task-rest_run-2"
    assert f"{stem}_space-MNI152NLin2009aSym_seg-Power264_stat-partialcorrelation_relmat" in paths
    # Reportlets of every session go to sub-X/figures (the session is in the name).
    assert "sub-01/figures/sub-01_ses-2_task-rest_run-2_desc-carpet_bold" in paths


def test_fmriprep_reuse_replaces_hmc_and_coreg(tmp_path):
    root, prep = tmp_path / "bids", tmp_path / "fmriprep"
    func = prep / "sub-01" / "func"
    func.mkdir(parents=True)
    for name in ("space-T1w_desc-preproc_bold.nii.gz", "desc-confounds_timeseries.tsv",
                 "from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt"):  # fmt: skip
        (func / f"sub-01_task-rest_run-2_{name}").write_text("x")
    wf = _func_wf(tmp_path, fmriprep_dir=str(prep))
    assert root.exists()
    names = _names(wf)
    assert {"fmriprep_bold", *FUNC_STEPS, *FUNC_SINKS, *FUNC_REPORTS} <= names
    assert not {"hmc", "coreg", "ds_func_wf.ds_hmc_xfm", "ds_func_wf.ds_coreg_xfm"} & names
    assert wf.get_node("features").inputs.extra_meta["MotionCorrection"] == "fMRIPrep"
    assert _writes_output_dir(wf, tmp_path / "out") == []


@pytest.mark.parametrize("session", [None, "1"])
def test_anatomical_sinks_and_reportlets(tmp_path, session):
    out = tmp_path / "out"
    wf = init_anat_wf(
        output_dir=str(out), subject="01", session=session, bids_root=str(tmp_path), sloppy=True,
        omp_nthreads=1,
    )  # fmt: skip
    names = _names(wf)
    steps = ["validate", "n4", "initial_brain_mask", "register", "atropos", "modulated_gm", "features"]
    assert set(steps) <= names
    assert {"ds_anat_wf.ds_t1w_preproc", "ds_anat_wf.ds_features", "anat_reports_wf.reportlets"} <= names
    assert _writes_output_dir(wf, out) == []
    ses = f"_ses-{session}" if session else ""
    folder = f"sub-01/ses-{session}/anat" if session else "sub-01/anat"
    stem = f"{folder}/sub-01{ses}"
    assert _planned_paths(wf, out) == {
        f"{stem}_desc-preproc_T1w", f"{stem}_desc-brain_mask", f"{stem}_dseg",
        f"{stem}_label-GM_probseg", f"{stem}_label-WM_probseg", f"{stem}_label-CSF_probseg",
        f"{stem}_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm",
        f"{stem}_from-MNI152NLin2009aSym_to-T1w_mode-image_xfm",
        f"{stem}_space-MNI152NLin2009aSym_label-GM_desc-modulated_probseg",
        f"{stem}_desc-structural_features",
        f"sub-01/figures/sub-01{ses}_desc-brain_mask", f"sub-01/figures/sub-01{ses}_dseg",
        f"sub-01/figures/sub-01{ses}_space-MNI152NLin2009aSym_T1w",
    }  # fmt: skip


def test_anat_only_subject_workflow_has_no_functional_nodes(tmp_path):
    """--anat-only: the subject workflow is the anatomical workflow alone, BOLD runs or not."""
    from bids_brainage import bids
    from bids_brainage.config import Config
    from bids_brainage.workflows.base import init_single_subject_wf

    bold = _bold(tmp_path / "bids")
    config = Config(
        bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", analysis_level="participant",
        work_dir=tmp_path / "work", anat_only=True,
    )  # fmt: skip
    data = bids.SessionData(subject="01", session=None, t1w=str(bold), bold=[str(bold)])
    names = _names(init_single_subject_wf(config, data, [str(bold)]))
    assert "anat_reports_wf.ds_report_dseg" in names and not [name for name in names if "func" in name]
    config.anat_only = False
    assert "func_reports_wf.ds_report_carpet" in _names(init_single_subject_wf(config, data, [str(bold)]))
