"""Head-motion correction: bids_brainage.compute.hmc vs ants.motion_correction, same data, same run.

Simulates 150 volumes of 67x79x64 (2.5 mm) from the MNI template with known rigid motion
(tests/functional/func_synth.py), runs both methods, and reports wall time, the speed ratio
and the RMS error of the recovered parameters (relative to the first volume).

    python benchmarks/motion_correction.py [--n-volumes 150] [--skip-ants] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "functional"))

from bids_brainage.compute import hmc  # noqa: E402


def _errors(mats: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    true_mats = np.array([hmc.params_to_matrix(p) for p in truth])
    err = hmc.relative_params(mats) - hmc.relative_params(true_mats)
    return {
        "rms_mm": float(np.sqrt((err[:, :3] ** 2).mean())),
        "rms_deg": float(np.rad2deg(np.sqrt((err[:, 3:] ** 2).mean()))),
        "max_mm": float(np.abs(err[:, :3]).max()),
        "max_deg": float(np.rad2deg(np.abs(err[:, 3:]).max())),
    }


def run_ours(data, affine):
    from scipy import ndimage

    start, cpu = time.perf_counter(), time.process_time()
    result = hmc.realign(data, affine)
    near = ndimage.binary_dilation(result.mask, iterations=2)
    hmc.resample(data, affine, result.matrices, within=near)
    return time.perf_counter() - start, time.process_time() - cpu, result.matrices


def _itk_to_ras(path: str) -> np.ndarray:
    import ants

    tx = ants.read_transform(path)
    p, c = np.asarray(tx.parameters, float), np.asarray(tx.fixed_parameters, float)
    a = p[:9].reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = a
    lps[:3, 3] = p[9:12] + c - a @ c
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ lps @ flip


def run_ants(data, affine, workdir: Path):
    import ants
    import nibabel as nib

    path = workdir / "bold.nii.gz"
    nib.Nifti1Image(data, affine).to_filename(path)
    img = ants.image_read(str(path))
    start, cpu = time.perf_counter(), time.process_time()
    out = ants.motion_correction(img, outprefix=str(workdir / "antsmc_"))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    mats = np.array([_itk_to_ras(files[0]) for files in out["motion_parameters"]])
    return seconds, cpu, mats


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-volumes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-ants", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "bids_brainage_hmc_benchmark.json"
    )
    args = parser.parse_args(argv)
    from func_synth import make_bold

    data, affine, truth = make_bold(n_vols=args.n_volumes, seed=args.seed)
    res = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "load_average": os.getloadavg()[0],
        "shape": [*data.shape],
        "voxel_mm": 2.5,
        "true_max_mm": float(np.abs(truth[:, :3]).max()),
        "true_max_deg": float(np.rad2deg(np.abs(truth[:, 3:]).max())),
    }
    # CPU time (all threads) is reported too: on a shared machine it is the fairer comparison.
    seconds, cpu, mats = run_ours(data, affine)
    res["ours"] = {"seconds": seconds, "cpu_seconds": cpu, **_errors(mats, truth)}
    print("bids_brainage.compute.hmc", res["ours"], flush=True)
    if not args.skip_ants:
        with tempfile.TemporaryDirectory() as tmp:
            seconds, cpu, mats = run_ants(data, affine, Path(tmp))
        res["ants"] = {"seconds": seconds, "cpu_seconds": cpu, **_errors(mats, truth)}
        res["speedup"] = res["ants"]["seconds"] / res["ours"]["seconds"]
        res["speedup_cpu"] = res["ants"]["cpu_seconds"] / res["ours"]["cpu_seconds"]
        print("ants.motion_correction", res["ants"], "speed-up", round(res["speedup"], 1), flush=True)
    res["load_average_end"] = os.getloadavg()[0]
    args.out.write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
