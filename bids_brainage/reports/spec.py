"""The subject report's figures, selected by BIDS entities from ``data/reports-spec.yml``.

The spec (nireports' bootstrap format, as fMRIPrep's ``reports-spec.yml``) names each reportlet
by a query on BIDS entities (``datatype``, ``desc``, ``space``, ``suffix``, ...);
:class:`nireports.assembler.report.Report` indexes ``OUTPUT_DIR/sub-X`` and runs those queries
for the subject (and session). The sections it returns are turned into
:class:`~bids_brainage.reports.html.Figure` lists that ``subject.html`` renders next to the
sections nireports has no reportlet for (summary, features, brain age, methods, errors).
Nothing is downloaded: the assembler reads the spec and the files on disk only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bids_brainage.reports import html

SPEC_FILE = Path(__file__).resolve().parents[1] / "data" / "reports-spec.yml"
#: Entities that tell one BOLD run's reportlets from another's (the spec's ``ordering``).
RUN_ENTITIES = ("ses", "task", "acq", "dir", "run", "echo")
_FIGURE_LINK = re.compile(r'Get figure file: <a href="\./([^"]+)"')


@dataclass(frozen=True)
class ReportletSpec:
    """One reportlet of the spec: its key, title, caption and whether it animates itself."""

    name: str
    title: str
    caption: str
    static: bool


def load_spec(path: Path = SPEC_FILE) -> dict[str, Any]:
    """The spec as a dictionary (``sections``, each with ``name`` and ``reportlets``)."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def section_reportlets(section: str, path: Path = SPEC_FILE) -> tuple[ReportletSpec, ...]:
    """The reportlets of spec section ``section`` (``Anatomical``/``Functional``), in order."""
    for item in load_spec(path)["sections"]:
        if item["name"] == section:
            return tuple(
                ReportletSpec(
                    r["name"], r.get("title", r["name"]), str(r.get("caption", "")), r.get("static", True)
                )
                for r in item["reportlets"]
            )
    raise KeyError(f"{path}: no section {section!r}")


def run_key(name: str) -> str:
    """``ses-1_task-rest_run-2``: the run a functional file belongs to, from its entities."""
    ents = html.entities(name)
    parts = [f"{k}-{ents[k]}" for k in RUN_ENTITIES if k in ents]
    return "_".join(parts) or "run"


def _files(reportlet: Any) -> list[str]:
    """Paths (relative to OUTPUT_DIR) of the files nireports selected for ``reportlet``."""
    found = []
    for contents, _caption in reportlet.components:
        match = _FIGURE_LINK.search(contents)
        if match:
            found.append(match.group(1))
    return found


def assemble_figures(output_dir: Path, subject: str, session: str | None) -> dict[str, Any]:
    """Reportlets of ``sub-X`` selected by the spec.

    Returns
    -------
    dict
        ``{"anat": {name: [Figure, ...]}, "func": {run: {name: [Figure, ...]}}}`` with ``name``
        the spec's reportlet names; reportlets without a file are absent.
    """
    from nireports.assembler.report import Report

    output_dir = Path(output_dir).resolve()
    root = output_dir / f"sub-{subject}"
    found: dict[str, Any] = {"anat": {}, "func": {}}
    if not (root / "figures").is_dir():
        return found
    filters = {"subject": subject, **({"session": session} if session else {})}
    specs = {s["name"]: {r["name"]: r for r in s["reportlets"]} for s in load_spec()["sections"]}
    report = Report(output_dir, None, bootstrap_file=SPEC_FILE, reportlets_dir=root, **filters)
    for section in report.sections:
        key = "anat" if section.name == "Anatomical" else "func"
        for reportlet in section.reportlets:
            cfg = specs[section.name][reportlet.name]
            for src in _files(reportlet):
                figure = html.Figure(
                    title=cfg.get("title", reportlet.name),
                    src=src,
                    caption=str(cfg.get("caption", "")),
                    kind="static" if cfg.get("static", True) else "animated",
                )
                if key == "anat":
                    found["anat"].setdefault(reportlet.name, []).append(figure)
                else:
                    run = found["func"].setdefault(run_key(Path(src).name), {})
                    run.setdefault(reportlet.name, []).append(figure)
    return found
