"""Feature-level generator: non-linear published lifespan curves, sex x age, shared latent traits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_brainage.simulate import simulate_features
from bids_brainage.simulate.connectivity import network_model, subject_connectivity
from bids_brainage.simulate.lifespan import GM_PEAK, grey_matter_factor, ventricle_factor


@pytest.fixture(scope="module")
def cohort() -> pd.DataFrame:
    """A lifespan cohort (8-85 y) with its hidden truth."""
    return simulate_features(2000, seed=5, n_rois=20, include_truth=True)


def _residual(y: np.ndarray, covariates: list[np.ndarray]) -> np.ndarray:
    design = np.column_stack([np.ones(len(y)), *covariates])
    return y - design @ np.linalg.lstsq(design, y, rcond=None)[0]


def _within_network(table: pd.DataFrame) -> pd.Series:
    """Mean within-network connectivity (both ROIs of one network, ``unassigned`` excluded)."""
    cols = []
    for col in table.columns[table.columns.str.startswith("fmri__")]:
        _, a, b = col.split("__")
        net_a, net_b = a.split("_", 1)[1], b.split("_", 1)[1]
        if net_a == net_b != "unassigned":
            cols.append(col)
    assert len(cols) >= 3
    return table[cols].mean(axis=1)


def test_curves_peak_where_the_normative_charts_do() -> None:
    ages = np.linspace(1, 90, 891)
    for sex in "FM":
        peak = ages[np.argmax(grey_matter_factor(ages, sex))]
        assert peak == pytest.approx(GM_PEAK[sex], abs=0.2)
    # Bethlehem et al. 2022: GM peaks at 5.9 y (pooled); girls earlier than boys (Lenroot 2007).
    assert 5.0 < np.mean(list(GM_PEAK.values())) < 7.0 and GM_PEAK["F"] < GM_PEAK["M"]
    # Ventricles: slow in young adults, steep after 60.
    young, old = np.diff(np.log(ventricle_factor(np.array([25.0, 45.0, 65.0, 85.0]))))[[0, 2]]
    assert old > 2.5 * young


def test_grey_matter_peaks_in_childhood_in_the_table() -> None:
    kids = simulate_features(600, seed=3, age_range=(1.5, 20.0), gap_sd=0.0, n_rois=4)
    rel = kids.smri__GM_total / kids.smri__TIV
    binned = rel.groupby(pd.cut(kids.age, [1.5, 4, 8, 12, 16, 20]), observed=True).mean()
    # GM fraction of TIV rises to early childhood, then falls through adolescence.
    assert binned.iloc[1] > binned.iloc[0] and binned.iloc[1] > binned.iloc[3] > binned.iloc[4]


def test_trajectories_are_not_linear(cohort: pd.DataFrame) -> None:
    age = cohort.age.to_numpy()
    centred_sq = (age - age.mean()) ** 2
    wm = (cohort.smri__WM_total / cohort.smri__TIV).to_numpy()
    csf = (cohort.smri__CSF_total / cohort.smri__TIV).to_numpy()
    fc = _within_network(cohort).to_numpy()
    # Residuals of a straight-line fit on age still depend on age^2.
    assert np.corrcoef(_residual(wm, [age]), centred_sq)[0, 1] < -0.3  # inverted U
    assert np.corrcoef(_residual(csf, [age]), centred_sq)[0, 1] > 0.2  # accelerating rise
    assert np.corrcoef(_residual(fc, [age]), centred_sq)[0, 1] < -0.15  # rises, then falls faster
    # White matter peaks in adulthood (Bethlehem 2022: 28.7 y), not at an end of the range.
    by_decade = pd.Series(cohort.smri__WM_total.to_numpy()).groupby((age // 10).astype(int)).mean()
    assert 2 <= by_decade.idxmax() <= 4


def test_sex_by_age_interaction(cohort: pd.DataFrame) -> None:
    adults = cohort[cohort.biological_age > 30]
    rel = adults.smri__GM_total / adults.smri__TIV
    slopes = {s: np.polyfit(adults.age[adults.sex == s], rel[adults.sex == s], 1)[0] for s in "FM"}
    assert slopes["M"] < slopes["F"] < 0  # men's grey matter declines faster (Good 2001)
    # Not only an offset: the curves themselves differ in slope, and in childhood in peak age.
    ages = np.array([40.0, 70.0])
    drop = {s: np.diff(np.log(grey_matter_factor(ages, s)))[0] for s in "FM"}
    assert drop["M"] == pytest.approx(1.1 * drop["F"])
    dmn = network_model().networks.index("DefaultMode")
    change = {}
    for sex in "FM":
        w = [subject_connectivity(age, sex, np.random.default_rng(1)).within[dmn] for age in (30.0, 75.0)]
        change[sex] = w[1] - w[0]
    assert change["M"] < change["F"] < 0


def test_shared_latent_traits_reach_both_modalities(cohort: pd.DataFrame) -> None:
    """A structural and a functional feature correlate beyond age, through the latent traits."""
    age = cohort.age.to_numpy()
    male = (cohort.sex == "M").to_numpy(float)
    gm = (cohort.smri__GM_total / cohort.smri__TIV).to_numpy()
    fc = _within_network(cohort).to_numpy()
    given_age = [age, age**2, age**3, male, male * age]
    partial = np.corrcoef(_residual(gm, given_age), _residual(fc, given_age))[0, 1]
    assert partial > 0.2
    bio = cohort.biological_age.to_numpy()
    pace, reserve = cohort.latent_pace.to_numpy(), cohort.latent_reserve.to_numpy()
    given_truth = [*given_age, bio, bio**2, bio**3, reserve, pace, pace * bio, pace * bio**2]
    remaining = np.corrcoef(_residual(gm, given_truth), _residual(fc, given_truth))[0, 1]
    assert abs(remaining) < 0.5 * partial
    # Each trait on its own reaches both modalities (given age and sex).
    for trait in (reserve, pace):
        for feature in (gm, fc):
            assert abs(np.corrcoef(_residual(feature, given_age), trait)[0, 1]) > 0.1


def test_feature_tables_are_reproducible_from_the_seed() -> None:
    first = simulate_features(30, seed=9, n_rois=6, include_truth=True)
    again = simulate_features(30, seed=9, n_rois=6, include_truth=True)
    pd.testing.assert_frame_equal(first, again)
    other = simulate_features(30, seed=10, n_rois=6, include_truth=True)
    assert not np.allclose(first.latent_reserve, other.latent_reserve)
    # A subject's age and latent traits do not depend on how many others are simulated.
    cols = ["age", "latent_reserve", "latent_pace"]
    fewer = simulate_features(10, seed=9, n_rois=6, include_truth=True)
    pd.testing.assert_frame_equal(fewer[cols], first[cols].iloc[:10])
