"""Features far outside the training distribution: refused per person, never predicted.

A feature of 1e30, a volume in mm³ where mL are expected (x1000) or an infinite value
makes the network extrapolate wildly: a NaN or a negative age would follow, silently.
Each person's features are compared with a reference (median and scale per feature):

- the training cohort itself before a model is trained (with at least
  :data:`MIN_REFERENCE_ROWS` rows: fewer cannot tell an outlier), with the larger of the
  robust scale 1.4826 x MAD and the SD of the *other* rows as the scale of each row;
- the training data stored in a model bundle, with the larger of that robust scale and
  the SD of the (screened) training data, before a bundle predicts.

A value whose robust z, ``|x - median| / scale``, exceeds :data:`Z_LIMIT`, or that is
infinite, refuses the person (NaN is a missing value and is imputed as before).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

LOGGER = logging.getLogger("bids_brainage.model")

#: z beyond which a feature value is refused. A unit error (mm³ for mL: x1000) or a broken
#: step gives thousands or more. Real FreeSurfer tables have heavy-tailed features
#: (hypointensity volumes, the 5th ventricle): against 1.4826 x MAD alone, 12 of ABIDE's 749
#: people and 24 of FCON1000's 1 078 reached 20 (up to 1 014); with the scale floored at the
#: SD of the other rows, the largest real value is 83 (ABIDE) and 79 (FCON1000). A x10 error
#: (z about 60-100) is not caught by this check.
Z_LIMIT = 200.0
#: Rows needed before a cohort can be its own reference (MAD of fewer is too noisy).
MIN_REFERENCE_ROWS = 10
_MAD_TO_SD = 1.4826
_MEAN_AD_TO_SD = 1.2533


@dataclass
class FeatureReference:
    """Median and scale per feature; a NaN scale means the feature is not checked."""

    names: list[str]
    median: np.ndarray
    scale: np.ndarray

    @classmethod
    def robust(cls, table: pd.DataFrame, names: list[str], with_sd: bool = False) -> FeatureReference:
        """Reference from ``table``: median and 1.4826 x MAD (the larger of it and the SD with ``with_sd``).

        A feature whose MAD is 0 (e.g. mostly zeros) falls back to the mean absolute
        deviation; a constant feature gets no scale and is not checked.
        """
        x = table[names].to_numpy(float) if names else np.zeros((len(table), 0))
        x = np.where(np.isinf(x), np.nan, x)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # All-NaN columns (a feature missing for everyone) are expected here.
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(x, axis=0)
            dev = np.abs(x - median)
            scale = _MAD_TO_SD * np.nanmedian(dev, axis=0)
            scale = np.where(scale > 0, scale, _MEAN_AD_TO_SD * np.nanmean(dev, axis=0))
            if with_sd:
                scale = np.fmax(scale, np.nanstd(x, axis=0))
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, np.nan)
        return cls(list(names), median, scale)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN as null)."""
        return {
            "z_limit": Z_LIMIT,
            "median": [None if not np.isfinite(v) else float(v) for v in self.median],
            "scale": [None if not np.isfinite(v) else float(v) for v in self.scale],
        }

    @classmethod
    def from_dict(cls, names: list[str], data: dict[str, Any]) -> FeatureReference:
        median = np.array([np.nan if v is None else v for v in data["median"]], float)
        scale = np.array([np.nan if v is None else v for v in data["scale"]], float)
        if median.shape != (len(names),) or scale.shape != (len(names),):
            raise ValueError(f"feature reference has {len(median)} values for {len(names)} features")
        return cls(list(names), median, scale)

    def subset(self, names: list[str]) -> FeatureReference:
        """The reference of some of the features (in the order given)."""
        index = [self.names.index(name) for name in names]
        return FeatureReference(list(names), self.median[index], self.scale[index])


def _leave_one_out_sd(x: np.ndarray) -> np.ndarray:
    """Per row and feature, the SD of the feature over the *other* rows (NaN ignored)."""
    finite = np.isfinite(x)
    values = np.where(finite, x, 0.0)
    n = finite.sum(axis=0) - finite
    total = values.sum(axis=0) - values
    squares = (values**2).sum(axis=0) - values**2
    with np.errstate(all="ignore"):
        mean = total / n
        variance = (squares - n * mean**2) / (n - 1)
    return np.sqrt(np.clip(variance, 0, None))


def screen_rows(
    table: pd.DataFrame,
    reference: FeatureReference | None,
    names: list[str] | None = None,
    leave_one_out: bool = False,
) -> list[str]:
    """Reasons, per row, to refuse its features (``""`` for a row that may be used).

    Parameters
    ----------
    table : DataFrame
        Rows to check; needs the reference's feature columns (and ``names``).
    reference : FeatureReference or None
        None checks only for infinite values.
    names : list of str, optional
        Columns checked for infinite values (default: the reference's).
    leave_one_out : bool
        The rows are the reference's own cohort: floor each row's scale at the SD of the
        other rows (a heavy-tailed feature has a small MAD; an outlier cannot inflate the
        SD that judges it).
    """
    names = list(names if names is not None else (reference.names if reference else []))
    reasons = [""] * len(table)
    if names:
        x = table[names].to_numpy(float)
        for i, j in zip(*np.nonzero(np.isinf(x)), strict=True):
            if not reasons[i]:
                reasons[i] = f"{names[j]} is {x[i, j]} (not a finite number)"
    if reference is None or not reference.names:
        return reasons
    x = table[reference.names].to_numpy(float)
    scale = reference.scale
    if leave_one_out:
        scale = np.where(
            np.isfinite(scale), np.fmax(scale, _leave_one_out_sd(np.where(np.isinf(x), np.nan, x))), np.nan
        )
    with np.errstate(all="ignore"):
        z = np.abs(x - reference.median) / scale
    z = np.where(np.isfinite(z), z, 0.0)  # NaN: missing value or unchecked feature
    for i in np.nonzero((z > Z_LIMIT).any(axis=1))[0]:
        if reasons[i]:
            continue
        j = int(np.argmax(z[i]))
        reasons[i] = (
            f"{reference.names[j]} = {x[i, j]:.6g} is {z[i, j]:.0f} robust SDs from the training "
            f"median {reference.median[j]:.6g} (limit {Z_LIMIT:g}: wrong units or a failed step?)"
        )
    return reasons


def screen_cohort(table: pd.DataFrame, names: list[str]) -> list[str]:
    """Reasons, per row, to leave a row out of training: infinite values always; robust z
    against the cohort itself when it has at least :data:`MIN_REFERENCE_ROWS` rows.

    Outliers inflate nothing here (median and MAD), but once they are removed the
    reference changes slightly, so the screen is repeated until no new row is refused.
    """
    reasons = [""] * len(table)
    keep = np.ones(len(table), bool)
    for _ in range(5):
        kept = table[keep]
        reference = FeatureReference.robust(kept, names) if len(kept) >= MIN_REFERENCE_ROWS else None
        found = screen_rows(kept, reference, names, leave_one_out=True)
        new = [k for k, reason in zip(np.nonzero(keep)[0], found, strict=True) if reason]
        if not new:
            break
        for k, reason in zip(np.nonzero(keep)[0], found, strict=True):
            if reason:
                reasons[k] = reason
        keep[new] = False
    return reasons
