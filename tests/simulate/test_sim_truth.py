"""Ground truth follows the generative model: ageing, sex, motion."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, optimize

from bids_brainage.simulate import simulate_features
from bids_brainage.simulate.rigid import PARAM_NAMES, params_to_matrix

TRUTH = Path("derivatives") / "simulation"


def test_grey_matter_falls_and_ventricles_grow_with_biological_age(tiny_dataset: Path) -> None:
    truth = pd.read_csv(tiny_dataset / TRUTH / "truth.tsv", sep="\t")
    # Within subject, 30 years later: less grey matter, larger ventricles, same skull.
    for _, visits in truth.groupby("participant_id"):
        young, old = visits.sort_values("biological_age").iloc[[0, -1]].itertuples()
        assert old.biological_age > young.biological_age + 20
        assert old.GM_total < 0.95 * young.GM_total
        assert old.ventricles > 1.2 * young.ventricles
        assert old.TIV == pytest.approx(young.TIV, rel=0.03)
        frontal = [c for c in truth.columns if c.endswith("superiorfrontal")]
        assert all(getattr(old, c) < getattr(young, c) for c in frontal)
    # Across subjects too, relative to head size.
    rel_gm = truth.GM_total / truth.TIV
    rel_vent = truth.ventricles / truth.TIV
    assert np.corrcoef(truth.biological_age, rel_gm)[0, 1] < -0.5
    assert np.corrcoef(truth.biological_age, rel_vent)[0, 1] > 0.5


def test_males_have_larger_intracranial_volume(tiny_dataset: Path) -> None:
    # Feature mode shares the subjects' traits with the images, so a large cohort is cheap.
    table = simulate_features(400, seed=2, n_rois=4)
    ratio = table[table.sex == "M"].smri__TIV.mean() / table[table.sex == "F"].smri__TIV.mean()
    assert 1.05 < ratio < 1.15
    truth = pd.read_csv(tiny_dataset / TRUTH / "truth.tsv", sep="\t")
    adult = truth[truth.biological_age > 16]
    assert adult[adult.sex == "M"].TIV.mean() > adult[adult.sex == "F"].TIV.mean()


def _bold_and_motion(root: Path) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    img = nib.load(root / "sub-001" / "func" / "sub-001_task-rest_bold.nii.gz")
    motion = pd.read_csv(root / TRUTH / "sub-001/func/sub-001_task-rest_desc-motion_timeseries.tsv", sep="\t")
    return img.get_fdata(), img.affine, motion


def test_written_motion_is_the_applied_motion(still_dataset: Path) -> None:
    """Predicting volume t from volume 0 with the documented convention beats every alternative."""
    data, affine, motion = _bold_and_motion(still_dataset)
    t = int(np.argmax(np.abs(motion[list(PARAM_NAMES[:3])].to_numpy()).sum(1)))
    params = motion.loc[t, list(PARAM_NAMES)].to_numpy(float)
    inner = (slice(3, -3),) * 3

    def error(p: np.ndarray) -> float:
        # V_t(y) = V_0(M^-1 y): resample volume 0 through the inverse of M.
        mat = np.linalg.inv(affine) @ np.linalg.inv(params_to_matrix(p)) @ affine
        pred = ndimage.affine_transform(data[..., 0], mat[:3, :3], mat[:3, 3], order=1)
        return float(np.abs(pred - data[..., t])[inner].mean())

    best = error(params)
    assert best < 0.5 * error(np.zeros(6))
    assert best < 0.5 * error(-params)
    swapped = params.copy()
    swapped[3:] = swapped[3:][::-1]  # wrong rotation order/axes
    assert best < error(swapped)


def test_motion_is_recovered_by_registration(still_dataset: Path) -> None:
    """Re-estimate the rigid motion of the noise-free run by least squares (V_t(M x) = V_0(x))."""
    data, affine, motion = _bold_and_motion(still_dataset)
    ref = ndimage.gaussian_filter(data[..., 0], 1.0)
    mask = ref > np.percentile(ref, 60)
    border = np.zeros_like(mask)
    border[4:-4, 4:-4, 4:-4] = True
    mask &= border  # moving content in and out of the field of view is not motion to fit
    world = affine[:3, :3] @ np.argwhere(mask)[::2].T + affine[:3, 3:]  # every other voxel suffices
    inv_affine = np.linalg.inv(affine)
    truth = motion[list(PARAM_NAMES)].to_numpy(float)
    for t in np.argsort(-np.abs(truth[:, :3]).sum(1))[:2]:
        moving = ndimage.gaussian_filter(data[..., t], 1.0)

        def residual(p: np.ndarray, moving: np.ndarray = moving) -> np.ndarray:
            mat = inv_affine @ params_to_matrix(p)
            coords = mat[:3, :3] @ world + mat[:3, 3:]
            return ndimage.map_coordinates(moving, coords, order=1) - ref[mask][::2]

        fit = optimize.least_squares(residual, np.zeros(6), diff_step=1e-4).x
        trans_err = np.abs(fit[:3] - truth[t, :3])
        rot_err = np.abs(fit[3:] - truth[t, 3:])
        assert np.abs(truth[t, :3]).max() > 0.5  # the case is not trivial
        assert trans_err.max() < 0.15 * np.abs(truth[t, :3]).max() + 0.05, (fit, truth[t])
        assert rot_err.max() < 0.15 * np.abs(truth[t, 3:]).max() + 0.001, (fit, truth[t])
