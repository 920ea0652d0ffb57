"""The report spec selects, by BIDS entities, every reportlet the workflows write; offline."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bids_brainage.derivatives import derivative_path
from bids_brainage.interfaces.io import DerivativesDataSink
from bids_brainage.reports import spec
from bids_brainage.reports.subject import generate_subject_report
from bids_brainage.workflows.reports import init_anat_reports_wf, init_func_reports_wf

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" viewBox="0 0 10 10"></svg>\n'


def _written_reportlets(out: Path, session: str | None) -> list[Path]:
    """Write an SVG wherever the reportlet sinks of one T1w and one BOLD run would write."""
    entities = {"sub": "01", "ses": session, "task": "rest", "run": "1"}
    workflows = [
        init_anat_reports_wf(output_dir=str(out), subject="01", session=session, resolution=2),
        init_func_reports_wf(output_dir=str(out), entities={k: v for k, v in entities.items() if v}),
    ]
    paths = []
    for wf in workflows:
        for node in wf._get_all_nodes():
            if isinstance(node.interface, DerivativesDataSink):
                i = node.inputs
                path = derivative_path(i.base_directory, i.datatype, i.suffix, ".svg", **i.entities)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(SVG)
                paths.append(path)
    return paths


@pytest.mark.parametrize("session", [None, "2"])
def test_spec_selects_every_reportlet_the_pipeline_writes(tmp_path: Path, session: str | None):
    out = tmp_path / "out"
    written = _written_reportlets(out, session)
    assert len(written) == 6
    found = spec.assemble_figures(out, "01", session)
    run = ("ses-2_" if session else "") + "task-rest_run-1"
    assert set(found["anat"]) == {r.name for r in spec.section_reportlets("Anatomical")}
    assert list(found["func"]) == [run]
    assert set(found["func"][run]) == {r.name for r in spec.section_reportlets("Functional")}
    selected = [f.src for figs in found["anat"].values() for f in figs]
    selected += [f.src for figs in found["func"][run].values() for f in figs]
    assert sorted(selected) == sorted(p.relative_to(out).as_posix() for p in written)
    assert [f.kind for f in found["anat"]["reg"]] == ["animated"]


def test_spec_keys_on_entities_not_on_name_substrings(tmp_path: Path):
    out = tmp_path / "out"
    _written_reportlets(out, None)
    figs = out / "sub-01" / "figures"
    (figs / "sub-01_desc-carpetlike_bold.svg").write_text(SVG)  # no task/run: no functional run
    (figs / "sub-01_desc-brainmask_T1w.svg").write_text(SVG)
    found = spec.assemble_figures(out, "01", None)
    names = [f.src for figs in found["anat"].values() for f in figs]
    assert names == [
        "sub-01/figures/sub-01_desc-brain_mask.svg",
        "sub-01/figures/sub-01_dseg.svg",
        "sub-01/figures/sub-01_space-MNI152NLin2009aSym_T1w.svg",
    ]
    assert list(found["func"]) == ["task-rest_run-1"]


def test_subject_report_with_the_network_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    out = tmp_path / "out"
    written = _written_reportlets(out, None)
    page = generate_subject_report({"output_dir": str(out)}, "01", None).read_text()
    for path in written:
        assert path.relative_to(out).as_posix() in page
    assert "https://" not in page.split("<body", 1)[0]  # no stylesheet or script from a CDN


def test_report_imports_neither_templateflow_nor_a_network_client(tmp_path: Path):
    """nireports depends on templateflow (which can download templates); the assembler must not load it."""
    out = tmp_path / "out"
    _written_reportlets(out, None)
    code = (
        "import sys\n"
        "from bids_brainage.reports.subject import generate_subject_report\n"
        f"generate_subject_report({{'output_dir': {str(out)!r}}}, '01', None)\n"
        "print(sorted(m for m in ('templateflow', 'requests', 'datalad') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
