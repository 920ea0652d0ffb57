"""Resting-state BOLD in the subject's anatomy, with motion, physiology, drift and noise.

Order of the physics (each step is what a preprocessing step must undo):

1. tissue baseline of the EPI (CSF > GM > WM, faint scalp) at the head's reference pose,
   in a BOLD grid that is slightly misaligned to the T1w (rigid, ~1 mm / ~0.5 deg);
2. neuronal signal: the subject's Seitzman ROI signals (see :mod:`connectivity`) spread
   over each ROI's grey-matter territory (1 % signal change), plus global, white-matter
   and CSF physiological fluctuations;
3. head motion: volume ``t`` is the reference image resampled through the rigid motion
   ``M_t`` (``V_t(M_t x) = R_t(x)``; one trilinear resampling per volume from a grid
   ``--bold-oversample`` times finer than the BOLD grid), plus an intensity drop in volumes
   with jerks (spin-history effect);
4. scanner drift (slow, spatially smooth) and thermal noise (Rician, sigma set by the
   site's target tSNR; Rayleigh in the air around the head).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bids_brainage.simulate.anatomy import SubjectTraits, aged_tissues, bias_field
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


def _sample_fine(
    ref: Reference,
    warp: SubjectWarp,
    shape: tuple[int, ...],
    affine: np.ndarray,
    factor: int,
    maps: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Sample ``maps`` (linear) and ``labels`` (nearest) on the fine grid of a BOLD grid.

    ``affine`` maps BOLD voxels to T1w world space. The native-to-MNI mapping is smooth on
    the scale of a BOLD voxel (rigid pose and head size, a 12 mm random field, the ventricle
    flow on a 4 mm grid), so it is evaluated on the BOLD grid and interpolated linearly to
    the fine grid: ``factor**3`` times fewer warp evaluations than warping every fine
    voxel. Exact for the affine part; for the fields the median deviation is 0.002 mm, the
    99th percentile 0.15 mm and the largest 0.5 mm (at kinks of the trilinear 12 mm field).
    """
    vox = ref.world_to_voxel(warp.to_mni(grid_points(shape, affine), ref))
    vox = np.stack([_upsample(c.reshape(shape), factor).reshape(-1) for c in vox])
    nearest = np.rint(vox).astype(np.int32)
    keep = np.all((nearest >= 0) & (nearest < np.array(ref.support.shape)[:, None]), axis=0)
    keep[keep] = ref.support[nearest[0, keep], nearest[1, keep], nearest[2, keep]]
    keep = np.flatnonzero(keep)
    fine_shape, _ = _fine_grid(shape, affine, factor)
    out = {}
    for group, order, dtype in ((maps, 1, np.float32), (labels, 0, np.int16)):
        points = vox[:, keep] if order else nearest[:, keep]
        for name, array in group.items():
            values = np.zeros(vox.shape[1], dtype)
            values[keep] = ndimage.map_coordinates(array, points, order=order, cval=0.0, prefilter=False)
            out[name] = values.reshape(fine_shape)
    return out


def _reference_image(
    ref: Reference,
    warp: SubjectWarp,
    maps: dict[str, np.ndarray],
    shape: tuple[int, ...],
    affine: np.ndarray,
    factor: int,
    site: Site,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Tissue maps, Seitzman parcels and EPI baseline at the reference pose on the fine grid (3-D)."""
    got = _sample_fine(ref, warp, shape, affine, factor, maps, {"parcels": ref.parcels})
    brain = got["GM"] + got["WM"] + got["CSF"]
    got["brain"] = brain
    base = sum(EPI_CONTRAST[k] * got[k] for k in ("GM", "WM", "CSF"))
    base = base + EPI_CONTRAST["head"] * np.clip(1 - brain, 0, None) * got["head"]
    return got, (base * np.float32(site.bold_scale)).astype(np.float32)


def _decimate(array: np.ndarray, factor: int) -> np.ndarray:
    """Fine-grid array -> BOLD grid: triangle filter of width ``factor``, then every ``factor``-th voxel.

    Partial-volume fractions stay fractions of the (larger) BOLD voxel.
    """
    if factor == 1:
        return array
    weights = np.array([factor - abs(k) for k in range(1 - factor, factor)], np.float32) / factor**2
    for axis in range(3):
        array = ndimage.correlate1d(array, weights, axis=axis, mode="constant")
    return np.ascontiguousarray(array[::factor, ::factor, ::factor])


def _upsample(array: np.ndarray, factor: int) -> np.ndarray:
    """BOLD-grid array -> fine grid (voxel ``factor * i`` is voxel ``i``) by linear interpolation.

    Separable; the last (contiguous) axis goes first, while the array is smallest.
    """
    for axis in (2, 1, 0):
        n = array.shape[axis]
        shape = list(array.shape)
        shape[axis] = factor * (n - 1) + 1
        out = np.empty(shape, np.float32)

        def along(s: slice, axis: int = axis) -> tuple[slice, ...]:
            return (slice(None),) * axis + (s,)

        out[along(slice(None, None, factor))] = array
        low = array[along(slice(None, -1))]
        step = array[along(slice(1, None))] - low
        for j in range(1, factor):
            out[along(slice(j, None, factor))] = low + np.float32(j / factor) * step
        array = out
    return array


def _max_displacement(motion: np.ndarray, affine: np.ndarray, shape: tuple[int, ...]) -> float:
    """Largest distance (mm) any point of the field of view moves under the inverse motions."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    world = affine[:3, :3] @ corners + affine[:3, 3:]
    worst = 0.0
    for params in motion:
        moved = np.linalg.inv(params_to_matrix(params))
        worst = max(worst, float(np.linalg.norm(moved[:3, :3] @ world + moved[:3, 3:] - world, axis=0).max()))
    return worst


def _reachable(nonzero: np.ndarray, factor: int, reach: int) -> np.ndarray:
    """BOLD voxels whose trilinear sample can be non-zero when the head moves.

    ``nonzero`` marks the non-zero voxels of the fine grid, ``reach`` bounds the motion of any
    point in fine voxels. A sample point within ``reach`` of BOLD voxel ``v`` (fine voxel
    ``factor * v``) interpolates fine voxels less than one voxel further away, so ``v``
    matters only if a non-zero fine voxel lies within chessboard distance ``reach`` of it.
    """
    if reach > 0:
        nonzero = ndimage.maximum_filter(nonzero, size=2 * reach + 1)
    return nonzero[::factor, ::factor, ::factor]


def _points(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxels of ``mask`` in C order: flat index, NIfTI (Fortran-order) flat index, coordinates (3, N).

    Interpolating points in the memory order of the image keeps the lookups cache-friendly
    (three times faster than Fortran order on a C-ordered image).
    """
    index = np.flatnonzero(mask.reshape(-1))
    ijk = np.unravel_index(index, mask.shape)
    return index, np.ravel_multi_index(ijk, mask.shape, order="F"), np.stack(ijk).astype(np.float32)


def _map(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``matrix`` (4x4, voxel -> voxel) applied to points (3, N), float32."""
    # Explicit products: a BLAS call on such thin matrices is slower and may spin up threads.
    m = matrix.astype(np.float32)
    out = np.empty_like(points)
    for i in range(3):
        out[i] = m[i, 0] * points[0]
        out[i] += m[i, 1] * points[1]
        out[i] += m[i, 2] * points[2]
        out[i] += m[i, 3]
    return out


def simulate_bold(
    cfg: SimulationConfig,
    ref: Reference,
    subject: Subject,
    visit_index: int,
    traits: SubjectTraits,
    warp: SubjectWarp,
    site: Site,
) -> BoldResult:
    """Synthesise one resting-state run of ``subject`` at one visit.

    Volume ``t`` is one trilinear resampling, through its rigid motion, of the head at the
    reference pose: the EPI baseline on the fine (oversampled) grid, which carries the sharp
    anatomy, plus the neuronal and physiological fluctuations of that volume, defined on the
    BOLD grid (they are smooth on that scale) and linearly interpolated to the fine grid.
    Only voxels the moving head can reach are resampled (the others stay exactly 0), at
    precomputed grid coordinates in memory order, and the run is assembled directly in
    NIfTI (Fortran) order.
    """
    visit = subject.visits[visit_index]
    rng = subject_rng(cfg.seed, subject.index, 30 + visit_index)
    noise = cfg.noise_scale
    shape = tuple(int(round(f / cfg.bold_resolution)) for f in BOLD_FOV_MM)
    affine = centred_affine(shape, cfg.bold_resolution)
    over = cfg.bold_oversample
    n_t = cfg.n_volumes

    misalignment = np.concatenate([rng.normal(0, 0.8, 3), np.deg2rad(rng.normal(0, 0.6, 3))])
    to_t1w = params_to_matrix(misalignment)
    aged = aged_tissues(ref, subject, visit, traits)
    maps = {k: aged[k] for k in ("GM", "WM", "CSF")} | {"head": ref.head}
    got, base = _reference_image(ref, warp, maps, shape, to_t1w @ affine, over, site)

    # Fluctuations on the BOLD grid, only where there is tissue.
    coarse = {k: _decimate(got[k], over) for k in ("GM", "WM", "CSF")}
    coarse_brain = coarse["GM"] + coarse["WM"] + coarse["CSF"]
    coarse_base = _decimate(base, over)
    support = np.flatnonzero(coarse_brain.reshape(-1) > 0.01)
    conn = subject_connectivity(visit.biological_age, subject.sex, rng, subject.reserve, subject.pace)
    signals = roi_signals(conn, n_t, cfg.tr, rng)
    phys = band_limited(n_t, 3, cfg.tr, rng, band=(0.005, 0.2)).astype(np.float32)  # global, WM, CSF
    parcel = got["parcels"][::over, ::over, ::over].reshape(-1)[support].astype(np.int64)
    padded = np.concatenate([np.zeros((n_t, 1)), signals], axis=1).astype(np.float32)
    c_gm, c_wm, c_csf, c_brain = (a.reshape(-1)[support] for a in (*coarse.values(), coarse_brain))
    phys_w = np.float32(noise) * np.stack([0.004 * c_brain, 0.004 * c_wm, 0.02 * c_csf]).astype(np.float32)
    fluct = coarse_base.reshape(-1)[support] * (
        np.float32(SIGNAL_CHANGE) * c_gm * padded[:, parcel] + phys @ phys_w
    )  # (T, support)

    scale = float(motion_scale(visit.biological_age)) * cfg.motion_scale * float(np.exp(rng.normal(0, 0.4)))
    motion = motion_trajectory(n_t, scale, rng)
    steps = np.abs(np.diff(motion, axis=0))
    jerks = np.r_[0.0, steps[:, :3].sum(1) + 50 * steps[:, 3:].sum(1)]

    # The fluctuations live on the BOLD grid inside the box around the brain (one voxel
    # margin, so their linear interpolation to the fine grid ends at zero within it).
    ijk = np.unravel_index(support, shape)
    lo = np.maximum(np.min(ijk, axis=1) - 1, 0)
    hi = np.minimum(np.max(ijk, axis=1) + 2, shape)
    box_shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    in_box = np.ravel_multi_index(tuple(i - a for i, a in zip(ijk, lo, strict=True)), box_shape)
    fine_box = tuple(slice(over * a, over * (b - 1) + 1) for a, b in zip(lo, hi, strict=True))
    fluct_box = np.zeros(box_shape, np.float32)

    # Only BOLD voxels that the moving head can reach need resampling; every other voxel is
    # 0 in every volume, exactly as a full resampling would leave it. A voxel moves by at
    # most `reach` (fine voxels) and linear interpolation looks less than one voxel further.
    nonzero = base > 0
    fluct_box.reshape(-1)[in_box] = 1.0
    nonzero[fine_box] |= _upsample(fluct_box, over) > 0
    reach = int(np.ceil(over * _max_displacement(motion, affine, shape) / cfg.bold_resolution))
    head_index, head_nifti, head_points = _points(_reachable(nonzero, over, reach))

    tsnr = site.tsnr * float(np.exp(rng.normal(0, 0.1)))
    ramp = np.linspace(-1, 1, n_t)
    # Spin-history: a jerk larger than 0.5 mm darkens the volume by up to 5 %.
    gain = 1 - 0.05 * np.minimum(jerks / 2.0, 1.0) * (jerks > 0.5) + 0.003 * noise * ramp**2
    drift = np.zeros(head_index.size, np.float32)
    if noise > 0:
        # Scanner drift: a smooth spatial pattern ramping linearly, plus a global quadratic.
        drift = bias_field(shape, rng, 0.01 * noise).reshape(-1)[head_index] - 1

    image = base.copy()
    to_vox = np.linalg.inv(affine)
    to_fine = np.diag([over, over, over, 1.0])
    moved = np.empty((n_t, head_index.size), np.float32)
    for t in range(n_t):
        fluct_box.reshape(-1)[in_box] = fluct[t]
        np.add(base[fine_box], _upsample(fluct_box, over), out=image[fine_box])
        # Pull: voxel v of volume t shows the reference head at M_t^-1 (A v).
        mat = to_fine @ to_vox @ np.linalg.inv(params_to_matrix(motion[t])) @ affine
        moved[t] = ndimage.map_coordinates(image, _map(mat, head_points), order=1, prefilter=False)
        moved[t] *= np.float32(gain[t]) * (1 + np.float32(ramp[t]) * drift)

    gm_fine = got["GM"] > 0.5
    gm_mean = float(base[gm_fine].mean()) if np.any(gm_fine) else float(base.mean())
    sigma = np.float32(gm_mean / tsnr * noise)
    # (time, voxels) with voxels in NIfTI order: its transpose is Fortran-ordered (X, Y, Z, T),
    # which nibabel writes without reordering.
    series = np.zeros((n_t, int(np.prod(shape))), np.int16)
    if noise > 0:
        # Rician noise (magnitude of complex Gaussian noise). Where the signal exceeds 5 sigma
        # it is Gaussian to within 1 %, so the imaginary channel is only drawn for dark voxels;
        # where the signal is exactly 0 (air the head never reaches) it is Rayleigh.
        dark = np.flatnonzero(moved.mean(0) < 5 * sigma)
        moved += sigma * rng.standard_normal(moved.shape, dtype=np.float32)
        air = np.ones(series.shape[1], bool)
        air[head_nifti] = False
        air = np.flatnonzero(air)
        for t in range(n_t):
            row = moved[t]
            real = row[dark]
            imag = sigma * rng.standard_normal(dark.size, dtype=np.float32)
            row[dark] = np.sqrt(real * real + imag * imag)
            rayleigh = rng.random(air.size, dtype=np.float32)
            np.log1p(-rayleigh, out=rayleigh)
            rayleigh *= -2 * sigma * sigma
            series[t, air] = np.rint(np.sqrt(rayleigh, out=rayleigh))
    np.rint(moved, out=moved)
    np.clip(moved, 0, 32767, out=moved)
    for t in range(n_t):
        series[t, head_nifti] = moved[t]
    del moved
    bold = series.reshape(n_t, *shape[::-1]).T
    mask = got["brain"][::over, ::over, ::over]
    return BoldResult(
        affine=affine,
        bold=bold,
        motion=motion,
        misalignment=misalignment,
        roi_signals=signals,
        model_corr=conn.roi_correlation(network_model()),
        tsnr=tsnr if noise > 0 else float("inf"),
        mask=(mask > 0.5).astype(np.uint8),
    )
