"""Unusable T1w images give one-line errors that name the file (fast: no registration)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_brainage.compute.anat_ops import check_t1w
from bids_brainage.errors import InputError
from bids_brainage.interfaces.anatomical import ValidateT1w


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine), path)
    return path


def _save_raw_affine(path: Path, data: np.ndarray, srow: np.ndarray) -> Path:
    """Write ``srow`` verbatim as the sform (nibabel refuses to build such an image)."""
    header = nib.Nifti1Header()
    header.set_data_shape(data.shape)
    header.set_data_dtype(np.float32)
    for row, key in enumerate(("srow_x", "srow_y", "srow_z")):
        header[key] = srow[row]
    header["sform_code"], header["qform_code"] = 1, 0
    nib.save(nib.Nifti1Image(data, None, header), path)
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    good = rng.random((32, 32, 32)).astype(np.float32)
    garbage = tmp / "sub-01_garbage_T1w.nii.gz"
    garbage.write_bytes(gzip.compress(b"this is not a NIfTI file" * 10))
    truncated = tmp / "sub-01_trunc_T1w.nii.gz"
    _save(truncated, good)
    truncated.write_bytes(truncated.read_bytes()[:400])
    nan = good.copy()
    nan[:] = np.nan
    return {
        "unreadable": (garbage, "cannot be read"),
        "truncated": (truncated, "cannot be read"),
        "4D": (
            _save(tmp / "sub-01_4d_T1w.nii.gz", rng.random((16, 16, 16, 5)).astype(np.float32)),
            "not a 3D",
        ),
        "2D": (_save(tmp / "sub-01_2d_T1w.nii.gz", rng.random((64, 64)).astype(np.float32)), "not a 3D"),
        "all zero": (_save(tmp / "sub-01_zero_T1w.nii.gz", np.zeros((32, 32, 32), np.float32)), "empty"),
        "all NaN": (_save(tmp / "sub-01_nan_T1w.nii.gz", nan), "no finite values"),
        "singular affine": (
            _save_raw_affine(tmp / "sub-01_aff_T1w.nii.gz", good, np.zeros((3, 4))),
            "broken affine",
        ),
        "nan affine": (
            _save_raw_affine(tmp / "sub-01_naff_T1w.nii.gz", good, np.full((3, 4), np.nan)),
            "broken affine",
        ),
    }


@pytest.mark.parametrize(
    "case", ["unreadable", "truncated", "4D", "2D", "all zero", "all NaN", "singular affine", "nan affine"]
)
def test_bad_t1w_gives_one_line_error(tmp_path, case):
    path, reason = _bad_inputs(tmp_path)[case]
    with pytest.raises(InputError) as info:
        check_t1w(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)) and reason in message


def test_validate_interface_raises_and_accepts(tmp_path):
    bad, _ = _bad_inputs(tmp_path)["all zero"]
    with pytest.raises(InputError, match="empty"):
        ValidateT1w(in_file=str(bad)).run(cwd=str(tmp_path))
    # A 3D image stored as (x, y, z, 1) with an oblique LPS affine is accepted and made RAS.
    affine = np.array([[-1.0, 0, 0.1, 90], [0, -1.2, 0, 100], [0, 0, 1.1, -70], [0, 0, 0, 1]])
    data = np.random.default_rng(1).random((20, 24, 22, 1)).astype(np.float32)
    good = _save(tmp_path / "sub-01_T1w.nii.gz", data, affine)
    result = ValidateT1w(in_file=str(good)).run(cwd=str(tmp_path))
    out = nib.load(result.outputs.out_file)
    assert out.shape == (20, 24, 22) and nib.aff2axcodes(out.affine) == ("R", "A", "S")
    assert out.get_data_dtype() == np.float32
