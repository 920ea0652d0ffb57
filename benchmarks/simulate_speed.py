"""Generation time of ``bids_brainage simulate``; writes its section of docs/benchmarks.md.

Measures the reference case of the issue (20 subjects, 2 mm T1w, 100-volume 3 mm BOLD, 2
worker processes) and the feature-level mode (1000 subjects), and records the machine,
date and load so numbers from a shared machine can be judged.

Usage: ``python benchmarks/simulate_speed.py [--n-subjects 20] [--nprocs 2] [--no-write]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

from doc_section import cpu_name, replace_section

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
DEFAULT_OVERSAMPLE = 2
START, END = "<!-- simulate:start -->", "<!-- simulate:end -->"


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _size_mb(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def measure(n_subjects: int, nprocs: int, oversample: int = 2) -> dict[str, float]:
    """Run both modes and return timings."""
    from bids_brainage.simulate import simulate_dataset, simulate_features

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        out = simulate_dataset(
            Path(tmp) / "bids",
            n_subjects=n_subjects,
            seed=0,
            resolution=2.0,
            n_volumes=100,
            n_jobs=nprocs,
            bold_oversample=oversample,
        )
        image_wall, image_cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        size = _size_mb(out)
    wall = time.perf_counter()
    simulate_features(1000, seed=0)
    features_wall = time.perf_counter() - wall
    return {
        "image_wall": image_wall,
        "image_cpu": image_cpu,
        "size_mb": size,
        "features_wall": features_wall,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def section(results: dict[int, dict[str, float]], n_subjects: int, nprocs: int) -> str:
    """Markdown section for docs/benchmarks.md (one image row per oversampling factor)."""
    first = next(iter(results.values()))
    rows = "\n".join(
        f"| {n_subjects} subjects, T1w 2 mm, BOLD 3 mm x 100 volumes, {nprocs} processes, "
        f"`--bold-oversample {k}` | {r['image_wall']:.1f} s | {r['image_cpu']:.1f} s | "
        f"{r['load_before']:.1f} / {r['load_after']:.1f} | {r['size_mb']:.0f} MB |"
        for k, r in results.items()
    )
    default = results.get(DEFAULT_OVERSAMPLE)
    if default is None:
        verdict = f"not measured with the default `--bold-oversample {DEFAULT_OVERSAMPLE}`"
    else:
        verdict = "**met**" if default["image_wall"] <= 60 else "**not met**"
        verdict += f" with the default `--bold-oversample {DEFAULT_OVERSAMPLE}`"
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""{START}
## Simulator speed (`bids_brainage simulate`)

Measured {date} on {os.cpu_count()} CPU(s) ({cpu_name()}), Python {platform.python_version()},
with `python benchmarks/simulate_speed.py --n-subjects {n_subjects} --nprocs {nprocs}`.
The machine was shared: the load column gives the 1-minute load average before and after
each run (a value above the CPU count means other jobs were competing, and the wall time
is inflated accordingly; CPU time, summed over all processes, is the better guide).

| case | wall time | CPU time | load before / after | output |
|---|---|---|---|---|
{rows}
| feature-level mode, 1000 subjects, 40 ROIs (780 connectivity features) | {first["features_wall"]:.1f} s | - | - | - |

Target of issue 3: at most 60 s wall for the image case on 2 cores: {verdict} in this
run. `--bold-oversample 2` is the default (sharper moved volumes, less biased motion
estimates, see docs/simulation.md).
{END}"""


def write_section(text: str) -> None:
    """Replace (or append) the simulator section of docs/benchmarks.md, leaving the rest alone."""
    replace_section(START, END, text)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-subjects", type=int, default=20)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument(
        "--bold-oversample", type=int, nargs="+", default=[2, 1], help="factors to measure (simulate option)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    results = {k: measure(args.n_subjects, args.nprocs, k) for k in args.bold_oversample}
    text = section(results, args.n_subjects, args.nprocs)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
