"""``bids_brainage demo OUT``: simulate a small cohort, run participant (sloppy) and group levels."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from bids_brainage.defaults import DEFAULT_RANDOM_SEED

LOGGER = logging.getLogger("bids_brainage.demo")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="simulate a small cohort and run the whole app on it (about 10 minutes on 2 cores)",
        description="Simulate a small BIDS cohort, run the participant level (--sloppy) and the "
        "group level on it, and print where the reports are.",
    )
    parser.add_argument("output_dir", help="folder for the demo (simulated BIDS, outputs and work dir)")
    parser.add_argument("--n-subjects", type=int, default=8, help="simulated subjects (at least 6)")
    parser.add_argument("--resolution", type=float, default=3.0, help="simulated T1w voxel size (mm)")
    parser.add_argument("--n-volumes", type=int, default=60, help="simulated BOLD volumes")
    parser.add_argument("--nprocs", type=int, default=None, help="processes (default: all CPUs)")
    parser.add_argument(
        "--random-seed", type=int, default=DEFAULT_RANDOM_SEED, help="seed of the simulation and the model"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; return the exit code."""
    from bids_brainage.cli.run import main
    from bids_brainage.errors import UsageError
    from bids_brainage.simulate import simulate_dataset

    if args.n_subjects < 6:
        raise UsageError(
            f"--n-subjects must be at least 6 for the demo's cross-validation, got {args.n_subjects}"
        )

    root = Path(args.output_dir).expanduser().resolve()
    bids_dir, out_dir, work_dir = root / "bids", root / "derivatives", root / "work"
    start = time.monotonic()
    if not (bids_dir / "dataset_description.json").exists():
        LOGGER.info("demo: simulating %d subjects into %s", args.n_subjects, bids_dir)
        simulate_dataset(
            bids_dir,
            n_subjects=args.n_subjects,
            seed=args.random_seed,
            resolution=args.resolution,
            n_volumes=args.n_volumes,
        )
    common = [str(bids_dir), str(out_dir)]
    # Half of the simulated run must survive scrubbing (30 of the default 60 volumes): a fixed
    # minimum of 30 excluded a short run (--n-volumes 40) after 11 scrubbed volumes.
    from bids_brainage.simulate.config import SimulationConfig

    min_time = min(30, args.n_volumes // 2) * SimulationConfig.tr
    options = [
        "-w",
        str(work_dir),
        "--sloppy",
        "--random-seed",
        str(args.random_seed),
        "--min-time",
        f"{min_time:g}",
    ]
    if args.nprocs:
        options += ["--nprocs", str(args.nprocs)]
    options += ["-v"] * args.verbose
    code = main([*common, "participant", *options])
    if code not in (0, 1):
        return code
    # Four folds keep at least six subjects in every training split of the default cohort.
    group_code = main([*common, "group", "--n-folds", str(min(4, args.n_subjects // 2)), *options])
    minutes = (time.monotonic() - start) / 60
    print(f"\nDemo finished in {minutes:.1f} min.")
    print(f"  simulated BIDS dataset: {bids_dir}")
    print(f"  outputs:                {out_dir}")
    print(f"  group report:           {out_dir / 'group_report.html'}")
    for report in sorted(out_dir.glob("sub-*.html"))[:3]:
        print(f"  subject report:         {report}")
    return max(code, group_code)
