"""Shapes of the SA-AVAE and its loss terms: finite, and each switchable off."""

from __future__ import annotations

import pytest
import torch

from bids_brainage.model.losses import TERMS, LossWeights, compute_losses, discriminator_loss
from bids_brainage.model.saavae import SAAVAE, SAAVAEConfig, default_hidden


def _batch(n: int = 10, d_s: int = 7, d_f: int = 5, missing: bool = True):
    torch.manual_seed(0)
    mask = torch.ones(n)
    if missing:
        mask[:3] = 0
    return torch.randn(n, d_s), torch.randn(n, d_f) * mask[:, None], torch.randint(0, 2, (n,)).float(), mask


@pytest.mark.parametrize(("d_s", "d_f"), [(7, 5), (7, 0), (0, 5)])
def test_forward_shapes(d_s, d_f):
    model = SAAVAE(SAAVAEConfig(d_s=d_s, d_f=d_f, latent_shared=4, latent_specific=3))
    x_s, x_f, sex, mask = _batch(d_s=d_s, d_f=d_f)
    out = model(x_s, x_f, sex, mask if d_s else torch.ones(10), sample=True)
    assert out["age"].shape == (10,)
    for m, d in (("s", d_s), ("f", d_f)):
        if d:
            assert out[f"c_{m}"].shape == (10, 4)
            assert out[f"p_{m}"].shape == (10, 3)
            assert out[f"rec_{m}"].shape == (10, d)
    assert ("cross_s" in out) == bool(d_s and d_f)


def test_missing_fmri_uses_prior_mean():
    """With mask 0 the prediction must not depend on the fMRI input at all."""
    model = SAAVAE(SAAVAEConfig(d_s=7, d_f=5)).eval()
    x_s, x_f, sex, mask = _batch()
    mask = torch.zeros(10)
    a = model(x_s, x_f, sex, mask)["age"]
    b = model(x_s, torch.randn_like(x_f) * 100, sex, mask)["age"]
    torch.testing.assert_close(a, b)


def test_every_loss_finite_and_switchable():
    model = SAAVAE(SAAVAEConfig(d_s=7, d_f=5))
    x_s, x_f, sex, mask = _batch()
    out = model(x_s, x_f, sex, mask, sample=True)
    x = {"s": x_s, "f": x_f}
    age = torch.randn(10)
    terms = compute_losses(out, x, age, LossWeights(), model.discriminator)
    assert set(terms) == {*TERMS, "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    assert torch.isfinite(discriminator_loss(out, model.discriminator))
    for term in TERMS:
        off = compute_losses(out, x, age, LossWeights().without(term), model.discriminator)
        assert term not in off
        expected = sum(getattr(LossWeights(), k) * v for k, v in terms.items() if k not in (term, "total"))
        torch.testing.assert_close(off["total"], expected)
    with pytest.raises(ValueError):
        LossWeights().without("nonsense")


def test_total_backpropagates_to_encoders():
    model = SAAVAE(SAAVAEConfig(d_s=7, d_f=5))
    x_s, x_f, sex, mask = _batch()
    out = model(x_s, x_f, sex, mask, sample=True)
    compute_losses(out, {"s": x_s, "f": x_f}, torch.randn(10), LossWeights(), model.discriminator)[
        "total"
    ].backward()
    assert model.enc["s"].net[0].weight.grad.abs().sum() > 0
    assert model.enc["f"].net[0].weight.grad.abs().sum() > 0


def test_default_hidden_scales_with_inputs():
    assert default_hidden(10) == 64
    assert default_hidden(300) == 256
    assert default_hidden(100000) == 256
