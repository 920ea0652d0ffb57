"""nipype interfaces that train the brain-age model or apply a trained bundle.

They wrap :mod:`bids_brainage.model` (which never imports nipype) so the group level runs
as a nipype workflow like the participant level, with the same plugins and crash files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bids_brainage.defaults import BIAS_CORRECTIONS, DEFAULT_BIAS_CORRECTION

#: Fast scikit-learn baselines run on the same folds as SA-AVAE at the group level
#: (the full set with ablations is ``bids_brainage model evaluate``).
GROUP_BASELINES = ("ridge", "svr", "rf")


class _TrainInputSpec(BaseInterfaceInputSpec):
    table = File(
        exists=True, mandatory=True, desc="model table: participant_id, age, sex, site, smri__*, fmri__*"
    )
    n_folds = traits.Int(5, usedefault=True, desc="cross-validation folds")
    random_seed = traits.Int(0, usedefault=True, desc="seed of folds and training")
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True, desc="where the model trains")
    harmonize = traits.Enum("none", "combat", usedefault=True, desc="site harmonisation (ComBat)")
    bias_correction = traits.Enum(
        DEFAULT_BIAS_CORRECTION,
        *(k for k in BIAS_CORRECTIONS if k != DEFAULT_BIAS_CORRECTION),
        usedefault=True,
        desc="age-bias correction",
    )


class _TrainOutputSpec(TraitedSpec):
    predictions = File(desc="out-of-fold predictions (TSV)")
    bundle_dir = Directory(desc="trained fold ensemble (safetensors + JSON)")
    metrics = File(desc="metrics overall, by decade and by sex (TSV)")
    baselines = File(desc="baselines on identical folds (TSV)")
    learning_curves = File(desc="loss per epoch and fold (TSV)")
    latent = File(desc="2-D PCA of the shared and specific codes (TSV)")


class TrainBrainAge(SimpleInterface):
    """K-fold SA-AVAE: out-of-fold predictions for every subject, fold ensemble, baselines."""

    input_spec = _TrainInputSpec
    output_spec = _TrainOutputSpec

    def _run_interface(self, runtime):
        from bids_brainage.model.baselines import baseline_oof
        from bids_brainage.model.bundle import save_bundle
        from bids_brainage.model.cv import fit_cross_validated, make_folds
        from bids_brainage.model.features import feature_columns
        from bids_brainage.model.latent import latent_pca
        from bids_brainage.model.metrics import regression_metrics

        cwd = Path(runtime.cwd)
        table = _read_table(self.inputs.table)
        folds = make_folds(table, self.inputs.n_folds, self.inputs.random_seed)
        oof, ensemble, metrics = fit_cross_validated(
            table,
            folds=folds,
            random_seed=self.inputs.random_seed,
            device=self.inputs.device,
            harmonize=self.inputs.harmonize,
            bias_kind=self.inputs.bias_correction,
        )
        oof.to_csv(cwd / "predictions.tsv", sep="\t", index=False, na_rep="n/a")
        metrics.to_csv(cwd / "metrics.tsv", sep="\t", index=False, na_rep="n/a")
        save_bundle(ensemble, cwd / "model")

        rows = [{"model": "SA-AVAE", **regression_metrics(table["age"], oof["predicted_age"])}]
        modalities = tuple(m for m in ("smri", "fmri") if feature_columns(table, m))
        for name in GROUP_BASELINES:
            pred = baseline_oof(name, table, folds, modalities=("smri",), random_seed=self.inputs.random_seed)
            rows.append({"model": f"{name} (sMRI)", **regression_metrics(table["age"], pred)})
            if "fmri" in modalities:
                pred = baseline_oof(
                    name, table, folds, modalities=modalities, random_seed=self.inputs.random_seed
                )
                rows.append({"model": f"{name} (sMRI+fMRI)", **regression_metrics(table["age"], pred)})
        pd.DataFrame(rows).to_csv(cwd / "baselines.tsv", sep="\t", index=False, na_rep="n/a")

        curves = [
            {"fold": k, "epoch": rec.get("epoch", i), "train_loss": rec.get("total", np.nan),
             "val_loss": rec.get("val_mae_years", np.nan)}
            for k, est in enumerate(ensemble.models)
            for i, rec in enumerate(est.history_)
        ]  # fmt: skip
        pd.DataFrame(curves).to_csv(cwd / "learning_curves.tsv", sep="\t", index=False, na_rep="n/a")
        latent_pca(ensemble, table).to_csv(cwd / "latent.tsv", sep="\t", index=False, na_rep="n/a")
        (cwd / "summary.json").write_text(json.dumps(ensemble.metrics, default=float))

        self._results.update(
            predictions=str(cwd / "predictions.tsv"),
            bundle_dir=str(cwd / "model"),
            metrics=str(cwd / "metrics.tsv"),
            baselines=str(cwd / "baselines.tsv"),
            learning_curves=str(cwd / "learning_curves.tsv"),
            latent=str(cwd / "latent.tsv"),
        )
        return runtime


class _PredictInputSpec(BaseInterfaceInputSpec):
    table = File(exists=True, mandatory=True, desc="model table (age optional)")
    model_dir = Directory(exists=True, mandatory=True, desc="trained model bundle")
    device = traits.Enum("auto", "cpu", "cuda", usedefault=True, desc="where the model runs")


class _PredictOutputSpec(TraitedSpec):
    predictions = File(desc="predictions (TSV)")


class PredictBrainAge(SimpleInterface):
    """Apply a trained bundle (checked on load) to a feature table."""

    input_spec = _PredictInputSpec
    output_spec = _PredictOutputSpec

    def _run_interface(self, runtime):
        from bids_brainage.model.bundle import load_bundle
        from bids_brainage.model.cv import predict_table

        table = _read_table(self.inputs.table, require_age=False)
        ensemble = load_bundle(self.inputs.model_dir, device=self.inputs.device)
        predictions = predict_table(ensemble, table)
        out = Path(runtime.cwd) / "predictions.tsv"
        predictions.to_csv(out, sep="\t", index=False, na_rep="n/a")
        self._results["predictions"] = str(out)
        return runtime


def _read_table(path: str, require_age: bool = True) -> pd.DataFrame:
    """The model table in the model package's canonical layout (sex as 0/1, checked columns)."""
    from bids_brainage.model.features import canonicalise

    table = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["n/a", ""])
    return canonicalise(table, source=path, require_age=require_age)
