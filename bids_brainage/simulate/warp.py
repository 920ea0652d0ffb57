"""The per-subject mapping from native (scanner) space to MNI space.

A point ``y`` of the subject's T1w world space is pulled back to the template through

1. head pose and head size: ``a = c0 + D^-1 R^T (y - t)`` (rigid pose ``R, t``; ``D`` the
   subject's head scale, isotropic size x slight anisotropy; ``c0`` the brain centre);
2. individual anatomy: ``b = a + u(a)``, a smooth random displacement (B-spline-like field
   on a 12 mm grid), kept small enough that the map stays invertible;
3. ageing of the ventricles: ``x = b + v(b)``, ``v`` the displacement of the flow of
   ``alpha * g``, ``g`` the gradient of the smoothed ventricle mask (see
   :func:`~bids_brainage.simulate.space.ventricle_flow`); ``alpha > 0`` pulls samples
   towards the ventricles, so they grow and the periventricular white matter is
   compressed, as atrophy does.

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
    vent_disp: np.ndarray | None = None  # (3, *box) flow displacement, MNI mm
    vent_affine: np.ndarray | None = None  # box voxel -> MNI mm

    def affine_part(self, points: np.ndarray) -> np.ndarray:
        """Step 1 only (pose and head size): native world points -> approximate MNI (3, N)."""
        mat = params_to_matrix(self.pose)
        rot, trans = mat[:3, :3], mat[:3, 3:]
        lin = (rot.T / self.scale[:, None]).astype(np.float32)
        offset = (BRAIN_CENTRE_MNI[:, None] - lin @ trans).astype(np.float32)
        return lin @ points + offset

    def nonlinear_part(self, a: np.ndarray) -> np.ndarray:
        """Steps 2 and 3 (individual anatomy, ventricle ageing) on approximate MNI points (3, N)."""
        grid = (a - FIELD_ORIGIN_MNI[:, None].astype(np.float32)) * np.float32(1 / FIELD_SPACING_MM)
        b = a + np.stack([ndimage.map_coordinates(c, grid, order=1, mode="nearest") for c in self.field])
        if self.vent_disp is not None:
            inv = np.linalg.inv(self.vent_affine).astype(np.float32)
            vox = inv[:3, :3] @ b + inv[:3, 3:]
            # The flow is zero outside its box: only sample points inside it.
            upper = np.array(self.vent_disp.shape[1:], np.float32)[:, None] - 1
            inside = np.flatnonzero(np.all((vox >= 0) & (vox <= upper), axis=0))
            sub = vox[:, inside]
            b[:, inside] += np.stack([ndimage.map_coordinates(c, sub, order=1) for c in self.vent_disp])
        return b

    def to_mni(self, points: np.ndarray, ref: Reference | None = None) -> np.ndarray:
        """MNI coordinates (3, N) float32 of native world points (3, N)."""
        return self.nonlinear_part(self.affine_part(points.astype(np.float32, copy=False)))


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
