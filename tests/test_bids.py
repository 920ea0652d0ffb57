"""BIDS input layer: layout queries on real data, demographics parsing, filter files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_brainage import bids
from bids_brainage.errors import InputError, UsageError


def _dataset(root: Path, participants: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    (root / "participants.tsv").write_text(participants)
    return root


def test_layout_pumi_finds_t1w_and_bold_despite_bad_fieldmaps(real_data):
    layout = bids.load_layout(real_data / "pumi")
    assert bids.select_subjects(layout, []) == ["001"]
    (data,) = bids.collect_data(layout, "001")
    assert Path(data.t1w).name == "sub-001_T1w.nii.gz"
    assert [Path(b).name for b in data.bold] == ["sub-001_task-rest_bold.nii.gz"]
    assert bids.bold_metadata(layout.root, data.bold[0])["RepetitionTime"] == pytest.approx(2.52)
    demo = bids.demographics(real_data / "pumi")
    assert demo.loc[0, "sex"] == "F" and demo.loc[0, "age"] == 26


def test_layout_ixi10_t1w_only(real_data):
    layout = bids.load_layout(real_data / "ixi10")
    subjects = bids.select_subjects(layout, [])
    assert len(subjects) == 10 and subjects[0] == "IXI012"
    for subject in subjects:
        (data,) = bids.collect_data(layout, subject)
        assert data.t1w.endswith(f"sub-{subject}_T1w.nii.gz") and data.bold == []
    demo = bids.demographics(real_data / "ixi10")
    assert demo["age"].between(23, 51).all() and set(demo["sex"]) == {"M", "F"}


def test_task_filter_and_bids_filter_file(real_data, tmp_path):
    layout = bids.load_layout(real_data / "pumi")
    (data,) = bids.collect_data(layout, "001", task="other")
    assert data.bold == []
    filt = tmp_path / "f.json"
    filt.write_text(json.dumps({"bold": {"run": 9}}))
    (data,) = bids.collect_data(layout, "001", bids_filters=bids.parse_bids_filters(filt))
    assert data.bold == [] and data.t1w is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"t2w": {}}', "unknown keys"),
        ('{"bold": 3}', "filter 'bold' must be a JSON object"),
    ],
)
def test_bad_filter_files(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message):
        bids.parse_bids_filters(path)


def test_several_t1w_runs_pick_first_deterministically(tmp_path, real_data):
    root = tmp_path / "ds"
    shutil.copytree(real_data / "pumi", root, ignore=shutil.ignore_patterns("fmap", "*variant*"))
    anat = root / "sub-001" / "anat"
    shutil.copy(anat / "sub-001_T1w.nii.gz", anat / "sub-001_run-02_T1w.nii.gz")
    (anat / "sub-001_T1w.nii.gz").rename(anat / "sub-001_run-01_T1w.nii.gz")
    (data,) = bids.collect_data(bids.load_layout(root), "001")
    assert Path(data.t1w).name == "sub-001_run-01_T1w.nii.gz" and len(data.t1w_candidates) == 2


def test_missing_repetition_time_is_an_error_for_that_run(tmp_path, real_data):
    root = tmp_path / "ds"
    shutil.copytree(real_data / "pumi", root, ignore=shutil.ignore_patterns("fmap", "*variant*"))
    for sidecar in [root / "task-rest_bold.json", root / "sub-001" / "func" / "sub-001_task-rest_bold.json"]:
        meta = json.loads(sidecar.read_text())
        meta.pop("RepetitionTime", None)
        sidecar.write_text(json.dumps(meta))
    layout = bids.load_layout(root)
    (data,) = bids.collect_data(layout, "001")
    with pytest.raises(InputError, match="sub-001_task-rest_bold.nii.gz: RepetitionTime is missing"):
        bids.bold_metadata(layout.root, data.bold[0])


@pytest.mark.parametrize(
    ("header", "rows", "ages", "sexes"),
    [
        ("participant_id\tage\tsex", ["sub-01\t30\tM", "sub-02\t40.5\tF"], [30, 40.5], ["M", "F"]),
        (
            "participant_id\tAge\tgender",
            ["sub-01\t30\tmale", "sub-02\tn/a\tfemale"],
            [30, np.nan],
            ["M", "F"],
        ),
        ("participant_id\tage_at_scan\tSex", ["01\t30\tm", "02\t41\tf"], [30, 41], ["M", "F"]),
        (
            "participant_id\tage_at_first_scan_years\tsex",
            ["sub-01\t30\t1", "sub-02\t41\t2"],
            [30, 41],
            ["M", "F"],
        ),
        ("participant_id\tsex", ["sub-01\tn/a", "sub-02\tF"], [np.nan, np.nan], [None, "F"]),
    ],
)
def test_participants_variants(tmp_path, header, rows, ages, sexes):
    root = _dataset(tmp_path / "ds", "\n".join([header, *rows]) + "\n")
    table = bids.read_participants(root)
    assert list(table.index) == ["01", "02"]
    np.testing.assert_array_equal(table["age"].to_numpy(), np.array(ages, dtype=float))
    assert [None if pd.isna(s) else s for s in table["sex"]] == sexes


def test_sex_map_adds_codes(tmp_path):
    root = _dataset(tmp_path / "ds", "participant_id\tage\tsex\nsub-01\t30\t0\nsub-02\t31\t1\n")
    with pytest.raises(InputError, match="unknown sex code '0'"):
        bids.read_participants(root)
    table = bids.read_participants(root, sex_map={"0": "F", "1": "M"})
    assert list(table["sex"]) == ["F", "M"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("participant_id\tage\nsub-01\t30\nsub-01\t31\n", "duplicated participant rows: sub-01"),
        ("participant_id\tage\nsub-01\tthirty\n", "age 'thirty' is not a number"),
        ("participant_id\tage\nsub-01\t-3\n", "out of range"),
        ("subject\tage\n01\t30\n", "no participant_id column"),
        ("participant_id\tsex\nsub-01\tX\n", "unknown sex code 'X'"),
        ("participant_id\tage\nsub-../x\t30\n", "invalid sub label"),
    ],
)
def test_participants_errors_name_the_file(tmp_path, content, message):
    root = _dataset(tmp_path / "ds", content)
    with pytest.raises(InputError, match=message) as exc:
        bids.read_participants(root)
    assert str(exc.value).startswith(str(root / "participants.tsv"))


def test_missing_participants_tsv(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    with pytest.raises(InputError, match="participants.tsv: file not found"):
        bids.read_participants(root)


def test_sessions_give_per_session_ages(tmp_path):
    root = _dataset(tmp_path / "ds", "participant_id\tage\tsex\tsite\nsub-01\t30\tF\tA\nsub-02\t50\tM\tn/a\n")
    (root / "sub-01").mkdir()
    (root / "sub-01" / "sub-01_sessions.tsv").write_text("session_id\tage\nses-1\t30.2\nses-2\tn/a\n")
    table = bids.demographics(root)
    assert list(zip(table["subject"], table["session"], table["age"], strict=True)) == [
        ("01", "1", 30.2),
        ("01", "2", 30.0),
        ("02", None, 50.0),
    ]
    assert [None if pd.isna(s) else s for s in table["site"]] == ["A", "A", None]


def test_duplicated_sessions_refused(tmp_path):
    root = _dataset(tmp_path / "ds", "participant_id\tage\nsub-01\t30\n")
    (root / "sub-01").mkdir()
    (root / "sub-01" / "sub-01_sessions.tsv").write_text("session_id\tage\nses-1\t30\nses-1\t31\n")
    with pytest.raises(InputError, match="duplicated session rows: ses-1"):
        bids.demographics(root)


def test_datalad_annexed_dataset_reads_sidecars_by_link_name(real_data, tmp_path):
    """NIfTIs that are symlinks to annex keys (DataLad) keep their BIDS entities and sidecars."""
    from annex_layout import make_annexed_copy

    root = tmp_path / "pumi"
    links = make_annexed_copy(real_data / "pumi", root)
    bold = links["sub-001_task-rest_bold.nii.gz"]
    assert bold.is_symlink() and bold.resolve().name.startswith("MD5E-s")
    layout = bids.load_layout(root)
    (data,) = bids.collect_data(layout, "001")
    assert Path(data.t1w).name == "sub-001_T1w.nii.gz"
    assert [Path(b).name for b in data.bold] == ["sub-001_task-rest_bold.nii.gz"]
    assert bids.bold_metadata(layout.root, data.bold[0])["RepetitionTime"] == pytest.approx(2.52)
    from bids_brainage.derivatives import bids_uri

    assert bids_uri(bold, root) == "bids:raw:sub-001/func/sub-001_task-rest_bold.nii.gz"


def test_datalad_file_not_retrieved_is_named(real_data, tmp_path):
    from annex_layout import make_annexed_copy

    from bids_brainage.compute.anat_ops import check_t1w

    root = tmp_path / "pumi"
    links = make_annexed_copy(
        real_data / "pumi", root, drop=("sub-001_task-rest_bold.nii.gz", "sub-001_T1w.nii.gz")
    )
    for name, check in (
        ("sub-001_task-rest_bold.nii.gz", lambda p: bids.bold_metadata(root, str(p))),
        ("sub-001_T1w.nii.gz", check_t1w),
    ):
        with pytest.raises(InputError, match="symbolic link to missing content.*datalad get") as err:
            check(links[name])
        assert str(err.value).startswith(str(links[name]))


def test_row_with_an_extra_field_is_named(tmp_path):
    """pandas would shift the row (its first field becoming an index): 'age 'F' is not a number'."""
    root = _dataset(tmp_path / "ds", "participant_id\tage\tsex\nsub-01\t30\tM\textra\nsub-02\t41\tF\n")
    with pytest.raises(InputError, match="line 2 has 4 tab-separated fields, the header has 3") as err:
        bids.read_participants(root)
    assert str(err.value).startswith(str(root / "participants.tsv"))


def test_subject_folders_with_invalid_labels_are_named(tmp_path, app_log):
    root = _dataset(tmp_path / "ds", "participant_id\tage\nsub-ü01\t30\n")
    (root / "sub-ü01" / "anat").mkdir(parents=True)
    with pytest.raises(
        UsageError, match=r"no valid subject folder: sub-ü01 \(labels may only contain letters"
    ):
        bids.select_subjects(bids.load_layout(root), [])
    (root / "sub-02" / "anat").mkdir(parents=True)
    (root / "sub-02" / "anat" / "sub-02_T1w.nii.gz").write_bytes(b"")
    assert bids.select_subjects(bids.load_layout(root), []) == ["02"]
    assert "folders with invalid labels are ignored: sub-ü01" in app_log.text
