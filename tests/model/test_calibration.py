"""Bias correction, conformal intervals and metrics."""

from __future__ import annotations

import numpy as np

from bids_brainage.model.calibration import BiasCorrector, ConformalInterval, cross_fitted
from bids_brainage.model.metrics import metrics_table, regression_metrics


def _shrunk_predictions(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.uniform(10, 90, n)
    pred = 0.7 * age + 15 + rng.normal(0, 5, n)  # regression to the mean, like any regressor
    return age, pred


def test_linear_bias_correction_removes_age_dependence():
    age, pred = _shrunk_predictions()
    raw_r = np.corrcoef(age, pred - age)[0, 1]
    bc = BiasCorrector("linear").fit(age, pred)
    assert raw_r < -0.5
    assert abs(np.corrcoef(age, bc.corrected_gap(age, pred))[0, 1]) < 1e-6
    quad = BiasCorrector("quadratic").fit(age, pred)
    assert len(quad.coef) == 3


def test_conformal_coverage_cross_fitted():
    age, pred = _shrunk_predictions()
    folds = np.arange(len(age)) % 5
    out = cross_fitted(age, pred, folds, alpha=0.1)
    assert 0.87 <= out["coverage"] <= 0.93
    assert abs(np.corrcoef(age, out["corrected_gap"])[0, 1]) < 0.1
    ci = ConformalInterval(0.2).fit(age, pred)
    lo, hi = ci.interval(pred)
    assert 0.77 <= ((age >= lo) & (age <= hi)).mean() <= 0.83


def test_metrics():
    age = np.array([20.0, 30.0, 40.0, 50.0])
    m = regression_metrics(age, age + np.array([1, -1, 1, -1]))
    assert m["mae"] == 1 and m["rmse"] == 1 and m["n"] == 4 and m["r2"] > 0.9
    table = metrics_table(age, age + 1, sex=np.array([0, 1, 0, 1]), corrected_gap=np.zeros(4))
    assert table["group"].tolist() == [
        "all",
        "age 20-29",
        "age 30-39",
        "age 40-49",
        "age 50-59",
        "sex F/0",
        "sex M/1",
    ]


def _heteroscedastic(n=3000, seed=0):
    """Errors that grow with age, as in real brain-age data."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(5, 90, n)
    pred = age + rng.normal(0, 1 + 0.1 * age)
    return age, pred


def test_adaptive_interval_covers_every_age_tercile():
    """Normalised conformal: ~90 % in each age tercile, narrower where errors are small; the
    constant interval over-covers the young and under-covers the old."""
    from bids_brainage.model.calibration import age_terciles, coverage_by_group

    age, pred = _heteroscedastic()
    folds = np.arange(len(age)) % 5
    by = {}
    for kind in ("constant", "normalised"):
        out = cross_fitted(age, pred, folds, alpha=0.1, interval_kind=kind)
        rows = coverage_by_group(age, out["lower"], out["upper"], {"tercile": age_terciles(age)})
        by[kind] = {r["level"]: r for r in rows}
    for level in ("1 young", "2 middle", "3 old"):
        assert 0.87 <= by["normalised"][level]["coverage"] <= 0.93, (level, by["normalised"][level])
    assert by["constant"]["3 old"]["coverage"] < 0.85 and by["constant"]["1 young"]["coverage"] > 0.97
    assert by["normalised"]["all"]["median_width"] < by["constant"]["all"]["median_width"]
    assert by["normalised"]["1 young"]["median_width"] < 0.6 * by["normalised"]["3 old"]["median_width"]


def test_interval_bounds_never_below_zero_and_round_trip():
    from bids_brainage.model.calibration import AdaptiveInterval, interval_from_dict

    rng = np.random.default_rng(1)
    age = rng.uniform(2, 12, 400)
    pred = age + rng.normal(0, 4, 400)  # wide errors for children: unclipped bounds go below 0
    interval = AdaptiveInterval(0.1).fit(age, pred)
    lower, upper = interval.interval(np.array([0.5, 3.0, 11.0, np.nan]))
    assert np.all(lower[:3] >= 0) and np.all(upper[:3] > lower[:3]) and np.isnan(lower[3])
    again = interval_from_dict(interval.to_dict())
    np.testing.assert_allclose(again.interval(pred)[0], interval.interval(pred)[0])
    # Bundles written before adaptive intervals hold a constant one; they still load.
    old = interval_from_dict({"alpha": 0.1, "half_width": 5.0, "n_calibration": 10})
    assert isinstance(old, ConformalInterval) and old.interval(np.array([30.0]))[0][0] == 25.0


def _regressing_to_the_mean(n=3000, seed=0):
    """Predictions shrunk towards the mean age, with errors that grow with age (real brain age)."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(5, 90, n)
    pred = age.mean() + 0.75 * (age - age.mean()) + rng.normal(0, 1 + 0.08 * age)
    return age, pred


def test_age_conditional_interval_covers_every_age_tercile_where_normalised_fails():
    """Calibrated within age bins: ~90 % in each age tercile even when predictions regress to
    the mean, which leaves the normalised interval under-covering the oldest third."""
    from bids_brainage.model.calibration import age_terciles, coverage_by_group

    age, pred = _regressing_to_the_mean()
    folds = np.arange(len(age)) % 5
    by = {}
    for kind in ("normalised", "age_conditional"):
        out = cross_fitted(age, pred, folds, alpha=0.1, interval_kind=kind)
        rows = coverage_by_group(age, out["lower"], out["upper"], {"tercile": age_terciles(age)})
        by[kind] = {r["level"]: r for r in rows}
    assert by["normalised"]["3 old"]["coverage"] < 0.85
    for level in ("1 young", "2 middle", "3 old"):
        assert 0.87 <= by["age_conditional"][level]["coverage"] <= 0.93, (level, by["age_conditional"][level])
    assert by["age_conditional"]["all"]["median_width"] < by["normalised"]["all"]["median_width"]


def test_age_conditional_interval_bins_bounds_and_people_without_age():
    from bids_brainage.defaults import INTERVAL_AGE_BINS, INTERVAL_MIN_BIN_SIZE
    from bids_brainage.model.calibration import AgeConditionalInterval, interval_from_dict

    age, pred = _regressing_to_the_mean(n=2000, seed=2)
    interval = AgeConditionalInterval(0.1).fit(age, pred)
    assert len(interval.edges) + 1 == INTERVAL_AGE_BINS
    assert min(len(s) for s in interval.scores) >= INTERVAL_MIN_BIN_SIZE
    # Too few people for more than one bin: one width for everyone.
    small = AgeConditionalInterval(0.1).fit(
        age[: INTERVAL_MIN_BIN_SIZE + 5], pred[: INTERVAL_MIN_BIN_SIZE + 5]
    )
    assert small.edges == [] and len(small.scores) == 1
    # A child's interval never goes below 0; a person without an age gets the interval given
    # the predicted age (the stored normalised one), and says so.
    query_pred = np.array([1.0, 60.0, 60.0, np.nan])
    query_age = np.array([3.0, 80.0, np.nan, 40.0])
    lower, upper = interval.interval(query_pred, query_age)
    assert lower[0] >= 0 and np.all(upper[:3] > lower[:3]) and np.isnan(lower[3])
    expected = interval.without_age.interval(query_pred[2:3])
    assert (lower[2], upper[2]) == (expected[0][0], expected[1][0])
    assert list(interval.conditioned_on(query_age)[:3]) == ["age", "age", "predicted age"]
    again = interval_from_dict(interval.to_dict())
    np.testing.assert_allclose(again.interval(query_pred, query_age)[0], lower)
