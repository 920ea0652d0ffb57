"""The group level's model step is a plain call (no one-node workflow read back from the work
dir): the runner uses the paths the step returns; a failure is one logged line, exit 1, and a
crash file for the group report (fast: the step itself is replaced)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import bids_brainage.compute.brainage as brainage
from bids_brainage.cli.group import _model_step
from bids_brainage.errors import InputError


def _config(tmp_path: Path, model: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        output_dir=tmp_path / "out", run_uuid="20260101-000000_abcd1234", n_folds=3, random_seed=5,
        device="cpu", harmonize="none", bias_correction="linear", model=model,
    )  # fmt: skip


def test_model_step_returns_what_the_training_wrote(tmp_path, monkeypatch):
    seen = {}

    def fake_train(table_file, out_dir, **settings):
        seen.update(settings, table_file=table_file, out_dir=out_dir)
        (Path(out_dir) / "elsewhere.tsv").write_text("x")
        return {"predictions": Path(out_dir) / "elsewhere.tsv"}

    monkeypatch.setattr(brainage, "train_brainage", fake_train)
    step_dir = tmp_path / "work" / "model_step"
    step_dir.mkdir(parents=True)
    (step_dir / "stale.tsv").write_text("from an earlier run")
    config = _config(tmp_path)
    result = _model_step(config, tmp_path / "table.tsv", True, step_dir)
    assert result == {"predictions": step_dir / "elsewhere.tsv"}
    assert not (step_dir / "stale.tsv").exists()  # the step starts from an empty folder
    assert seen["n_folds"] == 3 and seen["random_seed"] == 5 and seen["bias_correction"] == "linear"
    # The run's crash folder exists even without a crash: the group report reads the latest one.
    assert (config.output_dir / "logs" / f"group_{config.run_uuid}").is_dir()


def test_failed_step_is_one_line_and_a_crash_file(tmp_path, monkeypatch, caplog):
    def broken_predict(table_file, model_dir, out_dir, *, device):
        raise InputError(model_dir, "weights do not match their sha256")

    monkeypatch.setattr(brainage, "predict_brainage", broken_predict)
    config = _config(tmp_path, model=str(tmp_path / "bundle"))
    with caplog.at_level(logging.ERROR, logger="bids_brainage.group"):
        result = _model_step(config, tmp_path / "table.tsv", False, tmp_path / "work" / "model_step")
    assert result is None
    assert caplog.messages == [
        f"group level failed: group.predict: {tmp_path / 'bundle'}: weights do not match their sha256"
    ]
    crashes = list((config.output_dir / "logs" / f"group_{config.run_uuid}").glob("crash-*.txt"))
    assert len(crashes) == 1
    text = crashes[0].read_text()
    assert text.startswith("Node: group.predict\n") and "InputError" in text and "sha256" in text
