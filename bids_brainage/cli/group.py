"""Group level runner: gather features, train SA-AVAE with K-fold CV (or apply ``--model``), write
``brainage.tsv``, the model bundle, metrics and the group report.

Inputs are only finished participant outputs (see :mod:`bids_brainage.gather`), so the
group job may start while a SLURM array is still running and never reads partial files.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_brainage import bids
from bids_brainage.compute.brainage_table import (
    brainage_table,
    log_flags,
    training_summary,
    write_brainage_table,
)
from bids_brainage.errors import InputError, UsageError
from bids_brainage.gather import gather_features, join_demographics
from bids_brainage.utils import atomic

LOGGER = logging.getLogger("bids_brainage.group")


def build_model_table(config: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of finished subjects joined with demographics; and the QC table of BOLD runs."""
    wanted = {f"sub-{label}" for label in config.participant_label} if config.participant_label else None
    features, qc = gather_features(config.output_dir, wanted)
    if features.empty:
        raise UsageError(
            f"{config.output_dir}: no finished participant outputs with structural features; run the participant level first"
        )
    if getattr(config, "anat_only", False):  # --anat-only: the model sees structural features only
        features = features.drop(columns=[c for c in features.columns if c.startswith("fmri__")])
    demographics = bids.demographics(config.bids_dir, config.sex_map)
    table = join_demographics(features, demographics)
    if table["session_id"].isna().all():
        table = table.drop(columns="session_id")
    else:
        table["session_id"] = table["session_id"].fillna("n/a")
    table["site"] = table["site"].fillna("n/a")
    return table, qc


def _check_folds(config: Any, table: pd.DataFrame) -> None:
    """Every training split needs 3 subjects, and 3 with fMRI when any subject has fMRI."""
    from bids_brainage.model.cv import make_folds
    from bids_brainage.model.features import canonicalise

    model_table = canonicalise(table, source=config.output_dir / "group" / "features.tsv")
    folds = make_folds(model_table, config.n_folds, config.random_seed)
    fmri = [c for c in table.columns if c.startswith("fmri__")]
    has_fmri = table[fmri].notna().any(axis=1).to_numpy() if fmri else np.zeros(len(table), bool)
    for fold in np.unique(folds):
        train = folds != fold
        if train.sum() < 3 or (has_fmri.any() and has_fmri[train].sum() < 3):
            raise UsageError(
                f"{config.output_dir}: with {config.n_folds} folds a training split has {int(train.sum())} subject(s) "
                f"({int(has_fmri[train].sum())} with fMRI); at least 3 are needed: use fewer --n-folds or more subjects"
            )


def run_group(config: Any) -> int:
    """The group level; returns the exit code.

    One group run at a time per work dir (a second is refused with the holder's pid);
    SIGTERM/SIGINT stop its workers and remove its unfinished files.
    """
    if config.reports_only:
        from bids_brainage.reports.rebuild import rebuild_reports

        return rebuild_reports(config)
    from bids_brainage.utils.interrupt import remove_temporaries, stop_all_on_signal
    from bids_brainage.utils.locks import work_dir_lock

    out = config.output_dir

    def cleanup() -> int:
        # Group outputs, reports and the bundle being published (".model.*.tmp").
        return remove_temporaries([out / "group", out / "model"], [(out, ("",)), (out / "logs", ("",))])

    with work_dir_lock(config.work_dir, "group", "group run"), stop_all_on_signal(cleanup):
        return _run_group(config)


def _run_group(config: Any) -> int:
    """The group level, with the work dir locked."""
    table, qc = build_model_table(config)
    train = config.model is None
    table, refused = _refuse_implausible(config, table) if train else (table, [])
    usable = table["age"].notna() & table["sex"].notna()
    # Each training fold needs a few subjects; fewer than this cannot give honest estimates.
    if train and int(usable.sum()) < max(4, config.n_folds + 1):
        raise UsageError(
            f"{config.output_dir}: {int(usable.sum())} subject(s) with features, age and sex: too few to train "
            f"with {config.n_folds}-fold cross-validation (use --n-folds or --model)"
        )
    if train:
        _check_folds(config, table[usable])
    if not train and table["sex"].isna().any():
        missing = ", ".join(table.loc[table["sex"].isna(), "participant_id"][:5])
        LOGGER.warning("sex missing for %s: they cannot be predicted by the sex-aware model", missing)
    group_dir = config.output_dir / "group"
    atomic.write_tsv(group_dir / "features.tsv", table)
    work = config.work_dir / "group_inputs"
    work.mkdir(parents=True, exist_ok=True)
    table_file = work / "model_table.tsv"
    model_rows = table[usable] if train else table[table["sex"].notna()]
    atomic.write_tsv(table_file, model_rows)
    LOGGER.info("group level: %s %d subject(s)", "training on" if train else "predicting", len(model_rows))

    step = _model_step(config, table_file, train, work / "model_step")
    if step is None:
        return 1
    predictions = pd.read_csv(step["predictions"], sep="\t", keep_default_na=False, na_values=["n/a"])
    if train:
        predictions["split"] = "oof"
        model_dir = _publish_bundle(step["bundle_dir"], config.output_dir / "model")
        extra = table[~usable & table["sex"].notna()]
        if not extra.empty:
            # Subjects without age: predicted by the trained ensemble (no gap without age).
            from bids_brainage.model.bundle import load_bundle
            from bids_brainage.model.cv import predict_table

            more = predict_table(load_bundle(model_dir, device=config.device), extra.reset_index(drop=True))
            more["split"] = "predict"
            predictions = pd.concat([predictions, more], ignore_index=True)
        _write_group_files(step, group_dir, qc, predictions)
        _write_model_card(model_dir, config)
    else:
        predictions["split"] = "predict"
        atomic.write_tsv(group_dir / "qc.tsv", qc)
    predictions, not_predicted = _drop_refused(config, predictions)
    model_dir = config.output_dir / "model" if train else Path(config.model)
    brainage = _with_qc_excluded(config, _with_demographics(predictions, table), qc)
    brainage = brainage_table(brainage, training_summary(model_dir), qc)
    write_brainage_table(
        config.output_dir / "brainage.tsv", brainage, Device=_device_used(config), Model=_network(model_dir)
    )
    LOGGER.info("wrote %s (%d rows)", config.output_dir / "brainage.tsv", len(brainage))
    log_flags(brainage)
    _reports(config, len(brainage))
    return 1 if refused or not_predicted else 0


def _model_step(config: Any, table_file: Path, train: bool, out_dir: Path) -> dict[str, Path] | None:
    """Train the model (K-fold CV) or apply ``--model``: a plain call of
    :func:`~bids_brainage.compute.brainage.train_brainage` or
    :func:`~bids_brainage.compute.brainage.predict_brainage` writing into ``out_dir`` (emptied
    first). Returns the paths of what it wrote, or None when it failed: then the reason is
    logged as one line and the traceback kept in ``logs/group_<run id>/crash-*.txt`` (shown
    in the group report's Errors section).
    """
    import traceback

    from bids_brainage.compute.brainage import predict_brainage, train_brainage
    from bids_brainage.errors import BrainAgeError

    crash_dir = config.output_dir / "logs" / f"group_{config.run_uuid}"
    crash_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    name = "group.train" if train else "group.predict"
    try:
        if train:
            return train_brainage(
                table_file, out_dir, n_folds=config.n_folds, random_seed=config.random_seed,
                device=config.device, harmonize=config.harmonize, bias_correction=config.bias_correction,
            )  # fmt: skip
        return {"predictions": predict_brainage(table_file, config.model, out_dir, device=config.device)}
    except Exception as err:  # any failure of the model step: one line, exit 1
        first = (str(err).splitlines() or [""])[0]
        reason = first if isinstance(err, BrainAgeError) else f"{type(err).__name__}: {first}"
        atomic.write_text(
            crash_dir / f"crash-{config.run_uuid}-{name}.txt",
            f"Node: {name}\nWorking directory: {out_dir}\n\n{traceback.format_exc()}",
        )
        LOGGER.error("group level failed: %s: %s", name, reason)
        return None


def _features_file(config: Any, participant_id: str, session_id: Any, reason: str) -> Path:
    """The participant-level features file behind a refused feature (named in the error)."""
    folder = config.output_dir / participant_id
    if isinstance(session_id, str) and session_id.startswith("ses-"):
        folder = folder / session_id
    kind = ("func", "functional") if reason.startswith("fmri__") else ("anat", "structural")
    found = sorted((folder / kind[0]).glob(f"*_desc-{kind[1]}_features.tsv"))
    return found[0] if found else folder / kind[0]


def _refuse_implausible(config: Any, table: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Screen the training rows for implausible features (see :mod:`bids_brainage.model.ood`).

    A row with an implausible structural feature is left out (an error naming the
    features file; the group level exits 1). A row whose functional features alone are
    implausible keeps its structural ones (a warning), as at prediction. Returns the table
    without the refused rows and their labels.
    """
    from bids_brainage.model.ood import screen_cohort

    table = table.copy()
    smri = [c for c in table.columns if c.startswith("smri__")]
    fmri = [c for c in table.columns if c.startswith("fmri__")]
    keep = np.ones(len(table), bool)
    refused = []
    # Removing a row or its fMRI changes the cohort's reference: screen again until stable.
    for _ in range(5):
        rows = np.nonzero(keep & (table["age"].notna() & table["sex"].notna()).to_numpy())[0]
        found = [
            (i, why) for i, why in zip(rows, screen_cohort(table.iloc[rows], smri + fmri), strict=True) if why
        ]
        for i, why in found:
            pid, sid = (
                table["participant_id"].iloc[i],
                table["session_id"].iloc[i] if "session_id" in table else None,
            )
            path = _features_file(config, pid, sid, why)
            if why.startswith("fmri__") and smri:
                LOGGER.warning("%s: %s: %s; trained and predicted from sMRI only", pid, path, why)
                table.iloc[i, [table.columns.get_loc(c) for c in fmri]] = np.nan
            else:
                LOGGER.error("FAILED %s: %s: %s; left out of the group level", pid, path, why)
                keep[i] = False
                refused.append(str(pid))
        if not found:
            break
    return table[keep].reset_index(drop=True), refused


def _drop_refused(config: Any, predictions: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Remove people the model refused to predict (implausible features), each logged as an error."""
    if "refused" not in predictions.columns:
        return predictions, []
    refused = predictions["refused"].astype(str).str.lower().isin(["true", "1"])
    dropped = []
    for _, row in predictions[refused].iterrows():
        reason = str(row["note"]).removeprefix("refused: ")
        path = _features_file(config, row["participant_id"], row.get("session_id"), reason)
        LOGGER.error("FAILED %s: %s: %s; not predicted", row["participant_id"], path, reason)
        dropped.append(row["participant_id"])
    return predictions[~refused].reset_index(drop=True), dropped


def predict_subject(config: Any, subject: str, session: str | None) -> Path:
    """Participant level with ``--model``: one subject's brain age, next to its features.

    Writes ``sub-X[_ses-Y]_desc-brainage_prediction.tsv`` (+ JSON) in the subject folder.
    """
    from bids_brainage.derivatives import bids_name
    from bids_brainage.gather import features_of, subject_row
    from bids_brainage.model.bundle import load_bundle
    from bids_brainage.model.cv import predict_table
    from bids_brainage.model.features import canonicalise

    features = features_of(config.output_dir, subject, session)
    demographics = bids.demographics(config.bids_dir, config.sex_map)
    table = join_demographics(features, demographics)
    if table["sex"].isna().any():
        raise UsageError(
            f"{config.bids_dir / 'participants.tsv'}: sex of sub-{subject} is missing; the model needs it"
        )
    table = table.drop(columns="session_id") if session is None else table
    table["site"] = table["site"].fillna("n/a")
    model_table = canonicalise(table, source=f"sub-{subject}", require_age=False)
    predictions = predict_table(load_bundle(config.model, device=config.device), model_table)
    if predictions["refused"].any():
        reason = str(predictions.loc[predictions["refused"], "note"].iloc[0]).removeprefix("refused: ")
        raise InputError(
            _features_file(config, f"sub-{subject}", table.get("session_id", [None])[0], reason), reason
        )
    predictions["split"] = "predict"
    _, qc_rows = subject_row(config.output_dir, subject, session)
    brainage = brainage_table(
        _with_demographics(predictions, table), training_summary(config.model), pd.DataFrame(qc_rows)
    )
    folder = config.output_dir / f"sub-{subject}" / (f"ses-{session}" if session else "")
    path = folder / bids_name("prediction", ".tsv", sub=subject, ses=session, desc="brainage")
    write_brainage_table(path, brainage, ModelBundle=str(config.model))
    LOGGER.info("sub-%s: predicted brain age %.1f years", subject, brainage["predicted_age"].iloc[0])
    log_flags(brainage)
    return path


def _with_demographics(predictions: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Predictions with age, sex (M/F) and site of the model table (the model's sex is 0/1)."""
    key = ["participant_id"] + (["session_id"] if "session_id" in table.columns else [])
    demo = table[[*key, "age", "sex", "site"]]
    predictions = predictions.drop(columns=[c for c in ("age", "sex", "site") if c in predictions.columns])
    return demo.merge(predictions, on=key, how="inner")


def _with_qc_excluded(config: Any, brainage: pd.DataFrame, qc: pd.DataFrame) -> pd.DataFrame:
    """``brainage`` plus one row per person whose segmentation failed the structural QC.

    Their volumes are wrong, so they were neither trained on nor predicted: the row says so
    (``split`` = ``excluded``, no prediction) instead of leaving them out silently.
    """
    if qc.empty or not {"run", "excluded"} <= set(qc.columns):
        return brainage
    failed = qc[
        qc["excluded"].astype(bool) & qc["run"].astype(str).str.endswith("_desc-structural_features.tsv")
    ]
    if failed.empty:
        return brainage
    ids = failed[["participant_id", "session_id"]].reset_index(drop=True)
    rows = join_demographics(ids, bids.demographics(config.bids_dir, config.sex_map))
    rows["session_id"] = rows["session_id"].fillna("n/a")
    rows["site"] = rows["site"].fillna("n/a")
    rows["split"], rows["modalities"] = "excluded", "none"
    rows = rows.reindex(columns=brainage.columns)
    return pd.concat([brainage, rows], ignore_index=True) if len(brainage) else rows


def _network(model_dir: Path) -> str:
    """What predicted, as the bundle records it (``network`` in its model.json)."""
    from bids_brainage.model.bundle import META

    meta = json.loads((model_dir / META).read_text(encoding="utf-8"))
    return str(meta.get("network", "SA-AVAE"))


def _device_used(config: Any) -> str:
    from bids_brainage.model.train import resolve_device

    return str(resolve_device(config.device))


def _publish_bundle(src: Path, dst: Path) -> Path:
    """Copy the bundle into OUTPUT_DIR atomically: copy beside it, then swap directories."""
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        shutil.copytree(src, tmp)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a full disk must not leave half a bundle
        raise
    if dst.exists():
        old = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.old")
        dst.rename(old)
        tmp.rename(dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(dst)
    return dst


def _write_group_files(
    step: dict[str, Path], group_dir: Path, qc: pd.DataFrame, predictions: pd.DataFrame
) -> None:
    """``group/``: metrics, baselines, learning curves, latent codes and QC, from the files the
    training step returned (``step``)."""
    metrics = pd.read_csv(step["metrics"], sep="\t", keep_default_na=False, na_values=["n/a"])
    summary = json.loads(step["summary"].read_text())
    oof = summary.get("out_of_fold", {})

    def _row(row: pd.Series) -> dict[str, float]:
        return {
            "n": int(row["n"]),
            "mae": row["mae"],
            "rmse": row["rmse"],
            "r": row["pearson_r"],
            "r2": row["r2"],
            "corrected_gap_age_r": row["corrected_gap_age_r"],
        }

    records = {row["group"]: _row(row) for _, row in metrics.iterrows()}
    payload = {
        "overall": records.get("all", {}),
        "by_decade": {k.removeprefix("age "): v for k, v in records.items() if k.startswith("age ")},
        "by_sex": {k.removeprefix("sex "): v for k, v in records.items() if k.startswith("sex ")},
        "coverage": {"nominal": oof.get("interval_nominal"), "empirical": oof.get("interval_coverage")},
        "n_folds": summary.get("n_folds"),
    }
    atomic.write_json(
        group_dir / "metrics.json", _strict_json(json.loads(json.dumps(payload, default=_json_float)))
    )
    from bids_brainage.model.metrics import metrics_by_group

    oof_rows = predictions[predictions["split"] == "oof"]
    atomic.write_tsv(group_dir / "metrics_by_group.tsv", metrics_by_group(oof_rows).round(4))
    for name in ("baselines", "learning_curves", "latent"):
        atomic.write_with(group_dir / f"{name}.tsv", lambda tmp, src=step[name]: shutil.copyfile(src, tmp))
    baselines = pd.read_csv(group_dir / "baselines.tsv", sep="\t")
    if "pearson_r" in baselines.columns:
        atomic.write_tsv(group_dir / "baselines.tsv", baselines.rename(columns={"pearson_r": "r"}))
    atomic.write_tsv(group_dir / "qc.tsv", qc)


def _strict_json(value: Any) -> Any:
    """NaN and infinities become null: strict JSON readers (browsers, jq) reject them."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strict_json(v) for v in value]
    return value


def _json_float(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def _write_model_card(model_dir: Path, config: Any) -> None:
    """A human-readable summary of the bundle next to its machine-readable JSON."""
    from bids_brainage.model.bundle import META

    meta = json.loads((model_dir / META).read_text())
    summary = meta.get("training_summary", {})
    metrics = meta.get("metrics", {}).get("out_of_fold", {})
    features = meta.get("features", {})
    lines = [
        "# Model card: bids_brainage SA-AVAE brain-age model",
        "",
        f"- Package version: {meta.get('package_version', 'unknown')}; created {meta.get('created', 'unknown')}",
        f"- Network: {meta.get('network', 'SA-AVAE')}",
        f"- Modalities: {', '.join(meta.get('modalities', []))}; "
        f"{len(features.get('smri', []))} structural and {len(features.get('fmri', []))} functional features",
        f"- Training data: {summary.get('n_participants', '?')} participants ({summary.get('n_rows', '?')} scans), "
        f"age {summary.get('age_min', float('nan')):.1f}-{summary.get('age_max', float('nan')):.1f} years, "
        f"{summary.get('n_female_0', '?')} female / {summary.get('n_male_1', '?')} male, "
        f"sites: {', '.join(summary.get('sites', [])) or 'n/a'}",
        f"- Cross-validation: {meta.get('metrics', {}).get('n_folds', config.n_folds)} folds, seed {config.random_seed}",
        f"- Out-of-fold MAE {metrics.get('mae', float('nan')):.2f} years, RMSE {metrics.get('rmse', float('nan')):.2f}, "
        f"r {metrics.get('pearson_r', float('nan')):.2f}; interval coverage "
        f"{metrics.get('interval_coverage', float('nan')):.2f} (nominal {metrics.get('interval_nominal', float('nan')):.2f})",
        f"- Weights: `{meta.get('weights_file', '?')}` (sha256 `{meta.get('weights_sha256', '?')}`)",
        "",
        "## Intended use and limits",
        "",
        "Research use. Predictions outside the training age range, or from scanners, sites and",
        "preprocessing unlike the training data, are extrapolations: check the intervals and the",
        "QC flags. The brain-age gap is bias-corrected with a correction fitted on training data only.",
        "",
    ]
    atomic.write_text(model_dir / "model_card.md", "\n".join(lines))


#: Above this many subjects the group level leaves subject reports as they are (each takes
#: a few seconds); ``--reports-only`` adds the brain-age section to them later.
MAX_SUBJECT_REPORTS = 200


def _reports(config: Any, n_subjects: int) -> None:
    from bids_brainage.reports.citation import write_citation
    from bids_brainage.reports.group import generate_group_report
    from bids_brainage.reports.rebuild import rebuild_reports

    try:
        if n_subjects <= MAX_SUBJECT_REPORTS:
            # Subject reports gain their brain-age section (prediction against the cohort).
            rebuild_reports(config)
        else:
            write_citation(config)
            generate_group_report(config.output_dir, config)
            LOGGER.info("%d subjects: run --reports-only to add brain age to subject reports", n_subjects)
        LOGGER.info("group report: %s", config.output_dir / "group_report.html")
    except Exception as err:  # a broken report must not hide the results
        LOGGER.warning("reports not written (%s)", err)
