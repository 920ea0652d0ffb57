"""Fixtures of the functional tests: one simulated subject, run once through the workflow."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures import run_func_wf

PUMI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "pumi"


@pytest.fixture(scope="session")
def simulated(tmp_path_factory):
    """A one-subject simulated BIDS dataset (2 mm T1w, 3 mm BOLD, 150 volumes)."""
    from bids_brainage.simulate import simulate_dataset

    root = tmp_path_factory.mktemp("sim") / "bids"
    simulate_dataset(root, 1, seed=11, resolution=2.0, n_volumes=150)
    return root


@pytest.fixture(scope="session")
def simulated_run(simulated, tmp_path_factory):
    """The functional workflow run on the simulated subject: (bids root, output dir, work dir, anat inputs)."""
    from fixtures import anat_inputs_from_truth

    base = tmp_path_factory.mktemp("func_sim")
    anat = anat_inputs_from_truth(simulated, "001", base / "anat")
    out, work = base / "out", base / "work"
    bold = simulated / "sub-001" / "func" / "sub-001_task-rest_bold.nii.gz"
    import time

    start = time.monotonic()
    run_func_wf(bold, simulated, out, work, anat, "001")
    elapsed = time.monotonic() - start
    return {"bids": simulated, "out": out, "work": work, "anat": anat, "seconds": elapsed}


@pytest.fixture
def pumi_copy(tmp_path):
    """Writable copy of the real pumi dataset without field maps (never write into the original)."""
    if not PUMI.is_dir():
        raise FileNotFoundError(f"real test data not found: {PUMI}")
    dst = tmp_path / "pumi"
    shutil.copytree(PUMI, dst, ignore=shutil.ignore_patterns("fmap", "*variant*"))
    return dst
