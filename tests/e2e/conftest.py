"""One real run of the whole app on a tiny simulated cohort, shared by the end-to-end tests.

simulate (6 subjects, 4 mm, 40 volumes) → participant (--sloppy) on 5 subjects → group
(training, 3-fold CV); the sixth subject is held out and processed into a second output
folder to test prediction with ``--model``. Real antspyx/nipype/nilearn/torch: no mocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_cohort import TRAIN

from bids_brainage.cli.run import main


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
    code = main(["simulate", str(bids_dir), "--n-subjects", "6", "--resolution", "4", "--n-volumes", "40",
                 "--seed", "3"])  # fmt: skip
    assert code == 0, "simulation failed"
    common = ["-w", str(work_dir), "--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--random-seed", "1",
              "--min-volumes", "20", "--skip-bids-validation"]  # fmt: skip
    start = time.monotonic()
    participant_code = main(
        [str(bids_dir), str(out_dir), "participant", "--participant-label", *TRAIN, *common]
    )
    participant_seconds = time.monotonic() - start
    start = time.monotonic()
    group_code = main([str(bids_dir), str(out_dir), "group", "--n-folds", "3", *common])
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
