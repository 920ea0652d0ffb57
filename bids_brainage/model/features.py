"""Feature tables: loading, column mapping, sex parsing, standardisation and fMRI PCA.

A feature table has one row per subject (or subject/session) with the columns
``participant_id``, ``age`` (needed to fit), ``sex``, optional ``site`` and ``session_id``,
and features assigned to modalities by prefix: ``smri__*`` (structural) and ``fmri__*``
(functional). Other layouts (e.g. a FreeSurfer table) are mapped with a JSON column map::

    {"participant_id": "sub_id", "site": "site",
     "smri": "*",            # every remaining numeric column; or a list of names
     "fmri": ["conn_1", "conn_2"]}

A subject whose ``fmri__`` values are all missing has no usable BOLD and is handled as a
missing modality by the model (see ``docs/methods.md``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_brainage.errors import InputError

SMRI_PREFIX = "smri__"
FMRI_PREFIX = "fmri__"
META_COLUMNS = ("participant_id", "session_id", "age", "sex", "site")
_MALE = {"m", "male", "man", "1", "1.0"}
_FEMALE = {"f", "female", "woman", "0", "0.0"}


def parse_sex(values: pd.Series, source: object = "table") -> np.ndarray:
    """Map sex labels to 1 (male, ``M``, ``1``) and 0 (female, ``F``, ``0``).

    Raises
    ------
    InputError
        If a value is missing or not recognised (the model is sex-aware, so it is needed).
    """
    text = values.astype(str).str.strip().str.lower()
    out = np.full(len(text), np.nan)
    out[text.isin(_MALE).to_numpy()] = 1.0
    out[text.isin(_FEMALE).to_numpy()] = 0.0
    bad = np.isnan(out)
    if bad.any():
        examples = sorted(set(values[bad].astype(str)))[:3]
        raise InputError(
            source,
            f"column 'sex' has {int(bad.sum())} unrecognised value(s), e.g. {examples}; use M/F or 1/0",
        )
    return out


def _read_any(path: Path) -> pd.DataFrame:
    """Read a TSV or CSV (chosen by extension, sniffed otherwise); ``n/a`` is missing."""
    if not path.is_file():
        raise InputError(path, "file not found")
    suffix = path.suffix.lower()
    sep = "\t" if suffix == ".tsv" else "," if suffix == ".csv" else None
    try:
        return pd.read_csv(
            path, sep=sep, engine="python" if sep is None else "c", na_values=["n/a", "N/A", "NA", ""]
        )
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"cannot be parsed as a table ({type(exc).__name__})") from exc


def load_column_map(path: str | Path | None) -> dict[str, Any] | None:
    """Read a JSON column map (see the module docstring); ``None`` passes through."""
    if path is None:
        return None
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(path, "file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(path, "a column map must be a JSON object")
    return data


def apply_column_map(
    frame: pd.DataFrame, column_map: dict[str, Any] | None, source: object = "table"
) -> pd.DataFrame:
    """Rename meta columns and prefix feature columns according to ``column_map``."""
    if not column_map:
        return frame
    renames = {v: k for k, v in column_map.items() if k in META_COLUMNS and isinstance(v, str)}
    missing = [v for v in renames if v not in frame.columns]
    if missing:
        raise InputError(source, f"column map names missing column(s) {missing[:5]}")
    frame = frame.rename(columns=renames)
    assigned: dict[str, str] = {}
    for modality, prefix in (("smri", SMRI_PREFIX), ("fmri", FMRI_PREFIX)):
        spec = column_map.get(modality)
        if spec is None:
            continue
        if spec == "*":
            taken = set(assigned) | set(META_COLUMNS)
            cols = [
                c
                for c in frame.columns
                if c not in taken
                and not str(c).startswith((SMRI_PREFIX, FMRI_PREFIX))
                and pd.api.types.is_numeric_dtype(frame[c])
            ]
        elif isinstance(spec, list):
            cols = [str(c) for c in spec]
            absent = [c for c in cols if c not in frame.columns]
            if absent:
                raise InputError(source, f"column map '{modality}' names missing column(s) {absent[:5]}")
        else:
            raise InputError(source, f"column map '{modality}' must be \"*\" or a list of column names")
        for c in cols:
            assigned[c] = prefix + str(c)
    return frame.rename(columns=assigned)


def load_table(
    path: str | Path, column_map: dict[str, Any] | str | Path | None = None, *, require_age: bool = True
) -> pd.DataFrame:
    """Load a feature table into the canonical layout.

    Parameters
    ----------
    path
        TSV or CSV file.
    column_map
        A column-map dict or the path of a JSON column map.
    require_age
        Refuse tables without a complete ``age`` column (fit/evaluate).

    Returns
    -------
    pandas.DataFrame
        ``participant_id``, [``session_id``], [``age``], ``sex`` (0/1), ``site``, then
        ``smri__*`` and ``fmri__*`` feature columns (float).
    """
    path = Path(path)
    if isinstance(column_map, (str, Path)):
        column_map = load_column_map(column_map)
    return canonicalise(_read_any(path), column_map, source=path, require_age=require_age)


def canonicalise(
    frame: pd.DataFrame,
    column_map: dict[str, Any] | None = None,
    *,
    source: object = "table",
    require_age: bool = True,
) -> pd.DataFrame:
    """Validate an in-memory table and bring it to the canonical layout (see `load_table`)."""
    frame = apply_column_map(frame, column_map, source)  # rename() copies; the input is never modified
    for col in ("participant_id", "sex"):
        if col not in frame.columns:
            raise InputError(
                source, f"required column '{col}' is missing (columns: {list(frame.columns[:6])}...)"
            )
    feats = [c for c in frame.columns if str(c).startswith((SMRI_PREFIX, FMRI_PREFIX))]
    if not feats:
        raise InputError(
            source,
            f"no feature columns: prefix them with '{SMRI_PREFIX}' / '{FMRI_PREFIX}' or pass --column-map",
        )
    out = pd.DataFrame({"participant_id": frame["participant_id"].astype(str)})
    if "session_id" in frame.columns:
        out["session_id"] = frame["session_id"].astype(str)
    if "age" in frame.columns:
        age = pd.to_numeric(frame["age"], errors="coerce")
        if require_age and age.isna().any():
            raise InputError(
                source, f"column 'age' has {int(age.isna().sum())} missing or non-numeric value(s)"
            )
        out["age"] = age.astype(float)
    elif require_age:
        raise InputError(source, "required column 'age' is missing")
    out["sex"] = parse_sex(frame["sex"], source)
    out["site"] = frame["site"].astype(str) if "site" in frame.columns else "n/a"
    key = ["participant_id"] + (["session_id"] if "session_id" in out else [])
    dup = out.duplicated(key)
    if dup.any():
        raise InputError(source, f"duplicate row(s) for {out.loc[dup, key].iloc[0].tolist()}")
    try:
        values = frame[feats]
        if not all(pd.api.types.is_numeric_dtype(t) for t in values.dtypes):
            values = values.apply(pd.to_numeric, errors="raise")  # slow path: text columns
        values = values.astype(float)
    except (ValueError, TypeError) as exc:
        raise InputError(source, f"non-numeric feature values ({exc})") from exc
    return pd.concat([out.reset_index(drop=True), values.reset_index(drop=True)], axis=1)


def feature_columns(table: pd.DataFrame, modality: str) -> list[str]:
    """Feature column names of one modality (``"smri"`` or ``"fmri"``), in table order."""
    prefix = SMRI_PREFIX if modality == "smri" else FMRI_PREFIX
    return [c for c in table.columns if str(c).startswith(prefix)]


@dataclass
class Preprocessor:
    """Standardise each modality with training statistics; optionally PCA-reduce fMRI.

    Missing single values are imputed with the training mean (0 after scaling); a subject
    whose fMRI values are *all* missing is flagged by `fmri_mask` instead, so the model can
    treat the modality as absent. The fMRI PCA scores are whitened (unit variance) so both
    modalities enter the network on the same scale.
    """

    n_pca: int | None = 96
    s_mean: np.ndarray | None = None
    s_scale: np.ndarray | None = None
    f_mean: np.ndarray | None = None
    f_scale: np.ndarray | None = None
    pca_components: np.ndarray | None = None
    pca_scale: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def fmri_mask(x_f: np.ndarray | None, n: int) -> np.ndarray:
        """1.0 where a subject has at least one fMRI value, 0.0 where the modality is absent."""
        if x_f is None or x_f.shape[1] == 0:
            return np.zeros(n, dtype=np.float32)
        return (~np.isnan(x_f).all(axis=1)).astype(np.float32)

    def fit(self, x_s: np.ndarray | None, x_f: np.ndarray | None) -> Preprocessor:
        """Learn scaling (and PCA) from training arrays; rows without fMRI are ignored for it."""
        if x_s is not None and x_s.shape[1]:
            self.s_mean, self.s_scale = _mean_scale(x_s)
        if x_f is not None and x_f.shape[1]:
            rows = self.fmri_mask(x_f, len(x_f)).astype(bool)
            if rows.sum() < 3:
                raise ValueError("fewer than 3 training subjects have fMRI features")
            self.f_mean, self.f_scale = _mean_scale(x_f[rows])
            z = _impute_scale(x_f[rows], self.f_mean, self.f_scale)
            k = min(self.n_pca or z.shape[1], z.shape[1], int(rows.sum()) - 1)
            if self.n_pca and k < z.shape[1]:
                self.pca_components, self.pca_scale = _pca(z, k)
        return self

    def transform(
        self, x_s: np.ndarray | None, x_f: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return scaled ``(x_s, x_f, fmri_mask)`` as float32 (absent modality: zero columns)."""
        n = len(x_s) if x_s is not None else len(x_f)
        mask = self.fmri_mask(x_f, n) if self.f_mean is not None else np.zeros(n, dtype=np.float32)
        zs = (
            _impute_scale(x_s, self.s_mean, self.s_scale)
            if self.s_mean is not None
            else np.zeros((n, 0), np.float32)
        )
        if self.f_mean is not None:
            zf = self._transform_f(x_f, mask)
        else:
            zf = np.zeros((n, 0), np.float32)
        return zs.astype(np.float32), np.asarray(zf, dtype=np.float32), mask

    def _transform_f(self, x_f: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Scaled (and PCA-projected) fMRI; rows without fMRI are zero.

        With PCA, scaling and projection are folded into one (p, k) matrix, so the (n, p)
        standardised copy is never formed: one centring pass and one float32 matrix product
        per model instead of four passes over thousands of edges.
        """
        x_f = np.asarray(x_f, dtype=np.float32)
        if self.pca_components is None:
            return _impute_scale(x_f, self.f_mean, self.f_scale) * mask[:, None]
        w = self._projection()
        out = (x_f - self.f_mean) @ w
        rows = ~np.isfinite(out).all(axis=1)  # rows with a missing value (found without a pass over x_f)
        if rows.any():  # impute with the training mean (0 after centring)
            centred = x_f[rows] - self.f_mean
            centred[~np.isfinite(centred)] = 0.0
            out[rows] = centred @ w
        return out * mask[:, None]

    def _projection(self) -> np.ndarray:
        """Scaling, PCA axes and score scaling as one (p, k) float32 matrix (cached)."""
        cached = getattr(self, "_proj_cache", None)
        if cached is None or cached[0] is not self.pca_components:
            w = (self.pca_components / self.f_scale).T / self.pca_scale
            cached = (self.pca_components, np.ascontiguousarray(w, dtype=np.float32))
            self._proj_cache = cached
        return cached[1]

    @property
    def d_s(self) -> int:
        return 0 if self.s_mean is None else len(self.s_mean)

    @property
    def d_f(self) -> int:
        if self.f_mean is None:
            return 0
        return len(self.f_mean) if self.pca_components is None else len(self.pca_components)

    def arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays by name (for the bundle)."""
        names = ("s_mean", "s_scale", "f_mean", "f_scale", "pca_components", "pca_scale")
        return {
            k: np.asarray(getattr(self, k), dtype=np.float32) for k in names if getattr(self, k) is not None
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_pca: int | None) -> Preprocessor:
        """Rebuild from `arrays` output."""
        pre = cls(n_pca=n_pca)
        for k, v in arrays.items():
            setattr(pre, k, np.asarray(v, dtype=np.float32))
        return pre


def _pca(z: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k principal axes and score SDs of the centred rows of ``z``.

    Eigendecomposition of the smaller Gram matrix (n x n when n < p) instead of an SVD
    of z: on a loaded 2-core machine numpy's multi-threaded SVD of 1000 x 4000 took
    minutes, this takes about a second. BLAS is limited to one thread for the same reason.
    """
    from threadpoolctl import threadpool_limits

    z = np.asarray(z, np.float64)
    z = z - z.mean(axis=0)
    n = len(z)
    with threadpool_limits(1):
        if n <= z.shape[1]:
            w, u = np.linalg.eigh(z @ z.T)
            order = np.argsort(w)[::-1][:k]
            sing = np.sqrt(np.clip(w[order], 1e-12, None))
            comps = (z.T @ u[:, order] / sing).T
        else:
            w, v = np.linalg.eigh(z.T @ z)
            order = np.argsort(w)[::-1][:k]
            sing = np.sqrt(np.clip(w[order], 1e-12, None))
            comps = v[:, order].T
    # Deterministic signs: the largest loading of each axis is positive.
    signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
    comps = comps * np.where(signs == 0, 1.0, signs)[:, None]
    scale = np.maximum(sing / np.sqrt(max(n - 1, 1)), 1e-6)
    return comps.astype(np.float32), scale.astype(np.float32)


def _mean_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = np.nanmean(x, axis=0)
    mean = np.where(np.isnan(mean), 0.0, mean)
    scale = np.nanstd(x, axis=0)
    # Constant columns get scale 1 so they become zeros instead of NaN/inf.
    scale = np.where(~np.isfinite(scale) | (scale < 1e-8), 1.0, scale)
    return mean.astype(np.float32), scale.astype(np.float32)


def _impute_scale(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (np.asarray(x, dtype=np.float32) - mean) / scale
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)
