"""Reports of a real run (simulate → participant → group, real nipype/antspyx/nilearn/torch).

Uses the session-wide ``pipeline_run`` fixture (tests/conftest.py), so the whole suite runs
the pipeline once. Both reports are opened in headless Chromium.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from report_browser import Browser, require_chromium

N_SUBJECTS = 5
COMMON = ["--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--random-seed", "1", "--min-time", "40",
          "--skip-bids-validation"]  # fmt: skip


@pytest.fixture(scope="module")
def real_run(pipeline_run) -> SimpleNamespace:
    """(bids_dir, out_dir, participant and group exit codes) of the shared real run."""
    return SimpleNamespace(
        bids_dir=pipeline_run.bids_dir,
        out_dir=pipeline_run.out_dir,
        participant_code=pipeline_run.participant_code,
        group_code=pipeline_run.group_code,
    )


@pytest.mark.slow
def test_real_run_reports_open_cleanly(real_run, artifacts):
    out = real_run.out_dir
    assert real_run.participant_code in (0, 1), "participant level did not run"
    subject_reports = sorted(out.glob("sub-*.html"))
    assert subject_reports, f"no subject report in {out}"
    assert real_run.group_code == 0, "group level failed"
    assert (out / "group_report.html").is_file(), "the group level wrote no group_report.html"
    with Browser(require_chromium()) as browser:
        for page in [subject_reports[0], out / "group_report.html"]:
            shot = artifacts / f"real_{page.stem}.png"
            check = browser.check(page, shot)
            assert check.problems == [], f"{page.name}: {check.problems}"
            print(f"{page.name}: {check.n_images} images, {check.n_links} links, screenshot {shot}")
    first = subject_reports[0].read_text()
    assert "sub-" in first and 'id="methods"' in first
    figures = list((out / subject_reports[0].stem.split("_")[0] / "figures").glob("*.svg"))
    assert len(figures) >= 3, f"expected the anatomical/functional reportlets, found {figures}"
    # issue 17: coregistration flicker, censored volumes on the carpet, the display rules
    figures_dir = out / subject_reports[0].stem.split("_")[0] / "figures"
    for coreg in figures_dir.glob("*_desc-coreg_bold.svg"):
        text = coreg.read_text()
        assert 'class="moving"' in text and "@keyframes" in text and "white-matter edges" in text
    for carpet in figures_dir.glob("*_desc-carpet_bold.svg"):
        assert "censored: " in carpet.read_text()
    group = (out / "group_report.html").read_text()
    assert 'id="small-training-banner"' in group and "--model" in group  # 5 people trained it
    assert 'id="sites"' in group and "F/0" not in group and "M/1" not in group


@pytest.mark.slow
def test_reports_only_rebuilds_from_disk(real_run, tmp_path: Path):
    from bids_brainage.reports import rebuild_reports

    copy = tmp_path / "out"
    shutil.copytree(real_run.out_dir, copy)
    for html in copy.glob("*.html"):
        html.unlink()
    assert rebuild_reports({"output_dir": str(copy), "bids_dir": str(real_run.bids_dir)}) == 0
    assert sorted(p.name for p in copy.glob("*.html")) == sorted(
        p.name for p in real_run.out_dir.glob("*.html")
    )
    assert (copy / "logs" / "CITATION.md").is_file() and (copy / "logs" / "CITATION.bib").is_file()
    group = (copy / "group_report.html").read_text()
    predicted = set(pd.read_csv(copy / "brainage.tsv", sep="\t")["participant_id"])
    linked = [r for r in copy.glob("sub-*.html") if r.stem.split("_")[0] in predicted]
    assert linked, "no predicted participant has a report"
    for report in linked:
        assert f'href="{report.name}"' in group, f"{report.name} not linked from the group report"
