"""The image built from this tree (tests/container/conftest.py), run as users run it: as the
image's non-root user, with the BIDS folder mounted read-only, a read-only root file system
and no network at all (``--network none``), so a run that tried to fetch anything would fail.

--version; the participant level on one real subject (pumi); on the end-to-end simulated
cohort, the participant level of one subject and the group level (training); the outputs pass
bids-validator-deno (run here, on the host).
Run times go to test-artifacts/container/timings.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from container_helpers import Image, record, run_image, writable_dir
from pipeline_cohort import HELD_OUT, TRAIN

from bids_brainage import __version__
from bids_brainage.bids import run_validator

pytestmark = pytest.mark.slow

# What every participant-level run here uses: quick registrations, one subject at a time.
PARTICIPANT = ["-w", "/work", "--sloppy", "--nprocs", "2", "--omp-nthreads", "1", "--random-seed", "1"]
COHORT = len(TRAIN) + 1  # the e2e cohort: five subjects made on the host, one in the image


def _assert_ok(run, what: str) -> None:
    assert run.returncode == 0, (
        f"{what} failed in the container (exit {run.returncode}):\n{run.output[-4000:]}"
    )


def _assert_written_by_the_image_user(out) -> None:
    owners = {path.stat().st_uid for path in out.rglob("*")}
    assert owners == {1000}, f"outputs owned by UIDs {owners}, not only the image's user 1000"


def test_image_is_lean_and_has_cpu_torch(image: Image):
    record("build", seconds=image.build_seconds, size_mb=round(image.size_bytes / 1e6), torch=image.torch)
    assert image.torch.split("+")[0] == "2.13.0"
    assert image.torch.endswith("+cpu"), "the default image has the CPU build of torch"
    assert image.size_bytes < 2.5e9, f"image is {image.size_bytes / 1e9:.2f} GB"


def test_version_as_non_root_without_network(image: Image):
    run = run_image(image, ["--version"])
    _assert_ok(run, "--version")
    assert run.output.strip() == f"bids_brainage {__version__}"
    probe = (
        "import os, socket, urllib.request\n"
        "print(os.getuid(), os.getgid(), os.environ['HOME'])\n"
        "print(sorted(name for _, name in socket.if_nameindex()))\n"
        "try:\n"
        "    urllib.request.urlopen('https://pypi.org/simple/', timeout=5)\n"
        "    print('network: reachable')\n"
        "except OSError as err:\n"
        "    print('network: none')\n"
        "try:\n"
        "    open('/opt/venv/probe', 'w')\n"
        "    print('image: writable')\n"
        "except OSError:\n"
        "    print('image: read-only')\n"
    )
    run = run_image(image, ["-c", probe], entrypoint="python")
    _assert_ok(run, "the probe")
    ids, interfaces, network, root_fs = run.output.strip().splitlines()
    assert ids == "1000 1000 /home/brainage"
    assert interfaces == "['lo']" and network == "network: none"
    assert root_fs == "image: read-only"


def test_simulate_features_in_the_image(image: Image, tmp_path):
    sim = writable_dir(tmp_path / "sim")
    run = run_image(image, ["simulate", "/sim/out", "--n-subjects", "50", "--features-only"], {sim: "/sim"})
    _assert_ok(run, "simulate --features-only")
    table = pd.read_csv(sim / "out" / "features.tsv", sep="\t")
    assert len(table) == 50 and table.filter(like="smri__").shape[1] > 0


def test_participant_on_a_real_subject(image: Image, real_data, tmp_path):
    """pumi's sub-001 (T1w and resting-state BOLD), mounted read-only. pumi's field-map names
    are not BIDS (see tests/test_cli.py), hence --skip-bids-validation for the input."""
    out, work = writable_dir(tmp_path / "out"), writable_dir(tmp_path / "work")
    mounts = {real_data / "pumi": "/data:ro", out: "/out", work: "/work"}
    args = ["/data", "/out", "participant", "--participant-label", "001", "--skip-bids-validation"]
    run = run_image(image, [*args, *PARTICIPANT], mounts)
    record("participant_pumi", seconds=round(run.seconds, 1))
    _assert_ok(run, "participant level on pumi")
    subject = out / "sub-001"
    assert (subject / "anat" / "sub-001_desc-structural_features.tsv").exists()
    assert list((subject / "func").glob("*_desc-functional_features.tsv"))
    assert (out / "sub-001.html").exists()
    status = json.loads((out / "logs" / "participants" / "sub-001.json").read_text())
    assert status["ok"] and status["errors"] == []
    generated_by = json.loads((out / "dataset_description.json").read_text())["GeneratedBy"][0]
    assert generated_by["Version"] == __version__
    assert generated_by["Container"]["Type"] == "docker"
    _assert_written_by_the_image_user(out)
    n_errors, _, summary = run_validator(out)
    assert n_errors == 0, summary


#: What the group level writes: left out when the host's participant outputs are copied.
GROUP_OUTPUTS = ("brainage.tsv", "brainage.json", "group", "model", "group_report.html")


def _copy_participant_outputs(src: Path, dst: Path) -> None:
    """The participant-level outputs of ``src`` (no group results, no run logs) into ``dst``,
    writable by the image's user."""
    for item in src.iterdir():
        if item.name in GROUP_OUTPUTS or item.name == "logs":
            continue
        (shutil.copytree if item.is_dir() else shutil.copy2)(item, dst / item.name)
    shutil.copytree(src / "logs" / "participants", dst / "logs" / "participants")
    for path in [dst, *dst.rglob("*")]:
        if os.geteuid() == 0:
            os.chown(path, 1000, 1000)
        else:
            path.chmod(0o777 if path.is_dir() else 0o666)


@pytest.fixture(scope="module")
def cohort(image: Image, pipeline_run, tmp_path_factory):
    """The end-to-end cohort (tests/conftest.py): its five training subjects' participant
    outputs, made on the host by the same code, plus its held-out subject run here in the
    image with the input validated inside → the group level (training) in the image. The
    participant level of the whole cohort in the image cost ~5 min of CI and repeated what
    the pumi test and the host's run already show."""
    root = tmp_path_factory.mktemp("container_cohort")
    out, work = writable_dir(root / "out"), writable_dir(root / "work")
    _copy_participant_outputs(pipeline_run.out_dir, out)
    mounts = {pipeline_run.bids_dir: "/data:ro", out: "/out", work: "/work"}
    runs = {}
    runs["participant"] = run_image(
        image, ["/data", "/out", "participant", "--participant-label", HELD_OUT, "--min-time", "40",
                *PARTICIPANT], mounts,
    )  # fmt: skip
    _assert_ok(runs["participant"], "participant level on the held-out simulated subject")
    runs["group"] = run_image(image, ["/data", "/out", "group", "--n-folds", "3", *PARTICIPANT], mounts)
    _assert_ok(runs["group"], "group level on the simulated cohort")
    record(f"cohort_{COHORT}_subjects", **{name: round(run.seconds, 1) for name, run in runs.items()})
    return pipeline_run.bids_dir, out


def test_group_on_a_simulated_cohort(cohort):
    bids_dir, out = cohort
    labels = sorted(path.name for path in bids_dir.glob("sub-*") if path.is_dir())
    assert len(labels) == COHORT
    brainage = pd.read_csv(out / "brainage.tsv", sep="\t")
    assert sorted(brainage["participant_id"]) == labels
    assert brainage["predicted_age"].notna().all() and set(brainage["split"]) == {"oof"}
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["training_summary"]["n_participants"] == COHORT
    assert (out / "group_report.html").exists()
    # The input was validated inside, by the image's own bids-validator-deno (no download).
    (log,) = (out / "logs").glob("participant_*.log")
    assert re.search(r"BIDS validator: \d+ warning\(s\)", log.read_text())
    _assert_written_by_the_image_user(out)


def test_cohort_outputs_pass_the_bids_validator(cohort):
    _, out = cohort
    n_errors, _, summary = run_validator(out)
    assert n_errors == 0, summary
