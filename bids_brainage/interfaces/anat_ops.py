"""Old name of :mod:`bids_brainage.compute.anat_ops`, kept only while ``benchmarks/`` imports
it; new code imports ``bids_brainage.compute.anat_ops``."""

import sys

from bids_brainage.compute import anat_ops as _anat_ops

sys.modules[__name__] = _anat_ops
