"""Functional reportlets (SVG): carpet plot with FD/DVARS, BOLD->T1w overlay, connectivity matrix."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bids_brainage.defaults import DEFAULT_FD_THRESHOLD  # noqa: E402

TISSUE_NAMES = {1: "GM", 2: "WM", 3: "CSF"}


def _save(fig, out: str | os.PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.svg")
    fig.savefig(tmp, format="svg", bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, out)
    return out


def plot_carpet(
    bold: str,
    tissue_dseg: str,
    mask: str,
    confounds: str,
    out: str | os.PathLike,
    fd_threshold: float = DEFAULT_FD_THRESHOLD,
) -> Path:
    """Power-style carpet plot: FD (with threshold) and DVARS traces above voxel time series by tissue."""
    data = np.asarray(nib.load(bold).dataobj, dtype=np.float32)
    dseg = np.asarray(nib.load(tissue_dseg).dataobj)
    conf = pd.read_csv(confounds, sep="\t")
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
    fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [1, 1, 4]})
    fd = conf["framewise_displacement"].to_numpy(float)
    axes[0].plot(fd, color="tab:red", lw=0.8)
    axes[0].axhline(fd_threshold, color="k", ls="--", lw=0.6)
    axes[0].set_ylabel("FD (mm)")
    axes[1].plot(conf["dvars"].to_numpy(float), color="tab:blue", lw=0.8)
    axes[1].set_ylabel("DVARS")
    axes[2].imshow(carpet, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest")
    start = 0
    for label, end in bounds:
        axes[2].axhline(end - 0.5, color="tab:orange", lw=0.6)
        axes[2].text(-1, (start + end) / 2, TISSUE_NAMES[label], ha="right", va="center", fontsize=8)
        start = end
    axes[2].set_yticks([])
    axes[2].set_xlabel("volume")
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, out)


def plot_coregistration(t1w: str, boldref_t1w: str, out: str | os.PathLike) -> Path:
    """BOLD reference in T1w space with the T1w brain's edges on three orthogonal slices."""
    from scipy import ndimage

    anat_img, epi_img = nib.load(t1w), nib.load(boldref_t1w)
    if epi_img.shape[:3] != anat_img.shape[:3] or not np.allclose(epi_img.affine, anat_img.affine, atol=1e-3):
        from nilearn.image import resample_to_img

        epi_img = resample_to_img(
            epi_img, anat_img, interpolation="linear", force_resample=True, copy_header=True
        )
    anat = np.asarray(anat_img.dataobj, dtype=np.float32)
    epi = np.asarray(epi_img.dataobj, dtype=np.float32)
    edges = ndimage.gaussian_gradient_magnitude(anat, 1.0)
    thr = np.percentile(edges[anat > 0], 90) if np.any(anat > 0) else 1.0
    centre = (
        [int(c) for c in ndimage.center_of_mass(anat > 0)]
        if np.any(anat > 0)
        else [s // 2 for s in anat.shape]
    )
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, axis in zip(axes, range(3), strict=True):
        sl = [slice(None)] * 3
        sl[axis] = centre[axis]
        ax.imshow(np.rot90(epi[tuple(sl)]), cmap="gray")
        ax.contour(np.rot90(edges[tuple(sl)]), levels=[thr], colors="tab:red", linewidths=0.5)
        ax.axis("off")
    fig.suptitle("BOLD reference (gray) in T1w space with T1w edges (red)", fontsize=9)
    return _save(fig, out)


def plot_connectivity(relmat: str, networks: list[str], out: str | os.PathLike) -> Path:
    """Connectivity matrix with ROIs grouped by network (block boundaries drawn)."""
    mat = pd.read_csv(relmat, sep="\t").to_numpy(float)
    nets = np.asarray(networks if networks else ["all"] * len(mat))
    order = np.argsort(nets, kind="stable")
    mat = mat[np.ix_(order, order)]
    fig, ax = plt.subplots(figsize=(6, 5.2))
    vmax = np.nanpercentile(np.abs(mat), 99) if np.isfinite(mat).any() else 1.0
    im = ax.imshow(mat, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    sorted_nets = nets[order]
    edges = np.flatnonzero(sorted_nets[1:] != sorted_nets[:-1]) + 0.5
    for e in edges:
        ax.axhline(e, color="k", lw=0.3)
        ax.axvline(e, color="k", lw=0.3)
    starts = np.concatenate([[0], edges + 0.5]).astype(int)
    ends = np.concatenate([edges + 0.5, [len(mat)]]).astype(int)
    ax.set_yticks((starts + ends - 1) / 2)
    ax.set_yticklabels([sorted_nets[s] for s in starts], fontsize=5)
    ax.set_xticks([])
    fig.colorbar(im, ax=ax, shrink=0.7, label="Fisher z")
    return _save(fig, out)
