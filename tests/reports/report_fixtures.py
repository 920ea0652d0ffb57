"""Realistic fixture outputs for report tests: what the participant and group levels write.

``make_outputs(root)`` builds a small BIDS dataset and an OUTPUT_DIR with reportlet SVGs,
feature/QC sidecars, a crash file, ``brainage.tsv`` and the ``group/`` tables, following the
contract in ``bids_brainage.reports.group``. Deterministic for a given seed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_brainage.reports import figures

RUN_UUID = "20260101-000000_fixture0"
SUBJECTS = {"01": [None], "02": ["1", "2"], "03": [None]}  # sub-03: structural only


def _json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")


def _template() -> nib.Nifti1Image:
    from nilearn.datasets import load_mni152_template

    tpl = load_mni152_template(resolution=1)  # the shipped grid: no resampling
    data = np.asarray(tpl.dataobj, np.float32)[::4, ::4, ::4]
    affine = tpl.affine.copy()
    affine[:3, :3] *= 4
    return nib.Nifti1Image(data, affine)


_RENDERED: dict[str, bytes] = {}


def _once(kind: str, path: Path, render: Any) -> None:
    """Render reportlet ``kind`` once per process and copy it for later subjects (keeps tests fast)."""
    if kind not in _RENDERED:
        render(path)
        _RENDERED[kind] = path.read_bytes()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_RENDERED[kind])


def _slices_svg(data: np.ndarray, path: Path, overlay: np.ndarray | None = None, title: str = "") -> None:
    fig, axes = figures.figure(ncols=3, width=2.0, height=2.0)
    for ax, index in zip(axes, (0.35, 0.5, 0.65), strict=True):
        k = int(index * data.shape[2])
        ax.imshow(np.rot90(data[:, :, k]), cmap="gray")
        if overlay is not None:
            ax.contour(
                np.rot90(overlay[:, :, k]), levels=[0.5, 1.5, 2.5], colors=["r", "g", "b"], linewidths=0.6
            )
        ax.set_axis_off()
    fig.suptitle(title)
    figures.save_svg(fig, path)


def _fade_svg(fixed: np.ndarray, moving: np.ndarray, path: Path) -> None:
    """The registration reportlet as the anatomical workflow draws it: two layers fading."""
    from bids_brainage.reports.anatomical import RED, _mosaic, _normalise, _write_svg

    brain = fixed > np.percentile(fixed, 60)
    layers = [_mosaic(_normalise(d, brain), brain, [(brain, RED)], (4.0, 4.0, 4.0)) for d in (fixed, moving)]
    _write_svg(layers, "Registration", "T1w in MNI fading into the template", path)


def _func_inputs(folder: Path, rng: np.random.Generator, tpl: nib.Nifti1Image, seg: np.ndarray) -> dict:
    """Small files for the real functional reportlets (once per process): a T1w, its GM/WM/CSF
    labels, a shifted BOLD reference, a 4D BOLD with confounds (two FD spikes) and a relmat."""
    if (folder / "relmat.tsv").is_file():
        return {k: str(folder / v) for k, v in _FUNC_FILES.items()}
    folder.mkdir(parents=True, exist_ok=True)
    t1 = np.asarray(tpl.dataobj, np.float32)
    nib.save(nib.Nifti1Image(t1, tpl.affine), folder / _FUNC_FILES["t1w"])
    nib.save(nib.Nifti1Image(seg.astype(np.uint8), tpl.affine), folder / _FUNC_FILES["dseg"])
    nib.save(nib.Nifti1Image(np.roll(t1, 1, axis=0) * 0.6, tpl.affine), folder / _FUNC_FILES["boldref"])
    bold = rng.normal(100, 2, seg.shape + (60,)).astype(np.float32)
    nib.save(nib.Nifti1Image(bold, tpl.affine), folder / _FUNC_FILES["bold"])
    fd = np.abs(rng.normal(0.15, 0.08, 60))
    fd[[20, 21, 45]] = 0.9
    frame = pd.DataFrame({"framewise_displacement": fd, "dvars": np.abs(rng.normal(30, 5, 60))})
    frame.loc[0, "framewise_displacement"] = np.nan
    frame.to_csv(folder / _FUNC_FILES["confounds"], sep="\t", index=False, na_rep="n/a")
    networks = ["Auditory"] * 3 + ["Cerebellar"] * 2 + ["Default"] * 20 + ["DorsalAttention"] * 8
    networks += ["FrontoParietal"] * 12 + ["Salience"] * 4 + ["SomatoMotor"] * 10 + ["Visual"] * 14
    signal = rng.normal(size=(len(networks), 120))
    for name in set(networks):  # a shared signal per network: visible blocks
        pick = np.array(networks) == name
        signal[pick] += rng.normal(size=120)
    nodes = [f"ROI{i:03d}" for i in range(len(networks))]
    relmat = pd.DataFrame(np.corrcoef(signal).round(4), columns=nodes)
    relmat.insert(0, "Node", nodes)
    relmat.to_csv(folder / _FUNC_FILES["relmat"], sep="\t", index=False)
    (folder / "networks.txt").write_text("\n".join(networks))
    return {k: str(folder / v) for k, v in _FUNC_FILES.items()}


_FUNC_FILES = {"t1w": "t1w.nii.gz", "dseg": "dseg.nii.gz", "boldref": "boldref.nii.gz", "bold": "bold.nii.gz",
               "confounds": "confounds.tsv", "relmat": "relmat.tsv", "networks": "networks.txt"}  # fmt: skip


def _carpet_svg(inputs: dict, path: Path, fd_threshold: float) -> None:
    from bids_brainage.reports.functional import plot_carpet

    plot_carpet(inputs["bold"], inputs["dseg"], inputs["dseg"], inputs["confounds"], path, fd_threshold)


def _coreg_svg(inputs: dict, path: Path) -> None:
    from bids_brainage.reports.functional import plot_coregistration

    plot_coregistration(inputs["t1w"], inputs["boldref"], path, inputs["dseg"])


def _matrix_svg(inputs: dict, path: Path) -> None:
    from bids_brainage.reports.functional import plot_connectivity

    networks = Path(inputs["networks"]).read_text().split("\n")
    plot_connectivity(inputs["relmat"], networks, path)


def _subject(
    out: Path, bids: Path, sub: str, ses: str | None, rng: np.random.Generator, tpl: nib.Nifti1Image
) -> None:
    base_bids = bids / f"sub-{sub}" / (f"ses-{ses}" if ses else "")
    prefix = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
    (base_bids / "anat").mkdir(parents=True, exist_ok=True)
    (base_bids / "anat" / f"{prefix}_T1w.nii.gz").write_bytes(b"")
    data_dir = out / f"sub-{sub}" / (f"ses-{ses}" if ses else "")
    figs = out / f"sub-{sub}" / "figures"
    data = np.asarray(tpl.dataobj)
    mask = (data > np.percentile(data, 60)).astype(float)
    seg = np.digitize(data, np.percentile(data[data > 0], [40, 70, 90])).astype(float) * mask
    _once("mask", figs / f"{prefix}_desc-brain_mask.svg", lambda p: _slices_svg(data, p, mask, "brain mask"))
    _once("seg", figs / f"{prefix}_dseg.svg", lambda p: _slices_svg(data, p, seg, "GM / WM / CSF"))
    reg = figs / f"{prefix}_space-MNI152NLin2009aSym_T1w.svg"
    moved = np.roll(data, 1, axis=0) * rng.uniform(0.9, 1.1)
    _once("reg", reg, lambda p: _fade_svg(data, moved, p))
    (data_dir / "anat").mkdir(parents=True, exist_ok=True)
    nib.save(
        nib.Nifti1Image(mask.astype(np.uint8), tpl.affine),
        data_dir / "anat" / f"{prefix}_desc-brain_mask.nii.gz",
    )
    # structural features as the anatomical workflow writes them: one-row TSV + data dictionary
    values = {
        "GM": rng.normal(650, 40),
        "WM": rng.normal(480, 30),
        "CSF": rng.normal(250, 30),
        "TIV": rng.normal(1400, 100),
    }
    values.update({f"DK83_gmvol_R_region{i:02d}": rng.uniform(1, 12) for i in range(20)})
    pd.DataFrame([{"participant_id": f"sub-{sub}", **values}]).to_csv(
        data_dir / "anat" / f"{prefix}_desc-structural_features.tsv", sep="\t", index=False
    )
    _json(
        data_dir / "anat" / f"{prefix}_desc-structural_features.json",
        {
            **{name: {"Description": f"{name} volume", "Units": "mL"} for name in values},
            "Atlases": {"DK83": {"Description": "Desikan-Killiany", "Space": "MNI152NLin2009aSym"}},
            "Sources": [f"bids:raw:sub-{sub}/anat/{prefix}_T1w.nii.gz"],
        },
    )
    if sub == "03":
        return
    (base_bids / "func").mkdir(parents=True, exist_ok=True)
    (base_bids / "func" / f"{prefix}_task-rest_bold.nii.gz").write_bytes(b"")
    stem = figs / f"{prefix}_task-rest"
    inputs = _func_inputs(out.parent / "func_inputs", rng, tpl, seg)
    _once("carpet", Path(f"{stem}_desc-carpet_bold.svg"), lambda p: _carpet_svg(inputs, p, 0.5))
    _once("coreg", Path(f"{stem}_desc-coreg_bold.svg"), lambda p: _coreg_svg(inputs, p))
    _once("conn", Path(f"{stem}_desc-connectivity_bold.svg"), lambda p: _matrix_svg(inputs, p))
    excluded = ses == "2"
    qc = {
        "excluded": excluded,
        "exclusion_reason": "more than 50% of volumes scrubbed" if excluded else "",
        "mean_fd": 0.61 if excluded else float(rng.uniform(0.08, 0.2)),
        "fraction_scrubbed": 0.62 if excluded else float(rng.uniform(0, 0.1)),
        "tsnr": float(rng.uniform(40, 80)),
        "n_volumes": 100,
    }
    _json(data_dir / "func" / f"{prefix}_task-rest_desc-functional_qc.json", {"Description": "QC", **qc})
    _json(
        data_dir / "func" / f"{prefix}_task-rest_desc-functional_features.json",
        {
            "Atlas": "Seitzman300",
            "Connectivity": "correlation",
            "Denoising": {"HighPass": 0.01, "LowPass": 0.1, "FDThreshold": 0.5},
            "NumberOfFeatures": 44850,
            "QC": qc,
        },
    )


def _group(out: Path, rng: np.random.Generator) -> None:
    rows = []
    n_extra = 36
    people = [("01", "n/a"), ("02", "ses-1"), ("02", "ses-2"), ("03", "n/a")]
    people += [(f"{i:02d}", "n/a") for i in range(4, 4 + n_extra)]
    for index, (sub, ses) in enumerate(people):
        age = float(rng.uniform(20, 80))
        sex = "F" if index % 2 else "M"
        predicted = age + 0.25 * (48 - age) + float(rng.normal(0, 4))
        gap = predicted - age
        rows.append(
            {
                "participant_id": f"sub-{sub}",
                "session_id": ses,
                "age": round(age, 1),
                "sex": sex,
                "site": f"S{index % 3 + 1}",
                "predicted_age": round(predicted, 2),
                "interval_lower": round(predicted - 8.5, 2),
                "interval_upper": round(predicted + 8.5, 2),
                "brainage_gap": round(gap, 2),
                "brainage_gap_corrected": round(gap - 0.25 * (48 - age), 2),
                "modalities": "smri" if sub == "03" else "smri+fmri",
                "fold": index % 5,
                "split": "predict" if index == len(people) - 1 else "oof",
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_csv(out / "brainage.tsv", sep="\t", index=False, na_rep="n/a")
    _json(out / "brainage.json", {"participant_id": {"Description": "participant"}, "Device": "cpu"})
    group = out / "group"
    err = frame["predicted_age"] - frame["age"]
    overall = {
        "mae": float(err.abs().mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "r": float(np.corrcoef(frame["age"], frame["predicted_age"])[0, 1]),
        "r2": 0.71,
        "corrected_gap_age_r": float(np.corrcoef(frame["age"], frame["brainage_gap_corrected"])[0, 1]),
    }
    by_decade = {}
    for decade, part in frame.groupby((frame["age"] // 10 * 10).astype(int)):
        e = part["predicted_age"] - part["age"]
        total = float(((part["age"] - part["age"].mean()) ** 2).sum()) or 1.0
        by_decade[f"{decade}-{decade + 9}"] = {
            "n": len(part),
            "mae": float(e.abs().mean()),
            "r2": 1 - float((e**2).sum()) / total,  # wild for small decades: the report hides it
            "mean_gap": float(e.mean()),
        }
    by_sex = {  # keyed as the group level writes them (sex coded F/0, M/1)
        f"{s}/{int(s == 'M')}": {"n": len(p), "mae": float((p["predicted_age"] - p["age"]).abs().mean())}
        for s, p in frame.groupby("sex")
    }
    inside = ((frame["age"] >= frame["interval_lower"]) & (frame["age"] <= frame["interval_upper"])).mean()
    _json(
        group / "metrics.json",
        {
            "overall": overall,
            "by_decade": by_decade,
            "by_sex": by_sex,
            "coverage": {"nominal": 0.9, "empirical": float(inside)},
        },
    )
    by_group = []
    for grouping, column in (("site", "site"), ("sex", "sex")):
        for level, part in frame.groupby(column):
            e = part["predicted_age"] - part["age"]
            inside = (part["age"] >= part["interval_lower"]) & (part["age"] <= part["interval_upper"])
            by_group.append((grouping, level, len(part), e.abs().mean(), part["brainage_gap_corrected"].mean(),
                             inside.mean(), 17.0))  # fmt: skip
    columns = ["grouping", "level", "n", "mae", "mean_corrected_gap", "coverage", "median_width"]
    pd.DataFrame(by_group, columns=columns).round(4).to_csv(
        group / "metrics_by_group.tsv", sep="\t", index=False
    )
    pd.DataFrame(
        [
            ("SA-AVAE", 5.1, 6.3, 0.86, 0.72),
            ("SA-AVAE without adversarial term", 5.6, 6.9, 0.83, 0.67),
            ("ridge (concatenated)", 6.2, 7.6, 0.79, 0.60),
            ("SVR (concatenated)", 6.0, 7.4, 0.80, 0.62),
            ("ridge (sMRI only)", 6.4, 7.9, 0.77, 0.57),
        ],
        columns=["model", "mae", "rmse", "r", "r2"],
    ).to_csv(group / "baselines.tsv", sep="\t", index=False)
    curves = []
    for fold in range(5):
        for epoch in range(1, 41):
            train = 2.0 * np.exp(-epoch / 10) + 0.3 + rng.normal(0, 0.02)
            curves.append((fold, epoch, train, train + 0.15 + 0.002 * epoch + rng.normal(0, 0.03)))
    pd.DataFrame(curves, columns=["fold", "epoch", "train_loss", "val_loss"]).to_csv(
        group / "learning_curves.tsv", sep="\t", index=False
    )
    latent = []
    for row in rows:
        for code in ("shared", "specific_smri", "specific_fmri"):
            signal = (row["age"] - 50) / 15 if code == "shared" else 0.0
            latent.append(
                (
                    row["participant_id"],
                    row["session_id"],
                    code,
                    signal + rng.normal(0, 0.5),
                    rng.normal(0, 1),
                    row["age"],
                )
            )
    pd.DataFrame(latent, columns=["participant_id", "session_id", "code", "pc1", "pc2", "age"]).to_csv(
        group / "latent.tsv", sep="\t", index=False
    )
    qc = []
    for row in rows:
        if row["modalities"] != "smri+fmri":
            continue
        bad = row["session_id"] == "ses-2"
        qc.append(
            (
                row["participant_id"],
                row["session_id"],
                1,
                bad,
                "more than 50% of volumes scrubbed" if bad else "n/a",
                0.61 if bad else rng.uniform(0.05, 0.3),
                0.62 if bad else rng.uniform(0, 0.2),
                rng.uniform(40, 90),
            )
        )
    pd.DataFrame(
        qc,
        columns=[
            "participant_id",
            "session_id",
            "run",
            "excluded",
            "reason",
            "mean_fd",
            "fraction_scrubbed",
            "tsnr",
        ],
    ).to_csv(group / "qc.tsv", sep="\t", index=False)


def make_outputs(root: Path, seed: int = 0) -> dict[str, Any]:
    """Build ``root/bids`` and ``root/out``; return the run settings (a Config-like dict)."""
    rng = np.random.default_rng(seed)
    bids, out = root / "bids", root / "out"
    _json(bids / "dataset_description.json", {"Name": "fixture", "BIDSVersion": "1.10.0"})
    _json(out / "dataset_description.json", {"Name": "bids_brainage outputs", "DatasetType": "derivative"})
    tpl = _template()
    for sub, sessions in SUBJECTS.items():
        for ses in sessions:
            _subject(out, bids, sub, ses, rng, tpl)
    crash = out / "sub-02" / "log" / RUN_UUID / "crash-20260101-000100-root-n4-1a2b.txt"
    crash.parent.mkdir(parents=True, exist_ok=True)
    crash.write_text(
        "Node: sub_02_ses_2_wf.anat_wf.n4\nWorking directory: work/sub_02_ses_2_wf/anat_wf/n4\n\n"
        "Node inputs:\n\ninput_image = sub-02_ses-2_T1w.nii.gz\n\nTraceback (most recent call last):\n"
        '  File "interfaces/ants.py", line 42, in _run_interface\n    img = ants.n4_bias_field_correction(img)\n'
        "RuntimeError: N4 did not converge (simulated failure for the report test)\n",
        encoding="utf-8",
    )
    for sub, sessions in SUBJECTS.items():
        for ses in sessions:
            label = f"sub-{sub}" + (f"_ses-{ses}" if ses else "")
            failed = ses == "2"
            _json(
                out / "logs" / "participants" / f"{label}.json",
                {
                    "subject": sub,
                    "session": ses,
                    "ok": not failed,
                    "errors": ["anat_wf.n4 crashed: see the crash file"] if failed else [],
                    "seconds": 312.4,
                    "run_uuid": RUN_UUID,
                    "version": "0.1.0",
                },
            )
    _group(out, rng)
    settings = {
        "bids_dir": str(bids),
        "output_dir": str(out),
        "analysis_level": "participant",
        "work_dir": str(root / "work"),
        "task_id": "rest",
        "sloppy": True,
        "atlas": "Seitzman300",
        "connectivity": "correlation",
        "fd_threshold": 0.5,
        "max_scrubbed_fraction": 0.5,
        "min_volumes": 50,
        "n_folds": 5,
        "device": "cpu",
        "command_line": "bids_brainage bids out participant --sloppy",
        "start_time": time.time() - 600,
        "run_uuid": RUN_UUID,
        "participant_label": [],
    }
    _json(out / "logs" / f"config_participant_{RUN_UUID}.json", settings)
    return settings
