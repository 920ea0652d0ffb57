"""SA-AVAE loss terms; each has a weight in `LossWeights` and is skipped when it is 0.

All terms are means over the subjects they apply to, so the weights do not depend on the
batch size. Reconstruction terms only count subjects that have the modality.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

TERMS = ("rec", "cross", "kl", "adv", "ratio", "age")


@dataclass
class LossWeights:
    """Weights of the loss terms (λ in docs/methods.md). Set a weight to 0 to switch a term off."""

    rec: float = 1.0  # self-reconstruction
    cross: float = 0.5  # cross-reconstruction (needs both modalities)
    kl: float = 1e-3  # KL(q(p_m | x_m, sex) || N(μ_sex, I)) on specific codes
    adv: float = 1e-2  # encoders fooling the prior discriminator on shared codes
    ratio: float = 0.1  # shared-distinct distance ratio
    age: float = 1.0  # |age - R| on standardised age

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def without(self, term: str) -> LossWeights:
        """A copy with ``term`` switched off (for ablations)."""
        if term not in {f.name for f in fields(self)}:
            raise ValueError(f"unknown loss term {term!r}")
        return LossWeights(**{**self.to_dict(), term: 0.0})


def _masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    per_subject = (pred.float() - target.float()).pow(2).mean(dim=1)
    return (per_subject * mask).sum() / mask.sum().clamp_min(1.0)


def reconstruction_loss(out: dict, x: dict[str, torch.Tensor]) -> torch.Tensor:
    """Self-reconstruction MSE summed over modalities."""
    total = x["s"].new_zeros(())
    for m in ("s", "f"):
        if f"rec_{m}" in out:
            total = total + _masked_mse(out[f"rec_{m}"], x[m], out[f"mask_{m}"])
    return total


def cross_reconstruction_loss(out: dict, x: dict[str, torch.Tensor]) -> torch.Tensor:
    """MSE of x_m rebuilt from the *other* modality's shared code, for subjects with both."""
    if "cross_s" not in out:
        return x["s"].new_zeros(())
    both = out["mask_s"] * out["mask_f"]
    return _masked_mse(out["cross_s"], x["s"], both) + _masked_mse(out["cross_f"], x["f"], both)


def kl_loss(out: dict) -> torch.Tensor:
    """KL divergence of the specific-code posteriors from their sex-conditioned prior N(μ_sex, I).

    Per subject, summed over dimensions; μ_sex is learned (``SAAVAE.prior_mu``), so the codes
    of women and men may sit apart when that helps to explain the data.
    """
    total = out["age"].new_zeros(()).float()
    for m in ("s", "f"):
        if f"mu_p_{m}" not in out:
            continue
        mu = out[f"mu_p_{m}"].float() - out[f"prior_p_{m}"].float()
        lv = out[f"lv_p_{m}"].float()
        kl = 0.5 * (mu.pow(2) + lv.exp() - 1.0 - lv).sum(dim=1)
        mask = out[f"mask_{m}"]
        total = total + (kl * mask).sum() / mask.sum().clamp_min(1.0)
    return total


def _shared_codes(out: dict, detach: bool) -> torch.Tensor:
    codes = [out[f"c_{m}"][out[f"mask_{m}"] > 0] for m in ("s", "f") if f"c_{m}" in out]
    z = torch.cat(codes, dim=0).float()
    return z.detach() if detach else z


def generator_loss(out: dict, discriminator: torch.nn.Module) -> torch.Tensor:
    """Encoders' adversarial term: make shared codes look like prior samples to the discriminator."""
    logits = discriminator(_shared_codes(out, detach=False))
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def discriminator_loss(out: dict, discriminator: torch.nn.Module) -> torch.Tensor:
    """Discriminator's term: prior samples labelled 1, (detached) shared codes labelled 0."""
    fake = _shared_codes(out, detach=True)
    real = torch.randn_like(fake)
    lr, lf = discriminator(real), discriminator(fake)
    return F.binary_cross_entropy_with_logits(lr, torch.ones_like(lr)) + F.binary_cross_entropy_with_logits(
        lf, torch.zeros_like(lf)
    )


def ratio_loss(out: dict, eps: float = 1e-3) -> torch.Tensor:
    """Shared-distinct distance ratio d(c_s, c_f) / (d(c_s, p_s) + d(c_f, p_f) + eps).

    d is the mean squared Euclidean distance over the subjects with both modalities. Small
    values mean the shared codes agree across modalities while staying apart from the
    modality-specific codes (so the specific codes cannot simply copy the shared ones).
    """
    if "c_f" not in out or "c_s" not in out:
        return out["age"].new_zeros(()).float()
    both = out["mask_f"] > 0
    if not both.any():
        return out["age"].new_zeros(()).float()

    def d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a[both].float() - b[both].float()).pow(2).sum(dim=1).mean()

    return d(out["mu_c_s"], out["mu_c_f"]) / (
        d(out["mu_c_s"], out["mu_p_s"]) + d(out["mu_c_f"], out["mu_p_f"]) + eps
    )


def age_loss(out: dict, age: torch.Tensor) -> torch.Tensor:
    """Mean absolute error on standardised age (the quantity reported, MAE)."""
    return (out["age"].float() - age.float()).abs().mean()


def compute_losses(
    out: dict,
    x: dict[str, torch.Tensor],
    age: torch.Tensor,
    weights: LossWeights,
    discriminator: torch.nn.Module | None,
) -> dict[str, torch.Tensor]:
    """All active terms (unweighted) plus ``total`` (weighted sum) for the encoder/decoder/regressor step."""
    terms: dict[str, torch.Tensor] = {}
    if weights.rec:
        terms["rec"] = reconstruction_loss(out, x)
    if weights.cross:
        terms["cross"] = cross_reconstruction_loss(out, x)
    if weights.kl:
        terms["kl"] = kl_loss(out)
    if weights.adv and discriminator is not None:
        terms["adv"] = generator_loss(out, discriminator)
    if weights.ratio:
        terms["ratio"] = ratio_loss(out)
    if weights.age:
        terms["age"] = age_loss(out, age)
    total = sum(getattr(weights, k) * v for k, v in terms.items())
    terms["total"] = total if isinstance(total, torch.Tensor) else age.new_zeros(())
    return terms
