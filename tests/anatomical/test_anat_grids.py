"""Unit tests of the anatomical steps' grid choices (brain box, coarse grids), on small phantoms.

Each runs in seconds: the full-resolution behaviour is timed by ``benchmarks/anatomical.py``.
"""

from __future__ import annotations

import tempfile

import nibabel as nib
import numpy as np
import pytest

from bids_brainage.compute import anat_ops


def _phantom(spacing: float, size_mm: float = 56.0) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A sphere phantom in RAS: WM core, GM shell, CSF shell, dark skull band (labels 2, 1, 3)."""
    n = int(round(size_mm / spacing))
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = -size_mm / 2
    grid = (np.indices((n, n, n)).astype(np.float32) + 0.5) * spacing - size_mm / 2
    radius = np.sqrt((grid**2).sum(axis=0))
    labels = np.select([radius < 12, radius < 17, radius < 20], [2, 1, 3], 0).astype(np.uint8)
    means = np.array([0.0, 600.0, 1000.0, 250.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    data = means[labels] + rng.normal(0, 25, labels.shape).astype(np.float32)
    data[(radius >= 20) & (radius < 23)] = 50.0
    return nib.Nifti1Image(np.maximum(data, 0), affine), labels


def _priors(labels: np.ndarray, img: nib.Nifti1Image, folder) -> list[str]:
    from scipy import ndimage

    files = []
    for label, name in ((1, "GM"), (2, "WM"), (3, "CSF")):
        soft = ndimage.gaussian_filter((labels == label).astype(np.float32), 1.0)
        files.append(anat_ops.save_like(soft, img, folder / f"prior_{name}.nii.gz"))
    return files


def test_brain_box_keeps_the_mask_and_a_margin():
    mask = np.zeros((40, 50, 60), bool)
    mask[10:20, 5:30, 30:59] = True
    box = anat_ops.brain_box(mask, (1.0, 2.0, 1.0), margin_mm=4.0)
    assert box == (slice(6, 24), slice(3, 32), slice(26, 60))
    assert mask[box].sum() == mask.sum()


def test_crop_and_coarse_grid_stay_in_world_space(tmp_path):
    import ants

    img, _ = _phantom(0.8)
    nib.save(img, tmp_path / "t1.nii.gz")
    t1 = ants.image_read(str(tmp_path / "t1.nii.gz"))
    box = (slice(5, 40), slice(10, 50), slice(0, 30))
    cropped = anat_ops.crop_ants(t1, box)
    # The same voxel value at the same world point.
    point = ants.transform_index_to_physical_point(t1, (20, 30, 10))
    index = ants.transform_physical_point_to_index(cropped, point)
    assert np.allclose(index, (15, 20, 10))
    assert cropped.numpy()[15, 20, 10] == pytest.approx(t1.numpy()[20, 30, 10])
    coarse = anat_ops.smoothed_to(t1, 1.6)
    assert np.allclose(coarse.spacing, 1.6)
    assert anat_ops.smoothed_to(coarse, 1.2) is coarse  # never finer than the input
    # Smoothing before sampling: the noise (SD 25 in WM) drops, the tissue mean stays.
    wm_fine = t1.numpy()[30:40, 30:40, 30:40]
    wm_coarse = coarse.numpy()[15:20, 15:20, 15:20]
    assert wm_coarse.std() < 0.6 * wm_fine.std()
    assert abs(wm_coarse.mean() - wm_fine.mean()) < 15


def test_segment_on_a_coarse_grid_matches_the_phantom_and_cleans_up(tmp_path, monkeypatch):
    """A 0.8 mm phantom is segmented on the 1.2 mm grid; labels back on the 0.8 mm grid.

    antspyx's Atropos leaves ``antsr*prob*.nii.gz`` files in the temporary directory: none
    may be left after :func:`anat_ops.segment`.
    """
    system_tmp = tmp_path / "system_tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    img, labels = _phantom(0.8)
    t1 = tmp_path / "t1.nii.gz"
    nib.save(img, t1)
    brain = anat_ops.save_like((labels > 0).astype(np.float32), img, tmp_path / "mask.nii.gz")
    priors = _priors(labels, img, tmp_path)
    out = tmp_path / "seg"
    out.mkdir()
    files = anat_ops.segment(str(t1), brain, priors, sloppy=False, out_dir=str(out))
    dseg = np.asarray(nib.load(files["dseg"]).dataobj)
    assert dseg.shape == labels.shape  # outputs on the T1w's own grid
    for label in (1, 2, 3):
        assert anat_ops.dice(dseg == label, labels == label) > 0.85, label
    gm = nib.load(files["tpms"][0]).get_fdata()
    true_gm_ml = (labels == 1).sum() * 0.8**3
    assert gm.sum() * 0.8**3 == pytest.approx(true_gm_ml, rel=0.1)
    assert not list(system_tmp.iterdir())
    assert not (out / "atropos_tmp").exists()


def test_n4_on_a_coarse_grid_removes_a_smooth_bias(tmp_path):
    """N4 fitted on the 2 mm grid and applied to the 0.8 mm image halves a 30 % left-right bias."""
    img, labels = _phantom(0.8)
    data = img.get_fdata().astype(np.float32)
    x = np.broadcast_to(np.linspace(-1, 1, data.shape[0])[:, None, None], data.shape)
    biased = data * (1 + 0.3 * x)
    # Air with some signal: the field must stay finite up to the edges of the field of view.
    biased = np.where(labels == 0, np.maximum(biased, 20.0), biased).astype(np.float32)
    nib.save(nib.Nifti1Image(biased, img.affine), tmp_path / "t1.nii.gz")
    out = anat_ops.n4_correct(str(tmp_path / "t1.nii.gz"), str(tmp_path / "n4.nii.gz"))
    corrected = nib.load(out).get_fdata()
    assert corrected.shape == data.shape
    assert corrected.max() < 1500  # the head's 99th percentile is 1000
    wm, side = labels == 2, x[labels == 2] > 0

    def right_left(values: np.ndarray) -> float:
        return float(values[wm][side].mean() / values[wm][~side].mean())

    assert abs(right_left(corrected) - 1) < 0.5 * abs(right_left(biased) - 1)
