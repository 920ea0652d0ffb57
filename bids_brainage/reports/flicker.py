"""Before/after fade for the registration to MNI, as one self-contained animated SVG.

Like fMRIPrep's registration reportlets: the template and the participant's T1w resampled
to template space are drawn at the same slices with the same template contour; the SVG fades
between the two with a pure-CSS animation (works in ``<img>``, no JavaScript).
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from bids_brainage.utils import atomic

AXIAL_MM = (-24, -6, 12, 30, 48, 62)
SAGITTAL_MM = (-36, -6, 30)
CORONAL_MM = (-60, -18, 18)

_SVG = """<?xml version="1.0" encoding="utf-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">
<title>{title}</title>
<style>
.moving {{ animation: bba-fade 4s ease-in-out infinite alternate; }}
@keyframes bba-fade {{ 0%, 30% {{ opacity: 0; }} 70%, 100% {{ opacity: 1; }} }}
svg:hover .moving {{ animation-play-state: paused; }}
</style>
<image class="fixed" x="0" y="0" width="{w}" height="{h}" href="data:image/png;base64,{fixed}"/>
<image class="moving" x="0" y="0" width="{w}" height="{h}" href="data:image/png;base64,{moving}"/>
</svg>
"""


def _slices(data: np.ndarray, affine: np.ndarray) -> list[np.ndarray]:
    inv = np.linalg.inv(affine)
    out = []
    for axis, coords in ((2, AXIAL_MM), (0, SAGITTAL_MM), (1, CORONAL_MM)):
        for mm in coords:
            point = np.zeros(4)
            point[axis], point[3] = mm, 1.0
            index = int(round((inv @ point)[axis]))
            index = int(np.clip(index, 0, data.shape[axis] - 1))
            out.append(np.rot90(np.take(data, index, axis=axis)))
    return out


def _panel_png(images: list[np.ndarray], edges: list[np.ndarray], title: str) -> tuple[bytes, int, int]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ncol = len(AXIAL_MM)
    fig, axes = plt.subplots(2, ncol, figsize=(1.5 * ncol, 3.3), dpi=90, facecolor="black")
    for ax in axes.ravel():
        ax.set_axis_off()
    flat = list(axes[0]) + list(axes[1])
    for ax, image, edge in zip(flat, images, edges, strict=False):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.contour(edge, levels=[0.5], colors=["#ff5a36"], linewidths=0.6)
    fig.suptitle(title, color="white", fontsize=9, y=0.99)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92, wspace=0.02, hspace=0.04)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="black", metadata={"Software": None})
    width, height = (int(v) for v in fig.canvas.get_width_height())
    plt.close(fig)
    return buffer.getvalue(), width, height


def _normalise(data: np.ndarray) -> np.ndarray:
    data = np.nan_to_num(np.asarray(data, np.float32))
    positive = data[data > 0]
    top = float(np.percentile(positive, 99.5)) if positive.size else 1.0
    return np.clip(data / (top or 1.0), 0, 1)


def _template_2mm() -> tuple[Any, Any]:
    """The 1 mm template and brain mask subsampled to 2 mm (nilearn's own 2 mm version resamples: slow)."""
    import nibabel as nib

    from bids_brainage.templates import mni_brain_mask, mni_t1w

    out = []
    for img in (mni_t1w(1), mni_brain_mask(1)):
        affine = img.affine.copy()
        affine[:3, :3] *= 2
        out.append(nib.Nifti1Image(np.asarray(img.dataobj)[::2, ::2, ::2], affine))
    return out[0], out[1]


def make_flicker_svg(
    moving: str | os.PathLike,
    out_path: str | os.PathLike,
    label: str = "participant",
    template: Any = None,
) -> Path:
    """Write an animated SVG fading between the MNI template and ``moving`` (in MNI space).

    Parameters
    ----------
    moving : path-like
        The participant's T1w resampled to ``MNI152NLin2009aSym``.
    out_path : path-like
        SVG to write (atomically).
    label : str
        Name of the participant shown on the moving layer.
    template : nibabel image, optional
        The fixed image (default: the 2 mm MNI152NLin2009aSym template shipped with nilearn).
    """
    import nibabel as nib
    from nilearn.image import resample_to_img

    if template is None:
        template, mask = _template_2mm()
    else:
        mask = None
    moving_img = resample_to_img(
        nib.load(str(moving)), template, interpolation="continuous", force_resample=True, copy_header=True
    )
    fixed = _normalise(np.asarray(template.dataobj))
    mov = _normalise(np.asarray(moving_img.dataobj))
    edge = np.asarray(mask.dataobj) > 0 if mask is not None else fixed > 0.25
    affine = template.affine
    edges = [e.astype(float) for e in _slices(edge.astype(np.float32), affine)]
    fixed_png, w, h = _panel_png(_slices(fixed, affine), edges, "MNI152NLin2009aSym template")
    moving_png, _, _ = _panel_png(_slices(mov, affine), edges, f"{label} T1w in MNI152NLin2009aSym")
    text = _SVG.format(
        w=w,
        h=h,
        title=f"Registration of {label} to MNI152NLin2009aSym (template fades into the participant)",
        fixed=base64.b64encode(fixed_png).decode("ascii"),
        moving=base64.b64encode(moving_png).decode("ascii"),
    )
    return atomic.write_text(out_path, text)
