"""The multimodal design matrix: one 2-D array ``[sMRI | fMRI | sex]`` per cohort.

scikit-learn estimators take a single ``X``; the brain-age models read two feature blocks
and sex. The convention used by `SAAVAERegressor` and the baselines' `MultimodalBaseline`:
``X`` holds the structural columns first, then the functional ones (a row of all-NaN
functional values means "no usable BOLD"), and sex (0/1) as the last column. The estimator
parameter ``n_smri`` says where the structural block ends; a single-modality ``X``
(``[x_m | sex]``) needs no ``n_smri``. With one design for all models, cross-validation
tools (``cross_val_predict``, ``GridSearchCV``) can compare modalities on the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MODALITIES = ("smri", "fmri")


def multimodal_design(
    x_s: np.ndarray | None, x_f: np.ndarray | None, sex: np.ndarray
) -> tuple[np.ndarray, int]:
    """Stack ``[x_s | x_f | sex]`` into one float array; returns it and ``n_smri``.

    An absent block (``None``) contributes no columns.
    """
    sex = np.asarray(sex, dtype=float)
    blocks = [np.asarray(x, dtype=float) for x in (x_s, x_f) if x is not None]
    X = np.concatenate([*blocks, sex[:, None]], axis=1)
    return X, 0 if x_s is None else int(np.shape(x_s)[1])


def check_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """``modalities`` as a tuple; a ValueError unless it is a non-empty subset of MODALITIES."""
    mods = tuple(modalities)
    if not mods or not set(mods) <= set(MODALITIES) or len(set(mods)) != len(mods):
        raise ValueError(f"modalities must be a non-empty subset of ('smri', 'fmri'), got {mods}")
    return mods


def split_design(
    X: np.ndarray, n_smri: int | None, modalities: Sequence[str]
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Split a validated 2-D design into ``(x_s, x_f, sex)`` for the given modalities.

    A block the model does not use, or that has no columns, is ``None``; used blocks are
    C-contiguous copies (what the per-modality code expects).

    Raises
    ------
    ValueError
        If ``X`` has no feature column besides sex, ``n_smri`` is missing for a two-modality
        model or out of range, or a modality the model uses has no columns.
    """
    mods = check_modalities(modalities)
    p = X.shape[1]
    if p < 2:
        raise ValueError(
            f"X has {p} feature(s); the design is [sMRI | fMRI | sex]: feature columns, then sex last"
        )
    if n_smri is None:
        if len(mods) == 2:
            raise ValueError(
                "X holds two modalities: set n_smri, the number of sMRI columns before the fMRI ones"
            )
        n_smri = p - 1 if mods == ("smri",) else 0
    if isinstance(n_smri, bool) or not isinstance(n_smri, (int, np.integer)) or not 0 <= n_smri <= p - 1:
        raise ValueError(
            f"n_smri must be an integer from 0 to {p - 1} (X has {p} columns, sex last), got {n_smri!r}"
        )
    blocks = {"smri": X[:, :n_smri], "fmri": X[:, n_smri:-1]}
    # A fused model may see no fMRI columns (everyone predicted from sMRI), never no sMRI ones.
    needed = "smri" if "smri" in mods else "fmri"
    if blocks[needed].shape[1] == 0:
        raise ValueError(
            f"the model uses {needed} but X has no {needed} columns (n_smri={n_smri}, {p} columns)"
        )
    x_s, x_f = (
        np.ascontiguousarray(blocks[m]) if m in mods and blocks[m].shape[1] else None for m in MODALITIES
    )
    return x_s, x_f, np.ascontiguousarray(X[:, -1])
