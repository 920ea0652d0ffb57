"""Option parsing, the settings object and every argument/dataset validation error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bids_brainage.cli.parser import build_parser
from bids_brainage.cli.run import main
from bids_brainage.config import build_config, parse_mem
from bids_brainage.errors import UsageError

HELP_OPTIONS = [
    "--participant-label",
    "--session-label",
    "--task-id",
    "--bids-filter-file",
    "--work-dir",
    "--nprocs",
    "--omp-nthreads",
    "--mem",
    "--use-plugin",
    "--skip-bids-validation",
    "--stop-on-first-crash",
    "--sloppy",
    "--random-seed",
    "--device",
    "--reports-only",
    "--version",
    "--verbose",
]


def _config(bids: Path, out: Path, *extra: str, level: str = "participant"):
    argv = [str(bids), str(out), level, *extra]
    return build_config(build_parser().parse_args(argv), argv)


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in HELP_OPTIONS:
        assert option in text, option
    assert "demo" in text and "simulate" in text and "model" in text


def test_version_and_module_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "bids_brainage", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("bids_brainage ")


def test_options_parse_into_config(ixi10_copy, tmp_path):
    filt = tmp_path / "filter.json"
    filt.write_text(json.dumps({"t1w": {"acquisition": None}, "bold": {"run": 1}}))
    cfg = _config(
        ixi10_copy,
        tmp_path / "out",
        "--participant-label", "sub-IXI012", "IXI013",
        "--session_label", "01",
        "--task-id", "rest",
        "--bids-filter-file", str(filt),
        "-w", str(tmp_path / "work"),
        "--nprocs", "2",
        "--omp_nthreads", "1",
        "--mem", "8G",
        "--skip-bids-validation",
        "--stop-on-first-crash",
        "--sloppy",
        "--random-seed", "7",
        "--device", "cpu",
        "-vv",
    )  # fmt: skip
    assert cfg.participant_label == ["IXI012", "IXI013"]
    assert cfg.session_label == ["01"]
    assert cfg.bids_filters["bold"] == {"run": 1}
    assert cfg.work_dir == (tmp_path / "work").resolve()
    assert (cfg.nprocs, cfg.omp_nthreads, cfg.mem_mb) == (2, 1, 8192)
    assert cfg.skip_bids_validation and cfg.stop_on_first_crash and cfg.sloppy
    assert (cfg.random_seed, cfg.device, cfg.verbosity) == (7, "cpu", 2)
    assert json.loads(json.dumps(cfg.to_json_dict()))["analysis_level"] == "participant"


@pytest.mark.parametrize(("text", "mb"), [("8G", 8192), ("8000M", 8000), ("8000", 8000), ("1.5GB", 1536)])
def test_parse_mem(text, mb):
    assert parse_mem(text) == mb


@pytest.mark.parametrize("text", ["lots", "-1G", "0", "8X"])
def test_parse_mem_rejects(text):
    with pytest.raises(ValueError, match="invalid memory size"):
        parse_mem(text)


def test_output_inside_bids_refused(ixi10_copy):
    with pytest.raises(UsageError, match="must not be the BIDS directory or inside it"):
        _config(ixi10_copy, ixi10_copy / "derivatives" / "out")
    with pytest.raises(UsageError, match="must not be the BIDS directory or inside it"):
        _config(ixi10_copy, ixi10_copy)


def test_work_dir_inside_bids_refused(ixi10_copy, tmp_path):
    with pytest.raises(UsageError, match="work directory must not be inside the BIDS directory"):
        _config(ixi10_copy, tmp_path / "out", "-w", str(ixi10_copy / "work"))


@pytest.mark.parametrize("label", ["../etc", "a/b", "sub-01/..", "01 02", "é1", ""])
def test_bad_participant_label_refused_before_paths(ixi10_copy, tmp_path, label):
    with pytest.raises(UsageError, match="invalid sub label"):
        _config(ixi10_copy, tmp_path / "out", "--participant-label", label)
    assert not (tmp_path / "out").exists()


def test_not_bids_refused(tmp_path):
    (tmp_path / "notbids").mkdir()
    with pytest.raises(UsageError, match=r"not a BIDS dataset \(no dataset_description.json\)"):
        _config(tmp_path / "notbids", tmp_path / "out")


def test_missing_bids_dir_refused(tmp_path):
    with pytest.raises(UsageError, match="BIDS directory does not exist"):
        _config(tmp_path / "nothing", tmp_path / "out")


def test_omp_threads_cannot_exceed_nprocs(ixi10_copy, tmp_path):
    with pytest.raises(UsageError, match="must not exceed --nprocs"):
        _config(ixi10_copy, tmp_path / "out", "--nprocs", "1", "--omp-nthreads", "2")


def test_cli_prints_one_line_error_and_exit_2(tmp_path, capsys):
    (tmp_path / "notbids").mkdir()
    code = main([str(tmp_path / "notbids"), str(tmp_path / "out"), "participant"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("bids_brainage: error: ") and "notbids" in err[0]


def test_unknown_participant_lists_available(ixi10_copy, tmp_path, capsys):
    code = main(
        [str(ixi10_copy), str(tmp_path / "out"), "participant", "--participant-label", "XYZ",
         "--skip-bids-validation", "-w", str(tmp_path / "work")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "participant label(s) not found: XYZ" in err and "IXI012" in err and "IXI051" in err


def test_invalid_choices_exit_2(ixi10_copy, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main([str(ixi10_copy), str(tmp_path / "o"), "participant", "--device", "tpu"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([str(ixi10_copy), str(tmp_path / "o"), "sideways"])
    assert exc.value.code == 2


def test_bids_validation_errors_summarised(tmp_path, real_data, capsys):
    # pumi has non-BIDS field-map names: the validator reports errors, summarised in one line.
    code = main([str(real_data / "pumi"), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert "BIDS validation found" in err and "NOT_INCLUDED" in err and "--skip-bids-validation" in err


def test_unwritable_output_dir(ixi10_copy, tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        # root ignores permissions: use a path under a regular file instead.
        target = tmp_path / "file"
        target.write_text("x")
        out = target / "out"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "out"
    code = main(
        [str(ixi10_copy), str(out), "participant", "--skip-bids-validation", "-w", str(tmp_path / "w")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "output directory is not writable" in err[-1]


def test_validator_runs_when_the_app_is_called_by_its_full_path(tmp_path, real_data):
    """bids-validator-deno is a dependency of the app and is found next to its interpreter, so
    a run by full path with the environment's bin/ off PATH still validates (it used to log
    "not installed: skipping BIDS validation" and go on)."""
    import os

    from console import run_app

    venv_bin = Path(sys.executable).parent
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and Path(p) != venv_bin)
    env = {**os.environ, "PATH": path}
    proc = run_app(real_data / "pumi", tmp_path / "out", "participant", "-w", tmp_path / "w", env=env)
    assert proc.returncode == 2
    assert "BIDS validation found" in proc.stderr and "skipping" not in proc.stderr


def test_participant_run_of_a_subject_in_use_refused(real_data, tmp_path, capsys):
    """Participant runs of one subject sharing -w clobber each other's nodes: refused."""
    from bids_brainage.utils.locks import work_dir_lock

    work = tmp_path / "work"
    argv = [
        str(real_data / "pumi"),
        str(tmp_path / "out"),
        "participant",
        "-w",
        str(work),
        "--skip-bids-validation",
    ]
    with work_dir_lock(work, "sub-001", "participant run of sub-001"):
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{work}: work directory is in use by another participant run of sub-001 (pid " in err
    assert "Traceback" not in err and not (tmp_path / "out" / "sub-001").exists()


def test_work_dir_without_flock_runs_with_a_warning(tmp_path, monkeypatch, app_log):
    """A file system without flock (ENOLCK) must not stop the run: it warns instead."""
    import errno
    import fcntl

    from bids_brainage.utils import locks

    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    ran = []
    with locks.work_dir_lock(tmp_path, "group", "group run"):
        ran.append(True)
    assert ran == [True]
    assert (
        "cannot lock the work directory (No locks available): a concurrent group run would not be detected"
        in app_log.text
    )
