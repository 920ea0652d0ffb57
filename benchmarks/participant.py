"""Whole participant level (anatomy + one BOLD run) through the console script: time per node.

Runs ``bids_brainage BIDS OUT participant --participant-label L --nprocs 2 --omp-nthreads 1
[--sloppy]`` in a child process, as a user would, on the real ``../shared/data/real/pumi``
(sub-001: 2 mm T1w, a 20-volume 5 mm BOLD run; ``--skip-bids-validation`` because of its
``variant`` files) and on one subject written by ``bids_brainage simulate --n-subjects 1
--resolution 2`` (2 mm T1w, 150 volumes of 3 mm BOLD). Each run gets a fresh work and output
directory in a temporary folder.

What is recorded, per run:

- per node, the wall time nipype records (``runtime.duration`` of each ``result_*.pklz`` in
  the work directory; a MapNode's is the sum of its elements');
- per node, the CPU time (user + system, all threads) and the peak resident memory of the
  processes working in that node's directory: the app's process tree is sampled from
  ``/proc`` every ``--interval`` seconds and each process's CPU time since the last sample
  goes to the directory it is in (nipype runs each node in its own directory); CPU spent
  outside any node directory (start-up, BIDS indexing, building and scheduling the
  workflow, the subject report) is "outside nodes". The app turns nipype's resource monitor
  off, and that monitor keeps the peak CPU percentage, not CPU seconds;
- in total, the wall time, the CPU time of the whole process tree (``getrusage(RUSAGE_CHILDREN)``
  of this process, made a child subreaper so that the orphaned forkserver workers are
  counted: ``/usr/bin/time`` misses them), the peak memory of the largest process
  (``VmHWM``) and the largest sampled sum over the tree.

Results go to ``docs/benchmarks.md`` between ``<!-- participant:start -->`` and
``<!-- participant:end -->``.

Usage::

    python benchmarks/participant.py [--inputs pumi simulated] [--modes sloppy default]
        [--nprocs 2] [--omp-nthreads 1] [--sim-dir DIR] [--json FILE] [--load FILE ...]
        [--no-write]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gzip
import json
import os
import pickle
import platform
import re
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from doc_section import cpu_name, replace_section

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real"
PUMI = REAL / "pumi"
START, END = "<!-- participant:start -->", "<!-- participant:end -->"
AFTER = "<!-- anatomical:end -->"
OUTSIDE = "outside nodes"
GROUPS = ("anatomical", "functional", "derivatives + reports", OUTSIDE)
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE_MIB = os.sysconf("SC_PAGE_SIZE") / 2**20
_PR_SET_CHILD_SUBREAPER = 36


def node_key(folder: Path, work: Path) -> str | None:
    """``anat_wf.n4`` for ``WORK/bids_brainage_wf/sub_001_wf/anat_wf/n4`` (a MapNode element's
    folder gives its MapNode); None outside the subject workflow's folder."""
    try:
        parts = folder.relative_to(work).parts
    except ValueError:
        return None
    if "mapflow" in parts:
        parts = parts[: parts.index("mapflow")]
    subject = next((i for i, p in enumerate(parts) if re.fullmatch(r"sub_.+_wf", p)), None)
    if subject is None or len(parts) <= subject + 1:
        return None
    return ".".join(parts[subject + 1 :])


def node_group(key: str) -> str:
    """anatomical, functional, derivatives + reports (sinks, reportlets) or outside nodes."""
    if key == OUTSIDE:
        return OUTSIDE
    parts = key.split(".")
    if any(p.startswith("ds_") or p.endswith("reports_wf") or "reportlet" in p for p in parts):
        return "derivatives + reports"
    if parts[0] == "anat_wf":
        return "anatomical"
    if re.fullmatch(r"func_run\d+_wf", parts[0]):
        return "functional"
    return "derivatives + reports"


def nipype_walls(work: Path) -> dict[str, dict[str, Any]]:
    """Per node: nipype's wall seconds and start/end (ISO strings) from the result files."""
    nodes: dict[str, dict[str, Any]] = {}
    for result in work.rglob("result_*.pklz"):
        key = node_key(result.parent, work)
        if key is None or "mapflow" in result.parts:
            continue
        with gzip.open(result) as handle:
            runtime = pickle.load(handle).runtime
        runs = runtime if isinstance(runtime, list) else [runtime]
        runs = [r for r in runs if r is not None and getattr(r, "duration", None) is not None]
        if not runs:
            continue
        nodes[key] = {
            "wall": sum(float(r.duration) for r in runs),
            "start": min(r.startTime for r in runs),
            "end": max(r.endTime for r in runs),
        }
    return nodes


def _proc_table() -> dict[int, tuple[int, float, int]]:
    """pid -> (parent pid, CPU seconds of the process itself, resident MiB)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state ppid ... utime(12) stime(13) ... rss(22), 0-based here.
        table[int(entry.name)] = (
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / _TICK,
            int(fields[21]) * _PAGE_MIB,
        )
    return table


def _hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return "?"


class TreeSampler(threading.Thread):
    """Samples this process's descendants: CPU seconds and peak RSS per working directory.

    Each sample gives every process's CPU time since its previous sample (or since it
    started, when first seen) to the node whose folder is its current working directory,
    or to :data:`OUTSIDE`.
    """

    def __init__(self, work: Path, interval: float) -> None:
        super().__init__(daemon=True)
        self.work, self.interval = work, interval
        self.cpu: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.peak_sum = 0.0
        self.peak_process = 0.0
        self.outside: dict[int, list] = {}  # pid -> [command line, CPU s outside any node]
        self._last: dict[int, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)
        self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def sample(self) -> None:
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo, total_rss = list(children.get(os.getpid(), [])), 0.0
        while todo:
            pid = todo.pop()
            todo.extend(children.get(pid, []))
            _, cpu, rss = table[pid]
            try:
                key = node_key(Path(os.readlink(f"/proc/{pid}/cwd")), self.work) or OUTSIDE
            except OSError:
                continue
            self.cpu[key] = self.cpu.get(key, 0.0) + cpu - self._last.get(pid, 0.0)
            if key == OUTSIDE:
                entry = self.outside.setdefault(pid, [_command_line(pid), 0.0])
                entry[1] += cpu - self._last.get(pid, 0.0)
            self._last[pid] = cpu
            self.peak[key] = max(self.peak.get(key, 0.0), rss)
            self.peak_process = max(self.peak_process, _hwm_mib(pid))
            total_rss += rss
        self.peak_sum = max(self.peak_sum, total_rss)


def _reap_orphans(timeout: float = 120.0) -> None:
    """Wait for processes re-parented to this subreaper, so their CPU time reaches RUSAGE_CHILDREN."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.2)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _iso_seconds(stamp: str) -> float:
    """POSIX seconds of nipype's ISO time stamp (UTC, with or without its offset)."""
    when = dt.datetime.fromisoformat(stamp)
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def participant_command(bids: Path, out: Path, work: Path, label: str, mode: str, nprocs: int,
                        threads: int, skip_validation: bool) -> list[str]:  # fmt: skip
    command = ["bids_brainage", str(bids), str(out), "participant", "--participant-label", label,
               "--nprocs", str(nprocs), "--omp-nthreads", str(threads), "-w", str(work)]  # fmt: skip
    if skip_validation:
        command.append("--skip-bids-validation")
    if mode == "sloppy":
        command.append("--sloppy")
    return command


def run_participant(name: str, bids: Path, label: str, mode: str, scratch: Path, args: argparse.Namespace,
                    skip_validation: bool) -> dict[str, Any]:  # fmt: skip
    """One participant-level run of the console script: totals and per-node times."""
    tag = f"{name}_{mode}".replace(" ", "_")
    out, work = scratch / f"out_{tag}", scratch / f"work_{tag}"
    command = participant_command(
        bids, out, work, label, mode, args.nprocs, args.omp_nthreads, skip_validation
    )
    load_start = os.getloadavg()
    sampler = TreeSampler(work, args.interval)
    cpu_before, start_stamp = _children_cpu(), time.time()
    start = time.monotonic()
    with open(scratch / f"log_{tag}.txt", "w") as log:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(args.code_root), os.environ.get("PYTHONPATH")])),
        )
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=scratch, env=env)
        sampler.start()
        returncode = proc.wait()
    wall = time.monotonic() - start
    sampler.stop()
    _reap_orphans()
    cpu = _children_cpu() - cpu_before
    if returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n" + (scratch / f"log_{tag}.txt").read_text()[-3000:]
        )
    walls = nipype_walls(work)
    first = min(_iso_seconds(n["start"]) for n in walls.values())
    last = max(_iso_seconds(n["end"]) for n in walls.values())
    nodes = {
        key: {"wall": walls.get(key, {}).get("wall", 0.0), "cpu": sampler.cpu.get(key, 0.0),
              "peak_mib": sampler.peak.get(key, 0.0)}
        for key in sorted(set(walls) | set(sampler.cpu))
    }  # fmt: skip
    nodes.setdefault(OUTSIDE, {"wall": 0.0, "cpu": 0.0, "peak_mib": 0.0})
    nodes[OUTSIDE]["wall"] = max(0.0, first - start_stamp) + max(0.0, start_stamp + wall - last)
    log_text = (scratch / f"log_{tag}.txt").read_text()
    return {
        "input": name,
        "mode": mode,
        "command": command,
        "wall": wall,
        "cpu": cpu,
        "cpu_sampled": sum(sampler.cpu.values()),
        "before_first_node": first - start_stamp,
        "after_last_node": start_stamp + wall - last,
        "peak_process_mib": sampler.peak_process,
        "peak_tree_mib": sampler.peak_sum,
        "load_start": load_start,
        "load_end": os.getloadavg(),
        "bold_excluded": "excluded by the run QC" in log_text,
        "nodes": nodes,
        "outside_processes": sorted(sampler.outside.values(), key=lambda e: -e[1]),
    }


def code_version(code_root: Path) -> str:
    """``<short commit>`` of the checkout whose code runs, ``+ uncommitted changes in bids_brainage/`` if any."""
    git = ["git", "-C", str(code_root)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run([*git, "status", "--porcelain", "bids_brainage"], capture_output=True, text=True,
                               check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" + uncommitted changes in bids_brainage/" if dirty else "")


def simulate_subject(dest: Path) -> Path:
    """One simulated subject (2 mm T1w, one 150-volume BOLD run) via the console script, or reuse it."""
    if (dest / "sub-001" / "func").is_dir():
        return dest
    if dest.exists() and not any(dest.iterdir()):
        dest.rmdir()
    subprocess.run(["bids_brainage", "simulate", str(dest), "--n-subjects", "1", "--seed", "11",
                    "--resolution", "2", "--nprocs", "1"], check=True)  # fmt: skip
    return dest


def group_totals(nodes: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """[wall, CPU] seconds per group of :func:`node_group`."""
    totals = {group: [0.0, 0.0] for group in GROUPS}
    for key, values in nodes.items():
        total = totals[node_group(key)]
        total[0] += values["wall"]
        total[1] += values["cpu"]
    return totals


def _column(row: dict[str, Any]) -> str:
    return f"{row['input']} {row['mode']}"


def _is_main(command: str) -> bool:
    """The app's own process (not a forkserver, worker or resource tracker of multiprocessing)."""
    return "bin/bids_brainage " in command and "multiprocessing" not in command


def first_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first row of each input and mode, in order."""
    firsts: dict[str, dict[str, Any]] = {}
    for row in rows:
        firsts.setdefault(_column(row), row)
    return list(firsts.values())


def render(results: dict[str, Any], min_seconds: float = 1.0) -> str:
    """Markdown: totals per run, then wall / CPU seconds per node, grouped.

    Repeats of an input and mode each get a line of totals; the node table shows the first.
    """
    rows = first_runs(results["rows"])
    lines = [
        "| run | wall s | CPU s | CPU in nodes s | CPU of the main process outside nodes s"
        " | before first node s | after last node s "
        "| peak MiB (largest process) | peak MiB (tree, sampled) | node with the largest process (MiB, sampled) "
        "| load average 1/5/15 min at start | BOLD run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen: dict[str, int] = {}
    order = [_column(r) for r in rows]
    for row in sorted(results["rows"], key=lambda r: order.index(_column(r))):
        seen[_column(row)] = seen.get(_column(row), 0) + 1
        name = _column(row) + (f" (repeat {seen[_column(row)]})" if seen[_column(row)] > 1 else "")
        main_cpu = sum(cpu for command, cpu in row.get("outside_processes", []) if _is_main(command))
        in_nodes = sum(v["cpu"] for k, v in row["nodes"].items() if k != OUTSIDE)
        load = "/".join(f"{v:.1f}" for v in row["load_start"])
        biggest = max((k for k in row["nodes"] if k != OUTSIDE), key=lambda k: row["nodes"][k]["peak_mib"])
        lines.append(
            f"| {name} | {row['wall']:.0f} | {row['cpu']:.0f} | {in_nodes:.0f} | {main_cpu:.0f}"
            f" | {row['before_first_node']:.0f} | {row['after_last_node']:.0f} | {row['peak_process_mib']:.0f}"
            f" | {row['peak_tree_mib']:.0f} | {biggest} ({row['nodes'][biggest]['peak_mib']:.0f}) | {load} | {'excluded by run QC' if row['bold_excluded'] else 'kept'} |"
        )
    lines += [
        "",
        f"Seconds per node, wall (nipype) / CPU (sampled); nodes under {min_seconds:.0f} s of wall and CPU"
        " in every run are summed in each group's 'other nodes' row. With 2 workers the anatomical"
        " and functional branches overlap, so the walls add up to more than the run's wall time:",
        "",
        "| group | node | " + " | ".join(_column(r) for r in rows) + " |",
        "|---|---|" + "---|" * len(rows),
    ]
    keys = sorted({k for r in rows for k in r["nodes"]})
    for group in GROUPS:
        members = [k for k in keys if node_group(k) == group]
        big = [k for k in members if any(
            max(r["nodes"].get(k, {}).get("wall", 0), r["nodes"].get(k, {}).get("cpu", 0)) >= min_seconds
            for r in rows)]  # fmt: skip
        big.sort(key=lambda k: -max(r["nodes"].get(k, {}).get("cpu", 0) for r in rows))
        for key in big:
            cells = []
            for r in rows:
                v = r["nodes"].get(key)
                cells.append(f"{v['wall']:.1f} / {v['cpu']:.1f}" if v else "")
            lines.append(f"| {group} | {key} | " + " | ".join(cells) + " |")
        rest = [k for k in members if k not in big]
        if rest:
            cells = []
            for r in rows:
                found = [r["nodes"][k] for k in rest if k in r["nodes"]]
                wall, cpu = sum(v["wall"] for v in found), sum(v["cpu"] for v in found)
                cells.append(f"{wall:.1f} / {cpu:.1f}")
            lines.append(f"| {group} | other nodes ({len(rest)}) | " + " | ".join(cells) + " |")
        totals = [group_totals(r["nodes"])[group] for r in rows]
        lines.append(
            f"| **{group}** | **total** | " + " | ".join(f"**{w:.1f} / {c:.1f}**" for w, c in totals) + " |"
        )
    return "\n".join(lines)


def _machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores visible, Python {platform.python_version()}"


def _insert_after_anatomical(text: str) -> None:
    """Our section right after the anatomical one when it is new; else replaced in place."""
    from doc_section import DOC

    doc = DOC.read_text()
    if START not in doc and AFTER in doc:
        at = doc.index(AFTER) + len(AFTER)
        DOC.write_text(doc[:at] + "\n\n" + text + doc[at:])
    else:
        replace_section(START, END, text)


def section(results: dict[str, Any]) -> str:
    rows = first_runs(results["rows"])
    commands = []
    for row in rows:
        shown = ["bids_brainage", "pumi" if row["input"].startswith("pumi") else "sim", "OUT",
                 *row["command"][3:]]  # fmt: skip
        work = shown.index("-w")
        shown[work + 1] = "WORK"
        commands.append(f"- {_column(row)}: `{' '.join(shown)}`")
    text = [
        "## Whole participant level (`benchmarks/participant.py`)",
        "",
        f"Run {results['when']} on: {results['machine']}; load average (1/5/15 min) {results['load_start']}"
        f" at the start and {results['load_end']} at the end; code {results.get('code', 'unknown')}: the 2 cores were shared with other work, so"
        " compare CPU seconds. Each run is the installed console script in a fresh work directory,"
        f" `--nprocs {results['nprocs']} --omp-nthreads {results['threads']}` (ITK threads per node"
        f" {results['threads']}, nipype MultiProc with {results['nprocs']} workers). Inputs: the real `pumi`"
        " sub-001 (2 mm T1w 96 × 128 × 128; one BOLD run of 20 volumes at 5 mm, which the run QC"
        " excludes as shorter than `--min-time` 100 s but which is processed to the end) and one"
        " subject of `bids_brainage simulate sim --n-subjects 1 --seed 11 --resolution 2 --nprocs 1`"
        " (2 mm T1w; one BOLD run of 150 volumes at 3 mm). `sim` is that dataset; `OUT` and `WORK`"
        " are temporary folders.",
        "",
        *commands,
        "",
        "Wall time per node is nipype's (`runtime.duration` in each node's `result_*.pklz`). CPU time"
        " (user + system, all threads) per node is sampled from `/proc` every"
        f" {results['interval']} s: each process's CPU time goes to the node whose folder is its working"
        " directory. 'outside nodes' is the rest: start-up, BIDS indexing, building and scheduling"
        " the workflow, the subject report (its wall time is the time before the first node started"
        " and after the last one ended). The total CPU time is the whole process tree's"
        " (`getrusage(RUSAGE_CHILDREN)` with the benchmark as child subreaper, so the MultiProc"
        " forkserver's workers count; `/usr/bin/time` misses them: it gave 19 s for the sloppy pumi"
        " run). Peak memory: the largest process's `VmHWM`, and the largest sum of resident memory"
        " over the tree at a sample (it counts pages shared by the workers, which start from the same"
        " forkserver, once per process).",
        "",
        render(results),
    ]
    if results.get("note"):
        text += ["", results["note"]]
    return START + "\n" + "\n".join(text) + "\n" + END


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", nargs="+", default=["pumi", "simulated"], choices=["pumi", "simulated"])
    parser.add_argument("--modes", nargs="+", default=["sloppy", "default"], choices=["sloppy", "default"])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--omp-nthreads", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between /proc samples")
    parser.add_argument("--sim-dir", type=Path, help="simulated dataset to write or reuse")
    parser.add_argument("--code-root", type=Path, default=ROOT,
                        help="checkout whose bids_brainage package the console script runs (on PYTHONPATH),"
                        " e.g. a `git worktree` of a commit")  # fmt: skip
    parser.add_argument("--json", type=Path, help="save the results here")
    parser.add_argument(
        "--load", type=Path, nargs="+", help="build the section from these results; run nothing"
    )
    parser.add_argument("--note", help="a line put under the table")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    args.code_root = args.code_root.resolve()
    if shutil.which("bids_brainage") is None:
        parser.error("the bids_brainage console script is not on PATH (activate the project's venv)")
    if args.load:
        sets = [json.loads(f.read_text()) for f in args.load]
        results = dict(sets[0], rows=[r for s in sets for r in s["rows"]])
        results["load_end"] = sets[-1]["load_end"]
    else:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        results = {
            "machine": _machine(),
            "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "load_start": ", ".join(f"{v:.1f}" for v in os.getloadavg()),
            "nprocs": args.nprocs,
            "threads": args.omp_nthreads,
            "interval": args.interval,
            "code": code_version(args.code_root),
            "rows": [],
        }
        with tempfile.TemporaryDirectory(prefix="bids_brainage_participant_bench_") as scratch_dir:
            scratch = Path(scratch_dir)
            inputs = []
            for name in args.inputs:
                if name == "pumi":
                    inputs.append(("pumi sub-001", PUMI, "001", True))
                else:
                    bids = simulate_subject(args.sim_dir or scratch / "sim")
                    inputs.append(("simulated 2 mm", bids, "001", False))
            for mode in args.modes:
                for name, bids, label, skip in inputs:
                    row = run_participant(name, bids, label, mode, scratch, args, skip)
                    results["rows"].append(row)
                    print(f"{_column(row)}: wall {row['wall']:.0f} s, CPU {row['cpu']:.0f} s (sampled "
                          f"{row['cpu_sampled']:.0f} s), peak {row['peak_process_mib']:.0f} MiB", flush=True)  # fmt: skip
                    if args.json:
                        args.json.write_text(json.dumps(dict(results, load_end=""), indent=1))
        results["load_end"] = ", ".join(f"{v:.1f}" for v in os.getloadavg())
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    if args.note:
        results["note"] = args.note
    text = section(results)
    print(text)
    if not args.no_write:
        _insert_after_anatomical(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
