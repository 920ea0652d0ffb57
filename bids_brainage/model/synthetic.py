"""Small generator of simulated multimodal feature tables with a known ageing signal.

Used by the tests and the accuracy benchmark (the imaging simulator in
`bids_brainage.simulate` produces images, not feature tables). Each subject has a
chronological age; each modality sees it through its own "biological" deviation, so the
modalities carry partly independent evidence and fusion can beat either one alone:

    z_s = (age − 50)/15 + N(0, σ_s²),   z_f = (age − 50)/15 + N(0, σ_f²)  (σ_f > σ_s: fMRI weaker)
    x_s[j] = a_j·z_s + b_j·z_s² + d_j·sex + noise          (nonlinear, sex-dependent trajectories)
    x_f    = z_f·u + nuisance factors + noise                (low-rank connectivity-like signal)
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _draw(
    n: int,
    d_s: int,
    d_f: int,
    seed: int,
    sigma_s: float,
    sigma_f: float,
    fmri_noise_only: bool,
    n_sites: int,
) -> dict:
    """The generator's draws, truth included (one place, so the oracle matches the tables)."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 85, n)
    sex = rng.integers(0, 2, n).astype(float)
    site = rng.integers(0, n_sites, n)
    base = (age - 50) / 15
    z_s = base + rng.normal(0, sigma_s, n)
    z_f = base + rng.normal(0, sigma_f, n)
    a, b, d = rng.normal(0, 1, d_s), rng.normal(0, 0.3, d_s), rng.normal(0, 0.5, d_s)
    site_off = rng.normal(0, 0.3, (n_sites, d_s))
    x_s = (
        np.outer(z_s, a)
        + np.outer(z_s**2, b)
        + np.outer(sex, d)
        + site_off[site]
        + rng.normal(0, 1.5, (n, d_s))
    )
    u = loadings = None
    if fmri_noise_only:
        x_f = rng.normal(0, 1, (n, d_f))
    else:
        u = rng.normal(0, 1, d_f) / np.sqrt(d_f) * 6
        factors = rng.normal(0, 1, (n, 5))
        loadings = rng.normal(0, 0.8, (5, d_f))
        x_f = np.outer(z_f, u) + factors @ loadings + rng.normal(0, 1.0, (n, d_f))
    return dict(
        rng=rng, age=age, sex=sex, site=site, x_s=x_s, x_f=x_f, a=a, b=b, d=d,
        site_off=site_off, u=u, loadings=loadings, sigma_s=sigma_s, sigma_f=sigma_f,
    )  # fmt: skip


def bayes_optimal_predictions(
    n: int = 300,
    d_s: int = 40,
    d_f: int = 200,
    *,
    seed: int = 0,
    sigma_s: float = 0.35,
    sigma_f: float = 0.45,
    n_sites: int = 3,
) -> dict[str, np.ndarray]:
    """Posterior-median ages of the table `simulate_feature_table` makes with the same arguments.

    An oracle that knows the generator's parameters (loadings, trajectories, site offsets,
    noise levels) and each subject's features and sex, but not the subject's deviations,
    site or noise: p(age | x) ∝ 1[18 ≤ age ≤ 85] · ∫ p(x_s | z_s) N(z_s; (age − 50)/15, σ_s²) dz_s ·
    N(ẑ_f; (age − 50)/15, σ_f² + 1/(uᵀΣ⁻¹u)), site summed out, the z_s integral on a grid,
    fMRI in closed form (Gaussian in z_f, Σ = nuisance covariance + I). The posterior median
    minimises the expected absolute error, so no estimator trained on these data can have a
    lower expected MAE. Returns ``smri``, ``fmri`` and ``fused`` predictions.
    """
    g = _draw(n, d_s, d_f, seed, sigma_s, sigma_f, False, n_sites)
    ages = np.linspace(18, 85, 671)
    base = (ages - 50) / 15
    zg = np.linspace(-6, 7, 1301)
    xs = g["x_s"] - np.outer(g["sex"], g["d"])
    mean_z = np.outer(zg, g["a"]) + np.outer(zg**2, g["b"])
    per_site = []
    for off in g["site_off"]:
        r = xs - off
        sq = (r**2).sum(1)[:, None] - 2 * r @ mean_z.T + (mean_z**2).sum(1)[None]
        per_site.append(-0.5 * sq / 1.5**2)
    lik = np.logaddexp.reduce(np.stack(per_site), axis=0)  # log p(x_s | z_s), (n, grid)
    top = lik.max(axis=1, keepdims=True)
    prior = np.exp(-0.5 * (zg[None, :] - base[:, None]) ** 2 / sigma_s**2)
    log_s = np.log(np.exp(lik - top) @ prior.T + 1e-300) + top
    cov = g["loadings"].T @ g["loadings"] + np.eye(d_f)
    w = np.linalg.solve(cov, g["u"])
    precision = g["u"] @ w
    z_hat = g["x_f"] @ w / precision
    var_f = sigma_f**2 + 1 / precision
    log_f = -0.5 * (z_hat[:, None] - base[None, :]) ** 2 / var_f

    def median(logp: np.ndarray) -> np.ndarray:
        p = np.exp(logp - logp.max(axis=1, keepdims=True))
        c = np.cumsum(p, axis=1) / p.sum(axis=1, keepdims=True)
        return ages[(c < 0.5).sum(axis=1)]

    return {"smri": median(log_s), "fmri": median(log_f), "fused": median(log_s + log_f)}


def simulate_feature_table(
    n: int = 300,
    d_s: int = 40,
    d_f: int = 200,
    *,
    seed: int = 0,
    sigma_s: float = 0.35,
    sigma_f: float = 0.45,
    fmri_noise_only: bool = False,
    missing_fmri: float = 0.0,
    n_sites: int = 3,
) -> pd.DataFrame:
    """A canonical feature table (``participant_id, age, sex, site, smri__*, fmri__*``).

    Parameters
    ----------
    n, d_s, d_f
        Subjects, structural and functional feature counts.
    sigma_s, sigma_f
        Standard deviation of each modality's deviation from chronological age (in units of
        15 years); larger means a weaker age signal.
    fmri_noise_only
        Replace the functional features by pure noise (for the "useless modality" check).
    missing_fmri
        Fraction of subjects whose functional features are all NaN (no usable BOLD).
    n_sites
        Sites with small additive offsets on the structural features.
    """
    g = _draw(n, d_s, d_f, seed, sigma_s, sigma_f, fmri_noise_only, n_sites)
    age, sex, site, x_s, x_f, rng = g["age"], g["sex"], g["site"], g["x_s"], g["x_f"], g["rng"]
    if missing_fmri > 0:
        x_f[rng.random(n) < missing_fmri] = np.nan
    table = pd.DataFrame(
        {
            "participant_id": [f"sub-{i:04d}" for i in range(n)],
            "age": age.round(2),
            "sex": sex,
            "site": [f"site{s}" for s in site],
        }
    )
    feats = pd.DataFrame(
        np.concatenate([x_s, x_f], axis=1),
        columns=[f"smri__roi{j:03d}" for j in range(d_s)] + [f"fmri__edge{j:04d}" for j in range(d_f)],
    )
    return pd.concat([table, feats], axis=1)
