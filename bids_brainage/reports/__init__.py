"""Visual QC reports: per-subject and group HTML pages, SVG reportlets and methods boilerplate.

Public entry points (imported lazily so that ``import bids_brainage.reports`` stays cheap):
:func:`~bids_brainage.reports.subject.generate_subject_report`,
:func:`~bids_brainage.reports.group.generate_group_report`,
:func:`~bids_brainage.reports.citation.write_citation` and
:func:`~bids_brainage.reports.rebuild.rebuild_reports`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["generate_group_report", "generate_subject_report", "rebuild_reports", "write_citation"]


def __getattr__(name: str) -> Any:
    if name == "generate_subject_report":
        from bids_brainage.reports.subject import generate_subject_report

        return generate_subject_report
    if name == "generate_group_report":
        from bids_brainage.reports.group import generate_group_report

        return generate_group_report
    if name == "write_citation":
        from bids_brainage.reports.citation import write_citation

        return write_citation
    if name == "rebuild_reports":
        from bids_brainage.reports.rebuild import rebuild_reports

        return rebuild_reports
    raise AttributeError(name)
