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
    if fmri_noise_only:
        x_f = rng.normal(0, 1, (n, d_f))
    else:
        u = rng.normal(0, 1, d_f) / np.sqrt(d_f) * 6
        nuisance = rng.normal(0, 1, (n, 5)) @ rng.normal(0, 0.8, (5, d_f))
        x_f = np.outer(z_f, u) + nuisance + rng.normal(0, 1.0, (n, d_f))
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
