"""Reports of a real run (simulate → participant → group, real nipype/antspyx/nilearn/torch).

Uses the session-wide ``pipeline_run`` fixture when it is visible from here (tests/conftest.py),
or the finished run that tests/e2e left in this session's temporary folder, so the whole suite
runs the pipeline once; otherwise (tests/reports alone) runs its own tiny cohort with the same
settings. Both reports are opened in headless Chromium.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from report_browser import Browser, require_chromium

from bids_brainage.cli.run import main

N_SUBJECTS = 5
COMMON = ["--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--random-seed", "1", "--min-volumes", "20",
          "--skip-bids-validation"]  # fmt: skip


@pytest.fixture(scope="module")
def real_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """(bids_dir, out_dir, participant and group exit codes) of a real run on simulated data."""
    try:
        shared = request.getfixturevalue("pipeline_run")
    except pytest.FixtureLookupError:
        shared = None
    if shared is not None:
        return SimpleNamespace(
            bids_dir=shared.bids_dir,
            out_dir=shared.out_dir,
            participant_code=shared.participant_code,
            group_code=shared.group_code,
        )
    # In a full run tests/e2e comes first: reuse its finished run instead of running the pipeline twice.
    for out in sorted(tmp_path_factory.getbasetemp().glob("e2e*/out")):
        if (out / "brainage.tsv").is_file() and (out / "group_report.html").is_file():
            return SimpleNamespace(
                bids_dir=out.parent / "bids", out_dir=out, participant_code=0, group_code=0
            )
    root = tmp_path_factory.mktemp("real_reports")
    bids_dir, out_dir, work = root / "bids", root / "out", root / "work"
    assert main(["simulate", str(bids_dir), "--n-subjects", str(N_SUBJECTS), "--resolution", "4",
                 "--n-volumes", "40", "--seed", "3"]) == 0  # fmt: skip
    common = ["-w", str(work), *COMMON]
    participant = main([str(bids_dir), str(out_dir), "participant", *common])
    group = main([str(bids_dir), str(out_dir), "group", "--n-folds", "3", *common])
    return SimpleNamespace(bids_dir=bids_dir, out_dir=out_dir, participant_code=participant, group_code=group)


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
