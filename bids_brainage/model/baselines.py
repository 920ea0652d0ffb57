"""Baselines and ablations, evaluated on identical cross-validation splits.

Baselines (scikit-learn) see the same inputs as the SA-AVAE: standardised structural
features, PCA-reduced functional features (fitted inside each training fold) and sex.
Every model is a scikit-learn estimator on the same design ``[sMRI | fMRI | sex]``
(:mod:`.design`): `MultimodalBaseline` for the baselines, `SAAVAERegressor` for the
SA-AVAE variants; `oof_predictions` is the one cross-validation loop they all share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.utils.validation import check_is_fitted, validate_data

from bids_brainage.model.calibration import cross_fitted
from bids_brainage.model.cv import arrays_from_table
from bids_brainage.model.design import check_modalities, multimodal_design, split_design
from bids_brainage.model.features import Preprocessor, feature_columns
from bids_brainage.model.losses import LossWeights
from bids_brainage.model.metrics import regression_metrics
from bids_brainage.model.train import SAAVAERegressor

BASELINES = ("ridge", "stacked_ridge", "svr", "gpr", "rf", "concat_mlp", "plain_vae")

#: SA-AVAE ablations: name -> estimator arguments that remove one component of the paper's
#: model (loss terms, sex, the shared/specific split) or the ridge skip head.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no_adv": {"weights": LossWeights(adv=0.0)},
    "no_kl": {"weights": LossWeights(kl=0.0)},
    "no_cross": {"weights": LossWeights(cross=0.0)},
    "no_ratio": {"weights": LossWeights(ratio=0.0)},
    "no_sex": {"sex_aware": False},
    # The same 32 code dimensions per modality, all shared or all specific; the terms that
    # compare shared with specific codes (ratio), or need shared codes, cannot apply.
    "all_shared": {"latent_shared": 32, "latent_specific": 0, "weights": LossWeights(ratio=0.0)},
    "all_specific": {
        "latent_shared": 0,
        "latent_specific": 32,
        "weights": LossWeights(adv=0.0, cross=0.0, ratio=0.0),
    },
    "with_skip_head": {"skip_head": True},
}


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
    if name == "plain_vae":
        return PlainVAERegressor(random_seed=random_seed)
    if name == "stacked_ridge":
        return StackedRidge()
    raise ValueError(f"unknown baseline {name!r}; choose from {BASELINES}")


class SubsampledGPR(RegressorMixin, BaseEstimator):
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


class PlainVAERegressor(RegressorMixin, BaseEstimator):
    """A plain VAE regressor on the concatenated inputs: one encoder, one code, no sex prior.

    The SA-AVAE's own code path with everything the paper adds removed: a single modality
    (the design matrix of the other baselines: sMRI, fMRI PCA scores, sex, fMRI mask), all 32
    code dimensions in one Gaussian code with a N(0, I) prior (reconstruction + KL + age
    loss), no adversarial, cross-reconstruction or distance-ratio terms, no sex-aware
    encoder/prior/heads (sex is an input column like any other) and no ridge skip head.
    """

    def __init__(self, random_seed: int = 0) -> None:
        self.random_seed = random_seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> PlainVAERegressor:
        self.model_ = SAAVAERegressor(
            modalities=("smri",),
            latent_shared=0,
            latent_specific=32,
            weights=LossWeights(adv=0.0, cross=0.0, ratio=0.0),
            sex_aware=False,
            skip_head=False,
            n_pca=None,
            device="cpu",
            random_seed=self.random_seed,
        ).fit_arrays(x, None, np.zeros(len(x)), y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model_.predict_arrays(x, None, np.zeros(len(x)))


class StackedRidge(RegressorMixin, BaseEstimator):
    """Per-modality ridge regressions stacked on their leave-one-out predictions.

    The linear late fusion the SA-AVAE's skip head starts from (`train._ridge_init`), alone:
    a ridge per modality on [x_m, sex] (penalty by exact leave-one-out error), combined by a
    non-negative least-squares fit on the leave-one-out predictions of the people with fMRI;
    people without fMRI get the sMRI ridge. Reads the baselines' design matrix
    ``[x_s, x_f, sex, fMRI mask]``; ``d_s`` is set by `MultimodalBaseline`.
    """

    def __init__(self, d_s: int = 0) -> None:
        self.d_s = d_s

    def _blocks(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        d_f = x.shape[1] - self.d_s - 2
        if d_f <= 0:  # one modality: the design is [x, sex]
            return x[:, :-1], x[:, :0], x[:, -1], np.zeros(len(x))
        return x[:, : self.d_s], x[:, self.d_s : self.d_s + d_f], x[:, -2], x[:, -1]

    def fit(self, x: np.ndarray, y: np.ndarray) -> StackedRidge:
        from scipy.optimize import nnls

        from bids_brainage.model.train import RIDGE_ALPHAS, _ridge_loo

        xs, xf, sex, mask = self._blocks(x)
        has_f = mask > 0
        self.s_ = _ridge_loo(np.c_[xs, sex], y, RIDGE_ALPHAS)
        self.f_, self.gamma_ = None, None
        if xf.shape[1] and has_f.sum() >= 10:
            self.f_ = _ridge_loo(np.c_[xf[has_f], sex[has_f]], y[has_f], RIDGE_ALPHAS)
            p = np.c_[self.s_[2][has_f], self.f_[2]]
            c, _ = nnls(p - p.mean(axis=0), y[has_f] - y[has_f].mean())
            self.gamma_ = (c, y[has_f].mean() - p.mean(axis=0) @ c)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        xs, xf, sex, mask = self._blocks(x)
        pred = np.c_[xs, sex] @ self.s_[0] + self.s_[1]
        if self.f_ is not None:
            r_f = np.c_[xf, sex] @ self.f_[0] + self.f_[1]
            fused = self.gamma_[0][0] * pred + self.gamma_[0][1] * r_f + self.gamma_[1]
            pred = np.where(mask > 0, fused, pred)
        return pred


def _design(pre: Preprocessor, x_s: np.ndarray | None, x_f: np.ndarray | None, sex: np.ndarray) -> np.ndarray:
    """The baselines' design matrix ``[zs, zf, sex, fMRI mask]`` (no mask column without fMRI)."""
    zs, zf, mask = pre.transform(x_s, x_f)
    cols = [zs, zf, np.asarray(sex, float)[:, None]]
    if zf.shape[1]:
        cols.append(mask[:, None])
    return np.concatenate(cols, axis=1)


class MultimodalBaseline(RegressorMixin, BaseEstimator):
    """A baseline on the SA-AVAE's inputs: `make_baseline` (``name``) behind its preprocessing.

    Reads ``X = [sMRI | fMRI | sex]`` like `SAAVAERegressor` (``n_smri``, ``modalities``: see
    :mod:`.design`), fits the SA-AVAE's `Preprocessor` (standardisation, fMRI PCA) on the
    training rows, and fits the baseline on ``[zs, zf, sex, fMRI mask]`` against standardised
    age.

    Parameters
    ----------
    name
        One of `BASELINES`.
    modalities, n_smri, n_pca
        As for `SAAVAERegressor`.
    random_seed
        Passed to `make_baseline`.
    """

    def __init__(
        self,
        name: str = "ridge",
        modalities: Sequence[str] = ("smri",),
        n_smri: int | None = None,
        n_pca: int | None = 96,
        random_seed: int = 0,
    ) -> None:
        self.name = name
        self.modalities = modalities
        self.n_smri = n_smri
        self.n_pca = n_pca
        self.random_seed = random_seed

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # imputed by the Preprocessor; all-NaN fMRI: no fMRI
        return tags

    def fit(self, X: Any, y: Any) -> MultimodalBaseline:
        mods = check_modalities(self.modalities)
        model = make_baseline(self.name, self.random_seed)
        X, y = validate_data(
            self, X, y, dtype="numeric", ensure_all_finite="allow-nan", ensure_min_samples=2, y_numeric=True
        )
        x_s, x_f, sex = split_design(X, self.n_smri, mods)
        _check_sex(sex)
        self.preprocessor_ = Preprocessor(n_pca=self.n_pca).fit(x_s, x_f)
        self.age_mean_, self.age_std_ = y.mean(), y.std()
        if isinstance(model, StackedRidge):
            model.set_params(d_s=self.preprocessor_.d_s)
        design = _design(self.preprocessor_, x_s, x_f, sex)
        self.model_ = model.fit(design, (y - self.age_mean_) / self.age_std_)
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype="numeric", ensure_all_finite="allow-nan", reset=False)
        x_s, x_f, sex = split_design(X, self.n_smri, self.modalities)
        _check_sex(sex)
        return (
            self.model_.predict(_design(self.preprocessor_, x_s, x_f, sex)) * self.age_std_ + self.age_mean_
        )


def _check_sex(sex: np.ndarray) -> None:
    """Sex is a column of every baseline's design: missing values are refused, not imputed."""
    if not np.isfinite(sex).all():
        raise ValueError(f"the last column of X (sex) has {int((~np.isfinite(sex)).sum())} missing value(s)")


def table_design(table: pd.DataFrame) -> tuple[np.ndarray, int]:
    """``[sMRI | fMRI | sex]`` of a canonical table, and ``n_smri`` (see :mod:`.design`)."""
    x_s, x_f = arrays_from_table(table)
    return multimodal_design(x_s, x_f, table["sex"].to_numpy(float))


def oof_predictions(
    estimator: Any,
    X: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    predict_folds: Sequence[int] | None = None,
    seed_per_fold: bool = False,
) -> np.ndarray:
    """Out-of-fold predictions of clones of ``estimator``: the shared cross-validation loop.

    Fold ``k`` trains a clone on the rows with ``folds != k`` and predicts the others, as
    ``cross_val_predict(estimator, X, y, cv=PredefinedSplit(folds))`` does.

    Parameters
    ----------
    predict_folds
        Only these folds (the other rows stay NaN); every fold's training rows are still all
        rows outside it.
    seed_per_fold
        The clone of the i-th fold (in sorted order) gets ``random_seed + i``, so fold models
        differ in initialisation (as in `bids_brainage.model.cv.fit_cross_validated`).
    """
    folds = np.asarray(folds)
    y = np.asarray(y, dtype=float)
    pred = np.full(len(y), np.nan)
    wanted = None if predict_folds is None else set(predict_folds)
    for i, k in enumerate(np.unique(folds)):
        if wanted is not None and k not in wanted:
            continue
        tr, te = folds != k, folds == k
        est = clone(estimator)
        if seed_per_fold:
            est.set_params(random_seed=estimator.get_params()["random_seed"] + i)
        pred[te] = est.fit(X[tr], y[tr]).predict(X[te])
    return pred


def baseline_oof(
    name: str,
    table: pd.DataFrame,
    folds: np.ndarray,
    modalities: Sequence[str] = ("smri",),
    n_pca: int | None = 96,
    random_seed: int = 0,
    predict_folds: Sequence[int] | None = None,
) -> np.ndarray:
    """Out-of-fold predictions of one baseline (`MultimodalBaseline`) on the given folds.

    ``predict_folds`` limits the work to those folds (the other rows stay NaN).
    """
    X, n_smri = table_design(table)
    est = MultimodalBaseline(name, tuple(modalities), n_smri, n_pca, random_seed)
    return oof_predictions(est, X, table["age"].to_numpy(float), folds, predict_folds)


def saavae_oof(table: pd.DataFrame, folds: np.ndarray, random_seed: int = 0, **kwargs: Any) -> np.ndarray:
    """Out-of-fold predictions of an SA-AVAE variant on the given folds (fold i: seed + i)."""
    X, n_smri = table_design(table)
    est = SAAVAERegressor(random_seed=random_seed, n_smri=n_smri, **kwargs)
    return oof_predictions(est, X, table["age"].to_numpy(float), folds, seed_per_fold=True)


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
        for name, kwargs in ABLATIONS.items():
            if name in ("no_cross", "no_ratio") and len(mods) < 2:
                continue  # these terms need two modalities
            out[f"saavae_{name}"] = sa(modalities=mods, **kwargs)
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
