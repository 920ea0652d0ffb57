"""SIGTERM and SIGINT stop every worker process and leave no half-written file.

Without this, a SIGTERM sent to the main process (``kill PID``, a scheduler ending a job)
ends that process only: its nipype and subject workers come from a forkserver, run on and
keep writing into OUTPUT_DIR after it is gone. The handler, in the main process:

1. freezes (SIGSTOP) every descendant process, repeating until the tree stops changing,
   so that none forks a new worker or is re-parented away while the others are stopped;
2. kills them (SIGKILL) and waits until they are gone;
3. removes the temporary files of unfinished atomic writes (``.NAME.*.tmp*``, see
   :mod:`bids_brainage.utils.atomic`) below the folders this run writes to;
4. exits with 128 + the signal number (143 for SIGTERM, 130 for SIGINT).

Completed outputs stay; an unfinished subject has no status file, so the group level
ignores it until it is rerun (the work dir's cache makes the rerun short).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOGGER = logging.getLogger("bids_brainage")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from ``/proc``; zombies are already dead)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, stack = [], list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append(child)
        stack.extend(children.get(child, []))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def stop_descendants(timeout: float = 10.0) -> int:
    """Freeze, then kill, every descendant of this process; returns how many were stopped."""
    me = os.getpid()
    stopped: set[int] = set()
    for _ in range(20):  # until no new process appears below a frozen tree
        new = [pid for pid in descendants(me) if pid not in stopped]
        if not new:
            break
        for pid in new:
            _send(pid, signal.SIGSTOP)
        stopped.update(new)
    for pid in stopped:
        _send(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap()
        if not any(_alive(pid) for pid in stopped):
            break
        time.sleep(0.05)
    _reap()
    return len(stopped)


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _reap() -> None:
    """Collect our own dead children (they would stay as zombies until we exit)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def remove_temporaries(trees: list[Path], tops: list[tuple[Path, tuple[str, ...]]] = ()) -> int:
    """Delete unfinished atomic writes (``.NAME.*.tmp*`` files and folders).

    Parameters
    ----------
    trees : list of Path
        Folders this run alone writes to (a subject's): every temporary below them goes.
    tops : list of (Path, prefixes)
        Shared folders: only the temporaries directly in them whose NAME starts with one
        of the prefixes go (another job may be writing its own files there).

    Returns
    -------
    int
        How many were removed.
    """
    count = 0
    for tree in trees:
        if tree.is_dir():
            count += sum(_remove(path) for path in sorted(tree.rglob(".*.tmp*"), reverse=True))
    for folder, prefixes in tops:
        if folder.is_dir():
            for path in folder.glob(".*.tmp*"):
                if path.name[1:].startswith(prefixes):
                    count += _remove(path)
    return count


def _remove(path: Path) -> int:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return 1
    except FileNotFoundError:
        return 0


@contextmanager
def stop_all_on_signal(cleanup: Callable[[], int]) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT stop every worker, call ``cleanup`` (which removes
    this run's temporary files and returns how many) and exit with 128 + the signal.

    Only the main thread can install signal handlers; elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}

    def handler(signum: int, frame: object) -> None:
        for other in _SIGNALS:  # a second signal must not interrupt the clean-up
            signal.signal(other, signal.SIG_IGN)
        name = signal.Signals(signum).name
        # Other threads (the pools' managers) report the workers' deaths with tracebacks:
        # from here on stderr goes nowhere but for our own lines, written to a copy of it.
        sys.stderr.flush()
        console = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        workers = stop_descendants()
        removed = cleanup()
        summary = (
            f"interrupted by {name}: stopped {workers} worker process(es), removed {removed} unfinished "
            "file(s); subjects without a status file are not finished: rerun them"
        )
        LOGGER.error("%s", summary)  # to the run's log file (the console is muted)
        for handler_ in logging.getLogger("bids_brainage").handlers:
            handler_.flush()
        os.write(console, f"{summary}\nbids_brainage: interrupted by {name}\n".encode())
        # os._exit: no code of the interrupted run may go on writing (e.g. nipype's
        # clean-up of a pool whose workers are gone, or a half-done rename).
        os._exit(128 + signum)

    for signum in _SIGNALS:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
