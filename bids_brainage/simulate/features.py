"""Feature-level mode: the same generative model, without images (thousands of subjects in seconds).

Subjects, their traits and their ROI signals come from the very random streams used by the
image-level simulator, so subject ``k`` of seed ``s`` is the same person in both modes.
Volumes are computed analytically from the lifespan curves and the template's regional
volumes (not measured from images), and measurement error is added as noise: image-level
cohorts remain the truth for pipeline benchmarks. Age enters non-linearly (published lifespan
curves with sex x age interactions, ``lifespan.py``; developmental and accelerating ageing
effects on connectivity, ``connectivity.py``), and two latent traits of each person
(``reserve``, ``pace``, ``cohort.Subject``) drive both the structural and the functional
features, beyond age.

Feature names follow the pipeline: ``smri__GM_total``, ``smri__WM_total``,
``smri__CSF_total``, ``smri__TIV``, ``smri__GM_<DK region>`` (mm^3) and
``fmri__<roiA>__<roiB>`` (Fisher-z Pearson correlation) for the upper triangle of a
documented subset of ``n_rois`` Seitzman ROIs (:func:`roi_subset`).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_brainage.errors import UsageError
from bids_brainage.simulate.anatomy import BASE_SCALE, SubjectTraits, regional_gm_factor, subject_traits
from bids_brainage.simulate.bids_writer import write_json, write_tsv
from bids_brainage.simulate.cohort import Subject, Visit, make_cohort, subject_rng
from bids_brainage.simulate.config import SimulationConfig, parse_sessions
from bids_brainage.simulate.connectivity import network_model, roi_signals, subject_connectivity
from bids_brainage.simulate.lifespan import intracranial_factor, ventricle_factor, white_matter_factor
from bids_brainage.simulate.space import reference
from bids_brainage.utils import atomic

STRUCTURAL_NOISE = 0.02  # relative segmentation error of volumes
FUNCTIONAL_NOISE = 0.4  # residual noise SD relative to the unit-variance ROI signal


def roi_subset(n_rois: int) -> np.ndarray:
    """Indices of ``n_rois`` Seitzman ROIs: round-robin over networks (``unassigned`` last).

    Taking ROIs in turn from each network keeps every network represented for small
    ``n_rois``; ``n_rois >= 300`` gives all ROIs in atlas order.
    """
    model = network_model()
    n_total = len(model.roi_labels)
    if n_rois >= n_total:
        return np.arange(n_total)
    order = sorted(set(model.networks) - {"unassigned"}) + ["unassigned"]
    queues = [list(np.flatnonzero(model.roi_network == model.networks.index(n))) for n in order]
    picked: list[int] = []
    while len(picked) < n_rois:
        for queue in queues:
            if queue and len(picked) < n_rois:
                picked.append(queue.pop(0))
    return np.array(sorted(picked))


@lru_cache(maxsize=1)
def _reference_volumes() -> dict[str, np.ndarray | float]:
    ref = reference(2)
    voxel = ref.voxel_volume
    n = len(ref.dk_names) + 1
    return {
        "gm_region": np.bincount(ref.dk.ravel(), weights=ref.gm.ravel(), minlength=n) * voxel,
        "wm_region": np.bincount(ref.dk.ravel(), weights=ref.wm.ravel(), minlength=n) * voxel,
        "rate_region": np.array(
            [1.0]
            + [float(ref.lobe_rate[ref.dk == k].mean()) if np.any(ref.dk == k) else 1.0 for k in range(1, n)]
        ),
        "wm": float(ref.wm.sum()) * voxel,
        "csf": float(ref.csf.sum()) * voxel,
        "ventricles": float((ref.csf * ref.ventricles).sum()) * voxel,
    }


def _structural(
    cfg: SimulationConfig, subject: Subject, visit: Visit, traits: SubjectTraits, rng: np.random.Generator
) -> dict[str, float]:
    ref = reference(2)
    vols = _reference_volumes()
    size = BASE_SCALE**3 * traits.tiv_factor * float(intracranial_factor(visit.biological_age))
    factor = regional_gm_factor(subject, visit, traits, vols["rate_region"])
    change = vols["gm_region"] * (factor - 1)
    # As in the images: grey-matter gain comes from white matter (capped), loss becomes CSF,
    # late-life white-matter loss becomes CSF, expanding ventricles compress white matter.
    gain = np.minimum(np.clip(change, 0, None), 0.3 * vols["wm_region"])
    loss = np.clip(-change, 0, None)
    gm = (vols["gm_region"] + gain - loss) * size
    wm_left = vols["wm"] - gain.sum()
    wm_loss = wm_left * (1 - float(white_matter_factor(visit.biological_age, subject.sex, subject.pace)))
    dvent = vols["ventricles"] * (
        float(ventricle_factor(visit.biological_age, subject.sex, subject.pace)) - 1
    )
    wm = (wm_left - wm_loss - dvent) * size
    csf = (vols["csf"] + loss.sum() + wm_loss + dvent) * size
    noise = 1 + STRUCTURAL_NOISE * cfg.noise_scale * rng.standard_normal(len(ref.dk_names) + 3)
    out = {
        "smri__GM_total": gm.sum() * noise[0],
        "smri__WM_total": wm * noise[1],
        "smri__CSF_total": csf * noise[2],
    }
    out["smri__TIV"] = out["smri__GM_total"] + out["smri__WM_total"] + out["smri__CSF_total"]
    for k, name in enumerate(ref.dk_names, start=1):
        out[f"smri__GM_{name}"] = gm[k] * noise[2 + k]
    return {k: round(float(v), 1) for k, v in out.items()}


def _functional(
    cfg: SimulationConfig, subject: Subject, k: int, visit: Visit, rois: np.ndarray
) -> dict[str, float]:
    # Same stream and draw order as bold.simulate_bold, so the ROI signals are identical.
    rng = subject_rng(cfg.seed, subject.index, 30 + k)
    rng.normal(0, 0.8, 3), rng.normal(0, 0.6, 3)
    conn = subject_connectivity(visit.biological_age, subject.sex, rng, subject.reserve, subject.pace)
    signals = roi_signals(conn, cfg.n_volumes, cfg.tr, rng)[:, rois]
    noise_rng = subject_rng(cfg.seed, subject.index, 60 + k)
    signals = signals + FUNCTIONAL_NOISE * cfg.noise_scale * noise_rng.standard_normal(signals.shape)
    corr = np.corrcoef(signals.T)
    iu = np.triu_indices(len(rois), 1)
    z = np.arctanh(np.clip(corr[iu], -0.999999, 0.999999))
    labels = [network_model().roi_labels[i] for i in rois]
    return {f"fmri__{labels[i]}__{labels[j]}": round(float(v), 5) for i, j, v in zip(*iu, z, strict=True)}


def simulate_features(
    n_subjects: int,
    seed: int = 0,
    n_sites: int = 1,
    sessions: int | list[str] | tuple[str, ...] | None = None,
    session_interval: float = 2.0,
    age_range: tuple[float, float] = (8.0, 85.0),
    gap_sd: float = 3.0,
    n_volumes: int = 150,
    tr: float = 2.0,
    noise_scale: float = 1.0,
    n_rois: int = 40,
    include_truth: bool = False,
) -> pd.DataFrame:
    """Feature table of a simulated cohort, one row per subject (and session).

    Parameters
    ----------
    n_subjects, seed, n_sites, sessions, session_interval, age_range, gap_sd, n_volumes, tr, noise_scale
        As in :func:`bids_brainage.simulate.simulate_dataset`.
    n_rois : int
        Seitzman ROIs for the functional features (``n_rois * (n_rois - 1) / 2`` columns).
    include_truth : bool
        Add ``biological_age``, ``brain_age_gap``, ``latent_reserve`` and ``latent_pace``
        columns (hidden truth; the latent traits shared by both modalities).

    Returns
    -------
    pandas.DataFrame
        Columns ``participant_id``, [``session_id``], ``age``, ``sex`` (M/F), ``site``,
        ``smri__*`` and ``fmri__*`` features.
    """
    cfg = SimulationConfig(
        n_subjects=n_subjects,
        seed=seed,
        n_sites=n_sites,
        sessions=parse_sessions(sessions),
        session_interval=float(session_interval),
        age_range=(float(age_range[0]), float(age_range[1])),
        gap_sd=float(gap_sd),
        n_volumes=n_volumes,
        tr=float(tr),
        noise_scale=float(noise_scale),
        n_rois=n_rois,
    )
    ref = reference(2)
    rois = roi_subset(cfg.n_rois)
    rows = []
    for subject in make_cohort(cfg):
        traits = subject_traits(cfg, subject, len(ref.dk_names), with_field=False)
        for k, visit in enumerate(subject.visits):
            row: dict = {"participant_id": f"sub-{subject.label}"}
            if cfg.sessions:
                row["session_id"] = f"ses-{visit.session}"
            row |= {"age": visit.age, "sex": subject.sex, "site": subject.site}
            if include_truth:
                row |= {
                    "biological_age": visit.biological_age,
                    "brain_age_gap": round(visit.biological_age - visit.age, 2),
                    "latent_reserve": subject.reserve,
                    "latent_pace": subject.pace,
                }
            rng = subject_rng(cfg.seed, subject.index, 50 + k)
            row |= _structural(cfg, subject, visit, traits, rng)
            row |= _functional(cfg, subject, k, visit, rois)
            rows.append(row)
    return pd.DataFrame(rows)


def _header(columns: list[str]) -> str:
    """Header line of a one-row feature table."""
    return "\t".join(columns) + "\n"


def _row(values: list[float]) -> str:
    """One row of floats as pandas writes a row taken from the mixed-type table: ``repr``
    (shortest round-trip) of each value, ``n/a`` for missing ones. Formatted here rather than
    through ``DataFrame.to_csv``, which took ~2 ms per file (20 s for 5000 subjects)."""
    return "\t".join("n/a" if v != v else repr(v) for v in values) + "\n"


def write_feature_tables(out_dir: str | os.PathLike, overwrite: bool = False, **kwargs: Any) -> Path:
    """Write ``features.tsv`` (all subjects), ``truth.tsv`` and per-subject feature tables.

    Per subject: ``sub-X[/ses-Y]/sub-X[_ses-Y]_desc-{structural,functional}_features.tsv``
    (one row each), the names the participant level writes.
    """
    root = Path(out_dir)
    if root.exists() and any(root.iterdir()) and not (overwrite and (root / "features.tsv").exists()):
        raise UsageError(f"output folder {root} is not empty")
    frame = simulate_features(include_truth=True, **kwargs)
    truth_cols = ["biological_age", "brain_age_gap", "latent_reserve", "latent_pace"]
    id_cols = [c for c in ("participant_id", "session_id") if c in frame]
    smri = [c for c in frame if c.startswith("smri__")]
    fmri = [c for c in frame if c.startswith("fmri__")]
    tables = [(desc, _header(cols), frame[cols].to_numpy(dtype=float).tolist())
              for desc, cols in (("structural", smri), ("functional", fmri))]  # fmt: skip
    sessions = frame["session_id"] if "session_id" in frame else None
    for i, participant in enumerate(frame["participant_id"]):
        folder, stem = root / participant, participant
        if sessions is not None:
            folder, stem = folder / sessions.iat[i], f"{stem}_{sessions.iat[i]}"
        for desc, header, values in tables:
            atomic.write_text(folder / f"{stem}_desc-{desc}_features.tsv", header + _row(values[i]))
    write_tsv(root / "features.tsv", frame.drop(columns=truth_cols))
    write_tsv(root / "truth.tsv", frame[[*id_cols, "age", "sex", "site", *truth_cols]])
    write_json(root / "features.json", {
        "Description": "Simulated feature tables (bids_brainage simulate --features-only)",
        "smri__*": "Volumes in mm^3 (analytic, with 2 % measurement noise)",
        "fmri__<roiA>__<roiB>": "Fisher-z Pearson correlation between two Seitzman ROIs",
        "truth.tsv": "Hidden biological age, brain-age gap and the latent traits shared by both "
        "modalities (latent_reserve, latent_pace; see docs/simulation.md)",
    })  # fmt: skip
    return root
