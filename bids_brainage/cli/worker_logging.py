"""Imported by the forkserver before it forks nipype's workers: nipype's log levels there.

Workers start from a fresh server process (see execution.py), so they do not share the log
levels this run set in the main process, and nipype would log every node at INFO. The main
process puts the level in ``BIDS_BRAINAGE_NIPYPE_LOG_LEVEL`` before the server starts; the
server imports nipype once, sets the level, and every worker inherits it.
"""

from __future__ import annotations

import os

LEVEL_VARIABLE = "BIDS_BRAINAGE_NIPYPE_LOG_LEVEL"


def apply_level(level: str) -> None:
    """Set nipype's workflow, interface and utils loggers to ``level`` in this process."""
    from nipype import config, logging

    config.update_config(
        {"logging": {"workflow_level": level, "interface_level": level, "utils_level": level}}
    )
    logging.update_logging(config)


if os.environ.get(LEVEL_VARIABLE):
    apply_level(os.environ[LEVEL_VARIABLE])
