"""Brain-age accuracy of the whole app on an image-level simulated cohort.

simulate (N subjects, default 200) → participant (``--sloppy``) → group (K-fold SA-AVAE and
baselines on the pipeline's own features); then compares the predicted, bias-corrected gap
with the simulation's hidden gap (target r ≥ 0.5) and writes a table and a predicted-vs-true
age plot into ``docs/benchmarks.md`` between ``<!-- pipeline:start -->`` and
``<!-- pipeline:end -->``. Not a CI test: 200 subjects take hours on 2 cores (about a minute
of participant-level CPU per subject, sloppy), so run it in the background; ``--nprocs 4``
with ``--omp-nthreads 1`` runs two subjects at once, which keeps 2 cores busy:

    nohup python benchmarks/pipeline_accuracy.py --n-subjects 200 --nprocs 4 --root /scratch/bench &

A run is resumable: the simulation is reused and subjects with a report are skipped.
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
from doc_section import replace_section

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC = DOCS / "benchmarks.md"
FIGURE = DOCS / "figures" / "pipeline_predicted_vs_age.png"
START, END = "<!-- pipeline:start -->", "<!-- pipeline:end -->"


def _finished(out_dir: Path, label: str) -> bool:
    # The subject report is the participant level's last output.
    return (out_dir / f"sub-{label}.html").exists()


def run(root: Path, n_subjects: int, nprocs: int, n_folds: int, seed: int, batch: int) -> dict[str, float]:
    """Run the pipeline under ``root`` in batches of subjects; return timings.

    Each batch's nipype work folders are removed once its subjects are finished (200
    subjects' work would take ~50 GB), so a restarted run skips finished subjects by their
    reports instead of nipype's cache. Participant time adds up over restarts in
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


def evaluate(root: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """Join predictions with the simulation truth; correlation of corrected gap with the true gap."""
    brainage = pd.read_csv(root / "out" / "brainage.tsv", sep="\t")
    truth = pd.read_csv(root / "bids" / "derivatives" / "simulation" / "truth.tsv", sep="\t")
    merged = brainage.merge(truth[["participant_id", "brain_age_gap"]], on="participant_id")
    oof = merged[merged["split"] == "oof"]
    r = float(np.corrcoef(oof["brainage_gap_corrected"], oof["brain_age_gap"])[0, 1])
    summary = {
        "n": len(oof),
        "gap_r": r,
        "n_fmri": int((oof["modalities"] == "smri+fmri").sum()),
    }
    return oof, summary


def plot(oof: pd.DataFrame) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    ax.scatter(oof["age"], oof["predicted_age"], s=10, alpha=0.7)
    lims = [
        min(oof["age"].min(), oof["predicted_age"].min()),
        max(oof["age"].max(), oof["predicted_age"].max()),
    ]
    ax.plot(lims, lims, color="k", lw=1)
    ax.set_xlabel("chronological age (years)")
    ax.set_ylabel("predicted brain age, out of fold (years)")
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=120)
    plt.close(fig)
    return FIGURE


def write_section(root: Path, timings: dict[str, float], summary: dict[str, float]) -> None:
    baselines = pd.read_csv(root / "out" / "group" / "baselines.tsv", sep="\t")
    rows = "\n".join(
        f"| {row['model']} | {row['mae']:.2f} | {row['rmse']:.2f} | {row['r']:.3f} |"
        for _, row in baselines.iterrows()
    )
    text = f"""{START}
## Whole pipeline on a simulated cohort (`benchmarks/pipeline_accuracy.py`)

Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} CPU(s),
Python {platform.python_version()}: {summary["n"]} simulated subjects (2 mm T1w, 150-volume BOLD),
participant level `--sloppy` ({timings["participant_s"] / 60:.0f} min), group level
({timings["group_s"] / 60:.1f} min); {summary["n_fmri"]} subjects used both modalities.

| model (out-of-fold, identical folds) | MAE | RMSE | r |
|---|---|---|---|
{rows}

Correlation of the bias-corrected predicted gap with the simulation's hidden gap:
**r = {summary["gap_r"]:.2f}** (target ≥ 0.5).

![predicted vs chronological age](figures/{FIGURE.name})
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
    args = parser.parse_args(argv)
    timings = run(args.root, args.n_subjects, args.nprocs, args.n_folds, args.seed, args.batch)
    oof, summary = evaluate(args.root)
    print(summary, timings)
    if not args.no_write:
        plot(oof)
        write_section(args.root, timings, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
