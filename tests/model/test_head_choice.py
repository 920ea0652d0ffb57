"""The per-fit choice between "ridge skip head + residual latent path" and "latent only"."""

from __future__ import annotations

import numpy as np
import pytest

from bids_brainage.model import load_bundle, save_bundle
from bids_brainage.model.calibration import BiasCorrector, ConformalInterval
from bids_brainage.model.cv import BrainAgeEnsemble
from bids_brainage.model.train import SAAVAERegressor, TrainSettings


def _cohort(nonlinear: bool, n: int = 500, d: int = 8, seed: int = 0):
    """Structural features only; age linear in them, or a U-shaped function ridge cannot fit."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    sex = rng.integers(0, 2, n).astype(float)
    if nonlinear:
        signal = x[:, 0] ** 2 + x[:, 1] ** 2 - 2.0  # zero linear correlation with every feature
    else:
        signal = x[:, :4] @ np.array([1.0, -0.8, 0.6, 0.5])
    age = 45 + 10 * signal + rng.normal(scale=2.0, size=n)
    return x, sex, age


def _fit(x, sex, age, **settings):
    est = SAAVAERegressor(
        modalities=("smri",), device="cpu", settings=TrainSettings(max_epochs=40, **settings)
    )
    return est.fit(x, None, sex, age)


@pytest.fixture(scope="module")
def nonlinear_fits():
    """The default fit (with the choice) and one that always keeps the skip head."""
    x, sex, age = _cohort(True)
    return _fit(x, sex, age), _fit(x, sex, age, choose_head=False)


def test_nonlinear_cohort_keeps_the_latent_only_network(nonlinear_fits):
    est, forced = nonlinear_fits
    choice = est.head_choice_
    assert choice["chosen"] == "latent", choice
    assert "kappa > 0" in choice["rule"] and choice["latent_gate_skip"] > 0
    assert choice["val_mae_latent_years"] < choice["val_mae_skip_years"]
    # The attributes describe the kept network.
    assert est.model_.skip is None and est.model_.cfg.skip_head is False
    assert est.latent_gate_ == 1.0 and est.fusion_ == {}
    assert set(est.histories_) == {"skip", "latent"} and est.history_ is est.histories_["latent"]
    assert forced.head_choice_["chosen"] == "skip" and forced.model_.skip is not None
    # ... and it is the better one on new subjects.
    xt, st, at = _cohort(True, seed=1)
    mae = np.abs(est.predict(xt, None, st) - at).mean()
    assert mae < 0.95 * np.abs(forced.predict(xt, None, st) - at).mean()


def test_linear_cohort_keeps_the_skip_head():
    x, sex, age = _cohort(False)
    est = _fit(x, sex, age)
    assert est.head_choice_["chosen"] == "skip", est.head_choice_
    assert est.model_.skip is not None and est.history_ is est.histories_["skip"]
    xt, st, at = _cohort(False, seed=1)
    assert np.abs(est.predict(xt, None, st) - at).mean() < 3.0


def test_choice_margin_keeps_the_skip_head():
    x, sex, age = _cohort(True)
    est = _fit(x, sex, age, choice_margin=1e9)  # no gain can pass
    assert est.head_choice_["chosen"] == "skip" and est.model_.skip is not None
    assert "val_mae_latent_years" in est.head_choice_  # the candidate was trained and compared


def test_bundle_with_both_networks_round_trips(nonlinear_fits, tmp_path):
    """Folds that kept different networks load back with identical predictions and choices."""
    models = list(nonlinear_fits)
    names = [f"smri__f{i}" for i in range(8)]
    ens = BrainAgeEnsemble(models, names, [], BiasCorrector(coef=[0.0, 0.0]), ConformalInterval())
    loaded = load_bundle(save_bundle(ens, tmp_path / "model"), device="cpu")
    x, sex, _ = _cohort(True, n=50, seed=2)
    np.testing.assert_array_equal(loaded.predict_arrays(x, None, sex), ens.predict_arrays(x, None, sex))
    assert [m.model_.skip is None for m in loaded.models] == [True, False]
    assert loaded.models[0].head_choice_ == models[0].head_choice_


def test_choice_is_deterministic_on_cpu(nonlinear_fits):
    """Both candidates are trained here; the same seed gives the same choice and predictions."""
    est = nonlinear_fits[0]
    x, sex, age = _cohort(True)
    again = _fit(x, sex, age)
    assert again.head_choice_ == est.head_choice_
    np.testing.assert_array_equal(again.predict(x, None, sex), est.predict(x, None, sex))
