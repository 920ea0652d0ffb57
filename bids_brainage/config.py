"""One settings object for a run, built from the command-line arguments.

Nothing else in the package reads ``sys.argv``: the CLI builds a :class:`Config` and passes
it down; workflows receive the values they need as explicit arguments.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bids_brainage.defaults import (
    DEFAULT_ATLAS,
    DEFAULT_BAND_PASS,
    DEFAULT_BIAS_CORRECTION,
    DEFAULT_CONNECTIVITY,
    DEFAULT_DEVICE,
    DEFAULT_FD_THRESHOLD,
    DEFAULT_HARMONIZE,
    DEFAULT_MAX_SCRUBBED_FRACTION,
    DEFAULT_MIN_TIME,
    DEFAULT_N_FOLDS,
    DEFAULT_NUISANCE_REGRESSORS,
    DEFAULT_RANDOM_SEED,
)
from bids_brainage.errors import UsageError

_MEM_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)


def parse_mem(value: str) -> int:
    """Memory string to megabytes: ``8G`` → 8192, ``8000M`` → 8000, ``8000`` → 8000 (MB)."""
    match = _MEM_RE.match(str(value))
    if not match:
        raise ValueError(f"invalid memory size {value!r}: use e.g. 8G, 8000M or 8000 (MB)")
    number, unit = float(match.group(1)), match.group(2).upper()
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2}[unit]
    mb = int(number * factor)
    if mb <= 0:
        raise ValueError(f"invalid memory size {value!r}: must be positive")
    return mb


@dataclass
class Config:
    """Settings of one ``bids_brainage BIDS_DIR OUTPUT_DIR LEVEL`` run.

    Paths are absolute; labels are validated (``[0-9A-Za-z]+``, no ``sub-``/``ses-`` prefix).
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    participant_label: list[str] = field(default_factory=list)
    session_label: list[str] = field(default_factory=list)
    task_id: str = "rest"
    bids_filters: dict[str, dict[str, Any]] = field(default_factory=dict)
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_mb: int | None = None
    use_plugin: Path | None = None
    skip_bids_validation: bool = False
    stop_on_first_crash: bool = False
    sloppy: bool = False
    random_seed: int = DEFAULT_RANDOM_SEED
    device: str = DEFAULT_DEVICE
    reports_only: bool = False
    boilerplate_only: bool = False
    anat_only: bool = False
    config_file: Path | None = None
    verbosity: int = 0
    atlas: str = DEFAULT_ATLAS
    anat_atlas: Path | None = None
    thickness: bool = False
    connectivity: str = DEFAULT_CONNECTIVITY
    fd_threshold: float = DEFAULT_FD_THRESHOLD
    max_scrubbed_fraction: float = DEFAULT_MAX_SCRUBBED_FRACTION
    min_time: float = DEFAULT_MIN_TIME
    min_volumes: int | None = None
    dummy_scans: int | None = None
    nuisance_regressors: str = DEFAULT_NUISANCE_REGRESSORS
    lower_bpf: float = DEFAULT_BAND_PASS[0]
    upper_bpf: float = DEFAULT_BAND_PASS[1]
    disable_bandpass_filter: bool = False
    sphere_radius: float | None = None
    derivatives: dict[str, Path] = field(default_factory=dict)
    model: Path | None = None
    n_folds: int = DEFAULT_N_FOLDS
    harmonize: str = DEFAULT_HARMONIZE
    bias_correction: str = DEFAULT_BIAS_CORRECTION
    sex_map: dict[str, str] = field(default_factory=dict)
    command_line: str = ""
    start_time: float = field(default_factory=time.time)
    run_uuid: str = ""

    @property
    def band_pass(self) -> tuple[float, float] | None:
        """High-pass and low-pass edges (Hz; 0 leaves that edge out), None without a filter."""
        if self.disable_bandpass_filter or (self.lower_bpf <= 0 and self.upper_bpf <= 0):
            return None
        return (self.lower_bpf, self.upper_bpf)

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy (paths as strings), for logs and reports."""
        return json.loads(json.dumps(asdict(self), default=str))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the settings as JSON (atomically)."""
        from bids_brainage.utils import atomic

        return atomic.write_json(path, self.to_json_dict())


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def build_config(args: Any, argv: list[str] | None = None) -> Config:
    """Validate the parsed arguments and build the :class:`Config`.

    Raises
    ------
    UsageError
        For any invalid combination (output inside the BIDS directory, bad labels, ...).
    """
    from bids_brainage.derivatives import check_label

    bids_dir = Path(args.bids_dir).expanduser().resolve()
    output_dir = Path(args.output_dir).expanduser().resolve()
    if not bids_dir.is_dir():
        raise UsageError(f"{bids_dir}: BIDS directory does not exist")
    if not (bids_dir / "dataset_description.json").is_file():
        raise UsageError(f"{bids_dir}: not a BIDS dataset (no dataset_description.json)")
    if _within(output_dir, bids_dir):
        raise UsageError(f"{output_dir}: the output directory must not be the BIDS directory or inside it")
    # fMRIPrep's default: ./work in the current directory.
    work_dir = Path(args.work_dir or "work").expanduser().resolve()
    if _within(work_dir, bids_dir):
        raise UsageError(f"{work_dir}: the work directory must not be inside the BIDS directory")

    try:
        participants = sorted({check_label(x, "sub") for x in (args.participant_label or [])})
        sessions = sorted({check_label(x, "ses") for x in (args.session_label or [])})
        task = check_label(args.task_id, "task")
    except ValueError as err:
        raise UsageError(str(err)) from None

    filters = _read_bids_filters(args.bids_filter_file) if args.bids_filter_file else {}
    sex_map = _parse_sex_map(args.sex_map) if args.sex_map else {}
    derivs = {}
    for item in args.derivatives or []:
        name, _, path = item.partition("=")
        if not path:
            name, path = "fmriprep", item
        derivs[name] = Path(path).expanduser().resolve()
        if not derivs[name].is_dir():
            raise UsageError(f"{derivs[name]}: derivatives directory does not exist")

    use_plugin = Path(args.use_plugin).resolve() if args.use_plugin else None
    if use_plugin and not use_plugin.is_file():
        raise UsageError(f"{use_plugin}: plugin file does not exist")
    model = Path(args.model).expanduser().resolve() if getattr(args, "model", None) else None
    if model and not model.is_dir():
        raise UsageError(f"{model}: model bundle directory does not exist")
    anat_atlas = None
    if args.atlas and Path(args.atlas).suffix in (".nii", ".gz"):
        anat_atlas = Path(args.atlas).expanduser().resolve()
        if not anat_atlas.is_file():
            raise UsageError(f"{anat_atlas}: atlas file does not exist")

    nprocs = args.nprocs or os.cpu_count() or 1
    omp = args.omp_nthreads or min(nprocs, 8)
    if omp > nprocs:
        raise UsageError(f"--omp-nthreads ({omp}) must not exceed --nprocs ({nprocs})")
    try:
        mem_mb = parse_mem(args.mem) if args.mem else None
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.upper_bpf > 0 and args.lower_bpf >= args.upper_bpf and not args.disable_bandpass_filter:
        raise UsageError(
            f"--lower-bpf ({args.lower_bpf:g} Hz) must be below --upper-bpf ({args.upper_bpf:g} Hz); "
            "0 leaves an edge out"
        )
    nuisance = _nuisance_strategy(args.nuisance_regressors, args.global_signal)

    return Config(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=args.analysis_level,
        work_dir=work_dir,
        participant_label=participants,
        session_label=sessions,
        task_id=task,
        bids_filters=filters,
        nprocs=nprocs,
        omp_nthreads=omp,
        mem_mb=mem_mb,
        use_plugin=use_plugin,
        skip_bids_validation=args.skip_bids_validation,
        stop_on_first_crash=args.stop_on_first_crash,
        sloppy=args.sloppy,
        random_seed=args.random_seed,
        device=args.device,
        reports_only=args.reports_only,
        boilerplate_only=args.boilerplate_only,
        anat_only=args.anat_only,
        config_file=Path(args.config_file).expanduser().resolve() if args.config_file else None,
        verbosity=args.verbose,
        atlas=args.atlas if anat_atlas is None else "custom",
        anat_atlas=anat_atlas,
        thickness=args.thickness,
        connectivity=args.connectivity,
        fd_threshold=args.fd_threshold,
        max_scrubbed_fraction=args.max_scrubbed_fraction,
        min_time=args.min_time,
        min_volumes=args.min_volumes,
        dummy_scans=args.dummy_scans,
        nuisance_regressors=nuisance,
        lower_bpf=args.lower_bpf,
        upper_bpf=args.upper_bpf,
        disable_bandpass_filter=args.disable_bandpass_filter,
        sphere_radius=args.sphere_radius,
        derivatives=derivs,
        model=model,
        n_folds=args.n_folds,
        harmonize=args.harmonize,
        bias_correction=args.bias_correction,
        sex_map=sex_map,
        command_line=" ".join(["bids_brainage", *(argv if argv is not None else sys.argv[1:])]),
    )


def _nuisance_strategy(strategy: str, global_signal: bool) -> str:
    """``--nuisance-regressors``, with ``--global-signal`` (the older flag) adding the global
    signal to the default set (26P becomes 27P; 27P and 36P have it already)."""
    if not global_signal or strategy in ("27P", "36P"):
        return strategy
    if strategy == "26P":
        return "27P"
    raise UsageError(
        f"--global-signal contradicts --nuisance-regressors {strategy}: use --nuisance-regressors 27P or 36P"
    )


def _read_bids_filters(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read fMRIPrep's ``--bids-filter-file`` JSON: keys ``t1w`` and/or ``bold``, each a dict of entities."""
    from bids_brainage.bids import parse_bids_filters

    return parse_bids_filters(path)


def _parse_sex_map(items: list[str]) -> dict[str, str]:
    """``--sex-map 0=F 1=M`` → ``{"0": "F", "1": "M"}``."""
    mapping = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or value.upper() not in ("M", "F"):
            raise UsageError(f"invalid --sex-map entry {item!r}: use CODE=M or CODE=F")
        mapping[key.strip().lower()] = value.upper()
    return mapping
