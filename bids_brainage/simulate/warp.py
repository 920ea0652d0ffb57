"""The per-subject mapping from native (scanner) space to MNI space.

A point ``y`` of the subject's T1w world space is pulled back to the template through

1. head pose and head size: ``a = c0 + D^-1 R^T (y - t)`` (rigid pose ``R, t``; ``D`` the
   subject's head scale, isotropic size x slight anisotropy; ``c0`` the brain centre);
2. individual anatomy: ``b = a + u(a)``, a smooth random displacement (B-spline-like field
   on a 12 mm grid), kept small enough that the map stays invertible;
3. ageing of the ventricles: ``x = b + alpha * g(b)``, ``g`` the gradient of the smoothed
   ventricle mask; ``alpha > 0`` pulls boundary samples inwards so the ventricles grow
   and the periventricular white matter is compressed, like atrophy does.

The same function maps BOLD voxels (after the BOLD-to-T1w misalignment), so both
modalities share one anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bids_brainage.simulate.rigid import params_to_matrix
from bids_brainage.simulate.space import BRAIN_CENTRE_MNI, Reference

FIELD_SPACING_MM = 12.0
FIELD_ORIGIN_MNI = np.array([-110.0, -146.0, -84.0])
FIELD_SHAPE = (20, 24, 20)


@dataclass(frozen=True)
class SubjectWarp:
    """Parameters of one subject's native-to-MNI mapping at one visit."""

    pose: np.ndarray  # six rigid parameters (head position in the scanner)
    scale: np.ndarray  # (3,) head scale factors (subject size / template size)
    field: np.ndarray  # (3, *FIELD_SHAPE) random displacement in mm on the coarse grid
    alpha: float  # ventricle expansion strength in mm

    def to_mni(self, points: np.ndarray, ref: Reference) -> np.ndarray:
        """MNI coordinates (3, N) float32 of native world points (3, N)."""
        mat = params_to_matrix(self.pose)
        rot, trans = mat[:3, :3], mat[:3, 3:]
        lin = (rot.T / self.scale[:, None]).astype(np.float32)
        a = lin @ (points - trans.astype(np.float32)) + BRAIN_CENTRE_MNI[:, None].astype(np.float32)
        grid = ((a - FIELD_ORIGIN_MNI[:, None]) / FIELD_SPACING_MM).astype(np.float32)
        b = a + np.stack([ndimage.map_coordinates(c, grid, order=1, mode="nearest") for c in self.field])
        if self.alpha:
            vox = ref.world_to_voxel(b)
            g = np.stack([ndimage.map_coordinates(c, vox, order=1, cval=0.0) for c in ref.vent_field])
            b += np.float32(self.alpha) * g
        return b.astype(np.float32, copy=False)


def random_field(rng: np.random.Generator, rms_mm: float = 2.5) -> np.ndarray:
    """Smooth random displacement field (3, *FIELD_SHAPE) with the given RMS in mm.

    The amplitude is capped so that the largest displacement gradient stays below 0.3,
    which keeps the Jacobian determinant positive (the map is invertible).
    """
    noise = rng.standard_normal((3, *FIELD_SHAPE))
    field = np.stack([ndimage.gaussian_filter(c, 1.0, mode="wrap") for c in noise])
    field *= rms_mm / np.sqrt((field**2).mean())
    max_grad = max(float(np.abs(np.gradient(c, FIELD_SPACING_MM)).max()) for c in field)
    if max_grad > 0.3:
        field *= 0.3 / max_grad
    return field.astype(np.float32)
