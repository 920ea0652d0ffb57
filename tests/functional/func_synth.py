"""Synthetic BOLD with known rigid motion, made from the MNI template (no simulator needed).

The moving volumes are sampled from a 1 mm image, not from the coarse reference grid, so the
test does not commit the "inverse crime" of using the estimator's own interpolation model.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bids_brainage.compute.hmc import params_to_matrix


def random_motion(
    n_vols: int, rng: np.random.Generator, max_mm: float = 2.0, max_deg: float = 2.0
) -> np.ndarray:
    """Smooth random-walk motion (trans mm, rot rad) with a few spikes, first volume at zero."""
    steps = rng.normal(size=(n_vols, 6))
    walk = np.cumsum(steps, axis=0)
    walk = ndimage.gaussian_filter1d(walk, 2.0, axis=0)
    walk -= walk[0]
    walk /= np.abs(walk).max(0, keepdims=True) + 1e-9
    scale = np.array([max_mm] * 3 + [np.deg2rad(max_deg)] * 3)
    params = walk * scale * rng.uniform(0.5, 1.0, size=6)
    # Sudden jerks like real head motion (these are what scrubbing targets).
    for t in rng.choice(np.arange(5, n_vols - 1), size=max(1, n_vols // 50), replace=False):
        params[t] += rng.normal(scale=scale / 3)
    params[0] = 0
    return params


def make_bold(
    shape: tuple[int, int, int] = (67, 79, 64),
    zoom: float = 2.5,
    n_vols: int = 150,
    seed: int = 0,
    tsnr: float = 80.0,
    max_mm: float = 2.0,
    max_deg: float = 2.0,
    source_resolution: int = 1,
):
    """Return (data, affine, true_params) with ``V_t(M_t x) = R(x)`` for the true ``M_t``."""
    from bids_brainage.templates import mni_t1w

    rng = np.random.default_rng(seed)
    tpl = mni_t1w(source_resolution)
    hi = np.asarray(tpl.dataobj, np.float32)
    # EPI-like PSF: blur the 1 mm template to roughly the voxel size before sampling.
    hi = ndimage.gaussian_filter(
        hi, np.sqrt(max(zoom**2 - source_resolution**2, 0.0)) / 2.3548 / source_resolution
    )
    hi_inv = np.linalg.inv(tpl.affine)
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * zoom + np.array([0.0, -18.0, 18.0])
    params = random_motion(n_vols, rng, max_mm, max_deg)
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1)
    world = affine[:3, :3] @ grid + affine[:3, 3:4]
    data = np.empty((*shape, n_vols), np.float32)
    for t in range(n_vols):
        inv = np.linalg.inv(params_to_matrix(params[t]))
        src = hi_inv[:3, :3] @ (inv[:3, :3] @ world + inv[:3, 3:4]) + hi_inv[:3, 3:4]
        data[..., t] = ndimage.map_coordinates(hi, src, order=1, mode="constant").reshape(shape)
    # BOLD-like intensities: brain ~ 700-1000, background ~ 0, Gaussian noise at the given tSNR.
    data *= 1000.0
    signal = np.percentile(data[..., 0][data[..., 0] > 100], 75)
    data += rng.normal(scale=signal / tsnr, size=data.shape).astype(np.float32)
    data = np.clip(data, 0, None)
    return data, affine, params
