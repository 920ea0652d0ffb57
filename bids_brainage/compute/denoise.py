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
from bids_brainage.defaults import DEFAULT_BAND_PASS

HIGH_PASS, LOW_PASS = DEFAULT_BAND_PASS


def framewise_displacement(confounds: pd.DataFrame) -> np.ndarray:
    """FD (Power) of each volume, 0 for the first (which has none)."""
    return confounds["framewise_displacement"].fillna(0).to_numpy()


def censoring_mask(confounds: pd.DataFrame, fd_threshold: float) -> np.ndarray:
    """True for the volumes kept: FD at or below ``fd_threshold`` (mm)."""
    return framewise_displacement(confounds) <= fd_threshold


def nuisance_regressors(columns: list[str], global_signal: bool) -> list[str]:
    """24P motion (the ``trans_*``/``rot_*`` columns and their expansions), WM, CSF [, GS]."""
    regressors = [c for c in columns if c.startswith(PARAM_NAMES)] + ["white_matter", "csf"]
    if global_signal:
        regressors.append("global_signal")
    return regressors


def denoise_timeseries(
    bold: str,
    atlas_file: str,
    atlas_tsv: str,
    confounds: str,
    tr: float,
    out_dir: str,
    *,
    fd_threshold: float,
    global_signal: bool,
    high_pass: float = HIGH_PASS,
    low_pass: float = LOW_PASS,
) -> dict[str, Any]:
    """Mean ROI signals, censored and cleaned (24P + WM + CSF [+ GS], detrend, band-pass).

    ROI means are taken *before* regression and filtering: both are linear in time and the
    same for every voxel, so cleaning the ROI means equals averaging cleaned voxels, at a
    fraction of the cost. Censoring follows XCP-D: volumes with FD above the threshold are
    interpolated for the band-pass filter and then dropped (``nilearn.signal.clean``'s
    ``sample_mask``). ROIs without voxels stay NaN; with fewer than 5 retained volumes or no
    ROI at all nothing is cleaned (all NaN).

    Writes ``timeseries.tsv`` (the derivative, 5 significant digits) and ``timeseries.npy``
    (full precision, for the connectivity step) in ``out_dir``; returns their paths, the
    regressors used, the number of ROIs, the ROIs without voxels and whether the band-pass
    filter could be applied (too short runs are only regressed).
    """
    from nilearn.signal import clean

    data = np.asarray(nib.load(bold).dataobj, dtype=np.float32)
    labels = np.asarray(nib.load(atlas_file).dataobj).astype(np.int32)
    roi_names = list(pd.read_csv(atlas_tsv, sep="\t")["name"].astype(str))
    n_rois = len(roi_names)
    conf = pd.read_csv(confounds, sep="\t")
    regressors = nuisance_regressors(list(conf.columns), global_signal)
    keep = censoring_mask(conf, fd_threshold)
    n_keep = int(keep.sum())
    raw = roi_timeseries(data, labels, n_rois)
    missing = np.isnan(raw).any(0)
    ts = np.full((n_keep, n_rois), np.nan)
    filtered = True
    if n_keep >= 5 and not missing.all():
        nyquist = 0.5 / tr
        low = low_pass if 0 < low_pass < nyquist else None
        kwargs = dict(
            confounds=conf[regressors].fillna(0).to_numpy(), detrend=True, standardize="zscore_sample",
            t_r=tr, sample_mask=np.flatnonzero(keep),
        )  # fmt: skip
        try:
            cleaned = clean(
                raw[:, ~missing], filter="butterworth", high_pass=high_pass or None,
                low_pass=low, **kwargs,
            )  # fmt: skip
        except ValueError:
            # Too few volumes for the Butterworth filter's padding (short runs): regress only.
            filtered = False
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
