"""Every ``bids_brainage`` command shown in README.md and docs/ runs through the installed
console script, as a user would type it.

``DOCUMENTED`` maps each command found in a fenced code block to the test that runs it; a
command added to the docs without a test here fails ``test_every_documented_command_has_a_test``.
Placeholders (``BIDS_DIR``, ``OUTPUT_DIR``, ``features.tsv``...) are filled with small inputs,
and image-level runs add ``--sloppy`` and CI-sized cohorts, named in each test.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from console import PROJECT_ROOT, run_app
from pipeline_cohort import TRAIN

DOCS = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]

#: documented command -> the test that runs it through the console script
DOCUMENTED = {
    "bids_brainage demo demo_output": "test_demo",
    "bids_brainage demo OUTPUT_DIR": "test_demo",
    "bids_brainage BIDS_DIR OUTPUT_DIR participant [--participant-label 01 02] [options]": (
        "conftest.pipeline_run (participant on 5 subjects)"
    ),
    "bids_brainage BIDS_DIR OUTPUT_DIR group [--model MODEL_DIR] [options]": (
        "conftest.pipeline_run (group); e2e/test_pipeline.py::test_held_out_subject_predicted_with_model"
    ),
    "bids_brainage simulate OUT_BIDS_DIR --n-subjects 20 [--seed 0] [--resolution 2]": "test_simulate_images",
    "bids_brainage simulate OUT --n-subjects 20 --seed 0 --resolution 2 --n-volumes 100": "test_simulate_images",
    "bids_brainage simulate OUT --n-subjects 5000 --features-only": "test_simulate_features_and_model_commands",
    "bids_brainage model {fit,predict,evaluate} FEATURES.tsv ...": "test_simulate_features_and_model_commands",
    "bids_brainage model fit features.tsv --out my_model": "test_simulate_features_and_model_commands",
    "bids_brainage model predict my_model new_features.tsv --out predictions.tsv": (
        "test_simulate_features_and_model_commands"
    ),
    "bids_brainage model evaluate features.tsv --out evaluation/": "test_simulate_features_and_model_commands",
    "bids_brainage BIDS_DIR OUTPUT_DIR participant --boilerplate-only": (
        "test_cli.py::test_boilerplate_only_writes_the_methods_and_exits"
    ),
    "bids_brainage BIDS_DIR OUTPUT_DIR participant --anat-only": (
        "test_cli.py::test_boilerplate_only_writes_the_methods_and_exits (with --boilerplate-only); "
        "test_cli.py::test_anat_only_participant_level_drops_the_bold_runs; "
        "test_workflow_graph.py::test_anat_only_subject_workflow_has_no_functional_nodes"
    ),
    "bids_brainage BIDS_DIR OUTPUT_DIR participant --config-file settings.toml --fd-spike-threshold 0.4": (
        "test_cli.py::test_config_file_sets_options_and_the_command_line_overrides"
    ),
    "bids_brainage BIDS_DIR OUTPUT_DIR participant --use-plugin workflows/multiproc.yml": (
        "test_multiproc_plugin_and_reports_only"
    ),
    "bids_brainage BIDS_DIR OUTPUT_DIR participant --participant-label 01 -w $SCRATCH/work "
    "--use-plugin workflows/slurm.yml": "hpc/test_slurm.py::test_one_subject_with_the_nipype_slurm_plugin",
}


def documented_commands() -> dict[str, str]:
    """``bids_brainage ...`` lines of every fenced code block (continuations joined, trailing
    comments removed) -> the Markdown file that shows them."""
    found: dict[str, str] = {}
    for doc in DOCS:
        for block in re.findall(r"```[a-z]*\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():
                for part in line.split("  #")[0].split("&&"):
                    command = re.sub(r"\s+", " ", part).strip()
                    if command.startswith("bids_brainage "):
                        found[command] = doc.name
    return found


def test_every_documented_command_has_a_test():
    found = documented_commands()
    missing = {c: doc for c, doc in found.items() if c not in DOCUMENTED}
    assert not missing, f"documented commands without a test in {Path(__file__).name}: {missing}"
    stale = set(DOCUMENTED) - set(found)
    assert not stale, f"tested commands no longer in the docs: {stale}"


def _ok(proc) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-3000:]}"


def test_demo(tmp_path):
    """``bids_brainage demo OUT`` (README Quick start), with the demo's own options for a CI-sized
    cohort (6 subjects, 4 mm, 40 volumes) instead of its defaults (8 subjects, 3 mm, 60 volumes:
    ~8.5 min on 2 cores), and ``--nprocs 1``: nipype's Linear plugin runs each node in the demo's
    process, without a worker process per node; on these 4 mm subjects that was as fast or
    faster than MultiProc on 2 (45-68 s vs 73-74 s per subject under load), and MultiProc is
    run by the pipeline fixture, the multiproc.yml test and the reliability tests."""
    out = tmp_path / "demo_output"
    proc = run_app(
        "demo", out, "--n-subjects", "6", "--resolution", "4", "--n-volumes", "40", "--nprocs", "1"
    )
    _ok(proc)
    assert "Demo finished" in proc.stdout and "group report" in proc.stdout
    derivatives = out / "derivatives"
    assert (derivatives / "group_report.html").is_file()
    assert len(list(derivatives.glob("sub-*.html"))) == 6
    brainage = pd.read_csv(derivatives / "brainage.tsv", sep="\t")
    assert len(brainage) == 6
    # Every participant is predicted unless the structural QC excluded them (at 4 mm the
    # simulated 67-year-old with a fast ageing pace fails the partial-volume WM check); the
    # exclusion is a row of its own, with its reason in group/qc.tsv.
    excluded = brainage["split"] == "excluded"
    assert brainage.loc[~excluded, "predicted_age"].notna().all() and (~excluded).sum() >= 5
    assert brainage.loc[excluded, "predicted_age"].isna().all()
    qc = pd.read_csv(derivatives / "group" / "qc.tsv", sep="\t")
    flagged = set(qc.loc[qc["reason"].astype(str).str.contains("structural QC"), "participant_id"])
    assert set(brainage.loc[excluded, "participant_id"]) <= flagged


def test_simulate_images(tmp_path):
    """docs/simulation.md's image-level example, exactly as shown (also the README synopsis)."""
    out = tmp_path / "OUT"
    proc = run_app(
        "simulate", out, "--n-subjects", "20", "--seed", "0", "--resolution", "2", "--n-volumes", "100"
    )
    _ok(proc)
    subjects = sorted(p.name for p in out.glob("sub-*") if p.is_dir())
    assert len(subjects) == 20
    assert (out / "participants.tsv").is_file()
    truth = pd.read_csv(out / "derivatives" / "simulation" / "truth.tsv", sep="\t")  # the ground truth
    assert len(truth) == 20 and {"age", "brain_age_gap"} <= set(truth.columns)
    assert list((out / subjects[0] / "func").glob("*_bold.nii.gz"))


#: a documented option of ``model fit`` and ``model evaluate``: a short training schedule
FEW_EPOCHS = ["--max-epochs", "20"]


def test_simulate_features_and_model_commands(tmp_path):
    """``simulate --features-only`` as shown, then the README's tabular mode on its table:
    ``model fit``, ``model predict`` and ``model evaluate`` with the arguments shown (on the
    first 60 people, and ``fit``/``evaluate`` with ``--max-epochs 20`` from their ``--help``,
    so evaluate's 18 models fit in CI: ~30 CPU s instead of ~110 s at the default schedule)."""
    sim = tmp_path / "OUT"
    _ok(run_app("simulate", sim, "--n-subjects", "5000", "--features-only"))
    table = pd.read_csv(sim / "features.tsv", sep="\t")
    assert (
        len(table) == 5000 and table.filter(like="smri__").shape[1] and table.filter(like="fmri__").shape[1]
    )
    table.iloc[:60].to_csv(tmp_path / "features.tsv", sep="\t", index=False)
    table.iloc[60:70].drop(columns=["age"]).to_csv(tmp_path / "new_features.tsv", sep="\t", index=False)

    fit = run_app("model", "fit", "features.tsv", "--out", "my_model", *FEW_EPOCHS, cwd=tmp_path)
    _ok(fit)
    assert "out-of-fold MAE" in fit.stdout
    assert {"model.json", "model.safetensors", "oof_predictions.tsv"} <= {
        p.name for p in (tmp_path / "my_model").iterdir()
    }
    predict = run_app(
        "model", "predict", "my_model", "new_features.tsv", "--out", "predictions.tsv", cwd=tmp_path
    )
    _ok(predict)
    predictions = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    assert len(predictions) == 10 and predictions["predicted_age"].between(0, 120).all()
    # README: the columns of brainage.tsv, with a JSON sidecar beside the table.
    assert {"interval_lower", "flag_unseen_site"} <= set(predictions.columns)
    assert (tmp_path / "predictions.json").is_file()
    evaluate = run_app("model", "evaluate", "features.tsv", "--out", "evaluation/", *FEW_EPOCHS, cwd=tmp_path)
    _ok(evaluate)
    comparison = pd.read_csv(tmp_path / "evaluation" / "model_comparison.tsv", sep="\t")
    assert {"saavae_fused", "ridge"} <= set(comparison["model"])


def test_model_errors_are_one_line_on_stderr(tmp_path):
    """A ``model`` user error: exit 1, one line on stderr naming the file, nothing on stdout."""
    bad = tmp_path / "bad.tsv"
    bad.write_text("participant_id\tage\nsub-1\t30\n")
    proc = run_app("model", "fit", bad, "--out", tmp_path / "m")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr and "sex" in proc.stderr
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("command", [[], ["model"], ["model", "predict"], ["simulate"], ["demo"]])
def test_help_prints_each_default_once(command):
    proc = run_app(*command, "--help")
    assert proc.returncode == 0
    assert "(default: None)" not in proc.stdout
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", proc.stdout), proc.stdout
    assert "``" not in proc.stdout  # no reStructuredText markup in the help text


def test_predict_offers_no_training_options():
    text = run_app("model", "predict", "--help").stdout
    assert "--progress" not in text and "--random-seed" not in text
    assert "--random-seed" in run_app("model", "evaluate", "--help").stdout


def test_multiproc_plugin_and_reports_only(pipeline_run, tmp_path):
    """docs/hpc.md's ``--use-plugin workflows/multiproc.yml`` on one subject, then docs/outputs.md's
    ``--reports-only`` on the result. The pipeline fixture's work dir and settings are reused,
    so nipype's cache serves the processing and the run writes a fresh output folder."""
    out = tmp_path / "out"
    common = ["-w", pipeline_run.work_dir, "--sloppy", "--omp-nthreads", "1", "--random-seed", "1",
              "--min-time", "40", "--skip-bids-validation"]  # fmt: skip
    plugin = PROJECT_ROOT / "workflows" / "multiproc.yml"
    label = TRAIN[1]  # test_reliability adds broken BOLD runs to sub-001 of this shared dataset
    proc = run_app(
        pipeline_run.bids_dir,
        out,
        "participant",
        "--participant-label",
        label,
        "--use-plugin",
        plugin,
        *common,
    )
    _ok(proc)
    features = out / f"sub-{label}" / "anat" / f"sub-{label}_desc-structural_features.tsv"
    reference = pipeline_run.out_dir / features.relative_to(out)
    assert features.read_text() == reference.read_text()
    report = out / f"sub-{label}.html"
    report.unlink()
    _ok(run_app(pipeline_run.bids_dir, out, "participant", "--reports-only", "--skip-bids-validation"))
    assert report.is_file() and f"sub-{label}" in report.read_text()
    shutil.rmtree(out)
