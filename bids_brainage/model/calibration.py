"""Age-bias correction of the brain-age gap and split-conformal prediction intervals.

Both are fitted on training data only. In cross-validation, the correction and the
interval width applied to fold k are estimated from the out-of-fold predictions of the
*other* folds (cross-fitting), so no label of fold k is used to correct fold k.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BiasCorrector:
    """Remove the dependence of the brain-age gap on chronological age.

    ``linear`` (Beheshti et al. 2019): fit gap = a·age + b on training data; the corrected
    gap is gap − (a·age + b). ``quadratic`` (Smith et al. 2019): gap = a·age + c·age² + b.
    The correction needs the true age, so it applies to gaps, not to age-free predictions.
    """

    kind: str = "linear"
    coef: list[float] = field(default_factory=list)  # highest power first, as np.polyfit

    def __post_init__(self) -> None:
        if self.kind not in {"linear", "quadratic", "none"}:
            raise ValueError(f"unknown bias correction {self.kind!r}")

    def fit(self, age: np.ndarray, pred: np.ndarray) -> BiasCorrector:
        age, gap = np.asarray(age, float), np.asarray(pred, float) - np.asarray(age, float)
        deg = {"none": 0, "linear": 1, "quadratic": 2}[self.kind]
        self.coef = [0.0] if deg == 0 else [float(c) for c in np.polyfit(age, gap, deg)]
        return self

    def expected_gap(self, age: np.ndarray) -> np.ndarray:
        return np.polyval(self.coef, np.asarray(age, float))

    def corrected_gap(self, age: np.ndarray, pred: np.ndarray) -> np.ndarray:
        """Gap minus the gap expected at that age."""
        age = np.asarray(age, float)
        return np.asarray(pred, float) - age - self.expected_gap(age)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "coef": list(self.coef)}


@dataclass
class ConformalInterval:
    """Split-conformal interval predicted_age ± q, q from absolute out-of-fold residuals.

    With n calibration residuals, q is their ⌈(n+1)(1−α)⌉-th smallest value, which gives
    marginal coverage ≥ 1−α for exchangeable subjects.
    """

    alpha: float = 0.1
    half_width: float = float("nan")
    n_calibration: int = 0

    def fit(self, age: np.ndarray, pred: np.ndarray) -> ConformalInterval:
        res = np.sort(np.abs(np.asarray(pred, float) - np.asarray(age, float)))
        n = len(res)
        k = math.ceil((n + 1) * (1 - self.alpha))
        self.half_width = float(res[min(k, n) - 1]) if n else float("nan")
        self.n_calibration = n
        return self

    def interval(self, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pred = np.asarray(pred, float)
        return pred - self.half_width, pred + self.half_width

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "half_width": self.half_width, "n_calibration": self.n_calibration}


def cross_fitted(
    age: np.ndarray, pred: np.ndarray, folds: np.ndarray, bias_kind: str = "linear", alpha: float = 0.1
) -> dict[str, np.ndarray | float]:
    """Corrected gaps and interval bounds for out-of-fold predictions, fold by fold.

    Parameters
    ----------
    age, pred
        Chronological age and out-of-fold prediction for every subject.
    folds
        Fold index of every subject (the fold in which it was held out).

    Returns
    -------
    dict
        ``corrected_gap``, ``lower``, ``upper`` (arrays) and ``coverage`` (the fraction of
        subjects whose age falls inside their interval).
    """
    age, pred, folds = np.asarray(age, float), np.asarray(pred, float), np.asarray(folds)
    cgap, lo, hi = np.empty_like(age), np.empty_like(age), np.empty_like(age)
    for k in np.unique(folds):
        test, train = folds == k, folds != k
        bc = BiasCorrector(bias_kind).fit(age[train], pred[train])
        ci = ConformalInterval(alpha).fit(age[train], pred[train])
        cgap[test] = bc.corrected_gap(age[test], pred[test])
        lo[test], hi[test] = ci.interval(pred[test])
    coverage = float(((age >= lo) & (age <= hi)).mean())
    return {"corrected_gap": cgap, "lower": lo, "upper": hi, "coverage": coverage}
