"""Participant status files: per-modality outcomes of the latest run (issue 20.4)."""

from __future__ import annotations

import pytest

from bids_brainage.bids import SessionData
from bids_brainage.cli.participant import SubjectResult, modality_outcomes

T1W = "/data/sub-01/anat/sub-01_T1w.nii.gz"
BOLD = [f"/data/sub-01/func/sub-01_task-rest_run-{n}_bold.nii.gz" for n in (1, 2, 3)]


def _outcomes(errors: list[str], t1w: str | None = T1W) -> dict:
    data = SessionData(subject="01", session=None, t1w=t1w, bold=list(BOLD))
    return modality_outcomes(data, SubjectResult("01", None, ok=not errors, errors=errors))


def _bold(*states: str) -> dict[str, str]:
    return {f"sub-01_task-rest_run-{n}_bold.nii.gz": s for n, s in zip((1, 2, 3), states, strict=True)}


@pytest.mark.parametrize(
    ("errors", "anat", "bold"),
    [
        ([], "ok", ("ok", "ok", "ok")),
        # A run refused by its checks is not processed; the workflow numbers the others 1, 2.
        ([f"{BOLD[0]}: too few volumes: 5"], "ok", ("failed", "ok", "ok")),
        (
            [f"{BOLD[0]}: too few volumes: 5", "sub_01_wf.func_run2_wf.connectivity: no ROI left"],
            "ok",
            ("failed", "ok", "failed"),
        ),
        # The anatomy failed: every BOLD run depends on it.
        ([f"{T1W}: is empty (all voxels have the same value)"], "failed", ("failed",) * 3),
        (["sub_01_wf.anat_wf.segment: Atropos failed"], "failed", ("failed",) * 3),
        # An error that cannot be placed: nothing from this run is trusted.
        (["worker process failed (BrokenProcessPool: ...)"], "failed", ("failed",) * 3),
    ],
)
def test_errors_are_attributed_to_modalities(errors, anat, bold):
    assert _outcomes(errors) == {"anat": anat, "bold": _bold(*bold)}


def test_no_t1w_fails_the_anatomy():
    assert _outcomes(["/data/sub-01: no T1w image found"], t1w=None)["anat"] == "failed"
