"""Exclusive use of a work directory: two runs on the same nipype node folders clobber
each other's files (``FileNotFoundError: ..._unfinished.json``), so the second is refused.

The lock is an ``flock`` on a small file: the kernel releases it when its process ends,
however it ends (SIGKILL included), so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bids_brainage.errors import UsageError

LOCK_DIR = ".locks"
LOGGER = logging.getLogger("bids_brainage")


@contextmanager
def work_dir_lock(work_dir: Path, name: str, what: str) -> Iterator[Path]:
    """Hold ``work_dir/.locks/<name>.lock`` for the duration of the ``with`` block.

    Parameters
    ----------
    work_dir : Path
        The run's work directory (``-w``).
    name : str
        What is locked: ``group``, or ``sub-X[_ses-Y]`` (participant runs of different
        subjects may share a work directory, as SLURM array jobs do).
    what : str
        The run, for the message (``group run``, ``participant run of sub-01``).

    Raises
    ------
    UsageError
        When another process holds the lock; the message names it (pid, host, start).
    """
    path = work_dir / LOCK_DIR / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    locked = True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown process"
        os.close(fd)
        raise UsageError(
            f"{work_dir}: work directory is in use by another {what} ({holder}); "
            "wait for it to finish or use another --work-dir"
        ) from None
    except OSError as err:
        # Some file systems (Lustre without a flock mount option, old NFS) have no flock:
        # the run goes on, unprotected, rather than not at all.
        os.close(fd)
        LOGGER.warning(
            "%s: cannot lock the work directory (%s): a concurrent %s would not be detected",
            work_dir,
            err.strerror or err,
            what,
        )
        locked = False
    if not locked:
        yield path
        return
    try:
        # Who holds it, for the message of a run refused meanwhile (not needed for locking).
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n".encode(), 0)
        yield path
    finally:
        # The file stays: removing it would let a third run lock a new inode while a
        # second still waits on the old one.
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
