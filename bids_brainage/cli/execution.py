"""Running nipype workflows: plugin choice, crash files and one-line failure summaries."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path
from typing import Any

from bids_brainage.cli import worker_logging

LOGGER = logging.getLogger("bids_brainage.execution")


#: Worker processes start from a clean server process, not a fork of this one: a fork of a
#: process whose PyTorch/OpenMP thread pool is running (e.g. after a prediction) hangs in
#: the child's first parallel operation.
SAFE_MP_CONTEXT = "forkserver"

#: Seconds between two passes of nipype's scheduler over the graph when nodes run locally
#: (MultiProc). nipype's default is 2 s. 0.1 s cut the idle time between the nodes of a
#: --sloppy simulated subject from ~25 to ~15 s, but every pass calls ``gc.collect()``
#: (~0.15 CPU s once the app is imported): the main process then used 34 instead of 22 CPU s
#: (pumi, sloppy) and 99 instead of 59 (default), CPU the nodes need on a 2-core machine.
#: 1 s halves the default's idle time at a tenth of that cost (interpolated, not measured).
#: Cluster plugins keep nipype's default: each pass queries the scheduler (squeue, qstat).
LOCAL_POLL_SECONDS = 1.0


def plugin_settings(config: Any) -> dict[str, Any]:
    """nipype plugin and its arguments: ``--use-plugin`` YAML, else MultiProc/Linear from ``--nprocs``."""
    if config.use_plugin:
        import yaml

        from bids_brainage.errors import UsageError

        try:
            settings = yaml.safe_load(Path(config.use_plugin).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise UsageError(f"{config.use_plugin}: cannot read the plugin file ({err})") from None
        if not isinstance(settings, dict) or "plugin" not in settings:
            raise UsageError(
                f"{config.use_plugin}: plugin file must have a 'plugin' key (e.g. plugin: MultiProc)"
            )
        settings.setdefault("plugin_args", {})
        if settings["plugin"] == "MultiProc":
            settings["plugin_args"].setdefault("mp_context", SAFE_MP_CONTEXT)
        if settings["plugin"] in ("SLURM", "SLURMGraph", "SGE", "SGEGraph"):
            # nipype's cluster plugins read LOGNAME, which minimal containers do not set.
            import getpass

            os.environ.setdefault("LOGNAME", getpass.getuser())
        return settings
    if config.nprocs > 1:
        args: dict[str, Any] = {
            "n_procs": config.nprocs,
            "raise_insufficient": False,
            "maxtasksperchild": 1,
            "mp_context": SAFE_MP_CONTEXT,
        }
        if config.mem_mb:
            args["memory_gb"] = config.mem_mb / 1024
        return {"plugin": "MultiProc", "plugin_args": args}
    return {"plugin": "Linear", "plugin_args": {}}


def nipype_settings(crashdump_dir: Path, stop_on_first_crash: bool = False) -> dict[str, dict[str, Any]]:
    """Crash files as text in ``crashdump_dir``; no nipype telemetry; keep outputs for caching."""
    return {
        "execution": {
            "crashdump_dir": str(crashdump_dir),
            "crashfile_format": "txt",
            "stop_on_first_crash": stop_on_first_crash,
            "hash_method": "content",
            "check_version": False,
            "remove_unnecessary_outputs": False,
        },
        "monitoring": {"enabled": False},
    }


def run_workflow(workflow: Any, config: Any, crashdump_dir: Path, status_callback: Any = None) -> None:
    """Run ``workflow``; on failure raise :class:`WorkflowFailed` with a one-line reason.

    ``status_callback`` (e.g. :class:`bids_brainage.cli.logs.StageLog`) is given to the
    plugin, which calls it as each node starts and ends.
    """
    from nipype import config as nipype_config
    from nipype import logging as nipype_logging

    crashdump_dir.mkdir(parents=True, exist_ok=True)
    settings_by_section = nipype_settings(crashdump_dir, config.stop_on_first_crash)
    # nipype logs each crash with its traceback: shown with -v; without it our one-line
    # summary names the file and reason, and the crash file keeps the details.
    level = ["CRITICAL", "WARNING", "INFO"][config.verbosity] if config.verbosity < 3 else "DEBUG"
    settings_by_section["logging"] = {"workflow_level": level, "interface_level": level, "utils_level": level}
    nipype_config.update_config({"logging": settings_by_section["logging"]})
    nipype_logging.update_logging(nipype_config)
    _quiet_workers(level)
    # Workflows copy nipype's global config when built, so the settings go on the workflow.
    for section, values in settings_by_section.items():
        workflow.config.setdefault(section, {}).update(values)
    before = set(crashdump_dir.glob("crash-*"))
    settings = plugin_settings(config)
    if settings["plugin"] == "MultiProc":
        workflow.config["execution"]["poll_sleep_duration"] = LOCAL_POLL_SECONDS
    if status_callback is not None:
        settings["plugin_args"] = {**settings["plugin_args"], "status_callback": status_callback}
    try:
        workflow.run(plugin=settings["plugin"], plugin_args=settings["plugin_args"])
    except Exception as err:
        crashes = sorted(set(crashdump_dir.glob("crash-*")) - before)
        raise WorkflowFailed(summarise_crashes(crashes) or str(err).splitlines()[0], crashes) from err


def _quiet_workers(level: str) -> None:
    """Give nipype's worker processes this run's log level (they start from a forkserver).

    Takes effect when the forkserver starts, i.e. at the first parallel run of this process.
    """
    os.environ[worker_logging.LEVEL_VARIABLE] = level
    multiprocessing.set_forkserver_preload([worker_logging.__name__])


class WorkflowFailed(RuntimeError):
    """A workflow failed; ``reason`` is one line, ``crashfiles`` the nipype crash reports."""

    def __init__(self, reason: str, crashfiles: list[Path]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.crashfiles = crashfiles


def summarise_crashes(crashfiles: list[Path]) -> str:
    """The last exception line of each crash file (``node: message``), joined with '; '."""
    lines = []
    for crash in crashfiles:
        node, message = crash_summary(crash)
        lines.append(f"{node}: {message}")
    return "; ".join(dict.fromkeys(lines))


def crash_summary(crashfile: Path) -> tuple[str, str]:
    """(node name, last line of the traceback) from a nipype text crash file.

    Our interfaces raise :class:`~bids_brainage.errors.BrainAgeError` with a message naming
    the file and reason; that line is what the user needs, so it is returned as is.
    """
    text = crashfile.read_text(errors="replace")
    node = "unknown node"
    for line in text.splitlines():
        if line.startswith("Node:"):
            node = line.split(":", 1)[1].strip()
            break
    message = ""
    for line in reversed(text.splitlines()):
        stripped = line.strip()
        if stripped and not stripped.startswith(("File ", "^", "~")) and ":" in stripped:
            message = stripped
            break
    for prefix in (
        "bids_brainage.errors.InputError: ",
        "InputError: ",
        "bids_brainage.errors.",
        "RuntimeError: ",
    ):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return node, message
