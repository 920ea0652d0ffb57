"""Synthetic BIDS cohorts with known ground truth (``bids_brainage simulate``).

* :func:`simulate_dataset` writes T1w + resting-state BOLD images, a valid BIDS dataset and
  the truth derivative ``derivatives/simulation`` (image level: the yardstick of pipeline
  benchmarks);
* :func:`simulate_features` draws feature tables from the same generative model without
  images (thousands of subjects in seconds, for model tests).

See ``docs/simulation.md`` for the generative model and its literature sources.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["simulate_dataset", "simulate_features"]

if TYPE_CHECKING:
    from bids_brainage.simulate.dataset import simulate_dataset
    from bids_brainage.simulate.features import simulate_features


def __getattr__(name: str) -> Any:
    # Lazy imports keep ``import bids_brainage.simulate`` cheap for the CLI.
    if name == "simulate_dataset":
        from bids_brainage.simulate.dataset import simulate_dataset

        return simulate_dataset
    if name == "simulate_features":
        from bids_brainage.simulate.features import simulate_features

        return simulate_features
    raise AttributeError(name)
