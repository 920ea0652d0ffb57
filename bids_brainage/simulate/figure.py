"""The documentation figure: a young and an old simulated subject side by side.

``python -m bids_brainage.simulate.figure docs/figures/simulation_young_old.png`` simulates
one 20-year-old and one 80-year-old (same seed, so the same random draws) and plots the
middle slices of their T1w and mean BOLD and their true ROI connectivity (Seitzman-300,
ROIs sorted by network).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd


def _subject(root: Path, age: float, resolution: float) -> dict:
    from bids_brainage.simulate import simulate_dataset

    out = simulate_dataset(
        root / f"age{age:g}", n_subjects=1, seed=1, resolution=resolution, age_range=(age, age), gap_sd=0
    )
    truth = out / "derivatives" / "simulation"
    relmat = pd.read_csv(
        truth / "sub-001/func/sub-001_task-rest_atlas-Seitzman300_desc-sample_relmat.tsv", sep="\t"
    )
    return {
        "t1w": nib.load(out / "sub-001/anat/sub-001_T1w.nii.gz").get_fdata(),
        "bold": nib.load(out / "sub-001/func/sub-001_task-rest_bold.nii.gz").get_fdata().mean(-1),
        "relmat": relmat,
        "truth": pd.read_csv(truth / "truth.tsv", sep="\t").iloc[0],
    }


def make_figure(path: str | Path, resolution: float = 1.0) -> Path:
    """Simulate the two subjects and save the figure to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with tempfile.TemporaryDirectory() as tmp:
        subjects = [_subject(Path(tmp), age, resolution) for age in (20.0, 80.0)]
    fig, axes = plt.subplots(2, 5, figsize=(17, 7), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.25]})
    for row, sub in zip(axes, subjects, strict=True):
        t1w = sub["t1w"]
        cx, cy, cz = (n // 2 for n in t1w.shape)
        # Display a slightly higher axial slice: the lateral ventricles are the clearest ageing sign.
        cz = int(cz * 1.1)
        vmax = np.percentile(t1w, 99.5)
        views = (t1w[cx].T, t1w[:, cy].T, t1w[:, :, cz].T)
        for ax, view, name in zip(row[:3], views, ("sagittal", "coronal", "axial"), strict=True):
            ax.imshow(view, origin="lower", cmap="gray", vmin=0, vmax=vmax)
            ax.set_title(f"T1w {name}")
        bold = sub["bold"]
        row[3].imshow(bold[:, :, bold.shape[2] // 2].T, origin="lower", cmap="gray")
        row[3].set_title("BOLD, mean over time")
        labels = list(sub["relmat"].columns)
        order = np.argsort([lab.split("_", 1)[1] for lab in labels], kind="stable")
        mat = sub["relmat"].to_numpy()[np.ix_(order, order)]
        im = row[4].imshow(mat, cmap="RdBu_r", vmin=-1, vmax=1)
        row[4].set_title("true ROI connectivity (by network)")
        fig.colorbar(im, ax=row[4], fraction=0.046)
        truth = sub["truth"]
        row[0].set_ylabel(
            f"age {truth.biological_age:.0f} ({truth.sex})\nGM {truth.GM_total / 1e3:.0f} mL\n"
            f"ventricles {truth.ventricles / 1e3:.0f} mL",
            rotation=0,
            ha="right",
            va="center",
            fontsize=11,
        )
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("bids_brainage simulate: the same random draws at 20 (top) and 80 years (bottom)")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


if __name__ == "__main__":
    print(make_figure(sys.argv[1] if len(sys.argv) > 1 else "docs/figures/simulation_young_old.png"))
