"""Group level on participant outputs laid out as the workflows write them (fast: no imaging).

The imaging end to end (simulate → participant → group) is in tests/e2e; here the features
come from the simulator's feature-level mode so every group-level branch runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bids_brainage.cli.run import main
from bids_brainage.gather import gather_features, write_status
from bids_brainage.simulate import simulate_features


def _layout(tmp_path: Path, n: int = 24, exclude: tuple[str, ...] = ()) -> tuple[Path, Path]:
    table = simulate_features(n, seed=4).head(n)
    smri = [c for c in table.columns if c.startswith("smri__")][:12]
    fmri = [c for c in table.columns if c.startswith("fmri__")][:30]
    bids_dir, out = tmp_path / "bids", tmp_path / "out"
    bids_dir.mkdir()
    (bids_dir / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.10.0"}))
    labels = [str(p).removeprefix("sub-") for p in table["participant_id"]]
    pd.DataFrame(
        {
            "participant_id": [f"sub-{x}" for x in labels],
            "age": table["age"],
            "sex": table["sex"],
            "site": table["site"],
        }
    ).to_csv(bids_dir / "participants.tsv", sep="\t", index=False)
    for label, (_, row) in zip(labels, table.iterrows(), strict=True):
        (bids_dir / f"sub-{label}" / "anat").mkdir(parents=True)
        anat, func = out / f"sub-{label}" / "anat", out / f"sub-{label}" / "func"
        anat.mkdir(parents=True)
        func.mkdir(parents=True)
        row[smri].rename(lambda c: c.removeprefix("smri__")).to_frame().T.to_csv(
            anat / f"sub-{label}_desc-structural_features.tsv", sep="\t", index=False
        )
        name = f"sub-{label}_task-rest_desc-functional_features"
        row[fmri].to_frame().T.to_csv(func / f"{name}.tsv", sep="\t", index=False)
        qc = {
            "excluded": label in exclude,
            "reason": "too much motion" if label in exclude else "",
            "mean_fd": 0.1,
        }
        (func / f"{name}.json").write_text(json.dumps({"QC": qc}))
        write_status(out, label, None, {"subject": label, "session": None, "ok": True})
    return bids_dir, out


def test_gather_reads_finished_subjects_only_and_honours_exclusion(tmp_path):
    _, out = _layout(tmp_path, n=6, exclude=("002",))
    (out / "logs" / "participants" / "sub-006.json").unlink()  # still running: not read
    features, qc = gather_features(out)
    assert list(features["participant_id"]) == ["sub-001", "sub-002", "sub-003", "sub-004", "sub-005"]
    fmri = [c for c in features.columns if c.startswith("fmri__")]
    assert features.loc[features["participant_id"] == "sub-002", fmri].isna().all(axis=1).item()
    assert qc.loc[qc["participant_id"] == "sub-002", "excluded"].item()


def test_group_trains_writes_outputs_and_predicts_with_model(tmp_path):
    bids_dir, out = _layout(tmp_path, n=24, exclude=("003",))
    work = tmp_path / "work"
    common = ["-w", str(work), "--skip-bids-validation", "--device", "cpu", "--n-folds", "3"]
    assert main([str(bids_dir), str(out), "group", *common]) == 0
    brainage = pd.read_csv(out / "brainage.tsv", sep="\t")
    assert len(brainage) == 24 and set(brainage["split"]) == {"oof"}
    assert set(brainage["fold"]) == {0, 1, 2}
    assert brainage.loc[brainage["participant_id"] == "sub-003", "modalities"].item() == "smri"
    assert (brainage["interval_lower"] < brainage["interval_upper"]).all()
    assert set(json.loads((out / "brainage.json").read_text())) == set(brainage.columns)
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "model_card.md").exists()
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 24 and 0 <= metrics["coverage"]["empirical"] <= 1
    assert {"SA-AVAE", "ridge (sMRI)"} <= set(pd.read_csv(out / "group" / "baselines.tsv", sep="\t")["model"])
    assert set(pd.read_csv(out / "group" / "latent.tsv", sep="\t")["code"]) >= {"shared", "specific_smri"}

    # Apply the trained bundle to the same outputs copied elsewhere: split "predict".
    code = main([str(bids_dir), str(out), "group", *common, "--model", str(out / "model"),
                 "--participant-label", "001", "002"])  # fmt: skip
    assert code == 0
    predicted = pd.read_csv(out / "brainage.tsv", sep="\t")
    assert list(predicted["participant_id"]) == ["sub-001", "sub-002"] and set(predicted["split"]) == {
        "predict"
    }


def test_group_without_participant_outputs_is_a_clear_error(tmp_path, capsys):
    bids_dir, _ = _layout(tmp_path, n=3)
    code = main(
        [str(bids_dir), str(tmp_path / "empty"), "group", "--skip-bids-validation", "-w", str(tmp_path / "w")]
    )
    assert code == 2
    assert "no finished participant outputs" in capsys.readouterr().err


@pytest.mark.parametrize("n_folds", ["5"])
def test_group_too_few_subjects_for_folds(tmp_path, capsys, n_folds):
    bids_dir, out = _layout(tmp_path, n=4)
    code = main([str(bids_dir), str(out), "group", "--skip-bids-validation", "-w", str(tmp_path / "w"),
                 "--n-folds", n_folds])  # fmt: skip
    assert code == 2
    assert "too few to train" in capsys.readouterr().err
