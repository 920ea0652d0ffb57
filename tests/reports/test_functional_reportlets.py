"""Functional reportlets on small arrays: censored volumes marked, coregistration flicker with
white-matter edges, network labels drawn once and apart (issue 17)."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_brainage.reports import functional as rep

AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _save(data: np.ndarray, path: Path) -> str:
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return str(path)


def _confounds(path: Path, n: int = 30) -> tuple[str, list[int]]:
    fd = np.full(n, 0.1)
    fd[[5, 6, 20]] = 0.9  # above the 0.5 mm threshold
    frame = pd.DataFrame({"framewise_displacement": fd, "dvars": np.linspace(20, 30, n)})
    frame.loc[0, "framewise_displacement"] = np.nan  # the first volume has no FD
    frame["motion_outlier00"] = (np.arange(n) == 12).astype(int)  # flagged by a spike column only
    frame.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return str(path), [5, 6, 12, 20]


def test_censored_volumes_from_fd_and_spike_columns(tmp_path: Path) -> None:
    path, expected = _confounds(tmp_path / "conf.tsv")
    frame = pd.read_csv(path, sep="\t", na_values=["n/a"])
    assert np.flatnonzero(rep.censored_volumes(frame, 0.5)).tolist() == expected
    assert np.flatnonzero(rep.censored_volumes(frame, 2.0)).tolist() == [12]


def test_carpet_marks_censored_volumes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    bold = _save(rng.normal(100, 1, (6, 6, 6, 30)).astype(np.float32), tmp_path / "bold.nii.gz")
    dseg = np.zeros((6, 6, 6), np.uint8)
    dseg[1:5, 1:5, 1:3], dseg[1:5, 1:5, 3:5] = 1, 2
    dseg_path = _save(dseg, tmp_path / "dseg.nii.gz")
    confounds, _ = _confounds(tmp_path / "conf.tsv")
    svg = rep.plot_carpet(bold, dseg_path, dseg_path, confounds, tmp_path / "carpet.svg", 0.5).read_text()
    # spans 5-6, 12 and 20, shaded on each of the three panels
    spans = set(re.findall(r'id="censored-(\d)-(\d+)"', svg))
    assert spans == {(str(p), str(s)) for p in range(3) for s in (5, 12, 20)}
    assert "censored: 4 of 30 volumes" in svg


def _blob() -> tuple[np.ndarray, np.ndarray]:
    x, y, z = np.mgrid[:20, :24, :20]
    r = np.sqrt((x - 10) ** 2 + (y - 12) ** 2 + (z - 10) ** 2)
    t1 = (np.where(r < 8, 100.0, 0) + np.where(r < 5, 60, 0)).astype(np.float32)
    dseg = (np.where(r < 8, 1, 0) + np.where(r < 5, 1, 0)).astype(np.uint8)  # WM = 2 inside
    return t1, dseg


def _layers(svg: str) -> list[np.ndarray]:
    from PIL import Image

    data = re.findall(r'href="data:image/png;base64,([^"]+)"', svg)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(d))).convert("RGB")) for d in data]


def test_coregistration_flicker_has_wm_edges_on_both_layers(tmp_path: Path) -> None:
    from bids_brainage.reports.anatomical import GREEN

    t1, dseg = _blob()
    t1w = _save(t1, tmp_path / "t1w.nii.gz")
    ref = _save(np.roll(t1, 1, axis=0) * 0.5, tmp_path / "boldref.nii.gz")
    seg = _save(dseg, tmp_path / "dseg.nii.gz")
    svg = rep.plot_coregistration(t1w, ref, tmp_path / "coreg.svg", seg).read_text()
    assert svg.count('class="moving"') == 1 and "@keyframes" in svg  # animated: two layers
    green = np.round(np.array(GREEN) * 255).astype(int)
    fixed, moving = _layers(svg)
    for layer in (fixed, moving):
        edge = np.all(np.abs(layer.astype(int) - green) <= 1, axis=-1)
        assert edge.sum() > 100  # the WM contour drawn on many slices
    assert np.array_equal(  # the same contour on both layers
        np.all(np.abs(fixed.astype(int) - green) <= 1, axis=-1),
        np.all(np.abs(moving.astype(int) - green) <= 1, axis=-1),
    )
    assert fixed.shape[1] > 3 * fixed.shape[0] // 2  # many slices per row, not three


def test_read_relmat_with_node_column(tmp_path: Path) -> None:
    frame = pd.DataFrame(np.eye(3), columns=["a", "b", "c"])
    frame.insert(0, "Node", ["a", "b", "c"])
    frame.to_csv(tmp_path / "relmat.tsv", sep="\t", index=False)
    mat, nodes = rep.read_relmat(tmp_path / "relmat.tsv")
    assert nodes == ["a", "b", "c"] and mat.shape == (3, 3)
    assert rep._measure(mat) == "Pearson r"
    pd.DataFrame(np.ones((2, 3))).to_csv(tmp_path / "bad.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="bad.tsv"):
        rep.read_relmat(tmp_path / "bad.tsv")


def test_spread_labels_keeps_labels_apart() -> None:
    pos = rep.spread_labels(np.array([0.0, 0.5, 1.0, 50.0]), gap=4.0, low=0.0, high=60.0)
    assert np.all(np.diff(pos) >= 4.0 - 1e-9) and pos[-1] == 50.0
    crowded = rep.spread_labels(np.array([58.0, 59.0, 59.5]), gap=4.0, low=0.0, high=60.0)
    assert np.all(np.diff(crowded) >= 4.0 - 1e-9) and crowded[-1] <= 60.0


def test_connectivity_labels_each_network_once(tmp_path: Path) -> None:
    nets = ["Visual"] * 12 + ["Auditory"] * 1 + ["Default"] * 15 + ["Cerebellar"] * 2 + ["Salience"] * 1
    n = len(nets)
    mat = np.corrcoef(np.random.default_rng(1).normal(size=(n, 50)))
    frame = pd.DataFrame(mat, columns=[f"n{i}" for i in range(n)])
    frame.insert(0, "Node", [f"n{i}" for i in range(n)])
    frame.to_csv(tmp_path / "relmat.tsv", sep="\t", index=False)
    svg = rep.plot_connectivity(str(tmp_path / "relmat.tsv"), nets, tmp_path / "conn.svg").read_text()
    labels = re.findall(r'<g id="network-label-(\d+)">\s*<!-- (\w+) -->', svg)
    assert sorted(name for _, name in labels) == sorted(set(nets))
    assert "Pearson r" in svg


def test_func_reports_wf_feeds_the_wm_segmentation(tmp_path: Path) -> None:
    from bids_brainage.workflows.reports import init_func_reports_wf

    wf = init_func_reports_wf(output_dir=str(tmp_path), entities={"sub": "01", "task": "rest"})
    edges = {
        (u.name, v.name, src, dst)
        for u, v, data in wf._graph.edges(data=True)
        for src, dst in data["connect"]
    }
    assert ("inputnode", "reportlets", "t1w_dseg", "t1w_dseg") in edges
