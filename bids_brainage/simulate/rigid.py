"""Rigid-body algebra shared by head pose, head motion and BOLD-to-T1w misalignment.

Convention (the same as fMRIPrep's ``trans_*``/``rot_*`` confounds and the project's
head-motion correction): parameters ``(trans_x, trans_y, trans_z, rot_x, rot_y, rot_z)``,
translations in mm and rotations in radians, define the 4x4 world-space (RAS mm) matrix

    M = [[R, t], [0, 1]],   R = Rx(rot_x) @ Ry(rot_y) @ Rz(rot_z),

rotating about the world origin (the scanner isocentre, which the simulator places at the
centre of every image grid) and then translating.
"""

from __future__ import annotations

import numpy as np

PARAM_NAMES = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """``Rx @ Ry @ Rz`` for right-handed angles in radians."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_x @ rot_y @ rot_z


def params_to_matrix(params: np.ndarray) -> np.ndarray:
    """4x4 rigid matrix ``x -> R x + t`` from the six parameters."""
    params = np.asarray(params, float)
    mat = np.eye(4)
    mat[:3, :3] = rotation(*params[3:])
    mat[:3, 3] = params[:3]
    return mat


def centred_affine(shape: tuple[int, ...], voxel_mm: float) -> np.ndarray:
    """Voxel-to-world affine (RAS, isotropic) whose grid centre is the world origin."""
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -voxel_mm * (np.asarray(shape[:3], float) - 1) / 2
    return affine


def grid_points(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """World coordinates (3, N) float32 of every voxel centre, C order."""
    ijk = np.indices(shape, dtype=np.float32).reshape(3, -1)
    return (affine[:3, :3].astype(np.float32) @ ijk + affine[:3, 3:].astype(np.float32)).astype(np.float32)
