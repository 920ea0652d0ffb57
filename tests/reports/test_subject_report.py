"""Per-subject reports from fixture outputs, and from nearly empty outputs."""

from __future__ import annotations

from pathlib import Path

from bids_brainage.reports import subject
from bids_brainage.reports.subject import generate_subject_report


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
    # the registration fade is the reportlet the anatomical workflow writes (it animates itself)
    reg = "sub-01/figures/sub-01_space-MNI152NLin2009aSym_T1w.svg"
    assert reg in page and "@keyframes" in (out / reg).read_text()
    assert "desc-flicker" not in page
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
    (out / "sub-01" / "figures" / "sub-01_desc-brain_mask.svg").write_bytes(b"\xff\xfe\x00broken")
    page = generate_subject_report(fresh_outputs, "01", None).read_text()
    assert 'id="brainage"' in page and 'id="anatomical"' in page


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


def test_missing_reportlets_are_shown_as_not_available(fresh_outputs):
    out = Path(fresh_outputs["output_dir"])
    (out / "sub-01" / "figures" / "sub-01_space-MNI152NLin2009aSym_T1w.svg").unlink()
    # a figure the spec does not name is not shown, whatever its name contains
    (out / "sub-01" / "figures" / "sub-01_desc-regcheck_T1w.svg").write_text("<svg/>")
    page = generate_subject_report(fresh_outputs, "01", None).read_text()
    assert "Registration to MNI152NLin2009aSym" in page and "space-MNI152NLin2009aSym_T1w.svg" not in page
    assert "desc-regcheck" not in page
