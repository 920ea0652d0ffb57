"""Canonical model tables of the real cohorts in ``../shared/data/real`` (for the benchmarks).

- FCON1000 (1 078 people, 23 sites): the PCNtoolkit demo's FreeSurfer features, sMRI only.
- ABIDE I (749 people, 12 sites, 6.5-56 y): FreeSurfer 6 tables. Structural features are
  Desikan cortical thickness, surface area and grey-matter volume per region and hemisphere,
  and the aseg volumes as fractions of eTIV (eTIV kept), so head size enters once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_brainage.model.features import canonicalise

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
FCON = REAL / "fcon1000" / "fcon1000.csv"
ABIDE = REAL / "abide"


def fcon_table() -> pd.DataFrame:
    """FCON1000 FreeSurfer features (every column after the demographics), sMRI only."""
    raw = pd.read_csv(FCON)
    return canonicalise(raw, {"participant_id": "sub_id", "site": "site", "smri": "*"}, source=str(FCON))


def _aparc(measure: str) -> pd.DataFrame:
    parts = []
    for hemi in ("lh", "rh"):
        table = pd.read_csv(ABIDE / "freesurfer" / f"{hemi}.aparc_table_{measure}.tsv", sep="\t")
        table = table.rename(columns={table.columns[0]: "source_id"}).set_index("source_id")
        # Per-hemisphere summaries (mean thickness, white surface area) are not regions.
        keep = [c for c in table.columns if c.startswith(f"{hemi}_") and c.endswith(f"_{measure}")]
        parts.append(table[keep])
    return pd.concat(parts, axis=1)


def abide_structural() -> pd.DataFrame:
    """ABIDE participants with ``smri__`` features from the FreeSurfer tables (one row each)."""
    people = pd.read_csv(ABIDE / "participants.tsv", sep="\t")
    aseg = pd.read_csv(ABIDE / "freesurfer" / "aseg_table.tsv", sep="\t")
    aseg = aseg.rename(columns={aseg.columns[0]: "source_id"}).set_index("source_id")
    # asegstats2table calls eTIV "IntraCranialVol" (FreeSurfer 6).
    etiv = aseg["IntraCranialVol"]
    volumes = aseg.drop(columns=["IntraCranialVol"])
    volumes = volumes.select_dtypes("number").div(etiv, axis=0).add_suffix("_per_eTIV")
    features = pd.concat([_aparc("thickness"), _aparc("area"), _aparc("volume"), volumes], axis=1)
    features["eTIV"] = etiv
    features.columns = [f"smri__{c}" for c in features.columns]
    merged = people.merge(features, left_on="source_id", right_index=True, how="inner")
    merged = merged.drop(columns=["source_id", "func_mean_fd", "n_volumes"])
    table = canonicalise(merged.drop(columns=["group"]), source=str(ABIDE))
    table["group"] = merged["group"].to_numpy()
    return table


def abide_timeseries(participants: list[str]) -> list[np.ndarray]:
    """CC200 ROI time series (time points x 200) of the given participants, as float64."""
    with np.load(ABIDE / "timeseries_cc200.npz") as store:
        return [store[pid].astype(np.float64) for pid in participants]


def connectivity_features(series: list[np.ndarray], kind: str, train: np.ndarray | None = None) -> np.ndarray:
    """Vectorised connectivity (upper triangle, no diagonal) with nilearn, float32 (n, 19 900).

    ``correlation`` is computed per person (nothing is fitted across people). ``tangent``
    projects each covariance onto the tangent space at the geometric mean of the *training*
    rows' covariances (``train``: boolean mask), so a held-out site never shapes its reference.
    Covariances use nilearn's default Ledoit-Wolf shrinkage, which also keeps them positive
    definite where a ROI has no signal (all-zero columns in a few ABIDE series).
    """
    from nilearn.connectome import ConnectivityMeasure

    measure = ConnectivityMeasure(kind=kind, vectorize=True, discard_diagonal=True)
    if kind == "tangent":
        if train is None:
            raise ValueError("tangent-space features need the training rows")
        measure.fit([s for s, keep in zip(series, train, strict=True) if keep])
        return measure.transform(series).astype(np.float32)
    return measure.fit_transform(series).astype(np.float32)
