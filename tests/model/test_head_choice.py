"""The per-fit choice between "ridge skip head + residual latent path" and "latent only"."""

from __future__ import annotations

import numpy as np
import pytest

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


@pytest.mark.parametrize("nonlinear", [True, False])
def test_choice_follows_the_cohort(nonlinear):
    x, sex, age = _cohort(nonlinear)
    est = _fit(x, sex, age)
    choice = est.head_choice_
    assert choice["chosen"] == ("latent" if nonlinear else "skip"), choice
    assert "kappa > 0" in choice["rule"]
    assert (est.model_.skip is None) == nonlinear
    # The attributes describe the kept network, and it is the better one on new subjects.
    xt, st, at = _cohort(nonlinear, seed=1)
    mae = np.abs(est.predict(xt, None, st) - at).mean()
    if nonlinear:
        assert choice["val_mae_latent_years"] < choice["val_mae_skip_years"]
        assert est.latent_gate_ == 1.0 and est.fusion_ == {}
        assert set(est.histories_) == {"skip", "latent"} and est.history_ is est.histories_["latent"]
        forced = _fit(x, sex, age, choose_head=False)
        assert forced.head_choice_["chosen"] == "skip" and forced.model_.skip is not None
        assert mae < 0.95 * np.abs(forced.predict(xt, None, st) - at).mean()
    else:
        assert est.history_ is est.histories_["skip"]
        assert mae < 3.0


def test_choice_margin_keeps_the_skip_head():
    x, sex, age = _cohort(True)
    est = _fit(x, sex, age, choice_margin=1e9)  # no gain can pass
    assert est.head_choice_["chosen"] == "skip" and est.model_.skip is not None
    assert "val_mae_latent_years" in est.head_choice_  # the candidate was trained and compared
