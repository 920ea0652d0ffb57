"""Shared report helpers: jinja2 rendering, settings lookup, file discovery and naming.

Everything a report shows is discovered from files on disk (OUTPUT_DIR), so reports can be
rebuilt at any time (``--reports-only``) without re-running the workflows.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from bids_brainage import __version__
from bids_brainage.compute import brainage_table
from bids_brainage.utils import atomic

TEMPLATE_DIR = Path(__file__).parent / "templates"
NOT_AVAILABLE = "not available"


@lru_cache(maxsize=1)
def environment() -> Any:
    """The jinja2 environment (templates from ``reports/templates``, HTML autoescaping on)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters["fmt"] = format_value
    return env


def render(template: str, path: str | os.PathLike, **context: Any) -> Path:
    """Render ``template`` with ``context`` and write it atomically to ``path``."""
    css = (TEMPLATE_DIR / "report.css").read_text(encoding="utf-8")
    text = environment().get_template(template).render(css=css, version=__version__, **context)
    return atomic.write_text(path, text)


def format_value(value: Any, digits: int = 3) -> str:
    """A value as short text: floats to ``digits`` significant digits, missing as ``n/a``."""
    import jinja2

    if value is None or isinstance(value, jinja2.Undefined):
        return "n/a"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if not np.isfinite(value):
            return "n/a"
        if abs(value) >= 1e4:
            return f"{value:,.0f}"
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.{digits}g}"
        return f"{value:.{max(0, digits - 1 - int(np.floor(np.log10(abs(value))))) if value else 0}f}"
    if isinstance(value, list | tuple):
        if len(value) > 6:
            return f"list of {len(value)} values"
        return ", ".join(format_value(v, digits) for v in value)
    return str(value)


def settings_dict(config: Any = None, output_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """The run settings as a plain dict.

    From ``config`` (a :class:`~bids_brainage.config.Config` or dict) when given, else from the
    newest ``OUTPUT_DIR/logs/config_*.json`` (participant level preferred), else ``{}`` plus
    ``output_dir``.
    """
    if config is not None:
        if isinstance(config, dict):
            settings = dict(config)
        elif hasattr(config, "to_json_dict"):
            settings = config.to_json_dict()
        else:
            settings = {k: v for k, v in vars(config).items() if not k.startswith("_")}
    else:
        settings = {}
        if output_dir is not None:
            logs = Path(output_dir) / "logs"
            files = sorted(logs.glob("config_participant_*.json")) or sorted(logs.glob("config_*.json"))
            if files:
                try:
                    settings = json.loads(files[-1].read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    settings = {}
    if output_dir is not None:
        settings["output_dir"] = str(output_dir)
    return settings


def versions() -> dict[str, str]:
    """Versions of the packages the pipeline relies on (``not installed`` when absent)."""
    out = {"bids_brainage": __version__}
    for name in ("nipype", "antspyx", "nilearn", "nibabel", "torch", "pybids", "numpy", "scikit-learn"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    import platform

    out["python"] = platform.python_version()
    return out


def about(settings: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
    """Facts for the *About* section: versions, command line, run id, timing.

    ``seconds`` is the measured run time when known (participant status record); otherwise the
    time from the start of the run to this report is shown.
    """
    start = settings.get("start_time")
    info: dict[str, Any] = {
        "versions": versions(),
        "command_line": settings.get("command_line") or NOT_AVAILABLE,
        "run_uuid": settings.get("run_uuid") or NOT_AVAILABLE,
        "report_time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "start_time": NOT_AVAILABLE,
        "elapsed": NOT_AVAILABLE,
    }
    if isinstance(start, int | float):
        info["start_time"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(start))
        minutes = (time.time() - start) / 60
        info["elapsed"] = f"{minutes:.1f} min (from the start of the run to this report)"
    if isinstance(seconds, int | float):
        info["elapsed"] = f"{seconds / 60:.1f} min"
    return info


# ---------------------------------------------------------------- BIDS names and files

_ENTITY_RE = re.compile(r"^([a-zA-Z]+)-([0-9A-Za-z.+]+)$")


def entities(name: str) -> dict[str, str]:
    """BIDS entities of a file name, plus ``suffix`` and ``extension``.

    >>> entities("sub-01_task-rest_desc-carpet_bold.svg")["desc"]
    'carpet'
    """
    base = Path(name).name
    stem, dot, ext = base.partition(".")
    parts = stem.split("_")
    out: dict[str, str] = {"extension": f"{dot}{ext}"}
    for part in parts:
        match = _ENTITY_RE.match(part)
        if match:
            out[match.group(1)] = match.group(2)
        else:
            out["suffix"] = part
    return out


def sessions_of(output_dir: Path, subject: str, bids_dir: Path | None = None) -> list[str]:
    """Session labels of ``subject`` found in OUTPUT_DIR or the BIDS dataset."""
    found: set[str] = set()
    for root in (output_dir, bids_dir):
        if root is None:
            continue
        for path in (Path(root) / f"sub-{subject}").glob("ses-*"):
            if path.is_dir():
                found.add(path.name[4:])
    return sorted(found)


def report_name(output_dir: Path, subject: str, session: str | None, bids_dir: Path | None = None) -> str:
    """``sub-X.html``, or ``sub-X_ses-Y.html`` when the subject has several sessions."""
    if session and len(sessions_of(output_dir, subject, bids_dir)) > 1:
        return f"sub-{subject}_ses-{session}.html"
    return f"sub-{subject}.html"


def relpath(path: Path, start: Path) -> str:
    """POSIX relative path (what an HTML ``src``/``href`` needs)."""
    return Path(os.path.relpath(path, start)).as_posix()


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path`` or ``None`` when missing/unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_tsv(path: Path) -> Any:
    """A BIDS TSV as a DataFrame (``n/a`` → NaN), or ``None`` when missing/unreadable."""
    import pandas as pd

    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dict → ``[(dotted key, value), ...]`` (sorted, long lists summarised)."""
    rows: list[tuple[str, Any]] = []
    for key in sorted(data, key=str):
        value = data[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += flatten(value, name + ".")
        else:
            rows.append((name, value))
    return rows


def inline_svg(path: Path) -> str:
    """An SVG file's ``<svg>`` element for pasting into HTML (prolog, DOCTYPE and RDF metadata removed)."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.find("<svg")
    if start < 0:
        return ""
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text[start:], count=1, flags=re.S)


_CRASH_NODE = re.compile(r"^Node:\s*(\S+)", re.M)
_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception|Exit|Interrupt)\w*(:|$)")


def parse_crash(path: Path, output_dir: Path) -> dict[str, str]:
    """Summary of a nipype crash file: node name, last error line, traceback tail."""
    entry = {"file": relpath(path, output_dir), "node": path.stem, "summary": "", "traceback": ""}
    if path.suffix != ".txt":
        entry["summary"] = "binary crash file (read it with: nipypecli crash FILE)"
        return entry
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as err:
        entry["summary"] = f"unreadable crash file ({err})"
        return entry
    match = _CRASH_NODE.search(text)
    if match:
        entry["node"] = match.group(1)
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    errors = [line.strip() for line in lines if _ERROR_LINE.match(line.strip())]
    entry["summary"] = errors[-1] if errors else (lines[-1].strip() if lines else "")
    entry["traceback"] = "\n".join(lines[-25:])
    return entry


@dataclass
class Figure:
    """A figure in a report: title, path relative to the report, caption, CSS kind."""

    title: str
    src: str
    caption: str = ""
    kind: str = "static"
    extra: dict[str, Any] = field(default_factory=dict)


def escape(text: str) -> str:
    """HTML-escape ``text`` (for the few strings built outside templates)."""
    return html.escape(str(text))


def sex_label(value: Any) -> str:
    """``F``/``M`` from any coding the tables have used (``F``, ``0``, ``0.0``, ``F/0``,
    ``female``; likewise for M), ``n/a`` otherwise."""
    return brainage_table.sex_label(value) or "n/a"
