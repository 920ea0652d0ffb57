"""``bids_brainage simulate OUT --n-subjects N ...``: write a synthetic BIDS cohort with ground truth."""

from __future__ import annotations

import argparse
import logging
import os
import time

from bids_brainage.cli.parser import HelpFormatter

LOGGER = logging.getLogger("bids_brainage.simulate")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "simulate",
        help="write a synthetic BIDS cohort (T1w + rest BOLD) with known ground truth",
        description="Simulate a BIDS dataset of T1w and resting-state BOLD images from the MNI152 template "
        "with a known generative model of ageing, sex, anatomy, motion and noise. The ground truth is "
        "written to OUT/derivatives/simulation. With --features-only, write feature tables instead of images.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "output_dir", metavar="OUT", help="folder of the new BIDS dataset (or feature tables)"
    )
    parser.add_argument("--n-subjects", type=int, required=True, help="number of participants")
    parser.add_argument("--seed", "--random-seed", dest="seed", type=int, default=0, help="random seed")
    parser.add_argument("--resolution", type=float, default=1.0, help="T1w voxel size (mm)")
    parser.add_argument("--bold-resolution", type=float, default=3.0, help="BOLD voxel size (mm)")
    parser.add_argument(
        "--bold-oversample",
        type=int,
        default=2,
        help="build the motion-free BOLD on a grid this many times finer before applying motion "
        "(2: unbiased motion truth; 1: about 40%% faster)",
    )
    parser.add_argument("--n-sites", type=int, default=1, help="number of acquisition sites")
    parser.add_argument("--n-volumes", type=int, default=150, help="BOLD volumes per run")
    parser.add_argument("--tr", type=float, default=2.0, help="BOLD repetition time (s)")
    parser.add_argument(
        "--sessions",
        nargs="+",
        default=None,
        metavar="N|LABEL",
        help="number of sessions (e.g. 2) or their labels (e.g. baseline followup); default: one, no ses- folders",
    )
    parser.add_argument("--session-interval", type=float, default=2.0, help="mean years between sessions")
    parser.add_argument(
        "--age-range",
        type=float,
        nargs=2,
        default=(8.0, 85.0),
        metavar=("MIN", "MAX"),
        help="age range (years)",
    )
    parser.add_argument("--gap-sd", type=float, default=3.0, help="SD of the hidden brain-age gap (years)")
    parser.add_argument(
        "--motion-scale", type=float, default=1.0, help="multiplier of head motion (0 = none)"
    )
    parser.add_argument(
        "--noise-scale", type=float, default=1.0, help="multiplier of all noise (0 = noise-free)"
    )
    parser.add_argument(
        "--features-only", action="store_true", help="write feature tables (no images); fast, for model tests"
    )
    parser.add_argument(
        "--n-rois", type=int, default=40, help="ROIs of the functional features (--features-only)"
    )
    parser.add_argument("--nprocs", type=int, default=None, help="worker processes (default: all CPUs)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier simulation in OUT")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the simulation described by ``args``; return the exit code (errors raise UsageError)."""
    start = time.monotonic()
    if args.features_only:
        from bids_brainage.simulate.features import write_feature_tables

        out = write_feature_tables(
            args.output_dir,
            n_subjects=args.n_subjects,
            seed=args.seed,
            n_sites=args.n_sites,
            sessions=args.sessions,
            session_interval=args.session_interval,
            age_range=tuple(args.age_range),
            gap_sd=args.gap_sd,
            n_volumes=args.n_volumes,
            tr=args.tr,
            noise_scale=args.noise_scale,
            n_rois=args.n_rois,
            overwrite=args.overwrite,
        )
    else:
        from bids_brainage.simulate import simulate_dataset

        out = simulate_dataset(
            args.output_dir,
            n_subjects=args.n_subjects,
            seed=args.seed,
            resolution=args.resolution,
            bold_resolution=args.bold_resolution,
            n_sites=args.n_sites,
            n_volumes=args.n_volumes,
            tr=args.tr,
            sessions=args.sessions,
            session_interval=args.session_interval,
            age_range=tuple(args.age_range),
            gap_sd=args.gap_sd,
            motion_scale=args.motion_scale,
            noise_scale=args.noise_scale,
            n_jobs=args.nprocs or os.cpu_count() or 1,
            overwrite=args.overwrite,
            bold_oversample=args.bold_oversample,
        )
    LOGGER.info("simulated %d subjects in %.1f s", args.n_subjects, time.monotonic() - start)
    print(f"Simulated {args.n_subjects} subjects into {out} in {time.monotonic() - start:.1f} s")
    return 0
