"""Log lines a user can follow: a line per workflow stage with its time, a line per excluded
BOLD run with the reason (bids_brainage.cli.logs.StageLog), on tiny nipype workflows."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_brainage.cli.logs import StageLog


def _add_one(x):
    return x + 1


def _qc(x):
    return True, f"{x}% of volumes scrubbed (FD > 0.5 mm), more than 30%"


@pytest.mark.parametrize("plugin", ["Linear", "MultiProc"])
def test_a_line_per_stage_and_per_excluded_run(tmp_path, caplog, plugin):
    """Plumbing (identity and ds_ nodes) has no line; computing nodes have one with their time."""
    top = pe.Workflow(name="sub_01_wf", base_dir=str(tmp_path))
    anat = pe.Workflow(name="anat_wf")
    register = pe.Node(niu.Function(function=_add_one, input_names=["x"], output_names=["out"]), "register")
    register.inputs.x = 1
    sink = pe.Node(niu.IdentityInterface(fields=["out"]), name="ds_anat")
    anat.connect(register, "out", sink, "out")
    func = pe.Workflow(name="func_run1_wf")
    qc = pe.Node(
        niu.Function(function=_qc, input_names=["x"], output_names=["excluded", "exclusion_reason"]), "run_qc"
    )
    qc.inputs.x = 60
    func.add_nodes([qc])
    top.add_nodes([anat, func])
    logger = logging.getLogger("bids_brainage.test_stage_log")
    caplog.set_level(logging.INFO, logger=logger.name)
    args = {"n_procs": 2, "mp_context": "forkserver"} if plugin == "MultiProc" else {}
    args["status_callback"] = StageLog("sub-01", ["/data/sub-01_task-rest_bold.nii.gz"], logger)
    top.run(plugin=plugin, plugin_args=args)
    lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
    assert any(line.startswith("sub-01: anatomical registration to the template done in ") for line in lines)
    assert any(line.startswith("sub-01: BOLD run 1 run QC done in ") for line in lines)
    assert not [line for line in lines if "ds_anat" in line or "ds anat" in line]
    (excluded,) = [r for r in caplog.records if "excluded" in r.getMessage()]
    assert excluded.levelno == logging.WARNING and excluded.getMessage() == (
        "sub-01: BOLD run sub-01_task-rest_bold.nii.gz excluded by the run QC: "
        "60% of volumes scrubbed (FD > 0.5 mm), more than 30%"
    )


def test_stage_log_never_raises(caplog):
    """A node without the expected attributes is logged at DEBUG, never stops the workflow."""
    log = StageLog("sub-02")
    log(SimpleNamespace(name="x"), "end")  # no fullname
    broken = SimpleNamespace(name="run_qc", fullname="sub_02_wf.func_run1_wf.run_qc", result=None)
    log(broken, "start")
    log(broken, "end")  # result.outputs fails
    assert log.describe("sub_02_wf.anat_wf.ds_anat_wf.ds_t1w_tpms") is None
    assert log.describe("sub_02_wf.anat_wf.ds_anat_wf._ds_t1w_tpms0") is None  # MapNode element
    log(SimpleNamespace(name="hmc", fullname="sub_02_wf.func_run1_wf.hmc"), "end")  # never started
    assert not [r for r in caplog.records if "hmc" in r.getMessage() or "head-motion" in r.getMessage()]
    assert log.describe("sub_02_wf.func_run2_wf.hmc") == "BOLD run 2 head-motion correction"
