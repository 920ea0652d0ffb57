"""Whole functional workflow time per run and accuracy vs the simulator's truth; writes docs/benchmarks.md.

Simulates one subject (150 volumes, 3 mm BOLD), runs :func:`init_func_wf` with the true
anatomical inputs (so only the functional chain is timed), and reports wall time, motion
RMS error and the Pearson r of the connectome with the true one. Results of
``benchmarks/motion_correction.py`` (``--hmc-json``) go into the same section of
``docs/benchmarks.md`` between ``<!-- functional:start -->`` and ``<!-- functional:end -->``.

    python benchmarks/functional.py [--hmc-json RESULTS.json] [--n-volumes 150] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from doc_section import replace_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "functional"))

from bids_brainage.compute import hmc  # noqa: E402

START, END = "<!-- functional:start -->", "<!-- functional:end -->"


def run_workflow(base: Path, n_volumes: int, seed: int) -> dict:
    from fixtures import anat_inputs_from_truth

    from bids_brainage.derivatives import init_derivatives
    from bids_brainage.simulate import simulate_dataset
    from bids_brainage.workflows.functional import init_func_wf

    bids = base / "bids"
    simulate_dataset(bids, 1, seed=seed, resolution=2.0, n_volumes=n_volumes)
    anat = anat_inputs_from_truth(bids, "001", base / "anat")
    out = base / "out"
    init_derivatives(out, bids)
    bold = bids / "sub-001/func/sub-001_task-rest_bold.nii.gz"
    wf = init_func_wf(
        bold_file=str(bold), output_dir=str(out), subject="001", session=None, bids_root=str(bids),
        sloppy=False, omp_nthreads=1,
    )  # fmt: skip
    for key, value in anat.items():
        setattr(wf.inputs.inputnode, key, value)
    wf.base_dir = str(base / "work")
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    wf.run()  # Linear plugin: every node runs in this process, so process_time() is its CPU time
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    func, truth = out / "sub-001/func", bids / "derivatives/simulation/sub-001/func"
    est = pd.read_csv(
        func
        / "sub-001_task-rest_space-MNI152NLin2009aSym_seg-Seitzman300_stat-pearsoncorrelation_relmat.tsv",
        sep="\t",
        index_col="Node",
    )
    true = pd.read_csv(truth / "sub-001_task-rest_atlas-Seitzman300_desc-sample_relmat.tsv", sep="\t")
    iu = np.triu_indices(len(est), 1)
    e, t = est.to_numpy()[iu], true.to_numpy()[iu]
    ok = np.isfinite(e)
    mot = pd.read_csv(func / "sub-001_task-rest_desc-motion_timeseries.tsv", sep="\t")[
        list(hmc.PARAM_NAMES)
    ].to_numpy()
    tmot = pd.read_csv(truth / "sub-001_task-rest_desc-motion_timeseries.tsv", sep="\t")[
        list(hmc.PARAM_NAMES)
    ]
    err = hmc.relative_params(np.array([hmc.params_to_matrix(p) for p in mot])) - hmc.relative_params(
        np.array([hmc.params_to_matrix(p) for p in tmot.to_numpy()])
    )
    nodes = {}
    steps = ("prepare_bold", "hmc", "coreg", "confounds", "atlas_to_bold", "denoise", "connectivity",
             "run_qc", "features", "func_reports_wf/reportlets")  # fmt: skip
    for path in steps:
        import gzip
        import pickle

        node = path.rsplit("/", 1)[-1]
        with gzip.open(base / "work" / "func_wf" / path / f"result_{node}.pklz") as fh:
            nodes[path.replace("/", ".")] = round(float(pickle.load(fh).runtime.duration), 1)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_average_start": load,
        "load_average_end": os.getloadavg()[0],
        "n_volumes": n_volumes,
        "r_vs_truth": float(np.corrcoef(e[ok], t[ok])[0, 1]),
        "motion_rms_mm": float(np.sqrt((err[:, :3] ** 2).mean())),
        "motion_rms_deg": float(np.rad2deg(np.sqrt((err[:, 3:] ** 2).mean()))),
        "nodes": nodes,
    }


def render(wf: dict | None, mc: dict | None, machine: str, date: str) -> str:
    lines = [START, "## Functional workflow", "", f"Measured {date} on {machine}.", ""]
    if mc:
        lines += [
            "### Head-motion correction vs `ants.motion_correction`",
            "",
            f"Synthetic BOLD {mc['shape'][3]} volumes of {mc['shape'][0]}x{mc['shape'][1]}x{mc['shape'][2]} "
            f"({mc['voxel_mm']} mm) from the MNI template with known rigid motion (up to "
            f"{mc['true_max_mm']:.1f} mm / {mc['true_max_deg']:.1f} deg), both methods in the same run "
            f"(`benchmarks/motion_correction.py`; 1-min load average {mc['load_average']:.1f} at start, "
            f"{mc.get('load_average_end', float('nan')):.1f} at the end: the machine was shared).",
            "",
            "| method | time (s) | RMS error (mm) | RMS error (deg) | max error (mm) | max error (deg) |",
            "|---|---|---|---|---|---|",
        ]
        for key, label in (
            ("ours", "`bids_brainage.compute.hmc` (estimate + one resampling)"),
            ("ants", "`ants.motion_correction`"),
        ):
            if key in mc:
                m = mc[key]
                lines.append(
                    f"| {label} | {m['seconds']:.1f} | {m['rms_mm']:.3f} | {m['rms_deg']:.3f} | "
                    f"{m['max_mm']:.3f} | {m['max_deg']:.3f} |"
                )
        if "speedup" in mc:
            lines += [
                "",
                f"**Speed-up: {mc['speedup']:.1f}x** (target >= 8x); accuracy target <= 0.2 mm and <= 0.2 deg RMS.",
            ]
        lines.append("")
    if wf:
        lines += [
            "### Whole functional workflow (one run)",
            "",
            f"Simulated subject, {wf['n_volumes']} volumes at 3 mm, Seitzman300, default options, true "
            "anatomical inputs (the anatomical workflow is timed separately); `benchmarks/functional.py`.",
            "",
            f"- wall time: **{wf['seconds']:.0f} s** (target <= 90 s; load average {wf['load_average_start']:.1f} -> "
            f"{wf['load_average_end']:.1f} on 2 cores)"
            + (f"; CPU time {wf['cpu_seconds']:.0f} s" if "cpu_seconds" in wf else ""),
            "- per node (s): " + ", ".join(f"{k} {v}" for k, v in wf["nodes"].items()),
            f"- motion RMS error: {wf['motion_rms_mm']:.3f} mm, {wf['motion_rms_deg']:.3f} deg",
            f"- connectome vs the simulation's true (sample) matrix: Pearson r = {wf['r_vs_truth']:.2f} (target >= 0.7)",
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def write_section(text: str, path: Path = ROOT / "docs" / "benchmarks.md") -> None:
    """Replace only our section of docs/benchmarks.md (create the file or section if absent)."""
    replace_section(START, END, text, path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hmc-json", type=Path, help="results of benchmarks/motion_correction.py")
    parser.add_argument("--wf-json", type=Path, help="reuse earlier workflow results instead of running")
    parser.add_argument("--n-volumes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", type=Path, help="keep the simulated data and outputs here")
    args = parser.parse_args(argv)
    if args.wf_json:
        wf = json.loads(args.wf_json.read_text())
    else:
        base = args.keep or Path(tempfile.mkdtemp(prefix="bids_brainage_func_bench_"))
        wf = run_workflow(base, args.n_volumes, args.seed)
        (base / "functional_benchmark.json").write_text(json.dumps(wf, indent=2))
        print(json.dumps(wf, indent=2))
    mc = json.loads(args.hmc_json.read_text()) if args.hmc_json and args.hmc_json.exists() else None
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}"
    write_section(render(wf, mc, machine, datetime.now(UTC).strftime("%Y-%m-%d")))


if __name__ == "__main__":
    main()
