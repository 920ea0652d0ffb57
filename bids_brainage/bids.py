"""BIDS input layer: pybids queries, demographics (participants.tsv/sessions.tsv), validation.

Everything a user gave is only read, never modified; pybids' index lives in the work dir.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_brainage.defaults import PLAUSIBLE_TR_SECONDS
from bids_brainage.errors import InputError, UsageError

LOGGER = logging.getLogger("bids_brainage.bids")

#: Columns accepted as age (first match wins), in participants.tsv and sessions.tsv.
AGE_COLUMNS = ("age", "Age", "AGE", "age_at_scan", "age_at_first_scan_years")
#: Columns accepted as sex (first match wins).
SEX_COLUMNS = ("sex", "Sex", "SEX", "gender", "Gender")
#: Columns accepted as acquisition site (first match wins).
SITE_COLUMNS = ("site", "Site", "SITE", "scanner", "center")
#: Default codes for sex; ``--sex-map`` adds or overrides entries.
SEX_CODES = {
    "m": "M", "male": "M", "man": "M", "1": "M",
    "f": "F", "female": "F", "woman": "F", "2": "F",
}  # fmt: skip
MISSING = {"", "n/a", "na", "nan", "none", "null"}
FILTER_KEYS = ("t1w", "bold")


@dataclass
class SessionData:
    """Inputs found for one subject (and session)."""

    subject: str
    session: str | None
    t1w: str | None
    bold: list[str] = field(default_factory=list)
    t1w_candidates: list[str] = field(default_factory=list)


def load_layout(bids_dir: str | os.PathLike, database_dir: str | os.PathLike | None = None) -> Any:
    """Index ``bids_dir`` with pybids (no validation: files with non-BIDS names are ignored).

    ``database_dir`` (in the work dir) caches the index so participant jobs do not re-index.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    # pybids ignores code/, derivatives/, sourcedata/ and dot files by default. Metadata is
    # not indexed: one broken sidecar would stop the whole dataset; we read sidecars per run.
    indexer = BIDSLayoutIndexer(validate=False, index_metadata=False)
    kwargs: dict[str, Any] = {"indexer": indexer}
    if database_dir is not None:
        kwargs["database_path"] = str(database_dir)
    try:
        return BIDSLayout(str(bids_dir), **kwargs)
    except Exception as err:  # pybids raises several types for unreadable datasets
        raise UsageError(f"{bids_dir}: cannot index the BIDS dataset ({err})") from None


def select_subjects(layout: Any, requested: list[str]) -> list[str]:
    """Subjects to process: all in the dataset, or the requested ones (which must exist)."""
    available = sorted(layout.get_subjects())
    invalid = _invalid_subject_folders(Path(layout.root))
    if not available:
        if invalid:
            raise UsageError(
                f"{layout.root}: no valid subject folder: {_invalid_summary(invalid)} "
                "(labels may only contain letters and digits [0-9A-Za-z])"
            )
        raise UsageError(f"{layout.root}: no subjects (sub-*) found in the dataset")
    if invalid:
        LOGGER.warning(
            "%s: folders with invalid labels are ignored: %s (labels may only contain letters and digits)",
            layout.root,
            _invalid_summary(invalid),
        )
    if not requested:
        return available
    missing = [label for label in requested if label not in available]
    if missing:
        shown = ", ".join(available[:20]) + (" ..." if len(available) > 20 else "")
        raise UsageError(
            f"{layout.root}: participant label(s) not found: {', '.join(missing)}; available: {shown}"
        )
    return sorted(requested)


def _invalid_subject_folders(root: Path) -> list[str]:
    """``sub-*`` folders whose label pybids cannot read (e.g. ``sub-ü01``, ``sub-01_a``)."""
    from bids_brainage.derivatives import check_label

    invalid = []
    for folder in sorted(root.glob("sub-*")):
        try:
            check_label(folder.name, "sub")
        except ValueError:
            if folder.is_dir():
                invalid.append(folder.name)
    return invalid


def _invalid_summary(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def parse_bids_filters(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Parse fMRIPrep's ``--bids-filter-file``: a JSON object with optional ``t1w``/``bold`` keys."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: BIDS filter file does not exist") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{path}: BIDS filter file is not valid JSON ({_first_line(err)})") from None
    if not isinstance(data, dict):
        raise UsageError(
            f"{path}: BIDS filter file must hold a JSON object with keys {', '.join(FILTER_KEYS)}"
        )
    unknown = sorted(set(data) - set(FILTER_KEYS))
    if unknown:
        raise UsageError(
            f"{path}: unknown keys {unknown} in BIDS filter file; allowed: {', '.join(FILTER_KEYS)}"
        )
    for key, value in data.items():
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise UsageError(f"{path}: filter '{key}' must be a JSON object of BIDS entities")
    return data


def collect_data(
    layout: Any,
    subject: str,
    task: str = "rest",
    sessions: list[str] | None = None,
    bids_filters: dict[str, dict[str, Any]] | None = None,
) -> list[SessionData]:
    """T1w and BOLD runs of one subject, one :class:`SessionData` per session (or one if none).

    When several T1w runs match, the first in (session, acquisition, run) order is used
    and the choice is logged: deterministic, and the others are listed in the report.
    """
    filters = bids_filters or {}
    found = layout.get_sessions(subject=subject) or [None]
    if sessions:
        found = [s for s in found if s in sessions]
    out = []
    for ses in found:
        query: dict[str, Any] = {
            "subject": subject,
            "extension": [".nii", ".nii.gz"],
            "return_type": "filename",
        }
        if ses is not None:
            query["session"] = ses
        t1w_query = {**query, "datatype": "anat", "suffix": "T1w", **filters.get("t1w", {})}
        bold_query = {**query, "datatype": "func", "suffix": "bold", "task": task, **filters.get("bold", {})}
        t1ws = sorted(layout.get(**t1w_query))
        bolds = sorted(layout.get(**bold_query))
        chosen = t1ws[0] if t1ws else None
        if len(t1ws) > 1:
            LOGGER.warning("sub-%s: %d T1w images found; using %s", subject, len(t1ws), Path(chosen).name)
        out.append(SessionData(subject=subject, session=ses, t1w=chosen, bold=bolds, t1w_candidates=t1ws))
    return out


def _entities(name: str) -> tuple[dict[str, str], str]:
    """Entities and suffix of a BIDS file name (``sub-01_task-rest_bold.nii.gz``)."""
    stem = name.split(".", 1)[0]
    parts = stem.split("_")
    entities = dict(part.split("-", 1) for part in parts[:-1] if "-" in part)
    return entities, parts[-1]


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """Load one JSON sidecar; a clear :class:`InputError` when it is unreadable or not an object."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise InputError(path, f"cannot read the JSON sidecar ({_first_line(err)})") from None
    if not isinstance(data, dict):
        raise InputError(path, "the JSON sidecar must hold an object")
    return data


def sidecar_metadata(bids_root: str | os.PathLike, data_file: str | os.PathLike) -> dict[str, Any]:
    """Metadata of ``data_file`` following the BIDS inheritance principle.

    Sidecars with the same suffix whose entities are a subset of the file's, from the dataset
    root down to the file's folder, are merged in that order (the most specific wins).
    """
    # Folders are resolved, the file itself is not: in a DataLad/git-annex dataset the data
    # file is a symlink into .git/annex/objects whose target name is an annex key, while the
    # entities (and the sidecars) belong to the link's own name and folder.
    root, data_file = Path(bids_root).resolve(), data_path(data_file)
    entities, suffix = _entities(data_file.name)
    folders = [root, *reversed([p for p in data_file.parent.parents if root in p.parents]), data_file.parent]
    meta: dict[str, Any] = {}
    for folder in dict.fromkeys(folders):
        candidates = []
        for sidecar in sorted(folder.glob(f"*_{suffix}.json")):
            side_entities, side_suffix = _entities(sidecar.name)
            if side_suffix == suffix and side_entities.items() <= entities.items():
                candidates.append((len(side_entities), sidecar))
        for _, sidecar in sorted(candidates):
            meta.update(read_sidecar(sidecar))
    return meta


def data_path(path: str | os.PathLike) -> Path:
    """Absolute path of a data file with its folders resolved but not the file itself.

    A symlinked file (DataLad/git-annex datasets) keeps its BIDS name and location.
    """
    path = Path(path).expanduser()
    return Path(os.path.abspath(path)).parent.resolve() / path.name


def check_available(path: str | os.PathLike) -> None:
    """Refuse a data file that is a symlink to missing content (annexed, not retrieved).

    Raises
    ------
    InputError
        When ``path`` is a dangling symbolic link, with the command that fetches it.
    """
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise InputError(
            path,
            "is a symbolic link to missing content (a DataLad/git-annex file that was not "
            "retrieved: run 'datalad get' on it)",
        )


def repetition_time(value: Any, bold_file: str | os.PathLike) -> float:
    """``RepetitionTime`` in seconds within :data:`PLAUSIBLE_TR_SECONDS`, or an
    :class:`InputError` naming the run (a TR in milliseconds would silently break the band-pass)."""
    if value is None:
        raise InputError(bold_file, "RepetitionTime is missing from the JSON sidecar")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(bold_file, f"RepetitionTime {value!r} is not a number")
    try:
        tr = float(value)
    except ValueError:
        raise InputError(bold_file, f"RepetitionTime {value!r} is not a number") from None
    if not np.isfinite(tr) or tr <= 0:
        raise InputError(bold_file, f"RepetitionTime {tr!r} must be a positive number of seconds")
    low, high = PLAUSIBLE_TR_SECONDS
    if not low <= tr <= high:
        hint = f" (milliseconds? BIDS wants seconds: {tr / 1000:g})" if 100 <= tr <= 10000 else ""
        raise InputError(
            bold_file,
            f"RepetitionTime {tr:g} is outside the plausible {low:g}-{high:g} s{hint}",
        )
    return tr


def bold_metadata(bids_dir: str | os.PathLike, bold_file: str) -> dict[str, Any]:
    """Sidecar metadata of a BOLD run (inheritance applied); checks ``RepetitionTime``."""
    check_available(bold_file)
    meta = sidecar_metadata(bids_dir, bold_file)
    tr = repetition_time(meta.get("RepetitionTime"), bold_file)
    meta["RepetitionTime"] = tr
    return meta


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _read_table(path: Path) -> pd.DataFrame:
    """Read a BIDS TSV as strings (so codes like ``01`` and ``n/a`` survive), with clear errors."""
    try:
        _check_field_counts(path)
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise InputError(path, f"not a readable tab-separated table ({_first_line(err)})") from None
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _check_field_counts(path: Path) -> None:
    """Every row must have as many tab-separated fields as the header.

    pandas reads a row with an extra field by shifting its columns (the first becomes an
    index), which later reads as a nonsense value (e.g. "age 'F' is not a number").
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = len(lines[0].split("\t")) if lines else 0
    for number, line in enumerate(lines[1:], start=2):
        found = len(line.split("\t"))
        if line.strip() and found != expected:
            raise InputError(
                path, f"line {number} has {found} tab-separated fields, the header has {expected}"
            )


def _pick_column(table: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((name for name in names if name in table.columns), None)


def _parse_age(values: pd.Series, path: Path) -> pd.Series:
    ages = []
    for raw in values:
        text = str(raw).strip()
        if text.lower() in MISSING:
            ages.append(np.nan)
            continue
        try:
            age = float(text)
        except ValueError:
            raise InputError(path, f"age {text!r} is not a number (use n/a for missing)") from None
        if not np.isfinite(age) or age < 0 or age > 130:
            raise InputError(path, f"age {text!r} is out of range (0-130 years)")
        ages.append(age)
    return pd.Series(ages, index=values.index, dtype=float)


def _parse_sex(values: pd.Series, path: Path, sex_map: dict[str, str]) -> pd.Series:
    codes = {**SEX_CODES, **{k.lower(): v for k, v in sex_map.items()}}
    out = []
    for raw in values:
        text = str(raw).strip().lower()
        if text in MISSING:
            out.append(None)
        elif text in codes:
            out.append(codes[text])
        else:
            raise InputError(
                path,
                f"unknown sex code {str(raw)!r}; known: M/F, male/female, m/f, 1/2 (add codes with --sex-map)",
            )
    return pd.Series(out, index=values.index, dtype=object)


def _clean_ids(values: pd.Series, prefix: str, path: Path) -> pd.Series:
    from bids_brainage.derivatives import check_label

    cleaned = []
    for raw in values:
        text = str(raw).strip()
        try:
            cleaned.append(check_label(text, prefix))
        except ValueError as err:
            raise InputError(path, str(err)) from None
    return pd.Series(cleaned, index=values.index, dtype=object)


def read_participants(bids_dir: str | os.PathLike, sex_map: dict[str, str] | None = None) -> pd.DataFrame:
    """Demographics from ``participants.tsv``.

    Returns a table indexed by subject label (no ``sub-``) with columns ``age`` (float,
    NaN when missing), ``sex`` (``"M"``, ``"F"`` or None) and ``site`` (str or None).
    The column names accepted are :data:`AGE_COLUMNS`, :data:`SEX_COLUMNS` and
    :data:`SITE_COLUMNS`; ``n/a`` marks a missing value.

    Raises
    ------
    InputError
        Missing file or ``participant_id`` column, duplicated participants, non-numeric
        or out-of-range ages, unknown sex codes.
    """
    path = Path(bids_dir) / "participants.tsv"
    table = _read_table(path)
    if "participant_id" not in table.columns:
        raise InputError(path, "no participant_id column")
    ids = _clean_ids(table["participant_id"], "sub", path)
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise InputError(path, f"duplicated participant rows: {', '.join('sub-' + d for d in duplicated)}")
    out = pd.DataFrame(index=pd.Index(ids, name="subject"))
    age_col, sex_col, site_col = (_pick_column(table, c) for c in (AGE_COLUMNS, SEX_COLUMNS, SITE_COLUMNS))
    out["age"] = _parse_age(table[age_col], path).to_numpy() if age_col else np.nan
    out["sex"] = _parse_sex(table[sex_col], path, sex_map or {}).to_numpy() if sex_col else None
    if site_col:
        sites = table[site_col].map(lambda s: None if str(s).strip().lower() in MISSING else str(s).strip())
        out["site"] = sites.to_numpy()
    else:
        out["site"] = None
    return out


def read_sessions(bids_dir: str | os.PathLike, subject: str) -> pd.DataFrame | None:
    """Per-session ages from ``sub-X/sub-X_sessions.tsv`` (None when the file is absent).

    Returns a table indexed by session label with an ``age`` column.
    """
    path = Path(bids_dir) / f"sub-{subject}" / f"sub-{subject}_sessions.tsv"
    if not path.exists():
        return None
    table = _read_table(path)
    if "session_id" not in table.columns:
        raise InputError(path, "no session_id column")
    ids = _clean_ids(table["session_id"], "ses", path)
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise InputError(path, f"duplicated session rows: {', '.join('ses-' + d for d in duplicated)}")
    out = pd.DataFrame(index=pd.Index(ids, name="session"))
    age_col = _pick_column(table, AGE_COLUMNS)
    out["age"] = _parse_age(table[age_col], path).to_numpy() if age_col else np.nan
    return out


def demographics(bids_dir: str | os.PathLike, sex_map: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per subject and session: ``subject, session, age, sex, site``.

    Session ages from ``sessions.tsv`` take precedence over the participant's age.
    """
    participants = read_participants(bids_dir, sex_map)
    rows = []
    for subject, row in participants.iterrows():
        sessions = read_sessions(bids_dir, subject)
        if sessions is None or sessions.empty:
            rows.append({"subject": subject, "session": None, **row.to_dict()})
            continue
        for session, srow in sessions.iterrows():
            age = srow["age"] if np.isfinite(srow["age"]) else row["age"]
            rows.append({"subject": subject, "session": session, **row.to_dict(), "age": age})
    table = pd.DataFrame(rows, columns=["subject", "session", "age", "sex", "site"])
    # object dtype keeps None (not NaN) for "no session", which callers test with ``is None``.
    for column in ("session", "sex", "site"):
        table[column] = pd.Series([row[column] for row in rows], dtype=object)
    return table


def validator_executable() -> str | None:
    """``bids-validator-deno`` of the running environment (installed with bids_brainage), else
    one on ``PATH``: the app may run by its full path with its ``bin/`` not on ``PATH``."""
    beside = Path(sys.executable).with_name("bids-validator-deno")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("bids-validator-deno")


def run_validator(bids_dir: str | os.PathLike, report: Path | None = None) -> tuple[int, int, list[str]]:
    """Run ``bids-validator-deno`` on ``bids_dir``.

    Parameters
    ----------
    bids_dir : path
        The dataset to validate.
    report : path, optional
        Where to write every error and warning, grouped by code with its explanation and
        every file it concerns (plain text; see `validator_report`).

    Returns
    -------
    (n_errors, n_warnings, summary)
        ``summary`` has one line per distinct error code with its count and an example file.

    Raises
    ------
    FileNotFoundError
        When the validator is not installed.
    """
    exe = validator_executable()
    if exe is None:
        raise FileNotFoundError("bids-validator-deno")
    proc = subprocess.run(
        [exe, "--format", "json", str(bids_dir)], capture_output=True, text=True, check=False, timeout=600
    )
    try:
        found = json.loads(proc.stdout)["issues"]
        issues = found["issues"]
    except (ValueError, KeyError, TypeError):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return 1, 0, [f"validator failed to run: {tail[0]}"]
    errors = [i for i in issues if i.get("severity") == "error"]
    warnings = [i for i in issues if i.get("severity") == "warning"]
    by_code: dict[str, list[str]] = {}
    for issue in errors:
        by_code.setdefault(issue.get("code", "UNKNOWN"), []).append(issue.get("location", ""))
    summary = [
        f"{code} ({len(locs)}x, e.g. {locs[0] or 'dataset'})" for code, locs in sorted(by_code.items())
    ]
    if report is not None:
        from bids_brainage.utils.atomic import write_text

        messages = found.get("codeMessages") if isinstance(found.get("codeMessages"), dict) else {}
        write_text(report, validator_report(bids_dir, issues, messages))
    return len(errors), len(warnings), summary


def validator_report(bids_dir: str | os.PathLike, issues: list[dict], messages: dict[str, str]) -> str:
    """The validator's issues as text: errors then warnings, by code, with every file."""
    lines = [f"bids-validator-deno on {bids_dir}"]
    for severity in ("error", "warning"):
        found = [i for i in issues if i.get("severity") == severity]
        lines += ["", f"{len(found)} {severity}(s)"]
        by_code: dict[str, list[dict]] = {}
        for issue in found:
            by_code.setdefault(str(issue.get("code", "UNKNOWN")), []).append(issue)
        for code, group in sorted(by_code.items()):
            explanation = " ".join(str(messages.get(code, "")).split())
            lines += [
                "",
                f"[{severity.upper()}] {code} ({len(group)}x){': ' + explanation if explanation else ''}",
            ]
            for issue in sorted(group, key=lambda i: str(i.get("location", ""))):
                detail = " ".join(str(issue.get("issueMessage", "")).split("\n\n")[0].split())
                where = issue.get("location") or "dataset"
                sub = f" [{issue['subCode']}]" if issue.get("subCode") else ""
                lines.append(f"    {where}{sub}{': ' + detail if detail else ''}")
    return "\n".join(lines) + "\n"


def validate_dataset(bids_dir: str | os.PathLike, report: Path | None = None) -> None:
    """Validate the input dataset like fMRIPrep does: errors stop the run, warnings are logged.

    With ``report``, every error and warning is listed in that file, and the log says where.
    """
    try:
        n_errors, n_warnings, summary = run_validator(bids_dir, report)
    except FileNotFoundError:
        raise UsageError(
            "bids-validator-deno was not found next to the Python running bids_brainage nor on PATH "
            "(it is installed with bids_brainage: reinstall it, or use --skip-bids-validation)"
        ) from None
    listed = report is not None and report.is_file()
    if n_warnings:
        where = f", listed in {report}" if listed else ""
        LOGGER.info("BIDS validator: %d warning(s)%s", n_warnings, where)
    if n_errors:
        raise UsageError(
            f"{bids_dir}: BIDS validation found {n_errors} error(s): {'; '.join(summary[:5])}"
            f"{' ...' if len(summary) > 5 else ''} ({'all listed in ' + str(report) + '; ' if listed else ''}"
            "fix them or use --skip-bids-validation)"
        )
