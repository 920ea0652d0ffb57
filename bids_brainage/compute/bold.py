"""A BOLD run as input: the checks, the dummy-scan rule and their removal (no nipype;
wrapped by :mod:`bids_brainage.interfaces.functional`)."""

from __future__ import annotations

import os
from typing import Any

import nibabel as nib
import numpy as np

from bids_brainage.bids import repetition_time
from bids_brainage.defaults import DUMMY_KEYS
from bids_brainage.errors import InputError

MIN_BOLD_VOLUMES = 10  # below this nothing (HMC reference, filtering, correlation) is meaningful


def dummy_scans_from_metadata(meta: dict[str, Any]) -> int:
    """Volumes still to discard according to the sidecar, 0 when it does not say.

    ``NumberOfVolumesDiscardedByScanner``/``...ByUser`` in BIDS describe volumes *already*
    removed from the file; we only honour explicit non-steady-state counts still in the file.
    ``NumberOfVolumesDiscardedByUser`` is accepted for datasets that used it that way.
    """
    for key in DUMMY_KEYS:
        value = meta.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return int(value)
    return 0


def resolve_dummy_scans(meta: dict[str, Any], requested: int | None) -> int:
    """The one rule for dummy scans: ``--dummy-scans`` when given, else the sidecar's count."""
    return dummy_scans_from_metadata(meta) if requested is None else int(requested)


def validate_bold(
    bold_file: str, metadata: dict[str, Any], dummy_scans: int = 0
) -> tuple[nib.Nifti1Image, float]:
    """Load and check a BOLD run; raise :class:`InputError` naming the file otherwise.

    The only check of a BOLD run: it runs once per run, before the subject's workflow is
    built, so a bad run fails alone (the subject goes on without it).
    Checks: readable NIfTI, 4D, finite invertible affine with sane voxel sizes, a
    ``RepetitionTime`` in seconds within the plausible range, a non-negative number of dummy
    scans, at least :data:`MIN_BOLD_VOLUMES` volumes after them, no NaN/inf values.

    Returns
    -------
    img : nibabel image (data not yet loaded), tr : float
    """
    try:
        img = nib.load(bold_file)
    except Exception as err:  # nibabel raises many types for broken files
        raise InputError(bold_file, f"cannot read the BOLD image ({str(err).splitlines()[0]})") from None
    if len(img.shape) != 4 or (len(img.shape) == 4 and img.shape[3] == 1):
        raise InputError(bold_file, f"BOLD must be 4D, got shape {tuple(img.shape)}")
    affine = img.affine
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputError(bold_file, "broken affine (not finite or not invertible)")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    if np.any(zooms < 0.3) or np.any(zooms > 20):
        raise InputError(bold_file, f"broken affine: implausible voxel size {np.round(zooms, 3).tolist()} mm")
    tr = repetition_time(metadata.get("RepetitionTime"), bold_file)
    if dummy_scans < 0:
        raise InputError(bold_file, f"the number of dummy scans must be >= 0, got {dummy_scans}")
    n_usable = img.shape[3] - dummy_scans
    if n_usable < MIN_BOLD_VOLUMES:
        raise InputError(
            bold_file,
            f"too few volumes: {img.shape[3]} ({dummy_scans} dummy), at least {MIN_BOLD_VOLUMES} needed",
        )
    data = np.asanyarray(img.dataobj)
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        raise InputError(bold_file, "BOLD contains NaN or infinite values")
    return img, tr


def drop_dummy_scans(in_file: str, tr: float, dummy_scans: int, out_dir: str) -> dict[str, Any]:
    """Drop the first ``dummy_scans`` volumes of a validated BOLD run and write it as float32
    with the TR in the header (no checks here: :func:`validate_bold` ran before the build)."""
    img = nib.load(in_file)
    n_dummy = dummy_scans
    data = np.asarray(img.dataobj, dtype=np.float32)[..., n_dummy:]
    header = img.header.copy()
    header.set_data_dtype(np.float32)
    header.set_xyzt_units("mm", "sec")
    zooms = list(header.get_zooms()[:3]) + [tr]
    header.set_zooms(zooms)
    out = os.path.join(out_dir, "bold_valid.nii")
    # Pass the affine explicitly and keep sform == qform so every tool sees the same geometry.
    new = nib.Nifti1Image(data, img.affine, header)
    new.set_qform(img.affine, 1)
    new.set_sform(img.affine, 1)
    new.to_filename(out)
    return dict(out_file=out, tr=tr, dummy_scans=n_dummy, n_volumes=data.shape[-1])
