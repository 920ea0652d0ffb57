"""Resting-state BOLD in the subject's anatomy, with motion, physiology, drift and noise.

Order of the physics (each step is what a preprocessing step must undo):

1. tissue baseline of the EPI (CSF > GM > WM, faint scalp) at the head's reference pose,
   in a BOLD grid that is slightly misaligned to the T1w (rigid, ~1 mm / ~0.5 deg);
2. neuronal signal: the subject's Seitzman ROI signals (see :mod:`connectivity`) spread
   over each ROI's grey-matter territory (1 % signal change), plus global, white-matter
   and CSF physiological fluctuations;
3. head motion: volume ``t`` is the reference image resampled through the rigid motion
   ``M_t`` (``V_t(M_t x) = R_t(x)``), plus an intensity drop in volumes with jerks
   (spin-history effect);
4. scanner drift (slow, spatially smooth) and thermal noise (Rician, sigma set by the
   site's target tSNR).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bids_brainage.simulate.anatomy import aged_tissues, bias_field, rician, sample
from bids_brainage.simulate.cohort import Subject, subject_rng
from bids_brainage.simulate.config import SimulationConfig
from bids_brainage.simulate.connectivity import band_limited, network_model, roi_signals, subject_connectivity
from bids_brainage.simulate.lifespan import motion_scale
from bids_brainage.simulate.motion import motion_trajectory
from bids_brainage.simulate.rigid import centred_affine, grid_points, params_to_matrix
from bids_brainage.simulate.sites import Site
from bids_brainage.simulate.space import Reference
from bids_brainage.simulate.warp import SubjectWarp

BOLD_FOV_MM = (192.0, 192.0, 144.0)
SIGNAL_CHANGE = 0.01
EPI_CONTRAST = {"GM": 1.0, "WM": 0.72, "CSF": 1.5, "head": 0.25}


@dataclass
class BoldResult:
    """A simulated BOLD run and its truth."""

    affine: np.ndarray
    bold: np.ndarray  # int16 (X, Y, Z, T)
    motion: np.ndarray  # (T, 6) applied motion
    misalignment: np.ndarray  # (6,) BOLD-to-T1w rigid parameters
    roi_signals: np.ndarray  # (T, n_rois) noise-free ROI signals
    model_corr: np.ndarray  # (n_rois, n_rois)
    tsnr: float
    mask: np.ndarray  # uint8 brain mask at the reference pose


def simulate_bold(
    cfg: SimulationConfig,
    ref: Reference,
    subject: Subject,
    visit_index: int,
    traits,
    warp: SubjectWarp,
    site: Site,
) -> BoldResult:
    """Synthesise one resting-state run of ``subject`` at one visit."""
    visit = subject.visits[visit_index]
    rng = subject_rng(cfg.seed, subject.index, 30 + visit_index)
    noise = cfg.noise_scale
    shape = tuple(int(round(f / cfg.bold_resolution)) for f in BOLD_FOV_MM)
    affine = centred_affine(shape, cfg.bold_resolution)
    n_t = cfg.n_volumes

    misalignment = np.concatenate([rng.normal(0, 0.8, 3), np.deg2rad(rng.normal(0, 0.6, 3))])
    to_t1w = params_to_matrix(misalignment)
    points = grid_points(shape, to_t1w @ affine)
    mni = warp.to_mni(points, ref)
    maps = aged_tissues(ref, subject, visit, traits) | {"head": ref.head}
    got = sample(ref, maps, mni)
    parcels = sample(ref, {"p": ref.parcels}, mni, order=0)["p"]
    brain = got["GM"] + got["WM"] + got["CSF"]
    base = sum(EPI_CONTRAST[k] * got[k] for k in ("GM", "WM", "CSF"))
    base = base + EPI_CONTRAST["head"] * np.clip(1 - brain, 0, None) * got["head"]
    base *= np.float32(site.bold_scale)

    # Neuronal and physiological fluctuations only where there is tissue.
    support = np.flatnonzero(brain > 0.01)
    conn = subject_connectivity(visit.biological_age, subject.sex, rng)
    signals = roi_signals(conn, n_t, cfg.tr, rng)
    phys = band_limited(n_t, 3, cfg.tr, rng, band=(0.005, 0.2))  # global, WM, CSF
    p = parcels[support].astype(np.int64)
    gm_s, wm_s, csf_s = got["GM"][support], got["WM"][support], got["CSF"][support]
    padded = np.concatenate([np.zeros((n_t, 1)), signals], axis=1).astype(np.float32)
    fluct = SIGNAL_CHANGE * gm_s * padded[:, p]
    fluct += np.float32(noise) * (
        0.004 * brain[support] * phys[:, :1].astype(np.float32)
        + 0.004 * wm_s * phys[:, 1:2].astype(np.float32)
        + 0.02 * csf_s * phys[:, 2:3].astype(np.float32)
    )
    scale = float(motion_scale(visit.biological_age)) * cfg.motion_scale * float(np.exp(rng.normal(0, 0.4)))
    motion = motion_trajectory(n_t, scale, rng)
    steps = np.abs(np.diff(motion, axis=0))
    jerks = np.r_[0.0, steps[:, :3].sum(1) + 50 * steps[:, 3:].sum(1)]
    # Only voxels near the head can receive signal; skipping the empty corners of the field of
    # view halves the interpolation work (the margin covers the largest plausible motion).
    head = ndimage.binary_dilation(base.reshape(shape) > 0.02 * site.bold_scale, iterations=3)
    head_idx = np.flatnonzero(head)
    ijk = np.stack(np.unravel_index(head_idx, shape)).astype(np.float32)
    world = affine[:3, :3].astype(np.float32) @ ijk + affine[:3, 3:].astype(np.float32)
    inv_affine = np.linalg.inv(affine)
    flat = np.zeros((n_t, base.size), np.float32)
    vol = np.empty_like(base)
    for t in range(n_t):
        np.copyto(vol, base)
        vol[support] *= 1 + fluct[t]
        # Pull: voxel v of volume t shows the reference anatomy at M_t^-1 (A v).
        mat = inv_affine @ np.linalg.inv(params_to_matrix(motion[t]))
        vox = mat[:3, :3].astype(np.float32) @ world + mat[:3, 3:].astype(np.float32)
        moved = ndimage.map_coordinates(vol.reshape(shape), vox, order=1, prefilter=False)
        # Spin-history: a jerk larger than 0.5 mm darkens the volume by up to 5 %.
        flat[t, head_idx] = moved * np.float32(1 - 0.05 * min(jerks[t] / 2.0, 1.0) * (jerks[t] > 0.5))
    bold = np.ascontiguousarray(flat.T).reshape(*shape, n_t)
    del flat

    gm_mean = float(base[got["GM"] > 0.5].mean()) if np.any(got["GM"] > 0.5) else float(base.mean())
    tsnr = site.tsnr * float(np.exp(rng.normal(0, 0.1)))
    if noise > 0:
        drift_map = bias_field(shape, rng, 0.01 * noise)
        ramp = np.linspace(-1, 1, n_t, dtype=np.float32)
        bold *= 1 + (drift_map[..., None] - 1) * ramp + np.float32(0.003 * noise) * ramp**2
        bold = rician(bold, gm_mean / tsnr * noise, rng)
    mask = (brain.reshape(shape) > 0.5).astype(np.uint8)
    return BoldResult(
        affine=affine,
        bold=np.clip(np.rint(bold), 0, 32767).astype(np.int16),
        motion=motion,
        misalignment=misalignment,
        roi_signals=signals,
        model_corr=conn.roi_correlation(network_model()),
        tsnr=tsnr if noise > 0 else float("inf"),
        mask=mask,
    )
