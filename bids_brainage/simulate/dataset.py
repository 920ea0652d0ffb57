"""Image-level simulation: a complete BIDS dataset with its ground-truth derivative."""

from __future__ import annotations

import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from bids_brainage.errors import UsageError
from bids_brainage.simulate import truth
from bids_brainage.simulate.anatomy import T1W_FOV_MM, simulate_t1w, subject_traits, visit_warp
from bids_brainage.simulate.bids_writer import (
    BOLD_META,
    T1W_META,
    raw_path,
    save_nifti,
    write_dataset_files,
    write_json,
    write_tsv,
)
from bids_brainage.simulate.bold import simulate_bold
from bids_brainage.simulate.cohort import Subject, make_cohort
from bids_brainage.simulate.config import SimulationConfig, parse_sessions
from bids_brainage.simulate.connectivity import network_model
from bids_brainage.simulate.rigid import PARAM_NAMES, centred_affine, grid_points
from bids_brainage.simulate.sites import make_site
from bids_brainage.simulate.space import reference, template_resolution


def command_line(cfg: SimulationConfig) -> str:
    """The equivalent CLI call (recorded in the dataset for reproducibility)."""
    parts = [
        "bids_brainage simulate OUT",
        f"--n-subjects {cfg.n_subjects}",
        f"--seed {cfg.seed}",
        f"--resolution {cfg.resolution:g}",
        f"--bold-resolution {cfg.bold_resolution:g}",
        f"--n-sites {cfg.n_sites}",
        f"--n-volumes {cfg.n_volumes}",
        f"--tr {cfg.tr:g}",
        f"--age-range {cfg.age_range[0]:g} {cfg.age_range[1]:g}",
        f"--gap-sd {cfg.gap_sd:g}",
        f"--motion-scale {cfg.motion_scale:g}",
        f"--noise-scale {cfg.noise_scale:g}",
        f"--bold-oversample {cfg.bold_oversample}",
    ]
    if cfg.sessions:
        parts.append("--sessions " + " ".join(cfg.sessions))
    return " ".join(parts)


def _displacement_field(cfg: SimulationConfig, warp, ref) -> tuple[np.ndarray, np.ndarray]:
    """ITK displacement field (X, Y, Z, 1, 3), LPS, on a grid of at least 4 mm.

    The mapping is a rigid/scaling part (exact under linear interpolation) plus fields that
    are themselves defined on 4 mm (ventricles) and 12 mm (anatomy) grids, so 4 mm loses
    nothing and keeps the file small; displacements are rounded to 1 micrometre.
    """
    voxel = max(cfg.resolution, 4.0)
    shape = tuple(int(round(f / voxel)) for f in T1W_FOV_MM)
    affine = centred_affine(shape, voxel)
    points = grid_points(shape, affine)
    disp = warp.to_mni(points, ref) - points
    disp[:2] *= -1  # RAS -> LPS, as ITK expects
    disp = np.round(disp, 3)
    return np.ascontiguousarray(disp.T.reshape(*shape, 1, 3)), affine


def simulate_subject(cfg: SimulationConfig, subject: Subject, root: Path) -> list[dict]:
    """Simulate and write every session of one subject; return its truth rows."""
    ref = reference(template_resolution(cfg.resolution))
    ref_bold = reference(2)
    site = make_site(cfg.seed, int(subject.site[4:]) - 1)
    traits = subject_traits(cfg, subject, len(ref.dk_names))
    labels = list(network_model().roi_labels)
    rows = []
    for k, visit in enumerate(subject.visits):
        sub, ses = subject.label, visit.session
        warp = visit_warp(cfg, subject, k, traits, ref)
        anat = simulate_t1w(cfg, ref, subject, k, traits, warp, site)
        t1w_path = raw_path(root, sub, ses, "anat", "T1w", ".nii.gz")
        save_nifti(t1w_path, anat.t1w, anat.affine)
        write_json(
            t1w_path.with_name(t1w_path.name.replace(".nii.gz", ".json")),
            {**T1W_META, "Manufacturer": site.manufacturer, "InstitutionName": site.name},
        )
        source = "bids:raw:" + t1w_path.relative_to(root).as_posix()
        truth.write_anat_truth(root, sub, ses, anat, _displacement_field(cfg, warp, ref), source)

        bold_warp = warp if ref is ref_bold else visit_warp(cfg, subject, k, traits, ref_bold)
        bold = simulate_bold(cfg, ref_bold, subject, k, traits, bold_warp, site)
        bold_path = raw_path(root, sub, ses, "func", "bold", ".nii.gz", task="rest")
        save_nifti(bold_path, bold.bold, bold.affine, tr=cfg.tr)
        write_json(
            bold_path.with_name(bold_path.name.replace(".nii.gz", ".json")),
            {
                **BOLD_META,
                "RepetitionTime": cfg.tr,
                "Manufacturer": site.manufacturer,
                "InstitutionName": site.name,
            },
        )
        source_bold = "bids:raw:" + bold_path.relative_to(root).as_posix()
        summary = truth.write_func_truth(root, sub, ses, bold, labels, source_bold)

        row = {
            "participant_id": f"sub-{sub}",
            "session_id": f"ses-{ses}" if ses else "n/a",
            "age": visit.age,
            "sex": subject.sex,
            "site": subject.site,
            "brain_age_gap": round(visit.biological_age - visit.age, 2),
            "biological_age": visit.biological_age,
            "latent_reserve": subject.reserve,
            "latent_pace": subject.pace,
        }
        row |= {k2: round(v, 1) for k2, v in anat.volumes.items()}
        row |= summary
        row |= {f"head_pose_{p}": float(v) for p, v in zip(PARAM_NAMES, warp.pose, strict=True)}
        rows.append(row)
    if cfg.sessions:
        sessions = pd.DataFrame(
            {
                "session_id": [f"ses-{v.session}" for v in subject.visits],
                "age": [v.age for v in subject.visits],
            }
        )
        write_tsv(root / f"sub-{subject.label}" / f"sub-{subject.label}_sessions.tsv", sessions)
    return rows


def _prepare_output(root: Path, overwrite: bool) -> None:
    if root.exists() and any(root.iterdir()):
        desc = root / "dataset_description.json"
        simulated = desc.exists() and "bids_brainage simulate" in desc.read_text(errors="replace")
        if not (overwrite and simulated):
            hint = " (use --overwrite to replace an earlier simulation)" if simulated else ""
            raise UsageError(f"output folder {root} is not empty{hint}")
        # Remove only what an earlier simulation wrote, so stale subjects cannot linger.
        for child in root.iterdir():
            if child.name.startswith("sub-") or child.name == "derivatives":
                shutil.rmtree(child)


def simulate_dataset(
    out_dir: str | os.PathLike,
    n_subjects: int,
    seed: int = 0,
    resolution: float = 1.0,
    bold_resolution: float = 3.0,
    n_sites: int = 1,
    n_volumes: int = 150,
    tr: float = 2.0,
    sessions: int | list[str] | tuple[str, ...] | None = None,
    session_interval: float = 2.0,
    age_range: tuple[float, float] = (8.0, 85.0),
    gap_sd: float = 3.0,
    motion_scale: float = 1.0,
    noise_scale: float = 1.0,
    n_jobs: int = 1,
    overwrite: bool = False,
    bold_oversample: int = 2,
) -> Path:
    """Simulate a BIDS dataset of T1w + resting-state BOLD with ground truth.

    Parameters
    ----------
    out_dir : path-like
        Folder of the new BIDS dataset (created; must be empty unless ``overwrite`` and it
        holds an earlier simulation).
    n_subjects : int
        Number of participants (labels ``001``, ``002``, ...).
    seed : int
        Random seed; identical arguments give byte-identical files.
    resolution, bold_resolution : float
        T1w and BOLD voxel sizes in mm.
    n_sites : int
        Number of scanners with different contrast and noise.
    n_volumes, tr : int, float
        BOLD run length and repetition time (s).
    sessions : int or sequence of str, optional
        Number of sessions (``2`` -> ``ses-01``, ``ses-02``) or their labels; ``None``/1 for a
        cross-sectional dataset without session folders.
    session_interval : float
        Mean years between sessions.
    age_range : (float, float)
        Uniform range of chronological age at the first session.
    gap_sd : float
        Standard deviation of the hidden brain-age gap (years).
    motion_scale, noise_scale : float
        Multipliers of head motion and of all noise sources (0 = none).
    n_jobs : int
        Worker processes; the output does not depend on it.
    overwrite : bool
        Replace an earlier simulation in ``out_dir``.
    bold_oversample : int
        Fineness of the motion-free BOLD image (2: sharp moved volumes; 1: faster).

    Returns
    -------
    Path
        ``out_dir``; the ground truth is in ``out_dir/derivatives/simulation``.
    """
    cfg = SimulationConfig(
        n_subjects=n_subjects,
        seed=seed,
        resolution=float(resolution),
        bold_resolution=float(bold_resolution),
        n_sites=n_sites,
        n_volumes=n_volumes,
        tr=float(tr),
        sessions=parse_sessions(sessions),
        session_interval=float(session_interval),
        age_range=(float(age_range[0]), float(age_range[1])),
        gap_sd=float(gap_sd),
        motion_scale=float(motion_scale),
        noise_scale=float(noise_scale),
        n_jobs=max(1, int(n_jobs)),
        bold_oversample=int(bold_oversample),
    )
    root = Path(out_dir)
    _prepare_output(root, overwrite)
    root.mkdir(parents=True, exist_ok=True)
    subjects = make_cohort(cfg)
    # Build the cached references before forking so workers share them copy-on-write.
    ref = reference(template_resolution(cfg.resolution))
    reference(2)
    network_model()

    jobs = min(cfg.n_jobs, len(subjects))
    if jobs > 1:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            results = list(
                pool.map(simulate_subject, [cfg] * len(subjects), subjects, [root] * len(subjects))
            )
    else:
        results = [simulate_subject(cfg, s, root) for s in subjects]

    command = command_line(cfg)
    participants = pd.DataFrame(
        {
            "participant_id": [f"sub-{s.label}" for s in subjects],
            "age": [s.age for s in subjects],
            "sex": [s.sex for s in subjects],
            "site": [s.site for s in subjects],
        }
    )
    write_dataset_files(root, command, participants, bool(cfg.sessions))
    truth.write_truth_dataset(root, command)
    truth.write_truth_table(root, [row for rows in results for row in rows], ref.dk_names)
    return root
