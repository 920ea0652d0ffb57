"""``--reports-only``: rebuild every report from the outputs already on disk."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from bids_brainage.reports import html

LOGGER = logging.getLogger("bids_brainage.reports")


def subjects_in(output_dir: Path, labels: list[str] | None = None) -> list[tuple[str, str | None]]:
    """``(subject, session)`` pairs that have outputs (``sub-X`` folders) in OUTPUT_DIR."""
    wanted = {label.removeprefix("sub-") for label in labels or []}
    pairs: list[tuple[str, str | None]] = []
    for folder in sorted(Path(output_dir).glob("sub-*")):
        if not folder.is_dir():
            continue
        subject = folder.name[4:]
        if wanted and subject not in wanted:
            continue
        sessions = html.sessions_of(Path(output_dir), subject)
        pairs += [(subject, s) for s in sessions] if sessions else [(subject, None)]
    return pairs


def rebuild_reports(config: Any) -> int:
    """Regenerate all subject reports, the group report and ``logs/CITATION.*``.

    Parameters
    ----------
    config : Config or dict
        Run settings (``output_dir`` required; ``participant_label`` restricts the subjects).

    Returns
    -------
    int
        0 when every report was written, 1 when at least one failed (each failure is logged).
    """
    from bids_brainage.reports.citation import write_citation
    from bids_brainage.reports.group import generate_group_report
    from bids_brainage.reports.subject import generate_subject_report

    settings = html.settings_dict(config)
    output_dir = Path(settings["output_dir"])
    if not output_dir.is_dir():
        LOGGER.error("%s: output directory does not exist", output_dir)
        return 1
    failures = 0
    try:
        write_citation(settings)
    except OSError as err:
        LOGGER.error("CITATION files not written (%s)", err)
        failures += 1
    for subject, session in subjects_in(output_dir, settings.get("participant_label")):
        try:
            path = generate_subject_report(settings, subject, session)
            LOGGER.info("report: %s", path)
        except Exception as err:  # noqa: BLE001 - keep going with the other subjects
            LOGGER.error("sub-%s: report failed (%s)", subject, err)
            failures += 1
    if (output_dir / "brainage.tsv").is_file() or (output_dir / "group").is_dir():
        try:
            LOGGER.info("report: %s", generate_group_report(output_dir, settings))
        except Exception as err:  # noqa: BLE001
            LOGGER.error("group report failed (%s)", err)
            failures += 1
    return 1 if failures else 0
