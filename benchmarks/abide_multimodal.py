"""The SA-AVAE on real multimodal data: ABIDE I, 12 sites, leave-one-site-out, several seeds.

    python benchmarks/abide_multimodal.py [--seeds 5] [--workers 2] [--rows fused,smri_only]

Structural features come from the FreeSurfer 6 tables (`real_tables.abide_structural`);
functional features are computed here from the CC200 time series with nilearn: the
tangent-space projection (its reference, the geometric mean covariance, fitted on the
training sites of each fold only) and, for comparison, plain correlation. Everyone (autism
and typical controls) is trained on; metrics are reported by sex and by group.

Every row runs on identical folds (one per site). SA-AVAE rows and the learned baselines
repeat with ``--seeds`` seeds (fold ``i`` of seed ``s`` uses ``100 s + i``); the table gives
mean ± SD over seeds. Out-of-fold predictions are cached per (row, seed) under
``benchmarks/.cache/`` so an interrupted run resumes; the docs section is rewritten as rows
finish.
"""

# ruff: noqa: E402  (thread limits must be set before numpy/torch are imported)
from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from doc_section import cpu_name, replace_section, run_cached, slug
from real_tables import abide_structural, abide_timeseries, connectivity_features

from bids_brainage.model.baselines import ABLATIONS, baseline_oof
from bids_brainage.model.calibration import cross_fitted
from bids_brainage.model.features import feature_columns

CACHE = ROOT / "benchmarks" / ".cache"
FIGURES = ROOT / "docs" / "figures"
START, END = "<!-- abide-multimodal:start -->", "<!-- abide-multimodal:end -->"


@dataclass(frozen=True)
class Row:
    """One line of the table: an SA-AVAE variant or a baseline, and its inputs."""

    name: str
    kind: str  # "saavae" or a baseline name of `bids_brainage.model.baselines`
    modalities: tuple[str, ...]
    fmri: str | None = "tangent"  # tangent, correlation, noise or None
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    group: str = "SA-AVAE"


FUSED = ("smri", "fmri")
ROWS = [
    Row("SA-AVAE fused", "saavae", FUSED),
    Row("SA-AVAE sMRI only", "saavae", ("smri",), None),
    Row("SA-AVAE fMRI only", "saavae", ("fmri",)),
    Row("SA-AVAE fused, fMRI = pure noise", "saavae", FUSED, "noise"),
    Row("SA-AVAE fused (correlation fMRI)", "saavae", FUSED, "correlation"),
    Row("SA-AVAE fMRI only (correlation)", "saavae", ("fmri",), "correlation"),
    *(
        Row(f"SA-AVAE fused, {name.replace('_', ' ')}", "saavae", FUSED, kwargs=kw, group="ablation")
        for name, kw in ABLATIONS.items()
    ),
    Row("ridge sMRI", "ridge", ("smri",), None, group="baseline"),
    Row("ridge fMRI", "ridge", ("fmri",), group="baseline"),
    Row("concatenated ridge", "ridge", FUSED, group="baseline"),
    Row("stacked per-modality ridge", "stacked_ridge", FUSED, group="baseline"),
    Row("SVR (concatenated)", "svr", FUSED, group="baseline"),
    Row("GPR (concatenated)", "gpr", FUSED, group="baseline"),
    Row("concatenation MLP", "concat_mlp", FUSED, group="baseline"),
    Row("plain VAE regressor (concatenated)", "plain_vae", FUSED, group="baseline"),
]
#: Baselines without randomness run once (their SD over seeds is 0 by construction).
DETERMINISTIC = {"ridge", "stacked_ridge", "svr"}


# ----------------------------------------------------------------------------- features
@cache
def load_cohort() -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """The structural table, the fold (site) index per row and the site names."""
    table = abide_structural().reset_index(drop=True)
    sites = sorted(table["site"].unique())
    folds = table["site"].map({s: i for i, s in enumerate(sites)}).to_numpy()
    return table, folds, sites


def fmri_features(kind: str, table: pd.DataFrame, folds: np.ndarray, fold: int, seed: int) -> np.ndarray:
    """The (n, 19 900) functional features one fold sees (tangent: that fold's reference)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    if kind == "noise":
        rng = np.random.default_rng(1000 * seed + fold)
        return rng.standard_normal((len(table), 19900), dtype=np.float32)
    path = CACHE / (f"abide_tangent_fold{fold}.npy" if kind == "tangent" else "abide_correlation.npy")
    if not path.exists():
        series = abide_timeseries(table["participant_id"].tolist())
        values = connectivity_features(series, kind, folds != fold if kind == "tangent" else None)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, values)
        os.replace(tmp, path)
    return np.load(path)


def with_fmri(table: pd.DataFrame, values: np.ndarray | None) -> pd.DataFrame:
    if values is None:
        return table
    cols = pd.DataFrame(values, columns=[f"fmri__e{j}" for j in range(values.shape[1])], index=table.index)
    return pd.concat([table, cols], axis=1)


# ----------------------------------------------------------------------------- one job
def job_path(row: Row, seed: int) -> Path:
    return CACHE / f"abide_{slug(row.name)}_seed{seed}.npz"


def run_job(row: Row, seed: int) -> dict[str, Any]:
    """Out-of-fold predictions of one row with one seed (cached)."""
    out = job_path(row, seed)
    if out.exists():
        data = np.load(out)
        return {"row": row.name, "seed": seed, "pred": data["pred"], "fit_s": data["fit_s"]}
    from bids_brainage.model.train import SAAVAERegressor

    table, folds, _ = load_cohort()
    smri = feature_columns(table, "smri")
    age, sex = table["age"].to_numpy(float), table["sex"].to_numpy(float)
    pred = np.full(len(table), np.nan)
    fit_s = np.zeros(folds.max() + 1)
    for k in range(folds.max() + 1):
        tr, te = folds != k, folds == k
        x_f = (
            fmri_features(row.fmri, table, folds, k, seed) if row.fmri and "fmri" in row.modalities else None
        )
        t0 = time.perf_counter()
        if row.kind == "saavae":
            x_s = table[smri].to_numpy(float)
            est = SAAVAERegressor(
                modalities=row.modalities, device="cpu", random_seed=100 * seed + k, **row.kwargs
            )
            est.fit(x_s[tr], None if x_f is None else x_f[tr], sex[tr], age[tr])
            pred[te] = est.predict(x_s[te], None if x_f is None else x_f[te], sex[te])
        else:
            frame = with_fmri(table, x_f)
            fold_pred = baseline_oof(
                row.kind, frame, te.astype(int), row.modalities, random_seed=seed, predict_folds=(1,)
            )
            pred[te] = fold_pred[te]
        fit_s[k] = time.perf_counter() - t0
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, pred=pred, fit_s=fit_s)
    os.replace(tmp, out)
    return {"row": row.name, "seed": seed, "pred": pred, "fit_s": fit_s}


# ----------------------------------------------------------------------------- summary
def metrics(pred: np.ndarray, table: pd.DataFrame, folds: np.ndarray) -> dict[str, float]:
    age = table["age"].to_numpy(float)
    err = np.abs(pred - age)
    cf = cross_fitted(age, pred, folds)
    gap = cf["corrected_gap"]
    sex, group = table["sex"].to_numpy(float), table["group"].to_numpy()
    return {
        "mae": err.mean(),
        "r": float(np.corrcoef(pred, age)[0, 1]),
        "mae_F": err[sex == 0].mean(),
        "mae_M": err[sex == 1].mean(),
        "mae_TC": err[group == "TC"].mean(),
        "mae_ASD": err[group == "ASD"].mean(),
        "gap_TC": gap[group == "TC"].mean(),
        "gap_ASD": gap[group == "ASD"].mean(),
    }


def summarise(results: list[dict], table: pd.DataFrame, folds: np.ndarray) -> pd.DataFrame:
    rows = []
    for row in ROWS:
        runs = [r for r in results if r["row"] == row.name]
        if not runs:
            continue
        per_seed = pd.DataFrame([metrics(r["pred"], table, folds) for r in runs])
        entry = {"model": row.name, "group": row.group, "seeds": len(runs)}
        for col in per_seed.columns:
            entry[col] = per_seed[col].mean()
            entry[f"{col}_sd"] = per_seed[col].std(ddof=1) if len(runs) > 1 else 0.0
        entry["fit_s"] = float(np.median(np.concatenate([r["fit_s"] for r in runs])))
        rows.append(entry)
    return pd.DataFrame(rows)


def fmt(frame: pd.DataFrame, name: str, col: str, signed: bool = False) -> str:
    r = frame.loc[frame["model"] == name].iloc[0]
    f = "{:+.2f}" if signed else "{:.2f}"
    return f"{f.format(r[col])} ± {r[col + '_sd']:.2f}"


def table_md(frame: pd.DataFrame, groups: tuple[str, ...]) -> str:
    cols = ["mae", "mae_F", "mae_M", "mae_TC", "mae_ASD", "gap_TC", "gap_ASD"]
    head = (
        "| model | seeds | MAE | MAE F | MAE M | MAE TC | MAE ASD | corr. gap TC | corr. gap ASD | r | s per fold fit |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for _, r in frame[frame["group"].isin(groups)].iterrows():
        cells = [fmt(frame, r["model"], c, signed=c.startswith("gap")) for c in cols]
        lines.append(
            f"| {r['model']} | {r['seeds']} | " + " | ".join(cells) + f" | {r['r']:.3f} | {r['fit_s']:.1f} |"
        )
    return head + "\n".join(lines) + "\n"


def verdicts(frame: pd.DataFrame, speed: dict[str, float]) -> list[str]:
    mae = dict(zip(frame["model"], frame["mae"], strict=True))
    need = ["SA-AVAE fused", "SA-AVAE sMRI only", "SA-AVAE fMRI only", "SA-AVAE fused, fMRI = pure noise"]
    if not all(n in mae for n in need):
        return ["(targets are judged when the main rows have finished)"]
    base = frame[frame["group"] == "baseline"]
    if base.empty:
        return ["(targets are judged when the baselines have finished)"]
    best = base.loc[base["mae"].idxmin()]
    fused = mae["SA-AVAE fused"]
    single = min(mae["SA-AVAE sMRI only"], mae["SA-AVAE fMRI only"])
    lines = []

    def line(ok: bool, text: str) -> None:
        lines.append(f"- {'met' if ok else '**missed**'}: {text}")

    ratio = fused / best["mae"]
    line(
        ratio <= 0.95,
        f"fused SA-AVAE MAE ≤ 0.95 × the best baseline ({best['model']}, {best['mae']:.2f}): "
        f"{fused:.2f} = {ratio:.3f} ×",
    )
    gain = 1 - fused / single
    line(
        gain >= 0.05,
        f"fused ≥ 5 % below the best single-modality SA-AVAE ({single:.2f}): {100 * gain:.1f} % below",
    )
    noise = mae["SA-AVAE fused, fMRI = pure noise"] / mae["SA-AVAE sMRI only"] - 1
    line(noise <= 0.02, f"fMRI replaced by pure noise: fused ≤ 2 % above sMRI only: {100 * noise:+.1f} %")
    if speed:
        line(
            speed["fit_s"] <= 60,
            f"one fit of {speed['n_fit']} people × ({speed['d_s']} + {speed['d_f']}) features ≤ 60 s: "
            f"{speed['fit_s']:.1f} s (median over the fused rows' fold fits)",
        )
        line(
            speed["predict_s"] <= 1,
            f"predicting 1 000 people with the {speed['n_models']}-model fold ensemble ≤ 1 s: {speed['predict_s']:.2f} s",
        )
    return lines


def component_lines(frame: pd.DataFrame) -> list[str]:
    """What removing each component did, against the seed-to-seed noise (mean ± SD over seeds).

    A difference counts when it exceeds twice its standard error (Welch, from the two rows'
    SDs over seeds); otherwise it is reported as indistinguishable from noise.
    """
    rows = frame.set_index("model")
    if "SA-AVAE fused" not in rows.index:
        return []
    full = rows.loc["SA-AVAE fused"]
    lines = ["| removed / changed | Δ MAE vs full model (years) | Δ / SE | reading |", "|---|---|---|---|"]
    for name, r in rows[rows["group"] == "ablation"].iterrows():
        delta = r["mae"] - full["mae"]
        se = np.sqrt(r["mae_sd"] ** 2 / max(r["seeds"], 1) + full["mae_sd"] ** 2 / max(full["seeds"], 1))
        z = delta / se if se > 0 else np.inf * np.sign(delta)
        added = name.startswith("SA-AVAE fused, with")  # a part the default model does not have
        if abs(z) < 2:
            reading = "no difference beyond seed noise"
        elif added:
            reading = "adding it costs accuracy" if delta > 0 else "adding it improves accuracy"
        elif delta > 0:
            reading = "the component helps (removing it costs accuracy)"
        else:
            reading = "the component hurts here (removing it improves accuracy)"
        lines.append(f"| {name.replace('SA-AVAE fused, ', '')} | {delta:+.2f} | {z:+.1f} | {reading} |")
    return [*lines, ""]


def speed_check(table: pd.DataFrame, folds: np.ndarray) -> dict[str, float]:
    """Prediction time of a fold ensemble for 1 000 people (the fit time comes from the rows)."""
    from bids_brainage.model.cv import BrainAgeEnsemble
    from bids_brainage.model.train import SAAVAERegressor

    smri = feature_columns(table, "smri")
    x_s, sex, age = table[smri].to_numpy(float), table["sex"].to_numpy(float), table["age"].to_numpy(float)
    x_f = fmri_features("tangent", table, folds, 0, 0)
    models = []
    for k in range(5):
        tr = np.arange(len(table)) % 5 != k
        models.append(SAAVAERegressor(device="cpu", random_seed=k).fit(x_s[tr], x_f[tr], sex[tr], age[tr]))
    ens = BrainAgeEnsemble(models=models, smri_features=smri, fmri_features=[], bias=None, interval=None)
    idx = np.arange(1000) % len(table)
    ens.predict_arrays(x_s[idx[:10]], x_f[idx[:10]], sex[idx[:10]])  # warm-up
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        ens.predict_arrays(x_s[idx], x_f[idx], sex[idx])
        times.append(time.perf_counter() - t0)
    return {"predict_s": float(np.median(times)), "n_models": len(models)}


def site_figure(results: list[dict], table: pd.DataFrame, folds: np.ndarray, sites: list[str]) -> str:
    """Fused vs single-modality SA-AVAE: MAE per held-out site, mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    age = table["age"].to_numpy(float)
    names = ["SA-AVAE sMRI only", "SA-AVAE fMRI only", "SA-AVAE fused"]
    if not all(any(r["row"] == n for r in results) for n in names):
        return ""
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.27
    x = np.arange(len(sites))
    for j, name in enumerate(names):
        preds = [r["pred"] for r in results if r["row"] == name]
        mae = [np.mean([np.abs(p - age)[folds == k].mean() for p in preds]) for k in range(len(sites))]
        ax.bar(x + (j - 1) * width, mae, width, label=name.replace("SA-AVAE ", ""))
    ax.set_xticks(x, [f"{s}\n{int((folds == k).sum())}" for k, s in enumerate(sites)], fontsize=7)
    ax.set_ylabel("MAE (years)")
    ax.set_title("SA-AVAE fused vs single modality, per held-out site (n below the name)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / "abide_fused_vs_single.png", dpi=110)
    plt.close(fig)
    return "abide_fused_vs_single.png"


def figure(frame: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    colours = {"SA-AVAE": "#1f77b4", "ablation": "#9467bd", "baseline": "#7f7f7f"}
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(frame) + 1.2))
    y = np.arange(len(frame))[::-1]
    ax.barh(y, frame["mae"], xerr=frame["mae_sd"], color=[colours[g] for g in frame["group"]], capsize=2)
    ax.set_yticks(y, frame["model"], fontsize=8)
    best = frame.loc[frame["group"] == "baseline", "mae"].min()
    ax.axvline(best, color="k", ls=":", lw=1, label=f"best baseline ({best:.2f} y)")
    ax.set_xlim(frame["mae"].min() * 0.85, (frame["mae"] + frame["mae_sd"]).max() * 1.03)
    ax.set_xlabel("leave-one-site-out MAE (years), mean ± SD over seeds")
    ax.set_title("ABIDE I, 12 sites held out in turn (749 people)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = FIGURES / "abide_multimodal_mae.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_doc(
    frame: pd.DataFrame,
    speed: dict[str, float],
    args: argparse.Namespace,
    started: str,
    sites_fig: str = "",
) -> None:
    import torch

    load = os.getloadavg()[0]
    fig = figure(frame) if len(frame) else ""
    people = load_cohort()[0]
    counts = (
        f"{int((people['sex'] == 0).sum())} women, {int((people['group'] == 'TC').sum())} typical "
        f"controls (TC), {int((people['group'] == 'ASD').sum())} autism (ASD)"
    )
    text = [
        START,
        "## SA-AVAE on real multimodal data (ABIDE I, leave-one-site-out)",
        "",
        f"Generated by `python benchmarks/abide_multimodal.py --seeds {args.seeds} --workers {args.workers}` "
        f"(started {started}, written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC) on {cpu_name()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, CPU only, load average at writing {load:.1f} "
        f"(the machine was shared with other jobs). Data: `../shared/data/real/abide` (749 people, 12 sites, "
        f"6.5-56 years; {counts}). Everyone is trained on; "
        "metrics are reported by sex and by group. Folds: one per site (12). Structural: FreeSurfer 6 "
        "Desikan thickness, area and volume per region and hemisphere plus aseg volumes / eTIV and eTIV "
        f"({speed.get('d_s', 'n/a')} features). Functional: nilearn `ConnectivityMeasure` on the CC200 time series (19 900 edges), "
        "tangent space with the reference (geometric mean) fitted on the 11 training sites of each fold; "
        "rows marked *correlation* use Pearson correlation. The SA-AVAE and the baselines reduce the edges to "
        "96 PCA scores fitted on the training rows.",
        "",
        "MAE in years, mean ± SD over seeds (baselines without randomness run once). *corr. gap* = "
        "mean bias-corrected brain-age gap (quadratic correction cross-fitted over the folds), years. "
        "*s per fold fit* = median wall time of one fold's fit (about 690 people).",
        "",
        "### Models and baselines",
        "",
        table_md(frame, ("SA-AVAE", "baseline")),
        "### Each component of the SA-AVAE removed (fused, tangent fMRI)",
        "",
        table_md(frame, ("SA-AVAE", "ablation")),
        f"![MAE per model](figures/{fig})" if fig else "",
        "",
        f"![Fused vs single modality per site](figures/{sites_fig})" if sites_fig else "",
        "",
        "### Which components help on real data",
        "",
        *component_lines(frame),
        "### Targets",
        "",
        *verdicts(frame, speed),
        "",
        END,
    ]
    replace_section(START, END, "\n".join(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", default="", help="comma-separated row slugs (default: all)")
    parser.add_argument("--report-only", action="store_true", help="write the docs section from the cache")
    args = parser.parse_args()
    started = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    table, folds, sites = load_cohort()
    if args.report_only:
        return report_only(args, table, folds, sites)
    for k in range(folds.max() + 1):  # the tangent references, once per fold, before the workers
        fmri_features("tangent", table, folds, k, 0)
    fmri_features("correlation", table, folds, 0, 0)
    rows = [r for r in ROWS if not args.rows or slug(r.name) in args.rows.split(",")]
    # Seed-major order: every row gets its first seed before any row gets its second.
    jobs = [
        (row, seed)
        for seed in range(args.seeds)
        for row in rows
        if not (row.kind in DETERMINISTIC and seed > 0)
    ]
    # The docs section is written once, from all rows, after the pool is closed.
    results = run_cached(jobs, run_job, lambda row, seed: job_path(row, seed).exists(), args.workers)
    speed = speed_check(table, folds)
    fused = [r["fit_s"] for r in results if r["row"] == "SA-AVAE fused"]
    speed.update(
        fit_s=float(np.median(np.concatenate(fused))) if fused else float("nan"),
        n_fit=int(np.median([int((folds != k).sum()) for k in range(folds.max() + 1)])),
        d_s=len(feature_columns(table, "smri")),
        d_f=19900,
    )
    frame = summarise(results, table, folds)
    write_doc(frame, speed, args, started, site_figure(results, table, folds, sites))
    (CACHE / "abide_multimodal_summary.json").write_text(
        json.dumps(
            {"speed": speed, "started": started, "seeds": args.seeds, "workers": args.workers}, indent=1
        )
    )
    frame.to_csv(CACHE / "abide_multimodal_summary.tsv", sep="\t", index=False)


def report_only(args: argparse.Namespace, table: pd.DataFrame, folds: np.ndarray, sites: list[str]) -> None:
    """Rewrite the docs section from the cached predictions and the last run's speed figures."""
    results = []
    for row in ROWS:
        for path in sorted(CACHE.glob(job_path(row, 0).name.replace("seed0", "seed*"))):
            data = np.load(path)
            seed = int(path.stem.rsplit("seed", 1)[1])
            results.append({"row": row.name, "seed": seed, "pred": data["pred"], "fit_s": data["fit_s"]})
    meta_path = CACHE / "abide_multimodal_summary.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    args.seeds, args.workers = meta.get("seeds", args.seeds), meta.get("workers", args.workers)
    frame = summarise(results, table, folds)
    write_doc(
        frame,
        meta.get("speed", {}),
        args,
        meta.get("started", "?"),
        site_figure(results, table, folds, sites),
    )


if __name__ == "__main__":
    main()
