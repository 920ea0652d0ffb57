"""The README's Quick start and CI stay in step."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _commands() -> list[str]:
    readme = (PROJECT_ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick, flags=re.S)


def test_quick_start_is_first_and_has_two_commands():
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert readme.split("\n## ", 2)[1].startswith("Quick start")
    commands = _commands()
    assert len(commands) == 2
    assert "bids_brainage demo" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = (PROJECT_ROOT / ".ci" / "run").read_text()
    assert _commands()[1] in ci
