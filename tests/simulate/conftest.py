"""Small simulated datasets shared by the simulator tests (4 mm T1w, 4 mm BOLD, few volumes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bids_brainage.simulate import simulate_dataset

TINY = {"resolution": 4.0, "bold_resolution": 4.0, "n_volumes": 10}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three subjects, two sites, two sessions 30 years apart (a within-subject ageing contrast)."""
    out = tmp_path_factory.mktemp("sim") / "bids"
    return simulate_dataset(
        out, n_subjects=3, seed=11, n_sites=2, sessions=2, session_interval=30.0, age_range=(20, 50), **TINY
    )


@pytest.fixture(scope="session")
def still_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One noise-free subject with large head motion, 3 mm BOLD (for re-estimating the motion)."""
    out = tmp_path_factory.mktemp("still") / "bids"
    return simulate_dataset(
        out,
        n_subjects=1,
        seed=3,
        resolution=4.0,
        n_volumes=12,
        noise_scale=0.0,
        motion_scale=6.0,
        age_range=(30, 30),
    )
