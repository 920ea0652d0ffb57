"""Argument parsers: the BIDS-App command and the ``demo``/``simulate``/``model`` sub-commands.

The BIDS-App form (``bids_brainage BIDS_DIR OUTPUT_DIR {participant,group}``) and the
sub-commands cannot share one argparse parser cleanly (positional arguments first vs a
sub-command word first), so :func:`main` picks the parser from the first word.
"""

from __future__ import annotations

import argparse
from importlib import import_module

from bids_brainage import __version__
from bids_brainage.defaults import (
    BIAS_CORRECTIONS,
    CONNECTIVITY_KINDS,
    DEFAULT_ATLAS,
    DEFAULT_BIAS_CORRECTION,
    DEFAULT_CONNECTIVITY,
    DEFAULT_DEVICE,
    DEFAULT_FD_THRESHOLD,
    DEFAULT_HARMONIZE,
    DEFAULT_MAX_SCRUBBED_FRACTION,
    DEFAULT_MIN_VOLUMES,
    DEFAULT_N_FOLDS,
    DEFAULT_RANDOM_SEED,
    DEVICE_CHOICES,
    HARMONIZE_CHOICES,
    connectivity_spelling,
)
from bids_brainage.templates import ALL_ATLASES

SUBCOMMANDS = ("demo", "simulate", "model")


class HelpFormatter(argparse.HelpFormatter):
    """Add ``(default: X)`` to an option's help once, and only when it says something: not
    when the help already states its default, nor for flags and unset options."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default" in text or "%(default)" in text:
            return text
        if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        if isinstance(action, argparse._CountAction | argparse._StoreTrueAction):
            return text
        return f"{text} (default: %(default)s)"


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return number


def _non_negative_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return number


def _fraction(value: str) -> float:
    number = float(value)
    if not 0 <= number <= 1:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The BIDS-App parser (``bids_dir output_dir {participant,group}`` and options)."""
    parser = argparse.ArgumentParser(
        prog="bids_brainage",
        description=(
            "Brain age from T1w and resting-state fMRI with a sex-aware adversarial VAE. "
            "Other commands: 'bids_brainage demo OUT', 'bids_brainage simulate OUT ...', "
            "'bids_brainage model {fit,predict,evaluate} ...' (each has its own --help)."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("bids_dir", help="root folder of a BIDS dataset (sub-XXXXX folders at the top level)")
    parser.add_argument("output_dir", help="folder for the outputs (a BIDS derivative dataset)")
    parser.add_argument(
        "analysis_level",
        choices=["participant", "group"],
        help="participant: preprocess and extract features per subject; group: train/predict brain age",
    )
    parser.add_argument("--version", action="version", version=f"bids_brainage {__version__}")

    g = parser.add_argument_group("BIDS selection")
    g.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        metavar="LABEL",
        help="subjects to process, with or without 'sub-' (default: all)",
    )
    g.add_argument(
        "--session-label",
        "--session_label",
        nargs="+",
        metavar="LABEL",
        help="sessions to process (default: all)",
    )
    g.add_argument("--task-id", "--task_id", default="rest", help="task label of the resting-state BOLD runs")
    g.add_argument(
        "--bids-filter-file",
        "--bids_filter_file",
        metavar="FILE",
        help="JSON with pybids filters for the 't1w' and 'bold' queries (fMRIPrep format)",
    )
    g.add_argument(
        "--skip-bids-validation",
        "--skip_bids_validation",
        action="store_true",
        help="do not run bids-validator-deno on the input dataset",
    )
    g.add_argument(
        "--derivatives",
        nargs="+",
        metavar="NAME=PATH",
        help="reuse existing derivatives, e.g. fmriprep=/path/to/fmriprep (skips motion correction and coregistration)",
    )
    g.add_argument(
        "--sex-map",
        nargs="+",
        metavar="CODE=M|F",
        help="extra codes for the sex column of participants.tsv, e.g. 0=F 1=M",
    )

    g = parser.add_argument_group("Performance")
    g.add_argument(
        "--nprocs",
        "--n_cpus",
        "--n-cpus",
        type=_positive_int,
        help="maximum number of processes (default: all CPUs); subjects run side by side when "
        "there is room, each with max(2, --omp-nthreads) of them",
    )
    g.add_argument(
        "--omp-nthreads",
        "--omp_nthreads",
        type=_positive_int,
        help="maximum threads per process (ITK, BLAS, torch)",
    )
    g.add_argument(
        "--mem", "--mem_mb", "--mem-mb", metavar="SIZE", help="memory limit, e.g. 8G, 8000M or 8000 (MB)"
    )
    g.add_argument(
        "--use-plugin",
        "--use_plugin",
        metavar="FILE",
        help="nipype plugin settings (YAML), e.g. workflows/slurm.yml",
    )
    g.add_argument(
        "-w",
        "--work-dir",
        "--work_dir",
        metavar="DIR",
        help="folder for intermediate results (default: ./work)",
    )
    g.add_argument(
        "--stop-on-first-crash",
        action="store_true",
        help="stop at the first failing subject instead of going on",
    )
    g.add_argument(
        "--sloppy", action="store_true", help="2 mm template and fewer iterations: for tests and demos only"
    )
    g.add_argument("--device", choices=DEVICE_CHOICES, default=DEFAULT_DEVICE, help="where the model runs")
    g.add_argument(
        "--random-seed",
        "--random_seed",
        type=int,
        default=DEFAULT_RANDOM_SEED,
        help="seed for every random step",
    )

    g = parser.add_argument_group("Anatomical and functional processing")
    g.add_argument(
        "--atlas",
        default=DEFAULT_ATLAS,
        help=f"functional parcellation: one of {', '.join(ALL_ATLASES)}, or a NIfTI label image (+ .tsv of labels)",
    )
    g.add_argument(
        "--thickness", action="store_true", help="add regional cortical thickness (ants.kelly_kapowski)"
    )
    g.add_argument(
        "--connectivity",
        type=connectivity_spelling,
        choices=tuple(CONNECTIVITY_KINDS),
        default=DEFAULT_CONNECTIVITY,
        help="connectivity measure of each BOLD run, Fisher z-transformed (nilearn's tangent space "
        "needs a group reference and is not offered per subject)",
    )
    g.add_argument(
        "--dummy-scans",
        type=_non_negative_int,
        metavar="N",
        help="initial volumes to drop (default: from metadata, else 0)",
    )
    g.add_argument(
        "--fd-threshold",
        type=_non_negative_float,
        default=DEFAULT_FD_THRESHOLD,
        help="scrub volumes with framewise displacement above (mm)",
    )
    g.add_argument(
        "--max-scrubbed-fraction",
        type=_fraction,
        default=DEFAULT_MAX_SCRUBBED_FRACTION,
        help="exclude a run from the model when more than this fraction of volumes is scrubbed",
    )
    g.add_argument(
        "--min-volumes",
        type=_positive_int,
        default=DEFAULT_MIN_VOLUMES,
        help="exclude runs with fewer usable volumes",
    )
    g.add_argument("--global-signal", action="store_true", help="regress the global signal too")

    g = parser.add_argument_group("Brain-age model")
    g.add_argument("--model", metavar="DIR", help="trained model bundle: predict instead of training")
    g.add_argument(
        "--n-folds",
        type=_positive_int,
        default=DEFAULT_N_FOLDS,
        help="cross-validation folds at the group level",
    )
    g.add_argument(
        "--harmonize",
        choices=HARMONIZE_CHOICES,
        default=DEFAULT_HARMONIZE,
        help="site harmonisation of the features before training: combat = ComBat (neuroHarmonize), "
        "age and sex protected, fitted on training folds only and stored in the model",
    )
    g.add_argument(
        "--bias-correction",
        choices=BIAS_CORRECTIONS,
        default=DEFAULT_BIAS_CORRECTION,
        help="age-bias correction of the brain-age gap: linear (Beheshti 2019) or quadratic (Smith 2019)",
    )

    g = parser.add_argument_group("Reports and logging")
    g.add_argument(
        "--reports-only", action="store_true", help="only rebuild the HTML reports from existing outputs"
    )
    g.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (repeat for more: -vv)"
    )
    return parser


def build_subcommand_parser() -> argparse.ArgumentParser:
    """Parser for ``demo``, ``simulate`` and ``model``; each module adds its own sub-parser."""
    parser = argparse.ArgumentParser(prog="bids_brainage")
    parser.add_argument("--version", action="version", version=f"bids_brainage {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        import_module(f"bids_brainage.cli.{name}_cmd").add_parser(subparsers)
    return parser
