"""Building blocks of the BOLD simulator: fine-grid interpolation, decimation, resampled region."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bids_brainage.simulate import bold
from bids_brainage.simulate.rigid import centred_affine, params_to_matrix


@pytest.mark.parametrize("factor", [2, 3])
def test_upsample_is_trilinear_interpolation(factor: int) -> None:
    coarse = np.random.default_rng(0).random((5, 6, 7), dtype=np.float32)
    fine = bold._upsample(coarse, factor)
    assert fine.shape == tuple(factor * (n - 1) + 1 for n in coarse.shape)
    points = np.indices(fine.shape, dtype=np.float64).reshape(3, -1) / factor
    expected = ndimage.map_coordinates(coarse, points, order=1).reshape(fine.shape)
    np.testing.assert_allclose(fine, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("factor", [2, 3])
def test_decimate_keeps_partial_volumes(factor: int) -> None:
    """A fine-grid tissue map and its BOLD-grid version hold the same amount of tissue."""
    fine = np.zeros((factor * 12 + 1,) * 3, np.float32)
    fine[8:20, 5:25, 10:18] = np.random.default_rng(1).random((12, 20, 8), dtype=np.float32)
    coarse = bold._decimate(fine, factor)
    assert coarse.shape == (13, 13, 13)
    assert coarse.sum() * factor**3 == pytest.approx(float(fine.sum()), rel=1e-5)
    assert coarse.max() <= 1.0


def test_only_reachable_voxels_can_be_non_zero() -> None:
    """Restricting the resampling to _reachable voxels loses nothing a full resampling would show."""
    rng = np.random.default_rng(2)
    shape, voxel, factor = (20, 22, 18), 3.0, 2
    affine = centred_affine(shape, voxel)
    fine_shape = tuple(factor * (n - 1) + 1 for n in shape)
    head = np.zeros(fine_shape, np.float32)
    head[12:26, 10:30, 8:24] = 1.0 + rng.random((14, 20, 16), dtype=np.float32)
    # Pure translations make the bound tight (a smaller reach would miss voxels); the small
    # random rigid motions exercise rotations.
    shifts = np.zeros((4, 6))
    shifts[[0, 1, 2, 3], [0, 0, 1, 2]] = [7.0, -7.0, 6.0, -6.5]
    small = np.concatenate([rng.normal(0, 1.0, (6, 3)), rng.normal(0, 0.01, (6, 3))], axis=1)
    motion = np.concatenate([shifts, small])
    reach = int(np.ceil(factor * bold._max_displacement(motion, affine, shape) / voxel))
    mask = bold._reachable(head > 0, factor, reach)
    assert 0.05 < mask.mean() < 0.8  # neither empty nor the whole field of view
    grid = np.indices(shape, dtype=np.float64).reshape(3, -1)
    to_vox = np.linalg.inv(affine)
    for params in motion:
        mat = np.diag([factor] * 3 + [1.0]) @ to_vox @ np.linalg.inv(params_to_matrix(params)) @ affine
        full = ndimage.map_coordinates(head, mat[:3, :3] @ grid + mat[:3, 3:], order=1, prefilter=False)
        full = full.reshape(shape)
        assert np.any(full > 0)
        assert not np.any(full[~mask])
