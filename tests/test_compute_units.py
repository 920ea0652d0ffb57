"""Fast unit tests of the computation layer (``bids_brainage/compute``, no nipype): each
function on a small array whose answer is known, so a regression points at one function
rather than at a whole workflow run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_brainage.compute.confounds import dvars, expand_motion, motion_outliers
from bids_brainage.compute.connectivity import connectivity_matrix, roi_timeseries
from bids_brainage.compute.denoise import censoring_mask, framewise_displacement, nuisance_regressors
from bids_brainage.compute.hmc import PARAM_NAMES
from bids_brainage.compute.run_qc import exclusion_reasons
from bids_brainage.defaults import CONNECTIVITY_KINDS


def test_dvars_of_a_still_series_is_zero_and_a_jump_shows():
    data = np.full((50, 10), 1000.0)
    dv, std = dvars(data)
    assert np.isnan(dv[0]) and np.isnan(std[0]) and np.allclose(dv[1:], 0.0)
    jumped = data + np.random.default_rng(0).normal(0, 1, data.shape)
    jumped[:, 6] += 20.0  # every voxel spikes at volume 6
    dv, std = dvars(jumped)
    assert np.nanargmax(dv) in (6, 7) and min(dv[6], dv[7]) > 10 * np.nanmedian(dv)
    assert std[6] > 5 and np.nanmedian(std) < 1.5  # standardised: ~1 without the spike


def test_motion_outliers_one_column_per_censored_volume():
    fd = np.array([np.nan, 0.1, 0.7, 0.2, 0.9])
    spikes = motion_outliers(fd, 0.5)
    assert list(spikes.columns) == ["motion_outlier00", "motion_outlier01"]
    assert spikes["motion_outlier00"].tolist() == [0, 0, 1, 0, 0]
    assert spikes["motion_outlier01"].tolist() == [0, 0, 0, 0, 1]
    assert motion_outliers(np.zeros(4), 0.5).shape == (4, 0)


def test_censoring_keeps_volumes_at_or_below_the_threshold():
    confounds = pd.DataFrame({"framewise_displacement": [np.nan, 0.5, 0.51, 0.1]})
    assert framewise_displacement(confounds).tolist() == [0.0, 0.5, 0.51, 0.1]
    assert censoring_mask(confounds, 0.5).tolist() == [True, True, False, True]


def test_24_parameter_expansion_and_nuisance_set():
    motion = pd.DataFrame({name: np.arange(4.0) for name in PARAM_NAMES})
    expanded = expand_motion(motion)
    assert {"trans_x", "trans_x_derivative1", "trans_x_power2", "trans_x_derivative1_power2"} <= set(expanded)
    assert expanded["trans_x_power2"].tolist() == [0.0, 1.0, 4.0, 9.0]
    regressors = nuisance_regressors([*expanded.columns, "global_signal", "csf"], global_signal=False)
    assert len([r for r in regressors if r.startswith("trans_x")]) == 4 and len(regressors) == 24 + 2
    assert regressors[-2:] == ["white_matter", "csf"] and "global_signal" not in regressors
    assert nuisance_regressors(list(expanded.columns), global_signal=True)[-1] == "global_signal"


def test_roi_timeseries_is_the_mean_per_label_and_nan_for_empty_rois():
    data = np.arange(2 * 2 * 1 * 3, dtype=float).reshape(2, 2, 1, 3)
    labels = np.array([[[1], [1]], [[2], [0]]])
    ts = roi_timeseries(data, labels, n_rois=3)
    assert ts.shape == (3, 3)
    np.testing.assert_allclose(ts[:, 0], data[0, :, 0, :].mean(axis=0))
    np.testing.assert_allclose(ts[:, 1], data[1, 0, 0, :])
    assert np.isnan(ts[:, 2]).all()


@pytest.mark.parametrize("kind", list(CONNECTIVITY_KINDS))
def test_each_connectivity_kind_is_symmetric_fisher_z_with_zero_diagonal(kind):
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(200, 1))
    ts = np.hstack([shared + 0.3 * rng.normal(size=(200, 1)), shared + 0.3 * rng.normal(size=(200, 1)),
                    rng.normal(size=(200, 2))])  # fmt: skip
    mat = connectivity_matrix(ts, kind)
    assert mat.shape == (4, 4) and np.allclose(mat, mat.T) and np.allclose(np.diag(mat), 0.0)
    # ROIs 0 and 1 share a signal: the strongest edge, positive, in every measure.
    upper = np.triu_indices(4, k=1)
    strongest = np.argmax(np.abs(mat[upper]))
    assert (upper[0][strongest], upper[1][strongest]) == (0, 1) and mat[0, 1] > 0.5


def test_exclusion_reasons_name_each_rule():
    limits = {"fd_threshold": 0.5, "max_scrubbed_fraction": 0.2, "min_volumes": 50}
    assert exclusion_reasons(100, 90, False, **limits) == []
    reasons = exclusion_reasons(100, 40, True, **limits)
    assert len(reasons) == 3
    assert "60% of volumes scrubbed (FD > 0.5 mm)" in reasons[0]
    assert "40 usable volumes, fewer than the minimum 50" in reasons[1]
    assert "no atlas ROI" in reasons[2]
