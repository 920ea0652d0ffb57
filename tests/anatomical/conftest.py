"""Session fixtures: the real anatomical workflow run once per dataset (sloppy, and IXI012 at 1 mm)."""

from __future__ import annotations

import pytest
from anat_runner import REAL_DATA, AnatRun, rerun, run_anat


def _real(name: str) -> object:
    root = REAL_DATA / name
    if not root.is_dir():
        raise FileNotFoundError(f"real test data {name} not found next to the project: {root}")
    return root


@pytest.fixture(scope="session")
def ixi_run(tmp_path_factory) -> AnatRun:
    """IXI012 (ixi10), run twice with the same work dir (the second run must be cached)."""
    root = _real("ixi10")
    base = tmp_path_factory.mktemp("anat_ixi")
    run = run_anat(root, "IXI012", base / "out", base / "work")
    t1w = root / "sub-IXI012" / "anat" / "sub-IXI012_T1w.nii.gz"
    rerun(run, root, t1w, session=None, sloppy=True, omp_nthreads=2)
    return run


@pytest.fixture(scope="session")
def pumi_run(tmp_path_factory) -> AnatRun:
    """sub-001 of pumi (a different scanner, orientation and intensity range)."""
    root = _real("pumi")
    base = tmp_path_factory.mktemp("anat_pumi")
    return run_anat(root, "001", base / "out", base / "work")


@pytest.fixture(scope="session")
def ixi_default_run(tmp_path_factory) -> AnatRun:
    """IXI012 in the default (1 mm) mode, which users run: the accuracy checks apply to it too."""
    base = tmp_path_factory.mktemp("anat_ixi_default")
    return run_anat(_real("ixi10"), "IXI012", base / "out", base / "work", sloppy=False)


@pytest.fixture(scope="session")
def nichart_run(tmp_path_factory) -> AnatRun:
    """sub-S3 of nichart12 (82 years, 2 mm): an atrophied brain with a DLMUSE reference.

    Before the brain-to-brain affine its template fit slid backwards (brain mask Dice with the
    DLMUSE intracranial mask 0.77) and its GM/WM classes swapped.
    """
    base = tmp_path_factory.mktemp("anat_nichart")
    return run_anat(_real("nichart12"), "S3", base / "out", base / "work")
