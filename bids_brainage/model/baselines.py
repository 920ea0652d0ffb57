"""Baselines and ablations, evaluated on identical cross-validation splits.

Baselines (scikit-learn) see the same inputs as the SA-AVAE: standardised structural
features, PCA-reduced functional features (fitted inside each training fold) and sex.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bids_brainage.model.calibration import cross_fitted
from bids_brainage.model.cv import arrays_from_table
from bids_brainage.model.features import Preprocessor, feature_columns
from bids_brainage.model.losses import TERMS, LossWeights
from bids_brainage.model.metrics import regression_metrics
from bids_brainage.model.train import SAAVAERegressor

BASELINES = ("ridge", "svr", "gpr", "rf", "concat_mlp")


def make_baseline(name: str, random_seed: int = 0) -> Any:
    """A scikit-learn regressor by name; hyperparameters are tuned by inner CV where cheap."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, WhiteKernel
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.neural_network import MLPRegressor
    from sklearn.svm import SVR

    if name == "ridge":
        return RidgeCV(alphas=np.logspace(-2, 4, 25))
    if name == "svr":
        # RBF SVR on standardised age; C and gamma picked by 3-fold inner CV.
        grid = {"C": [1.0, 3.0, 10.0], "gamma": ["scale", 0.3 / 1000]}
        return GridSearchCV(SVR(epsilon=0.05), grid, cv=3, scoring="neg_mean_absolute_error")
    if name == "gpr":
        kernel = ConstantKernel(1.0) * RBF(length_scale=30.0) + DotProduct(sigma_0=1.0) + WhiteKernel(0.3)
        gpr = GaussianProcessRegressor(kernel, normalize_y=False, random_state=random_seed)
        return SubsampledGPR(gpr, random_seed=random_seed)
    if name == "rf":
        return RandomForestRegressor(
            n_estimators=200, min_samples_leaf=2, max_features="sqrt", n_jobs=1, random_state=random_seed
        )
    if name == "concat_mlp":
        return MLPRegressor(
            hidden_layer_sizes=(128, 64),
            alpha=1e-2,
            early_stopping=True,
            max_iter=400,
            random_state=random_seed,
        )
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


class SubsampledGPR:
    """Gaussian process whose kernel hyperparameters are learned on a training subsample.

    Maximising the marginal likelihood on ~1000 subjects took ~100 s per fit on the shared
    2-core machine; learning the kernel on 400 training subjects and then conditioning on all
    of them with that kernel fixed costs a few seconds and loses little.
    """

    def __init__(self, gpr: Any, n_sub: int = 400, random_seed: int = 0) -> None:
        self.gpr, self.n_sub, self.random_seed = gpr, n_sub, random_seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> SubsampledGPR:
        from sklearn.base import clone

        rng = np.random.default_rng(self.random_seed)
        sub = rng.choice(len(x), size=min(self.n_sub, len(x)), replace=False)
        tuned = clone(self.gpr).fit(x[sub], y[sub])
        self.model_ = clone(self.gpr).set_params(kernel=tuned.kernel_, optimizer=None).fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict(x)


def _design(pre: Preprocessor, x_s: np.ndarray | None, x_f: np.ndarray | None, sex: np.ndarray) -> np.ndarray:
    zs, zf, mask = pre.transform(x_s, x_f)
    cols = [zs, zf, np.asarray(sex, float)[:, None]]
    if zf.shape[1]:
        cols.append(mask[:, None])
    return np.concatenate(cols, axis=1)


def baseline_oof(
    name: str,
    table: pd.DataFrame,
    folds: np.ndarray,
    modalities: Sequence[str] = ("smri",),
    n_pca: int | None = 96,
    random_seed: int = 0,
) -> np.ndarray:
    """Out-of-fold predictions of one baseline on the given folds."""
    x_s, x_f = arrays_from_table(table)
    x_s = x_s if "smri" in modalities else None
    x_f = x_f if "fmri" in modalities else None
    age, sex = table["age"].to_numpy(float), table["sex"].to_numpy(float)
    pred = np.full(len(table), np.nan)
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        pre = Preprocessor(n_pca=n_pca).fit(
            None if x_s is None else x_s[tr], None if x_f is None else x_f[tr]
        )
        xtr = _design(pre, None if x_s is None else x_s[tr], None if x_f is None else x_f[tr], sex[tr])
        xte = _design(pre, None if x_s is None else x_s[te], None if x_f is None else x_f[te], sex[te])
        mu, sd = age[tr].mean(), age[tr].std()
        model = make_baseline(name, random_seed)
        model.fit(xtr, (age[tr] - mu) / sd)
        pred[te] = model.predict(xte) * sd + mu
    return pred


def saavae_oof(table: pd.DataFrame, folds: np.ndarray, random_seed: int = 0, **kwargs: Any) -> np.ndarray:
    """Out-of-fold predictions of an SA-AVAE variant on the given folds."""
    x_s, x_f = arrays_from_table(table)
    age, sex = table["age"].to_numpy(float), table["sex"].to_numpy(float)
    pred = np.full(len(table), np.nan)
    for i, k in enumerate(np.unique(folds)):
        tr, te = folds != k, folds == k
        est = SAAVAERegressor(random_seed=random_seed + i, **kwargs)
        est.fit(None if x_s is None else x_s[tr], None if x_f is None else x_f[tr], sex[tr], age[tr])
        pred[te] = est.predict(None if x_s is None else x_s[te], None if x_f is None else x_f[te], sex[te])
    return pred


def default_variants(
    table: pd.DataFrame, ablations: bool = True, device: str = "auto", **common: Any
) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """SA-AVAE variants (fused, single-modality, one loss term removed) and baselines.

    Returns a name -> ``f(folds) -> oof predictions`` mapping; callers evaluate all of them
    on the same folds.
    """
    has_f = bool(feature_columns(table, "fmri"))
    has_s = bool(feature_columns(table, "smri"))
    mods = tuple(m for m, ok in (("smri", has_s), ("fmri", has_f)) if ok)
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}

    def sa(**kw: Any) -> Callable[[np.ndarray], np.ndarray]:
        return lambda folds: saavae_oof(table, folds, device=device, **{**common, **kw})

    out["saavae" + ("_fused" if len(mods) == 2 else "")] = sa(modalities=mods)
    if len(mods) == 2:
        out["saavae_smri_only"] = sa(modalities=("smri",))
        out["saavae_fmri_only"] = sa(modalities=("fmri",))
    if ablations:
        for term in TERMS:
            if term == "age":
                continue  # without the age term there is no brain-age model
            if term in ("cross", "ratio") and len(mods) < 2:
                continue  # these terms need two modalities
            out[f"saavae_no_{term}"] = sa(modalities=mods, weights=LossWeights().without(term))
        out["saavae_no_skip_head"] = sa(modalities=mods, skip_head=False)
    for name in BASELINES:
        out[name] = lambda folds, name=name: baseline_oof(
            name, table, folds, mods, random_seed=common.get("random_seed", 0)
        )
    return out


def compare(
    table: pd.DataFrame, folds: np.ndarray, variants: dict[str, Callable[[np.ndarray], np.ndarray]]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Evaluate every variant on the same folds.

    Returns
    -------
    summary : pandas.DataFrame
        One row per model: MAE, RMSE, r, R², corrected-gap/age r, interval coverage, seconds.
    predictions : dict
        Model name -> out-of-fold predictions.
    """
    age = table["age"].to_numpy(float)
    rows, preds = [], {}
    for name, run in variants.items():
        t0 = time.perf_counter()
        pred = run(folds)
        seconds = time.perf_counter() - t0
        cf = cross_fitted(age, pred, folds)
        rows.append(
            {
                "model": name,
                **regression_metrics(age, pred, cf["corrected_gap"]),
                "coverage_90": cf["coverage"],
                "seconds": seconds,
            }
        )
        preds[name] = pred
    return pd.DataFrame(rows), preds
