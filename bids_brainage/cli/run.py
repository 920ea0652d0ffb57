"""Entry point: parse → validate → build config → run the participant or group level.

Exit codes: 0 every requested subject succeeded; 1 at least one subject (or the group
step) failed; 2 bad arguments or an unusable dataset.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
import uuid
from pathlib import Path

from bids_brainage import __version__
from bids_brainage.cli.logs import setup_logging
from bids_brainage.errors import BrainAgeError, UsageError

LOGGER = logging.getLogger("bids_brainage")


def _verbosity(argv: list[str]) -> int:
    count = 0
    for arg in argv:
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (never raises for user errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbosity = _verbosity(argv)
    try:
        return _dispatch(argv)
    except BrainAgeError as err:
        if verbosity:
            traceback.print_exc()
        print(f"bids_brainage: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("bids_brainage: interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        # Disk full, permission denied, ...: one line naming the file.
        if verbosity:
            traceback.print_exc()
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"bids_brainage: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1


def _dispatch(argv: list[str]) -> int:
    from bids_brainage.cli import parser as cli_parser

    if argv and argv[0] in cli_parser.SUBCOMMANDS:
        args = cli_parser.build_subcommand_parser().parse_args(argv)
        setup_logging(_verbosity(argv))
        return int(args.func(args))

    args = cli_parser.parse_args(argv)
    from bids_brainage.config import build_config

    config = build_config(args, argv)
    config.run_uuid = f"{time.strftime('%Y%m%d-%H%M%S')}_{uuid.uuid4().hex[:8]}"
    return run_bids_app(config)


def run_bids_app(config) -> int:
    """Run the participant or group level for a validated :class:`~bids_brainage.config.Config`."""
    from bids_brainage import derivatives

    _check_writable(config.output_dir)
    derivatives.init_derivatives(config.output_dir, config.bids_dir, config.derivatives)
    log_dir = config.output_dir / "logs"
    setup_logging(config.verbosity, log_dir / f"{config.analysis_level}_{config.run_uuid}.log")
    LOGGER.info("bids_brainage %s: %s level on %s", __version__, config.analysis_level, config.bids_dir)
    config.save(log_dir / f"config_{config.analysis_level}_{config.run_uuid}.json")
    if config.min_volumes is not None:
        LOGGER.warning("--min-volumes is deprecated: use --min-time SECONDS (volumes x TR)")
    if config.boilerplate_only:
        from bids_brainage.reports.citation import write_citation

        markdown, bib = write_citation(config)
        LOGGER.info("methods boilerplate written to %s and %s (--boilerplate-only)", markdown, bib)
        return 0
    config.work_dir.mkdir(parents=True, exist_ok=True)
    # ITK reads its thread count once per process: set it before any worker starts.
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(config.omp_nthreads))

    if config.analysis_level == "participant":
        from bids_brainage.cli.participant import run_participants

        return run_participants(config)
    from bids_brainage.cli.group import run_group

    return run_group(config)


def _check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write_test_{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UsageError(f"{output_dir}: output directory is not writable ({err.strerror or err})") from None


if __name__ == "__main__":
    raise SystemExit(main())
