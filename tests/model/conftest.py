"""Fixtures for the model tests: small simulated tables and a tiny, fast training schedule."""

from __future__ import annotations

import pandas as pd
import pytest

from bids_brainage.model.synthetic import simulate_feature_table
from bids_brainage.model.train import TrainSettings

# A few epochs are enough to exercise every code path; accuracy is checked in benchmarks/.
TINY = TrainSettings(max_epochs=4, batch_size=64, patience=2)


@pytest.fixture(scope="session")
def small_table() -> pd.DataFrame:
    """120 subjects, 12 structural + 60 functional features, 3 sites."""
    return simulate_feature_table(n=120, d_s=12, d_f=60, seed=1)


@pytest.fixture(scope="session")
def missing_table() -> pd.DataFrame:
    """Like `small_table` but a third of the subjects have no usable fMRI."""
    return simulate_feature_table(n=120, d_s=12, d_f=60, seed=2, missing_fmri=0.33)


@pytest.fixture
def tiny() -> TrainSettings:
    return TrainSettings(**TINY.to_dict())
