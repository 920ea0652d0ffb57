"""Derivative skeleton, names, atomic and concurrent writes, validator on the skeleton."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from bids_brainage import derivatives
from bids_brainage.bids import run_validator
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
                                       atlas="Seitzman300", stat="pearsoncorrelation")  # fmt: skip
    assert path == Path(
        "/o/sub-01/func/sub-01_task-rest_atlas-Seitzman300_stat-pearsoncorrelation_relmat.tsv"
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
