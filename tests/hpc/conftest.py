"""SLURM tests: register the ``slurm`` marker (select with ``-m slurm``, leave out with ``-m 'not slurm'``)."""

from __future__ import annotations

from pathlib import Path

# Same name as in tests/conftest.py: modules doing ``from conftest import PROJECT_ROOT`` may get this one.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: runs jobs on a real SLURM cluster (.ci/setup_slurm.sh)")
