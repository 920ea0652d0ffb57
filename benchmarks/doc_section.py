"""Shared by the benchmark scripts: the machine they ran on, and their section of the docs.

Each script owns the part of docs/benchmarks.md between its two HTML comment markers and
rewrites only that part, so the scripts can run separately (and on different days).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

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
