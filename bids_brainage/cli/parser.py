"""Argument parsers: the BIDS-App command and the ``demo``/``simulate``/``model`` sub-commands.

The BIDS-App form (``bids_brainage BIDS_DIR OUTPUT_DIR {participant,group}``) and the
sub-commands cannot share one argparse parser cleanly (positional arguments first vs a
sub-command word first), so :func:`main` picks the parser from the first word.
"""

from __future__ import annotations

import argparse
import tomllib
from importlib import import_module
from pathlib import Path
from typing import Any

from bids_brainage import __version__
from bids_brainage.defaults import (
    BIAS_CORRECTIONS,
    CONNECTIVITY_KINDS,
    DEFAULT_ATLAS,
    DEFAULT_BAND_PASS,
    DEFAULT_BIAS_CORRECTION,
    DEFAULT_CONNECTIVITY,
    DEFAULT_DEVICE,
    DEFAULT_FD_THRESHOLD,
    DEFAULT_HARMONIZE,
    DEFAULT_MAX_SCRUBBED_FRACTION,
    DEFAULT_MIN_TIME,
    DEFAULT_N_FOLDS,
    DEFAULT_NUISANCE_REGRESSORS,
    DEFAULT_RANDOM_SEED,
    DEVICE_CHOICES,
    HARMONIZE_CHOICES,
    NUISANCE_STRATEGIES,
    connectivity_spelling,
)
from bids_brainage.errors import UsageError
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


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def _strategy(value: str) -> str:
    """``36p`` means ``36P``; ``NONE`` means ``none``."""
    return value.strip().lower() if value.strip().lower() == "none" else value.strip().upper()


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
    parser.add_argument(
        "--config-file",
        "--config_file",
        metavar="FILE",
        help="TOML file of options (keys are long option names, e.g. fd-spike-threshold = 0.3); "
        "options on the command line override it",
    )

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
        "--anat-only",
        "--anat_only",
        action="store_true",
        help="participant level: run only the anatomical workflow (no BOLD processing); group level: "
        "train or apply the model on the structural features only",
    )
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
        "--fd-spike-threshold",
        "--fd_spike_threshold",
        "--fd-threshold",
        dest="fd_threshold",
        type=_non_negative_float,
        default=DEFAULT_FD_THRESHOLD,
        metavar="MM",
        help="censor (scrub) volumes with framewise displacement above this (mm); --fd-threshold is an alias",
    )
    g.add_argument(
        "--max-scrubbed-fraction",
        type=_fraction,
        default=DEFAULT_MAX_SCRUBBED_FRACTION,
        help="exclude a run from the model when more than this fraction of volumes is scrubbed",
    )
    g.add_argument(
        "--min-time",
        "--min_time",
        type=_non_negative_float,
        default=DEFAULT_MIN_TIME,
        metavar="SECONDS",
        help="exclude runs with less data than this left after censoring (seconds)",
    )
    g.add_argument(
        "--min-volumes",
        type=_positive_int,
        metavar="N",
        help="deprecated: a minimum in volumes instead of --min-time (replaces it when given)",
    )
    g.add_argument(
        "--nuisance-regressors",
        "--nuisance_regressors",
        type=_strategy,
        choices=tuple(NUISANCE_STRATEGIES),
        default=DEFAULT_NUISANCE_REGRESSORS,
        help="confounds regressed out of the ROI signals: none; 24P = 24 motion parameters; 26P = 24P "
        "+ WM + CSF; 27P = 26P + global signal; 36P = 27P + derivatives and squares of WM, CSF "
        "and global signal",
    )
    g.add_argument(
        "--global-signal",
        action="store_true",
        help="regress the global signal too (the default 26P becomes 27P)",
    )
    g.add_argument(
        "--lower-bpf",
        "--lower_bpf",
        type=_non_negative_float,
        default=DEFAULT_BAND_PASS[0],
        metavar="HZ",
        help="high-pass edge of the band-pass filter (Hz; 0: no high-pass)",
    )
    g.add_argument(
        "--upper-bpf",
        "--upper_bpf",
        type=_non_negative_float,
        default=DEFAULT_BAND_PASS[1],
        metavar="HZ",
        help="low-pass edge of the band-pass filter (Hz; 0: no low-pass)",
    )
    g.add_argument(
        "--disable-bandpass-filter",
        "--disable_bandpass_filter",
        action="store_true",
        help="no temporal filter (detrending, confound regression and censoring only)",
    )
    g.add_argument(
        "--sphere-radius",
        "--sphere_radius",
        type=_positive_float,
        metavar="MM",
        help="radius (mm) of the spheres of coordinate atlases (Seitzman300, Power264, Dosenbach160); "
        "default: the published radius or 2.5 BOLD voxels, whichever is larger",
    )

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
        "--boilerplate-only",
        "--boilerplate_only",
        action="store_true",
        help="write the methods boilerplate (OUTPUT_DIR/logs/CITATION.md and .bib) and exit",
    )
    g.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (repeat for more: -vv)"
    )
    return parser


#: Options a config file cannot set (they are not settings of a run).
NOT_IN_CONFIG_FILE = ("help", "version", "config-file")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the BIDS-App arguments; options of ``--config-file`` become the defaults, so the
    command line overrides them.

    Raises
    ------
    UsageError
        The config file is unreadable, not TOML, or has an unknown key or a bad value.
    """
    parser = build_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config-file", "--config_file")
    known, _ = pre.parse_known_args(argv)
    if known.config_file:
        parser.set_defaults(**read_config_file(parser, known.config_file))
    return parser.parse_args(argv)


def read_config_file(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """The options of a TOML config file as ``{dest: value}``, checked like the command line.

    Keys are long option names with ``-`` or ``_`` (``fd-spike-threshold = 0.3``,
    ``participant_label = ["01", "02"]``, ``sloppy = true``); tables only group keys (their
    names are ignored).
    """
    file = Path(path).expanduser()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{file}: config file does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{file}: config file cannot be read ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise UsageError(f"{file}: not a valid TOML file ({err})") from None
    actions = {
        option[2:].replace("_", "-"): action
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--")
    }
    values: dict[str, Any] = {}
    for key, value in _flatten(data):
        name = key.replace("_", "-")
        if name not in actions or name in NOT_IN_CONFIG_FILE:
            raise UsageError(f"{file}: unknown option {key!r} (keys are long option names, e.g. min-time)")
        action = actions[name]
        try:
            values[action.dest] = _config_value(action, value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as err:
            raise UsageError(f"{file}: invalid value for {key!r}: {err}") from None
    return values


def _flatten(data: dict[str, Any]) -> list[tuple[str, Any]]:
    items = []
    for key, value in data.items():
        items += _flatten(value) if isinstance(value, dict) else [(key, value)]
    return items


def _config_value(action: argparse.Action, value: Any) -> Any:
    """A config-file value converted and checked as the command line would."""
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        return value
    if isinstance(action, argparse._CountAction):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise TypeError(f"expected a count (0, 1, 2, ...), got {value!r}")
        return value
    if action.nargs in ("+", "*"):
        items = value if isinstance(value, list) else [value]
        if not items:
            raise ValueError("expected at least one value")
        return [_scalar(action, item) for item in items]
    return _scalar(action, value)


def _scalar(action: argparse.Action, value: Any) -> Any:
    if isinstance(value, bool | list | dict):
        raise TypeError(f"expected a single number or string, got {value!r}")
    converted = action.type(str(value)) if action.type else str(value)
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"{converted!r} is not one of {', '.join(map(str, action.choices))}")
    return converted


def build_subcommand_parser() -> argparse.ArgumentParser:
    """Parser for ``demo``, ``simulate`` and ``model``; each module adds its own sub-parser."""
    parser = argparse.ArgumentParser(prog="bids_brainage")
    parser.add_argument("--version", action="version", version=f"bids_brainage {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        import_module(f"bids_brainage.cli.{name}_cmd").add_parser(subparsers)
    return parser
