"""The sex-aware adversarial variational autoencoder (SA-AVAE) as a PyTorch module.

Per modality m in {s (structural), f (functional)} an encoder E_m reads [x_m, sex] and gives
Gaussian posteriors for a *shared* code c_m and a *specific* code p_m. Decoders D_m rebuild
x_m from [c, p_m, sex] with either the modality's own shared code (self) or the other one's
(cross). A discriminator tells prior samples from shared codes (adversarial prior matching).

Sex enters the learned codes three ways (``sex_aware``, default on): the encoders are
conditioned on it, the specific codes have a sex-conditioned prior N(μ_sex, I) with learned
means, and the age regressor has one output head per sex on a shared body, so the mapping
from codes to age (the ageing trajectory) can differ between women and men. With
``sex_aware=False`` sex is replaced by 0 everywhere (the "no sex" ablation).

The age regressor reads [mean shared code, p_s, p_f, sex]. Optionally (``skip_head``, off by
default: it cost accuracy on real data, docs/benchmarks.md) a linear skip head on the
standardised inputs (per-modality ridge heads, fused late) is added to its output. The latent
path is always trained and always part of the prediction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class SAAVAEConfig:
    """Architecture sizes. ``d_s``/``d_f`` are input widths after preprocessing (0 = absent)."""

    d_s: int
    d_f: int
    latent_shared: int = 16
    latent_specific: int = 16
    hidden: int = 0  # 0: chosen from the input width by `default_hidden`
    regressor_hidden: int = 64
    dropout: float = 0.1
    skip_head: bool = False
    sex_aware: bool = True

    def __post_init__(self) -> None:
        if self.d_s <= 0 and self.d_f <= 0:
            raise ValueError("the model needs at least one modality")
        if self.latent_shared + self.latent_specific <= 0:
            raise ValueError("the model needs at least one latent dimension")
        if self.hidden <= 0:
            self.hidden = default_hidden(max(self.d_s, self.d_f))

    def to_dict(self) -> dict:
        return asdict(self)


def default_hidden(d_in: int) -> int:
    """Hidden width: half the input width, rounded to a power of two, within [64, 256].

    Wide enough to compress a few hundred features into 32 latent dimensions, narrow enough
    to fit 1000 subjects in seconds on a CPU and not to overfit cohorts of a few hundred.
    """
    width = 64
    while width < d_in // 2 and width < 256:
        width *= 2
    return width


def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden),
        nn.LayerNorm(hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Linear(hidden, d_out),
    )


class Encoder(nn.Module):
    """[x_m, sex] -> (mu, logvar) of the shared code and of the specific code."""

    def __init__(self, d_in: int, cfg: SAAVAEConfig) -> None:
        super().__init__()
        self.ls, self.lp = cfg.latent_shared, cfg.latent_specific
        self.net = _mlp(d_in + 1, cfg.hidden, 2 * (self.ls + self.lp), cfg.dropout)

    def forward(self, x: torch.Tensor, sex: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.net(torch.cat([x, sex[:, None].to(x.dtype)], dim=1))
        mu_c, lv_c, mu_p, lv_p = h.split([self.ls, self.ls, self.lp, self.lp], dim=1)
        # Bounded log-variances keep exp() finite under mixed precision.
        return mu_c, lv_c.clamp(-8, 8), mu_p, lv_p.clamp(-8, 8)


class Decoder(nn.Module):
    """[c, p_m, sex] -> x_m."""

    def __init__(self, d_out: int, cfg: SAAVAEConfig) -> None:
        super().__init__()
        self.net = _mlp(cfg.latent_shared + cfg.latent_specific + 1, cfg.hidden, d_out, cfg.dropout)

    def forward(self, c: torch.Tensor, p: torch.Tensor, sex: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([c, p, sex[:, None]], dim=1))


class Discriminator(nn.Module):
    """Shared code -> logit of "drawn from the prior N(0, I)"."""

    def __init__(self, latent: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(1)


class SexAwareRegressor(nn.Module):
    """Codes -> standardised age, with one linear output head per sex on a shared body.

    ``age = head_F(h)`` for women (sex 0) and ``head_M(h)`` for men (sex 1), ``h = body([codes,
    sex])``: the body learns ageing common to both, the heads let the slope of age on every
    hidden unit differ by sex (a sex x latent interaction, which a concatenated sex scalar
    cannot express in a network this shallow).
    """

    def __init__(self, d_in: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Dropout(dropout))
        self.heads = nn.Linear(hidden, 2)

    def forward(self, codes: torch.Tensor, sex: torch.Tensor) -> torch.Tensor:
        both = self.heads(self.body(codes))
        s = sex.to(both.dtype)
        return both[:, 0] * (1 - s) + both[:, 1] * s


class SkipHead(nn.Module):
    """Linear per-modality heads and their late fusion (the ridge path of the regressor).

    ``r_s = w_sᵀ[x_s, sex] + b_s`` and ``r_f = w_fᵀ[x_f, sex] + b_f``; a fused model outputs
    ``r_s + m_f·(γ_s·r_s + γ_f·r_f + γ_0)``, i.e. ``r_s`` alone for a subject without fMRI and
    the stacked combination ``(1 + γ_s)·r_s + γ_f·r_f + γ_0`` for one with it. One linear layer
    on the concatenated inputs cannot do this: a single ridge penalty must then serve both
    blocks, and the sMRI weights of the fused fit are wrong for subjects without fMRI.
    """

    def __init__(self, d_s: int, d_f: int) -> None:
        super().__init__()
        self.s = nn.Linear(d_s + 1, 1) if d_s > 0 else None
        self.f = nn.Linear(d_f + 1, 1) if d_f > 0 else None
        # [γ_s, γ_f, γ_0]; starts as "fMRI ignored" until `train._ridge_init` sets it.
        self.mix = nn.Parameter(torch.zeros(3)) if d_s > 0 and d_f > 0 else None

    def forward(
        self, x_s: torch.Tensor, x_f: torch.Tensor, sex: torch.Tensor, mask_f: torch.Tensor
    ) -> torch.Tensor:
        sx = sex[:, None].to(x_s.dtype)
        r_s = self.s(torch.cat([x_s, sx], dim=1)).squeeze(1) if self.s is not None else None
        r_f = self.f(torch.cat([x_f, sx], dim=1)).squeeze(1) if self.f is not None else None
        if r_s is None:
            return r_f
        if r_f is None:
            return r_s
        g = self.mix
        return r_s + mask_f * (g[0] * r_s + g[1] * r_f + g[2])


class SAAVAE(nn.Module):
    """Encoders, decoders and sex-aware age regressor (the discriminator is kept apart).

    The discriminator lives in ``self.discriminator`` but has its own optimiser; see
    `bids_brainage.model.train` for the alternating schedule.
    """

    def __init__(self, cfg: SAAVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.has_s, self.has_f = cfg.d_s > 0, cfg.d_f > 0
        self.enc = nn.ModuleDict()
        self.dec = nn.ModuleDict()
        if self.has_s:
            self.enc["s"], self.dec["s"] = Encoder(cfg.d_s, cfg), Decoder(cfg.d_s, cfg)
        if self.has_f:
            self.enc["f"], self.dec["f"] = Encoder(cfg.d_f, cfg), Decoder(cfg.d_f, cfg)
        # Sex-conditioned prior of the specific codes: N(prior_mu[m][sex], I), means learned.
        self.prior_mu = nn.ParameterDict(
            {m: nn.Parameter(torch.zeros(2, cfg.latent_specific)) for m in self.enc}
        )
        d_reg = cfg.latent_shared + cfg.latent_specific * (int(self.has_s) + int(self.has_f)) + 1
        self.regressor = SexAwareRegressor(d_reg, cfg.regressor_hidden, cfg.dropout)
        self.skip = SkipHead(cfg.d_s, cfg.d_f) if cfg.skip_head else None
        # Without shared dimensions there is nothing to match to the prior.
        self.discriminator = Discriminator(cfg.latent_shared) if cfg.latent_shared > 0 else None

    def forward(
        self,
        x_s: torch.Tensor,
        x_f: torch.Tensor,
        sex: torch.Tensor,
        mask_f: torch.Tensor,
        sample: bool = False,
        decode: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Encode, decode and regress.

        Parameters
        ----------
        x_s, x_f
            Standardised inputs, shape (n, d_s) and (n, d_f); a column count of 0 for an
            absent modality.
        sex
            0/1 per subject, shape (n,); replaced by 0 when the config is not ``sex_aware``.
        mask_f
            1 where the subject's fMRI is available (and not dropped), else 0. Where it is
            0, p_f is the prior mean (0) and the mean shared code is c_s alone.
        sample
            Draw codes with the reparameterisation trick (training) instead of using means.
        decode
            Compute the reconstructions (needed for the loss, not for predicting age).

        Returns
        -------
        dict
            Codes (``mu_c_s``, ``c_s``, ``p_s``...), reconstructions (``rec_s``, ``cross_s``...)
            and ``age`` (standardised prediction, shape (n,)).
        """
        out: dict[str, torch.Tensor] = {}
        if not self.cfg.sex_aware:
            sex = torch.zeros_like(sex)
        masks = {"s": torch.ones_like(mask_f), "f": mask_f}
        for m, x in (("s", x_s), ("f", x_f)):
            if m not in self.enc:
                continue
            mu_c, lv_c, mu_p, lv_p = self.enc[m](x, sex)
            out.update({f"mu_c_{m}": mu_c, f"lv_c_{m}": lv_c, f"mu_p_{m}": mu_p, f"lv_p_{m}": lv_p})
            out[f"c_{m}"] = _sample(mu_c, lv_c) if sample else mu_c
            out[f"p_{m}"] = _sample(mu_p, lv_p) if sample else mu_p
            out[f"prior_p_{m}"] = self.prior_mu[m][sex.long()]
        for m in self.enc if decode else ():
            out[f"rec_{m}"] = self.dec[m](out[f"c_{m}"], out[f"p_{m}"], sex)
        if decode and self.has_s and self.has_f and self.cfg.latent_shared > 0:
            out["cross_s"] = self.dec["s"](out["c_f"], out["p_s"], sex)
            out["cross_f"] = self.dec["f"](out["c_s"], out["p_f"], sex)
        # Mean shared code over the modalities a subject has.
        c_sum = sum(out[f"c_{m}"] * masks[m][:, None] for m in self.enc)
        w_sum = sum(masks[m] for m in self.enc).clamp_min(1.0)
        c_bar = c_sum / w_sum[:, None]
        parts = [c_bar]
        for m in self.enc:
            # Absent modality: p_m takes the prior mean, 0.
            parts.append(out[f"p_{m}"] * masks[m][:, None])
        parts.append(sex[:, None])
        out["latent_age"] = self.regressor(torch.cat(parts, dim=1), sex)
        age = out["latent_age"]
        if self.skip is not None:
            age = age + self.skip(x_s, x_f, sex, mask_f)
        out["age"] = age
        out["mask_s"], out["mask_f"] = masks["s"], masks["f"]
        return out


def _sample(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
