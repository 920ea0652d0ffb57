"""The reference anatomy in MNI space that every subject is warped from (cached per resolution).

It bundles the template head, GM/WM/CSF priors, the Desikan-Killiany labels on the
template grid, a lateral-ventricle mask with the smooth field that expands it, the
regional ageing rates, and a parcellation of grey matter into Seitzman-300 territories
(each GM voxel belongs to its nearest ROI within 12 mm) that carries the BOLD signals.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from bids_brainage import templates
from bids_brainage.simulate.lifespan import LOBE_RATE, lobe_of

# Box (MNI mm) that contains the lateral and third ventricles but no sulcal CSF of note.
_VENTRICLE_BOX = ((-32.0, 32.0), (-48.0, 30.0), (-4.0, 34.0))
VENTRICLE_SIGMA_MM = 9.0
PARCEL_RADIUS_MM = 12.0
# Centre of the brain in MNI mm: placed at the scanner isocentre (world origin).
BRAIN_CENTRE_MNI = np.array([0.0, -18.0, 8.0])


@dataclass(frozen=True)
class Reference:
    """Arrays of the reference anatomy on one template grid (all float32 unless noted)."""

    resolution: int
    affine: np.ndarray  # voxel -> MNI mm
    head: np.ndarray  # template T1w, white matter scaled to 1
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    dk: np.ndarray  # int16 Desikan-Killiany label (0 = none)
    dk_names: tuple[str, ...]  # name of label k at position k-1
    lobe_rate: np.ndarray  # regional multiplier of the grey-matter ageing rate
    ventricles: np.ndarray  # float32 0/1 mask of ventricular CSF region
    vent_field: np.ndarray  # (3, X, Y, Z) gradient of the smoothed mask, peak 1 (velocity field)
    support: np.ndarray  # bool: head plus a margin; nothing outside it needs sampling
    parcels: np.ndarray | None  # int16 Seitzman ROI index + 1 (0 = no ROI)
    region_rate: np.ndarray  # (n_regions + 1,) ageing-rate multiplier per DK label (0 = unlabelled)
    loss_order: np.ndarray  # flat indices of GM voxels, by DK label then distance from CSF
    gain_order: np.ndarray  # flat indices of GM+WM voxels, by DK label then decreasing GM fraction
    wm_loss_order: np.ndarray  # flat indices of WM voxels by distance from CSF (periventricular first)

    @property
    def voxel_volume(self) -> float:
        """Voxel volume in mm^3."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def in_support(self, points: np.ndarray) -> np.ndarray:
        """Boolean (N,): which MNI points (3, N) lie in :attr:`support` (nearest voxel)."""
        vox = np.rint(self.world_to_voxel(points)).astype(np.int32)
        shape = np.array(self.support.shape)[:, None]
        ok = np.all((vox >= 0) & (vox < shape), axis=0)
        ok[ok] = self.support[vox[0, ok], vox[1, ok], vox[2, ok]]
        return ok

    def world_to_voxel(self, points: np.ndarray) -> np.ndarray:
        """MNI mm (3, N) -> voxel coordinates (3, N) of this grid."""
        inv = np.linalg.inv(self.affine)
        return (inv[:3, :3] @ points + inv[:3, 3:]).astype(np.float32)


# Box (MNI mm) in which the ventricle expansion flow is computed; the driving field is
# negligible (< 1e-3 of its peak) outside it.
_FLOW_BOX = ((-64.0, 64.0), (-80.0, 62.0), (-36.0, 66.0))
FLOW_SPACING_MM = 4.0


def ventricle_flow(ref: Reference, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Displacement (3, *box) of the flow ``exp(alpha * g)`` and the box's voxel-to-MNI affine.

    Integrating the stationary field (scaling and squaring, as in diffeomorphic
    registration) keeps the map invertible however large the expansion, which a plain
    ``x + alpha * g`` is not beyond about 1.5x the young-adult ventricle volume.
    """
    lo = np.array([b[0] for b in _FLOW_BOX])
    shape = tuple(int((b[1] - b[0]) / FLOW_SPACING_MM) + 1 for b in _FLOW_BOX)
    box_affine = np.diag([FLOW_SPACING_MM] * 3 + [1.0])
    box_affine[:3, 3] = lo
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    mni = (box_affine[:3, :3] @ ijk + box_affine[:3, 3:]).astype(np.float32)
    vox = ref.world_to_voxel(mni)
    g = np.stack([ndimage.map_coordinates(c, vox, order=1, cval=0.0) for c in ref.vent_field])
    max_step = 0.2 * FLOW_SPACING_MM  # keep each squared step well below a grid cell
    n_squarings = max(0, int(np.ceil(np.log2(max(abs(alpha), 1e-6) / max_step))))
    disp = g * np.float32(alpha / 2**n_squarings)
    for _ in range(n_squarings):
        # u <- u + u o (id + u), in box voxel units for the lookup.
        pts = ijk + disp / FLOW_SPACING_MM
        disp = disp + np.stack(
            [ndimage.map_coordinates(c.reshape(shape), pts, order=1, mode="nearest") for c in disp]
        )
    return disp.reshape(3, *shape), box_affine


def template_resolution(voxel_mm: float) -> int:
    """Template grid to sample from: 1 mm for fine outputs, 2 mm otherwise (avoids aliasing cost)."""
    return 1 if voxel_mm < 1.75 else 2


@lru_cache(maxsize=2)
def reference(resolution: int) -> Reference:
    """Build (once per process) the reference anatomy at ``resolution`` mm (1 or 2)."""
    # Always start from the 1 mm files: nilearn's own 2 mm versions are resampled on every
    # load (cubic, seconds each), while a [1/4, 1/2, 1/4] filter and decimation is instant and
    # keeps partial-volume fractions meaningful.
    head_img = templates.mni_t1w(1)
    priors = templates.mni_tissue_priors(1)
    arrays = [np.asarray(img.dataobj, dtype=np.float32) for img in (head_img, *priors.values())]
    arrays[1:] = sharpen_tissues(*arrays[1:])
    affine = head_img.affine.copy()
    if resolution == 2:
        arrays = [_decimate(a) for a in arrays]
        affine[:3, :3] *= 2
    elif resolution != 1:
        raise ValueError(f"reference resolution must be 1 or 2 mm, got {resolution}")
    head, gm, wm, csf = arrays
    head = head / float(np.median(head[wm > 0.9]))
    # nilearn's template is skull-stripped; wrap the brain in synthetic extracerebral layers
    # so brain extraction has real work to do.
    head = np.where(gm + wm + csf > 0.5, head, _scalp(gm + wm + csf, resolution))

    shape = head.shape
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    mni = (affine[:3, :3] @ ijk + affine[:3, 3:]).astype(np.float32)

    dk_img, dk_table = templates.desikan_killiany()
    dk_vox = np.linalg.inv(dk_img.affine)
    coords = dk_vox[:3, :3] @ mni + dk_vox[:3, 3:]
    dk_data = np.asarray(dk_img.dataobj, dtype=np.int16)
    dk = ndimage.map_coordinates(dk_data, coords, order=0, cval=0).reshape(shape).astype(np.int16)
    names = dict(zip(dk_table["index"].astype(int), dk_table["name"].astype(str), strict=True))
    dk_names = tuple(names[k] for k in range(1, max(names) + 1))
    rate_lut = np.ones(len(dk_names) + 1, np.float32)
    for k, name in enumerate(dk_names, start=1):
        rate_lut[k] = LOBE_RATE[lobe_of(name)]
    lobe_rate = rate_lut[dk]

    box = np.ones(mni.shape[1], bool)
    for axis, (lo, hi) in enumerate(_VENTRICLE_BOX):
        box &= (mni[axis] >= lo) & (mni[axis] <= hi)
    ventricles = ((csf.reshape(-1) > 0.5) & box).reshape(shape)
    ventricles = ndimage.binary_opening(ventricles).astype(np.float32)
    sigma = VENTRICLE_SIGMA_MM / resolution
    smooth = ndimage.gaussian_filter(ventricles, sigma)
    # Following grad(S) moves a sample point towards the ventricles, so a pull warp along
    # its flow enlarges them (alpha > 0) or shrinks them (alpha < 0).
    field = np.stack(np.gradient(smooth, resolution)).astype(np.float32)
    field /= float(np.abs(field).max())

    loss_order, gain_order, wm_loss_order = _change_orders(gm, wm, csf, dk, resolution)

    # BOLD is always simulated from the 2 mm reference; the 1 mm one needs no parcels.
    parcels = _seitzman_parcels(mni, gm.reshape(-1)).reshape(shape) if resolution == 2 else None
    return Reference(
        resolution=resolution,
        affine=affine,
        head=head,
        gm=gm,
        wm=wm,
        csf=csf,
        dk=dk,
        dk_names=dk_names,
        lobe_rate=lobe_rate.astype(np.float32),
        ventricles=ventricles,
        vent_field=field,
        support=ndimage.binary_dilation(head > 0.02, iterations=max(2, 8 // resolution)),
        parcels=parcels,
        region_rate=rate_lut,
        loss_order=loss_order,
        gain_order=gain_order,
        wm_loss_order=wm_loss_order,
    )


def _change_orders(
    gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, dk: np.ndarray, resolution: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where grey matter is lost or gained first, within each Desikan-Killiany label.

    Atrophy thins the cortex from its CSF side and widens the sulci, so grey matter is
    turned into CSF starting with the voxels nearest CSF (distance in mm to the nearest
    CSF-dominated voxel, ties broken by the CSF fraction). Growth moves the grey/white
    boundary into white matter, so white matter is turned into grey matter starting with
    the voxels richest in grey matter. Returns flat voxel indices sorted by label, then by
    that priority (see :func:`bids_brainage.simulate.anatomy.aged_tissues`). Late-life
    white-matter loss turns the white matter nearest CSF into CSF first (all labels
    together; inside the brain that is mostly the periventricular white matter).
    """
    flat_dk = dk.reshape(-1)
    dist = ndimage.distance_transform_edt(csf < 0.5).astype(np.float32) * resolution
    loss_key = (dist - csf).reshape(-1)
    has_gm = np.flatnonzero(gm.reshape(-1) > 0)
    loss_order = has_gm[np.lexsort((loss_key[has_gm], flat_dk[has_gm]))]
    mixed = np.flatnonzero((gm.reshape(-1) > 0) & (wm.reshape(-1) > 0))
    gain_order = mixed[np.lexsort((-gm.reshape(-1)[mixed], flat_dk[mixed]))]
    has_wm = np.flatnonzero(wm.reshape(-1) > 0)
    wm_loss_order = has_wm[np.argsort(loss_key[has_wm], kind="stable")]
    return loss_order, gain_order, wm_loss_order


# Extracerebral layers outside a smooth brain envelope: (outer edge in mm, T1w intensity
# relative to white matter). Dura/CSF, skull tables around bright diploe, galea/muscle,
# subcutaneous fat (brightest on T1w) and skin.
_SCALP_LAYERS = ((2.0, 0.12), (3.5, 0.05), (5.5, 0.45), (7.0, 0.05), (10.0, 0.35), (15.0, 0.95), (17.0, 0.45))


#: Exponent that turns the template's population-average tissue probabilities into one
#: brain's partial-volume fractions (see :func:`sharpen_tissues`).
TISSUE_SHARPNESS = 3.0


def sharpen_tissues(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray) -> list[np.ndarray]:
    """Partial-volume fractions of one brain from the template's tissue probabilities (1 mm).

    The MNI152 GM/WM/CSF maps average 152 brains after nonlinear alignment: sulci and the
    grey/white boundary are blurred over several millimetres, and 82 % of brain voxels
    are less than 95 % one tissue. One brain imaged at 1 mm is crisp, with mixed voxels
    only at tissue boundaries. Raising the probabilities to the power
    :data:`TISSUE_SHARPNESS` and renormalising keeps every voxel's majority tissue and the
    brain outline (GM + WM + CSF is unchanged) but narrows each boundary to about a voxel
    (33 % of brain voxels below 95 % purity, 16 % below 80 %). Images built from the blurred
    maps had a wide band of GM/CSF and GM/WM mixtures that a three-class segmentation
    cannot unmix, which hid the subjects' grey-matter differences.
    """
    brain = gm + wm + csf
    powered = [np.power(np.clip(t, 0, None), TISSUE_SHARPNESS) for t in (gm, wm, csf)]
    total = powered[0] + powered[1] + powered[2]
    scale = np.where(total > 0, brain / np.maximum(total, 1e-12), 0).astype(np.float32)
    return [(t * scale).astype(np.float32) for t in powered]


def _scalp(brain: np.ndarray, resolution: int) -> np.ndarray:
    envelope = ndimage.gaussian_filter(brain, 4.0 / resolution) > 0.35
    dist = ndimage.distance_transform_edt(~envelope) * resolution
    out = np.zeros(brain.shape, np.float32)
    inner = 0.0
    for outer, value in _SCALP_LAYERS:
        out[(dist > inner) & (dist <= outer)] = value
        inner = outer
    return ndimage.gaussian_filter(out, 0.7 / resolution)


def _decimate(array: np.ndarray) -> np.ndarray:
    for axis in range(3):
        array = ndimage.correlate1d(array, [0.25, 0.5, 0.25], axis=axis, mode="nearest")
    return np.ascontiguousarray(array[::2, ::2, ::2])


def _seitzman_parcels(mni: np.ndarray, gm: np.ndarray) -> np.ndarray:
    atlas = templates.coord_atlas("Seitzman300")
    out = np.zeros(mni.shape[1], np.int16)
    candidates = np.flatnonzero(gm > 0.2)
    dist, nearest = cKDTree(atlas.coords).query(mni[:, candidates].T)
    keep = dist <= PARCEL_RADIUS_MM
    out[candidates[keep]] = nearest[keep] + 1
    return out
