"""Workflow of one subject/session: the anatomical workflow, then one functional workflow per
BOLD run. Run by :mod:`bids_brainage.cli.participant`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bids_brainage import bids


def init_single_subject_wf(config: Any, data: bids.SessionData, bold_files: list[str]) -> Any:
    """Workflow for one subject/session: anatomical workflow, then one functional workflow per run.

    Parameters
    ----------
    config : Config
        Run settings.
    data : SessionData
        The subject's T1w (required).
    bold_files : list of str
        BOLD runs whose metadata passed the checks (may be empty: structural only; ignored
        with ``config.anat_only``, fMRIPrep's ``--anat-only``).

    Returns
    -------
    nipype Workflow named ``sub_<label>[_ses_<label>]_wf``; its base dir is the work dir.
    """
    from nipype.pipeline import engine as pe

    from bids_brainage.workflows.anatomical import init_anat_wf
    from bids_brainage.workflows.functional import init_func_wf

    name = f"sub_{data.subject}" + (f"_ses_{data.session}" if data.session else "") + "_wf"
    workflow = pe.Workflow(name=name, base_dir=str(config.work_dir / "bids_brainage_wf"))
    anat_atlas = None
    if config.anat_atlas:
        anat_atlas = {"image": str(config.anat_atlas), "labels": str(_atlas_labels(config.anat_atlas))}
    anat_wf = init_anat_wf(
        output_dir=str(config.output_dir),
        subject=data.subject,
        session=data.session,
        bids_root=str(config.bids_dir),
        sloppy=config.sloppy,
        omp_nthreads=config.omp_nthreads,
        atlas=anat_atlas,
        thickness=config.thickness,
        random_seed=config.random_seed,
    )
    anat_wf.inputs.inputnode.t1w = data.t1w
    workflow.add_nodes([anat_wf])
    fmriprep_dir = config.derivatives.get("fmriprep")
    for index, bold_file in enumerate([] if config.anat_only else bold_files):
        func_wf = init_func_wf(
            bold_file=bold_file,
            output_dir=str(config.output_dir),
            subject=data.subject,
            session=data.session,
            bids_root=str(config.bids_dir),
            task=config.task_id,
            sloppy=config.sloppy,
            omp_nthreads=config.omp_nthreads,
            atlas=config.atlas if config.anat_atlas is None else str(config.anat_atlas),
            connectivity=config.connectivity,
            fd_threshold=config.fd_threshold,
            max_scrubbed_fraction=config.max_scrubbed_fraction,
            min_time=config.min_time,
            min_volumes=config.min_volumes,
            dummy_scans=config.dummy_scans,
            nuisance_regressors=config.nuisance_regressors,
            band_pass=config.band_pass,
            sphere_radius=config.sphere_radius,
            fmriprep_dir=str(fmriprep_dir) if fmriprep_dir else None,
            random_seed=config.random_seed,
            name=f"func_run{index + 1}_wf",
        )
        workflow.connect(
            [
                (
                    anat_wf,
                    func_wf,
                    [
                        ("outputnode.t1w_preproc", "inputnode.t1w_preproc"),
                        ("outputnode.t1w_brain", "inputnode.t1w_brain"),
                        ("outputnode.t1w_mask", "inputnode.t1w_mask"),
                        ("outputnode.t1w_dseg", "inputnode.t1w_dseg"),
                        ("outputnode.t1w_tpms", "inputnode.t1w_tpms"),
                        ("outputnode.std2anat_xfm", "inputnode.std2anat_xfm"),
                    ],
                )
            ]
        )
    return workflow


def _atlas_labels(image: Path) -> Path:
    """The TSV of labels next to a user atlas (``atlas.nii.gz`` → ``atlas.tsv``)."""
    name = image.name.removesuffix(".gz").removesuffix(".nii")
    return image.with_name(name + ".tsv")
