"""Accuracy and speed of the SA-AVAE against baselines; writes its section of docs/benchmarks.md.

    python benchmarks/model_accuracy.py [--parts a,b,c,speed] [--loso-sites N]

(a) real FreeSurfer features (FCON1000/INDI via the PCNtoolkit demo data,
    ../shared/data/real/fcon1000/fcon1000.csv), sMRI only: 10-fold CV and leave-site-out.
(b) simulated multimodal features (bids_brainage.model.synthetic): fused vs single-modality
    SA-AVAE vs concatenation baselines, and the same with the fMRI replaced by pure noise.
(c) ablations: the SA-AVAE with each loss term removed, with the skip head always kept (no
    per-fit choice) and without a skip head, on (b)'s data and (terms that apply to one
    modality) on FCON1000 5-fold, where the latent path matters.
speed: one fit of 1000 subjects x (200 + 4000) features with the default schedule, one fit
    that trains both candidate networks of the per-fit choice, the 5-fold fit of
    `model fit`, and predicting 1000 subjects with the 5-model ensemble.

SA-AVAE rows carry a `network` column: what each fold's fit kept (docs/methods.md).

The section between the markers below is rewritten after every part, so an interrupted
run still leaves the finished tables.
"""

# ruff: noqa: E402  (thread limits must be set before numpy/torch are imported)
from __future__ import annotations

import argparse
import os

# One BLAS/OpenMP thread per process: on a shared 2-core machine, multi-threaded BLAS in
# scikit-learn and numpy oversubscribes the cores and slows everything down several-fold.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
import pickle
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from doc_section import cpu_name, replace_section

from bids_brainage.model.baselines import baseline_oof, compare
from bids_brainage.model.cv import arrays_from_table, fit_cross_validated, make_folds, predict_table
from bids_brainage.model.features import canonicalise
from bids_brainage.model.losses import LossWeights
from bids_brainage.model.synthetic import bayes_optimal_predictions, simulate_feature_table
from bids_brainage.model.train import SAAVAERegressor, TrainSettings

START, END = "<!-- model-accuracy:start -->", "<!-- model-accuracy:end -->"
FCON = ROOT.parent / "shared" / "data" / "real" / "fcon1000" / "fcon1000.csv"
DOC = ROOT / "docs" / "benchmarks.md"
BASELINES = ("ridge", "svr", "gpr", "rf")
# (b)/(c) use 600 subjects x (200 + 1000) features to fit the time budget of one run; the
# speed part uses the full 1000 x (200 + 4000) of the speed target.
SIM_N, SIM_DF = 600, 1000


def machine() -> str:
    cpu = cpu_name()
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return f"{cpu}, {cores} cores available, {platform.system()} {platform.release()}, Python {platform.python_version()}, torch {torch.__version__}, GPU: {gpu}"


def table_md(frame: pd.DataFrame, cols: list[str]) -> str:
    fmt = {
        "mae": "{:.2f}",
        "rmse": "{:.2f}",
        "pearson_r": "{:.3f}",
        "r2": "{:.3f}",
        "corrected_gap_age_r": "{:+.3f}",
        "coverage_90": "{:.2f}",
        "seconds": "{:.0f}",
    }
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    rows = []
    for _, r in frame.iterrows():
        rows.append(
            "| "
            + " | ".join(
                fmt.get(c, "{}").format(r[c]) if isinstance(r[c], float) else str(r[c]) for c in cols
            )
            + " |"
        )
    return head + "\n".join(rows) + "\n"


COLS = ["model", "mae", "rmse", "pearson_r", "r2", "corrected_gap_age_r", "coverage_90", "seconds"]


def fcon_table() -> pd.DataFrame:
    raw = pd.read_csv(FCON)
    return canonicalise(raw, {"participant_id": "sub_id", "site": "site", "smri": "*"}, source="fcon1000.csv")


def part_a(results: dict, loso_sites: int | None) -> None:
    table = fcon_table()
    rec: dict[str, list] = {}
    variants = {"saavae": _sa(rec, "saavae", table, modalities=("smri",))}
    variants.update({n: (lambda f, n=n: baseline_oof(n, table, f, ("smri",))) for n in BASELINES})
    folds10 = make_folds(table, 10, random_seed=0)
    results["a_cv"] = _with_heads(compare(table, folds10, variants)[0], rec)
    write_section(results)
    site = table["site"].to_numpy()
    sites = pd.Series(site).value_counts()
    if loso_sites and loso_sites < len(sites):
        # Keep the largest sites as their own folds; pool the small ones into one extra fold.
        keep = set(sites.index[: loso_sites - 1])
        site = np.where(np.isin(site, list(keep)), site, "pooled-small-sites")
    codes = pd.factorize(site)[0]
    results["a_loso"] = _with_heads(compare(table, codes, variants)[0], rec)
    results["a_loso_folds"] = len(np.unique(codes))
    write_section(results)


def sim_tables(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    real = simulate_feature_table(n=SIM_N, d_s=200, d_f=SIM_DF, seed=seed)
    noise = simulate_feature_table(n=SIM_N, d_s=200, d_f=SIM_DF, seed=seed, fmri_noise_only=True)
    return real, noise


def part_b(results: dict) -> None:
    sim, noise = sim_tables()
    folds = make_folds(sim, 5, random_seed=0)
    rec: dict[str, list] = {}
    sa = {
        "saavae_fused": _sa(rec, "saavae_fused", sim, modalities=("smri", "fmri")),
        "saavae_smri_only": _sa(rec, "saavae_smri_only", sim, modalities=("smri",)),
        "saavae_fmri_only": _sa(rec, "saavae_fmri_only", sim, modalities=("fmri",)),
    }
    sa.update(
        {
            f"concat_{n}": (lambda f, n=n: baseline_oof(n, sim, f, ("smri", "fmri")))
            for n in (*BASELINES, "concat_mlp")
        }
    )
    oracle = bayes_optimal_predictions(n=SIM_N, d_s=200, d_f=SIM_DF, seed=0)
    sa.update({f"bayes_oracle_{k}": (lambda f, k=k: oracle[k]) for k in ("fused", "smri", "fmri")})
    results["b"] = _with_heads(compare(sim, folds, sa)[0], rec)
    write_section(results)
    rec = {}
    nz = {
        "saavae_fused (noise fMRI)": _sa(
            rec, "saavae_fused (noise fMRI)", noise, modalities=("smri", "fmri")
        ),
        "saavae_smri_only": _sa(rec, "saavae_smri_only", noise, modalities=("smri",)),
        "concat_ridge (noise fMRI)": lambda f: baseline_oof("ridge", noise, f, ("smri", "fmri")),
    }
    results["b_noise"] = _with_heads(compare(noise, folds, nz)[0], rec)
    write_section(results)


def _recorded_oof(table: pd.DataFrame, folds: np.ndarray, record: list, **kwargs) -> np.ndarray:
    """Out-of-fold predictions exactly as `baselines.saavae_oof` (fold i seeded with i), also
    recording each fold model's network choice and latent-path gate κ."""
    x_s, x_f = arrays_from_table(table)
    age, sex = table["age"].to_numpy(float), table["sex"].to_numpy(float)
    pred = np.full(len(table), np.nan)
    record.clear()
    for i, k in enumerate(np.unique(folds)):
        tr, te = folds != k, folds == k
        est = SAAVAERegressor(random_seed=i, device="cpu", **kwargs)
        est.fit(None if x_s is None else x_s[tr], None if x_f is None else x_f[tr], sex[tr], age[tr])
        pred[te] = est.predict(None if x_s is None else x_s[te], None if x_f is None else x_f[te], sex[te])
        record.append((est.head_choice_["chosen"], est.latent_gate_))
    return pred


def _sa(rec: dict, name: str, table: pd.DataFrame, **kwargs):
    """A variant for `compare`: SA-AVAE out-of-fold predictions, fold records in ``rec[name]``."""
    rec[name] = []
    return lambda f: _recorded_oof(table, f, rec[name], **kwargs)


def _heads(record: list) -> str:
    """``L`` latent only, ``S`` skip head (with its κ when the latent path was scaled down)."""
    return " ".join("L" if c == "latent" else ("S" if g == 1.0 else f"S{g:.2f}") for c, g in record)


def _with_heads(frame: pd.DataFrame, rec: dict) -> pd.DataFrame:
    frame["network"] = [_heads(rec[n]) if n in rec else "" for n in frame["model"]]
    return frame


def _ablate(table: pd.DataFrame, folds: np.ndarray, terms: tuple[str, ...], **common) -> pd.DataFrame:
    rec: dict[str, list] = {}
    variants = {}
    for name, kw in [
        ("all terms", {}),
        *((f"without {t}", {"weights": LossWeights().without(t)}) for t in terms),
        ("skip head always (no choice)", {"settings": TrainSettings(choose_head=False)}),
        ("latent only (no skip head)", {"skip_head": False}),
    ]:
        variants[name] = _sa(rec, name, table, **common, **kw)
    return _with_heads(compare(table, folds, variants)[0], rec)


def part_c(results: dict) -> None:
    sim, _ = sim_tables()
    results["c"] = _ablate(sim, make_folds(sim, 5, random_seed=0), ("rec", "cross", "kl", "adv", "ratio"))
    write_section(results)
    fcon = fcon_table()
    results["c_fcon"] = _ablate(
        fcon, make_folds(fcon, 5, random_seed=0), ("rec", "kl", "adv"), modalities=("smri",)
    )
    write_section(results)


class _Timer:
    """Wall and CPU seconds of a block (CPU time is robust to other users of a shared machine)."""

    def __enter__(self) -> _Timer:
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c

    def __str__(self) -> str:
        return f"{self.wall:.2f} ({self.cpu:.2f})" if self.wall < 10 else f"{self.wall:.0f} ({self.cpu:.0f})"


def part_speed(results: dict) -> None:
    import torch

    sim = simulate_feature_table(n=1000, d_s=200, d_f=4000, seed=1)
    x_s, x_f = sim.filter(like="smri__").to_numpy(), sim.filter(like="fmri__").to_numpy()
    sex, age = sim["sex"].to_numpy(float), sim["age"].to_numpy(float)
    # Warm-up: the first fit in a process pays one-off imports inside torch.
    SAAVAERegressor(device="cpu", settings=TrainSettings(max_epochs=1)).fit(
        x_s[:100], x_f[:100], sex[:100], age[:100]
    )
    speed: dict = {}
    with _Timer() as t:
        est = SAAVAERegressor(device="cpu").fit(x_s, x_f, sex, age)
    speed["fit"] = str(t)
    speed["epochs"] = ", ".join(f"{k}: {len(h)} epochs" for k, h in est.histories_.items())
    speed["epochs"] += f"; kept: {est.head_choice_['chosen']}"
    # Worst case of the per-fit choice: both networks trained (gate off, so κ = 1 > 0).
    with _Timer() as t:
        both = SAAVAERegressor(device="cpu", settings=TrainSettings(gate_latent=False)).fit(
            x_s, x_f, sex, age
        )
    speed["fit_both"] = str(t)
    speed["epochs_both"] = ", ".join(f"{k}: {len(h)} epochs" for k, h in both.histories_.items())
    with _Timer() as t:
        est.predict(x_s, x_f, sex)
    speed["predict_single"] = str(t)
    with _Timer() as t:
        _, ens, _ = fit_cross_validated(sim, n_folds=5, device="cpu")
    speed["fit_cv5"] = str(t)
    predict_table(ens, sim.iloc[:10])
    with _Timer() as t:
        predict_table(ens, sim)
    speed["predict_ensemble"] = str(t)
    if torch.cuda.is_available():
        SAAVAERegressor(device="cuda").fit(x_s[:200], x_f[:200], sex[:200], age[:200])
        with _Timer() as t:
            SAAVAERegressor(device="cuda").fit(x_s, x_f, sex, age)
        speed["fit_gpu"] = str(t)
    results["speed"] = speed
    write_section(results)


CACHE = Path(tempfile.gettempdir()) / "bids_brainage_model_accuracy"


def write_section(results: dict) -> None:
    """Render every finished table (this process's and other parts' cached ones) into the doc.

    Parts can run in separate processes (``--parts a`` and ``--parts b,c,speed``) to use
    both cores; each caches its tables so whichever finishes last writes them all.
    """
    CACHE.mkdir(exist_ok=True)
    for key, value in results.items():
        if key not in ("date", "machine", "load"):
            with open(CACHE / f"{key}.pkl", "wb") as fh:
                pickle.dump(value, fh)
    merged = {}
    for path in sorted(CACHE.glob("*.pkl")):
        with open(path, "rb") as fh:
            merged[path.stem] = pickle.load(fh)
    results = {**merged, **results}

    def ccols(frame: pd.DataFrame) -> list[str]:
        return [*COLS, "network"] if "network" in frame else COLS

    lines = [START, "## SA-AVAE accuracy and speed (`benchmarks/model_accuracy.py`)", ""]
    runs = sorted((k[5:], v) for k, v in results.items() if k.startswith("meta_"))
    if runs:
        lines += [
            "Runs (each part may come from a separate process; load = 1-minute load average at its start and end, from all users of the machine):",
            "",
        ]
        lines += [
            f"- part {part}: {m['start']}, {m['seconds']:.0f} s, load {m['load'][0]:.1f} → {m['load'][1]:.1f}, `{m['command']}` on: {m['machine']}"
            for part, m in runs
        ]
        lines.append("")
    else:
        lines += [f"Run {results['date']} on: {results['machine']}.", ""]
    lines += [
        "Columns: MAE/RMSE in years; r = Pearson correlation of predicted and true age; "
        "corr. gap r = correlation of the cross-fitted bias-corrected gap with age; "
        "cov. 90 = empirical coverage of the 90 % split-conformal intervals; seconds = wall time "
        "for all folds on a shared 2-core machine. Identical folds within each table. "
        "network (SA-AVAE rows) = the network each fold's fit kept on its own (`head_choice_`, "
        "see docs/methods.md): `L` latent only, `S` ridge skip head + residual latent path, "
        "`S0.45` the same with the latent path's gate κ = 0.45 (`S0.00`: ridge head alone).",
        "",
    ]
    if "a_cv" in results:
        lines += ["### (a) FCON1000 FreeSurfer features, sMRI only", ""]
        lines += [
            "1 078 people, 23 sites, 218 FreeSurfer features + sex (FCON1000/INDI via the PCNtoolkit demo data, "
            "`../shared/data/real/fcon1000/fcon1000.csv`). Baselines get the same standardised features and sex; "
            "SVR picks C and γ by inner 3-fold CV, the GPR learns an RBF + linear + noise kernel by marginal likelihood on 400 training subjects of each fold, then conditions on all of them; RF has 200 trees.",
            "",
            "**10-fold CV** (stratified by age decile × site):",
            "",
            table_md(results["a_cv"], ccols(results["a_cv"])),
        ]
        lines += [verdict(results["a_cv"], "saavae", BASELINES), ""]
    if "a_loso" in results:
        n = results["a_loso_folds"]
        note = (
            "every site held out once"
            if n == 23
            else f"{n} folds: the {n - 1} largest sites held out one at a time, the remaining small sites pooled into one held-out fold"
        )
        lines += [
            f"**Leave-site-out** ({note}):",
            "",
            table_md(results["a_loso"], ccols(results["a_loso"])),
            verdict(results["a_loso"], "saavae", BASELINES),
            "",
        ]
    if "b" in results:
        lines += [
            "### (b) Simulated multimodal features",
            "",
            f"{SIM_N} subjects, 200 structural + {SIM_DF} functional features from `bids_brainage.model.synthetic` "
            "(each modality sees age through its own independent deviation; fMRI weaker: σ_f = 0.45 vs σ_s = 0.35 "
            "in units of 15 years). 5-fold CV. Concatenation baselines get [sMRI, 96 fMRI PCA scores, sex].",
            "",
            table_md(results["b"], ccols(results["b"])),
        ]
        b = results["b"].set_index("model")["mae"]
        best_single = min(b["saavae_smri_only"], b["saavae_fmri_only"])
        gain = 1 - b["saavae_fused"] / best_single
        lines += [
            f"Fused MAE is {100 * gain:.1f} % below the best single modality (target ≥ 10 %): **{'met' if gain >= 0.10 else 'missed'}**.",
            "",
        ]
        if "bayes_oracle_fused" in b:
            o_gain = 1 - b["bayes_oracle_fused"] / min(b["bayes_oracle_smri"], b["bayes_oracle_fmri"])
            lines += [
                "`bayes_oracle_*` rows are not trained models: they are the posterior medians of age given each "
                "subject's features under the generator's true parameters "
                "(`synthetic.bayes_optimal_predictions`), the lowest expected MAE any estimator can reach on "
                f"these data. The generator allows a fusion gain of {100 * o_gain:.1f} %. The SA-AVAE gets its "
                "fusion from the ridge skip head: one ridge per modality (own penalty, exact leave-one-out) "
                "stacked on their leave-one-out predictions. A single ridge on the concatenated "
                "inputs (`concat_ridge`, and the SA-AVAE's former skip head) must share one penalty between "
                "200 standardised structural features and 96 whitened fMRI scores, of which only one carries "
                "age: whitening gives that one the variance of the 95 noise scores, so the shared penalty "
                "cannot shrink the noise without shrinking the signal, and it wastes most of the fMRI evidence.",
                "",
            ]
    if "b_noise" in results:
        nz = results["b_noise"].set_index("model")["mae"]
        worse = nz["saavae_fused (noise fMRI)"] / nz["saavae_smri_only"] - 1
        lines += [
            "With the functional features replaced by pure noise:",
            "",
            table_md(results["b_noise"], ccols(results["b_noise"])),
            f"Fused MAE is {100 * worse:+.1f} % relative to sMRI-only (target ≤ +2 %): **{'met' if worse <= 0.02 else 'missed'}**.",
            "",
        ]

    if "c" in results:
        lines += [
            "### (c) Ablations",
            "",
            "**Data and folds of (b)** (fused):",
            "",
            table_md(results["c"], ccols(results["c"])),
        ]
        c = results["c"].set_index("model")
        terms = c.drop(["skip head always (no choice)", "latent only (no skip head)"], errors="ignore")
        same = (terms["mae"] == terms["mae"].iloc[0]).all()
        lines += [
            "The loss-term rows use the default per-fit choice; `skip head always` switches the choice off "
            "(`choose_head=False`, the previous default) and `latent only` has no skip head at all. "
            "On this nearly linear simulation the latent path has little to add (the stacked ridge head "
            "is within ~0.3 years of the Bayes oracle) and most of what it learns is noise, so it is "
            "mostly gated off (κ = 0; the latent-only candidate is then not even trained). "
            f"Latent-only network kept in {_count_latent(c, 'all terms')} fold fits of 'all terms'."
            + (" All loss-term rows are identical in this run." if same else ""),
            "",
        ]
    if "c_fcon" in results:
        cf = results["c_fcon"].set_index("model")["mae"]
        lines += [
            "**FCON1000, sMRI only, 5-fold** (the terms that need two modalities, cross and ratio, do not apply). "
            f"Here the per-fit choice keeps the latent-only network in {_count_latent(results['c_fcon'].set_index('model'), 'all terms')} "
            f"folds: MAE {cf['all terms']:.2f} with the choice vs {cf['skip head always (no choice)']:.2f} "
            f"with the skip head always kept and {cf['latent only (no skip head)']:.2f} without a skip head.",
            "",
            table_md(results["c_fcon"], ccols(results["c_fcon"])),
        ]
    if "speed" in results:
        s = results["speed"]
        lines += [
            "### Speed (1 000 subjects × (200 + 4 000) features, default schedule, CPU)",
            "",
            "Wall seconds (CPU seconds of this process in brackets; the difference is time the shared "
            "machine gave to other jobs).",
            "",
            "| task | seconds | target |",
            "|---|---|---|",
            f"| one fit (`SAAVAERegressor().fit` incl. PCA; {s['epochs']}) | {s['fit']} | ≤ 60 |",
            *(
                [
                    f"| one fit that trains both candidate networks (`gate_latent=False`; {s['epochs_both']}) | {s['fit_both']} | ≤ 60 |"
                ]
                if "fit_both" in s
                else []
            ),
            f"| `model fit` = 5-fold CV + 5-model ensemble | {s['fit_cv5']} | |",
            f"| predict 1 000 subjects, one model | {s['predict_single']} | |",
            f"| predict 1 000 subjects, 5-model ensemble (`predict_table`) | {s['predict_ensemble']} | ≤ 1 |",
            f"| one fit on GPU | {s['fit_gpu']} | |"
            if "fit_gpu" in s
            else "| one fit on GPU | not measured: no GPU in this run | |",
            "",
        ]
        fit_s = max(float(s[k].split()[0]) for k in ("fit", "fit_both") if k in s)
        pred_s = float(s["predict_ensemble"].split()[0])
        lines += [
            f"Fit ≤ 60 s (slowest fit above: {fit_s:.1f} s): **{'met' if fit_s <= 60 else 'missed'}**; "
            f"5-model ensemble prediction of 1 000 subjects ≤ 1 s ({pred_s:.2f} s): "
            f"**{'met' if pred_s <= 1 else 'missed'}**.",
            "",
        ]
    lines.append(END)
    replace_section(START, END, "\n".join(lines))


def _count_latent(frame: pd.DataFrame, row: str) -> str:
    heads = str(frame.loc[row, "network"]).split()
    return f"{sum(h == 'L' for h in heads)} of {len(heads)}"


def verdict(frame: pd.DataFrame, ours: str, baselines: tuple[str, ...]) -> str:
    m = frame.set_index("model")["mae"]
    best = min(baselines, key=lambda n: m[n])
    ok = m[ours] <= m[best]
    return f"SA-AVAE MAE {m[ours]:.2f} vs best baseline ({best}) {m[best]:.2f}: target **{'met' if ok else 'missed'}**."


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="a,b,c,speed")
    parser.add_argument("--fresh", action="store_true", help="forget tables cached by earlier runs")
    parser.add_argument(
        "--loso-sites",
        type=int,
        default=None,
        help="at most this many leave-site-out folds (small sites pooled)",
    )
    args = parser.parse_args()
    if args.fresh and CACHE.is_dir():
        for path in CACHE.glob("*.pkl"):
            path.unlink()
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
    if not args.parts:  # re-render the section from cached tables only
        write_section(results)
    command = "python benchmarks/model_accuracy.py " + " ".join(sys.argv[1:])
    for part in filter(None, args.parts.split(",")):
        t0 = time.perf_counter()
        start = {
            "start": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": results["machine"],
            "command": command.strip(),
            "load0": os.getloadavg()[0],
        }
        {
            "a": lambda: part_a(results, args.loso_sites),
            "b": lambda: part_b(results),
            "c": lambda: part_c(results),
            "speed": lambda: part_speed(results),
        }[part]()
        results[f"meta_{part}"] = {
            **{k: v for k, v in start.items() if k != "load0"},
            "seconds": time.perf_counter() - t0,
            "load": (start["load0"], os.getloadavg()[0]),
        }
        write_section(results)
        print(f"part {part} done in {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
