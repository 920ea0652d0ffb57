"""Censoring and denoising of ROI time series (no nipype; wrapped by
:mod:`bids_brainage.interfaces.connectivity` as the ``denoise`` node)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_brainage.compute.connectivity import roi_timeseries, save_table_and_array
from bids_brainage.compute.hmc import PARAM_NAMES
from bids_brainage.defaults import DEFAULT_BAND_PASS, DEFAULT_NUISANCE_REGRESSORS, NUISANCE_STRATEGIES

HIGH_PASS, LOW_PASS = DEFAULT_BAND_PASS


def framewise_displacement(confounds: pd.DataFrame) -> np.ndarray:
    """FD (Power) of each volume, 0 for the first (which has none)."""
    return confounds["framewise_displacement"].fillna(0).to_numpy()


def censoring_mask(confounds: pd.DataFrame, fd_threshold: float) -> np.ndarray:
    """True for the volumes kept: FD at or below ``fd_threshold`` (mm)."""
    return framewise_displacement(confounds) <= fd_threshold


#: Mean tissue signals of the 26P/27P/36P strategies, and the expansions 36P adds to each.
TISSUE_SIGNALS = ("white_matter", "csf", "global_signal")
EXPANSIONS = ("_derivative1", "_power2", "_derivative1_power2")


def nuisance_regressors(columns: list[str], strategy: str = DEFAULT_NUISANCE_REGRESSORS) -> list[str]:
    """Confound columns regressed out by ``strategy`` (a key of
    :data:`~bids_brainage.defaults.NUISANCE_STRATEGIES`): ``none``; ``24P`` motion (the
    ``trans_*``/``rot_*`` columns and their expansions); ``26P`` adds WM and CSF; ``27P`` the
    global signal; ``36P`` the derivatives, squares and squared derivatives of those three
    (fMRIPrep names, added by :func:`expand_tissue_signals` when the table lacks them)."""
    if strategy not in NUISANCE_STRATEGIES:
        raise ValueError(
            f"unknown nuisance strategy {strategy!r}; choose from {', '.join(NUISANCE_STRATEGIES)}"
        )
    if strategy == "none":
        return []
    regressors = [c for c in columns if c.startswith(PARAM_NAMES)]
    tissue = {"24P": (), "26P": TISSUE_SIGNALS[:2]}.get(strategy, TISSUE_SIGNALS)
    regressors += list(tissue)
    if strategy == "36P":
        regressors += [f"{name}{suffix}" for name in tissue for suffix in EXPANSIONS]
    return regressors


def expand_tissue_signals(confounds: pd.DataFrame) -> pd.DataFrame:
    """Add the missing ``<signal>_derivative1``, ``_power2`` and ``_derivative1_power2``
    columns of the WM, CSF and global signals (first-row derivative NaN, like fMRIPrep's)."""
    out = confounds.copy()
    for name in TISSUE_SIGNALS:
        if name not in out:
            continue
        x = out[name].astype(float)
        derivative = x.diff()
        for suffix, values in zip(EXPANSIONS, (derivative, x**2, derivative**2), strict=True):
            if f"{name}{suffix}" not in out:
                out[f"{name}{suffix}"] = values
    return out


def denoise_timeseries(
    bold: str,
    atlas_file: str,
    atlas_tsv: str,
    confounds: str,
    tr: float,
    out_dir: str,
    *,
    fd_threshold: float,
    strategy: str = DEFAULT_NUISANCE_REGRESSORS,
    high_pass: float = HIGH_PASS,
    low_pass: float = LOW_PASS,
) -> dict[str, Any]:
    """Mean ROI signals, censored and cleaned (the nuisance ``strategy``, detrend,
    band-pass; ``high_pass`` or ``low_pass`` 0 leaves out that edge, both 0 no filter).

    ROI means are taken *before* regression and filtering: both are linear in time and the
    same for every voxel, so cleaning the ROI means equals averaging cleaned voxels, at a
    fraction of the cost. Censoring follows XCP-D: volumes with FD above the threshold are
    interpolated for the band-pass filter and then dropped (``nilearn.signal.clean``'s
    ``sample_mask``). ROIs without voxels stay NaN; with fewer than 5 retained volumes or no
    ROI at all nothing is cleaned (all NaN).

    Writes ``timeseries.tsv`` (the derivative, 5 significant digits) and ``timeseries.npy``
    (full precision, for the connectivity step) in ``out_dir``; returns their paths, the
    regressors used, the number of ROIs, the ROIs without voxels and whether the band-pass
    filter was applied (not when disabled; too short runs are only regressed).
    """
    from nilearn.signal import clean

    data = np.asarray(nib.load(bold).dataobj, dtype=np.float32)
    labels = np.asarray(nib.load(atlas_file).dataobj).astype(np.int32)
    roi_names = list(pd.read_csv(atlas_tsv, sep="\t")["name"].astype(str))
    n_rois = len(roi_names)
    conf = pd.read_csv(confounds, sep="\t")
    regressors = nuisance_regressors(list(conf.columns), strategy)
    conf = expand_tissue_signals(conf) if strategy == "36P" else conf
    keep = censoring_mask(conf, fd_threshold)
    n_keep = int(keep.sum())
    raw = roi_timeseries(data, labels, n_rois)
    missing = np.isnan(raw).any(0)
    ts = np.full((n_keep, n_rois), np.nan)
    high = high_pass if high_pass and high_pass > 0 else None
    low = low_pass if 0 < low_pass < 0.5 / tr else None
    filtered = high is not None or low is not None
    if n_keep >= 5 and not missing.all():
        kwargs = dict(
            confounds=conf[regressors].fillna(0).to_numpy() if regressors else None, detrend=True,
            standardize="zscore_sample", t_r=tr, sample_mask=np.flatnonzero(keep),
        )  # fmt: skip
        cleaned = None
        if filtered:  # not with --disable-bandpass-filter
            try:
                cleaned = clean(
                    raw[:, ~missing], filter="butterworth", high_pass=high, low_pass=low, **kwargs,
                )  # fmt: skip
            except ValueError:
                # Too few volumes for the Butterworth filter's padding (short runs): regress only.
                filtered = False
        if cleaned is None:
            cleaned = clean(raw[:, ~missing], filter=False, **kwargs)
        ts[:, ~missing] = cleaned
    ts_file, ts_array = save_table_and_array(ts, roi_names, Path(out_dir) / "timeseries")
    return dict(
        timeseries=str(ts_file),
        timeseries_array=str(ts_array),
        regressors=regressors,
        n_rois=n_rois,
        missing_rois=[roi_names[i] for i in np.flatnonzero(missing)],
        band_pass_applied=filtered,
    )
