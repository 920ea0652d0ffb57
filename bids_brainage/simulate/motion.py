"""Head-motion trajectories: mean-reverting random walk plus sudden jerks.

Parameters follow :mod:`bids_brainage.simulate.rigid` (mm and radians); volume 0 is the
reference and has zero motion.
"""

from __future__ import annotations

import numpy as np

STEP_SD = np.array([0.04, 0.04, 0.04, 0.0006, 0.0006, 0.0006])  # per volume, mm / rad
SPIKE_SD = np.array([0.5, 0.5, 0.5, 0.008, 0.008, 0.008])
SPIKE_RATE = 0.02  # jerks per volume
REVERSION = 0.02  # pull towards the rest position per volume


def motion_trajectory(n_vols: int, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Motion parameters (n_vols, 6): AR(1) random walk with drifting rest position and jerks.

    Half the jerks are transient (the head returns at the next volume), half persistent,
    as seen in real data; all amplitudes scale with ``scale``.
    """
    steps = rng.standard_normal((n_vols, 6)) * STEP_SD * scale
    params = np.zeros((n_vols, 6))
    for t in range(1, n_vols):
        params[t] = (1 - REVERSION) * params[t - 1] + steps[t]
    n_spikes = rng.poisson(SPIKE_RATE * n_vols * min(scale, 3.0))
    for t in rng.integers(1, n_vols, size=n_spikes):
        jump = rng.standard_normal(6) * SPIKE_SD * scale
        if rng.random() < 0.5:
            params[t] += jump
        else:
            params[t:] += jump
    params -= params[0]
    return params
