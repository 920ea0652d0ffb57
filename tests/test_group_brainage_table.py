"""The one schema of brain-age tables (bids_brainage.compute.brainage_table), on toy frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bids_brainage.compute.brainage_table import (
    COLUMNS,
    FLAG_COLUMNS,
    brainage_table,
    read_brainage_table,
    write_brainage_table,
)

#: A toy bundle's training summary: ages 20-60 at sites A and B.
TRAINING = {"age_min": 20.0, "age_max": 60.0, "sites": ["A", "B"]}


def _model_output() -> pd.DataFrame:
    """What ``predict_table`` returns: the model's names, sex as 1/0, full-precision floats."""
    return pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02", "sub-03", "sub-04"],
            "age": [35.123456789, 71.5, np.nan, 20.0],
            "sex": [1.0, 0.0, 1.0, 0.0],
            "site": ["A", "C", "B", "B"],
            "predicted_age": [37.98765432101, 60.0, 44.4444444, 25.0],
            "lower": [30.0001, 50.0, 35.0, 15.0],
            "upper": [45.9999, 70.0, 55.0, 35.0],
            "gap": [2.864197531, -11.5, np.nan, 5.0],
            "corrected_gap": [1.0 / 3, -2.0, np.nan, 4.0],
            "modalities": ["smri+fmri", "smri", "smri", "smri+fmri"],
            "site_seen_in_training": [True, False, True, True],
            "refused": [False] * 4,
            "note": ["", "", "interval given the predicted age (no age)", ""],
            "split": "predict",
        }
    )


def test_model_output_gets_the_schema_rounded_with_m_f_and_flags():
    table = brainage_table(_model_output(), TRAINING)
    assert list(table.columns) == [c for c in COLUMNS if c != "harmonization"]
    assert table["predicted_age"].tolist() == [37.99, 60.0, 44.44, 25.0]
    assert table["interval_lower"].iloc[0] == 30.0 and table["brainage_gap_corrected"].iloc[0] == 0.33
    assert table["sex"].tolist() == ["M", "F", "M", "F"]
    assert table["session_id"].tolist() == ["n/a"] * 4
    # 71.5 is above the training range; no age: unknown; 20.0 is the range's edge (inside).
    assert table["flag_age_out_of_range"].tolist()[:2] == [False, True]
    assert pd.isna(table["flag_age_out_of_range"].iloc[2]) and table["flag_age_out_of_range"].iloc[3] is False
    assert table["flag_unseen_site"].tolist() == [False, True, False, False]
    # No QC table (bids_brainage model predict): QC flags are unknown.
    assert table["flag_qc_failed"].isna().all() and table["flag_bold_excluded"].isna().all()
    assert table["note"].isna().tolist() == [True, True, False, True]


def test_qc_table_fills_the_qc_flags_and_an_excluded_row():
    predictions = _model_output().iloc[:2].assign(split="oof", fold=[1, 2])
    excluded = pd.DataFrame({"participant_id": ["sub-09"], "age": [40.0], "sex": ["F"], "site": ["A"],
                             "split": ["excluded"], "modalities": ["none"]})  # fmt: skip
    qc = pd.DataFrame(
        {
            "participant_id": ["sub-01", "sub-02", "sub-02", "sub-09"],
            "session_id": [None, None, None, None],
            "run": ["sub-01_task-rest_desc-functional_features.tsv", "sub-02_run-1_desc-functional_features.tsv",
                    "sub-02_run-2_desc-functional_features.tsv", "sub-09_desc-structural_features.tsv"],
            "excluded": [False, True, False, True],
            "reason": ["", "60% of volumes scrubbed", "", "structural QC failed"],
        }
    )  # fmt: skip
    table = brainage_table(pd.concat([predictions, excluded], ignore_index=True), TRAINING, qc)
    assert table["flag_qc_failed"].tolist() == [False, False, True]
    assert table["flag_bold_excluded"].tolist()[:2] == [False, True] and pd.isna(
        table["flag_bold_excluded"][2]
    )
    assert table["fold"].tolist()[:2] == [1, 2] and pd.isna(table["fold"][2])


def test_written_table_and_sidecar(tmp_path):
    table = brainage_table(_model_output().assign(harmonization="known"), TRAINING)
    path = write_brainage_table(tmp_path / "brainage.tsv", table, Model="SA-AVAE")
    text = path.read_text()
    assert "37.99\t" in text and "37.987" not in text and "\tM\t" in text and "\ttrue\t" in text
    assert "True" not in text and "nan" not in text
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["Model"] == "SA-AVAE"
    columns = {k: v for k, v in sidecar.items() if k != "Model"}
    assert list(columns) == list(table.columns) and "harmonization" in columns
    for name, entry in columns.items():
        assert isinstance(entry, dict) and entry["Description"], name
    assert sidecar["predicted_age"]["Units"] == "years" and "Units" not in sidecar["participant_id"]
    assert "Training ages: 20.00 to 60.00 years." in sidecar["flag_age_out_of_range"]["Description"]
    assert sidecar["flag_unseen_site"]["Description"].endswith("Training sites: A, B.")
    assert set(sidecar["sex"]["Levels"]) == {"M", "F"}
    assert all(set(sidecar[f]["Levels"]) == {"true", "false"} for f in FLAG_COLUMNS)
    back = read_brainage_table(path)
    assert back["flag_unseen_site"].tolist() == [False, True, False, False]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
