"""The functional workflow on a simulated subject: outputs, motion, connectivity vs truth, validator."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd

from bids_brainage.compute import hmc

SUB = "001"
N_ROIS = 300  # Seitzman300
PARCEL = "space-MNI152NLin2009aSym_seg-Seitzman300"


def _func(out):
    return out / f"sub-{SUB}" / "func"


def test_derivatives_written(simulated_run):
    func = _func(simulated_run["out"])
    stem = f"sub-{SUB}_task-rest"
    for name in (
        f"{stem}_desc-confounds_timeseries.tsv",
        f"{stem}_desc-confounds_timeseries.json",
        f"{stem}_desc-motion_timeseries.tsv",
        f"{stem}_outliers.tsv",
        f"{stem}_outliers.json",
        f"{stem}_{PARCEL}_stat-mean_timeseries.tsv",
        f"{stem}_{PARCEL}_stat-pearsoncorrelation_relmat.tsv",
        f"{stem}_desc-functional_features.tsv",
        f"{stem}_desc-functional_features.json",
        f"{stem}_desc-functional_qc.tsv",
        f"{stem}_desc-functional_qc.json",
        f"{stem}_desc-hmc_boldref.nii.gz",
        f"{stem}_from-orig_to-boldref_mode-image_desc-hmc_xfm.txt",
        f"{stem}_from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt",
    ):
        assert (func / name).exists(), name
    # fMRIPrep's transform format: ITK text, readable by ANTs.
    xfm = func / f"{stem}_from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt"
    assert xfm.read_text().startswith("#Insight Transform File V1.0")
    import ants

    assert ants.read_transform(str(xfm)).transform_type in ("AffineTransform", "Euler3DTransform")
    # The sidecars of the time series and matrix name the atlas and the sphere radius used.
    for kind in ("stat-mean_timeseries", "stat-pearsoncorrelation_relmat"):
        meta = json.loads((func / f"{stem}_{PARCEL}_{kind}.json").read_text())
        assert meta["Atlas"] == "Seitzman300" and "seitzman" in meta["AtlasSource"].lower()
        assert meta["SphereRadius"] >= 4.0 and meta["SphereRadiusUnits"] == "mm"
        assert "2.5 x BOLD voxel size 3 mm" in meta["SphereRadiusDerivation"]
        assert meta["Sources"][0].startswith("bids:raw:")
    # The censoring mask has a row per volume and agrees with the QC.
    outliers = pd.read_csv(func / f"{stem}_outliers.tsv", sep="\t")["framewise_displacement"]
    qc = json.loads((func / f"{stem}_desc-functional_qc.json").read_text())
    assert len(outliers) == qc["n_volumes"] and (outliers == 0).sum() == qc["n_volumes_retained"]
    figures = simulated_run["out"] / f"sub-{SUB}" / "figures"
    svgs = sorted(p.name for p in figures.glob("*.svg"))
    assert svgs == [f"{stem}_desc-{k}_bold.svg" for k in ("carpet", "connectivity", "coreg")]
    conf = pd.read_csv(func / f"{stem}_desc-confounds_timeseries.tsv", sep="\t")
    for col in (
        "trans_x",
        "rot_z_derivative1_power2",
        "white_matter",
        "csf",
        "framewise_displacement",
        "dvars",
    ):
        assert col in conf.columns
    assert len([c for c in conf.columns if c.startswith(("trans_", "rot_"))]) == 24


def test_features_documented_length(simulated_run):
    func = _func(simulated_run["out"])
    feats = pd.read_csv(func / f"sub-{SUB}_task-rest_desc-functional_features.tsv", sep="\t")
    fcols = [c for c in feats.columns if c.startswith("fmri__")]
    assert len(feats) == 1 and feats["participant_id"].iloc[0] == f"sub-{SUB}"
    assert len(fcols) == N_ROIS * (N_ROIS - 1) // 2
    assert fcols[0].count("__") == 2
    assert np.isfinite(feats[fcols].to_numpy()).mean() > 0.99
    meta = json.loads((func / f"sub-{SUB}_task-rest_desc-functional_features.json").read_text())
    assert meta["NumberOfFeatures"] == len(fcols)
    assert meta["QC"]["excluded"] is False
    for key in ("mean_fd", "max_fd", "fraction_scrubbed", "tsnr", "mean_dvars"):
        assert meta["QC"][key] is not None


def test_motion_recovered_on_simulation(simulated_run):
    func = _func(simulated_run["out"])
    est = pd.read_csv(func / f"sub-{SUB}_task-rest_desc-motion_timeseries.tsv", sep="\t")
    est = est[list(hmc.PARAM_NAMES)].to_numpy()
    truth_file = (
        simulated_run["bids"] / "derivatives" / "simulation" / f"sub-{SUB}" / "func"
        / f"sub-{SUB}_task-rest_desc-motion_timeseries.tsv"
    )  # fmt: skip
    true = pd.read_csv(truth_file, sep="\t")[list(hmc.PARAM_NAMES)].to_numpy()
    err = hmc.relative_params(np.array([hmc.params_to_matrix(p) for p in est])) - hmc.relative_params(
        np.array([hmc.params_to_matrix(p) for p in true])
    )
    assert np.sqrt((err[:, :3] ** 2).mean()) <= 0.2
    assert np.rad2deg(np.sqrt((err[:, 3:] ** 2).mean())) <= 0.2


def test_connectivity_matches_truth(simulated_run):
    func = _func(simulated_run["out"])
    est = pd.read_csv(func / f"sub-{SUB}_task-rest_{PARCEL}_stat-pearsoncorrelation_relmat.tsv", sep="\t")
    # XCP-D's layout: a Node column, then r with a unit diagonal.
    assert list(est["Node"]) == list(est.columns[1:])
    est = est.set_index("Node")
    assert np.allclose(np.diag(est.to_numpy()), 1.0) and np.nanmax(np.abs(est.to_numpy())) <= 1.0
    truth_file = (
        simulated_run["bids"] / "derivatives" / "simulation" / f"sub-{SUB}" / "func"
        / f"sub-{SUB}_task-rest_atlas-Seitzman300_desc-sample_relmat.tsv"
    )  # fmt: skip
    true = pd.read_csv(truth_file, sep="\t").to_numpy()
    iu = np.triu_indices(N_ROIS, k=1)
    e, t = est.to_numpy()[iu], true[iu]
    ok = np.isfinite(e)
    r = np.corrcoef(e[ok], t[ok])[0, 1]
    print(f"connectivity r vs truth = {r:.3f}; workflow {simulated_run['seconds']:.0f} s")
    assert r >= 0.7


def test_gather_reads_the_run_as_usable(simulated_run):
    from bids_brainage.gather import _functional_usable

    tsv = _func(simulated_run["out"]) / f"sub-{SUB}_task-rest_desc-functional_features.tsv"
    assert _functional_usable(tsv) == (True, "")


def test_validator_passes(simulated_run):
    assert shutil.which("bids-validator-deno"), (
        "bids-validator-deno is not installed (a dependency of bids_brainage: pip install -e .)"
    )
    proc = subprocess.run(
        ["bids-validator-deno", "--format", "json", str(simulated_run["out"])],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    issues = report.get("issues", {}).get("issues", [])
    errors = [i for i in issues if i.get("severity") == "error"]
    assert not errors, errors[:5]
