"""Run the installed ``bids_brainage`` console script, as users do (imported by name, like
``pipeline_cohort``: a module name no other test folder uses)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def console_script() -> str:
    """The installed ``bids_brainage`` command of this environment (what users run)."""
    path = Path(sys.executable).with_name("bids_brainage")
    if not path.exists():
        raise FileNotFoundError(f"{path}: the console script is not installed (pip install -e .)")
    return str(path)


def run_app(*args: str | os.PathLike, timeout: float = 1800, **kwargs) -> subprocess.CompletedProcess:
    """Run ``bids_brainage ARGS`` as a subprocess of the installed console script; the result
    carries ``returncode``, ``stdout`` and ``stderr`` (text)."""
    return subprocess.run(
        [console_script(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )
