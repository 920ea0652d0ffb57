"""Template images are built once into a shared cache and reused by every step and run."""

from __future__ import annotations

import os

import nibabel as nib
import nilearn
import numpy as np

from bids_brainage import __version__, templates
from bids_brainage.compute.anat_ops import template_file


def test_template_written_once_to_the_cache_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv(templates.CACHE_ENV, str(tmp_path / "cache"))
    first = template_file("mask", 2, tmp_path / "node1")
    assert first.startswith(str((tmp_path / "cache").resolve()))
    stamp = os.stat(first).st_mtime_ns
    second = template_file("mask", 2, tmp_path / "node2")
    assert second == first and os.stat(second).st_mtime_ns == stamp
    assert not (tmp_path / "node1").exists() and not (tmp_path / "node2").exists()
    # Same voxels as the in-memory template, and no temporary file left behind.
    expected = np.asarray(templates.mni_brain_mask(2).dataobj)
    assert np.array_equal(np.asarray(nib.load(first).dataobj), expected)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == [
        f"templates-{__version__}-nilearn-{nilearn.__version__}",
        "tpl-res2_mask.nii.gz",
    ]


def test_unwritable_cache_falls_back_to_the_step_folder(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would go")
    monkeypatch.setenv(templates.CACHE_ENV, str(blocked))
    assert templates.template_cache_dir() is None
    path = template_file("brain", 2, tmp_path / "node")
    assert path == str((tmp_path / "node" / "tpl-res2_brain.nii.gz").resolve())
    assert nib.load(path).shape == templates.mni_t1w(2).shape


def test_prebuilt_cache_is_used_even_when_read_only(tmp_path, monkeypatch):
    """The container images fill the cache at build time and run with a read-only root."""
    monkeypatch.setenv(templates.CACHE_ENV, str(tmp_path / "image"))
    prebuilt = template_file("GM", 2, tmp_path / "build")
    folder = templates.template_cache_dir()
    folder.chmod(0o555)
    try:
        assert template_file("GM", 2, tmp_path / "run") == prebuilt
        assert not (tmp_path / "run").exists()
    finally:
        folder.chmod(0o755)


def test_no_home_directory_means_no_cache(monkeypatch):
    """A container run under an unknown UID may have no home: the steps write their own copies."""
    monkeypatch.delenv(templates.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(templates.Path, "home", staticmethod(no_home))
    assert templates.template_cache_dir() is None
