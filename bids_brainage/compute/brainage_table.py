"""The brain-age table: one schema for every table of predictions (no nipype, no torch).

``brainage.tsv`` (group level), ``sub-<label>_desc-brainage_prediction.tsv`` (participant
level with ``--model``) and the output of ``bids_brainage model predict`` share this schema:
the same columns in the same order (`COLUMNS`), ages rounded to `AGE_DECIMALS` decimals,
sex as ``M``/``F``, boolean flags as ``true``/``false`` (``n/a`` where unknown) and a JSON
sidecar in the BIDS tabular-file style: one ``{"Description", "Units"/"Levels"}`` object per
column (`sidecar`). `brainage_table` turns any predictions frame (the model's names
``lower``/``upper``/``gap``/``corrected_gap`` and sex as 0/1 are accepted) into it;
`write_brainage_table` writes the table and its sidecar, each through a temporary name.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LOGGER = logging.getLogger("bids_brainage.brainage")

#: Decimals of every age and gap (0.01 year is under four days: finer digits are noise).
AGE_DECIMALS = 2

_YEARS = "years"
_FLAG = {"true": "yes", "false": "no"}
_INTERVAL = (
    "bound of the prediction interval (split-conformal, calibrated within bins of chronological "
    "age; a person without an age gets an interval given the predicted age, see note)."
)

#: Every column, in order, with its sidecar entry (BIDS tabular-file style).
COLUMNS: dict[str, dict[str, Any]] = {
    "participant_id": {"Description": "Participant label (sub-<label>)."},
    "session_id": {"Description": "Session label (ses-<label>); n/a without sessions."},
    "age": {
        "Description": "Chronological age from participants.tsv or sessions.tsv.",
        "Units": _YEARS,
    },
    "sex": {
        "Description": "Sex used by the sex-aware model.",
        "Levels": {"M": "male", "F": "female"},
    },
    "site": {"Description": "Acquisition site from participants.tsv (n/a when absent)."},
    "predicted_age": {
        "Description": "Predicted brain age: mean of the fold ensemble, or the out-of-fold prediction of a training participant.",
        "Units": _YEARS,
    },
    "interval_lower": {"Description": "Lower " + _INTERVAL, "Units": _YEARS},
    "interval_upper": {"Description": "Upper " + _INTERVAL, "Units": _YEARS},
    "brainage_gap": {"Description": "Brain-age gap: predicted_age - age.", "Units": _YEARS},
    "brainage_gap_corrected": {
        "Description": "Brain-age gap after the age-bias correction fitted on training data only.",
        "Units": _YEARS,
    },
    "modalities": {
        "Description": "Inputs of this prediction.",
        "Levels": {
            "smri+fmri": "structural and functional features",
            "smri": "structural features only (no usable BOLD run)",
            "none": "not predicted (see note)",
        },
    },
    "fold": {
        "Description": "Cross-validation fold in which the participant was held out (n/a when predicted by a trained model)."
    },
    "split": {
        "Description": "How the row came about.",
        "Levels": {
            "oof": "out-of-fold prediction of a training participant",
            "predict": "prediction by a trained model",
            "excluded": "the segmentation failed the structural QC (reason in group/qc.tsv): neither trained on nor predicted",
        },
    },
    "flag_age_out_of_range": {
        "Description": "The age lies outside the age range of the model's training data: the prediction is an extrapolation (n/a without age).",
        "Levels": _FLAG,
    },
    "flag_unseen_site": {
        "Description": "The site was not among the training data's sites (n/a when the model does not record its sites).",
        "Levels": _FLAG,
    },
    "flag_qc_failed": {
        "Description": "The segmentation failed the structural QC (n/a where QC results are not known, e.g. bids_brainage model predict).",
        "Levels": _FLAG,
    },
    "flag_bold_excluded": {
        "Description": "At least one BOLD run was excluded by the run QC or failed (reasons in group/qc.tsv and the log; n/a where not known).",
        "Levels": _FLAG,
    },
    "note": {
        "Description": "Remarks on the prediction: why it was refused, or how its interval was calibrated (n/a when none)."
    },
    "harmonization": {
        "Description": "Site harmonisation (ComBat) of this row's features; present only when the model harmonises sites.",
        "Levels": {
            "known": "a training site",
            "new": "a new site, fitted on its own rows",
            "unseen": "a new site with too few rows to fit: not harmonised",
            "missing": "no features to harmonise",
            "none": "not harmonised",
        },
    },
}

#: Columns written only when they have something to say.
OPTIONAL = ("harmonization",)
AGE_COLUMNS = (
    "age",
    "predicted_age",
    "interval_lower",
    "interval_upper",
    "brainage_gap",
    "brainage_gap_corrected",
)
FLAG_COLUMNS = tuple(name for name in COLUMNS if name.startswith("flag_"))

#: The model's column names (``bids_brainage.model.cv.predict_table``) → the schema's.
MODEL_NAMES = {
    "lower": "interval_lower",
    "upper": "interval_upper",
    "gap": "brainage_gap",
    "corrected_gap": "brainage_gap_corrected",
}
_SEX_CODES = {"f": "F", "female": "F", "0": "F", "f/0": "F", "m": "M", "male": "M", "1": "M", "m/1": "M"}


def sex_label(value: Any) -> str | None:
    """``M``/``F`` from any coding the tables use (M/F, male/female, the model's 1/0 or 1.0/0.0,
    a metrics key ``F/0``/``M/1`` or ``sex F``); ``None`` for anything else."""
    text = str(value).strip().lower().removeprefix("sex ")
    return _SEX_CODES.get(text.removesuffix(".0"))


def sex_labels(values: pd.Series) -> pd.Series:
    """Sex as ``M``/``F`` (:func:`sex_label`); anything else is missing."""
    return values.map(sex_label).astype(object).where(lambda s: s.notna(), np.nan)


def _as_flag(values: Any, known: Any = True) -> pd.Series:
    """Booleans where ``known``, missing elsewhere."""
    flags = pd.Series(values, dtype=object).astype(bool).astype(object)
    flags[~pd.Series(known, index=flags.index, dtype=bool)] = np.nan
    return flags


def bold_excluded(qc: pd.DataFrame) -> set[tuple[str, str]]:
    """``(participant_id, session_id or "n/a")`` of everyone with an excluded BOLD run in a QC
    table of :func:`bids_brainage.gather.gather_features`."""
    if qc is None or qc.empty or not {"run", "excluded"} <= set(qc.columns):
        return set()
    bold = qc[~qc["run"].astype(str).str.endswith("_desc-structural_features.tsv")]
    bold = bold[bold["excluded"].astype(str).str.lower().isin(["true", "1", "1.0"])]
    return {(str(p), _session(s)) for p, s in zip(bold["participant_id"], bold["session_id"], strict=True)}


def _session(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith("ses-") else "n/a"


def brainage_table(
    predictions: pd.DataFrame,
    training: Mapping[str, Any] | None = None,
    qc: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Predictions in the schema of `COLUMNS`: renamed, ordered, rounded and flagged.

    Parameters
    ----------
    predictions : DataFrame
        Rows of predictions: ``participant_id`` and ``predicted_age`` at least; any of the
        other columns (under the schema's or the model's names), sex as M/F or 1/0. A
        ``site_seen_in_training`` column (from the model) fills ``flag_unseen_site``.
    training : mapping, optional
        The bundle's training summary (``age_min``, ``age_max``, ``sites``; ``model.json``
        ``training_summary``): the reference of ``flag_age_out_of_range`` and
        ``flag_unseen_site`` (n/a without it).
    qc : DataFrame, optional
        The QC table of the group level (``participant_id``, ``session_id``, ``run``,
        ``excluded``): fills ``flag_qc_failed`` and ``flag_bold_excluded``; without it they
        are n/a except on rows with ``split`` = ``excluded``.

    Returns
    -------
    DataFrame
        The columns of `COLUMNS` in order (``harmonization`` only when given).
    """
    frame = predictions.rename(columns=MODEL_NAMES).reset_index(drop=True).copy()
    for name in COLUMNS:
        if name not in frame and name not in OPTIONAL:
            frame[name] = np.nan
    frame["session_id"] = [_session(s) for s in frame["session_id"]]
    frame["sex"] = sex_labels(frame["sex"])
    for name in AGE_COLUMNS:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").round(AGE_DECIMALS)
    frame["fold"] = pd.to_numeric(frame["fold"], errors="coerce").astype("Int64")
    frame["note"] = frame["note"].mask(frame["note"].astype(str).eq(""))
    age = frame["age"].to_numpy(float)
    training = training or {}
    if {"age_min", "age_max"} <= set(training):
        low, high = float(training["age_min"]), float(training["age_max"])
        frame["flag_age_out_of_range"] = _as_flag((age < low) | (age > high), np.isfinite(age))
    if training.get("sites"):
        sites = set(map(str, training["sites"]))
        site = frame["site"].where(frame["site"].notna(), "n/a").astype(str)
        frame["flag_unseen_site"] = _as_flag(~site.isin(sites))
    elif "site_seen_in_training" in predictions:
        seen = predictions["site_seen_in_training"].astype(str).str.lower().eq("true").to_numpy()
        frame["flag_unseen_site"] = _as_flag(~seen)
    excluded = frame["split"].astype(str).eq("excluded").to_numpy()
    if qc is not None:
        frame["flag_qc_failed"] = _as_flag(excluded)
        failed_bold = bold_excluded(qc)
        keys = zip(frame["participant_id"].astype(str), frame["session_id"], strict=True)
        frame["flag_bold_excluded"] = _as_flag([k in failed_bold for k in keys], ~excluded)
    else:
        frame["flag_qc_failed"] = _as_flag(excluded, excluded)
    out = frame[[c for c in COLUMNS if c not in OPTIONAL or c in frame]].copy()
    out.attrs["training"] = dict(training)
    return out


def log_flags(brainage: pd.DataFrame) -> None:
    """One warning per flag of a brain-age table that is true for someone, naming them."""
    reasons = {
        "flag_age_out_of_range": "age outside the training age range (the prediction extrapolates)",
        "flag_unseen_site": "site not seen in training",
    }
    for column, reason in reasons.items():
        flagged = brainage[brainage[column].eq(True)]
        if len(flagged):
            names = ", ".join(flagged["participant_id"].astype(str)[:10])
            more = f" and {len(flagged) - 10} more" if len(flagged) > 10 else ""
            LOGGER.warning("%d row(s) with %s: %s%s (%s)", len(flagged), reason, names, more, column)


def sidecar(table: pd.DataFrame, **metadata: Any) -> dict[str, Any]:
    """The JSON sidecar of a brain-age table: an entry per column, then ``metadata``.

    The flags' entries name their reference (training ages and sites) when `brainage_table`
    had it (kept in ``table.attrs["training"]``).
    """
    entries = {c: dict(COLUMNS[c]) for c in table.columns}
    training = table.attrs.get("training") or {}
    flag = entries.get("flag_age_out_of_range")
    if flag is not None and {"age_min", "age_max"} <= set(training):
        low, high = float(training["age_min"]), float(training["age_max"])
        flag["Description"] += f" Training ages: {low:.2f} to {high:.2f} years."
    flag = entries.get("flag_unseen_site")
    if flag is not None and training.get("sites"):
        sites = [str(s) for s in training["sites"]]
        more = f" and {len(sites) - 20} more" if len(sites) > 20 else ""
        flag["Description"] += f" Training sites: {', '.join(sites[:20])}{more}."
    return {**entries, **metadata}


def _for_tsv(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for name in FLAG_COLUMNS:
        out[name] = out[name].map(lambda v: v if pd.isna(v) else ("true" if v else "false"))
    return out


def write_brainage_table(path: str | os.PathLike, table: pd.DataFrame, **metadata: Any) -> Path:
    """Write ``table`` (from `brainage_table`) as TSV and its sidecar (``.json`` beside it).

    Each file is written to a temporary name and then renamed; returns the TSV path.
    """
    from bids_brainage.utils import atomic

    path = Path(path)
    atomic.write_tsv(path, _for_tsv(table))
    # Not key-sorted: the entries follow the columns.
    text = json.dumps(sidecar(table, **metadata), indent=2, default=str) + "\n"
    atomic.write_text(path.with_suffix(".json"), text)
    return path


def read_brainage_table(path: str | os.PathLike) -> pd.DataFrame:
    """A brain-age table as written (``n/a`` → missing; flags as booleans)."""
    frame = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["n/a"])
    for name in FLAG_COLUMNS:
        if name in frame:
            frame[name] = frame[name].map(lambda v: v if pd.isna(v) else str(v).lower() == "true")
    return frame


def training_summary(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The bundle's ``training_summary`` (its ``model.json``; empty when it has none)."""
    from bids_brainage.model.bundle import META

    meta = json.loads((Path(model_dir) / META).read_text(encoding="utf-8"))
    summary = meta.get("training_summary")
    return summary if isinstance(summary, dict) else {}
