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
VENTRICLE_SIGMA_MM = 5.0
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
    vent_field: np.ndarray  # (3, X, Y, Z) unit-free gradient field (mm) that expands ventricles
    vent_gain: float  # d(ventricle volume, mm^3)/d(alpha) of the pull warp x + alpha*field
    parcels: np.ndarray | None  # int16 Seitzman ROI index + 1 (0 = no ROI)

    @property
    def voxel_volume(self) -> float:
        """Voxel volume in mm^3."""
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def world_to_voxel(self, points: np.ndarray) -> np.ndarray:
        """MNI mm (3, N) -> voxel coordinates (3, N) of this grid."""
        inv = np.linalg.inv(self.affine)
        return (inv[:3, :3] @ points + inv[:3, 3:]).astype(np.float32)


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
    affine = head_img.affine.copy()
    if resolution == 2:
        arrays = [_decimate(a) for a in arrays]
        affine[:3, :3] *= 2
    elif resolution != 1:
        raise ValueError(f"reference resolution must be 1 or 2 mm, got {resolution}")
    head, gm, wm, csf = arrays
    head = head / float(np.median(head[wm > 0.9]))

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
    # The pull warp x -> x + alpha * grad(S) moves every boundary voxel's sample point towards
    # the ventricle, so the ventricles grow for alpha > 0 (and shrink for alpha < 0).
    field = np.stack(np.gradient(smooth, resolution)).astype(np.float32)
    field /= float(np.abs(field).max())
    content = ndimage.gaussian_filter(csf * ventricles, 0.5)
    grad_q = np.stack(np.gradient(content, resolution))
    vent_gain = float((grad_q * field).sum() * resolution**3)

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
        vent_gain=vent_gain,
        parcels=parcels,
    )


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
