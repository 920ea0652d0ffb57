"""Run the real anatomical workflow (no mocks) on one T1w and collect its outputs and timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline.engine import Workflow

from bids_brainage import derivatives
from bids_brainage.workflows.anatomical import init_anat_wf

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REAL_DATA = PROJECT_ROOT.parent / "shared" / "data" / "real"


@dataclass
class AnatRun:
    """Outputs of one run of ``init_anat_wf`` (outputnode fields) and its wall times."""

    out_dir: Path
    work_dir: Path
    subject: str
    outputs: dict = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)


def run_anat(
    bids_root: Path, subject: str, out_dir: Path, work_dir: Path, *, session: str | None = None,
    sloppy: bool = True, omp_nthreads: int = 2, **kwargs,
) -> AnatRun:  # fmt: skip
    """Build and run the workflow for ``sub-<subject>`` of ``bids_root`` (sloppy by default)."""
    derivatives.init_derivatives(out_dir, bids_root)
    folder = bids_root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    t1w = sorted(folder.glob("*_T1w.nii*"))[0]
    run = AnatRun(out_dir=out_dir, work_dir=work_dir, subject=subject)
    run.outputs = rerun(
        run, bids_root, t1w, session=session, sloppy=sloppy, omp_nthreads=omp_nthreads, **kwargs
    )
    return run


def rerun(run: AnatRun, bids_root: Path, t1w: Path, **kwargs) -> dict:
    """Run (again) with the same work dir; appends the wall time to ``run.seconds``."""
    wf = init_anat_wf(output_dir=str(run.out_dir), subject=run.subject, bids_root=str(bids_root), **kwargs)
    wf.base_dir = str(run.work_dir)
    wf.config["execution"].update(
        {"hash_method": "content", "crashdump_dir": str(run.work_dir / "crash"), "crashfile_format": "txt"}
    )
    wf.inputs.inputnode.t1w = str(t1w)
    start = time.monotonic()
    graph = wf.run(plugin="Linear")
    run.seconds.append(time.monotonic() - start)
    # nipype drops IdentityInterface nodes from the execution graph: read the outputnode's
    # fields from the results of the nodes that feed it, through sub-workflows (ds_anat_wf,
    # the reportlets) and their own identity nodes.
    executed = {n.fullname.split(".", 1)[-1]: n for n in graph.nodes()}
    outputnode = wf.get_node("outputnode")
    fields = [dst for _, _, data in wf._graph.in_edges(outputnode, data=True) for _, dst in data["connect"]]
    return {name: _value(wf, outputnode, name, executed, []) for name in fields}


def _value(wf: Any, node: Any, field: str, executed: dict, path: list[str]) -> Any:
    """The value ``node.field`` had in the run (``node`` in workflow ``wf``, nested at ``path``)."""
    if isinstance(node, Workflow):  # a sub-workflow's output: "innernode.field"
        inner, inner_field = field.split(".", 1)
        return _value(node, node.get_node(inner), inner_field, executed, [*path, node.name])
    if isinstance(node.interface, IdentityInterface):
        for src, _, data in wf._graph.in_edges(node, data=True):
            for src_field, dst_field in data["connect"]:
                if dst_field == field:
                    return _value(wf, src, src_field, executed, path)
        raise KeyError(f"nothing feeds {'.'.join([*path, node.name])}.{field}")
    return getattr(executed[".".join([*path, node.name])].result.outputs, field)
