"""Group level on participant outputs laid out as the workflows write them (fast: no imaging).

The imaging end to end (simulate → participant → group) is in tests/e2e; here the features
come from the simulator's feature-level mode so every group-level branch runs in seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from console import console_script

from bids_brainage.cli.logs import setup_logging
from bids_brainage.cli.run import main
from bids_brainage.errors import InputError
from bids_brainage.gather import features_of, gather_features, write_status
from bids_brainage.model.bundle import write_checksums
from bids_brainage.simulate import simulate_features


def _layout(tmp_path: Path, n: int = 24, exclude: tuple[str, ...] = ()) -> tuple[Path, Path]:
    table = simulate_features(n, seed=4).head(n)
    smri = [c for c in table.columns if c.startswith("smri__")][:12]
    fmri = [c for c in table.columns if c.startswith("fmri__")][:30]
    bids_dir, out = tmp_path / "bids", tmp_path / "out"
    bids_dir.mkdir(parents=True)
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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """24 subjects (one with an excluded BOLD run, one without age) trained at the group level.

    The folder name has spaces and non-ASCII characters on purpose (robustness matrix).
    """
    tmp_path = tmp_path_factory.mktemp("group") / "my data ü"
    bids_dir, out = _layout(tmp_path, n=25, exclude=("003",))
    participants = pd.read_csv(bids_dir / "participants.tsv", sep="\t", dtype=str)
    participants.loc[participants["participant_id"] == "sub-025", "age"] = "n/a"
    participants.to_csv(bids_dir / "participants.tsv", sep="\t", index=False)
    # Latest participant runs that failed (issue 20.4): sub-024's anatomy (its features on disk
    # are from an earlier run), sub-023's only BOLD run (its anatomy succeeded).
    bold = "sub-{0}_task-rest_bold.nii.gz"
    for label, anat, run, error in (
        ("024", "failed", "failed", "sub-024_T1w.nii.gz: is empty (all voxels have the same value)"),
        ("023", "ok", "ok", ""),
    ):
        outcomes = {"anat": anat, "bold": {bold.format(label): "failed" if label == "023" else run}}
        status = {"subject": label, "session": None, "ok": False, "outcomes": outcomes, "errors": [error]}
        write_status(out, label, None, status)
    common = ["-w", str(tmp_path / "work"), "--skip-bids-validation", "--device", "cpu", "--n-folds", "3"]
    code = main([str(bids_dir), str(out), "group", *common])
    # Tests below rerun the group level on ``out``: keep what this training run wrote.
    shutil.copytree(out, tmp_path / "trained_out", ignore=shutil.ignore_patterns("sub-*", "model"))
    return bids_dir, out, common, code


def test_group_trains_writes_outputs_and_predicts_with_model(trained):
    bids_dir, out, common, code = trained
    assert code == 0
    brainage = pd.read_csv(out / "brainage.tsv", sep="\t")
    assert len(brainage) == 24
    assert set(brainage.loc[brainage["participant_id"] != "sub-025", "split"]) == {"oof"}
    assert set(brainage["fold"].dropna()) == {0, 1, 2}
    # No age: not trained on, predicted by the ensemble, no gap.
    no_age = brainage[brainage["participant_id"] == "sub-025"].iloc[0]
    assert no_age["split"] == "predict" and pd.isna(no_age["brainage_gap"]) and no_age["predicted_age"] > 0
    assert brainage.loc[brainage["participant_id"] == "sub-003", "modalities"].item() == "smri"
    assert (brainage["interval_lower"] < brainage["interval_upper"]).all()
    sidecar = json.loads((out / "brainage.json").read_text())
    assert set(sidecar) == {*brainage.columns, "Device", "Model"}
    assert sidecar["Model"].startswith("SA-AVAE")
    # The one schema (bids_brainage.compute.brainage_table): M/F, 2 decimals, Description objects, flags.
    assert all(isinstance(sidecar[c], dict) and sidecar[c]["Description"] for c in brainage.columns)
    assert set(brainage["sex"]) <= {"M", "F"} and sidecar["age"]["Units"] == "years"
    assert "Training ages: " in sidecar["flag_age_out_of_range"]["Description"]
    assert (brainage["predicted_age"] == brainage["predicted_age"].round(2)).all()
    flags = brainage.set_index("participant_id")
    assert flags.loc["sub-003", "flag_bold_excluded"] and not flags.loc["sub-001", "flag_bold_excluded"]
    assert not flags["flag_qc_failed"].any() and not flags["flag_unseen_site"].any()
    assert not flags.loc[flags["split"] == "oof", "flag_age_out_of_range"].any()
    assert pd.isna(flags.loc["sub-025", "flag_age_out_of_range"])  # no age
    # Training is logged fold by fold when the console is not a terminal.
    log = sorted((out / "logs").glob("group_*.log"))[0].read_text()
    assert "fold 0 (1 of 3): trained on" in log and "fold 2 (3 of 3): trained on" in log
    assert (out / "model" / "model.safetensors").exists() and (out / "model" / "model_card.md").exists()
    metrics = json.loads((out / "group" / "metrics.json").read_text())
    assert metrics["overall"]["n"] == 23 and 0 <= metrics["coverage"]["empirical"] <= 1
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
    assert list(predicted.columns) == list(brainage.columns) and not predicted["flag_unseen_site"].any()


def test_group_uses_only_what_the_latest_participant_run_produced(trained):
    """Stale features after a failed rerun are not used; the skipped subject is named."""
    _, out, _, code = trained
    assert code == 0
    out = out.parent / "trained_out"
    brainage = pd.read_csv(out / "brainage.tsv", sep="\t")
    assert "sub-024" not in set(brainage["participant_id"])
    # Anatomy succeeded, BOLD failed: trained and predicted from sMRI, the run marked stale.
    assert brainage.loc[brainage["participant_id"] == "sub-023", "modalities"].item() == "smri"
    qc = pd.read_csv(out / "group" / "qc.tsv", sep="\t")
    stale = qc[qc["participant_id"] == "sub-023"].iloc[0]
    assert stale["excluded"] and "latest participant run" in stale["reason"]
    (log,) = (out / "logs").glob("group_*.log")
    warning = next(line for line in log.read_text().splitlines() if "left out of the group level" in line)
    assert "sub-024 (its latest participant run failed: sub-024_T1w.nii.gz: is empty" in warning


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "unreadable participant status file (Expecting value"),
        (b'{"ok": true}', "participant status file has no 'subject'"),
        (b"\xff\xfe", "unreadable participant status file"),
    ],
)
def test_unreadable_status_file_is_named(tmp_path, capsys, content, expected):
    bids_dir, out = _layout(tmp_path, n=6)
    status = out / "logs" / "participants" / "sub-002.json"
    status.write_bytes(content)
    code = main([str(bids_dir), str(out), "group", "--skip-bids-validation", "-w", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"bids_brainage: error: {status}: {expected}" in err
    assert not (out / "brainage.tsv").exists()


def _scale_feature(
    out: Path, label: str, column: str, factor: float | None, value: float | None = None
) -> Path:
    tsv = out / f"sub-{label}" / "anat" / f"sub-{label}_desc-structural_features.tsv"
    features = pd.read_csv(tsv, sep="\t")
    features[column] = features[column] * factor if factor is not None else value
    features.to_csv(tsv, sep="\t", index=False)
    return tsv


def test_implausible_features_refused_per_person_at_training(tmp_path, capsys):
    """1e30, x1000 (mm3 for mL) and inf: left out and named, never a NaN or a negative age."""
    bids_dir, out = _layout(tmp_path, n=15)
    column = pd.read_csv(out / "sub-001" / "anat" / "sub-001_desc-structural_features.tsv", sep="\t").columns[
        0
    ]
    bad = {
        "002": _scale_feature(out, "002", column, None, 1e30),
        "003": _scale_feature(out, "003", column, 1000.0),
        "004": _scale_feature(out, "004", column, None, float("inf")),
    }
    # Implausible functional features alone: the person is kept, from sMRI only.
    func = out / "sub-005" / "func" / "sub-005_task-rest_desc-functional_features.tsv"
    edges = pd.read_csv(func, sep="\t")
    edges[edges.columns[0]] *= 1000
    edges.to_csv(func, sep="\t", index=False)
    code = main([str(bids_dir), str(out), "group", "--skip-bids-validation", "-w", str(tmp_path / "w"),
                 "--device", "cpu", "--n-folds", "2"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    failed = [line for line in err.splitlines() if "FAILED sub-" in line]
    assert len(failed) == 3
    for label, tsv in bad.items():
        assert any(f"FAILED sub-{label}: {tsv}: smri__" in line for line in failed), failed
    assert "is inf (not a finite number)" in err and "robust SDs from the training median" in err
    brainage = pd.read_csv(out / "brainage.tsv", sep="\t")
    assert len(brainage) == 12 and not set(brainage["participant_id"]) & {f"sub-{x}" for x in bad}
    assert brainage["predicted_age"].between(0, 130).all()
    assert brainage.loc[brainage["participant_id"] == "sub-005", "modalities"].item() == "smri"
    assert f"sub-005: {func}: fmri__" in err and "trained and predicted from sMRI only" in err


def test_implausible_features_refused_per_person_with_model(trained, tmp_path, capsys):
    bids_dir, out, common, _ = trained
    target = tmp_path / "pred"
    shutil.copytree(out, target, ignore=shutil.ignore_patterns("model", "brainage.*", "group"))
    column = pd.read_csv(
        target / "sub-001" / "anat" / "sub-001_desc-structural_features.tsv", sep="\t"
    ).columns[0]
    tsv = _scale_feature(target, "002", column, 1000.0)
    code = main([str(bids_dir), str(target), "group", *common, "--model", str(out / "model"),
                 "--participant-label", "001", "002", "005"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"FAILED sub-002: {tsv}: smri__" in err and "robust SDs from the training median" in err
    brainage = pd.read_csv(target / "brainage.tsv", sep="\t")
    assert list(brainage["participant_id"]) == ["sub-001", "sub-005"]
    assert brainage["predicted_age"].between(0, 130).all()


HOLDER = """
import sys, time
from pathlib import Path
from bids_brainage.utils.locks import work_dir_lock
with work_dir_lock(Path(sys.argv[1]), "group", "group run"):
    print("locked", flush=True)
    time.sleep(600)
"""


def test_second_group_run_on_one_work_dir_refused(trained, tmp_path):
    """A group run on a work dir another group run holds is refused, naming the holder.

    The holder is a process that takes the lock as a group run does (deterministic, unlike
    racing two real runs); the kernel releases the lock when it dies, even by SIGKILL.
    """
    bids_dir, out, common, _ = trained
    work = tmp_path / "work"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(work)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        target = tmp_path / "out"
        shutil.copytree(out, target, ignore=shutil.ignore_patterns("brainage.*", "group"))
        cmd = [console_script(), str(bids_dir), str(target), "group", *common, "-w", str(work),
               "--model", str(out / "model")]  # fmt: skip
        second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        message = second.stderr.strip().splitlines()[-1]
        assert message.startswith(
            f"bids_brainage: error: {work}: work directory is in use by another group run"
        )
        assert f"(pid {holder.pid} on " in message and "use another --work-dir" in message
        assert not (target / "brainage.tsv").exists() and not (work / "group_inputs").exists()
    finally:
        holder.kill()
        holder.wait()
    from bids_brainage.utils.locks import work_dir_lock

    with work_dir_lock(work, "group", "group run"):  # released by the holder's death
        pass


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


def _last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "no error printed"
    return lines[-1]


def test_corrupted_model_bundle_refused(trained, tmp_path, capsys):
    import shutil

    bids_dir, out, common, _ = trained
    bundle = tmp_path / "bundle"
    shutil.copytree(out / "model", bundle)
    weights = bundle / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    target = tmp_path / "pred"
    shutil.copytree(out, target, ignore=shutil.ignore_patterns("model", "brainage.*", "group"))
    code = main([str(bids_dir), str(target), "group", *common, "--model", str(bundle)])
    message = _last_error(capsys)
    assert code == 1 and "sha256" in message.lower() or "corrupt" in message.lower(), message
    assert not (target / "brainage.tsv").exists()


def test_mismatched_model_bundle_refused(trained, tmp_path, capsys):
    import json
    import shutil

    bids_dir, out, common, _ = trained
    bundle = tmp_path / "bundle"
    shutil.copytree(out / "model", bundle)
    meta = json.loads((bundle / "model.json").read_text())
    meta["features"]["smri"][0] = "smri__not_a_feature"
    (bundle / "model.json").write_text(json.dumps(meta))
    write_checksums(bundle)  # consistent, but trained on other features
    target = tmp_path / "pred"
    shutil.copytree(out, target, ignore=shutil.ignore_patterns("model", "brainage.*", "group"))
    code = main([str(bids_dir), str(target), "group", *common, "--model", str(bundle)])
    message = _last_error(capsys)
    assert code == 1 and "lacks 1 structural feature(s) the model needs" in message, message
    assert not (target / "brainage.tsv").exists()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "participants.tsv: file not found"),
        ("participant_id\tage\tsex\nsub-001\t30\tX\n", "unknown sex code 'X'"),
        (
            "participant_id\tage\tsex\nsub-001\t30\tM\nsub-001\t31\tF\n",
            "duplicated participant rows: sub-001",
        ),
        ("participant_id\tage\tsex\nsub-001\told\tM\n", "age 'old' is not a number"),
    ],
)
def test_bad_participants_tsv_at_group_level(trained, tmp_path, capsys, content, expected):
    import shutil

    bids_dir, out, common, _ = trained
    bids_copy = tmp_path / "bids"
    shutil.copytree(bids_dir, bids_copy)
    if content is None:
        (bids_copy / "participants.tsv").unlink()
    else:
        (bids_copy / "participants.tsv").write_text(content)
    target = tmp_path / "out"
    shutil.copytree(out, target, ignore=shutil.ignore_patterns("brainage.*"))
    code = main([str(bids_copy), str(target), "group", *common, "--model", str(out / "model")])
    message = _last_error(capsys)
    assert code == 1 and expected in message and "participants.tsv" in message
    assert "Traceback" not in capsys.readouterr().err
    assert not (target / "brainage.tsv").exists()


def test_full_disk_leaves_no_partial_files(trained, tmp_path, capsys):
    """Output on a tiny tmpfs: a one-line 'No space left' error and no half-written files."""
    import shutil
    import subprocess

    bids_dir, out, common, _ = trained
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    assert proc.returncode == 0, f"the full-disk test needs root to mount a tmpfs: {proc.stderr.decode()}"
    try:
        target = mount / "out"
        shutil.copytree(
            out,
            target,
            ignore=shutil.ignore_patterns(
                "model", "brainage.*", "group", "*.html", "*.log", "config_*", "CITATION*"
            ),
        )
        filler = mount / "filler"
        filler.write_bytes(b"")
        free = shutil.disk_usage(mount).free
        filler.write_bytes(b"0" * max(0, free - 40_000))
        code = main([str(bids_dir), str(target), "group", *common])
        message = _last_error(capsys)
        assert code != 0 and "No space left on device" in message, message
        leftovers = [p for p in target.rglob("*") if ".tmp" in p.name]
        assert leftovers == []
        assert not (target / "brainage.tsv").exists()
    finally:
        setup_logging(0)  # closes the log file on the tmpfs so it can be unmounted
        subprocess.run(["umount", str(mount)], check=False)


def test_volumes_enter_the_model_as_fractions_of_tiv(tmp_path):
    """Tissue and regional GM volumes are divided by TIV and renamed; TIV and thickness stay."""
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    tsv = anat / "sub-01_desc-structural_features.tsv"
    values = {"GM": 600.0, "WM": 450.0, "CSF": 300.0, "TIV": 1500.0, "DK83_gmvol_L_insula": 7.5}
    pd.DataFrame([{**values, "DK83_thickness_L_insula": 2.9}]).to_csv(tsv, sep="\t", index=False)
    row = features_of(tmp_path, "01", None).iloc[0]
    assert row["smri__GM_per_TIV"] == pytest.approx(0.4)
    assert row["smri__DK83_gmvol_L_insula_per_TIV"] == pytest.approx(0.005)
    assert row["smri__TIV"] == 1500.0 and row["smri__DK83_thickness_L_insula"] == 2.9
    assert "smri__GM" not in row.index
    pd.DataFrame([{**values, "TIV": 0.0}]).to_csv(tsv, sep="\t", index=False)
    with pytest.raises(InputError, match="no positive TIV") as err:
        features_of(tmp_path, "01", None)
    assert str(tsv) in str(err.value)
