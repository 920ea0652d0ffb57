"""Old name of :mod:`bids_brainage.compute.hmc`, kept only while ``benchmarks/`` imports it;
new code imports ``bids_brainage.compute.hmc``."""

import sys

from bids_brainage.compute import hmc as _hmc

sys.modules[__name__] = _hmc
