"""Participants: chronological age, sex, site, hidden brain-age gap, latent traits, sessions.

Every subject has its own random stream derived from ``(seed, subject index)``, so a
subject's data do not depend on how many others are simulated or in which process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_brainage.simulate.config import SimulationConfig


@dataclass(frozen=True)
class Visit:
    """One session of one subject (``session`` is ``None`` for cross-sectional data)."""

    session: str | None
    age: float
    biological_age: float


@dataclass(frozen=True)
class Subject:
    """A simulated participant."""

    index: int
    label: str
    sex: str
    site: str
    gap: float
    visits: tuple[Visit, ...]
    #: Latent traits shared by both modalities (standard normal, constant over sessions):
    #: ``reserve`` raises grey-matter volume and within-network connectivity, ``pace``
    #: scales every ageing rate after 25 years (structural and functional). See
    #: ``lifespan.py`` and ``connectivity.py``.
    reserve: float = 0.0
    pace: float = 0.0

    @property
    def age(self) -> float:
        """Chronological age at the first session."""
        return self.visits[0].age


def subject_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """Independent random stream for subject ``index`` (``stream`` separates purposes)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 1000003, int(index), int(stream)]))


def label_width(n_subjects: int) -> int:
    """Zero-padded width of participant labels (``001`` up to 999 subjects)."""
    return max(3, len(str(n_subjects)))


def make_cohort(cfg: SimulationConfig) -> list[Subject]:
    """Draw the participants of ``cfg``.

    Sex alternates F/M after a seeded shuffle so the cohort is balanced; sites are assigned
    round-robin after another shuffle so every site has subjects of all ages. The latent
    traits come from their own stream (2), so adding them left every other draw unchanged.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(cfg.seed), 7]))
    n = cfg.n_subjects
    sexes = np.array(["F", "M"] * ((n + 1) // 2))[:n]
    rng.shuffle(sexes)
    sites = np.arange(n) % cfg.n_sites
    rng.shuffle(sites)
    width = label_width(n)
    lo, hi = cfg.age_range
    subjects = []
    for i in range(n):
        srng = subject_rng(cfg.seed, i)
        age = float(srng.uniform(lo, hi))
        gap = float(srng.normal(0.0, cfg.gap_sd))
        visits = []
        sessions = cfg.sessions or (None,)
        for k, ses in enumerate(sessions):
            # Follow-up intervals jitter around the nominal one (real cohorts are irregular).
            if k:
                age += float(cfg.session_interval * srng.uniform(0.8, 1.2))
            visits.append(Visit(ses, round(age, 2), round(max(age + gap, 0.5), 2)))
        reserve, pace = subject_rng(cfg.seed, i, 2).standard_normal(2)
        subjects.append(
            Subject(
                index=i,
                label=f"{i + 1:0{width}d}",
                sex=str(sexes[i]),
                site=f"site{sites[i] + 1}",
                gap=round(gap, 3),
                visits=tuple(visits),
                reserve=round(float(reserve), 3),
                pace=round(float(pace), 3),
            )
        )
    return subjects
