"""Reportlet workflows: the SVG figures of the subject report, drawn in the work dir and written
to ``OUTPUT_DIR/sub-X/figures`` by the one sink,
:class:`~bids_brainage.interfaces.io.DerivativesDataSink` (``datatype="figures"``).

:func:`init_anat_reports_wf` is nested in the anatomical workflow, :func:`init_func_reports_wf`
in each functional workflow.
"""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_brainage.defaults import DEFAULT_FD_THRESHOLD
from bids_brainage.interfaces.anatomical import AnatReportlets
from bids_brainage.interfaces.functional import FunctionalReportlets
from bids_brainage.interfaces.io import DerivativesDataSink
from bids_brainage.templates import TEMPLATE_SPACE

ANAT_INPUT_FIELDS = ["t1w_preproc", "t1w_mask", "t1w_dseg", "std_t1w"]
FUNC_INPUT_FIELDS = [
    "bold", "bold_mask", "tissue_dseg", "confounds", "boldref_t1w", "t1w_brain", "t1w_dseg", "relmat",
    "networks",
]  # fmt: skip

#: Reportlet name parts: (output of the plotting node, BIDS suffix, extra entities).
ANAT_REPORTLETS = (
    ("out_mask", "mask", {"desc": "brain"}),
    ("out_dseg", "dseg", {}),
    ("out_registration", "T1w", {"space": TEMPLATE_SPACE}),
)
FUNC_REPORTLETS = (
    ("out_carpet", "bold", {"desc": "carpet"}),
    ("out_coreg", "bold", {"desc": "coreg"}),
    ("out_connectivity", "bold", {"desc": "connectivity"}),
)
#: Entities of a BOLD run that name its reportlets.
FUNC_REPORT_ENTITIES = ("sub", "ses", "task", "acq", "run")


def _figure_sinks(
    workflow: pe.Workflow, plots: pe.Node, outputnode: pe.Node, output_dir: str, entities: dict, specs: tuple
) -> None:
    """One ``ds_report_*`` sink per reportlet of ``plots``, merged into ``outputnode.reportlets``."""
    merge = pe.Node(niu.Merge(len(specs)), name="merge_reportlets", run_without_submitting=True)
    for index, (field, suffix, extra) in enumerate(specs, start=1):
        sink = pe.Node(
            DerivativesDataSink(
                base_directory=output_dir, datatype="figures", suffix=suffix, entities={**entities, **extra}
            ),
            name=f"ds_report_{field.removeprefix('out_')}",
            run_without_submitting=True,
        )
        workflow.connect([
            (plots, sink, [(field, "in_file")]),
            (sink, merge, [("out_file", f"in{index}")]),
        ])  # fmt: skip
    workflow.connect([(merge, outputnode, [("out", "reportlets")])])


def init_anat_reports_wf(
    *, output_dir: str, subject: str, session: str | None, resolution: int, name: str = "anat_reports_wf"
) -> pe.Workflow:
    """Brain-mask and segmentation contours on the T1w and the T1w in template space.

    Inputs (``inputnode``): ``t1w_preproc``, ``t1w_mask``, ``t1w_dseg``, ``std_t1w`` (the T1w
    resampled to the template). Outputs (``outputnode``): ``reportlets``, the stored SVGs
    ``sub-X[_ses-Y]_desc-brain_mask.svg``, ``..._dseg.svg``, ``..._space-<template>_T1w.svg``.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=ANAT_INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["reportlets"]), name="outputnode")
    label = f"sub-{subject}" + (f" ses-{session}" if session else "")
    plots = pe.Node(AnatReportlets(resolution=resolution, label=label), name="reportlets")
    workflow.connect([
        (inputnode, plots, [("t1w_preproc", "in_t1w"), ("t1w_mask", "in_mask"), ("t1w_dseg", "in_dseg"),
                            ("std_t1w", "std_t1w")]),
    ])  # fmt: skip
    _figure_sinks(workflow, plots, outputnode, output_dir, {"sub": subject, "ses": session}, ANAT_REPORTLETS)
    return workflow


def init_func_reports_wf(
    *,
    output_dir: str,
    entities: dict[str, str],
    fd_threshold: float = DEFAULT_FD_THRESHOLD,
    name: str = "func_reports_wf",
) -> pe.Workflow:
    """Carpet plot with FD/DVARS and censored volumes, BOLD->T1w coregistration flicker with
    white-matter edges, and the network-ordered connectivity matrix.

    Inputs (``inputnode``): ``bold``, ``bold_mask``, ``tissue_dseg`` (BOLD grid), ``confounds``,
    ``boldref_t1w``, ``t1w_brain``, ``t1w_dseg`` (T1w labels, WM = 2), ``relmat`` (TSV),
    ``networks`` (network of each ROI).
    Outputs (``outputnode``): ``reportlets``, the stored SVGs
    ``<sub/ses/task/acq/run>_desc-{carpet,coreg,connectivity}_bold.svg``.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=FUNC_INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["reportlets"]), name="outputnode")
    plots = pe.Node(FunctionalReportlets(fd_threshold=fd_threshold), name="reportlets")
    workflow.connect([
        (inputnode, plots, [("bold", "bold"), ("bold_mask", "bold_mask"), ("tissue_dseg", "tissue_dseg"),
                            ("confounds", "confounds"), ("boldref_t1w", "boldref_t1w"),
                            ("t1w_brain", "t1w_brain"), ("t1w_dseg", "t1w_dseg"), ("relmat", "connectivity"),
                            ("networks", "networks")]),
    ])  # fmt: skip
    names = {k: v for k, v in entities.items() if k in FUNC_REPORT_ENTITIES}
    _figure_sinks(workflow, plots, outputnode, output_dir, names, FUNC_REPORTLETS)
    return workflow
