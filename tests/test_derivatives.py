"""Derivative skeleton, names, atomic and concurrent writes, validator on the skeleton."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import subprocess
from pathlib import Path

import pytest

from bids_brainage import derivatives
from bids_brainage.bids import run_validator, validator_executable
from bids_brainage.utils import atomic


def test_names_follow_fmriprep():
    assert (
        derivatives.bids_name("T1w", ".nii.gz", sub="01", desc="preproc") == "sub-01_desc-preproc_T1w.nii.gz"
    )
    name = derivatives.bids_name(
        "xfm", ".h5", sub="01", ses="A", **{"from": "T1w", "to": "MNI152NLin2009aSym", "mode": "image"}
    )
    assert name == "sub-01_ses-A_from-T1w_to-MNI152NLin2009aSym_mode-image_xfm.h5"
    path = derivatives.derivative_path("/o", "func", "relmat", ".tsv", sub="sub-01", task="rest",
                                       space="MNI152NLin2009aSym", seg="Seitzman300",
                                       stat="pearsoncorrelation")  # fmt: skip
    assert path == Path(
        "/o/sub-01/func/sub-01_task-rest_space-MNI152NLin2009aSym_seg-Seitzman300_stat-pearsoncorrelation_relmat.tsv"
    )


@pytest.mark.parametrize("label", ["../x", "a/b", "a b", "", "ü"])
def test_labels_are_validated_before_paths(label):
    with pytest.raises(ValueError, match="invalid sub label"):
        derivatives.derivative_path("/o", "anat", "T1w", ".nii.gz", sub=label)


def test_skeleton_validates_and_is_idempotent(tmp_path, real_data):
    out = tmp_path / "out"
    derivatives.init_derivatives(out, real_data / "ixi10")
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "bids_brainage" and desc["GeneratedBy"][0]["CodeURL"]
    assert desc["SourceDatasets"]
    assert (out / "logs").is_dir() and "*.html" in (out / ".bidsignore").read_text()
    mtime = (out / "dataset_description.json").stat().st_mtime_ns
    derivatives.init_derivatives(out, real_data / "ixi10")
    assert (out / "dataset_description.json").stat().st_mtime_ns == mtime  # unchanged content: not rewritten
    n_errors, _, summary = run_validator(out)
    assert n_errors == 0, summary


def test_container_recorded_from_environment(monkeypatch):
    monkeypatch.setenv("BIDS_BRAINAGE_CONTAINER", "docker")
    monkeypatch.setenv("BIDS_BRAINAGE_CONTAINER_TAG", "bids_brainage:0.1.0")
    desc = derivatives.dataset_description(None)
    assert desc["GeneratedBy"][0]["Container"] == {"Type": "docker", "Tag": "bids_brainage:0.1.0"}


def _init(args):
    out, bids_dir = args
    derivatives.init_derivatives(out, bids_dir)
    return (Path(out) / "dataset_description.json").read_text()


def test_concurrent_initialisation_never_corrupts(tmp_path, real_data):
    out = tmp_path / "out"
    with mp.get_context("spawn").Pool(8) as pool:
        texts = pool.map(_init, [(str(out), str(real_data / "ixi10"))] * 16)
    assert all(json.loads(t)["DatasetType"] == "derivative" for t in texts)
    assert not list(out.glob(".*.tmp*"))


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a" / "file.nii.gz"

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic.write_with(target, fail)
    assert list((tmp_path / "a").iterdir()) == []
    atomic.write_json(tmp_path / "x.json", {"b": 1, "a": 2})
    assert (tmp_path / "x.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def _bids_uris(value) -> list[str]:
    if isinstance(value, str):
        return [value] if value.startswith("bids:") else []
    if isinstance(value, dict):
        return [u for v in value.values() for u in _bids_uris(v)]
    if isinstance(value, list | tuple):
        return [u for v in value for u in _bids_uris(v)]
    return []


def test_every_bids_uri_has_a_dataset_link(tmp_path):
    """Each ``bids:<name>:`` URI a sink writes resolves through ``DatasetLinks`` (``bids::`` is
    this dataset), including a reused fMRIPrep folder."""
    from bids_brainage.workflows.outputs import init_ds_anat_wf, init_ds_func_wf

    sources = ["bids:raw:sub-01/func/sub-01_task-rest_bold.nii.gz", "bids:fmriprep:sub-01/func/x.nii.gz"]
    wfs = [
        init_ds_anat_wf(output_dir=str(tmp_path), subject="01", session=None, bids_root=str(tmp_path), resolution=2),
        init_ds_func_wf(output_dir=str(tmp_path), entities={"sub": "01", "task": "rest"}, sources=sources, tr=2.0,
                        atlas="Seitzman300", connectivity="correlation", hmc_and_coreg=True),
    ]  # fmt: skip
    uris = set()
    for wf in wfs:
        for node in wf._get_all_nodes():
            uris |= set(_bids_uris(node.inputs.get()))
        for _, _, data in wf._graph.edges(data=True):  # static entries merged in at run time
            uris |= {
                u for conn in data["connect"] if isinstance(conn[0], tuple) for u in _bids_uris(conn[0][2])
            }
    names = {uri.split(":")[1] for uri in uris} - {""}
    assert {"raw", "fmriprep", "MNI152NLin2009aSym"} <= names
    links = derivatives.dataset_description(tmp_path, {"fmriprep": tmp_path / "fmriprep"})["DatasetLinks"]
    assert names <= set(links), names - set(links)
    assert links["fmriprep"].startswith("file://") and "templateflow" in links["MNI152NLin2009aSym"]


def test_bidsignore_entries_are_documented():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "outputs.md").read_text()
    for entry in derivatives.BIDSIGNORE:
        assert f"`{entry}`" in doc, entry


def test_bidsignore_hides_only_kinds_the_schema_has_no_rule_for(tmp_path):
    """Without .bidsignore every ignored kind is an error (the schema has no rule for it); with
    it the validator finds none, and no entry is unused. ``logs/`` needs no entry (BIDS
    reserves it)."""
    import nibabel as nib
    import numpy as np

    out = tmp_path / "out"
    derivatives.init_derivatives(out, tmp_path)
    stem = "sub-01/func/sub-01_task-rest"
    files = {
        "*.html": "sub-01.html", "*/figures": "sub-01/figures/sub-01_dseg.svg",
        "*/log": "sub-01/log/20250101/crash-x.txt",
        "*_xfm.*": f"{stem}_from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt",
        "*_boldref.*": f"{stem}_desc-hmc_boldref.nii.gz",
        "*_timeseries.*": f"{stem}_desc-motion_timeseries.tsv",
        "*_outliers.*": f"{stem}_outliers.tsv",
        "*_relmat.*": f"{stem}_space-MNI152NLin2009aSym_seg-Seitzman300_stat-pearsoncorrelation_relmat.tsv",
        "*_qc.*": f"{stem}_desc-functional_qc.tsv", "*_features.*": f"{stem}_desc-functional_features.tsv",
        "*_prediction.*": "sub-01/sub-01_desc-brainage_prediction.tsv", "brainage.*": "brainage.tsv",
        "group": "group/metrics.json", "model": "model/model.json",
    }  # fmt: skip
    assert set(files) == set(derivatives.BIDSIGNORE)
    log = "logs/participant_20250101.log"
    for name in [*files.values(), log]:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".nii.gz"):
            nib.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)).to_filename(path)
        elif name.endswith(".json"):
            path.write_text("{}")
        else:
            path.write_text("a\tb\n1\t2\n")
    n_errors, _, summary = run_validator(out)
    assert n_errors == 0, summary
    (out / ".bidsignore").unlink()
    proc = subprocess.run(
        [validator_executable(), "--format", "json", str(out)], capture_output=True, text=True, check=False
    )
    issues = json.loads(proc.stdout)["issues"]["issues"]
    flagged = {
        i["location"].lstrip("/") for i in issues if i.get("severity") == "error" and i.get("location")
    }
    assert log not in flagged
    for entry, name in files.items():
        assert name in flagged, f"{entry}: {name} is valid BIDS, no need to ignore it"


def test_anatomical_derivatives_validate_without_sidecar_warnings(tmp_path):
    """The files .bidsignore does not hide (init_ds_anat_wf's) are valid, and their sidecars
    carry what the validator recommends (Description, SpatialReference)."""
    import nibabel as nib
    import numpy as np

    from bids_brainage.workflows.outputs import init_ds_anat_wf

    raw, work, out = tmp_path / "raw", tmp_path / "w", tmp_path / "out"
    (raw / "sub-01" / "anat").mkdir(parents=True)
    work.mkdir()
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    img.header.set_xyzt_units("mm")
    files = {
        name: str(work / f"{name}.nii.gz")
        for name in ("T1w", "pre", "mask", "dseg", "gm", "wm", "csf", "mod")
    }
    for path in files.values():
        img.to_filename(path)
    img.to_filename(raw / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    for name in ("fwd", "inv"):
        (work / f"{name}.h5").write_text("x")
    (work / "features.tsv").write_text("participant_id\tx\nsub-01\t1\n")
    derivatives.init_derivatives(out, raw)
    wf = init_ds_anat_wf(output_dir=str(out), subject="01", session=None, bids_root=str(raw), resolution=2)
    node = wf.inputs.inputnode
    node.source_file = str(raw / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    node.t1w_preproc, node.t1w_mask, node.t1w_dseg = files["pre"], files["mask"], files["dseg"]
    node.t1w_tpms = [files["gm"], files["wm"], files["csf"]]
    node.anat2std_xfm, node.std2anat_xfm = [str(work / "fwd.h5")], [str(work / "inv.h5")]
    node.std_gm_modulated = files["mod"]
    node.features_tsv, node.features_meta = str(work / "features.tsv"), {"Description": "features"}
    wf.base_dir = str(tmp_path / "work")
    wf.run()
    assert len(list((out / "sub-01" / "anat").glob("*.nii.gz"))) == 7
    proc = subprocess.run(
        [validator_executable(), "--format", "json", str(out)], capture_output=True, text=True, check=False
    )
    issues = json.loads(proc.stdout)["issues"]["issues"]
    assert [i for i in issues if i["severity"] == "error"] == []
    assert [i["location"] for i in issues if i["code"] == "SIDECAR_KEY_RECOMMENDED"] == []


def test_sink_rewrites_a_deleted_output_from_a_cached_run(tmp_path):
    """Deleting OUTPUT_DIR and rerunning with the same work dir restores the derivatives."""
    from nipype.pipeline import engine as pe

    from bids_brainage.interfaces.io import DerivativesDataSink

    src = tmp_path / "qc.tsv"
    src.write_text("a\n1\n")
    out = tmp_path / "out"
    for _ in range(2):
        wf = pe.Workflow(name="w", base_dir=str(tmp_path / "work"))
        wf.add_nodes([pe.Node(DerivativesDataSink(
            in_file=str(src), base_directory=str(out), datatype="func", suffix="qc", entities={"sub": "01"},
        ), name="ds")])  # fmt: skip
        wf.run()
        assert (out / "sub-01" / "func" / "sub-01_qc.tsv").read_text() == "a\n1\n"
        shutil.rmtree(out)
