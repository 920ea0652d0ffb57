"""Group-level workflow: one node that trains the brain-age model or applies ``--model``.
Run by :mod:`bids_brainage.cli.group`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def init_group_wf(config: Any, table_file: Path, train: bool) -> Any:
    """nipype workflow with one node: :class:`TrainBrainAge` or :class:`PredictBrainAge`.

    Parameters
    ----------
    config : Config
        Run settings (``n_folds``, ``random_seed``, ``device``, ``model``).
    table_file : Path
        Model table (TSV) written by :func:`bids_brainage.cli.group.build_model_table`.
    train : bool
        Train with K-fold CV (True) or predict with ``config.model`` (False).

    Returns
    -------
    nipype Workflow ``group_wf`` whose node ``train`` or ``predict`` writes its files in the work dir.
    """
    from nipype.pipeline import engine as pe

    from bids_brainage.interfaces.model import PredictBrainAge, TrainBrainAge

    workflow = pe.Workflow(name="group_wf", base_dir=str(config.work_dir))
    if train:
        node = pe.Node(TrainBrainAge(), name="train")
        node.inputs.n_folds = config.n_folds
        node.inputs.random_seed = config.random_seed
        node.inputs.harmonize = config.harmonize
        node.inputs.bias_correction = config.bias_correction
    else:
        node = pe.Node(PredictBrainAge(), name="predict")
        node.inputs.model_dir = str(config.model)
    node.inputs.table = str(table_file)
    node.inputs.device = config.device
    workflow.add_nodes([node])
    return workflow
