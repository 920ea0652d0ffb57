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
