"""Group report from the group level's files, determinism of the figures, missing inputs."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from bids_brainage.reports.group import generate_group_report


def test_group_report_content(rendered):
    out = Path(rendered["output_dir"])
    page = (out / "group_report.html").read_text()
    for anchor in ("accuracy", "bias", "baselines", "training", "intervals", "latent", "qc", "participants"):
        assert f'id="{anchor}"' in page
    # each participant with a report is linked from its point in the inline SVG and from the table
    svg = (out / "group" / "figures" / "predicted_vs_age.svg").read_text()
    for name in ("sub-01.html", "sub-02_ses-1.html", "sub-02_ses-2.html", "sub-03.html"):
        assert f'href="{name}"' in svg, name
        assert f'<a href="{name}">' in page, name
    assert "sub-39.html" not in page  # no report on disk -> no dead link
    assert "SA-AVAE without adversarial term" in page
    assert re.search(r"1 of \d+ run\(s\) excluded", page)
    for name in (
        "gap_vs_age",
        "gap_by_sex_decade",
        "learning_curves",
        "interval_coverage",
        "latent_pca",
        "qc_motion",
    ):
        assert (out / "group" / "figures" / f"{name}.svg").is_file(), name
    assert not re.search(r'(src|href)="(https?:)?//', page), "reports must not load anything online"


def test_figures_are_deterministic(rendered):
    out = Path(rendered["output_dir"])
    figures = sorted((out / "group" / "figures").glob("*.svg"))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in figures}
    generate_group_report(out, rendered)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in figures}
    assert before == after
    assert "<dc:date>" not in figures[0].read_text()


def test_group_report_without_group_outputs(tmp_path: Path):
    page = generate_group_report(tmp_path).read_text()
    assert "brainage.tsv was not found" in page
    assert page.count("not available") >= 5


def test_group_report_with_brainage_only(fresh_outputs):
    out = Path(fresh_outputs["output_dir"])
    for name in ("metrics.json", "baselines.tsv", "learning_curves.tsv", "latent.tsv", "qc.tsv"):
        (out / "group" / name).unlink()
    page = generate_group_report(out).read_text()
    assert "QC table (group/qc.tsv) not available" in page
    assert 'href="sub-01.html"' in page
