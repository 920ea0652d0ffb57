"""Settings of a simulation, validated once so every module can trust them."""

from __future__ import annotations

from dataclasses import dataclass, field

from bids_brainage.derivatives import check_label
from bids_brainage.errors import UsageError


@dataclass(frozen=True)
class SimulationConfig:
    """All knobs of the generative model (defaults match the CLI).

    Parameters
    ----------
    n_subjects : int
        Number of participants (>= 1).
    seed : int
        Seed of every random draw; equal settings and seed give byte-identical files.
    resolution : float
        T1w voxel size in mm.
    bold_resolution : float
        BOLD voxel size in mm.
    n_sites : int
        Number of acquisition sites (contrast, intensity scale and noise differ per site).
    n_volumes : int
        BOLD volumes per run.
    tr : float
        BOLD repetition time in seconds.
    sessions : tuple of str
        Session labels; empty for a cross-sectional dataset without ``ses-`` folders.
    session_interval : float
        Mean years between consecutive sessions (longitudinal designs).
    age_range : tuple of float
        Minimum and maximum chronological age (uniform).
    gap_sd : float
        Standard deviation of the hidden brain-age gap in years.
    motion_scale, noise_scale : float
        Multipliers of head motion and of all noise (0 gives noise-free images).
    n_rois : int
        ROIs used for the functional features in feature-level mode.
    n_jobs : int
        Worker processes for image-level simulation (results do not depend on it).
    bold_oversample : int
        The motion-free BOLD image is built on a grid this many times finer than the BOLD
        grid before it is resampled for head motion (2: moved volumes stay sharp, so
        realignment is not biased by the simulator; 1: about 40 % faster).
    """

    n_subjects: int
    seed: int = 0
    resolution: float = 1.0
    bold_resolution: float = 3.0
    n_sites: int = 1
    n_volumes: int = 150
    tr: float = 2.0
    sessions: tuple[str, ...] = ()
    session_interval: float = 2.0
    age_range: tuple[float, float] = (8.0, 85.0)
    gap_sd: float = 3.0
    motion_scale: float = 1.0
    noise_scale: float = 1.0
    n_rois: int = 40
    n_jobs: int = 1
    bold_oversample: int = 2
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if int(self.n_subjects) != self.n_subjects or self.n_subjects < 1:
            raise UsageError(f"--n-subjects must be a positive integer, got {self.n_subjects}")
        if self.n_sites < 1 or int(self.n_sites) != self.n_sites:
            raise UsageError(f"--n-sites must be a positive integer, got {self.n_sites}")
        if self.n_sites > self.n_subjects:
            raise UsageError(f"--n-sites ({self.n_sites}) cannot exceed --n-subjects ({self.n_subjects})")
        lo, hi = self.age_range
        if lo < 0 or hi < 0:
            raise UsageError(f"--age-range must not be negative, got {lo} {hi}")
        if lo > hi:
            raise UsageError(f"--age-range MIN must not exceed MAX, got {lo} {hi}")
        if hi > 100:
            raise UsageError(f"--age-range MAX must be at most 100 years, got {hi}")
        if not 0.5 <= self.resolution <= 8:
            raise UsageError(f"--resolution must be within 0.5-8 mm, got {self.resolution}")
        if not 1 <= self.bold_resolution <= 8:
            raise UsageError(f"--bold-resolution must be within 1-8 mm, got {self.bold_resolution}")
        if self.n_volumes < 10:
            raise UsageError(f"--n-volumes must be at least 10, got {self.n_volumes}")
        if not 0.2 <= self.tr <= 10:
            raise UsageError(f"--tr must be within 0.2-10 s, got {self.tr}")
        for name in ("gap_sd", "motion_scale", "noise_scale", "session_interval"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.bold_oversample not in (1, 2, 3):
            raise UsageError(f"--bold-oversample must be 1, 2 or 3, got {self.bold_oversample}")
        if self.n_rois < 2:
            raise UsageError(f"--n-rois must be at least 2, got {self.n_rois}")
        for label in self.sessions:
            try:
                check_label(label, "ses")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if len(set(self.sessions)) != len(self.sessions):
            raise UsageError(f"session labels must be unique, got {list(self.sessions)}")


def parse_sessions(value: list[str] | tuple[str, ...] | int | str | None) -> tuple[str, ...]:
    """Session labels from a count (``2`` -> ``01 02``) or explicit labels; ``1``/None -> none."""
    if value is None:
        return ()
    if isinstance(value, int | str):
        value = [str(value)]
    value = [str(v) for v in value]
    if len(value) == 1 and value[0].isdigit() and not value[0].startswith("0"):
        count = int(value[0])
        if count < 1:
            raise UsageError(f"--sessions must be >= 1, got {count}")
        return () if count == 1 else tuple(f"{i + 1:02d}" for i in range(count))
    return tuple(v[4:] if v.startswith("ses-") else v for v in value)
