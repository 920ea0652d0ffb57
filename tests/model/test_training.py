"""Training: overfitting a tiny set, determinism, NaN guard, missing modality."""

from __future__ import annotations

import numpy as np
import pytest

from bids_brainage.errors import InputError, UsageError
from bids_brainage.model.cv import arrays_from_table, fit_cross_validated, make_folds, predict_table
from bids_brainage.model.losses import LossWeights
from bids_brainage.model.synthetic import simulate_feature_table
from bids_brainage.model.train import SAAVAERegressor, TrainingError, TrainSettings, resolve_device


def _arrays(table):
    x_s, x_f = arrays_from_table(table)
    return x_s, x_f, table["sex"].to_numpy(float), table["age"].to_numpy(float)


def test_overfits_tiny_dataset():
    table = simulate_feature_table(n=32, d_s=8, d_f=20, seed=3)
    x_s, x_f, sex, age = _arrays(table)
    est = SAAVAERegressor(
        dropout=0.0,
        device="cpu",
        settings=TrainSettings(
            max_epochs=300,
            batch_size=32,
            lr=1e-2,
            val_fraction=0.0,
            modality_dropout=0.0,
            weight_decay=0,
            skip_weight_decay=0,
        ),
    )
    est.fit(x_s, x_f, sex, age)
    mae = np.abs(est.predict(x_s, x_f, sex) - age).mean()
    assert mae < 0.1 * age.std(), mae


def test_cpu_fit_is_deterministic(small_table, tiny):
    x_s, x_f, sex, age = _arrays(small_table)
    preds = [
        SAAVAERegressor(settings=tiny, device="cpu", random_seed=7)
        .fit(x_s, x_f, sex, age)
        .predict(x_s, x_f, sex)
        for _ in range(2)
    ]
    np.testing.assert_array_equal(preds[0], preds[1])
    other = (
        SAAVAERegressor(settings=tiny, device="cpu", random_seed=8)
        .fit(x_s, x_f, sex, age)
        .predict(x_s, x_f, sex)
    )
    assert not np.array_equal(preds[0], other)


def test_nan_guard_raises_clear_error(small_table, tiny, monkeypatch):
    import bids_brainage.model.train as train_mod

    real = train_mod.compute_losses

    def poisoned(*args, **kwargs):
        terms = real(*args, **kwargs)
        terms["kl"] = terms["kl"] * float("nan")
        return terms

    monkeypatch.setattr(train_mod, "compute_losses", poisoned)
    x_s, x_f, sex, age = _arrays(small_table)
    with pytest.raises(TrainingError, match="diverged at epoch 0: loss term 'kl'"):
        SAAVAERegressor(settings=tiny, device="cpu").fit(x_s, x_f, sex, age)


def test_non_finite_age_refused(small_table, tiny):
    x_s, x_f, sex, age = _arrays(small_table)
    age = age.copy()
    age[0] = np.inf
    with pytest.raises(InputError, match="age"):
        SAAVAERegressor(settings=tiny, device="cpu").fit(x_s, x_f, sex, age)


def test_progress_bar_and_history(small_table, tiny, capsys):
    x_s, x_f, sex, age = _arrays(small_table)
    est = SAAVAERegressor(settings=tiny, device="cpu", progress=True).fit(x_s, x_f, sex, age)
    assert {"rec", "cross", "kl", "adv", "ratio", "age", "total", "disc", "val_mae_years"} <= set(
        est.history_[0]
    )
    assert "SA-AVAE" in capsys.readouterr().err


def test_each_term_off_trains(small_table, tiny):
    x_s, x_f, sex, age = _arrays(small_table)
    for term in ("rec", "cross", "kl", "adv", "ratio"):
        est = SAAVAERegressor(settings=tiny, device="cpu", weights=LossWeights().without(term)).fit(
            x_s, x_f, sex, age
        )
        assert term not in est.history_[0]
        assert np.isfinite(est.predict(x_s, x_f, sex)).all()


def test_single_modality_variants(small_table, tiny):
    x_s, x_f, sex, age = _arrays(small_table)
    for mods in (("smri",), ("fmri",)):
        est = SAAVAERegressor(modalities=mods, settings=tiny, device="cpu").fit(x_s, x_f, sex, age)
        assert est.predict(x_s, x_f, sex).shape == age.shape


def test_missing_modality_prediction(missing_table, tiny):
    oof, ens, _ = fit_cross_validated(missing_table, n_folds=3, device="cpu", settings=tiny)
    no_f = missing_table.filter(like="fmri__").isna().all(axis=1).to_numpy()
    assert no_f.any()
    assert (oof.loc[no_f, "modalities"] == "smri").all()
    assert (oof.loc[~no_f, "modalities"] == "smri+fmri").all()
    assert np.isfinite(oof["predicted_age"]).all()
    # A table without any fMRI column is predicted from sMRI for everybody.
    smri_only = missing_table.drop(columns=[c for c in missing_table if c.startswith("fmri__")])
    pred = predict_table(ens, smri_only)
    assert (pred["modalities"] == "smri").all() and np.isfinite(pred["predicted_age"]).all()
    # ...and agrees with the prediction for subjects whose fMRI is missing anyway.
    full = predict_table(ens, missing_table)
    np.testing.assert_allclose(pred.loc[no_f, "predicted_age"], full.loc[no_f, "predicted_age"], rtol=1e-5)


def test_folds_group_sessions_and_stratify():
    table = simulate_feature_table(n=60, d_s=5, d_f=10, seed=4)
    table = table.loc[table.index.repeat(2)].reset_index(drop=True)
    table.insert(1, "session_id", ["ses-1", "ses-2"] * 60)
    folds = make_folds(table, n_folds=5, random_seed=0)
    assert (table.groupby("participant_id")["participant_id"].transform("size") == 2).all()
    assert (table.assign(f=folds).groupby("participant_id")["f"].nunique() == 1).all()
    assert sorted(np.unique(folds)) == [0, 1, 2, 3, 4]
    again = make_folds(table, n_folds=5, random_seed=0)
    np.testing.assert_array_equal(folds, again)


def test_cross_validation_outputs(small_table, tiny):
    oof, ens, metrics = fit_cross_validated(small_table, n_folds=3, device="cpu", settings=tiny)
    assert len(oof) == len(small_table) and len(ens.models) == 3
    assert {
        "participant_id",
        "fold",
        "predicted_age",
        "lower",
        "upper",
        "gap",
        "corrected_gap",
        "modalities",
    } <= set(oof)
    assert (oof["lower"] <= oof["predicted_age"]).all() and (oof["predicted_age"] <= oof["upper"]).all()
    assert metrics.iloc[0]["group"] == "all" and metrics["group"].str.startswith("age ").any()
    assert 0 <= ens.metrics["out_of_fold"]["interval_coverage"] <= 1


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}
    with pytest.raises(UsageError):
        resolve_device("tpu")
