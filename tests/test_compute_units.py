"""Fast unit tests of the computation layer (``bids_brainage/compute``, no nipype): each
function on a small array whose answer is known, so a regression points at one function
rather than at a whole workflow run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_brainage.compute.confounds import dvars, expand_motion, motion_outliers
from bids_brainage.compute.connectivity import connectivity_matrix, fisher_z, roi_timeseries
from bids_brainage.compute.denoise import (
    censoring_mask,
    expand_tissue_signals,
    framewise_displacement,
    nuisance_regressors,
)
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
    regressors = nuisance_regressors([*expanded.columns, "global_signal", "csf"], "26P")
    assert len([r for r in regressors if r.startswith("trans_x")]) == 4 and len(regressors) == 24 + 2
    assert regressors[-2:] == ["white_matter", "csf"] and "global_signal" not in regressors
    columns = list(expanded.columns)
    assert nuisance_regressors(columns, "27P")[-1] == "global_signal"
    assert nuisance_regressors(columns, "24P") == columns and nuisance_regressors(columns, "none") == []
    assert len(nuisance_regressors(columns, "36P")) == 36
    with pytest.raises(ValueError, match="unknown nuisance strategy '12P'"):
        nuisance_regressors(columns, "12P")


def test_36p_expansions_of_the_tissue_signals():
    """36P's derivatives and squares of WM, CSF and GS are computed when the table lacks them."""
    confounds = pd.DataFrame(
        {"white_matter": [1.0, 3.0, 2.0], "csf": [0.0, 1.0, 1.0], "global_signal": [2.0] * 3}
    )
    out = expand_tissue_signals(confounds)
    assert set(nuisance_regressors(list(out.columns), "36P")) == set(out.columns)
    assert np.isnan(out["white_matter_derivative1"][0])
    assert out["white_matter_derivative1"].tolist()[1:] == [2.0, -1.0]
    assert out["white_matter_power2"].tolist() == [1.0, 9.0, 4.0]
    assert out["white_matter_derivative1_power2"].tolist()[1:] == [4.0, 1.0]


def test_roi_timeseries_is_the_mean_per_label_and_nan_for_empty_rois():
    data = np.arange(2 * 2 * 1 * 3, dtype=float).reshape(2, 2, 1, 3)
    labels = np.array([[[1], [1]], [[2], [0]]])
    ts = roi_timeseries(data, labels, n_rois=3)
    assert ts.shape == (3, 3)
    np.testing.assert_allclose(ts[:, 0], data[0, :, 0, :].mean(axis=0))
    np.testing.assert_allclose(ts[:, 1], data[1, 0, 0, :])
    assert np.isnan(ts[:, 2]).all()


@pytest.mark.parametrize("kind", list(CONNECTIVITY_KINDS))
def test_each_connectivity_kind_is_symmetric_r_with_unit_diagonal_and_its_fisher_z(kind):
    rng = np.random.default_rng(1)
    shared = rng.normal(size=(200, 1))
    ts = np.hstack([shared + 0.3 * rng.normal(size=(200, 1)), shared + 0.3 * rng.normal(size=(200, 1)),
                    rng.normal(size=(200, 2))])  # fmt: skip
    mat = connectivity_matrix(ts, kind)
    assert mat.shape == (4, 4) and np.allclose(mat, mat.T) and np.allclose(np.diag(mat), 1.0)
    assert np.abs(mat).max() <= 1.0
    z = fisher_z(mat)  # the features: Fisher z, diagonal 0
    assert np.allclose(np.diag(z), 0.0) and np.isclose(z[0, 1], np.arctanh(mat[0, 1]))
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
    # With the TR, the too-short reason is also in seconds, the unit of --min-time.
    timed = exclusion_reasons(100, 40, False, repetition_time=2.0, **limits)
    assert "40 usable volumes (80 s), fewer than the minimum 50 (100 s, --min-time)" in timed[1]


def test_denoise_follows_the_nuisance_strategy_and_band_pass(tmp_path):
    """--nuisance-regressors and --lower-bpf/--upper-bpf/--disable-bandpass-filter reach the cleaning."""
    import nibabel as nib

    from bids_brainage.compute.denoise import denoise_timeseries

    rng = np.random.default_rng(0)
    n_t = 80
    labels = np.zeros((4, 4, 4), np.int16)
    labels[:2], labels[2:] = 1, 2
    nib.Nifti1Image(rng.normal(100, 1, (4, 4, 4, n_t)).astype(np.float32), np.eye(4)).to_filename(
        tmp_path / "b.nii"
    )
    nib.Nifti1Image(labels, np.eye(4)).to_filename(tmp_path / "a.nii")
    pd.DataFrame({"index": [1, 2], "name": ["a", "b"]}).to_csv(tmp_path / "a.tsv", sep="\t", index=False)
    motion = expand_motion(pd.DataFrame({name: rng.normal(0, 0.01, n_t) for name in PARAM_NAMES}))
    tissue = {name: rng.normal(size=n_t) for name in ("white_matter", "csf", "global_signal")}
    conf = pd.concat(
        [motion, pd.DataFrame(tissue), pd.DataFrame({"framewise_displacement": np.full(n_t, 0.1)})], axis=1
    )
    conf.to_csv(tmp_path / "c.tsv", sep="\t", index=False, na_rep="n/a")
    args = (
        str(tmp_path / "b.nii"),
        str(tmp_path / "a.nii"),
        str(tmp_path / "a.tsv"),
        str(tmp_path / "c.tsv"),
        2.0,
    )
    results = {}
    for strategy, band in (("36P", (0.01, 0.1)), ("none", (0.0, 0.0)), ("24P", (0.0, 0.1))):
        (tmp_path / strategy).mkdir()
        results[strategy] = denoise_timeseries(
            *args,
            str(tmp_path / strategy),
            fd_threshold=0.5,
            strategy=strategy,
            high_pass=band[0],
            low_pass=band[1],
        )
    assert len(results["36P"]["regressors"]) == 36 and results["36P"]["band_pass_applied"]
    assert results["none"]["regressors"] == [] and not results["none"]["band_pass_applied"]
    assert len(results["24P"]["regressors"]) == 24 and results["24P"]["band_pass_applied"]
    series = {k: np.load(v["timeseries_array"]) for k, v in results.items()}
    assert all(s.shape == (n_t, 2) and np.isfinite(s).all() for s in series.values())
    assert not np.allclose(series["none"], series["24P"])
