"""Reliability on the real pipeline: the bad-input matrix, crash and resume, determinism,
and concurrent participant jobs on one OUTPUT_DIR (docs/robustness.md lists every row)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from pipeline_cohort import TRAIN

from bids_brainage.cli.run import main

COMMON = ["--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--random-seed", "1", "--min-time", "40",
          "--skip-bids-validation"]  # fmt: skip


def _save(img: nib.Nifti1Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def _singular_affine(data: np.ndarray) -> nib.Nifti1Image:
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(np.float32)
    singular = np.eye(4)
    singular[:3, 0] = 0
    header.set_sform(singular, code=1)
    header.set_qform(None, code=0)
    return nib.Nifti1Image(data, None, header=header)


def _make_bad_inputs(bids_dir: Path) -> dict[str, str]:
    """Bad subjects (T1w problems) and bad BOLD runs added to sub-001; expected messages."""
    good = nib.load(bids_dir / "sub-001" / "anat" / "sub-001_T1w.nii.gz")
    data = np.asarray(good.dataobj, dtype=np.float32)
    t1w = {label: bids_dir / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz" for label in
           ("empty", "truncated", "fourd", "allnan", "allzero", "singular")}  # fmt: skip
    t1w["empty"].parent.mkdir(parents=True)
    t1w["empty"].write_bytes(b"")
    raw = (bids_dir / "sub-001" / "anat" / "sub-001_T1w.nii.gz").read_bytes()
    t1w["truncated"].parent.mkdir(parents=True)
    t1w["truncated"].write_bytes(raw[: len(raw) // 2])
    _save(nib.Nifti1Image(np.stack([data, data], axis=-1), good.affine), t1w["fourd"])
    _save(nib.Nifti1Image(np.full_like(data, np.nan), good.affine), t1w["allnan"])
    _save(nib.Nifti1Image(np.zeros_like(data), good.affine), t1w["allzero"])
    _save(_singular_affine(data), t1w["singular"])

    func = bids_dir / "sub-001" / "func"
    bold = nib.load(func / "sub-001_task-rest_bold.nii.gz")
    bold_data = np.asarray(bold.dataobj, dtype=np.float32)
    sidecar = json.loads((func / "sub-001_task-rest_bold.json").read_text())
    runs = {
        "run-2": (nib.Nifti1Image(bold_data[..., 0], bold.affine), sidecar),
        "run-3": (nib.Nifti1Image(bold_data[..., :5], bold.affine), sidecar),
        # null overrides the RepetitionTime that sub-001_task-rest_bold.json would pass down.
        "run-4": (bold, {**sidecar, "RepetitionTime": None}),
        "run-5": (
            nib.Nifti1Image(np.where(bold_data > bold_data.mean(), np.nan, bold_data), bold.affine),
            sidecar,
        ),
    }
    for run, (img, meta) in runs.items():
        _save(img, func / f"sub-001_task-rest_{run}_bold.nii.gz")
        (func / f"sub-001_task-rest_{run}_bold.json").write_text(json.dumps(meta))
    boldonly = bids_dir / "sub-boldonly" / "func" / "sub-boldonly_task-rest_bold.nii.gz"
    _save(bold, boldonly)
    boldonly.with_name("sub-boldonly_task-rest_bold.json").write_text(json.dumps(sidecar))
    return {
        "empty": "sub-empty_T1w.nii.gz: cannot be read as a NIfTI image",
        "truncated": "sub-truncated_T1w.nii.gz: cannot be read as a NIfTI image",
        "fourd": "sub-fourd_T1w.nii.gz: is not a 3D image",
        "allnan": "sub-allnan_T1w.nii.gz: contains no finite values",
        "allzero": "sub-allzero_T1w.nii.gz: is empty",
        "singular": "sub-singular_T1w.nii.gz: has a broken affine",
        "boldonly": "sub-boldonly: no T1w image found",
        "001": "",
        "run-2": "sub-001_task-rest_run-2_bold.nii.gz: BOLD must be 4D",
        "run-3": "sub-001_task-rest_run-3_bold.nii.gz: too few volumes",
        "run-4": "sub-001_task-rest_run-4_bold.nii.gz: RepetitionTime is missing",
        "run-5": "sub-001_task-rest_run-5_bold.nii.gz: BOLD contains NaN or infinite values",
    }


@pytest.fixture(scope="module")
def bad_inputs(pipeline_run):
    return _make_bad_inputs(pipeline_run.bids_dir)


def test_bad_input_matrix(pipeline_run, bad_inputs, tmp_path, capfd):
    out = tmp_path / "out"
    labels = [k for k in bad_inputs if not k.startswith("run-")]
    code = main([str(pipeline_run.bids_dir), str(out), "participant", "--participant-label", *labels,
                 "-w", str(pipeline_run.work_dir), *COMMON])  # fmt: skip
    err = capfd.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    failed = [line for line in err.splitlines() if "FAILED " in line]
    for key, message in bad_inputs.items():
        if message:
            assert any(message in line for line in failed), f"{key}: {message!r} not in {failed}"
    # Each bad subject failed cleanly: no derivatives, no temporary files.
    for label in ("empty", "truncated", "fourd", "allnan", "allzero", "singular", "boldonly"):
        assert not (out / f"sub-{label}" / "anat").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    # The good subject still finished: structural features and its good BOLD run.
    assert (out / "sub-001" / "anat" / "sub-001_desc-structural_features.tsv").exists()
    assert len(list((out / "sub-001" / "func").glob("*_desc-functional_features.tsv"))) == 1
    status = json.loads((out / "logs" / "participants" / "sub-001.json").read_text())
    assert len(status["errors"]) == 4


def test_bad_inputs_concurrent_jobs_share_one_output_dir(pipeline_run, bad_inputs, tmp_path):
    """8 participant processes at once on one OUTPUT_DIR (the SLURM-array situation)."""
    out = tmp_path / "out"
    labels = ["empty", "truncated", "fourd", "allnan", "allzero", "singular", "boldonly", "empty"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bids_brainage",
                str(pipeline_run.bids_dir),
                str(out),
                "participant",
                "--participant-label",
                label,
                "-w",
                str(tmp_path / f"work{i}"),
                *COMMON,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i, label in enumerate(labels)
    ]
    errors = [p.communicate(timeout=600)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [1] * 8
    assert all(bad_inputs[label] in err for label, err in zip(labels, errors, strict=True))
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert (out / ".bidsignore").read_text().startswith("*.html")
    for label in set(labels):
        assert (out / "logs" / "participants" / f"sub-{label}.json").exists()
        assert (out / f"sub-{label}.html").exists()
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]


def _outputs(folder: Path) -> dict[str, Path]:
    return {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}


def _assert_same_outputs(a: Path, b: Path) -> None:
    """Same files; JSON and TSV byte-identical; images equal within float tolerance.

    Registration (seeded from --random-seed), Atropos (constant seed), motion
    correction and connectivity repeat exactly on CPU, so the tables are identical; images
    are compared as arrays (their gzip headers may differ).
    """
    files_a, files_b = _outputs(a), _outputs(b)
    assert set(files_a) == set(files_b)
    for name, path in files_a.items():
        other = files_b[name]
        if name.endswith((".json", ".tsv")):
            assert path.read_bytes() == other.read_bytes(), name
        elif name.endswith(".nii.gz"):
            x, y = nib.load(path).get_fdata(), nib.load(other).get_fdata()
            assert x.shape == y.shape, name
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-6, err_msg=name)


def test_sigkill_then_resume_matches_uninterrupted_run(pipeline_run, tmp_path):
    """Kill a participant run mid-way, rerun with the same work dir: outputs match the
    uninterrupted run of the shared fixture (also a reproducibility check across runs)."""
    label = TRAIN[1]
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, "-m", "bids_brainage", str(pipeline_run.bids_dir), str(out), "participant",
           "--participant-label", label, "-w", str(work), *COMMON]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    # Kill once some nodes have finished (their results are cached) but before the end.
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(work.rglob("result_*.pklz"))) >= 4:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "logs" / "participants" / f"sub-{label}.json").exists()
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for datatype in ("anat", "func"):
        _assert_same_outputs(
            pipeline_run.out_dir / f"sub-{label}" / datatype, out / f"sub-{label}" / datatype
        )
    features = pd.read_csv(
        out / f"sub-{label}" / "anat" / f"sub-{label}_desc-structural_features.tsv", sep="\t"
    )
    assert features.notna().all(axis=None)
