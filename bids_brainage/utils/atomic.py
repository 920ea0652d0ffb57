"""Atomic file writes: write to a temporary name in the same directory, then rename.

A reader (or a concurrent participant job) therefore sees either the old file or the
complete new one, never a half-written file, and a crash leaves no partial output.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    ``suffix`` defaults to the full suffix of ``path`` (e.g. ``.nii.gz``) so that libraries
    choosing a format from the extension write the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_with(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and atomically move the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically write ``data`` as indented, key-sorted JSON (stable bytes for equal data)."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_tsv(path: str | os.PathLike, frame: Any, **kwargs: Any) -> Path:
    """Atomically write a pandas DataFrame as a BIDS TSV (``n/a`` for missing values)."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("na_rep", "n/a")
    return write_with(path, lambda tmp: frame.to_csv(tmp, sep="\t", **kwargs))


def save_nifti(img: Any, path: str | os.PathLike) -> Path:
    """Atomically save a nibabel image."""
    import nibabel as nib

    return write_with(path, lambda tmp: nib.save(img, str(tmp)))
