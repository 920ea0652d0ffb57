"""The group level's model step as plain functions (no nipype): train the brain-age model with
K-fold cross-validation, or apply a trained bundle, on the model table; files in, files out.

Called directly by :mod:`bids_brainage.cli.group`, which publishes the returned files into
OUTPUT_DIR. The model itself is :mod:`bids_brainage.model` (imported lazily: torch is heavy).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

LOGGER = logging.getLogger("bids_brainage.group")

#: Fast scikit-learn baselines run on the same folds as SA-AVAE at the group level
#: (the full set with ablations is ``bids_brainage model evaluate``).
GROUP_BASELINES = ("ridge", "svr", "rf")


def read_model_table(path: str | Path, require_age: bool = True) -> pd.DataFrame:
    """The model table in the model package's canonical layout (sex as 0/1, checked columns)."""
    from bids_brainage.model.features import canonicalise

    table = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["n/a", ""])
    return canonicalise(table, source=str(path), require_age=require_age)


def train_brainage(
    table_file: str | Path,
    out_dir: str | Path,
    *,
    n_folds: int,
    random_seed: int,
    device: str,
    harmonize: str,
    bias_correction: str,
) -> dict[str, Path]:
    """K-fold SA-AVAE: out-of-fold predictions for every subject, the fold ensemble, baselines.

    Parameters
    ----------
    table_file : path
        Model table (TSV): ``participant_id``, ``age``, ``sex``, ``site``, ``smri__*``, ``fmri__*``.
    out_dir : path
        An existing folder for the results.
    n_folds, random_seed : int
        Cross-validation folds and the seed of folds and training.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    harmonize, bias_correction : str
        Site harmonisation (``none``, ``combat``) and the age-bias correction.

    Returns
    -------
    dict
        Paths in ``out_dir``: ``predictions`` (out-of-fold, TSV), ``bundle_dir`` (the trained
        ensemble), ``metrics`` (overall, by decade and by sex), ``summary`` (the ensemble's
        metrics, JSON), ``baselines`` (on identical folds), ``learning_curves`` (loss per epoch
        and fold) and ``latent`` (2-D PCA of the shared and specific codes).
    """
    from bids_brainage.model.baselines import baseline_oof
    from bids_brainage.model.bundle import save_bundle
    from bids_brainage.model.cv import fit_cross_validated, make_folds
    from bids_brainage.model.features import feature_columns
    from bids_brainage.model.latent import latent_pca
    from bids_brainage.model.metrics import regression_metrics
    from bids_brainage.model.train import resolve_device

    out = Path(out_dir)
    table = read_model_table(table_file)
    folds = make_folds(table, n_folds, random_seed)
    LOGGER.info(
        "training SA-AVAE: %d-fold cross-validation on %d row(s), device %s",
        n_folds, len(table), resolve_device(device),
    )  # fmt: skip
    oof, ensemble, metrics = fit_cross_validated(
        table,
        folds=folds,
        random_seed=random_seed,
        device=device,
        harmonize=harmonize,
        bias_kind=bias_correction,
    )
    paths = {
        name: out / file
        for name, file in (
            ("predictions", "predictions.tsv"),
            ("bundle_dir", "model"),
            ("metrics", "metrics.tsv"),
            ("summary", "summary.json"),
            ("baselines", "baselines.tsv"),
            ("learning_curves", "learning_curves.tsv"),
            ("latent", "latent.tsv"),
        )
    }
    oof.to_csv(paths["predictions"], sep="\t", index=False, na_rep="n/a")
    metrics.to_csv(paths["metrics"], sep="\t", index=False, na_rep="n/a")
    save_bundle(ensemble, paths["bundle_dir"])

    rows = [{"model": "SA-AVAE", **regression_metrics(table["age"], oof["predicted_age"])}]
    LOGGER.info("SA-AVAE out of fold: MAE %.2f years, r %.2f", rows[0]["mae"], rows[0]["pearson_r"])
    modalities = tuple(m for m in ("smri", "fmri") if feature_columns(table, m))
    start = time.monotonic()
    for name in GROUP_BASELINES:
        pred = baseline_oof(name, table, folds, modalities=("smri",), random_seed=random_seed)
        rows.append({"model": f"{name} (sMRI)", **regression_metrics(table["age"], pred)})
        if "fmri" in modalities:
            pred = baseline_oof(name, table, folds, modalities=modalities, random_seed=random_seed)
            rows.append({"model": f"{name} (sMRI+fMRI)", **regression_metrics(table["age"], pred)})
    pd.DataFrame(rows).to_csv(paths["baselines"], sep="\t", index=False, na_rep="n/a")
    best = min(rows[1:], key=lambda r: r["mae"], default=None)
    if best is not None:
        LOGGER.info(
            "baselines (%s) on the same folds in %.0f s; best %s: MAE %.2f years",
            ", ".join(GROUP_BASELINES), time.monotonic() - start, best["model"], best["mae"],
        )  # fmt: skip

    curves = [
        {"fold": k, "epoch": rec.get("epoch", i), "train_loss": rec.get("total", np.nan),
         "val_loss": rec.get("val_mae_years", np.nan)}
        for k, est in enumerate(ensemble.models)
        for i, rec in enumerate(est.history_)
    ]  # fmt: skip
    pd.DataFrame(curves).to_csv(paths["learning_curves"], sep="\t", index=False, na_rep="n/a")
    latent_pca(ensemble, table).to_csv(paths["latent"], sep="\t", index=False, na_rep="n/a")
    paths["summary"].write_text(json.dumps(ensemble.metrics, default=float))
    return paths


def predict_brainage(
    table_file: str | Path, model_dir: str | Path, out_dir: str | Path, *, device: str
) -> Path:
    """Apply a trained bundle (checked on load) to the model table (age optional); returns the
    predictions TSV written in ``out_dir``."""
    from bids_brainage.model.bundle import load_bundle
    from bids_brainage.model.cv import predict_table

    table = read_model_table(table_file, require_age=False)
    ensemble = load_bundle(model_dir, device=device)
    out = Path(out_dir) / "predictions.tsv"
    predict_table(ensemble, table).to_csv(out, sep="\t", index=False, na_rep="n/a")
    return out
