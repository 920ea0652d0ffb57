"""The paper's model in every fit: sex inside the codes, predictions through the codes, ablations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bids_brainage.model.baselines import ABLATIONS, PlainVAERegressor, StackedRidge
from bids_brainage.model.cv import arrays_from_table
from bids_brainage.model.losses import LossWeights
from bids_brainage.model.train import SAAVAERegressor, TrainSettings


def _arrays(table):
    x_s, x_f = arrays_from_table(table)
    return x_s, x_f, table["sex"].to_numpy(float), table["age"].to_numpy(float)


def _fit(table, **kwargs):
    x_s, x_f, sex, age = _arrays(table)
    est = SAAVAERegressor(device="cpu", settings=TrainSettings(max_epochs=15, patience=5), **kwargs)
    return est.fit(x_s, x_f, sex, age)


@pytest.fixture(scope="module")
def fitted(small_table):
    return _fit(small_table)


def _codes(est, table, sex):
    x_s, x_f, _, _ = _arrays(table)
    zs, zf, mask = est.preprocessor_.transform(x_s, x_f)
    t = [torch.as_tensor(a, dtype=torch.float32) for a in (zs, zf, sex, mask)]
    with torch.no_grad():
        out = est.model_(t[0], t[1], t[2], t[3], decode=False)
    return {k: out[k].numpy() for k in ("mu_c_s", "mu_p_s", "mu_c_f", "mu_p_f")}


@pytest.mark.parametrize("sex_aware", [True, False])
def test_sex_reaches_the_codes(small_table, fitted, sex_aware):
    """Flipping sex changes every code of the sex-aware model, none of the "no sex" one."""
    est = fitted if sex_aware else _fit(small_table, sex_aware=False)
    n = len(small_table)
    women, men = _codes(est, small_table, np.zeros(n)), _codes(est, small_table, np.ones(n))
    for name in women:
        moved = np.abs(women[name] - men[name]).mean()
        assert (moved > 1e-4) if sex_aware else (moved == 0.0), (name, moved)
    if sex_aware:  # the specific codes' prior is sex-conditioned and learned
        mu = est.model_.prior_mu["s"].detach()
        assert not torch.equal(mu[0], mu[1])


def test_every_fit_predicts_through_the_codes(small_table, fitted):
    """Perturbing the codes changes the prediction, with and without the ridge skip head."""
    x_s, x_f, sex, _ = _arrays(small_table)
    for est in (fitted, _fit(small_table, skip_head=True)):
        base = est.predict(x_s, x_f, sex)
        heads = est.model_.regressor.heads
        assert heads.weight.abs().sum() > 0, "the latent path was trained away"

        def shift(_module, _inputs, output):
            mu_c, lv_c, mu_p, lv_p = output
            return mu_c + 1.0, lv_c, mu_p + 1.0, lv_p

        hooks = [enc.register_forward_hook(shift) for enc in est.model_.enc.values()]
        try:
            moved = est.predict(x_s, x_f, sex)
        finally:
            for h in hooks:
                h.remove()
        assert np.abs(moved - base).mean() > 0.05, est.network


def test_sex_specific_heads_differ(fitted):
    """The regressor keeps one head per sex, so ageing can differ between women and men."""
    w = fitted.model_.regressor.heads.weight.detach()
    assert w.shape[0] == 2 and not torch.allclose(w[0], w[1])


@pytest.mark.parametrize("name", sorted(ABLATIONS))
def test_each_ablation_fits_and_predicts(small_table, tiny, name):
    x_s, x_f, sex, age = _arrays(small_table)
    est = SAAVAERegressor(device="cpu", settings=tiny, **ABLATIONS[name]).fit(x_s, x_f, sex, age)
    assert np.isfinite(est.predict(x_s, x_f, sex)).all()
    assert (est.model_.discriminator is None) == (name == "all_specific")


def test_terms_the_architecture_cannot_compute_are_refused(small_table):
    """Refused when fitting (scikit-learn estimators validate parameters in ``fit``)."""
    x_s, x_f, sex, age = _arrays(small_table)
    one = TrainSettings(max_epochs=1)
    with pytest.raises(ValueError, match="latent_shared=0"):
        SAAVAERegressor(latent_shared=0, latent_specific=32, settings=one).fit(x_s, x_f, sex, age)
    with pytest.raises(ValueError, match="latent_shared == latent_specific"):
        SAAVAERegressor(latent_shared=32, latent_specific=0, settings=one).fit(x_s, x_f, sex, age)
    est = SAAVAERegressor(latent_shared=32, latent_specific=0, weights=LossWeights(ratio=0.0), settings=one)
    assert np.isfinite(est.fit(x_s, x_f, sex, age).predict(x_s, x_f, sex)).all()


def test_network_description():
    assert "ridge skip head" in SAAVAERegressor(skip_head=True).network
    assert "skip head" not in SAAVAERegressor().network
    assert "sex not used" in SAAVAERegressor(sex_aware=False).network
    assert SAAVAERegressor(modalities=("smri",), skip_head=False).network.startswith("SA-AVAE (sMRI)")


def test_baseline_stack_and_plain_vae(small_table, tiny):
    """The stacked ridge equals its parts; the plain VAE learns age from a design matrix."""
    rng = np.random.default_rng(0)
    n = 200
    xs, xf, sex = rng.normal(size=(n, 5)), rng.normal(size=(n, 7)), rng.integers(0, 2, n).astype(float)
    y = xs[:, 0] + 0.5 * xf[:, 0] + rng.normal(scale=0.3, size=n)
    mask = np.ones(n)
    mask[:20] = 0
    design = np.c_[xs, xf, sex, mask]
    stack = StackedRidge(d_s=5).fit(design, y)
    pred = stack.predict(design)
    r_s = np.c_[xs, sex] @ stack.s_[0] + stack.s_[1]
    np.testing.assert_allclose(pred[:20], r_s[:20])  # without fMRI: the sMRI ridge
    assert np.abs(pred[20:] - y[20:]).mean() < np.abs(r_s[20:] - y[20:]).mean()
    vae = PlainVAERegressor().fit(design, y)
    assert np.corrcoef(vae.predict(design), y)[0, 1] > 0.5
