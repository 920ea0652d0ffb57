"""Brain-age accuracy of the whole app on an image-level simulated cohort.

simulate (N subjects, default 200) → participant (``--sloppy``) → group (K-fold SA-AVAE and
baselines on the pipeline's own features); then compares the predicted, bias-corrected gap
with the simulation's hidden gap (target r ≥ 0.5) and writes a table and a predicted-vs-true
age plot into ``docs/benchmarks.md`` between ``<!-- pipeline:start -->`` and
``<!-- pipeline:end -->``. Not a CI test: 200 subjects take hours on 2 cores (about a minute
of participant-level CPU per subject, sloppy), so run it in the background; ``--nprocs 4``
with ``--omp-nthreads 1`` runs two subjects at once, which keeps 2 cores busy:

    nohup python benchmarks/pipeline_accuracy.py --n-subjects 200 --nprocs 4 --root /scratch/bench &

A run is resumable: the simulation is reused and finished subjects are skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from doc_section import cpu_name, replace_section

DOCS = Path(__file__).resolve().parents[1] / "docs"
FIGURE = DOCS / "figures" / "pipeline_predicted_vs_age.png"
START, END = "<!-- pipeline:start -->", "<!-- pipeline:end -->"


def _finished(out_dir: Path, label: str) -> bool:
    # The status file the group level reads: written once the subject's outputs are complete.
    from bids_brainage.gather import status_path

    return status_path(out_dir, label, None).exists()


def run(root: Path, n_subjects: int, nprocs: int, n_folds: int, seed: int, batch: int) -> dict[str, float]:
    """Run the pipeline under ``root`` in batches of subjects; return timings.

    Each batch's nipype work folders are removed once its subjects are finished (200
    subjects' work would take ~50 GB), so a restarted run skips finished subjects by their
    status files instead of nipype's cache. Participant time adds up over restarts in
    ``root/timings.json``.
    """
    from bids_brainage.cli.run import main
    from bids_brainage.simulate import simulate_dataset

    bids_dir, out_dir, work = root / "bids", root / "out", root / "work"
    if not (bids_dir / "dataset_description.json").exists():
        simulate_dataset(
            bids_dir, n_subjects=n_subjects, seed=seed, resolution=2.0, n_volumes=150, n_jobs=nprocs
        )
    common = ["-w", str(work), "--sloppy", "--nprocs", str(nprocs), "--omp-nthreads", "1",
              "--random-seed", str(seed), "--skip-bids-validation"]  # fmt: skip
    timings_file = root / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {"participant_s": 0.0}
    labels = sorted(p.name[4:] for p in bids_dir.glob("sub-*") if p.is_dir())
    todo = [label for label in labels if not _finished(out_dir, label)]
    for i in range(0, len(todo), batch):
        chunk = todo[i : i + batch]
        start = time.monotonic()
        main([str(bids_dir), str(out_dir), "participant", *common, "--participant-label", *chunk])
        timings["participant_s"] += time.monotonic() - start
        timings_file.write_text(json.dumps(timings))
        for label in chunk:
            if _finished(out_dir, label):
                shutil.rmtree(work / "bids_brainage_wf" / f"sub_{label}_wf", ignore_errors=True)
        print(f"{sum(_finished(out_dir, x) for x in labels)}/{len(labels)} subjects finished", flush=True)
    start = time.monotonic()
    code = main([str(bids_dir), str(out_dir), "group", "--n-folds", str(n_folds), *common])
    if code != 0:
        raise SystemExit(f"group level failed with exit code {code}")
    timings["group_s"] = time.monotonic() - start
    return timings


def _key(frame: pd.DataFrame) -> pd.Series:
    # One row per subject and session; single-session tables have no (or an all n/a) session_id.
    session = frame["session_id"].fillna("n/a").astype(str) if "session_id" in frame else "n/a"
    return frame["participant_id"].astype(str) + "|" + session


def evaluate(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float]]:
    """Score SA-AVAE and the baselines on the same folds against the simulation's truth.

    SA-AVAE's out-of-fold predictions and corrected gaps come from the group level's
    ``brainage.tsv``; the baselines are refitted here on the group's feature table with the
    folds ``brainage.tsv`` records, and their gaps are bias-corrected the same way (fitted
    on the training folds only). Returns the SA-AVAE rows joined with the truth, the table of
    models, and a summary.
    """
    from bids_brainage.model.baselines import baseline_oof
    from bids_brainage.model.calibration import cross_fitted
    from bids_brainage.model.features import canonicalise
    from bids_brainage.model.metrics import regression_metrics

    out = root / "out"
    brainage = pd.read_csv(out / "brainage.tsv", sep="\t", keep_default_na=False, na_values=["n/a"])
    truth = pd.read_csv(root / "bids" / "derivatives" / "simulation" / "truth.tsv", sep="\t")
    oof = brainage[brainage["split"] == "oof"].merge(
        truth[["participant_id", "brain_age_gap"]], on="participant_id", validate="many_to_one"
    )
    features = pd.read_csv(
        out / "group" / "features.tsv", sep="\t", keep_default_na=False, na_values=["n/a", ""]
    )
    features = features.set_index(_key(features)).loc[_key(oof)].reset_index(drop=True)
    table = canonicalise(features, source=out / "group" / "features.tsv")
    folds = oof["fold"].to_numpy(int)
    age, true_gap = oof["age"].to_numpy(float), oof["brain_age_gap"].to_numpy(float)

    def row(name: str, pred: np.ndarray, corrected_gap: np.ndarray) -> dict[str, float | str]:
        metrics = regression_metrics(age, pred)
        return {"model": name, "mae": metrics["mae"], "rmse": metrics["rmse"], "r": metrics["pearson_r"],
                "gap_r": float(np.corrcoef(corrected_gap, true_gap)[0, 1])}  # fmt: skip

    rows = [row("SA-AVAE (sMRI+fMRI)", oof["predicted_age"].to_numpy(float), oof["brainage_gap_corrected"])]
    for name in ("ridge", "svr", "gpr", "rf"):
        for modalities in (("smri",), ("smri", "fmri")):
            pred = baseline_oof(name, table, folds, modalities=modalities)
            label = f"{name} ({'+'.join(m.replace('mri', 'MRI') for m in modalities)})"
            rows.append(row(label, pred, cross_fitted(age, pred, folds)["corrected_gap"]))
    models = pd.DataFrame(rows)
    summary = {
        "n": len(oof),
        "gap_r": float(models.loc[0, "gap_r"]),
        "n_fmri": int((oof["modalities"] == "smri+fmri").sum()),
    }
    return oof, models, summary


def plot(oof: pd.DataFrame) -> Path:
    """Predicted vs chronological age, and corrected vs true gap (SA-AVAE, out of fold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_age, ax_gap) = plt.subplots(1, 2, figsize=(8.4, 4.0))
    ax_age.scatter(oof["age"], oof["predicted_age"], s=10, alpha=0.7)
    lims = [
        min(oof["age"].min(), oof["predicted_age"].min()),
        max(oof["age"].max(), oof["predicted_age"].max()),
    ]
    ax_age.plot(lims, lims, color="k", lw=1)
    ax_age.set_xlabel("chronological age (years)")
    ax_age.set_ylabel("predicted brain age, out of fold (years)")
    ax_gap.scatter(oof["brain_age_gap"], oof["brainage_gap_corrected"], s=10, alpha=0.7, color="C1")
    ax_gap.axhline(0, color="0.7", lw=0.8)
    ax_gap.axvline(0, color="0.7", lw=0.8)
    ax_gap.set_xlabel("true hidden gap, simulation (years)")
    ax_gap.set_ylabel("predicted gap, bias-corrected (years)")
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=120)
    plt.close(fig)
    return FIGURE


def write_section(
    models: pd.DataFrame, timings: dict[str, float], summary: dict[str, float], commit: str
) -> None:
    rows = "\n".join(
        f"| {m['model']} | {m['mae']:.2f} | {m['rmse']:.2f} | {m['r']:.3f} | {m['gap_r']:.2f} |"
        for _, m in models.iterrows()
    )
    text = f"""{START}
## Whole pipeline on a simulated cohort (`benchmarks/pipeline_accuracy.py`)

Run {dt.datetime.now(dt.UTC):%Y-%m-%d} on {cpu_name()}, {os.cpu_count()} CPU(s), Python
{platform.python_version()}, commit {commit}: {summary["n"]} simulated subjects (2 mm T1w,
150-volume 3 mm BOLD), participant level `--sloppy --nprocs 4 --omp-nthreads 1` (two subjects at
a time; {timings["participant_s"] / 60:.0f} min, {timings["participant_s"] / summary["n"]:.0f} s per subject),
group level 5-fold ({timings["group_s"] / 60:.1f} min); {summary["n_fmri"]} subjects used both
modalities. The baselines are refitted on the group's feature table with the folds of
`brainage.tsv`; every gap is bias-corrected on the training folds only.

| model (out of fold, identical folds) | MAE | RMSE | r (age) | r (corrected gap, true gap) |
|---|---|---|---|---|
{rows}

Correlation of SA-AVAE's bias-corrected predicted gap with the simulation's hidden gap:
**r = {summary["gap_r"]:.2f}** (target ≥ 0.5).

![predicted vs chronological age; corrected vs true gap](figures/{FIGURE.name})
{END}"""
    replace_section(START, END, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="scratch folder (BIDS, outputs, work dir)")
    parser.add_argument("--n-subjects", type=int, default=200)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--n-folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=20, help="subjects per participant-level call")
    parser.add_argument("--no-write", action="store_true", help="print, do not update docs/benchmarks.md")
    parser.add_argument(
        "--report-only", action="store_true", help="score and write a finished run under --root (no pipeline)"
    )
    args = parser.parse_args(argv)
    timings_file = args.root / "timings.json"
    if args.report_only:
        timings = json.loads(timings_file.read_text())
    else:
        timings = run(args.root, args.n_subjects, args.nprocs, args.n_folds, args.seed, args.batch)
        timings_file.write_text(json.dumps(timings))
    oof, models, summary = evaluate(args.root)
    print(models.to_string(index=False), summary, timings, sep="\n")
    if not args.no_write:
        plot(oof)
        commit = (args.root / "COMMIT").read_text().strip() if (args.root / "COMMIT").exists() else "unknown"
        write_section(models, timings, summary, commit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
