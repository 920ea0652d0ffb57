"""Copy a BIDS dataset into the layout of a DataLad/git-annex dataset (as OpenNeuro ships them).

Every NIfTI becomes a relative symlink into ``.git/annex/objects/<xx>/<yy>/<KEY>/<KEY>``,
whose name is an annex key (``MD5E-s<size>--<md5>.nii.gz``), not a BIDS name. JSON and TSV
files stay regular files, as DataLad's ``text2git`` configuration keeps them in git.
``git annex`` itself is not needed: the app only sees the symlinks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def annex_key(path: Path) -> str:
    """git-annex's MD5E key of a file (backend, size, checksum, extension)."""
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    extension = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    return f"MD5E-s{path.stat().st_size}--{digest}{extension}"


def make_annexed_copy(src: Path, dst: Path, drop: tuple[str, ...] = ()) -> dict[str, Path]:
    """Copy ``src`` to ``dst`` with every NIfTI annexed; files named in ``drop`` lose their content.

    Returns the annexed files by BIDS name (the symlinks in the dataset tree).
    """
    shutil.copytree(src, dst, symlinks=False)
    objects = dst / ".git" / "annex" / "objects"
    links = {}
    for image in sorted(dst.rglob("*.nii*")):
        if ".git" in image.parts:
            continue
        key = annex_key(image)
        digest = hashlib.md5(key.encode()).hexdigest()
        target = objects / digest[:2] / digest[2:4] / key / key
        target.parent.mkdir(parents=True, exist_ok=True)
        image.replace(target)
        if image.name in drop:  # "not retrieved": the link points at content that is absent
            target.unlink()
        image.symlink_to(os.path.relpath(target, image.parent))
        links[image.name] = image
    return links
