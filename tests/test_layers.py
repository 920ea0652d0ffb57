"""The layers of the package (docs/architecture.md): computations without nipype, runners in
``cli/``, builders in ``workflows/``, and no import cycle between them."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import bids_brainage
import bids_brainage.compute

PACKAGE = Path(bids_brainage.__file__).parent


def _modules(package) -> list[str]:
    return sorted(f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__))


def _imports(path: Path) -> set[str]:
    """Every ``bids_brainage`` module a file imports, at any depth (lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bids_brainage"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bids_brainage")}
    return found


def test_the_computation_layer_imports_no_nipype():
    """Every module of ``bids_brainage.compute`` imports without nipype (a fresh interpreter)."""
    modules = _modules(bids_brainage.compute)
    assert len(modules) >= 8, modules
    code = "\n".join(
        [
            "import sys",
            *(f"import {m}" for m in modules),
            "print(sorted(m for m in sys.modules if 'nipype' in m))",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_compute_does_not_import_the_nipype_layers():
    """Not even lazily: ``compute`` never imports ``interfaces``, ``workflows`` or ``cli``."""
    for path in sorted((PACKAGE / "compute").glob("*.py")):
        upward = {
            m
            for m in _imports(path)
            if m.startswith(("bids_brainage.interfaces", "bids_brainage.workflows", "bids_brainage.cli"))
        }
        assert not upward, f"{path.name} imports {sorted(upward)}"


def test_workflows_do_not_import_the_runners():
    """``workflows/`` holds the ``init_*_wf`` builders; the runners (``cli/``) import them, never
    the other way round."""
    for path in sorted((PACKAGE / "workflows").glob("*.py")):
        runners = {m for m in _imports(path) if m.startswith("bids_brainage.cli")}
        assert not runners, f"workflows/{path.name} imports {sorted(runners)}"


def test_no_import_cycle_between_the_runner_modules():
    """``cli/run.py`` dispatches to the runners; no runner module imports it back."""
    for name in ("participant.py", "group.py", "execution.py", "logs.py"):
        back = {m for m in _imports(PACKAGE / "cli" / name) if m.startswith("bids_brainage.cli.run")}
        assert not back, f"cli/{name} imports {sorted(back)}"
