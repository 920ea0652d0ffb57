"""The ridge skip head: per-modality ridge with exact leave-one-out penalties, stacked late fusion."""

from __future__ import annotations

import numpy as np
import torch

from bids_brainage.model.cv import arrays_from_table
from bids_brainage.model.saavae import SAAVAE, SAAVAEConfig
from bids_brainage.model.synthetic import simulate_feature_table
from bids_brainage.model.train import RIDGE_ALPHAS, SAAVAERegressor, TrainSettings, _ridge_loo


def test_ridge_loo_matches_refitting():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    y = x @ rng.normal(size=6) + rng.normal(size=40)
    coef, icpt, loo = _ridge_loo(x, y, np.array([3.0]))
    for i in (0, 17, 39):
        keep = np.arange(40) != i
        c, b, _ = _ridge_loo(x[keep], y[keep], np.array([3.0]))
        np.testing.assert_allclose(loo[i], x[i] @ c + b, rtol=1e-8)
    xc = x - x.mean(axis=0)
    np.testing.assert_allclose(coef, np.linalg.solve(xc.T @ xc + 3.0 * np.eye(6), xc.T @ (y - y.mean())))
    np.testing.assert_allclose(icpt, y.mean() - x.mean(axis=0) @ coef)


def test_skip_head_without_fmri_is_the_smri_head():
    model = SAAVAE(SAAVAEConfig(d_s=5, d_f=4, skip_head=True)).eval()
    with torch.no_grad():
        model.skip.mix.copy_(torch.tensor([-0.3, 0.5, 0.2]))
    x_s, x_f, sex = torch.randn(6, 5), torch.randn(6, 4), torch.tensor([0.0, 1, 0, 1, 1, 0])
    r_s = model.skip.s(torch.cat([x_s, sex[:, None]], 1)).squeeze(1)
    r_f = model.skip.f(torch.cat([x_f, sex[:, None]], 1)).squeeze(1)
    torch.testing.assert_close(model.skip(x_s, x_f, sex, torch.zeros(6)), r_s)
    torch.testing.assert_close(model.skip(x_s, x_f, sex, torch.ones(6)), 0.7 * r_s + 0.5 * r_f + 0.2)


def _fit(table, **settings):
    """A model with the ridge skip head (not the default) plus the latent path."""
    x_s, x_f = arrays_from_table(table)
    sex, age = table["sex"].to_numpy(float), table["age"].to_numpy(float)
    est = SAAVAERegressor(device="cpu", skip_head=True, settings=TrainSettings(max_epochs=12, **settings))
    return est.fit(x_s, x_f, sex, age)


def test_stacking_weights_follow_the_evidence():
    """Informative fMRI changes the predictions a lot; pure-noise fMRI hardly at all."""
    shift = {}
    for noise in (False, True):
        table = simulate_feature_table(n=240, d_s=20, d_f=80, seed=4, fmri_noise_only=noise)
        est = _fit(table)
        x_s, x_f = arrays_from_table(table)
        sex, age = table["sex"].to_numpy(float), table["age"].to_numpy(float)
        fused = est.predict(x_s, x_f, sex)
        alone = est.predict(x_s, np.full_like(x_f, np.nan), sex)
        shift[noise] = np.abs(fused - alone).mean()
        if not noise:
            assert est.fusion_["fusion_fmri"] > 0.2, est.fusion_
            assert np.abs(fused - age).mean() < 0.8 * np.abs(alone - age).mean()
    assert shift[True] < 0.3 * shift[False], shift


def test_ridge_penalty_keeps_half_the_degrees_of_freedom():
    """With as many features as subjects, the penalty leaves df <= n / 2.

    Near interpolation the leave-one-out error varies wildly between samples, and its
    minimum over the penalty grid can be a lucky draw: on 91 simulated subjects with 88
    structural features it chose df 85 and held-out subjects were off by 15 years.
    """
    rng = np.random.default_rng(0)
    n, p = 40, 60
    x = rng.normal(size=(n, p))
    y = x @ rng.normal(size=p) + rng.normal(size=n)
    coef, _, _ = _ridge_loo(x, y, RIDGE_ALPHAS)
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    uncapped = [a for a in RIDGE_ALPHAS if (sv**2 / (sv**2 + a)).sum() > n / 2]
    assert uncapped, "the grid must reach the interpolating regime for this test to mean anything"
    xc, yc = x - x.mean(axis=0), y - y.mean()
    chosen = [
        a for a in RIDGE_ALPHAS if np.allclose(coef, np.linalg.solve(xc.T @ xc + a * np.eye(p), xc.T @ yc))
    ]
    assert len(chosen) == 1
    assert (sv**2 / (sv**2 + chosen[0])).sum() <= n / 2
