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


def metrics_by_group(frame: pd.DataFrame) -> pd.DataFrame:
    """MAE, mean corrected gap, interval coverage and median interval width by site, sex and
    age tercile (and diagnosis when the frame has a ``diagnosis`` column).

    ``frame`` has ``age``, ``predicted_age``, ``lower``, ``upper``, ``corrected_gap``, ``sex``
    (0/1) and ``site``; rows without age are ignored.
    """
    from bids_brainage.model.calibration import age_terciles

    frame = frame[frame["age"].notna() & frame["predicted_age"].notna()]
    if frame.empty:
        return pd.DataFrame(
            columns=["grouping", "level", "n", "mae", "mean_corrected_gap", "coverage", "median_width"]
        )
    age, pred = frame["age"].to_numpy(float), frame["predicted_age"].to_numpy(float)
    lower, upper = frame["lower"].to_numpy(float), frame["upper"].to_numpy(float)
    gap = frame["corrected_gap"].to_numpy(float)
    groupings = {
        "site": frame["site"].astype(str).to_numpy(),
        "sex": np.where(frame["sex"].to_numpy(float) == 1, "M", "F"),
        "age tercile": age_terciles(age),
    }
    if "diagnosis" in frame:
        groupings["diagnosis"] = frame["diagnosis"].astype(str).to_numpy()
    rows = []
    for grouping, labels in groupings.items():
        for level in sorted(set(labels)):
            sel = labels == level
            rows.append({
                "grouping": grouping, "level": level, "n": int(sel.sum()),
                "mae": float(np.mean(np.abs(pred[sel] - age[sel]))),
                "mean_corrected_gap": float(np.nanmean(gap[sel])),
                "coverage": float(np.mean((age[sel] >= lower[sel]) & (age[sel] <= upper[sel]))),
                "median_width": float(np.median(upper[sel] - lower[sel])),
            })  # fmt: skip
    return pd.DataFrame(rows)
