"""Logging of a run: the console and the run's log file, in the main process and in workers."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def setup_logging(verbosity: int, log_file: Path | None = None) -> None:
    """Console logging (INFO by default, DEBUG with ``-v``), plus a log file when given."""
    level = logging.DEBUG if verbosity >= 1 else logging.INFO
    root = logging.getLogger("bids_brainage")
    root.setLevel(level)
    root.propagate = False
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s", "%H:%M:%S"))
    root.addHandler(console)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
        root.addHandler(handler)
