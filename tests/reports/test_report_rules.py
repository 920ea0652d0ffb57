"""Display rules of the reports on small inputs (issue 17): small-n groups, M/F labels, the
small-training banner, per-site view, run labels and each warning once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_brainage.defaults import REPORT_SMALL_GROUP_N, REPORT_SMALL_TRAINING_N
from bids_brainage.reports import figures, group, html, subject


@pytest.mark.parametrize(
    ("value", "label"),
    [("F", "F"), ("0", "F"), (0.0, "F"), ("F/0", "F"), ("sex F/0", "F"), ("female", "F"),
     ("M", "M"), (1, "M"), ("1.0", "M"), ("M/1", "M"), ("n/a", "n/a"), (float("nan"), "n/a")],
)  # fmt: skip
def test_sex_label(value: object, label: str) -> None:
    assert html.sex_label(value) == label


def test_small_groups_get_no_r2() -> None:
    block = {
        "20-29": {"n": 3, "mae": 4.0, "r": 0.99, "r2": -2540.0},
        "30-39": {"n": REPORT_SMALL_GROUP_N, "mae": 3.0, "r": 0.5, "r2": 0.2},
    }
    rows = dict(group._metric_rows(block))
    assert rows["20-29"]["r2"] == group.SMALL_N_TEXT and rows["20-29"]["r"] == group.SMALL_N_TEXT
    assert rows["20-29"]["mae"] == 4.0  # MAE is still shown
    assert rows["30-39"]["r2"] == 0.2
    by_sex = dict(group._metric_rows({"F/0": {"n": 20}, "M/1": {"n": 20}}, html.sex_label))
    assert set(by_sex) == {"F", "M"}


def test_small_groups_drawn_as_points(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    age = np.r_[rng.uniform(20, 29, 30), [45.0, 47.0, 48.0]]  # 20s: 30 people, 40s: 3
    sex = np.array(["F"] * 31 + ["M"] * 2, dtype=object)  # M: 2 people
    gap = rng.normal(0, 3, age.size)
    svg = figures.svg_bytes(figures.plot_gap_by_group(age, sex, gap)).decode()
    assert 'id="points-M"' in svg and 'id="points-40s"' in svg  # small groups: points
    assert 'id="points-F"' not in svg and 'id="points-20s"' not in svg  # large groups: boxes
    assert "n=2" in svg and "n=30" in svg


def _bundle(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.json").write_text(json.dumps({"training_summary": {"n_participants": n}}))
    return folder


def test_small_training_banner_for_8_not_200(tmp_path: Path) -> None:
    frame = pd.DataFrame({"participant_id": [f"sub-{i}" for i in range(8)], "split": ["oof"] * 8})
    size = group.training_size(tmp_path, {}, frame)
    assert size == {"n": 8, "source": "out-of-fold rows of brainage.tsv"}
    assert group.small_training_banner(size)["threshold"] == REPORT_SMALL_TRAINING_N
    big = _bundle(tmp_path / "big", 200)
    size = group.training_size(tmp_path, {"model": str(big)}, frame)  # --model wins
    assert size["n"] == 200 and group.small_training_banner(size) is None
    _bundle(tmp_path / "model", 8)
    assert group.training_size(tmp_path, {}, None)["source"] == "model/model.json"

    about = html.about({})
    banner = group.small_training_banner({"n": 8, "source": "x"})
    page = html.render("group.html", tmp_path / "g.html", banner=banner, about=about)
    text = page.read_text()
    assert 'id="small-training-banner"' in text and "trained on 8 people" in text and "--model" in text
    page = html.render("group.html", tmp_path / "g.html", banner=None, about=about)
    assert "small-training-banner" not in page.read_text()


def test_sites_view_and_run_labels(tmp_path: Path) -> None:
    by_group = pd.DataFrame(
        {
            "grouping": ["site", "site", "sex"],
            "level": ["S1", "S2", "F"],
            "n": [40, 4, 44],
            "mae": [4.1, 6.0, 4.3],
            "mean_corrected_gap": [0.1, 1.5, 0.2],
            "coverage": [0.9, 0.75, 0.89],
            "median_width": [15.0, 16.0, 15.2],
        }
    )
    sites = group._sites(by_group, tmp_path, 0.9)
    assert [r["level"] for r in sites["rows"]] == ["S1", "S2"]
    assert [r["small"] for r in sites["rows"]] == [False, True]
    assert "S2" in sites["fig"]["svg"] and "n=4" in sites["fig"]["svg"]
    unknown = by_group.assign(level=[None, "S2", "F"])  # no site recorded (read as NaN)
    assert group._sites(unknown, tmp_path, 0.9)["rows"][0]["level"] == "n/a"
    qc = pd.DataFrame(
        {"participant_id": ["sub-01", "sub-02"], "session_id": ["n/a", "ses-1"], "run": [1.0, 2]}
    )
    assert figures.run_labels(qc) == ["sub-01 run-1", "sub-02 ses-1 run-2"]
    named = pd.DataFrame(
        {"participant_id": ["sub-01"], "run": ["sub-01_ses-2_task-rest_run-3_desc-functional_features.tsv"]}
    )
    assert figures.run_labels(named) == ["sub-01 ses-2 task-rest run-3"]


def test_each_warning_once() -> None:
    reason = "more than 50% of volumes scrubbed"
    exclusion = {"excluded": True, "reason": reason}
    name = "sub-02_ses-2_task-rest_desc-functional_{}.json"
    sidecars = {
        "anat": [],
        "func": [
            {"name": name.format("qc"), "run": "ses-2_task-rest", "kind": "qc", "exclusion": exclusion},
            {"name": name.format("features"), "run": "ses-2_task-rest", "kind": "features", "exclusion": exclusion},
        ],
    }  # fmt: skip
    qc_rows = [{"session_id": "ses-2", "run": 1, "excluded": True, "reason": reason}]
    steps = [{"done": True}] * 5
    warnings = subject._warnings(sidecars, qc_rows, steps)
    assert warnings == [f"BOLD run ses-2_task-rest: excluded ({reason})"]


def test_fixture_reports_show_the_rules(rendered) -> None:
    out = Path(rendered["output_dir"])
    page = (out / "group_report.html").read_text()
    assert 'id="small-training-banner"' in page and 'id="sites"' in page
    assert group.SMALL_N_TEXT in page  # the fixture's small decades
    assert "F/0" not in page and "M/1" not in page
    subject_page = (out / "sub-02_ses-2.html").read_text()
    assert 'id="small-training-banner"' in subject_page
    assert subject_page.count('<li class="warn">') == 1  # the excluded run, warned once
    assert "sex: <code>M</code>" in subject_page or "sex: <code>F</code>" in subject_page


def test_participant_flags_listed(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"participant_id": ["sub-01", "sub-02"], "age": [30.0, 90.0], "predicted_age": [31.0, 70.0],
         "flag_age_out_of_range": ["False", "True"], "flag_unseen_site": [False, True]}
    )  # fmt: skip
    section = group._brainage_section(tmp_path, frame, tmp_path / "figures", None)
    assert [r["_flags"] for r in section["rows"]] == [[], ["age out of range", "unseen site"]]
