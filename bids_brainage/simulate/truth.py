"""The ground-truth derivative ``OUT/derivatives/simulation/`` and its documentation.

Layout (``[_ses-Y]`` only for longitudinal data)::

    derivatives/simulation/
      dataset_description.json, README.md, .bidsignore
      truth.tsv, truth.json             one row per subject/session: ages, gap, volumes, motion summary
      atlas-DK83_dseg.tsv               label table of the DK83 segmentations
      sub-X/[ses-Y/]anat/
        sub-X_label-{GM,WM,CSF}_probseg.nii.gz     true partial volumes (T1w grid)
        sub-X_desc-brain_mask.nii.gz               true brain mask (GM+WM+CSF >= 0.5)
        sub-X_atlas-DK83_dseg.nii.gz               true Desikan-Killiany labels
        sub-X_from-MNI152NLin2009aSym_to-T1w_mode-image_xfm.nii.gz   ITK displacement field
      sub-X/[ses-Y/]func/
        sub-X_task-rest_desc-motion_timeseries.tsv  applied motion (fMRIPrep column names)
        sub-X_task-rest_desc-brain_mask.nii.gz      brain mask on the BOLD grid, reference pose
        sub-X_task-rest_atlas-Seitzman300_desc-{model,sample}_relmat.tsv   true connectivity
        sub-X_task-rest_atlas-Seitzman300_desc-signal_timeseries.tsv       noise-free ROI signals
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bids_brainage import __version__
from bids_brainage.derivatives import BIDS_VERSION, bids_name
from bids_brainage.simulate.bids_writer import save_nifti, subject_dir, write_json, write_tsv
from bids_brainage.simulate.bold import BoldResult
from bids_brainage.simulate.rigid import PARAM_NAMES
from bids_brainage.utils import atomic

TRUTH_DIR = Path("derivatives") / "simulation"

MOTION_CONVENTION = (
    "Applied rigid head motion of each volume relative to volume 0 (the reference, all zeros). "
    "trans_* in mm, rot_* in radians. The six numbers define the world-space (scanner RAS, mm) "
    "matrix M = [[R, t], [0, 1]] with R = Rx(rot_x) @ Ry(rot_y) @ Rz(rot_z) (right-handed), rotating "
    "about the world origin, which is the centre of the BOLD field of view, then translating by "
    "t = (trans_x, trans_y, trans_z). M maps a point of the reference head position to its position "
    "in volume t, so V_t(M x) = V_0(x): resampling volume t at M x for every reference-grid point x "
    "undoes the motion. This is what rigid realignment (MCFLIRT, SPM, the project's hmc) estimates."
)

TRUTH_COLUMNS = {
    "participant_id": {"Description": "Participant label"},
    "session_id": {"Description": "Session label (n/a for cross-sectional data)"},
    "age": {"Description": "Chronological age at the session", "Units": "year"},
    "sex": {"Description": "Sex (F/M)"},
    "site": {"Description": "Acquisition site"},
    "brain_age_gap": {
        "Description": "Hidden brain-age gap (biological minus chronological age)",
        "Units": "year",
    },
    "biological_age": {
        "Description": "Biological brain age that drives every ageing effect",
        "Units": "year",
    },
    "latent_reserve": {
        "Description": "Latent trait shared by both modalities (standard normal): larger grey matter "
        "and stronger within-network connectivity"
    },
    "latent_pace": {
        "Description": "Latent trait shared by both modalities (standard normal): every ageing rate "
        "after young adulthood is multiplied by 1 + 0.25 * latent_pace (structural and functional)"
    },
    "GM_total": {"Description": "True grey-matter volume in the T1w image", "Units": "mm^3"},
    "WM_total": {"Description": "True white-matter volume", "Units": "mm^3"},
    "CSF_total": {"Description": "True CSF volume inside the intracranial mask", "Units": "mm^3"},
    "TIV": {"Description": "True total intracranial volume (GM + WM + CSF)", "Units": "mm^3"},
    "ventricles": {"Description": "True lateral/third-ventricle CSF volume", "Units": "mm^3"},
    "GM_<region>": {"Description": "True grey-matter volume of a Desikan-Killiany region", "Units": "mm^3"},
    "mean_fd": {
        "Description": "Mean framewise displacement (Power, 50 mm head radius) of the applied motion",
        "Units": "mm",
    },
    "max_abs_trans": {"Description": "Largest absolute applied translation", "Units": "mm"},
    "max_abs_rot": {"Description": "Largest absolute applied rotation", "Units": "rad"},
    "tsnr": {"Description": "Target grey-matter temporal SNR of the thermal noise (inf when noise-free)"},
    "bold_to_t1w_<param>": {
        "Description": "Rigid BOLD-to-T1w misalignment: M maps BOLD world points to T1w world points; "
        "same parameterisation as the motion"
    },
    "head_pose_<param>": {
        "Description": "Head pose in the T1w scan (rigid part of the native-to-MNI mapping, see README)"
    },
}


def framewise_displacement(motion: np.ndarray, radius: float = 50.0) -> np.ndarray:
    """Power et al. (2012) FD of motion parameters (n, 6); 0 for the first volume."""
    diff = np.abs(np.diff(motion, axis=0))
    return np.r_[0.0, diff[:, :3].sum(1) + radius * diff[:, 3:].sum(1)]


def write_truth_dataset(root: Path, command: str) -> None:
    """Top-level files of the truth derivative."""
    out = root / TRUTH_DIR
    write_json(
        out / "dataset_description.json",
        {
            "Name": "bids_brainage simulation ground truth",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [
                {"Name": "bids_brainage simulate", "Version": __version__, "Description": command}
            ],
            # Sidecars cite the simulated raw files as bids:raw: URIs (relative to this folder).
            "DatasetLinks": {"raw": "../.."},
        },
    )
    atomic.write_text(out / ".bidsignore", "truth.*\n*_timeseries.*\n*_relmat.*\n*_xfm.*\n")
    atomic.write_text(out / "README.md", (__doc__ or "") + "\nMotion convention: " + MOTION_CONVENTION + "\n")


def write_truth_table(root: Path, rows: list[dict], region_names: tuple[str, ...]) -> Path:
    """``truth.tsv`` (+ JSON) with one row per subject and session."""
    out = root / TRUTH_DIR
    frame = pd.DataFrame(rows)
    meta = {k: v for k, v in TRUTH_COLUMNS.items() if "<" not in k}
    for col in frame.columns:
        if col.startswith("GM_") and col != "GM_total":
            meta[col] = {**TRUTH_COLUMNS["GM_<region>"], "Region": col[3:]}
        elif col.startswith("bold_to_t1w_"):
            meta[col] = TRUTH_COLUMNS["bold_to_t1w_<param>"]
        elif col.startswith("head_pose_"):
            meta[col] = TRUTH_COLUMNS["head_pose_<param>"]
    meta["MotionConvention"] = MOTION_CONVENTION
    write_json(out / "truth.json", meta)
    write_tsv(
        out / "atlas-DK83_dseg.tsv",
        pd.DataFrame({"index": range(1, len(region_names) + 1), "name": region_names}),
    )
    return write_tsv(out / "truth.tsv", frame)


def write_anat_truth(
    root: Path, sub: str, ses: str | None, anat, xfm: tuple[np.ndarray, np.ndarray], source: str
) -> None:
    """True tissue maps, brain mask, DK labels and the MNI-to-T1w displacement field."""
    folder = subject_dir(root / TRUTH_DIR, sub, ses) / "anat"
    ent = {"sub": sub, "ses": ses}
    for tissue in ("GM", "WM", "CSF"):
        path = folder / bids_name("probseg", ".nii.gz", label=tissue, **ent)
        save_nifti(path, np.clip(anat.tissues[tissue], 0, 1).astype(np.float32), anat.affine)
        write_json(
            path.with_name(path.name.replace(".nii.gz", ".json")),
            {"Sources": [source], "Description": f"True {tissue} partial-volume fraction"},
        )
    brain = anat.tissues["GM"] + anat.tissues["WM"] + anat.tissues["CSF"]
    path = folder / bids_name("mask", ".nii.gz", desc="brain", **ent)
    save_nifti(path, (brain >= 0.5).astype(np.uint8), anat.affine)
    write_json(
        path.with_name(path.name.replace(".nii.gz", ".json")),
        {"Sources": [source], "Type": "Brain", "Description": "True intracranial mask: GM+WM+CSF >= 0.5"},
    )
    path = folder / bids_name("dseg", ".nii.gz", atlas="DK83", **ent)
    save_nifti(path, anat.dk, anat.affine)
    write_json(
        path.with_name(path.name.replace(".nii.gz", ".json")),
        {"Sources": [source], "Description": "True Desikan-Killiany labels (atlas-DK83_dseg.tsv)"},
    )
    field, field_affine = xfm
    path = folder / bids_name(
        "xfm", ".nii.gz", **{"from": "MNI152NLin2009aSym", "to": "T1w", "mode": "image"}, **ent
    )
    save_nifti(path, field, field_affine, intent="vector")
    write_json(
        path.with_name(path.name.replace(".nii.gz", ".json")),
        {
            "Description": "True mapping between T1w and MNI152NLin2009aSym as an ITK/ANTs displacement field "
            "(5-D, LPS vectors in mm, on a T1w-space grid): a T1w point p corresponds to the template "
            "point p + d(p). Use it as the transform to resample template-space images into T1w space "
            "(antsApplyTransforms -r T1w -t this file).",
            "Sources": [source],
        },
    )


def write_func_truth(
    root: Path, sub: str, ses: str | None, bold: BoldResult, labels: list[str], source: str
) -> dict:
    """Applied motion, reference-pose mask, true connectivity and ROI signals; returns summary columns."""
    folder = subject_dir(root / TRUTH_DIR, sub, ses) / "func"
    ent = {"sub": sub, "ses": ses, "task": "rest"}
    fd = framewise_displacement(bold.motion)
    motion = pd.DataFrame(bold.motion, columns=list(PARAM_NAMES))
    motion["framewise_displacement"] = fd
    path = folder / bids_name("timeseries", ".tsv", desc="motion", **ent)
    write_tsv(path, motion)
    col_meta = {c: {"Units": "mm" if c.startswith("trans") else "rad"} for c in PARAM_NAMES}
    col_meta["framewise_displacement"] = {"Units": "mm", "Description": "Power FD, 50 mm radius"}
    write_json(
        path.with_name(path.name.replace(".tsv", ".json")),
        {**col_meta, "Sources": [source], "MotionConvention": MOTION_CONVENTION,
         "BOLDToT1wMisalignment": dict(zip(PARAM_NAMES, map(float, bold.misalignment), strict=True))},
    )  # fmt: skip
    path = folder / bids_name("mask", ".nii.gz", desc="brain", **ent)
    save_nifti(path, bold.mask, bold.affine)
    write_json(
        path.with_name(path.name.replace(".nii.gz", ".json")),
        {
            "Sources": [source],
            "Type": "Brain",
            "Description": "True brain mask on the BOLD grid at the reference (volume 0) pose",
        },
    )
    sample_corr = np.corrcoef(bold.roi_signals.T)
    for desc, mat, text in (
        (
            "model",
            bold.model_corr,
            "Expected (population-level for this subject's parameters) Pearson correlation of the ROI signals",
        ),
        ("sample", sample_corr, "Pearson correlation of the realised noise-free ROI signals of this run"),
    ):
        path = folder / bids_name("relmat", ".tsv", atlas="Seitzman300", desc=desc, **ent)
        write_tsv(path, pd.DataFrame(mat, columns=labels), decimals=4)
        write_json(
            path.with_name(path.name.replace(".tsv", ".json")),
            {"Description": text + "; rows and columns in header order", "Sources": [source]},
        )
    path = folder / bids_name("timeseries", ".tsv", atlas="Seitzman300", desc="signal", **ent)
    write_tsv(path, pd.DataFrame(bold.roi_signals, columns=labels), decimals=4)
    write_json(
        path.with_name(path.name.replace(".tsv", ".json")),
        {
            "Description": "Noise-free ROI signals (unit variance) before scaling, motion and noise",
            "Sources": [source],
        },
    )
    summary = {
        "mean_fd": float(fd[1:].mean()),
        "max_abs_trans": float(np.abs(bold.motion[:, :3]).max()),
        "max_abs_rot": float(np.abs(bold.motion[:, 3:]).max()),
        "tsnr": float(bold.tsnr),
    }
    summary |= {f"bold_to_t1w_{k}": float(v) for k, v in zip(PARAM_NAMES, bold.misalignment, strict=True)}
    return summary
