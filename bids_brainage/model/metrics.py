"""Accuracy metrics for brain-age predictions, overall, by decade of age and by sex."""

from __future__ import annotations

import numpy as np
import pandas as pd

METRIC_COLUMNS = ("n", "mae", "rmse", "pearson_r", "r2", "corrected_gap_age_r")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def regression_metrics(
    age: np.ndarray, pred: np.ndarray, corrected_gap: np.ndarray | None = None
) -> dict[str, float]:
    """MAE, RMSE, Pearson r, R² and the correlation of the corrected gap with age.

    A good bias correction leaves ``corrected_gap_age_r`` near 0; the raw gap of any
    regressor correlates negatively with age (regression to the mean).
    """
    age, pred = np.asarray(age, float), np.asarray(pred, float)
    err = pred - age
    ss_tot = float(((age - age.mean()) ** 2).sum())
    return {
        "n": int(len(age)),
        "mae": float(np.abs(err).mean()) if len(age) else float("nan"),
        "rmse": float(np.sqrt((err**2).mean())) if len(age) else float("nan"),
        "pearson_r": _corr(age, pred),
        "r2": float(1 - (err**2).sum() / ss_tot) if ss_tot > 0 else float("nan"),
        "corrected_gap_age_r": _corr(age, np.asarray(corrected_gap, float))
        if corrected_gap is not None
        else float("nan"),
    }


def metrics_table(
    age: np.ndarray, pred: np.ndarray, sex: np.ndarray | None = None, corrected_gap: np.ndarray | None = None
) -> pd.DataFrame:
    """Metrics overall (``group == "all"``), per decade of age (``age 20-29``) and per sex.

    Returns
    -------
    pandas.DataFrame
        One row per group with the columns ``group`` and `METRIC_COLUMNS`.
    """
    age, pred = np.asarray(age, float), np.asarray(pred, float)
    cg = None if corrected_gap is None else np.asarray(corrected_gap, float)
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(age), bool))]
    decade = (np.floor(age / 10) * 10).astype(int)
    groups += [(f"age {d}-{d + 9}", decade == d) for d in np.unique(decade)]
    if sex is not None:
        sex = np.asarray(sex, float)
        groups += [(label, sex == v) for v, label in ((0.0, "sex F/0"), (1.0, "sex M/1")) if (sex == v).any()]
    rows = [
        {"group": g, **regression_metrics(age[m], pred[m], None if cg is None else cg[m])} for g, m in groups
    ]
    return pd.DataFrame(rows, columns=["group", *METRIC_COLUMNS])
