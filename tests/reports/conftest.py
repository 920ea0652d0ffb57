"""Fixtures for the report tests: fixture outputs built once per session, artifacts folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def fixture_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Settings of a fixture run whose OUTPUT_DIR holds realistic participant and group outputs."""
    from report_fixtures import make_outputs

    return make_outputs(tmp_path_factory.mktemp("reports"))


@pytest.fixture(scope="session")
def rendered(fixture_outputs: dict[str, Any]) -> dict[str, Any]:
    """The fixture outputs after ``rebuild_reports`` (every subject report + group report)."""
    from bids_brainage.reports import rebuild_reports

    assert rebuild_reports(fixture_outputs) == 0
    return fixture_outputs


@pytest.fixture
def fresh_outputs(tmp_path: Path, fixture_outputs: dict[str, Any]) -> dict[str, Any]:
    """A private, writable copy of the fixture outputs (for tests that delete files)."""
    src = Path(fixture_outputs["output_dir"]).parent
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    settings = dict(fixture_outputs)
    settings.update(bids_dir=str(dst / "bids"), output_dir=str(dst / "out"))
    return settings


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/`` at the project root (git-ignored): screenshots of the reports."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
