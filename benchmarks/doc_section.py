"""Shared by the benchmark scripts: the machine they ran on, their section of the docs, and
running their cached jobs.

Each script owns the part of docs/benchmarks.md between its two HTML comment markers and
rewrites only that part, so the scripts can run separately (and on different days).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (or what :mod:`platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def replace_section(start: str, end: str, text: str, doc: Path = DOC) -> None:
    """Put ``text`` (which starts with ``start`` and ends with ``end``) in place of the old
    section, or append it; written to a temporary file, then renamed."""
    old = doc.read_text() if doc.exists() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[: old.index(start)] + text + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(f".{doc.name}.tmp")
    tmp.write_text(new)
    os.replace(tmp, doc)


def slug(text: str) -> str:
    """A file-name-safe form of a row name (cache file names)."""
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")


def run_cached(
    jobs: Sequence[tuple],
    run: Callable[..., dict[str, Any]],
    cached: Callable[..., bool],
    workers: int,
) -> list[dict[str, Any]]:
    """``run(*job)`` for every job: cached ones in this process, the rest in a process pool.

    ``run`` must read its own cache when ``cached(*job)``; workers are spawned (not forked)
    so torch starts fresh in each. Results come back in completion order.
    """
    done = [job for job in jobs if cached(*job)]
    results = [run(*job) for job in done]
    todo = [job for job in jobs if job not in done]
    if todo:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run, *job) for job in todo]
            for i, fut in enumerate(as_completed(futures), 1):
                results.append(fut.result())
                label = " ".join(str(results[-1][k]) for k in ("row", "split", "seed") if k in results[-1])
                print(f"[{i}/{len(todo)}] {label}", flush=True)
    return results
