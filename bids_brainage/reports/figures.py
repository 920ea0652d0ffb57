"""Deterministic SVG figures (matplotlib) for the subject and group reports.

Every figure is saved with a fixed ``svg.hashsalt`` and without a date so re-running the
reports on the same outputs gives byte-identical files. Text stays text
(``svg.fonttype = 'none'``): smaller files that stay searchable in the browser.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bids_brainage.defaults import REPORT_SMALL_GROUP_N
from bids_brainage.utils import atomic

SEX_COLOURS = {"F": "#d95f02", "M": "#1b9e77"}
NEUTRAL = "#4c72b0"
EXCLUDED = "#c44e52"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _rc() -> dict[str, Any]:
    return {
        "svg.hashsalt": "bids_brainage",
        "svg.fonttype": "none",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
    }


def figure(ncols: int = 1, width: float = 4.2, height: float = 3.6) -> tuple[Any, Any]:
    """A new figure with ``ncols`` axes (our report style).

    Returns
    -------
    (Figure, Axes or ndarray of Axes)
    """
    plt = _plt()
    with plt.rc_context(_rc()):
        fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=True)
    return fig, axes


def svg_bytes(fig: Any) -> bytes:
    """The figure as deterministic SVG bytes; closes the figure."""
    plt = _plt()
    buffer = io.BytesIO()
    with plt.rc_context(_rc()):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return buffer.getvalue()


def save_svg(fig: Any, path: str | os.PathLike) -> Path:
    """Save ``fig`` as a deterministic SVG at ``path`` (atomic write); closes the figure."""
    data = svg_bytes(fig)
    return atomic.write_with(path, lambda tmp: tmp.write_bytes(data))


def _finite(*arrays: Any) -> np.ndarray:
    mask = np.ones(len(arrays[0]), bool)
    for array in arrays:
        mask &= np.isfinite(np.asarray(array, float))
    return mask


def _age_limits(*arrays: Any) -> tuple[float, float]:
    values = np.concatenate([np.asarray(a, float) for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 100.0
    pad = max(2.0, 0.05 * (values.max() - values.min()))
    return float(values.min() - pad), float(values.max() + pad)


def plot_predicted_vs_age(
    age: Sequence[float],
    predicted: Sequence[float],
    sex: Sequence[str],
    urls: Sequence[str | None] | None = None,
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    title: str = "Predicted vs chronological age",
) -> Any:
    """Scatter of predicted against chronological age with the identity line.

    ``urls`` (one per point, ``None`` for no link) become ``<a href>`` around the points
    in the SVG, so clicking a point in an inlined figure opens that subject's report.
    """
    age, predicted = np.asarray(age, float), np.asarray(predicted, float)
    sex = np.asarray(sex, dtype=object)
    fig, ax = figure(height=4.0, width=4.6)
    lo, hi = _age_limits(age, predicted)
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="identity")
    if lower is not None and upper is not None:
        low, up = np.asarray(lower, float), np.asarray(upper, float)
        ok = _finite(age, predicted, low, up)
        ax.vlines(age[ok], low[ok], up[ok], color="0.6", lw=0.8, alpha=0.6, label="interval")
    for key in sorted(set(sex.tolist())):
        pick = (sex == key) & _finite(age, predicted)
        if not pick.any():
            continue
        points = ax.scatter(
            age[pick],
            predicted[pick],
            s=22,
            color=SEX_COLOURS.get(str(key), NEUTRAL),
            edgecolor="white",
            linewidth=0.5,
            label=f"sex {key}",
            zorder=3,
        )
        if urls is not None:
            points.set_urls([u for u, p in zip(urls, pick, strict=True) if p])
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="chronological age (years)", ylabel="predicted age (years)")
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper left", frameon=False)
    return fig


def plot_gap_vs_age(
    age: Sequence[float],
    gap: Sequence[float],
    gap_corrected: Sequence[float] | None,
) -> Any:
    """Brain-age gap against age before (left) and after (right) bias correction."""
    age = np.asarray(age, float)
    fig, axes = figure(ncols=2, width=3.8, height=3.2)
    panels = [("before bias correction", gap), ("after bias correction", gap_corrected)]
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.axhline(0, color="0.3", lw=1, ls="--")
        ax.set_title(title)
        ax.set_xlabel("chronological age (years)")
        if values is None:
            ax.text(0.5, 0.5, "not available", ha="center", transform=ax.transAxes)
            continue
        values = np.asarray(values, float)
        ok = _finite(age, values)
        ax.scatter(age[ok], values[ok], s=14, color=NEUTRAL, alpha=0.8)
        if ok.sum() >= REPORT_SMALL_GROUP_N:  # a fitted line and r for a handful of points mislead
            slope, intercept = np.polyfit(age[ok], values[ok], 1)
            xs = np.array([age[ok].min(), age[ok].max()])
            r = np.corrcoef(age[ok], values[ok])[0, 1]
            ax.plot(xs, intercept + slope * xs, color=EXCLUDED, lw=1.2, label=f"fit, r = {r:.2f}")
            ax.legend(loc="upper right", frameon=False)
    axes[0].set_ylabel("brain-age gap (years)")
    return fig


def _groups_panel(ax: Any, data: list[np.ndarray], labels: list[str], min_n: int) -> None:
    """One box plot per group of at least ``min_n`` values; smaller groups as their points
    (jittered) with a mean bar. Tick labels carry each group's n."""
    rng = np.random.default_rng(0)  # fixed jitter: identical figures on re-runs
    big = [k for k, values in enumerate(data) if values.size >= min_n]
    if big:
        ax.boxplot([data[k] for k in big], positions=[k + 1 for k in big], showmeans=True, widths=0.6)
    for k, values in enumerate(data):
        if values.size >= min_n or values.size == 0:
            continue
        x = k + 1 + rng.uniform(-0.12, 0.12, values.size)
        ax.scatter(x, values, s=18, color=NEUTRAL, edgecolor="white", linewidth=0.5, zorder=3,
                   gid=f"points-{labels[k]}")  # fmt: skip
        ax.hlines(values.mean(), k + 0.75, k + 1.25, color="0.2", lw=1.2, zorder=4)
    ax.set_xticks(range(1, len(data) + 1))
    ax.set_xticklabels([f"{label}\nn={values.size}" for label, values in zip(labels, data, strict=True)])
    ax.set_xlim(0.4, len(data) + 0.6)


def plot_gap_by_group(
    age: Sequence[float], sex: Sequence[str], gap: Sequence[float], min_n: int = REPORT_SMALL_GROUP_N
) -> Any:
    """The (corrected) gap by sex and by age decade: box plots for groups of at least ``min_n``
    people, the points themselves (and their mean) for smaller groups."""
    age, gap = np.asarray(age, float), np.asarray(gap, float)
    sex = np.asarray(sex, dtype=object)
    ok = _finite(age, gap)
    fig, axes = figure(ncols=2, width=3.8, height=3.2)
    groups = sorted({str(s) for s in sex[ok]})
    if groups:
        _groups_panel(axes[0], [gap[ok & (sex == s)] for s in groups], groups, min_n)
    axes[0].set(title="by sex", xlabel="sex", ylabel="corrected brain-age gap (years)")
    decades = np.floor(age[ok] / 10) * 10
    labels = sorted(set(decades.tolist()))
    if labels:
        _groups_panel(axes[1], [gap[ok][decades == d] for d in labels], [f"{int(d)}s" for d in labels], min_n)
    axes[1].set(title="by age decade", xlabel="decade")
    for ax in axes:
        ax.axhline(0, color="0.3", lw=1, ls="--")
    return fig


def plot_sites(frame: Any, nominal: float | None = None, min_n: int = REPORT_SMALL_GROUP_N) -> Any:
    """MAE, mean corrected gap and interval coverage per site (rows of ``metrics_by_group.tsv``).

    Sites with fewer than ``min_n`` people are drawn hollow (their values are noisy).
    """
    frame = frame.reset_index(drop=True)
    n = frame["n"].astype(int).to_numpy()
    labels = [f"{level}\nn={k}" for level, k in zip(frame["level"].astype(str), n, strict=True)]
    x = np.arange(len(frame))
    small = n < min_n
    fig, axes = figure(ncols=3, width=max(2.6, 0.5 * len(frame) + 1.2), height=3.0)
    panels = [
        ("mae", "MAE (years)", None),
        ("mean_corrected_gap", "mean corrected gap (years)", 0.0),
        ("coverage", "interval coverage", nominal),
    ]
    for ax, (column, title, line) in zip(axes, panels, strict=True):
        values = frame[column].astype(float).to_numpy() if column in frame else np.full(len(frame), np.nan)
        ax.bar(x[~small], values[~small], color=NEUTRAL)
        ax.bar(x[small], values[small], facecolor="white", edgecolor=NEUTRAL, hatch="//")
        if line is not None:
            ax.axhline(line, color="0.3", lw=1, ls="--")
        ax.set_title(title)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=90 if len(frame) > 8 else 0, fontsize=7)
    if np.any(small):
        from matplotlib.patches import Patch

        hatched = Patch(facecolor="white", edgecolor=NEUTRAL, hatch="//", label=f"n < {min_n}")
        axes[0].legend(handles=[hatched], frameon=False, fontsize=7, loc="lower right")
    return fig


def plot_learning_curves(frame: Any) -> Any:
    """Training and validation loss per epoch, one line pair per fold."""
    fig, ax = figure(width=5.0, height=3.4)
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    for index, (fold, part) in enumerate(frame.groupby("fold", sort=True)):
        part = part.sort_values("epoch")
        colour = cmap(index % 10)
        ax.plot(part["epoch"], part["train_loss"], color=colour, lw=1, alpha=0.6, ls="--")
        ax.plot(part["epoch"], part["val_loss"], color=colour, lw=1.4, label=f"fold {fold}")
    ax.set(xlabel="epoch", ylabel="loss", title="Learning curves (solid: validation, dashed: training)")
    ax.legend(frameon=False, fontsize=7, ncol=2)
    return fig


def plot_coverage(
    age: Sequence[float],
    predicted: Sequence[float],
    lower: Sequence[float],
    upper: Sequence[float],
    nominal: float | None,
) -> Any:
    """Prediction intervals sorted by age; points outside their interval in red."""
    age, predicted = np.asarray(age, float), np.asarray(predicted, float)
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    ok = _finite(age, predicted, lower, upper)
    order = np.argsort(age[ok])
    a, p, lo, up = age[ok][order], predicted[ok][order], lower[ok][order], upper[ok][order]
    inside = (a >= lo) & (a <= up)
    fig, ax = figure(width=5.0, height=3.4)
    x = np.arange(a.size)
    ax.vlines(x, lo, up, color="0.6", lw=2, alpha=0.7, label="interval")
    ax.scatter(x[inside], a[inside], s=12, color=NEUTRAL, zorder=3, label="age inside")
    ax.scatter(x[~inside], a[~inside], s=14, color=EXCLUDED, zorder=3, label="age outside")
    ax.scatter(x, p, s=8, marker="_", color="black", zorder=4, label="prediction")
    empirical = float(inside.mean()) if a.size else float("nan")
    target = f"nominal {nominal:.0%}, " if nominal is not None else ""
    ax.set(
        xlabel="participants sorted by age",
        ylabel="age (years)",
        title=f"Interval coverage: {target}empirical {empirical:.0%}",
    )
    ax.legend(frameon=False, fontsize=7)
    return fig


def plot_latent(frame: Any) -> Any:
    """PCA of shared and specific latent codes, one panel per code, coloured by age."""
    codes = [c for c in ("shared", "specific_smri", "specific_fmri") if c in set(frame["code"])]
    codes += sorted(set(frame["code"]) - set(codes))
    fig, axes = figure(ncols=max(1, len(codes)), width=3.2, height=3.0)
    axes = np.atleast_1d(axes)
    ages = frame["age"].astype(float)
    vmin, vmax = float(np.nanmin(ages)), float(np.nanmax(ages))
    points = None
    for ax, code in zip(axes, codes, strict=False):
        part = frame[frame["code"] == code]
        points = ax.scatter(
            part["pc1"], part["pc2"], c=part["age"], cmap="viridis", vmin=vmin, vmax=vmax, s=14
        )
        ax.set(title=code.replace("_", " "), xlabel="PC 1", ylabel="PC 2")
    if points is not None:
        fig.colorbar(points, ax=list(axes), label="age (years)", shrink=0.85)
    return fig


def run_labels(frame: Any) -> list[str]:
    """``sub-01 ses-1 task-rest run-2`` for each row of a QC table (entities it has; a ``run``
    that is a file name gives its own entities)."""
    from bids_brainage.reports.html import entities

    labels = []
    for row in frame.to_dict("records"):
        name = str(row.get("run", ""))
        if name.startswith("sub-") and "_" in name:
            ents = entities(name)
            labels.append(
                " ".join(f"{k}-{ents[k]}" for k in ("sub", "ses", "task", "acq", "run") if k in ents)
            )
            continue
        parts = []
        for key, prefix in (("participant_id", "sub-"), ("session_id", "ses-"), ("task", "task-"),
                            ("run", "run-")):  # fmt: skip
            value = row.get(key)
            text = str(value).strip() if value is not None else ""
            if not text or text.lower() in ("n/a", "nan", "none"):
                continue
            if isinstance(value, float) and value.is_integer():
                text = str(int(value))
            parts.append(text if text.startswith(prefix) else prefix + text)
        labels.append(" ".join(parts))
    return labels


def plot_qc(frame: Any, fd_threshold: float | None = None) -> Any:
    """Mean FD of every run; excluded runs in red."""
    fig, ax = figure(width=5.0, height=3.0)
    fd = frame["mean_fd"].astype(float).to_numpy()
    excluded = frame["excluded"].astype(str).str.lower().isin(["true", "1", "yes"]).to_numpy()
    x = np.arange(fd.size)
    ax.bar(x[~excluded], fd[~excluded], color=NEUTRAL, label="kept")
    if excluded.any():
        ax.bar(x[excluded], fd[excluded], color=EXCLUDED, label="excluded")
    if fd_threshold is not None:
        ax.axhline(fd_threshold, color="0.3", ls="--", lw=1, label=f"FD threshold {fd_threshold:g} mm")
    ax.set(xlabel="run", ylabel="mean FD (mm)", title="Head motion per run")
    labels = run_labels(frame)
    if 0 < len(labels) <= 60:
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=90, fontsize=6)
    else:
        ax.set_xticks([])
    ax.legend(frameon=False, fontsize=7)
    return fig


def plot_subject_brainage(
    cohort_age: Sequence[float],
    cohort_predicted: Sequence[float],
    age: float | None,
    predicted: float,
    lower: float | None,
    upper: float | None,
    label: str,
) -> Any:
    """One participant's prediction and interval against the cohort's age curve."""
    cohort_age, cohort_predicted = np.asarray(cohort_age, float), np.asarray(cohort_predicted, float)
    ok = _finite(cohort_age, cohort_predicted)
    fig, ax = figure(width=4.6, height=3.6)
    values = [cohort_age[ok], cohort_predicted[ok], [predicted]]
    if age is not None and np.isfinite(age):
        values.append([age])
    lo, hi = _age_limits(*values)
    ax.plot([lo, hi], [lo, hi], color="0.3", lw=1, ls="--", label="identity")
    ax.scatter(cohort_age[ok], cohort_predicted[ok], s=12, color="0.7", label="cohort")
    if ok.sum() >= 3:
        coef = np.polyfit(cohort_age[ok], cohort_predicted[ok], 1)
        xs = np.linspace(lo, hi, 50)
        ax.plot(xs, np.polyval(coef, xs), color=NEUTRAL, lw=1.2, label="cohort age curve")
    x = age if age is not None and np.isfinite(age) else lo
    if lower is not None and upper is not None and np.isfinite(lower) and np.isfinite(upper):
        ax.errorbar(
            [x],
            [predicted],
            yerr=[[predicted - lower], [upper - predicted]],
            fmt="o",
            color=EXCLUDED,
            capsize=4,
            label=label,
            zorder=4,
        )
    else:
        ax.scatter([x], [predicted], color=EXCLUDED, s=30, label=label, zorder=4)
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="chronological age (years)", ylabel="predicted age (years)")
    ax.set_aspect("equal")
    ax.legend(loc="upper left", frameon=False, fontsize=7)
    return fig
