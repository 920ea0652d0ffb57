"""Functional reportlets (SVG): carpet plot with FD/DVARS and censored volumes, BOLD->T1w
coregistration flicker with white-matter edges, network-ordered connectivity matrix."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from bids_brainage.defaults import DEFAULT_FD_THRESHOLD  # noqa: E402

TISSUE_NAMES = {1: "GM", 2: "WM", 3: "CSF"}
WM_LABEL = 2
#: Slices per row (axial, coronal, sagittal) of the coregistration flicker.
COREG_SLICES = 8
CENSORED_COLOUR = "#d62728"


def _save(fig, out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.svg")
    fig.savefig(tmp, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    os.replace(tmp, out)
    return out


def censored_volumes(confounds: pd.DataFrame, fd_threshold: float) -> np.ndarray:
    """Boolean mask of the censored volumes of a run.

    A volume is censored when its framewise displacement is above ``fd_threshold`` or when a
    spike regressor flags it: fMRIPrep's ``motion_outlierXX`` columns (1 at that volume) or an
    XCP-D-style ``outlier``/``framewise_displacement`` outliers column.
    """
    n = len(confounds)
    censored = np.zeros(n, bool)
    if "framewise_displacement" in confounds:
        fd = pd.to_numeric(confounds["framewise_displacement"], errors="coerce").to_numpy(float)
        censored |= np.nan_to_num(fd, nan=0.0) > fd_threshold
    for column in confounds.columns:
        if str(column).startswith("motion_outlier") or str(column) == "outlier":
            flags = pd.to_numeric(confounds[column], errors="coerce").fillna(0).to_numpy(float)
            censored |= flags > 0
    return censored


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of the runs of ``True`` in ``mask``."""
    padded = np.concatenate([[False], mask, [False]]).astype(int)
    changes = np.flatnonzero(np.diff(padded))
    return list(zip(changes[::2].tolist(), changes[1::2].tolist(), strict=True))


def plot_carpet(
    bold: str,
    tissue_dseg: str,
    mask: str,
    confounds: str,
    out: str | os.PathLike,
    fd_threshold: float = DEFAULT_FD_THRESHOLD,
) -> Path:
    """Power-style carpet plot: FD (threshold dashed) and DVARS above voxel time series by tissue.

    Censored volumes (:func:`censored_volumes`) are shaded red on the three panels and marked
    by red ticks under the carpet; the legend gives their number.
    """
    data = np.asarray(nib.load(bold).dataobj, dtype=np.float32)
    dseg = np.asarray(nib.load(tissue_dseg).dataobj)
    conf = pd.read_csv(confounds, sep="\t", na_values=["n/a"])
    rows, bounds = [], []
    for label in (1, 2, 3):
        vox = data[dseg == label]
        if len(vox) == 0:
            continue
        # At most 1500 voxels per tissue keep the SVG small; z-score each voxel's series.
        step = max(1, len(vox) // 1500)
        vox = vox[::step]
        sd = vox.std(1, keepdims=True)
        rows.append((vox - vox.mean(1, keepdims=True)) / np.where(sd > 0, sd, 1))
        bounds.append((label, sum(len(r) for r in rows)))
    carpet = np.concatenate(rows) if rows else np.zeros((1, data.shape[-1]))
    censored = censored_volumes(conf, fd_threshold)
    fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [1, 1, 4]})
    fd = pd.to_numeric(conf.get("framewise_displacement"), errors="coerce")
    fd = fd.to_numpy(float) if fd is not None else np.full(len(conf), np.nan)
    axes[0].plot(fd, color="tab:red", lw=0.8)
    axes[0].axhline(fd_threshold, color="k", ls="--", lw=0.6, label=f"threshold {fd_threshold:g} mm")
    axes[0].set_ylabel("FD (mm)")
    dvars = pd.to_numeric(conf.get("dvars"), errors="coerce") if "dvars" in conf else None
    if dvars is not None:
        axes[1].plot(dvars.to_numpy(float), color="tab:blue", lw=0.8)
    axes[1].set_ylabel("DVARS")
    axes[2].imshow(carpet, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest")
    for panel, ax in enumerate(axes):
        for start, stop in _spans(censored):
            ax.axvspan(start - 0.5, stop - 0.5, color=CENSORED_COLOUR, alpha=0.25, lw=0,
                       gid=f"censored-{panel}-{start}")  # fmt: skip
    if censored.any():
        index = np.flatnonzero(censored)
        axes[2].plot(index, np.full(index.size, len(carpet) + 2), "|", color=CENSORED_COLOUR, ms=8,
                     clip_on=False)  # fmt: skip
        axes[0].fill_between([], [], color=CENSORED_COLOUR, alpha=0.25,
                             label=f"censored: {int(censored.sum())} of {censored.size} volumes")  # fmt: skip
    else:
        axes[0].plot([], [], " ", label=f"censored: 0 of {censored.size} volumes")
    axes[0].legend(loc="upper right", frameon=False, fontsize=7, ncol=2)
    start = 0
    for label, end in bounds:
        axes[2].axhline(end - 0.5, color="tab:orange", lw=0.6)
        axes[2].text(-1, (start + end) / 2, TISSUE_NAMES[label], ha="right", va="center", fontsize=8)
        start = end
    axes[2].set_ylim(len(carpet) + 3, -0.5)
    axes[2].set_yticks([])
    axes[2].set_xlabel("volume")
    axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, out)


def _on_grid(img: nib.Nifti1Image, reference: nib.Nifti1Image, interpolation: str) -> np.ndarray:
    """``img``'s data on ``reference``'s grid (resampled only when the grids differ)."""
    if img.shape[:3] != reference.shape[:3] or not np.allclose(img.affine, reference.affine, atol=1e-3):
        from nilearn.image import resample_to_img

        img = resample_to_img(
            img, reference, interpolation=interpolation, force_resample=True, copy_header=True
        )
    data = np.asarray(img.dataobj, dtype=np.float32)
    return data[..., 0] if data.ndim == 4 else data


def plot_coregistration(
    t1w: str,
    boldref_t1w: str,
    out: str | os.PathLike,
    t1w_dseg: str | None = None,
    label: str = "BOLD reference",
) -> Path:
    """Flicker between the T1w and the BOLD reference in T1w space, white-matter edges on both.

    As fMRIPrep's coregistration reportlet: the two layers fade into each other (CSS inside
    the SVG; hover to pause) over ``COREG_SLICES`` axial, coronal and sagittal slices, and
    both carry the same contour of the T1w white-matter segmentation (label 2 of
    ``t1w_dseg``), so a good coregistration shows the BOLD's white matter under the same
    edges. Without a segmentation the contour is the T1w's brighter tissue (top third).
    """
    from bids_brainage.reports import anatomical

    anat_img = nib.load(t1w)
    anat = _on_grid(anat_img, anat_img, "linear")
    epi = _on_grid(nib.load(boldref_t1w), anat_img, "linear")
    brain = anat > 0
    if t1w_dseg:
        wm = _on_grid(nib.load(t1w_dseg), anat_img, "nearest").round() == WM_LABEL
    else:
        wm = brain & (anat > np.percentile(anat[brain], 66) if brain.any() else False)
    zooms = tuple(float(z) for z in anat_img.header.get_zooms()[:3])
    if brain.any():  # crop to the brain (plus a margin): larger panels for the same width
        lo = np.maximum(np.argwhere(brain).min(0) - 3, 0)
        hi = np.argwhere(brain).max(0) + 4
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        anat, epi, brain, wm = anat[box], epi[box], brain[box], np.broadcast_to(wm, anat.shape)[box]
    extent = brain if brain.any() else np.ones(anat.shape, bool)
    overlays = [(wm, anatomical.GREEN)]
    fixed = anatomical._mosaic(anatomical._normalise(anat, extent), extent, overlays, zooms, COREG_SLICES)
    moving = anatomical._mosaic(anatomical._normalise(epi, extent), extent, overlays, zooms, COREG_SLICES)
    caption = f"T1w fading into the {label} (in T1w space); white-matter edges (green) on both"
    title = f"Coregistration of the {label} to the T1w (hover to pause)"
    return anatomical._write_svg([fixed, moving], title, caption, out)


def read_relmat(relmat: str | os.PathLike) -> tuple[np.ndarray, list[str] | None]:
    """A square connectivity matrix from a relmat TSV, with its node labels when it has them.

    Accepts XCP-D's layout (a first ``Node`` column of labels, header of labels) and a bare
    numeric matrix with a header row.
    """
    frame = pd.read_csv(relmat, sep="\t", na_values=["n/a"])
    nodes = None
    first = frame.columns[0] if len(frame.columns) else None
    if first is not None and (str(first).lower() == "node" or frame[first].dtype == object):
        nodes = frame[first].astype(str).tolist()
        frame = frame.drop(columns=first)
    mat = frame.apply(pd.to_numeric, errors="coerce").to_numpy(float)
    if mat.shape[0] != mat.shape[1]:
        raise ValueError(f"{relmat}: connectivity matrix is {mat.shape[0]}x{mat.shape[1]}, not square")
    return mat, nodes


def _measure(mat: np.ndarray) -> str:
    """Colour-bar label: Pearson r (unit diagonal, values in [-1, 1]) or Fisher z."""
    diag = np.diag(mat)
    off = mat[~np.eye(len(mat), dtype=bool)]
    off = off[np.isfinite(off)]
    if np.allclose(diag[np.isfinite(diag)], 1.0) and (off.size == 0 or np.abs(off).max() <= 1.0):
        return "Pearson r"
    return "Fisher z" if np.allclose(np.nan_to_num(diag), 0.0) else "connectivity"


def spread_labels(centres: np.ndarray, gap: float, low: float, high: float) -> np.ndarray:
    """Label positions as close as possible to ``centres`` (sorted) and at least ``gap`` apart,
    kept within ``[low, high]`` when there is room."""
    pos = np.asarray(centres, float).copy()
    for i in range(1, pos.size):
        pos[i] = max(pos[i], pos[i - 1] + gap)
    overflow = pos[-1] - high if pos.size else 0.0
    if overflow > 0:
        pos -= overflow
        for i in range(pos.size - 2, -1, -1):
            pos[i] = min(pos[i], pos[i + 1] - gap)
        if pos[0] < low:  # not enough room: spread evenly over the whole side
            pos = np.linspace(low, high, pos.size)
    return pos


def plot_connectivity(relmat: str, networks: list[str], out: str | os.PathLike) -> Path:
    """Connectivity matrix with ROIs grouped by network, each network labelled once.

    Blocks are outlined and carry a colour strip on the left and top; every network's name
    sits beside its block on the left, moved apart where blocks are thin (a leader line joins
    name and block), so no two labels overlap.
    """
    mat, _nodes = read_relmat(relmat)
    n = len(mat)
    nets = np.asarray(list(networks) if networks and len(networks) == n else ["all"] * n, dtype=object)
    order = np.argsort(nets, kind="stable")
    mat = mat[np.ix_(order, order)]
    measure = _measure(mat)
    shown = mat.copy()
    np.fill_diagonal(shown, np.nan)
    finite = shown[np.isfinite(shown)]
    vmax = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
    height_in = 5.6
    fig, ax = plt.subplots(figsize=(7.4, height_in))
    im = ax.imshow(shown, cmap="RdBu_r", vmin=-(vmax or 1.0), vmax=vmax or 1.0, interpolation="nearest")
    sorted_nets = nets[order]
    cuts = np.flatnonzero(sorted_nets[1:] != sorted_nets[:-1]) + 1
    starts = np.concatenate([[0], cuts]).astype(int)
    ends = np.concatenate([cuts, [n]]).astype(int)
    for e in cuts:
        ax.axhline(e - 0.5, color="k", lw=0.4)
        ax.axvline(e - 0.5, color="k", lw=0.4)
    cmap = plt.get_cmap("tab20")
    strip = 0.025 * n
    for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
        colour = cmap(k % 20)
        ax.add_patch(plt.Rectangle((-0.5 - strip, s - 0.5), strip, e - s, color=colour, clip_on=False))
        ax.add_patch(plt.Rectangle((s - 0.5, -0.5 - strip), e - s, strip, color=colour, clip_on=False))
    fontsize = 7
    # one label height in data units: font size (points) over the axes height (points) times n
    gap = 1.25 * fontsize / (0.8 * height_in * 72) * n
    centres = (starts + ends - 1) / 2
    pos = spread_labels(centres, gap, -0.5 + gap / 2, n - 0.5 - gap / 2)
    x_block, x_text = -0.5 - strip, -0.5 - strip - 0.06 * n
    for k, (centre, y) in enumerate(zip(centres, pos, strict=True)):
        name = str(sorted_nets[starts[k]])
        ax.plot([x_block, x_text + 0.01 * n], [centre, y], color="0.4", lw=0.5, clip_on=False)
        ax.text(x_text, y, name, ha="right", va="center", fontsize=fontsize, gid=f"network-label-{k}")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"{n} nodes in {len(starts)} networks", fontsize=9, pad=14)
    fig.colorbar(im, ax=ax, shrink=0.7, label=measure + " (diagonal blank)")
    return _save(fig, out)
