"""Cross-validation, the fold ensemble and table-level prediction (the public workflow API).

``fit_cross_validated`` trains one SA-AVAE per fold, so every subject gets an out-of-fold
prediction, and keeps the fold models as an ensemble (mean prediction) for new subjects.
The bias correction and the conformal interval of the ensemble are fitted on the
out-of-fold predictions of the training subjects.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bids_brainage.defaults import DEFAULT_ALPHA, DEFAULT_BIAS_CORRECTION, DEFAULT_INTERVAL, HARMONIZE_CHOICES
from bids_brainage.errors import InputError, ModelBundleError
from bids_brainage.model.calibration import (
    BiasCorrector,
    Interval,
    cross_fitted,
    make_interval,
)
from bids_brainage.model.features import canonicalise, feature_columns
from bids_brainage.model.harmonize import ComBatHarmonizer
from bids_brainage.model.metrics import metrics_table, regression_metrics
from bids_brainage.model.ood import FeatureReference, screen_cohort, screen_rows
from bids_brainage.model.train import SAAVAERegressor, inference_threads

LOGGER = logging.getLogger("bids_brainage.model")


def age_bins(age: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """Quantile bins of age (ties merged), used to stratify folds."""
    edges = np.unique(np.quantile(age, np.linspace(0, 1, n_bins + 1)[1:-1]))
    return np.digitize(age, edges)


def make_folds(
    table: pd.DataFrame, n_folds: int = 5, random_seed: int = 0, by_site: bool = True
) -> np.ndarray:
    """Fold index per row: stratified by age bins (and site), grouped by participant.

    Rows of the same ``participant_id`` (longitudinal sessions) always share a fold, so
    no participant is both trained on and tested. Strata are age decile × site when
    sites are given and every stratum is large enough, else age deciles only.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_people = table["participant_id"].nunique()
    if n_folds < 2 or n_folds > n_people:
        raise InputError(
            "table", f"--n-folds must be between 2 and the number of participants ({n_people}), got {n_folds}"
        )
    # One row per participant decides the stratum; mean age over sessions.
    people = table.groupby("participant_id", sort=False).agg(age=("age", "mean"), site=("site", "first"))
    n_bins = int(np.clip(len(people) // (2 * n_folds), 1, 10))
    strata = age_bins(people["age"].to_numpy(), n_bins).astype(str)
    if by_site and people["site"].nunique() > 1:
        joint = pd.Series(
            np.char.add(np.char.add(strata, "|"), people["site"].astype(str).to_numpy(dtype=str))
        )
        # Age-bin x site cells smaller than the fold count cannot be spread over all folds:
        # merge them into a per-age-bin "other sites" cell, then into one remainder cell.
        counts = joint.map(joint.value_counts())
        joint[counts.to_numpy() < n_folds] = pd.Series(strata)[counts.to_numpy() < n_folds] + "|other"
        counts = joint.map(joint.value_counts())
        joint[counts.to_numpy() < n_folds] = "rest"
        if (joint == "rest").sum() < n_folds:  # too few to be a stratum of their own
            joint[joint == "rest"] = joint.value_counts().index[0]
        strata = joint.to_numpy()
    stratum = pd.Series(strata, index=people.index)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=random_seed)
    person_fold = pd.Series(-1, index=people.index)
    idx = np.arange(len(people))
    for k, (_, test) in enumerate(splitter.split(idx, stratum.to_numpy(), groups=idx)):
        person_fold.iloc[test] = k
    return table["participant_id"].map(person_fold).to_numpy()


def arrays_from_table(
    table: pd.DataFrame, smri: list[str] | None = None, fmri: list[str] | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Structural and functional feature arrays (None when the table has none)."""
    smri = feature_columns(table, "smri") if smri is None else smri
    fmri = feature_columns(table, "fmri") if fmri is None else fmri
    x_s = table[smri].to_numpy(float) if smri else None
    x_f = table[fmri].to_numpy(float) if fmri else None
    return x_s, x_f


@dataclass
class BrainAgeEnsemble:
    """Fold models plus the calibration fitted on their out-of-fold predictions."""

    models: list[SAAVAERegressor]
    smri_features: list[str]
    fmri_features: list[str]
    bias: BiasCorrector
    interval: Interval
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    #: Training median and scale of every feature, to refuse implausible inputs (None in
    #: bundles written before it was stored: the first fold's scaler stands in).
    reference: FeatureReference | None = None
    #: ComBat per modality (``smri``/``fmri``), fitted on all training rows; empty without
    #: ``--harmonize combat``.
    harmonizers: dict[str, ComBatHarmonizer] = field(default_factory=dict)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.models[0].modalities)

    def predict_arrays(self, x_s: np.ndarray | None, x_f: np.ndarray | None, sex: np.ndarray) -> np.ndarray:
        """Mean prediction of the fold models."""
        # One float32 copy and one thread setting for all fold models.
        x_s = None if x_s is None else np.asarray(x_s, np.float32)
        x_f = None if x_f is None else np.asarray(x_f, np.float32)
        with inference_threads(self.models[0].n_threads):
            return np.mean([m._predict_raw(x_s, x_f, sex) for m in self.models], axis=0)


def fit_cross_validated(
    table: pd.DataFrame,
    *,
    n_folds: int = 5,
    random_seed: int = 0,
    device: str = "auto",
    bias_kind: str = DEFAULT_BIAS_CORRECTION,
    alpha: float = DEFAULT_ALPHA,
    folds: np.ndarray | None = None,
    progress: bool | None = False,
    harmonize: str = "none",
    interval_kind: str = DEFAULT_INTERVAL,
    **estimator_kwargs: Any,
) -> tuple[pd.DataFrame, BrainAgeEnsemble, pd.DataFrame]:
    """K-fold SA-AVAE with out-of-fold predictions for every row and a fold ensemble.

    Parameters
    ----------
    table
        Canonical feature table (see `bids_brainage.model.features.load_table`); needs ``age``.
    n_folds, random_seed, device
        Folds (stratified by age and site, grouped by participant), seed, ``auto``/``cpu``/``cuda``.
    bias_kind
        ``linear`` (Beheshti) or ``quadratic`` (Smith, the default) age-bias correction.
    alpha
        Miscoverage of the conformal intervals (0.1: 90 % intervals).
    folds
        Precomputed fold index per row (overrides ``n_folds``), e.g. leave-site-out.
    harmonize
        ``none`` or ``combat``: ComBat per modality (:mod:`.harmonize`), fitted on each fold's
        training rows; a held-out site the fold never saw is harmonised from its own people.
    interval_kind
        One of ``INTERVAL_KINDS`` (:func:`.calibration.make_interval`); the default,
        ``age_conditional``, is calibrated within bins of chronological age.
    **estimator_kwargs
        Passed to `SAAVAERegressor` (``modalities``, ``weights``, ``settings``...).

    Returns
    -------
    oof : pandas.DataFrame
        participant_id, [session_id], age, sex, site, fold, predicted_age, lower, upper,
        gap, corrected_gap, modalities.
    ensemble : BrainAgeEnsemble
        For new subjects (`predict_table`, `bids_brainage.model.bundle.save_bundle`).
    metrics : pandas.DataFrame
        `metrics_table` of the out-of-fold predictions.
    """
    # Validates and normalises in-memory tables too (sex as M/F, ids as strings...).
    table = canonicalise(table, require_age=True)
    smri, fmri = feature_columns(table, "smri"), feature_columns(table, "fmri")
    refused = screen_cohort(table, smri + fmri)
    if any(refused):
        first = next(i for i, reason in enumerate(refused) if reason)
        raise InputError(
            "training table",
            f"{sum(map(bool, refused))} row(s) with implausible features, e.g. "
            f"{table['participant_id'].iloc[first]}: {refused[first]}; fix or remove them",
        )
    folds = make_folds(table, n_folds, random_seed) if folds is None else np.asarray(folds)
    x_s, x_f = arrays_from_table(table, smri, fmri)
    modalities = estimator_kwargs.pop("modalities", None) or tuple(
        m for m, cols in (("smri", smri), ("fmri", fmri)) if cols
    )
    age, sex = table["age"].to_numpy(float), table["sex"].to_numpy(float)
    pred = np.full(len(table), np.nan)
    models = []
    if harmonize not in HARMONIZE_CHOICES:
        raise ValueError(f"unknown harmonisation {harmonize!r}; choose from {', '.join(HARMONIZE_CHOICES)}")
    site = table["site"].astype(str).to_numpy()
    if harmonize == "combat" and len(set(site) - {"n/a"}) < 2:
        raise InputError("training table", "--harmonize combat needs a site column with at least two sites")
    for i, k in enumerate(np.unique(folds)):
        tr, te = folds != k, folds == k
        if harmonize == "combat":
            # Fitted on the fold's training rows only; the held-out rows are transformed.
            fold_h = _fit_harmonizers(x_s, x_f, modalities, site[tr], age[tr], sex[tr], tr)
            xs_fold, xf_fold, _ = _harmonised(fold_h, x_s, x_f, site, age, sex)
        else:
            xs_fold, xf_fold = x_s, x_f
        est = SAAVAERegressor(
            modalities=modalities,
            device=device,
            random_seed=random_seed + i,
            progress=progress,
            **estimator_kwargs,
        )
        est.fit(_rows(xs_fold, tr), _rows(xf_fold, tr), sex[tr], age[tr])
        pred[te] = est.predict(_rows(xs_fold, te), _rows(xf_fold, te), sex[te])
        models.append(est)
        LOGGER.info(
            "fold %s (%d of %d): trained on %d in %.0f s (%d epochs, best %d); held-out MAE %.2f years (n = %d)",
            k, i + 1, len(np.unique(folds)), int(tr.sum()), getattr(est, "fit_seconds_", float("nan")),
            len(getattr(est, "history_", [])), getattr(est, "best_epoch_", -1) + 1,
            float(np.nanmean(np.abs(pred[te] - age[te]))), int(te.sum()),
        )  # fmt: skip
    cf = cross_fitted(age, pred, folds, bias_kind, alpha, interval_kind)
    oof = _frame(
        table, pred, cf["lower"], cf["upper"], cf["corrected_gap"], models[0].fmri_mask(x_f, len(table))
    )
    oof.insert(oof.columns.get_loc("predicted_age"), "fold", folds)
    metrics = metrics_table(age, pred, sex, cf["corrected_gap"])
    overall = regression_metrics(age, pred, cf["corrected_gap"])
    overall["interval_coverage"] = cf["coverage"]
    overall["interval_nominal"] = 1 - alpha
    ensemble = BrainAgeEnsemble(
        models=models,
        smri_features=smri if "smri" in modalities else [],
        fmri_features=fmri if "fmri" in modalities else [],
        bias=BiasCorrector(bias_kind).fit(age, pred),
        interval=make_interval(interval_kind, alpha).fit(age, pred),
        metrics={"out_of_fold": overall, "n_folds": int(len(np.unique(folds)))},
        summary=training_summary(table),
    )
    used = ensemble.smri_features + ensemble.fmri_features
    ensemble.reference = FeatureReference.robust(table, used, with_sd=True)
    if harmonize == "combat":
        everyone = np.ones(len(table), bool)
        ensemble.harmonizers = _fit_harmonizers(x_s, x_f, modalities, site, age, sex, everyone)
    return oof, ensemble, metrics


def _fit_harmonizers(
    x_s: np.ndarray | None,
    x_f: np.ndarray | None,
    modalities: tuple[str, ...],
    site: np.ndarray,
    age: np.ndarray,
    sex: np.ndarray,
    rows: np.ndarray,
) -> dict[str, ComBatHarmonizer]:
    """ComBat per modality on ``rows`` (``site``/``age``/``sex`` are those rows' values)."""
    out = {}
    for name, x in (("smri", x_s), ("fmri", x_f)):
        if x is not None and name in modalities:
            out[name] = ComBatHarmonizer().fit(x[rows], site, age, sex)
    return out


def _harmonised(
    harmonizers: dict[str, ComBatHarmonizer],
    x_s: np.ndarray | None,
    x_f: np.ndarray | None,
    site: np.ndarray,
    age: np.ndarray,
    sex: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Both modalities harmonised, and the structural status per row (see ComBatHarmonizer.transform)."""
    status = np.full(len(site), "none", dtype=object)
    if "smri" in harmonizers and x_s is not None:
        x_s, status = harmonizers["smri"].transform(x_s, site, age, sex)
    if "fmri" in harmonizers and x_f is not None:
        x_f, _ = harmonizers["fmri"].transform(x_f, site, age, sex)
    return x_s, x_f, status


def training_summary(table: pd.DataFrame) -> dict[str, Any]:
    """N, age range, sexes and sites of the training table (stored in the bundle)."""
    return {
        "n_rows": int(len(table)),
        "n_participants": int(table["participant_id"].nunique()),
        "age_min": float(table["age"].min()),
        "age_max": float(table["age"].max()),
        "age_mean": float(table["age"].mean()),
        "n_female_0": int((table["sex"] == 0).sum()),
        "n_male_1": int((table["sex"] == 1).sum()),
        "sites": sorted(map(str, table["site"].unique())),
        "n_with_fmri": int((~table[feature_columns(table, "fmri")].isna().all(axis=1)).sum())
        if feature_columns(table, "fmri")
        else 0,
    }


def predict_table(ensemble: BrainAgeEnsemble, table: pd.DataFrame) -> pd.DataFrame:
    """Predict brain age for a canonical table with the fold ensemble.

    The table must contain every feature the ensemble was trained on; if it has none of
    the fMRI features, or a subject's fMRI values are all missing, that subject is
    predicted from sMRI alone (``modalities == "smri"``). ``gap`` and ``corrected_gap``
    are n/a where ``age`` is absent.

    Returns
    -------
    pandas.DataFrame
        participant_id, [session_id], [age], predicted_age, lower, upper, gap,
        corrected_gap, modalities.
    """
    table = canonicalise(table, require_age=False)
    missing_s = [c for c in ensemble.smri_features if c not in table.columns]
    if missing_s:
        raise ModelBundleError(
            f"feature table lacks {len(missing_s)} structural feature(s) the model needs, e.g. {missing_s[:3]}"
        )
    fmri_present = [c for c in ensemble.fmri_features if c in table.columns]
    if fmri_present and len(fmri_present) != len(ensemble.fmri_features):
        absent = [c for c in ensemble.fmri_features if c not in table.columns]
        raise ModelBundleError(
            f"feature table lacks {len(absent)} of the model's functional features, e.g. {absent[:3]}"
        )
    if "smri" not in ensemble.modalities and not fmri_present:
        raise ModelBundleError(
            "this model is fMRI-only but the feature table has none of its functional features"
        )
    # float32 straight away: the network works in float32, and one conversion serves all models.
    x_s = table[ensemble.smri_features].to_numpy(np.float32) if ensemble.smri_features else None
    if ensemble.fmri_features:
        x_f = (
            table[ensemble.fmri_features].to_numpy(np.float32)
            if fmri_present
            else np.full((len(table), len(ensemble.fmri_features)), np.nan, np.float32)
        )
    else:
        x_f = None
    if x_s is not None and np.isnan(x_s).all(axis=1).any():
        raise InputError("table", "some rows have no structural features at all; sMRI is required")
    refused, notes, drop_f = _screen_for_prediction(ensemble, table, fmri_present)
    if drop_f.any():
        x_f = x_f.copy()  # to_numpy may return a read-only view of the table
        x_f[drop_f] = np.nan
    sex = table["sex"].to_numpy(float)
    age = table["age"].to_numpy(float) if "age" in table else np.full(len(table), np.nan)
    site = table["site"].astype(str).to_numpy()
    x_s, x_f, harmonized = _harmonised(ensemble.harmonizers, x_s, x_f, site, age, sex)
    pred = np.full(len(table), np.nan)
    ok = ~refused
    if ok.any():
        pred[ok] = ensemble.predict_arrays(_rows(x_s, ok), _rows(x_f, ok), sex[ok])
    lo, hi = ensemble.interval.interval(pred, age)
    if hasattr(ensemble.interval, "conditioned_on"):
        given = ensemble.interval.conditioned_on(age)
        no_age = ok & (given != "age")
        if no_age.any():
            LOGGER.warning(
                "%d people have no age: their intervals are calibrated given the predicted age only",
                int(no_age.sum()),
            )
            for i in np.flatnonzero(no_age):
                notes[i] = "; ".join(filter(None, [notes[i], "interval given the predicted age (no age)"]))
    cgap = ensemble.bias.corrected_gap(age, pred)
    out = _frame(table, pred, lo, hi, cgap, ensemble.models[0].fmri_mask(x_f, len(table)))
    out.loc[refused, "modalities"] = "none"
    trained_sites = set(map(str, ensemble.summary.get("sites", [])))
    out["site_seen_in_training"] = [s in trained_sites for s in site] if trained_sites else True
    if ensemble.harmonizers:
        out["harmonization"] = harmonized
    out["refused"] = refused
    out["note"] = notes
    return out


def _screen_for_prediction(
    ensemble: BrainAgeEnsemble, table: pd.DataFrame, fmri_present: bool
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Refuse people whose features the model never saw the like of (see :mod:`.ood`).

    Implausible structural features (or functional ones for an fMRI-only model) refuse
    the person; implausible functional features of an sMRI+fMRI model are dropped and
    the person is predicted from sMRI alone. Returns the refused rows, a note per row
    (empty when nothing was found) and the rows whose fMRI is dropped.
    """
    reference = ensemble.reference or _scaler_reference(ensemble)
    smri, fmri = ensemble.smri_features, ensemble.fmri_features
    why_s = screen_rows(table, reference.subset(smri)) if smri else [""] * len(table)
    why_f = screen_rows(table, reference.subset(fmri)) if fmri and fmri_present else [""] * len(table)
    refused, drop_f = np.zeros(len(table), bool), np.zeros(len(table), bool)
    notes = [""] * len(table)
    pids = table["participant_id"].astype(str).to_numpy()
    for i in range(len(table)):
        if why_s[i] or (why_f[i] and "smri" not in ensemble.modalities):
            refused[i] = True
            notes[i] = f"refused: {why_s[i] or why_f[i]}"
            LOGGER.warning("%s: not predicted: %s", pids[i], why_s[i] or why_f[i])
        elif why_f[i]:
            drop_f[i] = True
            notes[i] = f"fMRI not used: {why_f[i]}"
            LOGGER.warning("%s: predicted from sMRI only: %s", pids[i], why_f[i])
    return refused, notes, drop_f


def _scaler_reference(ensemble: BrainAgeEnsemble) -> FeatureReference:
    """Reference of a bundle that stores none: the first fold's training mean and SD."""
    pre = ensemble.models[0].preprocessor_
    parts = [
        (names, mean, scale)
        for names, mean, scale in (
            (ensemble.smri_features, pre.s_mean, pre.s_scale),
            (ensemble.fmri_features, pre.f_mean, pre.f_scale),
        )
        if names and mean is not None
    ]
    names = [n for part in parts for n in part[0]]
    median = np.concatenate([np.asarray(p[1], float) for p in parts]) if parts else np.zeros(0)
    scale = np.concatenate([np.asarray(p[2], float) for p in parts]) if parts else np.zeros(0)
    return FeatureReference(names, median, scale)


def _rows(x: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if x is None else x[rows]


def _frame(
    table: pd.DataFrame,
    pred: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    cgap: np.ndarray,
    used_f: np.ndarray,
) -> pd.DataFrame:
    keep = [c for c in ("participant_id", "session_id", "age", "sex", "site") if c in table.columns]
    out = table[keep].reset_index(drop=True).copy()
    age = out["age"].to_numpy(float) if "age" in out else np.full(len(out), np.nan)
    out["predicted_age"] = pred
    out["lower"], out["upper"] = lo, hi
    out["gap"] = pred - age
    out["corrected_gap"] = cgap
    out["modalities"] = np.where(used_f, "smri+fmri", "smri")
    return out
