"""SA-AVAE training and prediction on CUDA against CPU on the same machine.

    python benchmarks/model_gpu.py --json results.json      # measure (needs a CUDA device)
    python benchmarks/model_gpu.py --from-json results.json  # render into docs/benchmarks.md

The measuring step can run on a lent GPU machine and the rendering step back in the
repository, so the section of docs/benchmarks.md between ``<!-- model-gpu:start -->`` and
``<!-- model-gpu:end -->`` always states the machine the numbers came from.

For each cohort size (1 000 and 10 000 simulated subjects x (200 structural + 4 000
functional) features, default schedule) it times one fit and one prediction on the CPU
(one thread, the package default, and all cores) and on CUDA (bf16 autocast), and checks
that the CUDA model is as accurate as the CPU one on 1 000 held-out subjects.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from doc_section import replace_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- model-gpu:start -->", "<!-- model-gpu:end -->"
SIZES = (1000, 10000)
N_TEST = 1000


def _arrays(table):
    return (
        table.filter(like="smri__").to_numpy(),
        table.filter(like="fmri__").to_numpy(),
        table["sex"].to_numpy(float),
        table["age"].to_numpy(float),
    )


def _time_fit_predict(device: str, n_threads: int, train, test) -> dict[str, float]:
    import torch

    from bids_brainage.model.train import SAAVAERegressor

    x_s, x_f, sex, age = train
    t_s, t_f, t_sex, t_age = test
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    est = SAAVAERegressor(device=device, n_threads=n_threads).fit(x_s, x_f, sex, age)
    if device == "cuda":
        torch.cuda.synchronize()
    fit_s = time.perf_counter() - start
    est.predict(t_s[:10], t_f[:10], t_sex[:10])  # warm-up of the prediction path
    start = time.perf_counter()
    pred = est.predict(t_s, t_f, t_sex)
    predict_s = time.perf_counter() - start
    return {
        "fit_s": fit_s,
        "predict_s": predict_s,
        "epochs": len(est.history_),
        "test_mae": float(np.abs(pred - t_age).mean()),
    }


def measure() -> dict:
    import torch

    from bids_brainage.model.synthetic import simulate_feature_table
    from bids_brainage.model.train import SAAVAERegressor

    if not torch.cuda.is_available():
        raise SystemExit("model_gpu.py: no CUDA device; run it on a machine with a GPU")
    cores = len(os.sched_getaffinity(0))
    test = _arrays(simulate_feature_table(n=N_TEST, d_s=200, d_f=4000, seed=99))
    # Warm-up: CUDA context, cuBLAS handles and one-off imports are not part of a fit.
    warm = _arrays(simulate_feature_table(n=200, d_s=200, d_f=4000, seed=98))
    for device in ("cpu", "cuda"):
        SAAVAERegressor(device=device).fit(*warm)
    rows = []
    for n in SIZES:
        train = _arrays(simulate_feature_table(n=n, d_s=200, d_f=4000, seed=1))
        for device, threads in (("cpu", 1), ("cpu", cores), ("cuda", 1)):
            result = _time_fit_predict(device, threads, train, test)
            rows.append({"n": n, "device": device, "threads": threads, **result})
            print(rows[-1], flush=True)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": (
            f"{torch.cuda.get_device_name(0)}, {cores} CPU cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}"
        ),
        "rows": rows,
    }


def render(results: dict) -> str:
    rows = results["rows"]
    lines = [
        START,
        "## SA-AVAE on GPU vs CPU (`benchmarks/model_gpu.py`)",
        "",
        f"Run {results['date']} on {results['machine']} (a GPU machine lent to the project; "
        "CPU and GPU rows come from the same run on that machine, so their ratios compare like with like).",
        "Simulated features (`bids_brainage.model.synthetic`), 200 structural + 4 000 functional, "
        "default schedule; CPU with 1 thread (the package default) and with all cores; CUDA with bf16 "
        f"autocast. Test MAE on {N_TEST} held-out simulated subjects.",
        "",
        "| subjects | device | threads | fit (s) | epochs | predict 1 000 (s) | test MAE | fit speed-up vs CPU 1 thread |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = {r["n"]: r["fit_s"] for r in rows if r["device"] == "cpu" and r["threads"] == 1}
    for r in rows:
        lines.append(
            f"| {r['n']:,} | {r['device']} | {r['threads']} | {r['fit_s']:.1f} | {r['epochs']} | "
            f"{r['predict_s']:.3f} | {r['test_mae']:.2f} | {base[r['n']] / r['fit_s']:.1f}x |"
        )
    lines += [
        "",
        "What differs on GPU: bf16 autocast and non-deterministic CUDA kernels, so GPU predictions "
        "differ from CPU ones by a fraction of a year (the CPU path is bit-for-bit reproducible; "
        "see docs/robustness.md).",
        END,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--json", type=Path, help="measure and save the results here")
    group.add_argument("--from-json", type=Path, help="render saved results into docs/benchmarks.md")
    args = parser.parse_args(argv)
    if args.json:
        results = measure()
        args.json.write_text(json.dumps(results, indent=2))
    else:
        replace_section(START, END, render(json.loads(args.from_json.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
