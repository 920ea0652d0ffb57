"""Collect every finished subject's features from OUTPUT_DIR into one model table.

Only subjects whose participant run finished (a status file under ``logs/participants/``,
written last and atomically) are read, so a group job started while participant jobs are
still running never sees half-finished subjects. A subject with a failed or excluded BOLD
run keeps its structural features (the model predicts it from sMRI only).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_brainage.errors import InputError
from bids_brainage.utils import atomic

LOGGER = logging.getLogger("bids_brainage.gather")

STATUS_DIR = Path("logs") / "participants"
ID_COLUMNS = ("participant_id", "session_id", "subject", "session", "run", "task")


def status_path(output_dir: str | os.PathLike, subject: str, session: str | None) -> Path:
    """Where the participant level records that ``sub-X[_ses-Y]`` finished."""
    name = f"sub-{subject}" + (f"_ses-{session}" if session else "") + ".json"
    return Path(output_dir) / STATUS_DIR / name


def write_status(
    output_dir: str | os.PathLike, subject: str, session: str | None, status: dict[str, Any]
) -> Path:
    """Record a finished participant run (atomic; the group level reads only these subjects)."""
    return atomic.write_json(status_path(output_dir, subject, session), status)


def _subject_dir(output_dir: Path, subject: str, session: str | None) -> Path:
    folder = output_dir / f"sub-{subject}"
    return folder / f"ses-{session}" if session else folder


def _read_wide(path: Path, prefix: str) -> dict[str, float]:
    """One-row feature table → ``{prefix__name: value}`` (a long ``feature``/``value`` table works too)."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(path, f"unreadable features table ({err})") from None
    if {"feature", "value"} <= set(table.columns):
        table = table.set_index("feature")["value"].to_frame().T
    if len(table) != 1:
        raise InputError(path, f"expected one row of features, found {len(table)}")
    row = table.drop(columns=[c for c in ID_COLUMNS if c in table.columns]).iloc[0]
    out = {}
    for name, value in row.items():
        key = name if str(name).startswith(f"{prefix}__") else f"{prefix}__{name}"
        out[key] = pd.to_numeric(value, errors="coerce")
    return out


#: Structural volumes (mL) that enter the model as fractions of TIV: the tissue totals and
#: every regional GM volume (``<atlas>_gmvol_<region>``, user atlases included).
TISSUE_VOLUMES = ("GM", "WM", "CSF")


def _is_volume(name: str) -> bool:
    return name in TISSUE_VOLUMES or "_gmvol_" in name


def per_tiv(features: dict[str, float], source: Path) -> dict[str, float]:
    """Volumes as fractions of the intracranial volume (``smri__<name>_per_TIV``); TIV kept.

    Head size scales every volume (men's TIV is ~10 % larger) and hides the ageing signal
    in the ratios (proportional head-size correction, e.g. Voevodskaya et al. 2014). On 126
    simulated subjects of the pipeline benchmark, ridge on raw volumes had MAE 3.9 years and
    gap-vs-truth r 0.47; on fractions of TIV (TIV kept as one feature), 3.2 and 0.67. The new
    names make a bundle trained on raw volumes fail its feature check instead of predicting
    from numbers on another scale.
    """
    if not any(_is_volume(k.removeprefix("smri__")) for k in features):
        return features
    tiv = features.get("smri__TIV")
    if tiv is None or not np.isfinite(tiv) or tiv <= 0:
        raise InputError(source, "no positive TIV column: the volumes cannot be scaled to head size")
    scaled = {}
    for key, value in features.items():
        if _is_volume(key.removeprefix("smri__")):
            key, value = f"{key}_per_TIV", value / tiv
        scaled[key] = value
    return scaled


def _functional_usable(features_tsv: Path) -> tuple[bool, str]:
    """Whether a run's functional features may be used (its QC sidecar may exclude it)."""
    sidecar = features_tsv.with_name(features_tsv.name.removesuffix(".tsv") + ".json")
    if not sidecar.exists():
        return True, ""
    try:
        meta = json.loads(sidecar.read_text())
    except ValueError:
        return False, f"{sidecar}: unreadable QC sidecar"
    qc = meta.get("QC", meta)
    if qc.get("excluded") or qc.get("Excluded"):
        return False, str(
            qc.get("exclusion_reason") or qc.get("reason") or qc.get("ExclusionReason") or "excluded"
        )
    return True, ""


def structural_qc(features_tsv: Path) -> tuple[bool, str]:
    """Whether a structural features table passed the segmentation QC (its sidecar's ``QC``).

    The anatomical workflow writes ``QC.excluded`` and ``QC.exclusion_reason``
    (:func:`bids_brainage.compute.anat_ops.segmentation_qc`); tables written before the
    QC existed have none and pass.
    """
    sidecar = features_tsv.with_name(features_tsv.name.removesuffix(".tsv") + ".json")
    try:
        qc = json.loads(sidecar.read_text()).get("QC") or {}
    except (OSError, ValueError):
        return True, ""
    if qc.get("excluded"):
        return False, "structural QC failed: " + str(qc.get("exclusion_reason") or "see the features sidecar")
    return True, ""


def features_of(output_dir: str | os.PathLike, subject: str, session: str | None) -> pd.DataFrame:
    """One subject/session's features (one row, as in :func:`gather_features`)."""
    row, _ = subject_row(Path(output_dir), subject, session)
    if row is None:
        raise InputError(_subject_dir(Path(output_dir), subject, session), "no structural features found")
    return pd.DataFrame([row])


def subject_row(
    output_dir: Path, subject: str, session: str | None, bold_outcomes: dict[str, str] | None = None
) -> tuple[dict[str, Any] | None, list[dict]]:
    """Features of one subject/session (None without structural features) and its BOLD QC rows.

    ``bold_outcomes`` (BOLD file name → ``ok``/``failed``, from the status file) limits the
    functional features to runs whose latest participant run succeeded; None uses them all.
    """
    folder = _subject_dir(output_dir, subject, session)
    row: dict[str, Any] = {
        "participant_id": f"sub-{subject}",
        "session_id": f"ses-{session}" if session else None,
    }
    qc_rows: list[dict[str, Any]] = []
    structural = sorted((folder / "anat").glob("*_desc-structural_features.tsv"))
    if not structural:
        return None, qc_rows
    passed, reason = structural_qc(structural[0])
    if not passed:
        # A failed segmentation gives wrong volumes: the person is kept out of the model
        # and listed in the QC table (and in brainage.tsv as excluded by the group level).
        qc_rows.append(
            {
                "participant_id": row["participant_id"],
                "session_id": row["session_id"],
                "run": structural[0].name,
                "excluded": True,
                "reason": reason,
            }
        )
        return None, qc_rows
    row.update(per_tiv(_read_wide(structural[0], "smri"), structural[0]))
    used = False
    for tsv in sorted((folder / "func").glob("*_desc-functional_features.tsv")):
        usable, reason = _functional_usable(tsv)
        if usable and bold_outcomes is not None and not _latest_run_ok(tsv.name, bold_outcomes):
            usable, reason = False, "the latest participant run of this BOLD run failed (features are stale)"
        qc_rows.append(
            {
                "participant_id": row["participant_id"],
                "session_id": row["session_id"],
                "run": tsv.name,
                "excluded": not usable,
                "reason": reason,
                **_qc_numbers(tsv),
            }
        )
        if usable and not used:
            # The first usable run (sorted by name) feeds the model.
            row.update(_read_wide(tsv, "fmri"))
            used = True
    return row, qc_rows


def read_status(path: Path) -> dict[str, Any]:
    """A participant status file, or an :class:`InputError` naming it (empty, not JSON, no subject)."""
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise InputError(
            path,
            f"unreadable participant status file ({reason}); rerun the participant level for this subject",
        ) from None
    if not isinstance(status, dict) or not isinstance(status.get("subject"), str):
        raise InputError(
            path, "participant status file has no 'subject'; rerun the participant level for this subject"
        )
    outcomes = status.get("outcomes")
    if outcomes is not None and (
        not isinstance(outcomes, dict) or not isinstance(outcomes.get("bold", {}), dict)
    ):
        raise InputError(
            path, "participant status file has malformed 'outcomes'; rerun the participant level"
        )
    return status


def _latest_run_ok(features_name: str, bold_outcomes: dict[str, str]) -> bool:
    """Whether the BOLD run behind a ``*_desc-functional_features.tsv`` succeeded last time.

    The derivative keeps the raw run's entities (``desc`` aside), so the run is the BOLD
    file whose entities include them all; a run absent from the latest status is stale.
    """
    from bids_brainage.bids import _entities

    wanted = {k: v for k, v in _entities(features_name)[0].items() if k != "desc"}
    matches = [
        outcome for name, outcome in bold_outcomes.items() if wanted.items() <= _entities(name)[0].items()
    ]
    return bool(matches) and all(outcome == "ok" for outcome in matches)


def gather_features(
    output_dir: str | os.PathLike, labels: set[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of every finished subject/session whose latest participant run succeeded.

    A subject whose latest run failed on its anatomy is left out (the features on disk
    may be from an earlier run) and named in one warning; of a subject whose anatomy
    succeeded, only the BOLD runs that succeeded contribute (the others are marked
    excluded in the QC table).

    Parameters
    ----------
    output_dir : path
        OUTPUT_DIR of the participant level.
    labels : set of str, optional
        Participants to read (``sub-X``); all when None.

    Raises
    ------
    InputError
        A status file that is empty, not JSON or lacks ``subject`` (see `read_status`).

    Returns
    -------
    features : DataFrame
        One row per subject/session: ``participant_id`` (``sub-X``), ``session_id``
        (``ses-Y`` or None), then ``smri__*`` and ``fmri__*`` columns (NaN where a modality
        is missing or excluded).
    qc : DataFrame
        One row per BOLD run, and one per structural run that failed the segmentation QC
        (then the subject has no row in ``features``): ``participant_id, session_id, run,
        excluded, reason``.
    """
    output_dir = Path(output_dir)
    rows, qc_rows, skipped, qc_failed = [], [], [], []
    for status_file in sorted((output_dir / STATUS_DIR).glob("sub-*.json")):
        status = read_status(status_file)
        subject, session = status["subject"], status.get("session")
        label = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        if labels is not None and f"sub-{subject}" not in labels:
            continue
        outcomes = status.get("outcomes")
        if outcomes is None and not status.get("ok", False):
            # Written before per-modality outcomes were recorded: nothing tells what is fresh.
            skipped.append(f"{label} (its latest participant run failed)")
            continue
        if outcomes is not None and outcomes.get("anat") != "ok":
            errors = status.get("errors") or ["unknown error"]
            skipped.append(f"{label} (its latest participant run failed: {errors[0]})")
            continue
        bold_outcomes = None if outcomes is None else dict(outcomes.get("bold") or {})
        row, qc = subject_row(output_dir, subject, session, bold_outcomes)
        qc_rows += qc
        if row is None:
            failed_qc = [r["reason"] for r in qc if str(r["run"]).endswith("_desc-structural_features.tsv")]
            if failed_qc:
                qc_failed.append(f"{label} ({failed_qc[0]})")
            else:
                LOGGER.warning("sub-%s: no structural features; left out of the group level", subject)
            continue
        rows.append(row)
    if skipped:
        LOGGER.warning(
            "%d subject(s) left out of the group level (rerun the participant level for them): %s",
            len(skipped),
            "; ".join(skipped),
        )
    if qc_failed:
        LOGGER.warning(
            "%d subject(s) left out of the model: their segmentation failed the structural QC "
            "(see their report and group/qc.tsv): %s",
            len(qc_failed),
            "; ".join(qc_failed),
        )
    features = pd.DataFrame(rows)
    if features.empty:
        return features, pd.DataFrame(qc_rows)
    ordered = ["participant_id", "session_id"] + sorted(c for c in features.columns if c.startswith("smri__"))
    ordered += sorted(c for c in features.columns if c.startswith("fmri__"))
    return features[ordered], pd.DataFrame(
        qc_rows,
        columns=[
            "participant_id",
            "session_id",
            "run",
            "excluded",
            "reason",
            "mean_fd",
            "fraction_scrubbed",
            "tsnr",
        ],
    )


def _qc_numbers(features_tsv: Path) -> dict[str, float]:
    sidecar = features_tsv.with_name(features_tsv.name.removesuffix(".tsv") + ".json")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return {}
    qc = meta.get("QC", meta)
    return {key: qc.get(key, np.nan) for key in ("mean_fd", "fraction_scrubbed", "tsnr")}


def join_demographics(features: pd.DataFrame, demographics: pd.DataFrame) -> pd.DataFrame:
    """Add ``age``, ``sex`` and ``site`` (from :func:`bids_brainage.bids.demographics`) to the features."""
    demo = demographics.copy()
    demo["participant_id"] = "sub-" + demo["subject"].astype(str)
    demo["session_id"] = [f"ses-{s}" if isinstance(s, str) and s else None for s in demo["session"]]
    by_session = demo.set_index(["participant_id", "session_id"])[["age", "sex", "site"]]
    by_subject = demo.drop_duplicates("participant_id").set_index("participant_id")[["age", "sex", "site"]]
    values = []
    for pid, sid in zip(features["participant_id"], features["session_id"], strict=True):
        key = (pid, sid)
        if sid is not None and key in by_session.index:
            values.append(by_session.loc[key].to_dict())
        elif pid in by_subject.index:
            values.append(by_subject.loc[pid].to_dict())
        else:
            values.append({"age": np.nan, "sex": None, "site": None})
    demo_cols = pd.DataFrame(values, index=features.index)
    return pd.concat([features[["participant_id", "session_id"]], demo_cols, features.iloc[:, 2:]], axis=1)
