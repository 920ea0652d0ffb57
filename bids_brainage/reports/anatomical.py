"""Anatomical reportlets (SVG): brain mask, segmentation and registration to MNI.

Mosaics of axial, coronal and sagittal slices drawn with matplotlib: the images are
embedded rasters and the contours are vector paths, like fMRIPrep's reportlets.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_brainage.utils import atomic

N_SLICES = 6
TISSUE_COLOURS = {1: "#e6550d", 2: "#3182bd", 3: "#31a354"}  # GM, WM, CSF


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _slice_indices(mask: np.ndarray, axis: int, n: int) -> list[int]:
    """``n`` evenly spaced slices through the extent of ``mask`` along ``axis``."""
    other = tuple(a for a in range(3) if a != axis)
    present = np.flatnonzero(mask.any(axis=other))
    if present.size == 0:
        present = np.arange(mask.shape[axis])
    lo, hi = present[0], present[-1]
    return [int(round(v)) for v in np.linspace(lo, hi, n + 2)[1:-1]]


def _normalise(data: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    values = data[mask] if mask is not None and mask.any() else data[data > 0]
    top = float(np.percentile(values, 99.5)) if values.size else 1.0
    return np.clip(data / (top or 1.0), 0, 1)


def _mosaic(
    base: np.ndarray,
    extent_mask: np.ndarray,
    contours: list[tuple[np.ndarray, str]],
    title: str,
    out_path: str | os.PathLike,
) -> Path:
    """Three rows (axial, coronal, sagittal) of slices with contours, saved as SVG."""
    plt = _plt()
    fig, axes = plt.subplots(3, N_SLICES, figsize=(1.6 * N_SLICES, 5.2), facecolor="black")
    for row, axis in enumerate((2, 1, 0)):
        for col, index in enumerate(_slice_indices(extent_mask, axis, N_SLICES)):
            ax = axes[row, col]
            ax.set_axis_off()
            ax.imshow(
                np.rot90(np.take(base, index, axis=axis)), cmap="gray", vmin=0, vmax=1, interpolation="none"
            )
            for volume, colour in contours:
                plane = np.rot90(np.take(volume, index, axis=axis)).astype(float)
                if plane.max() > 0:
                    ax.contour(plane, levels=[0.5], colors=colour, linewidths=0.8)
    fig.suptitle(title, color="white", fontsize=9)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.93, wspace=0.02, hspace=0.02)
    with atomic.atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="svg", facecolor="black")
    plt.close(fig)
    return Path(out_path)


def plot_brain_mask(t1w: str | os.PathLike, mask: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Brain-mask contour (red) on the bias-corrected T1w."""
    t1 = np.asarray(nib.load(str(t1w)).dataobj, dtype=np.float32)
    brain = np.asarray(nib.load(str(mask)).dataobj) > 0
    return _mosaic(_normalise(t1, brain), brain, [(brain, "#ff3030")], "Brain mask on the T1w", out_path)


def plot_segmentation(t1w: str | os.PathLike, dseg: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """GM (orange), WM (blue) and CSF (green) contours and the brain mask (red) on the T1w."""
    t1 = np.asarray(nib.load(str(t1w)).dataobj, dtype=np.float32)
    seg = np.asarray(nib.load(str(dseg)).dataobj).astype(int)
    brain = seg > 0
    contours = [(brain, "#ff3030")] + [(seg == k, colour) for k, colour in TISSUE_COLOURS.items()]
    title = "Segmentation: brain mask (red), GM (orange), WM (blue), CSF (green)"
    return _mosaic(_normalise(t1, brain), brain, contours, title, out_path)


def plot_registration(
    std_t1w: str | os.PathLike, resolution: int, out_path: str | os.PathLike, label: str = "participant"
) -> Path:
    """Registration check: the T1w in MNI152NLin2009aSym against the template.

    Uses the report package's before/after fade (fMRIPrep style) when available, else a
    static mosaic of the T1w in template space with the template's brain and WM edges.
    """
    from bids_brainage.templates import mni_brain_mask, mni_t1w, mni_tissue_priors

    template = mni_t1w(resolution)
    try:
        from bids_brainage.reports.flicker import make_flicker_svg
    except ImportError:  # the report package is optional for this reportlet
        make_flicker_svg = None
    if make_flicker_svg is not None:
        return Path(make_flicker_svg(std_t1w, out_path, label=label, template=template))
    moving = np.asarray(nib.load(str(std_t1w)).dataobj, dtype=np.float32)
    brain = np.asarray(mni_brain_mask(resolution).dataobj) > 0
    wm = np.asarray(mni_tissue_priors(resolution)["WM"].dataobj) > 0.5
    title = f"{label} T1w in MNI152NLin2009aSym with template brain (red) and WM (blue) edges"
    return _mosaic(_normalise(moving, brain), brain, [(brain, "#ff3030"), (wm, "#3182bd")], title, out_path)
