"""Age-bias correction of the brain-age gap and conformal prediction intervals.

Both are fitted on training data only. In cross-validation, the correction and the
interval width applied to fold k are estimated from the out-of-fold predictions of the
*other* folds (cross-fitting), so no label of fold k is used to correct fold k.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bids_brainage.defaults import (
    DEFAULT_ALPHA,
    DEFAULT_INTERVAL,
    INTERVAL_AGE_BINS,
    INTERVAL_KINDS,
    INTERVAL_MIN_BIN_SIZE,
    PLAUSIBLE_AGE_YEARS,
)

LOGGER = logging.getLogger("bids_brainage.model")

#: People below which a quadratic age-bias correction is replaced by a line.
MIN_QUADRATIC_N = 30


@dataclass
class BiasCorrector:
    """Remove the dependence of the brain-age gap on chronological age.

    ``linear`` (Beheshti et al. 2019): fit gap = a·age + b on training data; the corrected
    gap is gap − (a·age + b). ``quadratic`` (Smith et al. 2019): gap = a·age + c·age² + b.
    The correction needs the true age, so it applies to gaps, not to age-free predictions.
    A quadratic fitted to fewer than :data:`MIN_QUADRATIC_N` people bends wildly at the
    ends of the age range, so with fewer the line is fitted instead; ``coef`` (two values
    for a line) and a warning say so.
    """

    kind: str = "linear"
    coef: list[float] = field(default_factory=list)  # highest power first, as np.polyfit

    def __post_init__(self) -> None:
        if self.kind not in {"linear", "quadratic", "none"}:
            raise ValueError(f"unknown bias correction {self.kind!r}")

    def fit(self, age: np.ndarray, pred: np.ndarray) -> BiasCorrector:
        age, gap = np.asarray(age, float), np.asarray(pred, float) - np.asarray(age, float)
        deg = {"none": 0, "linear": 1, "quadratic": 2}[self.kind]
        if deg == 2 and len(age) < MIN_QUADRATIC_N:
            LOGGER.warning(
                "quadratic bias correction needs %d people, %d given: a linear one is fitted",
                MIN_QUADRATIC_N,
                len(age),
            )
            deg = 1
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


def _plausible_bounds(regressor: Any, pred: np.ndarray, alpha: float, **kwargs: Any) -> np.ndarray:
    """(n, 2) bounds of a fitted crepes ``ConformalRegressor`` at 1−α, clipped to
    ``PLAUSIBLE_AGE_YEARS`` (``kwargs``: its ``sigmas`` or ``bins``)."""
    low, high = PLAUSIBLE_AGE_YEARS
    return regressor.predict_int(pred, confidence=1 - alpha, y_min=low, y_max=high, **kwargs)


@dataclass
class ConformalInterval:
    """Split-conformal interval predicted_age ± q, q from absolute out-of-fold residuals.

    With n calibration residuals, q is their ⌈(n+1)(1−α)⌉-th smallest value, which gives
    marginal coverage ≥ 1−α for exchangeable subjects.
    """

    alpha: float = DEFAULT_ALPHA
    half_width: float = float("nan")
    n_calibration: int = 0

    def fit(self, age: np.ndarray, pred: np.ndarray) -> ConformalInterval:
        res = np.sort(np.abs(np.asarray(pred, float) - np.asarray(age, float)))
        n = len(res)
        k = math.ceil((n + 1) * (1 - self.alpha))
        self.half_width = float(res[min(k, n) - 1]) if n else float("nan")
        self.n_calibration = n
        return self

    def interval(self, pred: np.ndarray, age: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``pred ± q`` (``age`` is not used: the same width for everyone)."""
        pred = np.asarray(pred, float)
        return pred - self.half_width, pred + self.half_width

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "half_width": self.half_width, "n_calibration": self.n_calibration}


@dataclass
class ErrorScale:
    """A model of the expected absolute error as a function of the predicted age.

    Brain-age errors grow with age and differ between cohorts, so one width for everyone is
    too wide for a child and too narrow for an older adult. The scale is a least-squares line
    of the absolute residuals on the predicted age, evaluated with the predicted age clipped
    to the range it was fitted on (no extrapolation) and floored at a fifth of the median
    absolute residual (a line may approach 0 at one end).
    """

    coef: list[float] = field(default_factory=list)  # slope, intercept (np.polyfit order)
    pred_range: list[float] = field(default_factory=list)
    floor: float = float("nan")

    def fit(self, age: np.ndarray, pred: np.ndarray) -> ErrorScale:
        pred = np.asarray(pred, float)
        abs_res = np.abs(pred - np.asarray(age, float))
        self.coef = [float(c) for c in np.polyfit(pred, abs_res, 1)]
        self.pred_range = [float(pred.min()), float(pred.max())]
        self.floor = max(float(np.median(abs_res)) / 5, 1e-3)
        return self

    def __call__(self, pred: np.ndarray) -> np.ndarray:
        clipped = np.clip(np.asarray(pred, float), *self.pred_range)
        return np.maximum(np.polyval(self.coef, clipped), self.floor)

    def to_dict(self) -> dict:
        return {"coef": list(self.coef), "pred_range": list(self.pred_range), "floor": self.floor}


@dataclass
class AdaptiveInterval:
    """Normalised split-conformal interval: predicted_age ± q·σ(predicted_age).

    σ is :class:`ErrorScale`; q comes from the calibration residuals divided by their σ
    (crepes' normalised ``ConformalRegressor``), which keeps marginal coverage ≥ 1−α for
    exchangeable subjects while the width follows the expected error. Bounds are clipped to
    ``PLAUSIBLE_AGE_YEARS`` (no negative ages).
    """

    alpha: float = DEFAULT_ALPHA
    scale: ErrorScale = field(default_factory=ErrorScale)
    #: Sorted normalised calibration scores |residual| / σ (crepes' ``alphas``).
    scores: list[float] = field(default_factory=list)

    def fit(self, age: np.ndarray, pred: np.ndarray) -> AdaptiveInterval:
        age, pred = np.asarray(age, float), np.asarray(pred, float)
        self.scale = ErrorScale().fit(age, pred)
        self.scores = [float(s) for s in self._regressor(age - pred, self.scale(pred)).alphas]
        return self

    @staticmethod
    def _regressor(residuals: np.ndarray, sigmas: np.ndarray) -> Any:
        from crepes import ConformalRegressor

        return ConformalRegressor().fit(residuals=residuals, sigmas=sigmas)

    @property
    def n_calibration(self) -> int:
        return len(self.scores)

    def interval(self, pred: np.ndarray, age: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``pred ± q·σ(pred)``, clipped (``age`` is not used: the width depends on ``pred``)."""
        pred = np.asarray(pred, float)
        lower, upper = np.full(pred.shape, np.nan), np.full(pred.shape, np.nan)
        ok = np.isfinite(pred)
        if ok.any() and self.scores:
            # crepes' normalised regressor from the stored scores (residual/σ; the sign does not matter).
            regressor = self._regressor(np.asarray(self.scores), np.ones(len(self.scores)))
            bounds = _plausible_bounds(regressor, pred[ok], self.alpha, sigmas=self.scale(pred[ok]))
            lower[ok], upper[ok] = bounds[:, 0], bounds[:, 1]
        return lower, upper

    def to_dict(self) -> dict:
        return {
            "kind": "normalised",
            "alpha": self.alpha,
            "scale": self.scale.to_dict(),
            "scores": list(self.scores),
            "n_calibration": self.n_calibration,
        }

    @classmethod
    def from_dict(cls, data: dict) -> AdaptiveInterval:
        return cls(alpha=float(data["alpha"]), scale=ErrorScale(**data["scale"]), scores=list(data["scores"]))


@dataclass
class AgeConditionalInterval:
    """Mondrian split-conformal interval in bins of chronological age (the default).

    The calibration people are split into quantile bins of their chronological age (up to
    :data:`INTERVAL_AGE_BINS`, at least :data:`INTERVAL_MIN_BIN_SIZE` people per bin), and
    each bin is calibrated on its own residuals (crepes' Mondrian
    ``ConformalRegressor``): a person's interval is ``pred ± q`` with q the conformal quantile
    of the absolute residuals in the bin of their age, clipped to ``PLAUSIBLE_AGE_YEARS``.
    (Asymmetric bounds from the signed residuals, crepes' ``ConformalPredictiveSystem``, were
    narrower for the oldest people but under-covered young adults of held-out sites: see
    docs/benchmarks.md, uncertainty section.) Coverage ≥ 1−α holds within every bin, not only on
    average: an interval given the prediction alone under-covers the oldest people, whose
    predictions regress towards the training mean. Brain-age studies know every person's age
    (the gap needs it); a person without one gets the :class:`AdaptiveInterval` stored as
    ``without_age`` (coverage on average only), and :meth:`conditioned_on` says which.
    """

    alpha: float = DEFAULT_ALPHA
    #: Inner bin edges (years); ``len(edges) + 1`` bins.
    edges: list[float] = field(default_factory=list)
    #: Sorted absolute calibration residuals per bin (crepes' Mondrian ``alphas``).
    scores: list[list[float]] = field(default_factory=list)
    without_age: AdaptiveInterval = field(default_factory=AdaptiveInterval)

    def fit(self, age: np.ndarray, pred: np.ndarray) -> AgeConditionalInterval:
        age, pred = np.asarray(age, float), np.asarray(pred, float)
        n_bins = int(np.clip(len(age) // INTERVAL_MIN_BIN_SIZE, 1, INTERVAL_AGE_BINS))
        while True:
            # Ties (ages in whole years) can leave a quantile bin short: then use fewer bins.
            self.edges = [float(e) for e in np.unique(np.quantile(age, np.linspace(0, 1, n_bins + 1)[1:-1]))]
            counts = np.bincount(self._bins(age), minlength=len(self.edges) + 1)
            if n_bins == 1 or counts.min() >= INTERVAL_MIN_BIN_SIZE:
                break
            n_bins -= 1
        bins = self._bins(age)
        residual = np.abs(age - pred)
        self.scores = [sorted(float(r) for r in residual[bins == b]) for b in range(len(self.edges) + 1)]
        self.without_age = AdaptiveInterval(self.alpha).fit(age, pred)
        return self

    def _bins(self, age: np.ndarray) -> np.ndarray:
        return np.digitize(np.asarray(age, float), self.edges, right=True)

    @property
    def n_calibration(self) -> int:
        return sum(len(s) for s in self.scores)

    def conditioned_on(self, age: np.ndarray) -> np.ndarray:
        """``age`` where the person's age is known, ``predicted age`` where it is not."""
        return np.where(np.isfinite(np.asarray(age, float)), "age", "predicted age")

    def interval(self, pred: np.ndarray, age: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        from crepes import ConformalRegressor

        pred = np.asarray(pred, float)
        age = np.full(pred.shape, np.nan) if age is None else np.asarray(age, float)
        lower, upper = self.without_age.interval(pred)
        ok = np.isfinite(pred) & np.isfinite(age)
        if ok.any() and self.scores:
            scores = np.concatenate([np.asarray(s, float) for s in self.scores])
            labels = np.repeat(np.arange(len(self.scores)), [len(s) for s in self.scores])
            regressor = ConformalRegressor().fit(residuals=scores, bins=labels)
            bounds = _plausible_bounds(regressor, pred[ok], self.alpha, bins=self._bins(age[ok]))
            lower[ok], upper[ok] = bounds[:, 0], bounds[:, 1]
        return lower, upper

    def to_dict(self) -> dict:
        return {
            "kind": "age_conditional",
            "alpha": self.alpha,
            "edges": list(self.edges),
            "scores": [list(s) for s in self.scores],
            "n_calibration": self.n_calibration,
            "without_age": self.without_age.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> AgeConditionalInterval:
        return cls(
            alpha=float(data["alpha"]),
            edges=[float(e) for e in data["edges"]],
            scores=[list(map(float, s)) for s in data["scores"]],
            without_age=AdaptiveInterval.from_dict(data["without_age"]),
        )


Interval = AgeConditionalInterval | AdaptiveInterval | ConformalInterval


def interval_from_dict(data: dict) -> Interval:
    """The interval stored in a bundle (bundles before adaptive intervals hold a constant one)."""
    if data.get("kind") == "age_conditional":
        return AgeConditionalInterval.from_dict(data)
    if data.get("kind") == "normalised":
        return AdaptiveInterval.from_dict(data)
    return ConformalInterval(**{k: v for k, v in data.items() if k != "kind"})


def make_interval(kind: str, alpha: float) -> Interval:
    """One of :data:`INTERVAL_KINDS`: ``age_conditional`` (default: calibrated within bins of
    chronological age), ``normalised`` (width follows the error expected at the predicted
    age) or ``constant`` (± one q)."""
    classes = {
        "age_conditional": AgeConditionalInterval,
        "normalised": AdaptiveInterval,
        "constant": ConformalInterval,
    }
    if kind not in classes:
        raise ValueError(f"unknown interval kind {kind!r}; use one of {', '.join(INTERVAL_KINDS)}")
    return classes[kind](alpha)


def cross_fitted(
    age: np.ndarray,
    pred: np.ndarray,
    folds: np.ndarray,
    bias_kind: str = "linear",
    alpha: float = DEFAULT_ALPHA,
    interval_kind: str = DEFAULT_INTERVAL,
) -> dict[str, np.ndarray | float]:
    """Corrected gaps and interval bounds for out-of-fold predictions, fold by fold.

    Parameters
    ----------
    age, pred
        Chronological age and out-of-fold prediction for every subject.
    folds
        Fold index of every subject (the fold in which it was held out).
    interval_kind
        One of :data:`INTERVAL_KINDS` (see :func:`make_interval`).

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
        ci = make_interval(interval_kind, alpha).fit(age[train], pred[train])
        cgap[test] = bc.corrected_gap(age[test], pred[test])
        lo[test], hi[test] = ci.interval(pred[test], age[test])
    coverage = float(((age >= lo) & (age <= hi)).mean())
    return {"corrected_gap": cgap, "lower": lo, "upper": hi, "coverage": coverage}


def coverage_by_group(
    age: np.ndarray, lower: np.ndarray, upper: np.ndarray, groups: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """Coverage and median width of intervals, overall and per level of each grouping.

    ``groups`` maps a grouping name (``age tercile``, ``sex``, ``site``...) to one label
    per person. Returns rows ``{"grouping", "level", "n", "coverage", "median_width"}``.
    """
    age, lower, upper = (np.asarray(a, float) for a in (age, lower, upper))
    inside = (age >= lower) & (age <= upper)
    width = upper - lower
    rows = [{"grouping": "all", "level": "all", "n": len(age), "coverage": float(inside.mean()),
             "median_width": float(np.median(width))}]  # fmt: skip
    for name, labels in groups.items():
        labels = np.asarray(labels).astype(str)
        for level in sorted(set(labels)):
            rows_ = labels == level
            rows.append({"grouping": name, "level": level, "n": int(rows_.sum()),
                         "coverage": float(inside[rows_].mean()), "median_width": float(np.median(width[rows_]))})  # fmt: skip
    return rows


def age_terciles(age: np.ndarray) -> np.ndarray:
    """``young``/``middle``/``old`` by the cohort's age terciles (labels that sort by age)."""
    age = np.asarray(age, float)
    edges = np.quantile(age, [1 / 3, 2 / 3])
    return np.array(["1 young", "2 middle", "3 old"])[np.digitize(age, edges, right=True)]
