"""The ``simulate`` sub-command: arguments, clear errors, feature-level mode."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import pytest

from bids_brainage.cli import simulate_cmd
from bids_brainage.errors import UsageError
from bids_brainage.simulate import simulate_dataset, simulate_features


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bids_brainage")
    simulate_cmd.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n-subjects", "0"], "--n-subjects must be a positive integer"),
        (["--n-subjects", "3", "--age-range", "-5", "20"], "--age-range must not be negative"),
        (["--n-subjects", "3", "--age-range", "60", "20"], "MIN must not exceed MAX"),
        (["--n-subjects", "3", "--n-sites", "0"], "--n-sites must be a positive integer"),
        (["--n-subjects", "3", "--n-sites", "5"], "cannot exceed --n-subjects"),
        (["--n-subjects", "3", "--sessions", "a_b"], "invalid ses label"),
        (["--n-subjects", "3", "--noise-scale", "-1"], "--noise-scale must be >= 0"),
    ],
)
def test_bad_arguments_raise_clear_usage_errors(tmp_path: Path, argv: list[str], message: str) -> None:
    args = _parse(["simulate", str(tmp_path / "out"), *argv])
    with pytest.raises(UsageError, match=message):
        args.func(args)
    assert not (tmp_path / "out" / "sub-001").exists()


def test_refuses_non_empty_output(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(UsageError, match="not empty"):
        simulate_dataset(tmp_path, n_subjects=1)
    assert (tmp_path / "keep.txt").exists()


def test_features_only_cli_writes_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = _parse(["simulate", str(tmp_path / "f"), "--n-subjects", "6", "--features-only", "--n-rois", "8"])
    assert args.func(args) == 0
    features = pd.read_csv(tmp_path / "f" / "features.tsv", sep="\t")
    assert len(features) == 6 and "biological_age" not in features
    truth = pd.read_csv(tmp_path / "f" / "truth.tsv", sep="\t")
    assert list(truth.columns) == [
        "participant_id", "age", "sex", "site", "biological_age", "brain_age_gap", "latent_reserve", "latent_pace"
    ]  # fmt: skip
    one = pd.read_csv(tmp_path / "f" / "sub-001" / "sub-001_desc-structural_features.tsv", sep="\t")
    assert "smri__TIV" in one.columns and len(one) == 1
    assert "Simulated 6 subjects" in capsys.readouterr().out


def test_feature_mode_is_fast_and_documented() -> None:
    start = time.monotonic()
    table = simulate_features(500, seed=1, n_rois=20)
    elapsed = time.monotonic() - start
    assert elapsed < 30  # thousands of subjects in seconds (generous for shared CI machines)
    assert list(table.columns[:4]) == ["participant_id", "age", "sex", "site"]
    assert set(table.sex) == {"F", "M"}
    for col in (
        "smri__GM_total",
        "smri__WM_total",
        "smri__CSF_total",
        "smri__TIV",
        "smri__GM_L_superiorfrontal",
    ):
        assert col in table
    fmri = [c for c in table if c.startswith("fmri__")]
    assert len(fmri) == 20 * 19 // 2
    assert all(c.count("__") == 2 for c in fmri)
    assert table.age.between(8, 85).all()
    # Grey matter declines with age, as in the images.
    assert table[["age", "smri__GM_total"]].corr().iloc[0, 1] < -0.5


def test_feature_mode_matches_image_truth(tiny_dataset: Path) -> None:
    """Subject k of a seed is the same person in both modes (same age, sex, similar volumes)."""
    truth = pd.read_csv(tiny_dataset / "derivatives" / "simulation" / "truth.tsv", sep="\t")
    table = simulate_features(
        3,
        seed=11,
        n_sites=2,
        sessions=2,
        session_interval=30.0,
        age_range=(20, 50),
        n_rois=4,
        include_truth=True,
    )
    merged = truth.merge(table, on=["participant_id", "session_id"], suffixes=("", "_f"))
    assert len(merged) == len(truth)
    assert (merged.age == merged.age_f).all() and (merged.sex == merged.sex_f).all()
    assert (merged.latent_reserve == merged.latent_reserve_f).all()
    assert (merged.latent_pace == merged.latent_pace_f).all()
    ratio = merged.smri__GM_total / merged.GM_total
    assert ratio.between(0.85, 1.15).all(), ratio
