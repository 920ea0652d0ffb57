"""Per-subject HTML report (fMRIPrep layout), discovered entirely from OUTPUT_DIR.

Sections: Summary, Anatomical, Functional, Brain age, About, Methods, Errors. The figures of
Anatomical and Functional are the reportlets selected by BIDS entities in
``data/reports-spec.yml`` (:mod:`bids_brainage.reports.spec`, nireports' assembler). Whatever is
missing on disk is shown as "not available"; building a report never raises for missing
or malformed outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from bids_brainage.reports import citation, figures, group, html, spec

LOGGER = logging.getLogger("bids_brainage.reports")


def _data_dir(output_dir: Path, subject: str, session: str | None) -> Path:
    base = output_dir / f"sub-{subject}"
    return base / f"ses-{session}" if session and (base / f"ses-{session}").is_dir() else base


def _glob(folder: Path, *patterns: str) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(folder.glob(pattern))
    return sorted(found)


def read_status(output_dir: Path, subject: str, session: str | None) -> dict[str, Any]:
    """The participant level's status record (``logs/participants/sub-X[_ses-Y].json``), or ``{}``."""
    name = f"sub-{subject}" + (f"_ses-{session}" if session else "") + ".json"
    return html.read_json(output_dir / "logs" / "participants" / name) or {}


def _inputs(
    settings: dict[str, Any], subject: str, session: str | None, status: dict[str, Any]
) -> list[tuple[str, str]]:
    bids_dir = settings.get("bids_dir")
    if not bids_dir or not Path(bids_dir).is_dir():
        rows = [("T1w", Path(status["t1w"]).name)] if status.get("t1w") else []
        return rows + [("BOLD", Path(p).name) for p in status.get("bold") or []]
    root = Path(bids_dir)
    base = root / f"sub-{subject}"
    if session:
        base = base / f"ses-{session}"
    task = settings.get("task_id") or "rest"
    rows = [("T1w", html.relpath(p, root)) for p in _glob(base / "anat", "*_T1w.nii*")]
    rows += [("BOLD", html.relpath(p, root)) for p in _glob(base / "func", f"*task-{task}*_bold.nii*")]
    return rows


def _steps(output_dir: Path, subject: str, session: str | None, has_age: bool) -> list[dict[str, Any]]:
    data = _data_dir(output_dir, subject, session)
    checks = [
        ("Anatomical preprocessing (N4, brain extraction)", data / "anat", ("*desc-preproc_T1w.nii*",)),
        ("Brain mask", data / "anat", ("*desc-brain_mask.nii*",)),
        ("Tissue segmentation (Atropos)", data / "anat", ("*_dseg.nii*", "*_probseg.nii*")),
        ("Registration to MNI152NLin2009aSym", data / "anat", ("*from-T1w_to-MNI*", "*space-MNI*")),
        ("Structural features", data / "anat", ("*desc-structural_features.*",)),
        ("BOLD confounds (motion, FD, DVARS)", data / "func", ("*desc-confounds_timeseries.tsv",)),
        ("Functional connectivity", data / "func", ("*_relmat.tsv", "*connectivity*")),
        ("Functional features", data / "func", ("*desc-functional_features.*",)),
    ]
    rows = []
    for step, folder, patterns in checks:
        files = _glob(folder, *patterns)
        rows.append({"step": step, "done": bool(files), "n": len(files)})
    rows.append({"step": "Brain-age prediction (group level)", "done": has_age, "n": int(has_age)})
    return rows


_ID_COLUMNS = ("participant_id", "session_id", "subject", "session", "run", "task")


def _features_values(path: Path, meta: dict[str, Any]) -> tuple[list[tuple[str, Any, str]], int]:
    """``(feature, value, unit)`` from the one-row TSV next to a features sidecar, and the count.

    Only tables of at most 300 features are listed (connectivity tables have tens of thousands).
    """
    frame = html.read_tsv(path.with_name(path.name.removesuffix(".json") + ".tsv"))
    if frame is None or len(frame) != 1:
        return [], 0
    columns = [c for c in frame.columns if c not in _ID_COLUMNS]
    if len(columns) > 300:
        return [], len(columns)
    row = frame.iloc[0]
    values = []
    for column in columns:
        doc = meta.get(column)
        unit = str(doc.get("Units", "")) if isinstance(doc, dict) else ""
        values.append((str(column), row[column], unit))
    return values, len(columns)


def _sidecars(output_dir: Path, subject: str, session: str | None) -> dict[str, list[dict[str, Any]]]:
    """Feature and QC sidecars of ``anat``/``func`` with their values and exclusion decisions."""
    data = _data_dir(output_dir, subject, session)
    out: dict[str, list[dict[str, Any]]] = {"anat": [], "func": []}
    patterns = {
        "anat": ("*desc-structural_features.json", "*_qc.json"),
        "func": ("*desc-functional_features.json", "*_qc.json"),
    }
    for section, pats in patterns.items():
        for path in _glob(data / section, *pats):
            meta = html.read_json(path)
            if meta is None:
                continue
            is_features = path.name.endswith("_features.json")
            values, n_features = _features_values(path, meta) if is_features else ([], 0)
            documented = {c for c, _, _ in values} | {
                k for k, v in meta.items() if isinstance(v, dict) and "Description" in v and "Units" in v
            }
            out[section].append(
                {
                    "name": path.name,
                    "href": html.relpath(path, output_dir),
                    "run": spec.run_key(path.name),
                    "kind": "features" if is_features else "qc",
                    "rows": html.flatten({k: v for k, v in meta.items() if k not in documented}),
                    "feature_values": values,
                    "n_features": n_features,
                    "exclusion": _exclusion(meta),
                }
            )
    # The exclusion decision is shown once per run: on its QC sidecar, not again on the
    # features sidecar that copies the QC block.
    decided = {i["run"] for i in out["func"] if i["kind"] == "qc" and i["exclusion"] is not None}
    for item in out["func"]:
        if item["kind"] == "features" and item["run"] in decided:
            item["exclusion"] = None
    return out


def _exclusion(meta: dict[str, Any]) -> dict[str, Any] | None:
    """``{"excluded": bool, "reason": str}`` from any key naming an exclusion decision."""
    excluded, reason = None, ""
    for key, value in html.flatten(meta):
        leaf = key.rsplit(".", 1)[-1].lower()
        if leaf in ("excluded", "exclude", "isexcluded", "usable") and excluded is None:
            flag = str(value).lower() in ("true", "1", "yes")
            excluded = (not flag) if leaf == "usable" else flag
        elif "reason" in leaf and value:
            reason = str(value)
    if excluded is None:
        return None
    return {"excluded": excluded, "reason": reason}


def _qc_rows(output_dir: Path, subject: str, session: str | None) -> list[dict[str, Any]]:
    frame = html.read_tsv(output_dir / "group" / "qc.tsv")
    if frame is None or "participant_id" not in frame:
        return []
    part = frame[frame["participant_id"].astype(str) == f"sub-{subject}"]
    if session and "session_id" in part:
        part = part[part["session_id"].astype(str).isin([f"ses-{session}", "n/a", "nan"])]
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in part.to_dict("records")
    ]


def brainage_row(output_dir: Path, subject: str, session: str | None) -> tuple[dict[str, Any] | None, Any]:
    """This subject's row of ``brainage.tsv`` (or ``None``) and the whole table."""
    import pandas as pd

    frame = html.read_tsv(output_dir / "brainage.tsv")
    if frame is None or "participant_id" not in frame:
        frame = pd.DataFrame({"participant_id": []})
    rows = frame[frame["participant_id"].astype(str) == f"sub-{subject}"]
    if rows.empty:
        # participant level with --model: the prediction sits next to the subject's features
        folder = _data_dir(output_dir, subject, session)
        for path in sorted(folder.glob("*_desc-brainage_prediction.tsv")):
            own = html.read_tsv(path)
            if own is not None and "participant_id" in own:
                rows = own
                break
    if session and "session_id" in rows:
        match = rows[rows["session_id"].astype(str) == f"ses-{session}"]
        rows = match if len(match) else rows
    if rows.empty:
        return None, frame
    if frame.empty:
        frame = rows
    row = {
        k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in rows.iloc[0].to_dict().items()
    }
    return row, frame


def _brainage_figure(
    output_dir: Path, subject: str, session: str | None, row: dict, frame: Any
) -> html.Figure | None:
    label = f"sub-{subject}" + (f"_ses-{session}" if session else "")

    def num(key: str) -> float | None:
        try:
            value = float(row.get(key))
        except (TypeError, ValueError):
            return None
        return value if np.isfinite(value) else None

    predicted = num("predicted_age")
    if predicted is None:
        return None
    try:
        cohort = frame[frame.get("split", "oof").astype(str) != "predict"] if "split" in frame else frame
        if len(cohort) < 3:
            cohort = frame
        fig = figures.plot_subject_brainage(
            cohort["age"].astype(float) if "age" in cohort else [],
            cohort["predicted_age"].astype(float),
            num("age"),
            predicted,
            num("interval_lower"),
            num("interval_upper"),
            label,
        )
        out = output_dir / f"sub-{subject}" / "figures" / f"{label}_desc-brainage_age.svg"
        figures.save_svg(fig, out)
    except Exception as err:  # noqa: BLE001
        LOGGER.warning("%s: brain-age figure not made (%s)", label, err)
        return None
    return html.Figure(
        title="Predicted age against the cohort's age curve",
        src=html.relpath(out, output_dir),
        caption="Grey: cohort (out-of-fold predictions); blue: linear age curve; red: this "
        "participant with its prediction interval; dashed: identity.",
    )


def crash_summaries(output_dir: Path, subject: str, run_uuid: str | None) -> list[dict[str, str]]:
    """One summary per nipype crash file of this subject's latest (or given) run."""
    log = output_dir / f"sub-{subject}" / "log"
    if not log.is_dir():
        return []
    runs = sorted(p for p in log.iterdir() if p.is_dir())
    chosen = [log / run_uuid] if run_uuid and (log / run_uuid).is_dir() else runs[-1:]
    return [
        html.parse_crash(path, output_dir) for folder in chosen for path in sorted(folder.glob("crash-*"))
    ]


def _norm_reason(reason: Any) -> str:
    text = str(reason or "").strip()
    return "" if text.lower() in ("n/a", "nan", "none") else text


def _warnings(
    sidecars: dict[str, list[dict[str, Any]]], qc_rows: list[dict[str, Any]], steps: list[dict]
) -> list[str]:
    """Each warning once: one line per excluded run, however many files record the exclusion
    (the run's QC sidecar, its features sidecar and the group level's ``qc.tsv``)."""
    warnings: dict[tuple[str, str], str] = {}
    seen_reasons: set[tuple[str, str]] = set()
    for section in ("anat", "func"):
        for item in sidecars[section]:
            ex = item.get("exclusion")
            if not (ex and ex["excluded"]):
                continue
            run = item.get("run") or item["name"]
            reason = _norm_reason(ex["reason"])
            session = html.entities(item["name"]).get("ses", "")
            seen_reasons.add((session, reason))
            what = "BOLD run" if section == "func" else "anatomical"
            warnings.setdefault((run, reason), f"{what} {run}: excluded" + (f" ({reason})" if reason else ""))
    for row in qc_rows:
        if str(row.get("excluded")).lower() not in ("true", "1", "yes"):
            continue
        reason = _norm_reason(row.get("reason"))
        session = str(row.get("session_id") or "").removeprefix("ses-")
        if (session if session not in ("n/a", "nan", "None") else "", reason) in seen_reasons:
            continue  # already reported from the run's own sidecars
        run = row.get("run")
        label = " ".join(str(p) for p in (row.get("session_id"), f"run {run}") if p and str(p) != "n/a")
        warnings.setdefault(
            (label, reason), f"{label}: excluded from the model" + (f" ({reason})" if reason else "")
        )
    out = sorted(set(warnings.values()))
    if not any(s["done"] for s in steps[:5]):
        out.append("no anatomical outputs were found")
    return out


def generate_subject_report(
    config: Any,
    subject: str,
    session: str | None,
    errors: list[str] | None = None,
) -> Path:
    """Write ``OUTPUT_DIR/sub-X.html`` (``sub-X_ses-Y.html`` for multi-session subjects).

    Parameters
    ----------
    config : Config or dict
        Run settings; ``output_dir`` is required, the rest (``bids_dir``, ``command_line``,
        ``run_uuid``, processing options) fills the Summary, About and Methods sections.
    subject, session : str, str or None
        Labels without ``sub-``/``ses-``.
    errors : list of str, optional
        Failure messages of this subject from the current run (shown under *Errors*).

    Returns
    -------
    Path
        The HTML file written.
    """
    settings = html.settings_dict(config)
    output_dir = Path(settings["output_dir"])
    subject = subject.removeprefix("sub-")
    session = session.removeprefix("ses-") if session else None
    bids_dir = Path(settings["bids_dir"]) if settings.get("bids_dir") else None
    name = html.report_name(output_dir, subject, session, bids_dir)
    label = f"sub-{subject}" + (f"_ses-{session}" if session else "")

    status = read_status(output_dir, subject, session)
    errors = list(errors or [])
    errors += [e for e in status.get("errors") or [] if isinstance(e, str) and e not in errors]
    run_uuid = status.get("run_uuid") or settings.get("run_uuid")
    # Settings, About and Methods describe the participant run that made these outputs, not a
    # later --reports-only or group-level call (whose config is what we were given).
    logged = html.read_json(output_dir / "logs" / f"config_participant_{run_uuid}.json") or {}
    settings = {**settings, **logged, "output_dir": str(output_dir)}
    if bids_dir is not None and not Path(settings.get("bids_dir") or "").is_dir():
        settings["bids_dir"] = str(bids_dir)
    run_settings = settings
    try:
        found = spec.assemble_figures(output_dir, subject, session)
    except Exception as err:  # noqa: BLE001 - a malformed reportlet must never break the report
        LOGGER.warning("%s: reportlets not assembled (%s)", label, err)
        found = {"anat": {}, "func": {}}
    row, frame = brainage_row(output_dir, subject, session)
    if row is not None and "sex" in row:
        row["sex"] = html.sex_label(row["sex"])
    age_figure = _brainage_figure(output_dir, subject, session, row, frame) if row else None
    steps = _steps(output_dir, subject, session, row is not None)
    sidecars = _sidecars(output_dir, subject, session)
    qc_rows = _qc_rows(output_dir, subject, session)
    paragraphs = citation.methods_paragraphs(settings)
    keys = citation.cited_keys(paragraphs)
    func_runs = sorted(set(found["func"]) | {s["run"] for s in sidecars["func"]})
    context = {
        "title": f"{label} — bids_brainage report",
        "label": label,
        "subject": subject,
        "session": session,
        "inputs": _inputs(settings, subject, session, status),
        "status": status,
        "steps": steps,
        "warnings": _warnings(sidecars, qc_rows, steps),
        "settings": settings,
        "anat": found["anat"],
        "anat_order": spec.section_reportlets("Anatomical"),
        "func": found["func"],
        "func_order": spec.section_reportlets("Functional"),
        "func_runs": func_runs,
        "sidecars": sidecars,
        "qc_rows": qc_rows,
        "brainage": row,
        "age_figure": age_figure,
        "banner": group.small_training_banner(group.training_size(output_dir, settings, frame))
        if row
        else None,
        "about": html.about({**run_settings, "run_uuid": run_uuid}, status.get("seconds")),
        "methods": [(h, citation.linkify(t)) for h, t, _ in paragraphs],
        "references": [(k, citation.REFERENCES[k][0]) for k in keys],
        "crashes": crash_summaries(output_dir, subject, run_uuid),
        "errors": errors,
        "has_group_report": (output_dir / "group_report.html").is_file(),
    }
    return html.render("subject.html", output_dir / name, **context)
