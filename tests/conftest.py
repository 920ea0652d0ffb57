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
