"""Per-subject reports from fixture outputs, and from nearly empty outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bids_brainage.reports import subject
from bids_brainage.reports.subject import classify_figure, generate_subject_report


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sub-01_desc-brain_mask.svg", ("anat", "mask")),
        ("sub-01_desc-seg_dseg.svg", ("anat", "seg")),
        ("sub-01_dseg.svg", ("anat", "seg")),
        ("sub-01_space-MNI152NLin2009aSym_T1w.svg", ("anat", "reg")),
        ("sub-01_desc-reg_T1w.svg", ("anat", "reg")),
        ("sub-01_task-rest_desc-carpet_bold.svg", ("func", "carpet")),
        ("sub-01_task-rest_desc-coreg_bold.svg", ("func", "coreg")),
        ("sub-01_task-rest_atlas-Seitzman300_desc-connectivity_relmat.svg", ("func", "connectivity")),
        ("sub-01_task-rest_desc-something_bold.svg", ("func", "other")),
    ],
)
def test_classify_figure(name, expected):
    assert classify_figure(name)[:2] == expected


def test_subject_report_sections(rendered):
    out = Path(rendered["output_dir"])
    page = (out / "sub-01.html").read_text()
    for anchor in ("summary", "anatomical", "functional", "brainage", "about", "methods", "errors"):
        assert f'id="{anchor}"' in page
    assert "sub-01/figures/sub-01_desc-brain_mask.svg" in page
    assert "sub-01/figures/sub-01_task-rest_desc-carpet_bold.svg" in page
    assert "sub-01/figures/sub-01_task-rest_desc-connectivity_bold.svg" in page
    assert "<td>mL</td>" in page and "all 24 features" in page  # values from the TSV, units from the JSON
    assert "sub-01_task-rest_desc-functional_qc.json" in page and "kept" in page
    assert (
        "desc-flicker_T1w.svg" in page
        and "@keyframes"
        in (out / "sub-01" / "figures" / "sub-01_space-MNI152NLin2009aSym_desc-flicker_T1w.svg").read_text()
    )
    assert "desc-brainage_age.svg" in page and "predicted age" in page
    assert "bids_brainage bids out participant --sloppy" in page
    assert "Seitzman" in page and 'id="ref-saavae"' in page
    assert "No errors to report." in page


def test_multi_session_subject_gets_one_report_per_session(rendered):
    out = Path(rendered["output_dir"])
    assert (out / "sub-02_ses-1.html").is_file() and (out / "sub-02_ses-2.html").is_file()
    assert not (out / "sub-02.html").exists()
    ses2 = (out / "sub-02_ses-2.html").read_text()
    assert "sub-02_ses-2_task-rest_desc-carpet_bold.svg" in ses2
    assert "sub-02_ses-1_task-rest" not in ses2
    # the excluded run and the node crash surface in Summary and Errors
    assert "more than 50% of volumes scrubbed" in ses2
    assert "sub_02_ses_2_wf.anat_wf.n4" in ses2 and "N4 did not converge" in ses2
    # reports-only: the failure recorded by the participant level is shown without the errors argument
    assert "anat_wf.n4 crashed: see the crash file" in ses2 and "in 312 s" in ses2


def test_structural_only_subject(rendered):
    page = (Path(rendered["output_dir"]) / "sub-03.html").read_text()
    assert "no functional outputs for this participant" in page


def test_errors_argument_and_missing_everything(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    path = generate_subject_report({"output_dir": str(out)}, "07", None, errors=["T1w missing"])
    page = path.read_text()
    assert path == out / "sub-07.html"
    assert "T1w missing" in page
    assert page.count("not available") >= 6
    assert "group level has not been run" in page


def test_malformed_inputs_do_not_crash(fresh_outputs):
    out = Path(fresh_outputs["output_dir"])
    (out / "brainage.tsv").write_text('garbage\x00\n"unterminated')
    sidecar = next((out / "sub-01" / "anat").glob("*structural_features.json"))
    sidecar.write_text("{not json")
    (out / "sub-01" / "anat" / "sub-01_space-MNI152NLin2009aSym_desc-preproc_T1w.nii.gz").write_bytes(
        b"broken"
    )
    for svg in (out / "sub-01" / "figures").glob("*flicker*"):
        svg.unlink()
    page = generate_subject_report(fresh_outputs, "01", None).read_text()
    assert 'id="brainage"' in page


def test_crash_summary_of_the_latest_run(tmp_path: Path):
    crash = tmp_path / "sub-05" / "log" / "20260101-000000_abc" / "crash-1.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("Node: wf.func_wf.hmc\n\nTraceback (most recent call last):\nValueError: bad TR\n")
    (tmp_path / "sub-05" / "log" / "20250101-000000_old").mkdir()
    (tmp_path / "sub-05" / "log" / "20250101-000000_old" / "crash-0.txt").write_text(
        "Node: old\nOSError: x\n"
    )
    rows = subject.crash_summaries(tmp_path, "05", None)
    assert [(r["node"], r["summary"]) for r in rows] == [("wf.func_wf.hmc", "ValueError: bad TR")]


def test_animated_registration_reportlet_is_not_duplicated(fresh_outputs):
    out = Path(fresh_outputs["output_dir"])
    figs = out / "sub-01" / "figures"
    for svg in figs.glob("*reg*"):
        svg.unlink()
    for svg in figs.glob("*flicker*"):
        svg.unlink()
    # what the anatomical workflow writes: an SVG that animates itself
    (figs / "sub-01_space-MNI152NLin2009aSym_T1w.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><style>@keyframes f {}</style></svg>'
    )
    page = generate_subject_report(fresh_outputs, "01", None).read_text()
    assert "sub-01/figures/sub-01_space-MNI152NLin2009aSym_T1w.svg" in page
    assert "desc-flicker" not in page and not list(figs.glob("*flicker*"))
