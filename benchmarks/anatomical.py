"""Anatomical workflow: wall time and peak memory per subject, default and sloppy modes.

Each measurement runs in a fresh child process (fresh work dir, nipype Linear plugin), so
its peak resident memory is the child's ``ru_maxrss``. Next to it, in the same run and on
the same T1w, a plain ``ants.registration(type_of_transform="SyN")`` to the MNI template
plus ``ants.atropos`` (3 classes, k-means, inside ``ants.get_mask``) is measured as a
reference. Results go to ``docs/benchmarks.md`` between ``<!-- anatomical:start -->`` and
``<!-- anatomical:end -->`` (only that section is replaced).

Usage::

    python benchmarks/anatomical.py [--modes sloppy default] [--omp-nthreads 2] [--no-simulated]
                                    [--max-subjects N] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from doc_section import cpu_name, replace_section

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- anatomical:start -->", "<!-- anatomical:end -->"

_WORKFLOW = """
import sys
from bids_brainage import derivatives
from bids_brainage.workflows.anatomical import init_anat_wf
bids_root, subject, t1w, out, work, sloppy, threads = sys.argv[1:8]
derivatives.init_derivatives(out, bids_root)
wf = init_anat_wf(output_dir=out, subject=subject, session=None, bids_root=bids_root,
                  sloppy=sloppy == "1", omp_nthreads=int(threads))
wf.base_dir = work
wf.config["execution"]["hash_method"] = "content"
wf.inputs.inputnode.t1w = t1w
wf.run(plugin="Linear")
"""

_PLAIN = """
import os, sys, tempfile
import ants, nibabel as nib
from bids_brainage.templates import mni_t1w
t1w, resolution, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = threads
tmp = tempfile.mkdtemp()
nib.save(mni_t1w(resolution), tmp + "/tpl.nii.gz")
fixed, moving = ants.image_read(tmp + "/tpl.nii.gz"), ants.image_read(t1w)
ants.registration(fixed, moving, type_of_transform="SyN")
ants.atropos(a=moving, x=ants.get_mask(moving), i="Kmeans[3]", m="[0.2,1x1x1]", c="[5,0]")
"""


def _child(code: str, args: list[str], threads: int) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MiB) and CPU seconds of ``python -c code args`` in a fresh process.

    CPU time (user + system, all threads of the child) is less sensitive than wall time to
    other jobs on a shared machine.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1", ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=str(threads))
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    script = (
        code
        + "\nimport resource, json\n"
        + "usage = resource.getrusage(resource.RUSAGE_SELF)\n"
        + "print('PEAK', json.dumps(usage.ru_maxrss))\n"
        + "print('CPU', json.dumps(usage.ru_utime + usage.ru_stime))\n"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    peak = [line for line in proc.stdout.splitlines() if line.startswith("PEAK ")]
    peak_kib = (
        json.loads(peak[-1].split()[1]) if peak else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    )
    cpu = [float(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("CPU ")]
    return seconds, peak_kib / 1024, cpu[-1] if cpu else float("nan")


def _subjects(simulated: bool, scratch: Path) -> list[tuple[str, Path, str, Path]]:
    """(name, bids_root, subject, T1w) of the benchmark inputs."""
    subjects = []
    for dataset, subject in (("ixi10", "IXI012"), ("pumi", "001")):
        t1w = REAL / dataset / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
        if t1w.is_file():
            subjects.append((f"{dataset} sub-{subject} (2 mm)", REAL / dataset, subject, t1w))
    if simulated:
        from bids_brainage.simulate import simulate_dataset

        bids = simulate_dataset(scratch / "sim", 1, seed=11, resolution=1.0, n_volumes=10)
        subjects.append(
            ("simulated sub-001 (1 mm)", bids, "001", bids / "sub-001" / "anat" / "sub-001_T1w.nii.gz")
        )
    return subjects


def _machine() -> str:
    cpu = cpu_name()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{cpu}, {os.cpu_count()} cores visible, load average at start {load}, Python {platform.python_version()}"


def _write_section(text: str) -> None:
    replace_section(START, END, f"{START}\n{text.rstrip()}\n{END}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", nargs="+", default=["sloppy", "default"], choices=["sloppy", "default"])
    parser.add_argument("--omp-nthreads", type=int, default=2)
    parser.add_argument("--no-simulated", action="store_true", help="skip the simulated 1 mm subject")
    parser.add_argument("--max-subjects", type=int, default=None, help="only the first N inputs")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    machine = _machine()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = []
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        for name, bids_root, subject, t1w in _subjects(not args.no_simulated, scratch)[: args.max_subjects]:
            for mode in args.modes:
                sloppy = mode == "sloppy"
                tag = f"{subject}_{mode}"
                wf_args = [str(bids_root), subject, str(t1w), str(scratch / f"out_{tag}"),
                           str(scratch / f"work_{tag}"), "1" if sloppy else "0", str(args.omp_nthreads)]  # fmt: skip
                seconds, peak, cpu = _child(_WORKFLOW, wf_args, args.omp_nthreads)
                rerun, _, _ = _child(_WORKFLOW, wf_args, args.omp_nthreads)
                plain_s, plain_peak, plain_cpu = _child(_PLAIN, [str(t1w), "2" if sloppy else "1", str(args.omp_nthreads)],
                                             args.omp_nthreads)  # fmt: skip
                row = (name, mode, seconds, cpu, peak, rerun, plain_s, plain_cpu, plain_peak)
                print(" | ".join(str(v) if isinstance(v, str) else f"{v:.1f}" for v in row), flush=True)
                rows.append(row)
    lines = [
        "## Anatomical workflow speed and memory (`benchmarks/anatomical.py`)",
        "",
        f"Run {when} on: {machine}; ITK threads {args.omp_nthreads}. The machine is shared, so",
        "times include contention (see the load average). Targets: default ≤ 240 s, sloppy ≤ 30 s per",
        'subject, peak memory ≤ 4 GB. Reference: plain `ants.registration(type_of_transform="SyN")` of',
        "the whole T1w to the MNI template (1 mm for default, 2 mm for sloppy) + `ants.atropos`",
        "(k-means, 3 classes), measured in the same run on the same image.",
        "",
        "| subject | mode | workflow s | workflow CPU s | peak MiB | rerun s | plain SyN + Atropos s"
        " | plain CPU s | plain peak MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, mode, seconds, cpu, peak, rerun, plain_s, plain_cpu, plain_peak in rows:
        lines.append(
            f"| {name} | {mode} | {seconds:.0f} | {cpu:.0f} | {peak:.0f} | {rerun:.1f} | {plain_s:.0f}"
            f" | {plain_cpu:.0f} | {plain_peak:.0f} |"
        )
    lines.append("")
    lines.append("Workflow times include process start-up, N4, brain extraction, registration, Atropos,")
    lines.append("modulation, features, reportlets and writing the derivatives; the rerun uses the same")
    lines.append("work directory (nipype cache).")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        _write_section(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
