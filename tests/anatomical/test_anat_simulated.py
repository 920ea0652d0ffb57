"""Anatomical workflow against the simulator's ground truth (5 subjects, 2 mm, sloppy)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from anat_runner import run_anat

from bids_brainage.compute.anat_ops import dice

pytestmark = pytest.mark.slow

N_SUBJECTS = 5


@pytest.fixture(scope="module")
def sim_cohort(tmp_path_factory):
    """(bids_dir, {subject: outputs}) for a small simulated cohort processed in sloppy mode."""
    from bids_brainage import simulate

    base = tmp_path_factory.mktemp("anat_sim")
    # Ages spread over the lifespan so that true GM volumes differ (a correlation needs range).
    bids_dir = simulate.simulate_dataset(
        base / "bids", N_SUBJECTS, seed=7, resolution=2.0, n_volumes=10, age_range=(20.0, 85.0)
    )
    # Two subjects at a time, each in a process of its own (nipype changes the working directory
    # while a node runs, so threads cannot share one): the Linear plugin runs one node at a
    # time and only the registration (~11 of ~21 s per subject) uses both threads. Same
    # workflow and thread count per subject as one after another.
    subjects = [f"{index:03d}" for index in range(1, N_SUBJECTS + 1)]
    context = multiprocessing.get_context("forkserver")  # never fork a process with thread pools
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        runs = {s: pool.submit(run_anat, bids_dir, s, base / "out", base / "work" / s) for s in subjects}
        outputs = {subject: run.result().outputs for subject, run in runs.items()}
    return bids_dir, outputs


def _truth(bids_dir, subject: str, name: str) -> nib.Nifti1Image:
    return nib.load(
        bids_dir / "derivatives" / "simulation" / f"sub-{subject}" / "anat" / f"sub-{subject}_{name}"
    )


def test_brain_mask_matches_truth(sim_cohort):
    bids_dir, outputs = sim_cohort
    scores = {}
    for subject, out in outputs.items():
        truth = np.asarray(_truth(bids_dir, subject, "desc-brain_mask.nii.gz").dataobj) > 0
        mask = np.asarray(nib.load(out["t1w_mask"]).dataobj) > 0
        scores[subject] = dice(truth, mask)
    print("brain-mask Dice vs truth:", {k: round(v, 3) for k, v in scores.items()})
    assert min(scores.values()) >= 0.95


def test_tissue_volumes_track_truth(sim_cohort):
    """GM, WM and intracranial volumes follow the simulation's truth across subjects.

    r >= 0.95 for WM and TIV, r >= 0.8 for GM, and every volume within 15 % of the truth.
    Grey matter is the hard one: it needs the partial-volume fractions (posterior sums gave
    r = 0.5 here) and a simulator whose atrophy widens the CSF at the cortex instead of
    dimming every GM voxel; see docs/anatomical.md and docs/simulation.md. GM's r was 0.99
    before issue 22's registration and partial-volume changes and is 0.87 after them (the
    oldest subject's GM 10 % high), while on real atrophied brains the same changes brought
    GM from r = 0.37 to 0.9+ against DLMUSE: a known regression on the simulator. Its cause is
    the partial-volume model's tissue means, measured from the Atropos classes; fitting them by
    EM suits the simulator and overestimates GM on real brains (docs/anatomical.md, Known issues).
    """
    bids_dir, outputs = sim_cohort
    truth = pd.read_csv(bids_dir / "derivatives" / "simulation" / "truth.tsv", sep="\t").set_index(
        "participant_id"
    )
    for column, true_column in (("GM", "GM_total"), ("TIV", "TIV"), ("WM", "WM_total")):
        true, estimated = [], []
        for subject, out in outputs.items():
            true.append(truth.loc[f"sub-{subject}", true_column] / 1000)
            estimated.append(pd.read_csv(out["features_tsv"], sep="\t")[column][0])
        r = float(np.corrcoef(true, estimated)[0, 1])
        print(
            f"{column} (mL) true {np.round(true, 1)} estimated {np.round(estimated, 1)}; Pearson r = {r:.3f}"
        )
        assert r >= (0.8 if column == "GM" else 0.95), column
        # Not just correlated: each volume within 15 % of the truth.
        assert np.allclose(estimated, true, rtol=0.15), column
