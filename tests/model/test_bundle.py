"""Model bundles: identical predictions after a round trip; damaged or foreign bundles refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bids_brainage.errors import ModelBundleError
from bids_brainage.model import fit_cross_validated, load_bundle, predict_table, save_bundle
from bids_brainage.model.bundle import write_checksums


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, small_table):
    from bids_brainage.model.train import TrainSettings

    _, ens, _ = fit_cross_validated(
        small_table, n_folds=2, device="cpu", settings=TrainSettings(max_epochs=3, batch_size=64)
    )
    path = save_bundle(ens, tmp_path_factory.mktemp("bundle") / "model")
    return ens, path


def _copy(path, tmp_path):
    import shutil

    dst = tmp_path / "copy"
    shutil.copytree(path, dst)
    return dst


def test_round_trip_identical_predictions(fitted, small_table):
    ens, path = fitted
    loaded = load_bundle(path, device="cpu")
    a, b = predict_table(ens, small_table), predict_table(loaded, small_table)
    np.testing.assert_array_equal(a["predicted_age"].to_numpy(), b["predicted_age"].to_numpy())
    assert list(a.columns) == list(b.columns)
    meta = json.loads((path / "model.json").read_text())
    assert meta["package_version"] and len(meta["weights_sha256"]) == 64
    assert meta["training_summary"]["n_rows"] == len(small_table)
    assert len(meta["folds"][0]["scaler"]["s_mean"]) == len(meta["features"]["smri"])


def test_corrupted_weights_refused(fitted, tmp_path):
    path = _copy(fitted[1], tmp_path)
    raw = bytearray((path / "model.safetensors").read_bytes())
    raw[-10] ^= 0xFF
    (path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ModelBundleError, match="SHA-256"):
        load_bundle(path)


def test_truncated_json_refused(fitted, tmp_path):
    path = _copy(fitted[1], tmp_path)
    text = (path / "model.json").read_text()
    (path / "model.json").write_text(text[: len(text) // 2])
    with pytest.raises(ModelBundleError, match="model.json does not match the SHA-256"):
        load_bundle(path)
    write_checksums(path)  # even with matching checksums, the JSON itself is checked
    with pytest.raises(ModelBundleError, match="not valid JSON"):
        load_bundle(path)


def test_edited_json_refused(fitted, small_table, tmp_path):
    """Reversed feature names would shift predictions silently: the JSON is checksummed too."""
    path = _copy(fitted[1], tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["features"]["smri"] = meta["features"]["smri"][::-1]
    (path / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    with pytest.raises(
        ModelBundleError, match="model.json does not match the SHA-256 recorded in SHA256SUMS"
    ):
        load_bundle(path)
    (path / "SHA256SUMS").unlink()
    with pytest.raises(ModelBundleError, match="SHA256SUMS is missing"):
        load_bundle(path)
    (path / "SHA256SUMS").write_text("0" * 64 + "  model.safetensors\n")
    with pytest.raises(ModelBundleError, match="no checksum for model.json"):
        load_bundle(path)


def test_checksums_verify_with_sha256sum(fitted):
    """SHA256SUMS is in sha256sum's format, so a bundle can be checked by hand."""
    import subprocess

    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=fitted[1], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.count(": OK") == 2, proc.stdout + proc.stderr


def test_version_and_scaler_mismatch_refused(fitted, tmp_path):
    path = _copy(fitted[1], tmp_path)
    meta = json.loads((path / "model.json").read_text())
    meta["package_version"] = "99.0.0"
    (path / "model.json").write_text(json.dumps(meta))
    write_checksums(path)  # a consistent but foreign bundle
    with pytest.raises(ModelBundleError, match="incompatible"):
        load_bundle(path)
    meta = json.loads((fitted[1] / "model.json").read_text())
    meta["features"]["smri"] = meta["features"]["smri"][:-1]
    (path / "model.json").write_text(json.dumps(meta))
    write_checksums(path)
    with pytest.raises(ModelBundleError, match="scaler"):
        load_bundle(path)


def test_missing_files_refused(tmp_path):
    with pytest.raises(ModelBundleError, match="model.json is missing"):
        load_bundle(tmp_path)


def test_wrong_features_refused(fitted, small_table):
    ens = fitted[0]
    with pytest.raises(ModelBundleError, match="structural feature"):
        predict_table(ens, small_table.drop(columns=["smri__roi003"]))
    with pytest.raises(ModelBundleError, match="functional features"):
        predict_table(ens, small_table.drop(columns=["fmri__edge0007"]))


def test_predict_accepts_raw_sex_labels(fitted, small_table):
    ens = fitted[0]
    raw = small_table.assign(sex=small_table["sex"].map({0.0: "F", 1.0: "M"}))
    np.testing.assert_array_equal(
        predict_table(ens, raw)["predicted_age"].to_numpy(),
        predict_table(ens, small_table)["predicted_age"].to_numpy(),
    )


def test_implausible_features_refused_or_fmri_dropped_per_person(fitted, small_table, tmp_path):
    """Robust z beyond the limit: sMRI refuses that person, fMRI is dropped (sMRI only)."""
    from bids_brainage.model.ood import Z_LIMIT

    loaded = load_bundle(fitted[1], device="cpu")
    assert loaded.reference is not None and loaded.reference.names[0] == "smri__roi000"
    table = small_table.copy()
    table.loc[1, "smri__roi000"] *= 1000
    table.loc[2, "fmri__edge0007"] = 1e30
    table.loc[3, "smri__roi001"] = np.inf
    pred = predict_table(loaded, table)
    clean = predict_table(loaded, small_table)
    assert list(pred["refused"]) == [False, True, False, True] + [False] * (len(table) - 4)
    assert np.isnan(pred.loc[[1, 3], "predicted_age"]).all() and set(pred.loc[[1, 3], "modalities"]) == {
        "none"
    }
    assert "smri__roi000 = " in pred.loc[1, "note"] and f"limit {Z_LIMIT:g}" in pred.loc[1, "note"]
    assert pred.loc[3, "note"] == "refused: smri__roi001 is inf (not a finite number)"
    assert pred.loc[2, "modalities"] == "smri" and pred.loc[2, "note"].startswith(
        "fMRI not used: fmri__edge0007"
    )
    assert np.isfinite(pred.loc[2, "predicted_age"])
    others = ~pred.index.isin([1, 2, 3])
    np.testing.assert_array_equal(pred.loc[others, "predicted_age"], clean.loc[others, "predicted_age"])
    # A bundle that predates the stored reference falls back on its first fold's scaler.
    loaded.reference = None
    assert list(predict_table(loaded, table)["refused"][:4]) == [False, True, False, True]


def test_training_table_with_implausible_rows_refused(small_table):
    from bids_brainage.errors import InputError

    table = small_table.copy()
    table.loc[5, "smri__roi002"] = -np.inf
    with pytest.raises(
        InputError, match=r"1 row\(s\) with implausible features, e\.g\. .*smri__roi002 is -inf"
    ):
        fit_cross_validated(table, n_folds=2, device="cpu")
