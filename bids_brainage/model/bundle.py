"""Model bundle: a directory with ``model.safetensors`` (tensors) and ``model.json`` (the rest).

``model.json`` holds the feature names, the per-fold scaler parameters, hyperparameters,
architecture, bias correction, conformal interval, training-data summary, metrics, the
package version and the SHA-256 of ``model.safetensors``. ``SHA256SUMS`` (the format of
``sha256sum``, so ``sha256sum -c SHA256SUMS`` verifies a bundle by hand) holds the SHA-256
of both files: an edited ``model.json`` (feature names, scalers) is as damaged as edited
weights. `load_bundle` checks all of it and raises `ModelBundleError` with one line naming
the problem, so a damaged or foreign bundle never yields a silent wrong prediction.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bids_brainage import __version__
from bids_brainage.errors import ModelBundleError
from bids_brainage.model.calibration import BiasCorrector, interval_from_dict
from bids_brainage.model.cv import BrainAgeEnsemble
from bids_brainage.model.features import Preprocessor
from bids_brainage.model.harmonize import ComBatHarmonizer
from bids_brainage.model.ood import FeatureReference
from bids_brainage.model.saavae import SAAVAE, SAAVAEConfig
from bids_brainage.model.train import SAAVAERegressor, resolve_device
from bids_brainage.utils.atomic import write_json, write_with

# 2: sex-aware encoders, prior and regressor heads; no per-fit head choice.
FORMAT_VERSION = 2
WEIGHTS, META, CHECKSUMS = "model.safetensors", "model.json", "SHA256SUMS"
_JSON_ARRAYS = ("s_mean", "s_scale", "f_mean", "f_scale")  # scalers: readable in the JSON
_TENSOR_ARRAYS = ("pca_components", "pca_scale")  # large: stored with the weights


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_bundle(ensemble: BrainAgeEnsemble, directory: str | Path) -> Path:
    """Write the ensemble to ``directory`` (created if needed); both files are written atomically.

    Returns
    -------
    pathlib.Path
        The bundle directory.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    folds = []
    for k, est in enumerate(ensemble.models):
        for name, value in est.model_.state_dict().items():
            if not name.startswith("discriminator."):  # only needed while training
                tensors[f"fold{k}.net.{name}"] = value.detach().float().cpu().contiguous()
        arrays = est.preprocessor_.arrays()
        for name in _TENSOR_ARRAYS:
            if name in arrays:
                tensors[f"fold{k}.pre.{name}"] = torch.from_numpy(arrays[name].copy())
        folds.append(
            {
                "architecture": est.model_.cfg.to_dict(),
                "age_mean": est.age_mean_,
                "age_std": est.age_std_,
                "best_epoch": int(est.best_epoch_),
                "random_seed": est.random_seed,
                "scaler": {name: arrays[name].tolist() for name in _JSON_ARRAYS if name in arrays},
            }
        )
    for modality, harmonizer in ensemble.harmonizers.items():
        for name, array in harmonizer.arrays().items():
            dtype = np.uint8 if array.dtype == bool else np.float32
            tensors[f"harmonize.{modality}.{name}"] = torch.from_numpy(np.ascontiguousarray(array, dtype))
    write_with(directory / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
    meta = {
        "format_version": FORMAT_VERSION,
        "package": "bids_brainage",
        "package_version": __version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "weights_file": WEIGHTS,
        "weights_sha256": _sha256(directory / WEIGHTS),
        "modalities": list(ensemble.modalities),
        "network": ensemble.models[0].network,
        "features": {"smri": list(ensemble.smri_features), "fmri": list(ensemble.fmri_features)},
        "hyperparameters": {
            k: v
            for k, v in ensemble.models[0].hyperparameters().items()
            if k not in ("random_seed", "device")
        },
        "folds": folds,
        "bias_correction": ensemble.bias.to_dict(),
        "interval": ensemble.interval.to_dict(),
        # ComBat per modality (site list here, arrays in the weights file); absent: none.
        "harmonization": {m: h.to_dict() for m, h in ensemble.harmonizers.items()},
        "training_summary": ensemble.summary,
        "metrics": ensemble.metrics,
        # Training median and scale per feature (smri then fmri): inputs far outside them
        # are refused at prediction (bids_brainage.model.ood).
        "feature_reference": ensemble.reference.to_dict() if ensemble.reference is not None else None,
    }
    write_json(directory / META, meta)
    write_checksums(directory)
    return directory


def write_checksums(directory: str | Path) -> Path:
    """Write ``SHA256SUMS`` for the bundle's JSON and weights (written last, atomically)."""
    directory = Path(directory)
    lines = "".join(f"{_sha256(directory / name)}  {name}\n" for name in (META, WEIGHTS))
    return write_with(directory / CHECKSUMS, lambda tmp: tmp.write_text(lines, encoding="ascii"))


def _verify_checksums(directory: Path) -> None:
    """Every file of the bundle must match ``SHA256SUMS`` (written by `save_bundle`)."""
    path = directory / CHECKSUMS
    if not path.is_file():
        raise _fail(directory, f"{CHECKSUMS} is missing (written by an older version? refit the model)")
    recorded: dict[str, str] = {}
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            digest, _, name = line.strip().partition("  ")
            if line.strip():
                recorded[name.lstrip("*")] = digest.lower()
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(directory, f"{CHECKSUMS} is unreadable ({exc})") from exc
    for name in (META, WEIGHTS):
        if name not in recorded:
            raise _fail(directory, f"{CHECKSUMS} has no checksum for {name} (damaged or edited)")
        if _sha256(directory / name) != recorded[name]:
            raise _fail(
                directory,
                f"{name} does not match the SHA-256 recorded in {CHECKSUMS} (corrupted or edited; "
                "a bundle is used only as 'bids_brainage model fit' or the group level wrote it)",
            )


def _fail(directory: Path, reason: str) -> ModelBundleError:
    return ModelBundleError(f"model bundle {directory}: {reason}")


def _compatible(version: str) -> bool:
    """Bundles are compatible within one major.minor release of the package."""
    return str(version).split(".")[:2] == __version__.split(".")[:2]


def load_bundle(directory: str | Path, device: str = "auto") -> BrainAgeEnsemble:
    """Load and verify a bundle written by `save_bundle`.

    Raises
    ------
    ModelBundleError
        Missing files, a JSON or weights file whose SHA-256 does not match ``SHA256SUMS``,
        unreadable JSON, wrong format or package version, weights whose SHA-256 does not
        match ``model.json``, missing/extra/misshapen tensors, non-finite values or
        scaler lengths that do not match the feature names.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / META, directory / WEIGHTS
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise _fail(
                directory,
                f"{p.name} is missing (is this a model directory written by 'bids_brainage model fit'?)",
            )
    _verify_checksums(directory)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(directory, f"{META} is not valid JSON ({exc})") from exc
    if meta.get("package") != "bids_brainage" or meta.get("format_version") != FORMAT_VERSION:
        raise _fail(
            directory,
            f"unsupported bundle format {meta.get('format_version')!r} (this version reads {FORMAT_VERSION})",
        )
    if not _compatible(meta.get("package_version", "")):
        raise _fail(
            directory,
            f"written by bids_brainage {meta.get('package_version')}, incompatible with {__version__}; refit the model",
        )
    if _sha256(weights_path) != meta.get("weights_sha256"):
        raise _fail(
            directory, f"{WEIGHTS} does not match the SHA-256 recorded in {META} (corrupted or replaced)"
        )
    try:
        tensors = load_file(str(weights_path))
        return _rebuild(meta, tensors, resolve_device(device))
    except ModelBundleError:
        raise
    except (SafetensorError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise _fail(
            directory, f"inconsistent contents ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from exc


def _rebuild(
    meta: dict[str, Any], tensors: dict[str, torch.Tensor], device: torch.device
) -> BrainAgeEnsemble:
    for name, t in tensors.items():
        if not torch.isfinite(t).all():
            raise ModelBundleError(f"model bundle tensor {name} contains NaN or inf")
    smri, fmri = list(meta["features"]["smri"]), list(meta["features"]["fmri"])
    params = dict(meta["hyperparameters"])
    models = []
    used: set[str] = set()
    for k, fold in enumerate(meta["folds"]):
        pre_arrays = {n: np.asarray(v, np.float32) for n, v in fold["scaler"].items()}
        for n in _TENSOR_ARRAYS:
            key = f"fold{k}.pre.{n}"
            if key in tensors:
                pre_arrays[n] = tensors[key].numpy()
                used.add(key)
        _check_lengths(pre_arrays, smri, fmri)
        est = SAAVAERegressor.from_params(params, random_seed=int(fold["random_seed"]), device=device.type)
        est.preprocessor_ = Preprocessor.from_arrays(pre_arrays, params["n_pca"])
        cfg = SAAVAEConfig(**fold["architecture"])
        model = SAAVAE(cfg)
        prefix = f"fold{k}.net."
        state = {n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)}
        used.update(prefix + n for n in state)
        state.update({n: v for n, v in model.state_dict().items() if n.startswith("discriminator.")})
        model.load_state_dict(state, strict=True)
        est.model_ = model.to(device).eval()
        est.device_ = device
        est.age_mean_, est.age_std_ = float(fold["age_mean"]), float(fold["age_std"])
        est.best_epoch_ = int(fold["best_epoch"])
        models.append(est)
    if not models:
        raise ModelBundleError("model bundle has no fold models")
    harmonizers = {}
    for modality, part in meta.get("harmonization", {}).items():
        prefix = f"harmonize.{modality}."
        arrays = {n[len(prefix) :]: t.numpy() for n, t in tensors.items() if n.startswith(prefix)}
        used.update(prefix + n for n in arrays)
        try:
            harmonizers[modality] = ComBatHarmonizer.from_parts(part, arrays)
        except (KeyError, ValueError, AttributeError) as exc:
            raise ModelBundleError(f"model bundle harmonisation ({modality}) is damaged: {exc}") from None
    extra = set(tensors) - used
    if extra:
        raise ModelBundleError(f"model bundle has unexpected tensors, e.g. {sorted(extra)[:2]}")
    reference = meta.get("feature_reference")
    return BrainAgeEnsemble(
        models=models,
        smri_features=smri,
        fmri_features=fmri,
        bias=BiasCorrector(**meta["bias_correction"]),
        interval=interval_from_dict(meta["interval"]),
        metrics=meta.get("metrics", {}),
        summary=meta.get("training_summary", {}),
        reference=FeatureReference.from_dict(smri + fmri, reference) if reference else None,
        harmonizers=harmonizers,
    )


def _check_lengths(arrays: dict[str, np.ndarray], smri: list[str], fmri: list[str]) -> None:
    expect = {"s_mean": len(smri), "s_scale": len(smri), "f_mean": len(fmri), "f_scale": len(fmri)}
    for name, n in expect.items():
        if n and (name not in arrays or arrays[name].shape != (n,)):
            got = arrays[name].shape if name in arrays else "missing"
            raise ModelBundleError(
                f"model bundle scaler {name} has shape {got}, expected ({n},) for the listed features"
            )
    if "pca_components" in arrays and arrays["pca_components"].shape[1] != len(fmri):
        raise ModelBundleError("model bundle PCA components do not match the listed fMRI features")
