"""Logging of a run: the console and the run's log file, in the main process and in workers."""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path
from typing import Any


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


#: What each workflow node does, in words (by node name); other nodes are logged by name.
STAGES = {
    "validate": "T1w check",
    "n4": "bias-field correction (N4)",
    "initial_brain_mask": "initial brain mask",
    "register": "registration to the template",
    "atropos": "tissue segmentation (Atropos)",
    "modulated_gm": "modulated grey matter",
    "prepare_bold": "preparation (dummy scans, reference)",
    "fmriprep_bold": "reading fMRIPrep's outputs",
    "hmc": "head-motion correction",
    "coreg": "BOLD-to-T1w coregistration",
    "confounds": "confounds",
    "atlas_to_bold": "atlas onto the BOLD grid",
    "denoise": "denoising",
    "connectivity": "connectivity matrix",
    "run_qc": "run QC",
    "features": "features",
    "reportlets": "report figures",
}
#: Nodes that only pass data on or copy outputs into OUTPUT_DIR: no line of their own.
PLUMBING = re.compile(r"^(inputnode|outputnode|raw_sources|merge_.*|ds_.*)$")
_BRANCH = re.compile(r"^(anat_wf|func_run(\d+)_wf)$")


class StageLog:
    """A nipype ``status_callback``: one line per finished stage of a subject's workflow.

    Passed to the MultiProc and Linear plugins (and any plugin that calls
    ``status_callback``), it runs in the process that schedules the workflow and logs, for
    each node that computes something, ``sub-01: anatomical registration to the template done
    in 33 s``, and for each BOLD run that the run QC excludes, one warning with the reason.
    A failure in here is logged at DEBUG and never stops the workflow.

    Parameters
    ----------
    label : str
        ``sub-<label>[_ses-<label>]``, the start of every line.
    bold_runs : list of str
        The BOLD files in the order of the ``func_run<N>_wf`` workflows.
    logger : logging.Logger, optional
        Where the lines go (default ``bids_brainage.participant``).
    """

    def __init__(self, label: str, bold_runs: list[str] | None = None, logger: logging.Logger | None = None):
        self.label = label
        self.bold_runs = [Path(b).name for b in bold_runs or []]
        self.logger = logger or logging.getLogger("bids_brainage.participant")
        self._started: dict[str, float] = {}

    def __call__(self, node: Any, status: str) -> None:
        try:
            self._update(node, status)
        except Exception as err:  # noqa: BLE001 - logging must never fail a workflow
            self.logger.debug("%s: stage log of %s failed (%s)", self.label, getattr(node, "name", node), err)

    def describe(self, fullname: str) -> str | None:
        """``anatomical registration to the template`` for ``sub_01_wf.anat_wf.register``;
        None for plumbing."""
        parts = [p.lstrip("_") for p in fullname.split(".")]
        name = parts[-1]
        if PLUMBING.match(name) or any(PLUMBING.match(p) for p in parts[:-1]):
            return None
        what = STAGES.get(name, name.replace("_", " "))
        for part in parts[:-1]:
            branch = _BRANCH.match(part)
            if branch and branch.group(2):
                return f"BOLD run {branch.group(2)} {what}"
            if branch:
                return f"anatomical {what}"
        return what

    def _update(self, node: Any, status: str) -> None:
        key = node.fullname
        if status == "start":
            self._started[key] = time.monotonic()
            return
        started = self._started.pop(key, None)
        what = self.describe(key)
        if what is None or started is None:
            return  # plumbing, or an element of a MapNode (its MapNode has the line)
        seconds = time.monotonic() - started
        if status == "end":
            self.logger.info("%s: %s done in %.0f s", self.label, what, seconds)
            if node.name == "run_qc":
                self._log_exclusion(node, what)
        elif status == "exception":
            self.logger.warning("%s: %s failed after %.0f s", self.label, what, seconds)

    def _log_exclusion(self, node: Any, what: str) -> None:
        outputs = node.result.outputs
        if outputs is None or not getattr(outputs, "excluded", False):
            return
        run = re.search(r"BOLD run (\d+)", what)
        index = int(run.group(1)) - 1 if run else -1
        name = self.bold_runs[index] if 0 <= index < len(self.bold_runs) else what
        reason = getattr(outputs, "exclusion_reason", "") or "see the run's QC in its features sidecar"
        self.logger.warning("%s: BOLD run %s excluded by the run QC: %s", self.label, name, reason)
