"""``bids_brainage model {fit,predict,evaluate}``: the SA-AVAE on feature tables.

Tables have ``participant_id``, ``age``, ``sex``, optional ``site``/``session_id`` and
``smri__*``/``fmri__*`` feature columns (TSV or CSV), or any layout plus ``--column-map``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bids_brainage.cli.parser import HelpFormatter
from bids_brainage.defaults import (
    BIAS_CORRECTIONS,
    DEFAULT_BIAS_CORRECTION,
    DEFAULT_N_FOLDS,
    HARMONIZE_CHOICES,
)
from bids_brainage.errors import InputError, UsageError

# Plain text for --help (the module docstring is reStructuredText).
_MODEL_HELP = (
    "The SA-AVAE on feature tables: participant_id, age, sex, optional site/session_id and "
    "smri__*/fmri__* feature columns (TSV or CSV), or any layout plus --column-map."
)
_DESCRIPTION = {
    "fit": "Fit the SA-AVAE with K-fold CV; write a model bundle and out-of-fold predictions.",
    "predict": "Predict brain age for a feature table with a model bundle.",
    "evaluate": "Cross-validate the SA-AVAE, its ablations and baselines on identical folds.",
}


def _common(p: argparse.ArgumentParser) -> None:
    """Options every ``model`` command takes."""
    p.add_argument(
        "--column-map",
        metavar="JSON",
        type=Path,
        help="JSON mapping table columns to participant_id/age/sex/site and smri/fmri features",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where to run the network (default: auto = CUDA when available)",
    )


def _seed(p: argparse.ArgumentParser) -> None:
    """``--random-seed`` for the commands that train (``fit``, ``evaluate``); prediction is deterministic."""
    p.add_argument(
        "--random-seed",
        type=int,
        default=0,
        metavar="SEED",
        help="seed for folds, initialisation and sampling (default: 0)",
    )


def _subparser(sub: argparse._SubParsersAction, name: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name, help=_DESCRIPTION[name], description=_DESCRIPTION[name], formatter_class=HelpFormatter
    )


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``model`` sub-command (with ``fit``, ``predict``, ``evaluate``) to ``subparsers``."""
    model = subparsers.add_parser(
        "model",
        help="fit/predict/evaluate the brain-age model on feature tables",
        description=_MODEL_HELP,
        formatter_class=HelpFormatter,
    )
    model.set_defaults(func=run)
    sub = model.add_subparsers(dest="model_command", metavar="{fit,predict,evaluate}", required=True)

    fit = _subparser(sub, "fit")
    fit.add_argument(
        "features", type=Path, metavar="FEATURES", help="training table (TSV/CSV) with age and sex"
    )
    fit.add_argument(
        "--out", type=Path, required=True, metavar="MODEL_DIR", help="directory for the model bundle"
    )
    fit.add_argument(
        "--n-folds",
        type=int,
        default=DEFAULT_N_FOLDS,
        help="cross-validation folds = ensemble size (default: %(default)s)",
    )
    fit.add_argument(
        "--bias-correction",
        choices=BIAS_CORRECTIONS,
        default=DEFAULT_BIAS_CORRECTION,
        help="age-bias correction of the gap: linear (Beheshti 2019) or quadratic (Smith 2019)",
    )
    fit.add_argument(
        "--harmonize",
        choices=HARMONIZE_CHOICES,
        default="none",
        help="site harmonisation (ComBat, age and sex protected, fitted on training folds only)",
    )
    fit.add_argument(
        "--max-epochs", type=int, default=None, help="override the training schedule's epoch cap"
    )
    fit.add_argument("--progress", action="store_true", help="show a progress bar with the loss terms")
    _common(fit)
    _seed(fit)

    pred = _subparser(sub, "predict")
    pred.add_argument("model_dir", type=Path, metavar="MODEL_DIR", help="bundle written by 'model fit'")
    pred.add_argument("features", type=Path, metavar="FEATURES", help="table (TSV/CSV); age is optional")
    pred.add_argument("--out", type=Path, required=True, metavar="PRED.tsv", help="predictions TSV")
    _common(pred)

    ev = _subparser(sub, "evaluate")
    ev.add_argument("features", type=Path, metavar="FEATURES", help="table (TSV/CSV) with age and sex")
    ev.add_argument(
        "--out", type=Path, required=True, metavar="REPORT_DIR", help="directory for the comparison tables"
    )
    ev.add_argument(
        "--n-folds", type=int, default=DEFAULT_N_FOLDS, help="cross-validation folds (default: %(default)s)"
    )
    ev.add_argument("--no-ablations", action="store_true", help="skip the loss-term ablations (faster)")
    ev.add_argument("--max-epochs", type=int, default=None, help="override the training schedule's epoch cap")
    _common(ev)
    _seed(ev)


def _settings(args: argparse.Namespace) -> dict:
    from bids_brainage.model.train import TrainSettings

    if args.max_epochs is None:
        return {}
    if args.max_epochs < 1:
        raise UsageError("--max-epochs must be at least 1")
    return {"settings": TrainSettings(max_epochs=args.max_epochs)}


def run(args: argparse.Namespace) -> int:
    """Execute ``model fit|predict|evaluate``; returns the exit code (errors raise BrainAgeError)."""
    from bids_brainage.model import features

    column_map = features.load_column_map(args.column_map)
    if args.model_command == "fit":
        return _fit(args, features.load_table(args.features, column_map))
    if args.model_command == "predict":
        return _predict(args, features.load_table(args.features, column_map, require_age=False))
    if args.model_command == "evaluate":
        return _evaluate(args, features.load_table(args.features, column_map))
    raise UsageError(f"unknown model command {args.model_command!r}")


def _fit(args: argparse.Namespace, table) -> int:
    from bids_brainage.compute.brainage_table import brainage_table, write_brainage_table
    from bids_brainage.model import fit_cross_validated, save_bundle
    from bids_brainage.utils.atomic import write_tsv

    oof, ensemble, metrics = fit_cross_validated(
        table,
        n_folds=args.n_folds,
        random_seed=args.random_seed,
        device=args.device,
        bias_kind=args.bias_correction,
        harmonize=args.harmonize,
        progress=args.progress or None,
        **_settings(args),
    )
    save_bundle(ensemble, args.out)
    oof = brainage_table(oof.assign(split="oof"), ensemble.summary)
    write_brainage_table(args.out / "oof_predictions.tsv", oof, Model=ensemble.models[0].network)
    write_tsv(args.out / "oof_metrics.tsv", metrics)
    m = ensemble.metrics["out_of_fold"]
    print(
        f"model written to {args.out}: out-of-fold MAE {m['mae']:.2f} y, r {m['pearson_r']:.3f}, 90 % interval coverage {m['interval_coverage']:.2f}"
    )
    print(f"network: {ensemble.models[0].network}")
    return 0


def _predict(args: argparse.Namespace, table) -> int:
    from bids_brainage.compute.brainage_table import brainage_table, log_flags, write_brainage_table
    from bids_brainage.model import load_bundle, predict_table

    if args.out.is_dir():
        raise InputError(args.out, "--out must be a file name (PRED.tsv), not a directory")
    ensemble = load_bundle(args.model_dir, device=args.device)
    pred = brainage_table(predict_table(ensemble, table).assign(split="predict"), ensemble.summary)
    network = ensemble.models[0].network
    write_brainage_table(args.out, pred, ModelBundle=str(args.model_dir), Model=network)
    log_flags(pred)
    print(f"{len(pred)} predictions written to {args.out} (+ .json) by {network}")
    return 0


def _evaluate(args: argparse.Namespace, table) -> int:
    from bids_brainage.model.baselines import compare, default_variants
    from bids_brainage.model.cv import make_folds
    from bids_brainage.model.metrics import metrics_table
    from bids_brainage.utils.atomic import write_json, write_tsv

    folds = make_folds(table, args.n_folds, args.random_seed)
    variants = default_variants(
        table,
        ablations=not args.no_ablations,
        device=args.device,
        random_seed=args.random_seed,
        **_settings(args),
    )
    summary, preds = compare(table, folds, variants)
    out: Path = args.out
    write_tsv(out / "model_comparison.tsv", summary.round(4))
    keep = [c for c in ("participant_id", "session_id", "age", "sex", "site") if c in table]
    frame = table[keep].copy()
    frame["fold"] = folds
    for name, p in preds.items():
        frame[f"pred_{name}"] = p
    write_tsv(out / "oof_predictions.tsv", frame)
    main = summary["model"].iloc[0]
    write_tsv(out / f"metrics_{main}.tsv", metrics_table(table["age"], preds[main], table["sex"]).round(4))
    write_json(
        out / "evaluation.json",
        {
            "n_folds": args.n_folds,
            "random_seed": args.random_seed,
            "features": str(args.features),
            "models": summary.to_dict(orient="records"),
        },
    )
    print(
        summary[["model", "mae", "rmse", "pearson_r", "r2"]].to_string(
            index=False, float_format=lambda v: f"{v:.3f}"
        )
    )
    print(f"report written to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bids_brainage.cli.model_cmd model fit ...``: the same as ``bids_brainage model ...``."""
    from bids_brainage.cli.run import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
