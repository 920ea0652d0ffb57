"""Quality control of one BOLD run and the exclusion rule (no nipype; wrapped by
:mod:`bids_brainage.interfaces.connectivity` as the ``run_qc`` node)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_brainage.compute.denoise import censoring_mask, framewise_displacement


def exclusion_reasons(
    n_volumes: int,
    n_retained: int,
    all_rois_missing: bool,
    *,
    fd_threshold: float,
    max_scrubbed_fraction: float,
    min_volumes: int,
    repetition_time: float | None = None,
) -> list[str]:
    """Why a run is excluded (empty: usable): too much censored, too few volumes left, no ROI.

    With ``repetition_time`` (s) the too-short reason also says the retained and the minimum
    time in seconds, the unit of ``--min-time``.
    """
    frac = 1.0 - n_retained / n_volumes
    reasons = []
    if frac > max_scrubbed_fraction:
        reasons.append(
            f"{frac:.0%} of volumes scrubbed (FD > {fd_threshold} mm), more than {max_scrubbed_fraction:.0%}"
        )
    if n_retained < min_volumes:
        if repetition_time:
            reasons.append(
                f"{n_retained} usable volumes ({n_retained * repetition_time:.0f} s), fewer than the "
                f"minimum {min_volumes} ({min_volumes * repetition_time:.0f} s, --min-time)"
            )
        else:
            reasons.append(f"{n_retained} usable volumes, fewer than the minimum {min_volumes}")
    if all_rois_missing:
        reasons.append("no atlas ROI overlaps the BOLD brain mask (failed registration?)")
    return reasons


def write_outliers(keep: np.ndarray, fd_threshold: float, out_dir: str) -> tuple[Path, Path]:
    """XCP-D's ``outliers.tsv``: one ``framewise_displacement`` column, 1 for a censored volume
    (FD above ``fd_threshold``) and 0 for a retained one, one row per volume after the dummy
    scans; and its sidecar. Returns both paths."""
    cwd = Path(out_dir)
    tsv, sidecar = cwd / "outliers.tsv", cwd / "outliers.json"
    pd.DataFrame({"framewise_displacement": (~np.asarray(keep, bool)).astype(int)}).to_csv(
        tsv, sep="\t", index=False
    )
    meta = {
        "Description": "Censoring mask (XCP-D outliers): 1 marks a volume removed before the connectivity "
        "was computed, 0 a retained one; one row per volume of the run after the dummy scans",
        "framewise_displacement": {
            "Description": f"1 when the framewise displacement (Power) exceeds {fd_threshold:g} mm",
            "Levels": {"0": "retained", "1": "censored (high motion)"},
        },
        "Threshold": {"framewise_displacement": fd_threshold, "Units": "mm"},
    }
    sidecar.write_text(json.dumps(meta, indent=2))
    return tsv, sidecar


def run_qc(
    confounds: str,
    out_dir: str,
    *,
    n_rois: int,
    missing_rois: list[str],
    band_pass_applied: bool,
    fd_threshold: float,
    max_scrubbed_fraction: float,
    min_volumes: int,
    dummy_scans: int,
    tsnr: float | None = None,
    repetition_time: float | None = None,
) -> dict[str, Any]:
    """The run's QC numbers and whether it is excluded.

    Motion (FD, DVARS) comes from the confounds table, censoring from ``fd_threshold`` (the
    rule of :func:`bids_brainage.compute.denoise.censoring_mask`), ``missing_rois`` and
    ``band_pass_applied`` from the denoising step. A run censoring more than
    ``max_scrubbed_fraction``, keeping fewer than ``min_volumes`` or without any ROI is
    excluded. Writes ``qc.tsv``, ``qc.json`` and the censoring mask (:func:`write_outliers`) in
    ``out_dir``; returns their paths, the QC numbers (``qc``), ``excluded`` and
    ``exclusion_reason``.
    """
    conf = pd.read_csv(confounds, sep="\t")
    fd = framewise_displacement(conf)
    n_vols = len(fd)
    keep = censoring_mask(conf, fd_threshold)
    n_keep = int(keep.sum())
    frac = 1.0 - n_keep / n_vols
    reasons = exclusion_reasons(
        n_vols, n_keep, len(missing_rois) == n_rois, fd_threshold=fd_threshold,
        max_scrubbed_fraction=max_scrubbed_fraction, min_volumes=min_volumes,
        repetition_time=repetition_time,
    )  # fmt: skip
    excluded = bool(reasons)
    reason = "; ".join(reasons)
    dv = conf["dvars"].to_numpy(dtype=float)
    qc = {
        "excluded": excluded,
        "exclusion_reason": reason,
        "n_volumes": n_vols,
        "n_dummy_scans": dummy_scans,
        "n_volumes_retained": n_keep,
        "fraction_scrubbed": round(frac, 4),
        "mean_fd": round(float(fd[1:].mean()) if n_vols > 1 else 0.0, 4),
        "max_fd": round(float(fd.max()), 4),
        "mean_dvars": round(float(np.nanmean(dv)), 4) if np.isfinite(dv).any() else None,
        "mean_std_dvars": round(float(np.nanmean(conf["std_dvars"])), 4) if np.isfinite(dv).any() else None,
        "tsnr": round(tsnr, 3) if tsnr is not None else None,
        "band_pass_applied": band_pass_applied,
        "n_rois_missing": len(missing_rois),
        "missing_rois": list(missing_rois),
    }
    cwd = Path(out_dir)
    qc_tsv = cwd / "qc.tsv"
    pd.DataFrame([{k: v for k, v in qc.items() if k != "missing_rois"}]).to_csv(
        qc_tsv, sep="\t", index=False, na_rep="n/a"
    )
    qc_json = cwd / "qc.json"
    qc_json.write_text(json.dumps({"Description": "Quality control of the BOLD run", **qc}, indent=2))
    outliers, outliers_json = write_outliers(keep, fd_threshold, out_dir)
    return dict(
        qc_tsv=str(qc_tsv), qc_json=str(qc_json), outliers=str(outliers), outliers_json=str(outliers_json),
        qc=qc, excluded=excluded, exclusion_reason=reason,
    )  # fmt: skip
