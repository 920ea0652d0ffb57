"""Shared fixtures: paths to the real test data (read-only) and small helpers."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from console import run_app
from pipeline_cohort import TRAIN

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``../shared/data/real`` (never written to: copy first when a tool needs a writable tree)."""
    if not REAL_DATA.is_dir():
        raise FileNotFoundError(f"real test data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def ixi10_copy(tmp_path: Path, real_data: Path) -> Path:
    """A writable copy of the ixi10 dataset."""
    dst = tmp_path / "ixi10"
    shutil.copytree(real_data / "ixi10", dst)
    return dst


@pytest.fixture(scope="module")
def real_data_session(tmp_path_factory, real_data):
    """(layout, bold file, its sidecar) on a writable copy of pumi without field maps."""
    from bids_brainage import bids

    root = tmp_path_factory.mktemp("pumi") / "pumi"
    shutil.copytree(
        real_data / "pumi", root, ignore=shutil.ignore_patterns("fmap", "*variant*", "task-rest_bold.json")
    )
    layout = bids.load_layout(root)
    bold = layout.get(suffix="bold", extension=".nii.gz", return_type="filename")[0]
    return layout, bold, root / "sub-001" / "func" / "sub-001_task-rest_bold.json"


# --- One real run of the whole app on a tiny simulated cohort, shared by every test that
# needs real pipeline outputs (tests/e2e, tests/reports): simulate (6 subjects, 4 mm,
# 40 volumes) → participant (--sloppy) on 5 subjects → group (3-fold CV); the sixth is
# held out to test prediction with --model. Real antspyx/nipype/nilearn/torch: no mocks.


@dataclass
class PipelineRun:
    bids_dir: Path
    out_dir: Path
    work_dir: Path
    heldout_out: Path
    participant_code: int
    group_code: int
    participant_seconds: float
    group_seconds: float


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> PipelineRun:
    root = tmp_path_factory.mktemp("e2e")
    bids_dir, out_dir, work_dir = root / "bids", root / "out", root / "work"
    sim = run_app(
        "simulate", bids_dir, "--n-subjects", "6", "--resolution", "4", "--n-volumes", "40", "--seed", "3"
    )
    assert sim.returncode == 0, f"simulation failed: {sim.stderr[-2000:]}"
    # --nprocs 4 with 1 thread per task runs two subjects side by side (2 processors each);
    # the reliability tests run the same pipeline one subject at a time (--nprocs 2).
    common = ["-w", str(work_dir), "--sloppy", "--nprocs", "4", "--omp-nthreads", "1", "--random-seed", "1",
              "--min-time", "40", "--skip-bids-validation"]  # fmt: skip
    # Through the installed console script, as users run it (README: Usage).
    start = time.monotonic()
    participant_code = run_app(
        bids_dir, out_dir, "participant", "--participant-label", *TRAIN, *common
    ).returncode
    participant_seconds = time.monotonic() - start
    start = time.monotonic()
    group_code = run_app(bids_dir, out_dir, "group", "--n-folds", "3", *common).returncode
    group_seconds = time.monotonic() - start
    return PipelineRun(
        bids_dir=bids_dir,
        out_dir=out_dir,
        work_dir=work_dir,
        heldout_out=root / "heldout",
        participant_code=participant_code,
        group_code=group_code,
        participant_seconds=participant_seconds,
        group_seconds=group_seconds,
    )


@pytest.fixture
def app_log(caplog):
    """caplog for the app's loggers, which stop propagating once the CLI set up logging."""
    import logging

    logger = logging.getLogger("bids_brainage")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)
