"""Anatomical workflow on full-resolution T1w: time per node, peak memory and accuracy.

Inputs: the full-resolution T1w images of ``../shared/data/real/ds002748_4`` (0.87 x 0.87 x
1 mm) and, for accuracy against a known truth, one subject of the simulator at 1 mm. Each
measurement runs in a fresh child process (fresh work dir, nipype Linear plugin, so every
node runs in that process): its peak resident memory is the child's ``ru_maxrss``, and a
nipype status callback records the wall and CPU time (user + system, all threads) of each
node. Next to the workflow, in the same run and on the same image, the plain recipe a user
could write in a few lines is measured: N4 -> antspyx ``SyN`` to the 1 mm MNI template ->
template brain mask and GM/WM/CSF priors warped back -> Atropos with the warped priors.

Accuracy, for the workflow and the recipe alike: GM, WM and CSF shares of TIV (sums of the
probability maps in the brain mask); GM Dice with the template (the GM label warped to the
2 mm template with the forward transform, against the template GM prior > 0.5); on the
simulated subject, the voxel-wise correlation of the GM map with the true GM fractions.

``--code-root`` runs the workflow of another checkout (e.g. a ``git worktree`` of an older
commit) for a 'before' column; ``--json`` saves the results and ``--before`` reads such a
file into the table. Results go to ``docs/benchmarks.md`` between
``<!-- anatomical:start -->`` and ``<!-- anatomical:end -->``.

Usage::

    python benchmarks/anatomical.py [--modes default sloppy] [--subjects 01 02 04 06]
        [--no-simulated] [--no-plain] [--code-root DIR] [--json FILE] [--before FILE]
        [--omp-nthreads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from doc_section import cpu_name, replace_section

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
DATASET = REAL / "ds002748_4"
START, END = "<!-- anatomical:start -->", "<!-- anatomical:end -->"

#: Targets of issue 21.
MAX_RATIO = 0.5
MAX_SLOPPY_S = 30.0
MAX_PEAK_MIB = 3 * 1024
GM_TIV_RANGE = (0.40, 0.52)

_CHILD_TAIL = """
import json, resource
usage = resource.getrusage(resource.RUSAGE_SELF)
print('PEAK', json.dumps(usage.ru_maxrss))
print('CPU', json.dumps(usage.ru_utime + usage.ru_stime))
"""

_WORKFLOW = """
import json, resource, sys, time
from bids_brainage import derivatives
from bids_brainage.workflows.anatomical import init_anat_wf
bids_root, subject, t1w, out, work, sloppy, threads = sys.argv[1:8]
derivatives.init_derivatives(out, bids_root)
wf = init_anat_wf(output_dir=out, subject=subject, session=None, bids_root=bids_root,
                  sloppy=sloppy == "1", omp_nthreads=int(threads))
wf.base_dir = work
wf.config["execution"]["hash_method"] = "content"
wf.inputs.inputnode.t1w = t1w
marks, nodes = {}, {}

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def callback(node, status):
    if status == "start":
        marks[node.fullname] = (time.monotonic(), cpu())
    elif node.fullname in marks:
        wall, used = marks.pop(node.fullname)
        nodes[node.fullname] = [time.monotonic() - wall, cpu() - used]

wf.run(plugin="Linear", plugin_args={"status_callback": callback})
print("NODES", json.dumps(nodes))
"""

_PLAIN = """
import json, os, resource, shutil, sys, tempfile, time
import numpy as np
import nibabel as nib
t1w, out, threads = sys.argv[1], sys.argv[2], sys.argv[3]
os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = threads
tempfile.tempdir = tempfile.mkdtemp(dir=out)  # antspyx's temporary files, removed below
import ants
from bids_brainage.templates import mni_brain_mask, mni_t1w, mni_tissue_priors
steps, mark = {}, None

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def step(name):
    global mark
    now = (time.monotonic(), cpu())
    if mark is not None:
        steps[mark[0]] = [now[0] - mark[1], now[1] - mark[2]]
    mark = (name, *now) if name else None

def template(img, name):
    nib.save(img, f"{out}/{name}.nii.gz")
    return ants.image_read(f"{out}/{name}.nii.gz")

step("N4")
t1 = ants.n4_bias_field_correction(ants.image_read(t1w))
step("registration")
fixed = template(mni_t1w(1), "tpl")
reg = ants.registration(fixed, t1, type_of_transform="SyN", outprefix=f"{out}/plain_")
step("priors warped back")
mask = ants.apply_transforms(t1, template(mni_brain_mask(1), "mask"), reg["invtransforms"],
                             interpolator="nearestNeighbor")
priors = [ants.apply_transforms(t1, template(img, name), reg["invtransforms"])
          for name, img in mni_tissue_priors(1).items()]
step("Atropos + partial volumes")
seg = ants.atropos(a=t1, x=mask, i=priors, m="[0.2,1x1x1]", c="[5,0]", priorweight=0.25)
step(None)
ants.image_write(mask, f"{out}/mask.nii.gz")
ants.image_write(seg["segmentation"], f"{out}/dseg.nii.gz")
for name, img in zip(("GM", "WM", "CSF"), seg["probabilityimages"]):
    ants.image_write(img, f"{out}/prob_{name}.nii.gz")
json.dump({"fwd": reg["fwdtransforms"]}, open(f"{out}/xfm.json", "w"))
shutil.rmtree(tempfile.tempdir, ignore_errors=True)
print("NODES", json.dumps(steps))
"""


def _child(code: str, args: list[str], threads: int, code_root: Path) -> dict[str, Any]:
    """Run ``python -c code args`` in a fresh process: wall s, CPU s, peak MiB, per-node times."""
    env = dict(os.environ, OMP_NUM_THREADS="1", ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads))
    env["PYTHONPATH"] = str(code_root) + os.pathsep + env.get("PYTHONPATH", "")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", code + _CHILD_TAIL, *args],
        env=env,
        capture_output=True,
        text=True,
        cwd=code_root,
    )
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    found = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in ("PEAK", "CPU", "NODES"):
            found[key] = json.loads(value)
    return {
        "wall": seconds,
        "cpu": found["CPU"],
        "peak_mib": found["PEAK"] / 1024,
        "nodes": found.get("NODES", {}),
    }


#: Workflow nodes grouped as in the issue's table (anything else is "other").
NODE_GROUPS = {
    "validate": "validate",
    "n4": "N4",
    "initial_brain_mask": "first-pass brain mask",
    "register": "registration",
    "atropos": "Atropos + partial volumes",
    "modulated_gm": "modulation",
    "features": "features + QC",
    "anat_reports_wf": "reportlets",
    "ds_anat_wf": "derivatives",
}


def group_nodes(nodes: dict[str, list[float]]) -> dict[str, list[float]]:
    """Sum per-node [wall, CPU] seconds into the groups of :data:`NODE_GROUPS`."""
    groups: dict[str, list[float]] = {}
    for fullname, (wall, cpu) in nodes.items():
        parts = fullname.split(".")
        label = next((NODE_GROUPS[p] for p in parts if p in NODE_GROUPS), "other")
        total = groups.setdefault(label, [0.0, 0.0])
        total[0] += wall
        total[1] += cpu
    return groups


def _find(folder: Path, pattern: str, exclude: str = "space-") -> Path:
    hits = sorted(p for p in folder.rglob(pattern) if exclude not in p.name)
    if not hits:
        raise FileNotFoundError(f"{folder}: no {pattern}")
    return hits[0]


def _template_gm_dice(gm_label: Any, transforms: list[str], scratch: Path) -> float:
    """Dice of a T1w-space GM label warped to the 2 mm template with the template's GM prior > 0.5."""
    import ants
    import nibabel as nib
    import numpy as np

    from bids_brainage.compute.anat_ops import dice
    from bids_brainage.templates import mni_t1w, mni_tissue_priors

    tpl_file = scratch / "tpl2.nii.gz"
    if not tpl_file.exists():
        nib.save(mni_t1w(2), tpl_file)
    warped = ants.apply_transforms(ants.image_read(str(tpl_file)), gm_label, transforms).numpy()
    return dice(warped > 0.5, np.asarray(mni_tissue_priors(2)["GM"].dataobj) > 0.5)


def _accuracy(mask_file: Path, dseg_file: Path, gm_label: int, maps: list[Path], transforms: list[str],
              scratch: Path, truth_gm: Path | None) -> dict[str, float]:  # fmt: skip
    """Tissue shares of TIV, GM Dice with the template and (simulated input) GM r with the truth."""
    import ants
    import nibabel as nib
    import numpy as np

    mask = np.asarray(nib.load(mask_file).dataobj) > 0
    volumes = [float(nib.load(m).get_fdata(dtype=np.float32)[mask].sum()) for m in maps]
    tiv = sum(volumes)
    result = {f"{name}/TIV": v / tiv for name, v in zip(("GM", "WM", "CSF"), volumes, strict=True)}
    vox_ml = float(abs(np.linalg.det(nib.load(mask_file).affine[:3, :3]))) / 1000.0
    result["TIV mL"] = tiv * vox_ml
    dseg = ants.image_read(str(dseg_file))
    gm = dseg.new_image_like((dseg.numpy() == gm_label).astype(np.float32))
    result["GM Dice template"] = _template_gm_dice(gm, transforms, scratch)
    if truth_gm is not None:
        truth = nib.load(truth_gm).get_fdata(dtype=np.float32)
        ours = nib.load(maps[0]).get_fdata(dtype=np.float32) * mask
        inside = (truth > 0) | (ours > 0)
        result["GM r truth"] = float(np.corrcoef(truth[inside], ours[inside])[0, 1])
    return result


def run_workflow(name: str, bids_root: Path, subject: str, t1w: Path, mode: str, scratch: Path,
                 args: argparse.Namespace, truth_gm: Path | None) -> dict[str, Any]:  # fmt: skip
    tag = f"{name}_{mode}".replace(" ", "_")
    out, work = scratch / f"out_{tag}", scratch / f"work_{tag}"
    child_args = [str(bids_root), subject, str(t1w), str(out), str(work), "1" if mode == "sloppy" else "0",
                  str(args.omp_nthreads)]  # fmt: skip
    row = _child(_WORKFLOW, child_args, args.omp_nthreads, args.code_root)
    anat = out / f"sub-{subject}" / "anat"
    xfm = [str(_find(anat, "*from-T1w_to-MNI152NLin2009aSym*_xfm.h5", exclude="@"))]
    row["accuracy"] = _accuracy(
        _find(anat, "*desc-brain_mask.nii.gz"), _find(anat, "*_dseg.nii.gz"), 1,
        [_find(anat, f"*label-{k}_probseg.nii.gz") for k in ("GM", "WM", "CSF")], xfm, scratch, truth_gm,
    )  # fmt: skip
    row["nodes"] = group_nodes(row["nodes"])
    return row


def run_plain(
    name: str, t1w: Path, scratch: Path, args: argparse.Namespace, truth_gm: Path | None
) -> dict[str, Any]:
    out = scratch / f"plain_{name}".replace(" ", "_")
    out.mkdir(parents=True, exist_ok=True)
    row = _child(_PLAIN, [str(t1w), str(out), str(args.omp_nthreads)], args.omp_nthreads, ROOT)
    fwd = json.loads((out / "xfm.json").read_text())["fwd"]
    row["accuracy"] = _accuracy(
        out / "mask.nii.gz", out / "dseg.nii.gz", 1, [out / f"prob_{k}.nii.gz" for k in ("GM", "WM", "CSF")],
        fwd, scratch, truth_gm,
    )  # fmt: skip
    return row


def _inputs(
    subjects: list[str], simulated: bool, scratch: Path, sim_dir: Path | None = None, dataset: Path = DATASET
) -> list[tuple[str, Path, str, Path, Path | None]]:
    """(name, bids_root, subject, T1w, true GM map or None) of the benchmark inputs.

    The simulated subject is written to ``sim_dir`` (reused when it is there already) or
    to the scratch directory.
    """
    found = []
    for subject in subjects:
        t1w = dataset / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
        if t1w.is_file():
            found.append((f"{dataset.name.split('_')[0]} sub-{subject}", dataset, subject, t1w, None))
    if simulated:
        from bids_brainage.simulate import simulate_dataset

        bids = sim_dir or scratch / "sim"
        if not (bids / "sub-001" / "anat" / "sub-001_T1w.nii.gz").is_file():
            bids = simulate_dataset(bids, 1, seed=11, resolution=1.0, n_volumes=10)
        truth = bids / "derivatives" / "simulation" / "sub-001" / "anat" / "sub-001_label-GM_probseg.nii.gz"
        found.append(
            ("simulated sub-001 (1 mm)", bids, "001", bids / "sub-001" / "anat" / "sub-001_T1w.nii.gz", truth)
        )
    return found


def _machine() -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return (
        f"{cpu_name()}, {os.cpu_count()} cores visible, load average at start {load}, "
        f"Python {platform.python_version()}"
    )


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


#: The plain recipe's steps under the names of the workflow's node groups.
PLAIN_GROUPS = {"n4": "N4", "atropos": "Atropos + partial volumes", "warp back": "priors warped back"}


def _table(results: dict[str, Any], before: dict[str, Any] | None) -> str:
    """Markdown: per input and mode, wall/CPU/peak and accuracy; per node medians; targets."""
    for data in (results, before or {"rows": []}):
        for row in data["rows"]:
            if row["run"] == "plain recipe":
                row["nodes"] = {PLAIN_GROUPS.get(k, k): v for k, v in row["nodes"].items()}
    lines = [
        "| input | run | wall s | CPU s | peak MiB | GM/TIV | WM/TIV | CSF/TIV | TIV mL | GM Dice template | GM r truth |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    sets = [("after", results)] + ([("before", before)] if before else [])
    for label, data in sets:
        for row in data["rows"]:
            acc = row["accuracy"]
            run = row["run"] if row["run"] == "plain recipe" else f"{label} {row['run']}"
            if label == "before" and row["run"] == "plain recipe":
                continue
            lines.append(
                f"| {row['input']} | {run} | {row['wall']:.0f} | {row['cpu']:.0f} | {row['peak_mib']:.0f}"
                f" | {acc['GM/TIV']:.3f} | {acc['WM/TIV']:.3f} | {acc['CSF/TIV']:.3f} | {acc['TIV mL']:.0f}"
                f" | {acc['GM Dice template']:.3f} | {acc.get('GM r truth', float('nan')):.3f} |"
            )
    lines += ["", "Median seconds per node over the real images (wall / CPU):", ""]
    columns = [
        (label, mode)
        for label, data in sets
        for mode in data["modes"]
        if any(r["run"] == mode and r["real"] for r in data["rows"])
    ] + [("after", "plain recipe")]
    groups: list[str] = []
    for _label, data in sets:
        for row in data["rows"]:
            for group in row["nodes"]:
                if group not in groups:
                    groups.append(group)
    header = " | ".join(f"{label} {mode}" if mode != "plain recipe" else mode for label, mode in columns)
    lines += [f"| node | {header} |", "|---|" + "---|" * len(columns)]
    for group in [*groups, "total"]:
        cells = []
        for label, mode in columns:
            data = results if label == "after" else before
            rows = [r for r in data["rows"] if r["run"] == mode and r["real"]]
            if group == "total":
                walls, cpus = [r["wall"] for r in rows], [r["cpu"] for r in rows]
            else:
                walls = [r["nodes"][group][0] for r in rows if group in r["nodes"]]
                cpus = [r["nodes"][group][1] for r in rows if group in r["nodes"]]
            cells.append(f"{_median(walls):.1f} / {_median(cpus):.1f}" if walls else "")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(results: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    """One line per target of issue 21: the measured value and whether it is met."""

    def rows(mode: str, data: dict[str, Any] = results, only_real: bool = True) -> list[dict[str, Any]]:
        return [r for r in data["rows"] if r["run"] == mode and (r["real"] or not only_real)]

    lines = []
    ratios = []
    for row in rows("default"):
        plain = [p for p in rows("plain recipe") if p["input"] == row["input"]]
        if plain:
            ratios.append(row["wall"] / plain[0]["wall"])
    if ratios:
        ratio = _median(ratios)
        cpu_ratio = _median(
            [
                r["cpu"] / p["cpu"]
                for r in rows("default")
                for p in rows("plain recipe")
                if p["input"] == r["input"]
            ]
        )
        lines.append(f"default ≤ {MAX_RATIO} × plain recipe (median of per-image wall ratios): {ratio:.2f}"
                     f" (CPU {cpu_ratio:.2f}) — {'met' if ratio <= MAX_RATIO else 'not met'}")  # fmt: skip
    sloppy = [r["wall"] for r in rows("sloppy")]
    if sloppy:
        value = _median(sloppy)
        lines.append(f"sloppy ≤ {MAX_SLOPPY_S:.0f} s: median {value:.0f} s (range {min(sloppy):.0f}-{max(sloppy):.0f},"
                     f" CPU median {_median([r['cpu'] for r in rows('sloppy')]):.0f} s)"
                     f" — {'met' if value <= MAX_SLOPPY_S else 'not met'}")  # fmt: skip
    peak = max((r["peak_mib"] for r in results["rows"] if r["run"] != "plain recipe"), default=float("nan"))
    lines.append(f"peak memory ≤ 3 GB: {peak:.0f} MiB — {'met' if peak <= MAX_PEAK_MIB else 'not met'}")
    for mode in results["modes"]:
        gm = [r["accuracy"]["GM/TIV"] for r in rows(mode)]
        if gm:
            ok = all(GM_TIV_RANGE[0] <= v <= GM_TIV_RANGE[1] for v in gm)
            lines.append(f"{mode}: GM/TIV {min(gm):.3f}-{max(gm):.3f} within {GM_TIV_RANGE[0]}-{GM_TIV_RANGE[1]}"
                         f" — {'met' if ok else 'not met'}")  # fmt: skip
        if before:
            for key in ("GM Dice template", "GM r truth"):
                then = {
                    r["input"]: r["accuracy"][key] for r in rows(mode, before, False) if key in r["accuracy"]
                }
                now = {
                    r["input"]: r["accuracy"][key] for r in rows(mode, only_real=False) if r["input"] in then
                }
                for name, value in now.items():
                    # A loss of less than 0.005 is within run-to-run change.
                    ok = value >= then[name] - 0.005
                    lines.append(f"{mode}, {name}: {key} {value:.4f} vs before {then[name]:.4f}"
                                 f" — {'met' if ok else 'not met'}")  # fmt: skip
    return lines


def _merge(files: list[Path]) -> dict[str, Any]:
    """One result set from several ``--json`` files (rows appended; the first file's header)."""
    sets = [json.loads(Path(f).read_text()) for f in files]
    merged = dict(sets[0], rows=[row for data in sets for row in data["rows"]])
    merged["modes"] = [m for m in ("default", "sloppy") if any(m in data["modes"] for data in sets)]
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", nargs="+", default=["default", "sloppy"], choices=["sloppy", "default"])
    parser.add_argument("--dataset", type=Path, default=DATASET, help="BIDS dataset of the real images")
    parser.add_argument("--subjects", nargs="*", default=["01", "02", "04", "06"])
    parser.add_argument("--omp-nthreads", type=int, default=2)
    parser.add_argument("--no-simulated", action="store_true", help="skip the simulated 1 mm subject")
    parser.add_argument("--no-plain", action="store_true", help="skip the plain recipe")
    parser.add_argument("--sim-dir", type=Path, help="simulated dataset to write or reuse")
    parser.add_argument("--code-root", type=Path, default=ROOT, help="checkout whose workflow runs")
    parser.add_argument("--json", type=Path, help="save the results here")
    parser.add_argument("--before", type=Path, nargs="+", help="results (--json) of the 'before' code")
    parser.add_argument(
        "--load", type=Path, nargs="+", help="build the tables from these results (--json); run nothing"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    args.code_root = args.code_root.resolve()
    args.dataset = args.dataset.resolve()
    results: dict[str, Any] = {
        "machine": _machine(),
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "modes": args.modes,
        "code_root": str(args.code_root),
        "rows": [],
    }
    if args.load:
        results = _merge(args.load)
        args.omp_nthreads = results.get("threads", args.omp_nthreads)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        inputs = (
            []
            if args.load
            else _inputs(args.subjects, not args.no_simulated, scratch, args.sim_dir, args.dataset)
        )
        for name, bids_root, subject, t1w, truth in inputs:
            runs = [*args.modes] + ([] if args.no_plain else ["plain recipe"])
            for run in runs:
                if run == "plain recipe":
                    row = run_plain(name, t1w, scratch, args, truth)
                else:
                    row = run_workflow(name, bids_root, subject, t1w, run, scratch, args, truth)
                row.update(input=name, run=run, real=truth is None)
                results["rows"].append(row)
                acc = " ".join(f"{k} {v:.3f}" for k, v in row["accuracy"].items())
                print(f"{name} | {run} | wall {row['wall']:.0f} s | CPU {row['cpu']:.0f} s | "
                      f"peak {row['peak_mib']:.0f} MiB | {acc} | {json.dumps(row['nodes'])}", flush=True)  # fmt: skip
    if not args.load:
        results["load_after"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        results["threads"] = args.omp_nthreads
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    before = _merge(args.before) if args.before else None
    table = _table(results, before)
    goals = targets(results, before)
    print(table)
    print("\n".join(goals))
    if not args.no_write:
        text = [
            "## Anatomical workflow speed and memory (`benchmarks/anatomical.py`)",
            "",
            f"Run {results['when']} on: {results['machine']} (load at the end {results['load_after']});"
            f" ITK threads {args.omp_nthreads}. Inputs: `ds002748_4` at native resolution",
            "(0.87 × 0.87 × 1 mm, 288 × 288 × 181) and one simulated subject at 1 mm.",
            "",
            table,
            "",
            "Targets (issue 21):",
            "",
            *[f"- {line}" for line in goals],
        ]
        replace_section(START, END, START + "\n" + "\n".join(text) + "\n" + END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
