"""SA-AVAE brain-age model: features, network, training, calibration, bundles (no nipype).

Public API used by the group workflow and the ``bids_brainage model`` command:

- `load_table` / `canonicalise`: feature tables in the canonical layout.
- `fit_cross_validated(table, ...) -> (oof, ensemble, metrics)`.
- `save_bundle(ensemble, directory)`, `load_bundle(directory)`.
- `predict_table(ensemble, table) -> DataFrame`.
- `SAAVAERegressor`: the estimator for one training set.
"""

from bids_brainage.model.bundle import load_bundle, save_bundle
from bids_brainage.model.cv import BrainAgeEnsemble, fit_cross_validated, make_folds, predict_table
from bids_brainage.model.features import canonicalise, load_table
from bids_brainage.model.losses import LossWeights
from bids_brainage.model.metrics import metrics_table, regression_metrics
from bids_brainage.model.train import SAAVAERegressor, TrainingError, TrainSettings

__all__ = [
    "BrainAgeEnsemble",
    "LossWeights",
    "SAAVAERegressor",
    "TrainSettings",
    "TrainingError",
    "canonicalise",
    "fit_cross_validated",
    "load_bundle",
    "load_table",
    "make_folds",
    "metrics_table",
    "predict_table",
    "regression_metrics",
    "save_bundle",
]
