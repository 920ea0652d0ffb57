"""simulate → participant → group → predict a held-out subject with --model (real pipeline)."""

from __future__ import annotations

import json
import re

import pandas as pd
from console import run_app
from pipeline_cohort import HELD_OUT, TRAIN

from bids_brainage.bids import run_validator


def test_participant_level_writes_features_for_every_subject(pipeline_run):
    assert pipeline_run.participant_code == 0
    for label in TRAIN:
        subject_dir = pipeline_run.out_dir / f"sub-{label}"
        assert (subject_dir / "anat" / f"sub-{label}_desc-structural_features.tsv").exists()
        assert list((subject_dir / "func").glob("*_desc-functional_features.tsv"))
        status = json.loads(
            (pipeline_run.out_dir / "logs" / "participants" / f"sub-{label}.json").read_text()
        )
        assert status["ok"] and status["errors"] == []
        assert (pipeline_run.out_dir / f"sub-{label}.html").exists()
    assert not (pipeline_run.out_dir / f"sub-{HELD_OUT}").exists()
    (log,) = (pipeline_run.out_dir / "logs").glob("participant_*.log")
    text = log.read_text()
    assert "running 2 subjects at a time, 2 processor(s) each" in text
    # the workers log into the run's log file too
    assert text.count("participant level: 5 of 5 succeeded") == 1
    # a line per stage with its time (bids_brainage.cli.logs.StageLog)
    for label in TRAIN:
        assert re.search(rf"sub-{label}: anatomical .+ done in \d+ s", text)
        assert re.search(rf"sub-{label}: BOLD run 1 .+ done in \d+ s", text)


def test_group_level_tables_bundle_and_report(pipeline_run):
    assert pipeline_run.group_code == 0
    out = pipeline_run.out_dir
    brainage = pd.read_csv(out / "brainage.tsv", sep="\t")
    assert list(brainage["participant_id"]) == [f"sub-{label}" for label in TRAIN]
    assert set(brainage["split"]) == {"oof"} and brainage["predicted_age"].notna().all()
    assert (brainage["interval_lower"] <= brainage["predicted_age"]).all()
    assert (brainage["predicted_age"] <= brainage["interval_upper"]).all()
    # One schema (docs/outputs.md): M/F, ages to 2 decimals, flags, a Description object per column.
    assert set(brainage["sex"]) <= {"M", "F"} and (brainage["age"] == brainage["age"].round(2)).all()
    assert (brainage["brainage_gap"] == brainage["brainage_gap"].round(2)).all()
    assert not brainage[["flag_age_out_of_range", "flag_unseen_site", "flag_qc_failed"]].any().any()
    sidecar = json.loads((out / "brainage.json").read_text())
    assert all(isinstance(sidecar[c], dict) and "Description" in sidecar[c] for c in brainage.columns)
    group_log = sorted((out / "logs").glob("group_*.log"))[0].read_text()
    assert "(1 of 3): trained on" in group_log and "SA-AVAE out of fold: MAE" in group_log
    truth = pd.read_csv(pipeline_run.bids_dir / "participants.tsv", sep="\t")
    merged = brainage.merge(truth[["participant_id", "age"]], on="participant_id", suffixes=("", "_truth"))
    assert (merged["age"] - merged["age_truth"]).abs().max() < 1e-6
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["training_summary"]["n_participants"] == len(TRAIN)
    assert meta["features"]["smri"] and meta["features"]["fmri"]
    assert "Model card" in (out / "model" / "model_card.md").read_text()
    assert json.loads((out / "group" / "metrics.json").read_text())["overall"]["n"] == len(TRAIN)
    assert (out / "group_report.html").exists()
    assert (out / "logs" / "CITATION.md").exists() and (out / "logs" / "CITATION.bib").exists()


def test_outputs_pass_the_bids_validator(pipeline_run):
    n_errors, _, summary = run_validator(pipeline_run.out_dir)
    assert n_errors == 0, summary


def test_held_out_subject_predicted_with_model(pipeline_run):
    run = pipeline_run
    common = ["-w", str(run.work_dir), "--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--min-time", "40",
              "--skip-bids-validation", "--model", str(run.out_dir / "model")]  # fmt: skip
    proc = run_app(run.bids_dir, run.heldout_out, "participant", "--participant-label", HELD_OUT, *common)
    assert proc.returncode == 0, proc.stderr[-2000:]
    subject_pred = pd.read_csv(
        run.heldout_out / f"sub-{HELD_OUT}" / f"sub-{HELD_OUT}_desc-brainage_prediction.tsv", sep="\t"
    )
    assert subject_pred["participant_id"].tolist() == [f"sub-{HELD_OUT}"]
    assert subject_pred["split"].tolist() == ["predict"] and subject_pred["modalities"].item() == "smri+fmri"
    flags = subject_pred[["flag_bold_excluded", "flag_qc_failed"]]
    assert flags.notna().all().all() and not flags.any().any()
    proc = run_app(run.bids_dir, run.heldout_out, "group", *common)
    assert proc.returncode == 0, proc.stderr[-2000:]
    group_pred = pd.read_csv(run.heldout_out / "brainage.tsv", sep="\t")
    assert group_pred["participant_id"].tolist() == [f"sub-{HELD_OUT}"]
    assert list(group_pred.columns) == list(subject_pred.columns)  # one schema
    assert abs(group_pred["predicted_age"].item() - subject_pred["predicted_age"].item()) < 1e-4
    assert not (run.heldout_out / "model").exists()  # predicting never trains
