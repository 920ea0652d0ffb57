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
    "--boilerplate-only",
    "--config-file",
    "--anat-only",
    "--fd-spike-threshold",
    "--fd-threshold",
    "--min-time",
    "--min-volumes",
    "--nuisance-regressors",
    "--global-signal",
    "--lower-bpf",
    "--upper-bpf",
    "--disable-bandpass-filter",
    "--sphere-radius",
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
    captured = capsys.readouterr().err.strip()
    err = captured.splitlines()[-1]
    assert code == 2
    assert "BIDS validation found" in err and "NOT_INCLUDED" in err and "--skip-bids-validation" in err
    # Every error and warning is kept under logs/, and the log says where.
    (report,) = (tmp_path / "out" / "logs").glob("bids_validator_*.txt")
    assert f"all listed in {report}" in err and f"warning(s), listed in {report}" in captured
    text = report.read_text()
    assert "[ERROR] NOT_INCLUDED" in text and "[WARNING] README_FILE_MISSING" in text
    assert "    /dataset_description.json" in text


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


def _bids(root: Path) -> Path:
    """The smallest folder build_config accepts as a BIDS dataset (enough for --boilerplate-only)."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "x", "BIDSVersion": "1.9.0"}))
    return root


def test_processing_options_and_their_aliases(tmp_path):
    bids = _bids(tmp_path / "bids")
    cfg = _config(
        bids, tmp_path / "out", "--fd-spike-threshold", "0.3", "--min-time", "60", "--nuisance-regressors", "36p",
        "--lower-bpf", "0.02", "--upper-bpf", "0", "--sphere-radius", "6", "--anat-only",
    )  # fmt: skip
    assert (cfg.fd_threshold, cfg.min_time, cfg.min_volumes, cfg.nuisance_regressors) == (
        0.3,
        60.0,
        None,
        "36P",
    )
    assert cfg.band_pass == (0.02, 0.0) and cfg.sphere_radius == 6.0 and cfg.anat_only
    aliases = _config(
        bids, tmp_path / "out", "--fd-threshold", "0.2", "--global-signal", "--min-volumes", "20"
    )
    assert (aliases.fd_threshold, aliases.nuisance_regressors, aliases.min_volumes) == (0.2, "27P", 20)
    assert _config(bids, tmp_path / "out", "--disable-bandpass-filter").band_pass is None
    assert (
        _config(bids, tmp_path / "out", "--global-signal", "--nuisance-regressors", "36P").nuisance_regressors
        == "36P"
    )
    with pytest.raises(UsageError, match="--global-signal contradicts --nuisance-regressors 24P"):
        _config(bids, tmp_path / "out", "--global-signal", "--nuisance-regressors", "24P")
    with pytest.raises(UsageError, match=r"--lower-bpf \(0.1 Hz\) must be below --upper-bpf \(0.05 Hz\)"):
        _config(bids, tmp_path / "out", "--lower-bpf", "0.1", "--upper-bpf", "0.05")
    for bad in (["--nuisance-regressors", "acompcor"], ["--sphere-radius", "0"], ["--min-time", "-1"]):
        with pytest.raises(SystemExit):
            _config(bids, tmp_path / "out", *bad)


def test_boilerplate_only_writes_the_methods_and_exits(tmp_path):
    """fMRIPrep's --boilerplate-only through the console script: CITATION.md/.bib from the
    settings, nothing processed, no work dir; the deprecated --min-volumes warns."""
    from console import run_app

    bids, out, work = _bids(tmp_path / "bids"), tmp_path / "out", tmp_path / "work"
    proc = run_app(
        bids, out, "participant", "--boilerplate-only", "-w", work, "--nuisance-regressors", "36P",
        "--fd-threshold", "0.3", "--min-volumes", "20", "--disable-bandpass-filter", "--sphere-radius", "6",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--min-volumes is deprecated: use --min-time" in proc.stderr
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "## Functional data" in methods and "The 36P confound set" in methods and "FD > 0.3 mm" in methods
    assert "fewer than 20 remaining volumes" in methods and "not temporally filtered" in methods
    assert "spheres of radius 6 mm" in methods
    assert "@article{satterthwaite2013," in (out / "logs" / "CITATION.bib").read_text()
    assert not work.exists() and not list(out.glob("sub-*"))

    anat = run_app(bids, tmp_path / "anat", "participant", "--boilerplate-only", "--anat-only", "-w", work)
    assert anat.returncode == 0, anat.stderr
    methods = (tmp_path / "anat" / "logs" / "CITATION.md").read_text()
    assert "## Anatomical data" in methods and "## Functional data" not in methods
    assert "Only the structural features were used (`--anat-only`)." in methods


def test_config_file_sets_options_and_the_command_line_overrides(tmp_path):
    from console import run_app

    bids, out = _bids(tmp_path / "bids"), tmp_path / "out"
    config_file = tmp_path / "settings.toml"
    config_file.write_text(
        'fd-spike-threshold = 0.3\nlower_bpf = 0.02\nparticipant-label = ["01", "sub-02"]\n'
        "min_time = 90\n\n[workflow]\nsloppy = true\nverbose = 1\n"
    )
    proc = run_app(
        bids, out, "participant", "--config-file", config_file, "--fd-spike-threshold", "0.4",
        "--global-signal", "--boilerplate-only", "-w", tmp_path / "work",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (saved,) = (out / "logs").glob("config_participant_*.json")
    settings = json.loads(saved.read_text())
    assert settings["fd_threshold"] == 0.4  # the command line wins
    assert (settings["nuisance_regressors"], settings["min_time"], settings["sloppy"]) == ("27P", 90.0, True)
    assert settings["participant_label"] == ["01", "02"] and settings["verbosity"] == 1
    assert settings["config_file"] == str(config_file.resolve())
    assert settings["lower_bpf"] == 0.02
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "FD > 0.4 mm" in methods and "The 27P confound set" in methods and "(0.02-0.1 Hz)" in methods


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fd-treshold = 0.3", "unknown option 'fd-treshold'"),
        ("min-time = -5", "invalid value for 'min-time': must be >= 0, got -5"),
        ('nuisance-regressors = "12P"', "invalid value for 'nuisance-regressors': '12P' is not one of"),
        ('sloppy = "yes"', "invalid value for 'sloppy': expected true or false"),
        ("output_dir = '/x'", "unknown option 'output_dir'"),
        ("fd-spike-threshold = ", "not a valid TOML file"),
    ],
)
def test_bad_config_file_is_one_line_naming_the_file(tmp_path, text, message):
    from console import run_app

    config_file = tmp_path / "bad.toml"
    config_file.write_text(text + "\n")
    proc = run_app(_bids(tmp_path / "bids"), tmp_path / "out", "participant", "--config-file", config_file)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"bids_brainage: error: {config_file}: ") and message in lines[0]
    assert not (tmp_path / "out").exists()


def test_anat_only_participant_level_drops_the_bold_runs(real_data, tmp_path, monkeypatch):
    """--anat-only: no BOLD run is checked, processed or recorded in the status file."""
    from bids_brainage.cli import participant

    seen = []
    monkeypatch.setattr(participant, "_run_jobs", lambda config, jobs: seen.extend(jobs) or 0)
    argv = [str(real_data / "pumi"), str(tmp_path / "out"), "participant", "--skip-bids-validation",
            "-w", str(tmp_path / "w")]  # fmt: skip
    assert main([*argv, "--anat-only"]) == 0
    assert seen and all(job.t1w and job.bold == [] for job in seen)
    seen.clear()
    assert main(argv) == 0
    assert any(job.bold for job in seen)


def test_anat_only_group_level_trains_on_structural_features(tmp_path, monkeypatch):
    """--anat-only at the group level: the model table has no fmri__ column."""
    import pandas as pd

    from bids_brainage.cli import group

    features = pd.DataFrame(
        {"participant_id": ["sub-01", "sub-02"], "session_id": [None, None], "smri__gm": [0.5, 0.6],
         "fmri__a__b": [0.1, None]}
    )  # fmt: skip
    demo = pd.DataFrame({"subject": ["01", "02"], "session": [None, None], "age": [30.0, 40.0],
                         "sex": ["F", "M"], "site": ["a", "a"]})  # fmt: skip
    monkeypatch.setattr(group, "gather_features", lambda out, wanted: (features, pd.DataFrame()))
    monkeypatch.setattr(group.bids, "demographics", lambda bids_dir, sex_map: demo)
    config = _config(_bids(tmp_path / "bids"), tmp_path / "out", "--anat-only", level="group")
    table, _ = group.build_model_table(config)
    assert "smri__gm" in table and not [c for c in table if c.startswith("fmri__")]
    config.anat_only = False
    assert "fmri__a__b" in group.build_model_table(config)[0]
