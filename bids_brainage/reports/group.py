"""Group HTML report (``OUTPUT_DIR/group_report.html``) from the group level's files.

Reads the contract written by the group level: ``brainage.tsv`` and ``group/{metrics.json,
baselines.tsv, learning_curves.tsv, latent.tsv, qc.tsv}``. Figures are written as SVG under
``group/figures/`` and inlined in the page, so each participant's point is a link to its
report. Missing files make their section say "not available".
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from bids_brainage.defaults import REPORT_SMALL_GROUP_N, REPORT_SMALL_TRAINING_N
from bids_brainage.reports import citation, figures, html

LOGGER = logging.getLogger("bids_brainage.reports")
#: Shown instead of R² and correlations of a group under ``REPORT_SMALL_GROUP_N`` people.
SMALL_N_TEXT = "n too small"
_SMALL_N_METRICS = ("r", "r2", "corrected_gap_age_r")


def _is_true(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _label(participant: str, session: Any) -> str:
    session = str(session)
    return participant + (f"_{session}" if session.startswith("ses-") else "")


def _report_links(output_dir: Path, frame: Any, bids_dir: Path | None) -> list[str | None]:
    """Relative link to each row's subject report, ``None`` when that report does not exist."""
    links: list[str | None] = []
    for participant, session in zip(
        frame["participant_id"], frame.get("session_id", ["n/a"] * len(frame)), strict=False
    ):
        subject = str(participant).removeprefix("sub-")
        ses = str(session)
        ses = ses[4:] if ses.startswith("ses-") else None
        try:
            name = html.report_name(output_dir, subject, ses, bids_dir)
        except OSError:
            name = None
        links.append(name if name and (output_dir / name).is_file() else None)
    return links


def _make(name: str, maker: Any, folder: Path, *args: Any, **kwargs: Any) -> dict[str, str] | None:
    """Draw one figure, save it under ``group/figures`` and return it inlined (or ``None``)."""
    try:
        fig = maker(*args, **kwargs)
        path = figures.save_svg(fig, folder / f"{name}.svg")
    except Exception as err:  # noqa: BLE001 - one broken figure must not lose the report
        LOGGER.warning("group report: figure %s not made (%s)", name, err)
        return None
    return {"svg": html.inline_svg(path), "file": f"group/figures/{name}.svg"}


def _records(frame: Any) -> list[dict[str, Any]]:
    if frame is None:
        return []
    out = []
    for row in frame.to_dict("records"):
        out.append({k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()})
    return out


_METRIC_ORDER = ("n", "mae", "rmse", "r", "r2", "corrected_gap_age_r", "mean_gap")


def small_n(values: dict[str, Any], min_n: int = REPORT_SMALL_GROUP_N) -> dict[str, Any]:
    """``values`` with R² and correlations replaced by :data:`SMALL_N_TEXT` when its ``n`` is
    below ``min_n`` (R² of three people can be -2540: it says nothing about the model)."""
    n = values.get("n")
    if isinstance(n, int | float) and not isinstance(n, bool) and n < min_n:
        return {k: (SMALL_N_TEXT if k in _SMALL_N_METRICS else v) for k, v in values.items()}
    return values


def _metric_rows(block: Any, label: Any = str) -> list[tuple[str, dict[str, Any]]]:
    """``[(group, metrics)]`` with the metrics in a fixed, readable order, small groups'
    correlations withheld (:func:`small_n`) and each group named by ``label(name)``."""
    if not isinstance(block, dict):
        return []
    rows = []
    for name, values in block.items():
        if isinstance(values, dict):
            keys = [k for k in _METRIC_ORDER if k in values] + sorted(
                k for k in values if k not in _METRIC_ORDER
            )
            rows.append((label(name), small_n({k: values[k] for k in keys})))
    return rows


def _bundle_size(path: Path) -> int | None:
    meta = html.read_json(path / "model.json") if path.is_dir() else None
    summary = meta.get("training_summary") if isinstance(meta, dict) else None
    n = summary.get("n_participants") if isinstance(summary, dict) else None
    return int(n) if isinstance(n, int | float) and not isinstance(n, bool) else None


def training_size(output_dir: Path, settings: dict[str, Any], frame: Any) -> dict[str, Any] | None:
    """How many people trained the model that made ``brainage.tsv``, and where that was read.

    The bundle given with ``--model`` (its ``training_summary``), else the bundle this group
    level published (``OUTPUT_DIR/model``), else the participants with an out-of-fold
    prediction in ``brainage.tsv``. ``None`` when none of them is available.
    """
    if settings.get("model"):
        n = _bundle_size(Path(str(settings["model"])))
        if n is not None:
            return {"n": n, "source": "the bundle given with --model"}
    n = _bundle_size(output_dir / "model")
    if n is not None:
        return {"n": n, "source": "model/model.json"}
    if frame is not None and {"split", "participant_id"} <= set(frame.columns):
        oof = frame[frame["split"].astype(str) == "oof"]
        if len(oof):
            return {"n": int(oof["participant_id"].nunique()), "source": "out-of-fold rows of brainage.tsv"}
    return None


def small_training_banner(
    size: dict[str, Any] | None, threshold: int = REPORT_SMALL_TRAINING_N
) -> dict[str, Any] | None:
    """The small-training-set banner's content, or ``None`` when the model was trained on at
    least ``threshold`` people (or its size is unknown)."""
    if size is None or size["n"] >= threshold:
        return None
    return {**size, "threshold": threshold}


def _sites(by_group: Any, folder: Path, nominal: Any) -> dict[str, Any]:
    """Per-site rows of ``metrics_by_group.tsv`` and their figure (``{}`` without sites)."""
    if by_group is None or not {"grouping", "level", "n"} <= set(by_group.columns):
        return {}
    sites = by_group[by_group["grouping"].astype(str) == "site"]
    if sites.empty:
        return {}
    level = sites["level"].astype(str).where(sites["level"].notna(), "n/a")
    sites = sites.assign(level=level.replace({"None": "n/a", "nan": "n/a"}))
    rows = _records(sites)
    for row in rows:
        row["small"] = int(row.get("n") or 0) < REPORT_SMALL_GROUP_N
    nominal = float(nominal) if isinstance(nominal, int | float) else None
    return {"rows": rows, "fig": _make("metrics_by_site", figures.plot_sites, folder, sites, nominal)}


def _brainage_section(output_dir: Path, frame: Any, folder: Path, bids_dir: Path | None) -> dict[str, Any]:
    links = _report_links(output_dir, frame, bids_dir)
    if "sex" in frame:
        frame = frame.assign(sex=frame["sex"].map(html.sex_label))
    rows = _records(frame)
    flag_columns = [c for c in frame.columns if str(c).startswith("flag_")]
    for row, link in zip(rows, links, strict=True):
        row["_flags"] = [
            c.removeprefix("flag_").replace("_", " ") for c in flag_columns if _is_true(row.get(c))
        ]
        row["_link"] = link
        row["_label"] = _label(str(row.get("participant_id")), row.get("session_id"))
    col = frame.get
    sex = col("sex", None)
    sex = sex.astype(str) if sex is not None else ["n/a"] * len(frame)
    out: dict[str, Any] = {"rows": rows, "n_linked": sum(link is not None for link in links)}
    if "age" in frame and "predicted_age" in frame:
        out["pred"] = _make(
            "predicted_vs_age",
            figures.plot_predicted_vs_age,
            folder,
            frame["age"],
            frame["predicted_age"],
            sex,
            urls=links,
            lower=col("interval_lower"),
            upper=col("interval_upper"),
        )
        out["gap"] = _make(
            "gap_vs_age",
            figures.plot_gap_vs_age,
            folder,
            frame["age"],
            col("brainage_gap", frame["predicted_age"] - frame["age"]),
            col("brainage_gap_corrected"),
        )
        gap = col("brainage_gap_corrected", col("brainage_gap", frame["predicted_age"] - frame["age"]))
        out["groups"] = _make("gap_by_sex_decade", figures.plot_gap_by_group, folder, frame["age"], sex, gap)
    if {"interval_lower", "interval_upper", "age", "predicted_age"} <= set(frame.columns):
        out["coverage_fig"] = (frame["interval_lower"], frame["interval_upper"])
    return out


def generate_group_report(output_dir: str | os.PathLike, config: Any = None) -> Path:
    """Write ``OUTPUT_DIR/group_report.html`` and its SVG figures under ``group/figures``.

    Parameters
    ----------
    output_dir : path-like
        The derivative dataset (OUTPUT_DIR).
    config : Config or dict, optional
        Run settings for the About/Methods sections (default: the newest saved config in
        ``OUTPUT_DIR/logs``).

    Returns
    -------
    Path
        The HTML file written.
    """
    output_dir = Path(output_dir)
    settings = html.settings_dict(config, output_dir)
    bids_dir = Path(settings["bids_dir"]) if settings.get("bids_dir") else None
    group = output_dir / "group"
    folder = group / "figures"
    frame = html.read_tsv(output_dir / "brainage.tsv")
    metrics = html.read_json(group / "metrics.json") or {}
    context: dict[str, Any] = {"title": "Group report — bids_brainage", "settings": settings}

    brainage: dict[str, Any] = {}
    if frame is not None and "participant_id" in frame:
        brainage = _brainage_section(output_dir, frame, folder, bids_dir)
        coverage = metrics.get("coverage") if isinstance(metrics.get("coverage"), dict) else {}
        if brainage.pop("coverage_fig", None) is not None:
            nominal = coverage.get("nominal")
            brainage["coverage"] = _make(
                "interval_coverage",
                figures.plot_coverage,
                folder,
                frame["age"],
                frame["predicted_age"],
                frame["interval_lower"],
                frame["interval_upper"],
                float(nominal) if isinstance(nominal, int | float) else None,
            )
        context["n_subjects"] = int(frame["participant_id"].nunique())
        context["n_rows"] = len(frame)
        if "split" in frame:
            context["splits"] = frame["split"].astype(str).value_counts().sort_index().to_dict()
        if "modalities" in frame:
            context["modalities"] = frame["modalities"].astype(str).value_counts().sort_index().to_dict()
    context["brainage"] = brainage
    sidecar = html.read_json(output_dir / "brainage.json") or {}
    context["network"] = sidecar.get("Model") if isinstance(sidecar.get("Model"), str) else None

    overall = _metric_rows({"overall": metrics.get("overall")})
    context["overall"] = overall[0][1] if overall else {}
    context["by_decade"] = _metric_rows(metrics.get("by_decade"))
    context["by_sex"] = _metric_rows(metrics.get("by_sex"), html.sex_label)
    context["coverage"] = metrics.get("coverage") if isinstance(metrics.get("coverage"), dict) else {}
    context["small_n"] = REPORT_SMALL_GROUP_N
    context["banner"] = small_training_banner(training_size(output_dir, settings, frame))

    by_group = html.read_tsv(group / "metrics_by_group.tsv")
    if by_group is not None and {"grouping", "level"} <= set(by_group.columns):
        is_sex = by_group["grouping"].astype(str) == "sex"
        by_group.loc[is_sex, "level"] = by_group.loc[is_sex, "level"].map(html.sex_label)
    context["by_group"] = _records(by_group)
    context["sites"] = _sites(by_group, folder, context["coverage"].get("nominal"))

    baselines = html.read_tsv(group / "baselines.tsv")
    context["baselines"] = _records(baselines)
    context["baseline_columns"] = list(baselines.columns) if baselines is not None else []

    curves = html.read_tsv(group / "learning_curves.tsv")
    if curves is not None and {"fold", "epoch", "train_loss", "val_loss"} <= set(curves.columns):
        context["curves"] = _make("learning_curves", figures.plot_learning_curves, folder, curves)

    latent = html.read_tsv(group / "latent.tsv")
    if latent is not None and {"code", "pc1", "pc2", "age"} <= set(latent.columns):
        context["latent"] = _make("latent_pca", figures.plot_latent, folder, latent)

    qc = html.read_tsv(group / "qc.tsv")
    if qc is not None and {"mean_fd", "excluded"} <= set(qc.columns):
        context["qc_fig"] = _make("qc_motion", figures.plot_qc, folder, qc, settings.get("fd_threshold"))
        excluded = qc[qc["excluded"].map(_is_true)]
        context["qc_excluded"] = _records(excluded)
        context["qc_total"] = len(qc)
        reasons = excluded.get("reason")
        if reasons is not None:
            context["qc_reasons"] = reasons.fillna("n/a").astype(str).value_counts().to_dict()

    runs = sorted(p for p in (output_dir / "logs").glob("group_*") if p.is_dir())
    context["crashes"] = (
        [html.parse_crash(p, output_dir) for p in sorted(runs[-1].glob("crash-*"))] if runs else []
    )

    paragraphs = citation.methods_paragraphs(settings)
    context["methods"] = [(h, citation.linkify(t)) for h, t, _ in paragraphs]
    context["references"] = [(k, citation.REFERENCES[k][0]) for k in citation.cited_keys(paragraphs)]
    context["about"] = html.about(settings)
    return html.render("group.html", output_dir / "group_report.html", **context)
