"""One source of truth for the processing defaults: ``bids_brainage/defaults.py``.

The parser, the config, the builders, the interfaces and the methods text read it; the key
literals (FD threshold, band-pass, connectivity kind, exclusion limits) appear nowhere else.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

import bids_brainage
from bids_brainage import defaults
from bids_brainage.cli.parser import build_parser
from bids_brainage.config import Config
from bids_brainage.interfaces.connectivity import DenoiseTimeseries, FunctionalFeatures, RunQC
from bids_brainage.workflows.anatomical import init_anat_wf
from bids_brainage.workflows.functional import func_methods, init_func_wf

PACKAGE = Path(bids_brainage.__file__).parent

#: option dest -> the default it must have.
EXPECTED = {
    "fd_threshold": defaults.DEFAULT_FD_THRESHOLD,
    "connectivity": defaults.DEFAULT_CONNECTIVITY,
    "atlas": defaults.DEFAULT_ATLAS,
    "max_scrubbed_fraction": defaults.DEFAULT_MAX_SCRUBBED_FRACTION,
    "min_time": defaults.DEFAULT_MIN_TIME,
    "nuisance_regressors": defaults.DEFAULT_NUISANCE_REGRESSORS,
    "lower_bpf": defaults.DEFAULT_BAND_PASS[0],
    "upper_bpf": defaults.DEFAULT_BAND_PASS[1],
    "n_folds": defaults.DEFAULT_N_FOLDS,
    "harmonize": defaults.DEFAULT_HARMONIZE,
    "bias_correction": defaults.DEFAULT_BIAS_CORRECTION,
    "random_seed": defaults.DEFAULT_RANDOM_SEED,
    "device": defaults.DEFAULT_DEVICE,
}

#: A default literal written outside defaults.py: ``fd_threshold = 0.5``, ``default=0.5``,
#: ``Float(0.5, usedefault=True)``, ``0.01, 0.1`` / ``0.01-0.1 Hz``, ``= "correlation"``,
#: ``Int(50, usedefault`` ...
DUPLICATES = [
    r"fd_threshold\s*[:=][^,\n]*\b0\.5\b",
    r"scrubbed_fraction\s*[:=][^,\n]*\b0\.5\b",
    r"min_time\s*[:=][^,\n]*\b100\b",
    r"default=100\b",
    r"(?:^|[^=!<>])=\s*\"26P\"",
    r"default=0\.5\b",
    r"default=50\b",
    r"default=5\b",
    r"Float\(0\.5\b",
    r"Int\(50\b",
    r"0\.01\s*,\s*0\.1\b",
    r"0\.01\s*-\s*0\.1\b",
    r"(?:^|[^=!<>])=\s*\"correlation\"",
    r"(?:^|[^=!<>])=\s*\"Seitzman300\"",
]
#: The simulator draws its own signals (its band is the physiology it simulates, not a choice
#: of the pipeline).
EXEMPT = {"defaults.py", "simulate"}


def _sources() -> list[Path]:
    return [
        path for path in sorted(PACKAGE.rglob("*.py")) if not EXEMPT & set(path.relative_to(PACKAGE).parts)
    ]


def test_parser_and_config_defaults_come_from_defaults_module():
    args = build_parser().parse_args(["bids", "out", "participant"])
    fields = {f.name: f.default for f in dataclasses.fields(Config)}
    for dest, value in EXPECTED.items():
        assert getattr(args, dest) == value, dest
        assert fields[dest] == value, dest


def test_builder_and_interface_defaults_come_from_defaults_module():
    params = inspect.signature(init_func_wf).parameters
    for name in (
        "fd_threshold",
        "connectivity",
        "atlas",
        "max_scrubbed_fraction",
        "min_time",
        "nuisance_regressors",
        "random_seed",
    ):
        assert params[name].default == EXPECTED[name], name
    assert inspect.signature(init_anat_wf).parameters["random_seed"].default == defaults.DEFAULT_RANDOM_SEED
    assert params["band_pass"].default == defaults.DEFAULT_BAND_PASS
    for interface in (DenoiseTimeseries, FunctionalFeatures):
        spec = interface().inputs
        assert (spec.high_pass, spec.low_pass) == defaults.DEFAULT_BAND_PASS
        assert spec.fd_threshold == defaults.DEFAULT_FD_THRESHOLD
    assert DenoiseTimeseries().inputs.nuisance_regressors == defaults.DEFAULT_NUISANCE_REGRESSORS
    qc = RunQC().inputs
    assert qc.max_scrubbed_fraction == defaults.DEFAULT_MAX_SCRUBBED_FRACTION


def test_methods_text_defaults_come_from_defaults_module():
    text = func_methods()
    low, high = defaults.DEFAULT_BAND_PASS
    assert f"({low:g}-{high:g} Hz)" in text
    assert f"FD > {defaults.DEFAULT_FD_THRESHOLD:g} mm" in text
    assert f"less than {defaults.DEFAULT_MIN_TIME:g} s of data remaining" in text
    assert f"The {defaults.DEFAULT_NUISANCE_REGRESSORS} confound set" in text


@pytest.mark.parametrize("pattern", DUPLICATES)
def test_no_default_literal_outside_defaults_module(pattern):
    found = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in _sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert not found, "default literal outside bids_brainage/defaults.py:\n" + "\n".join(found)


def test_the_literal_check_finds_a_duplicate():
    """The patterns match what they are meant to catch (the check above can fail)."""
    lines = [
        "    fd_threshold: float = 0.5,",
        "HIGH_PASS, LOW_PASS = 0.01, 0.1",
        'default="correlation",',
        "    min_time: float = 100.0,",
        'strategy: str = "26P"',
    ]
    for line in lines:
        assert any(re.search(p, line) for p in DUPLICATES), line
