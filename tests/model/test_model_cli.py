"""``bids_brainage model fit|predict|evaluate`` on a small table."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from bids_brainage.cli import model_cmd


@pytest.fixture(scope="module")
def table_path(tmp_path_factory, small_table):
    path = tmp_path_factory.mktemp("cli") / "features.tsv"
    small_table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


def test_parser_shape():
    parser = argparse.ArgumentParser()
    model_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["model", "fit", "f.tsv", "--out", "m", "--device", "cpu", "--random-seed", "3", "--n-folds", "4"]
    )
    assert (args.command, args.model_command, args.n_folds, args.random_seed, args.device) == (
        "model",
        "fit",
        4,
        3,
        "cpu",
    )


def test_fit_predict_evaluate(tmp_path, table_path, capsys):
    model_dir = tmp_path / "model"
    assert (
        model_cmd.main(
            [
                "model",
                "fit",
                str(table_path),
                "--out",
                str(model_dir),
                "--n-folds",
                "2",
                "--max-epochs",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert {"model.json", "model.safetensors", "oof_predictions.tsv", "oof_metrics.tsv"} <= {
        p.name for p in model_dir.iterdir()
    }
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")]  # no temporary files left
    oof = pd.read_csv(model_dir / "oof_predictions.tsv", sep="\t")
    assert set(oof["split"]) == {"oof"} and set(oof["fold"]) == {0, 1} and set(oof["sex"]) <= {"M", "F"}
    assert "interval_lower" in oof and (model_dir / "oof_predictions.json").is_file()

    # Prediction on a table without age (new subjects) and without fMRI columns.
    new = pd.read_csv(table_path, sep="\t").drop(columns=["age"]).iloc[:10]
    new = new.drop(columns=[c for c in new if c.startswith("fmri__")])
    new_path = tmp_path / "new.csv"
    new.to_csv(new_path, index=False)
    out = tmp_path / "pred.tsv"
    assert (
        model_cmd.main(
            ["model", "predict", str(model_dir), str(new_path), "--out", str(out), "--device", "cpu"]
        )
        == 0
    )
    pred = pd.read_csv(out, sep="\t", na_values="n/a")
    # The schema of brainage.tsv: same columns, M/F, ages to 2 decimals, flags, a sidecar.
    from bids_brainage.compute.brainage_table import COLUMNS

    assert list(pred.columns) == [c for c in COLUMNS if c != "harmonization"]
    assert set(pred["sex"]) <= {"M", "F"} and (pred["split"] == "predict").all()
    assert (pred["predicted_age"] == pred["predicted_age"].round(2)).all()
    assert pred["flag_age_out_of_range"].isna().all()  # no age: unknown
    assert pred["flag_unseen_site"].notna().all() and pred["flag_qc_failed"].isna().all()
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert all(isinstance(sidecar[c], dict) and sidecar[c]["Description"] for c in pred.columns)
    assert len(pred) == 10 and pred["brainage_gap"].isna().all() and (pred["modalities"] == "smri").all()
    # Without ages the intervals cannot be conditioned on age: the interval given the predicted
    # age is used, and every row says so.
    assert pred["interval_lower"].notna().all() and (pred["interval_upper"] > pred["interval_lower"]).all()
    assert pred["note"].str.contains("interval given the predicted age").all()

    report = tmp_path / "report"
    assert (
        model_cmd.main(
            [
                "model",
                "evaluate",
                str(table_path),
                "--out",
                str(report),
                "--n-folds",
                "2",
                "--max-epochs",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    summary = pd.read_csv(report / "model_comparison.tsv", sep="\t")
    assert {
        "saavae_fused",
        "saavae_smri_only",
        "saavae_fmri_only",
        "saavae_no_adv",
        "ridge",
        "svr",
        "gpr",
        "rf",
        "concat_mlp",
    } <= set(summary["model"])
    assert json.loads((report / "evaluation.json").read_text())["n_folds"] == 2


def test_user_errors_are_one_line(tmp_path, table_path, capsys):
    assert model_cmd.main(["model", "fit", str(tmp_path / "missing.tsv"), "--out", str(tmp_path / "m")]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "missing.tsv: file not found" in err and "\n" not in err and captured.out == ""
    assert (
        model_cmd.main(["model", "predict", str(tmp_path), str(table_path), "--out", str(tmp_path / "p.tsv")])
        == 1
    )
    assert "model.json is missing" in capsys.readouterr().err
    assert not (tmp_path / "p.tsv").exists()
