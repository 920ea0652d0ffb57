"""The methods text is written beside each builder (``__desc__``, fMRIPrep style) from the
values the workflow was built with, and the reports' methods are that same text."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_brainage import bids
from bids_brainage.config import Config
from bids_brainage.reports import citation
from bids_brainage.workflows.base import init_single_subject_wf
from bids_brainage.workflows.desc import visit_desc
from bids_brainage.workflows.functional import init_func_wf


def _inputs(root: Path) -> tuple[Path, Path]:
    anat, func = root / "sub-01" / "anat", root / "sub-01" / "func"
    anat.mkdir(parents=True)
    func.mkdir(parents=True)
    t1w = anat / "sub-01_T1w.nii.gz"
    nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).to_filename(t1w)
    bold = func / "sub-01_task-rest_bold.nii.gz"
    nib.Nifti1Image(np.zeros((4, 4, 4, 10), np.float32), np.eye(4)).to_filename(bold)
    (func / "sub-01_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    return t1w, bold


def _func_desc(tmp_path: Path, **options) -> tuple[str, object]:
    root = tmp_path / "bids"
    _, bold = _inputs(root)
    wf = init_func_wf(
        bold_file=str(bold), output_dir=str(tmp_path / "out"), subject="01", session=None,
        bids_root=str(root), sloppy=True, omp_nthreads=1, **options,
    )  # fmt: skip
    return " ".join(visit_desc(wf)), wf


def test_func_desc_follows_fd_threshold_and_band_pass(tmp_path):
    default, _ = _func_desc(tmp_path / "a")
    assert "FD > 0.5 mm" in default and "(0.01-0.1 Hz)" in default
    changed, wf = _func_desc(tmp_path / "b", fd_threshold=0.3, band_pass=(0.02, 0.09))
    assert "FD > 0.3 mm" in changed and "(0.02-0.09 Hz)" in changed
    assert "FD > 0.5 mm" not in changed and "0.01-0.1 Hz" not in changed
    # ... and the nodes were built with the values the text states.
    denoise = wf.get_node("denoise").inputs
    assert (denoise.high_pass, denoise.low_pass, denoise.fd_threshold) == (0.02, 0.09, 0.3)


def test_participant_methods_are_the_built_workflows_desc(tmp_path):
    """The report's Anatomical/Functional paragraphs equal the ``__desc__`` of the workflow
    ``init_single_subject_wf`` builds from the same settings (non-default ones here)."""
    root = tmp_path / "bids"
    t1w, bold = _inputs(root)
    config = Config(
        bids_dir=root, output_dir=tmp_path / "out", analysis_level="participant", work_dir=tmp_path / "work",
        fd_threshold=0.2, connectivity="ledoit-wolf", atlas="Power264", min_time=150,
        max_scrubbed_fraction=0.25, nuisance_regressors="36P", thickness=True, sloppy=True, dummy_scans=3,
        lower_bpf=0.02, upper_bpf=0.0, sphere_radius=7.0,
    )  # fmt: skip
    data = bids.SessionData(subject="01", session=None, t1w=str(t1w), bold=[str(bold)])
    built = visit_desc(init_single_subject_wf(config, data, [str(bold)]))
    paragraphs = {heading: text for heading, text, _ in citation.methods_paragraphs(config)}
    assert built == [paragraphs["Anatomical data"], paragraphs["Functional data"]]
    assert "FD > 0.2 mm" in built[1] and "Ledoit-Wolf" in built[1] and "264 regions of Power" in built[1]
    assert "the first 3 volumes were discarded" in built[1] and "The 36P confound set" in built[1]
    assert "high-pass filtered (above 0.02 Hz)" in built[1] and "spheres of radius 7 mm" in built[1]
    assert "less than 150 s of data remaining" in built[1]
    assert "KellyKapowski" in built[0] and "--sloppy" in built[0]
    assert "satterthwaite2013" in citation.cited_keys(citation.methods_paragraphs(config))


def test_func_desc_follows_nuisance_band_pass_and_minimum_options(tmp_path):
    """Each functional option changes the text and the node it is plumbed to."""
    text, wf = _func_desc(tmp_path / "a", nuisance_regressors="none", band_pass=None, min_time=41.0)
    assert "Only a linear trend was regressed out" in text and "not temporally filtered" in text
    assert "less than 41 s of data remaining" in text and "band-pass" not in text
    denoise, qc = wf.get_node("denoise").inputs, wf.get_node("run_qc").inputs
    assert (denoise.nuisance_regressors, denoise.high_pass, denoise.low_pass) == ("none", 0.0, 0.0)
    assert qc.min_volumes == 21  # 41 s at TR 2 s: 21 volumes
    text, wf = _func_desc(tmp_path / "b", nuisance_regressors="24P", min_volumes=12, atlas="Power264")
    assert (
        "The 24P confound set (the 24 motion parameters)" in text
        and "fewer than 12 remaining volumes" in text
    )
    assert wf.get_node("run_qc").inputs.min_volumes == 12
    assert wf.get_node("features").inputs.extra_meta["NuisanceRegressors"] == "24P"


def test_anat_only_methods_have_no_functional_paragraph(tmp_path):
    """--anat-only: no functional workflow is built and the methods say so."""
    root = tmp_path / "bids"
    t1w, bold = _inputs(root)
    config = Config(
        bids_dir=root, output_dir=tmp_path / "out", analysis_level="participant", work_dir=tmp_path / "work",
        anat_only=True,
    )  # fmt: skip
    data = bids.SessionData(subject="01", session=None, t1w=str(t1w), bold=[str(bold)])
    built = visit_desc(init_single_subject_wf(config, data, [str(bold)]))
    paragraphs = {heading: text for heading, text, _ in citation.methods_paragraphs(config)}
    assert "Functional data" not in paragraphs and len(built) == 1
    assert built == [paragraphs["Anatomical data"]]
    assert "Only the structural features were used (`--anat-only`)" in paragraphs["Brain-age model"]


def test_visit_desc_orders_and_deduplicates(tmp_path):
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    outer = pe.Workflow(name="outer")
    outer.__desc__, outer.__postdesc__ = "first", "last"
    inner = [pe.Workflow(name=f"inner{i}") for i in range(3)]
    for wf, text in zip(inner, ("second", "third", "second"), strict=True):
        wf.__desc__ = text
        wf.add_nodes([pe.Node(niu.IdentityInterface(fields=["x"]), name="node")])
    outer.connect(inner[0], "node.x", inner[1], "node.x")
    outer.connect(inner[1], "node.x", inner[2], "node.x")
    assert visit_desc(outer) == ["first", "second", "third", "last"]


def test_functional_methods_follow_what_the_participant_level_recorded(tmp_path):
    """The group level is often run without the participant level's options: the methods text
    takes the nuisance set and the minimum from the functional sidecars the participant level
    wrote (settings only when nothing was recorded)."""
    out = tmp_path / "out"
    func = out / "sub-01" / "func"
    func.mkdir(parents=True)
    sidecar = func / "sub-01_task-rest_desc-functional_features.json"
    config = Config(bids_dir=tmp_path, output_dir=out, analysis_level="group", work_dir=tmp_path / "work")

    def functional_text() -> str:
        return {h: t for h, t, _ in citation.methods_paragraphs(config)}["Functional data"]

    assert "The 26P confound set" in functional_text() and "less than 100 s of data" in functional_text()
    sidecar.write_text(
        json.dumps({"NuisanceRegressors": "36P", "MinimumRetainedVolumes": 15, "MinimumRetainedTime": 30.0})
    )
    assert "The 36P confound set" in functional_text() and "less than 30 s of data" in functional_text()
    sidecar.write_text(json.dumps({"NuisanceRegressors": "24P", "MinimumRetainedVolumes": 20}))
    assert (
        "The 24P confound set" in functional_text() and "fewer than 20 remaining volumes" in functional_text()
    )


def test_end_to_end_sidecars_and_methods_record_the_functional_options(pipeline_run):
    """The shared end-to-end run (``--min-time 40``, default nuisance set, simulated TR 2 s):
    each functional sidecar records the options and the group's CITATION.md states them."""
    sidecars = sorted(pipeline_run.out_dir.glob("sub-*/func/*desc-functional_features.json"))
    assert sidecars
    for path in sidecars:
        meta = json.loads(path.read_text())
        assert meta["NuisanceRegressors"] == "26P" and len(meta["Denoising"]["Confounds"]) == 26
        assert (meta["MinimumRetainedTime"], meta["MinimumRetainedVolumes"]) == (40.0, 20)
        assert (meta["Denoising"]["HighPass"], meta["Denoising"]["LowPass"]) == (0.01, 0.1)
    methods = (pipeline_run.out_dir / "logs" / "CITATION.md").read_text()
    assert "The 26P confound set" in methods and "less than 40 s of data remaining" in methods
    assert "band-pass filtered (0.01-0.1 Hz)" in methods
