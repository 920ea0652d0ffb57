"""Latent codes of a trained ensemble, reduced to two dimensions for the group report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from bids_brainage.model.cv import BrainAgeEnsemble


@torch.no_grad()
def encode(ensemble: BrainAgeEnsemble, table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Posterior means of the codes of every row, from the ensemble's first fold model.

    Codes of different fold models live in different coordinate systems, so one model is
    used for all subjects (a view of the latent space, not a prediction).

    Returns
    -------
    dict
        ``shared`` (mean shared code c̄), ``specific_smri``, ``specific_fmri`` (when present),
        each of shape (n_rows, latent size).
    """
    est = ensemble.models[0]
    x_s = table[ensemble.smri_features].to_numpy(float) if ensemble.smri_features else None
    x_f = None
    if ensemble.fmri_features:
        present = all(c in table.columns for c in ensemble.fmri_features)
        x_f = (
            table[ensemble.fmri_features].to_numpy(float)
            if present
            else np.full((len(table), len(ensemble.fmri_features)), np.nan)
        )
    x_s, x_f = est._inputs(x_s, x_f)
    zs, zf, mask = est.preprocessor_.transform(x_s, x_f)
    model, dev = est.model_, est.device_
    was_training = model.training
    model.eval()
    tensors = [torch.as_tensor(a, device=dev) for a in (zs, zf, table["sex"].to_numpy(np.float32), mask)]
    out = model(tensors[0], tensors[1] * tensors[3][:, None], tensors[2], tensors[3], sample=False)
    model.train(was_training)
    codes: dict[str, np.ndarray] = {}
    shared = [out[f"mu_c_{m}"] * out[f"mask_{m}"][:, None] for m in ("s", "f") if f"mu_c_{m}" in out]
    weight = sum(out[f"mask_{m}"] for m in ("s", "f") if f"mu_c_{m}" in out).clamp_min(1.0)
    codes["shared"] = (sum(shared) / weight[:, None]).float().cpu().numpy()
    for m, name in (("s", "specific_smri"), ("f", "specific_fmri")):
        if f"mu_p_{m}" in out:
            codes[name] = out[f"mu_p_{m}"].float().cpu().numpy()
    return codes


def latent_pca(ensemble: BrainAgeEnsemble, table: pd.DataFrame) -> pd.DataFrame:
    """Long table ``participant_id, session_id, code, pc1, pc2, age`` (2-D PCA of each code)."""
    codes = encode(ensemble, table)
    frames = []
    for name, values in codes.items():
        centred = values - values.mean(axis=0)
        if len(centred) >= 2 and np.any(centred):
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            comps = centred @ vt[:2].T
        else:
            comps = np.zeros((len(centred), 2))
        if comps.shape[1] < 2:
            comps = np.pad(comps, ((0, 0), (0, 2 - comps.shape[1])))
        frames.append(
            pd.DataFrame(
                {
                    "participant_id": table["participant_id"].to_numpy(),
                    "session_id": table["session_id"].to_numpy() if "session_id" in table else None,
                    "code": name,
                    "pc1": comps[:, 0],
                    "pc2": comps[:, 1],
                    "age": table["age"].to_numpy() if "age" in table else np.nan,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
