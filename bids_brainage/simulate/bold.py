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

from bids_brainage.simulate.anatomy import SubjectTraits, aged_tissues, bias_field, sample_grid
from bids_brainage.simulate.cohort import Subject, subject_rng
from bids_brainage.simulate.config import SimulationConfig
from bids_brainage.simulate.connectivity import band_limited, network_model, roi_signals, subject_connectivity
from bids_brainage.simulate.lifespan import motion_scale
from bids_brainage.simulate.motion import motion_trajectory
from bids_brainage.simulate.rigid import centred_affine, params_to_matrix
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


def _fine_grid(shape: tuple[int, ...], affine: np.ndarray, factor: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Grid ``factor`` times finer whose voxel ``factor * i`` is BOLD voxel ``i``.

    The motion-free image is built on it so that resampling for head motion blurs far less
    than a BOLD voxel: moved volumes stay nearly as sharp as the reference, as in a real
    scanner, and realignment is not biased by the simulator's own interpolation.
    """
    fine_shape = tuple(factor * (n - 1) + 1 for n in shape)
    fine_affine = affine.copy()
    fine_affine[:3, :3] /= factor
    return fine_shape, fine_affine


def _reference_image(
    ref: Reference,
    warp: SubjectWarp,
    maps: dict[str, np.ndarray],
    shape: tuple[int, ...],
    affine: np.ndarray,
    site: Site,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Tissue maps and EPI baseline at the reference pose on a native grid (flattened)."""
    got = sample_grid(ref, warp, shape, affine, maps, {"parcels": ref.parcels})
    got = {k: v.reshape(-1) for k, v in got.items()}
    brain = got["GM"] + got["WM"] + got["CSF"]
    got["brain"] = brain
    base = sum(EPI_CONTRAST[k] * got[k] for k in ("GM", "WM", "CSF"))
    base = base + EPI_CONTRAST["head"] * np.clip(1 - brain, 0, None) * got["head"]
    return got, (base * np.float32(site.bold_scale)).astype(np.float32)


def simulate_bold(
    cfg: SimulationConfig,
    ref: Reference,
    subject: Subject,
    visit_index: int,
    traits: SubjectTraits,
    warp: SubjectWarp,
    site: Site,
) -> BoldResult:
    """Synthesise one resting-state run of ``subject`` at one visit."""
    visit = subject.visits[visit_index]
    rng = subject_rng(cfg.seed, subject.index, 30 + visit_index)
    noise = cfg.noise_scale
    shape = tuple(int(round(f / cfg.bold_resolution)) for f in BOLD_FOV_MM)
    affine = centred_affine(shape, cfg.bold_resolution)
    over = cfg.bold_oversample
    fine_shape, fine_affine = _fine_grid(shape, affine, over)
    n_t = cfg.n_volumes

    misalignment = np.concatenate([rng.normal(0, 0.8, 3), np.deg2rad(rng.normal(0, 0.6, 3))])
    to_t1w = params_to_matrix(misalignment)
    maps = aged_tissues(ref, subject, visit, traits) | {"head": ref.head}
    got, base = _reference_image(ref, warp, maps, fine_shape, to_t1w @ fine_affine, site)

    # Neuronal and physiological fluctuations only where there is tissue.
    support = np.flatnonzero(got["brain"] > 0.01)
    conn = subject_connectivity(visit.biological_age, subject.sex, rng)
    signals = roi_signals(conn, n_t, cfg.tr, rng)
    phys = band_limited(n_t, 3, cfg.tr, rng, band=(0.005, 0.2)).astype(np.float32)  # global, WM, CSF
    parcel = got["parcels"][support].astype(np.int64)
    padded = np.concatenate([np.zeros((n_t, 1)), signals], axis=1).astype(np.float32)
    gm_s = np.float32(SIGNAL_CHANGE) * got["GM"][support]
    phys_w = np.float32(noise) * np.stack(
        [0.004 * got["brain"][support], 0.004 * got["WM"][support], 0.02 * got["CSF"][support]]
    ).astype(np.float32)
    base_s = base[support]

    scale = float(motion_scale(visit.biological_age)) * cfg.motion_scale * float(np.exp(rng.normal(0, 0.4)))
    motion = motion_trajectory(n_t, scale, rng)
    steps = np.abs(np.diff(motion, axis=0))
    jerks = np.r_[0.0, steps[:, :3].sum(1) + 50 * steps[:, 3:].sum(1)]

    # Only the bounding box of the head (plus a margin for motion) can receive signal;
    # affine_transform computes coordinates on the fly, several times faster than
    # map_coordinates with explicit coordinates.
    coarse_base = base.reshape(fine_shape)[::over, ::over, ::over]
    head = ndimage.binary_dilation(coarse_base > 0.02 * site.bold_scale, iterations=3)
    box = ndimage.find_objects(head.astype(np.int8))[0]
    lo = np.array([b.start for b in box], float)
    box_shape = tuple(b.stop - b.start for b in box)
    to_fine = np.linalg.inv(fine_affine)

    tsnr = site.tsnr * float(np.exp(rng.normal(0, 0.1)))
    ramp = np.linspace(-1, 1, n_t)
    drift = None
    if noise > 0:
        # Scanner drift: a smooth spatial pattern ramping linearly, plus a global quadratic.
        drift = bias_field(shape, rng, 0.01 * noise)[box] - 1
    # Spin-history: a jerk larger than 0.5 mm darkens the volume by up to 5 %.
    gain = 1 - 0.05 * np.minimum(jerks / 2.0, 1.0) * (jerks > 0.5) + 0.003 * noise * ramp**2

    flat = np.zeros((n_t, *shape), np.float32)
    vol = base.copy()
    for t in range(n_t):
        vol[support] = base_s * (1 + gm_s * padded[t, parcel] + phys[t] @ phys_w)
        # Pull: voxel v of volume t shows the reference anatomy at M_t^-1 (A v).
        mat = to_fine @ np.linalg.inv(params_to_matrix(motion[t])) @ affine
        offset = mat[:3, :3] @ lo + mat[:3, 3]
        moved = ndimage.affine_transform(
            vol.reshape(fine_shape), mat[:3, :3], offset, output_shape=box_shape, order=1, prefilter=False
        )
        factor = np.float32(gain[t])
        if drift is not None:
            factor = factor * (1 + drift * np.float32(ramp[t]))
        flat[t][box] = moved * factor
    flat = flat.reshape(n_t, -1)

    gm_fine = got["GM"] > 0.5
    gm_mean = float(base[gm_fine].mean()) if np.any(gm_fine) else float(base.mean())
    sigma = np.float32(gm_mean / tsnr * noise)
    series = np.ascontiguousarray(flat.T)  # (voxels, time): the NIfTI order
    del flat
    if noise > 0:
        # Rician noise; where the signal exceeds 5 sigma it is Gaussian to within 1 %, so the
        # second (imaginary) channel is only drawn for dark voxels.
        dark = np.flatnonzero(series.mean(1) < 5 * sigma)
        series += sigma * rng.standard_normal(series.shape, dtype=np.float32)
        imag = sigma * rng.standard_normal((dark.size, n_t), dtype=np.float32)
        series[dark] = np.sqrt(series[dark] ** 2 + imag**2)
    np.rint(series, out=series)
    np.clip(series, 0, 32767, out=series)
    bold = series.astype(np.int16).reshape(*shape, n_t)
    del series
    brain = got["brain"].reshape(fine_shape)[::over, ::over, ::over]
    return BoldResult(
        affine=affine,
        bold=bold,
        motion=motion,
        misalignment=misalignment,
        roi_signals=signals,
        model_corr=conn.roi_correlation(network_model()),
        tsnr=tsnr if noise > 0 else float("inf"),
        mask=(brain > 0.5).astype(np.uint8),
    )
