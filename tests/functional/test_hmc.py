"""Head-motion correction recovers known rigid motion (targets: RMS <= 0.2 mm and <= 0.2 deg)."""

from __future__ import annotations

import numpy as np
import pytest
from func_synth import make_bold

from bids_brainage.compute import hmc


@pytest.fixture(scope="module")
def synthetic_run():
    # Moving volumes come from the 2 mm template onto a 3 mm grid: not the estimator's own model.
    return make_bold(shape=(56, 66, 54), zoom=3.0, n_vols=40, seed=3, tsnr=60.0, source_resolution=2)


def test_params_matrix_roundtrip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = np.concatenate([rng.normal(scale=3, size=3), rng.normal(scale=0.1, size=3)])
        c = rng.normal(scale=20, size=3)
        np.testing.assert_allclose(hmc.matrix_to_params(hmc.params_to_matrix(p, c), c), p, atol=1e-10)


def test_motion_recovered_within_targets(synthetic_run):
    data, affine, truth = synthetic_run
    result = hmc.realign(data, affine)
    true_mats = np.array([hmc.params_to_matrix(p) for p in truth])
    err = hmc.relative_params(result.matrices) - hmc.relative_params(true_mats)
    rms_mm = np.sqrt((err[:, :3] ** 2).mean())
    rms_deg = np.rad2deg(np.sqrt((err[:, 3:] ** 2).mean()))
    assert rms_mm <= 0.2, rms_mm
    assert rms_deg <= 0.2, rms_deg
    # Reported parameters are relative to the reference volume (the first one here).
    np.testing.assert_allclose(result.params[0], 0, atol=0.05)
    # FD follows the true FD closely.
    fd_est, fd_true = hmc.framewise_displacement(result.params), hmc.framewise_displacement(truth)
    assert np.corrcoef(fd_est, fd_true)[0, 1] > 0.95


def test_resample_undoes_motion(synthetic_run):
    data, affine, truth = synthetic_run
    mats = np.array([hmc.params_to_matrix(p) for p in truth])
    mask = hmc.reference_mask(data[..., 0], np.array([3.0] * 3))
    fixed = hmc.resample(data, affine, mats, within=mask)
    moved_sd = data[mask].std(-1).mean()
    fixed_sd = fixed[mask].std(-1).mean()
    assert fixed_sd < 0.6 * moved_sd


def test_itk_text_has_one_transform_per_volume():
    mats = np.tile(np.eye(4), (3, 1, 1))
    mats[1, :3, 3] = [1, 2, 3]
    text = hmc.itk_transform_text(mats)
    assert text.count("AffineTransform_double_3_3") == 3
    # RAS (1, 2, 3) mm is LPS (-1, -2, 3).
    assert "Parameters: 1 0 0 0 1 0 0 0 1 -1 -2 3" in text
