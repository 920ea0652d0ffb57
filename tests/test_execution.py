"""Running nipype workflows: parallel workers log at this run's level, not nipype's INFO."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    from nipype import Node, Workflow
    from nipype.interfaces.utility import Function

    from bids_brainage.cli.execution import run_workflow

    def double(x):
        return 2 * x

    if __name__ == "__main__":  # worker processes import this file again
        work = Path(sys.argv[1])
        wf = Workflow(name="wf", base_dir=str(work))
        for i in range(3):
            wf.add_nodes([Node(Function(input_names=["x"], output_names=["y"], function=double), name=f"n{i}")])
            wf.get_node(f"n{i}").inputs.x = i
        config = SimpleNamespace(verbosity=int(sys.argv[2]), stop_on_first_crash=False, use_plugin=None,
                                 nprocs=2, mem_mb=None)
        run_workflow(wf, config, work / "crash")
    """
)


def _run(tmp_path, verbosity: int) -> str:
    script = tmp_path / "run_wf.py"  # a file: nipype's Function node needs the function's source
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / f"v{verbosity}"), str(verbosity)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_parallel_workers_are_quiet_by_default(tmp_path):
    assert "[Node] Finished" not in _run(tmp_path, 0)


def test_parallel_workers_log_nodes_with_verbose(tmp_path):
    assert "[Node] Finished" in _run(tmp_path, 2)
