"""Shared fixtures: paths to the real test data (read-only) and small helpers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/data/real`` (never written to: copy first when a tool needs a writable tree)."""
    if not REAL_DATA.is_dir():
        raise FileNotFoundError(f"real test data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def ixi10_copy(tmp_path: Path, real_data: Path) -> Path:
    """A writable copy of the ixi10 dataset."""
    dst = tmp_path / "ixi10"
    shutil.copytree(real_data / "ixi10", dst)
    return dst


@pytest.fixture(scope="module")
def real_data_session(tmp_path_factory, real_data):
    """(layout, bold file, its sidecar) on a writable copy of pumi without field maps."""
    from bids_brainage import bids

    root = tmp_path_factory.mktemp("pumi") / "pumi"
    shutil.copytree(
        real_data / "pumi", root, ignore=shutil.ignore_patterns("fmap", "*variant*", "task-rest_bold.json")
    )
    layout = bids.load_layout(root)
    bold = layout.get(suffix="bold", extension=".nii.gz", return_type="filename")[0]
    return layout, bold, root / "sub-001" / "func" / "sub-001_task-rest_bold.json"
