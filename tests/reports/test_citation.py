"""Methods boilerplate and CITATION files follow the run's settings."""

from __future__ import annotations

import re
from pathlib import Path

from bids_brainage.reports import citation


def _text(**settings) -> str:
    return citation.methods_markdown({"output_dir": "does-not-exist", **settings})


def test_methods_follow_settings():
    default = _text()
    assert "--sloppy" not in default and "at full resolution" in default
    assert "Seitzman" in default and "FD > 0.5 mm" in default and "5-fold" in default
    sloppy = _text(
        sloppy=True,
        atlas="Power264",
        connectivity="partial-correlation",
        fd_threshold=0.3,
        n_folds=3,
        device="cpu",
    )
    assert "--sloppy" in sloppy
    assert "264 regions of Power" in sloppy and "[power2011]" in sloppy
    assert "partial correlation, Fisher z-transformed" in sloppy
    assert "FD > 0.3 mm" in sloppy and "3-fold" in sloppy and "on the CPU" in sloppy
    assert "0.01-0.1 Hz" in sloppy


def test_every_cited_key_has_a_reference_and_bibtex(tmp_path: Path):
    settings = {
        "output_dir": str(tmp_path),
        "atlas": "DK83",
        "connectivity": "ledoit-wolf",
        "thickness": True,
        "bias_correction": "linear",
    }
    md, bib = citation.write_citation(settings)
    assert md == tmp_path / "logs" / "CITATION.md" and bib.name == "CITATION.bib"
    text, bibtex = md.read_text(), bib.read_text()
    cited = set()
    for group in re.findall(r"\[([a-z0-9]+(?:; [a-z0-9]+)*)\]", text.split("## References")[0]):
        cited.update(group.split("; "))
    entries = set(re.findall(r"^@\w+\{(\w+),", bibtex, flags=re.M))
    assert cited <= entries, cited - entries
    for key in (
        "saavae",
        "nipype",
        "antsx",
        "n4",
        "syn",
        "atropos",
        "nilearn",
        "pytorch",
        "pybids",
        "fonov2009",
        "fonov2011",
        "desikan2006",
        "power2012",
        "beheshti2019",
        "lei2018",
        "kellykapowski",
        "ledoit2004",
    ):
        assert key in entries, key
    assert "2412.05632" in bibtex
    assert bibtex.count("{") == bibtex.count("}")


def test_band_pass_is_read_from_the_outputs(tmp_path: Path):
    sidecar = tmp_path / "sub-01" / "func" / "sub-01_task-rest_desc-functional_features.json"
    sidecar.parent.mkdir(parents=True)
    sidecar.write_text('{"Denoising": {"HighPass": 0.009, "LowPass": 0.08}}')
    assert "0.009-0.08 Hz" in citation.methods_markdown({"output_dir": str(tmp_path)})


def test_model_settings_come_from_the_group_level(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "config_group_20260101-000000_x.json").write_text('{"n_folds": 3, "device": "cpu"}')
    text = citation.methods_markdown(
        {"output_dir": str(tmp_path), "analysis_level": "participant", "n_folds": 5}
    )
    assert "3-fold" in text and "on the CPU" in text


def test_sphere_radius_and_dummy_scans_say_what_the_code_did(tmp_path: Path):
    """No "5 mm spheres" and no "detected" dummy volumes: the rule the code applies, and the
    values the run recorded (issue: the methods text disagreed with the code)."""
    text = citation.methods_markdown({"output_dir": str(tmp_path), "atlas": "Seitzman300"})
    assert "5 mm spheres" not in text and "detected" not in text
    assert "max(4 mm as published, 2.5 x the BOLD voxel size)" in text
    assert "none when it does not say" in text
    sidecar = tmp_path / "sub-01" / "func" / "sub-01_task-rest_desc-functional_features.json"
    sidecar.parent.mkdir(parents=True)
    sidecar.write_text('{"SphereRadius": 7.5, "QC": {"n_dummy_scans": 3}}')
    text = citation.methods_markdown({"output_dir": str(tmp_path), "atlas": "Seitzman300"})
    assert "7.5 mm in this dataset" in text and "(3 per run in this dataset)" in text
    given = citation.methods_markdown({"output_dir": str(tmp_path), "dummy_scans": 2})
    assert "the first 2 volumes were discarded" in given


def test_bias_correction_text_follows_the_setting():
    assert "a quadratic bias correction" in _text() and "[smith2019]" in _text()
    linear = _text(bias_correction="linear")
    assert "a linear bias correction" in linear and "[beheshti2019]" in linear
    assert "ComBat" not in _text() and "ComBat [johnson2007]" in _text(harmonize="combat")
