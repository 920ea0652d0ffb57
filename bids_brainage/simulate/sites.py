"""Acquisition sites: each has its own T1w contrast, intensity scale and noise, and BOLD scale.

Scanner differences are a major nuisance in multi-site brain-age studies; drawing them
per site (not per subject) makes site effects that harmonisation should remove.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Site:
    """Acquisition parameters of one site."""

    name: str
    t1_gm: float  # GM intensity relative to WM (T1w)
    t1_csf: float  # CSF intensity relative to WM (T1w)
    t1_scale: float  # WM intensity in scanner units
    t1_noise: float  # Rician noise sigma relative to WM
    bold_scale: float  # GM intensity of the BOLD EPI
    tsnr: float  # target temporal SNR of grey matter (before motion/physiology)
    manufacturer: str


MANUFACTURERS = ("Siemens", "GE", "Philips")


def make_site(seed: int, index: int) -> Site:
    """Parameters of site ``index`` (0-based), drawn from a stream of ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 424242, int(index)]))
    return Site(
        name=f"site{index + 1}",
        t1_gm=float(rng.uniform(0.55, 0.68)),
        t1_csf=float(rng.uniform(0.15, 0.30)),
        t1_scale=float(rng.uniform(700, 1300)),
        t1_noise=float(rng.uniform(0.02, 0.035)),
        bold_scale=float(rng.uniform(500, 900)),
        tsnr=float(rng.uniform(50, 100)),
        manufacturer=MANUFACTURERS[index % len(MANUFACTURERS)],
    )
