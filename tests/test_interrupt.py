"""SIGINT/SIGTERM stop every worker (forkserver pool, nested) and remove unfinished files.

The real pipeline is interrupted in tests/e2e/test_interrupt_and_datalad.py; this checks
both signals in a few seconds on a small program with the same process layout.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bids_brainage.utils.interrupt import descendants, remove_temporaries

PROGRAM = textwrap.dedent(
    """
    import multiprocessing, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path
    from bids_brainage.utils.interrupt import remove_temporaries, stop_all_on_signal

    def work(folder):
        # A worker that keeps writing, as nipype's do: a half-written temporary, then ticks.
        (Path(folder) / ".features.tsv.abc123.tmp.tsv").write_text("half")
        while True:
            (Path(folder) / "tick").write_text(str(time.time()))
            time.sleep(0.05)

    if __name__ == "__main__":
        out = Path(sys.argv[1])
        context = multiprocessing.get_context("forkserver")
        with stop_all_on_signal(lambda: remove_temporaries([out])):
            with ProcessPoolExecutor(2, mp_context=context) as pool:
                for k in range(2):
                    (out / f"w{k}").mkdir()
                    pool.submit(work, str(out / f"w{k}"))
                print("ready", flush=True)
                time.sleep(120)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_workers_and_removes_temporaries(tmp_path, signum):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while len(list(out.glob("w*/tick"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = descendants(proc.pid)
        assert len(workers) >= 3  # the forkserver and its two workers
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 128 + signum
    finally:
        if proc.poll() is None:
            proc.kill()
    err = proc.stderr.read()
    assert f"bids_brainage: interrupted by {signal.Signals(signum).name}" in err and "Traceback" not in err
    assert f"stopped {len(workers)} worker process(es), removed 2 unfinished file(s)" in err
    alive = [
        pid
        for pid in workers
        if Path(f"/proc/{pid}").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()
    ]
    assert alive == []
    ticks = {p: p.read_text() for p in out.glob("w*/tick")}
    time.sleep(0.5)
    assert {p: p.read_text() for p in out.glob("w*/tick")} == ticks
    assert list(out.rglob("*.tmp*")) == []


def test_remove_temporaries_spares_other_jobs_files(tmp_path):
    mine, shared = tmp_path / "sub-01", tmp_path
    (mine / "anat").mkdir(parents=True)
    (mine / "anat" / ".x.nii.gz.a1.tmp.nii.gz").write_text("")
    (shared / ".sub-01.html.b2.tmp.html").write_text("")
    (shared / ".sub-010.html.c3.tmp.html").write_text("")  # another subject's report
    (shared / ".dataset_description.json.d4.tmp.json").write_text("")
    assert remove_temporaries([mine], [(shared, ("sub-01.", "sub-01_"))]) == 2
    assert sorted(p.name for p in shared.glob(".*")) == [
        ".dataset_description.json.d4.tmp.json",
        ".sub-010.html.c3.tmp.html",
    ]
