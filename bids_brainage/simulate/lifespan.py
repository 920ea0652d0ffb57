"""Lifespan curves of the generative model: how tissue volumes change with biological age.

All curves return *multiplicative factors relative to a 25-year-old adult* (the age of the
MNI152 2009 template population), so the template itself is the reference anatomy. The
rates are taken from the literature; see ``docs/simulation.md`` for the sources:

* cortical grey matter peaks in early childhood (about 6 years), thins during adolescence
  and declines by roughly 0.5 %/year in adults, faster after 60 and faster in frontal and
  temporal cortex than in occipital cortex (Raz et al. 2005; Fjell et al. 2009;
  Bethlehem et al. 2022);
* the lateral ventricles expand slowly in young adults and by about 20 %/decade after
  45 years, accelerating further after 65 (Scahill et al. 2003; Fjell et al. 2009);
* intracranial volume reaches adult size in adolescence (about 93 % at 8 years) and is
  about 10 % larger in men (Ruigrok et al. 2014);
* men show slightly steeper grey-matter decline (Good et al. 2001).
"""

from __future__ import annotations

import numpy as np

REFERENCE_AGE = 25.0

# Relative rate of grey-matter change per Desikan-Killiany lobe (1 = global rate).
LOBE_RATE = {
    "frontal": 1.3,
    "temporal": 1.2,
    "parietal": 1.0,
    "cingulate": 0.9,
    "insula": 1.1,
    "occipital": 0.6,
    "subcortical": 0.8,
    "hippocampus": 1.2,
    "brainstem": 0.2,
}

_FRONTAL = (
    "caudalmiddlefrontal lateralorbitofrontal medialorbitofrontal parsopercularis parsorbitalis "
    "parstriangularis precentral rostralmiddlefrontal superiorfrontal frontalpole paracentral"
).split()
_TEMPORAL = (
    "bankssts entorhinal fusiform inferiortemporal middletemporal parahippocampal "
    "superiortemporal temporalpole transversetemporal"
).split()
_PARIETAL = "inferiorparietal postcentral precuneus superiorparietal supramarginal".split()
_OCCIPITAL = "cuneus lateraloccipital lingual pericalcarine".split()
_CINGULATE = "caudalanteriorcingulate isthmuscingulate posteriorcingulate rostralanteriorcingulate".split()


def lobe_of(region: str) -> str:
    """Lobe of a Desikan-Killiany region name such as ``L_superiorfrontal``."""
    base = region.split("_", 1)[-1].lower()
    if base in _FRONTAL:
        return "frontal"
    if base in _TEMPORAL:
        return "temporal"
    if base in _PARIETAL:
        return "parietal"
    if base in _OCCIPITAL:
        return "occipital"
    if base in _CINGULATE:
        return "cingulate"
    if base == "insula":
        return "insula"
    if base in ("hippocampus", "amygdala"):
        return "hippocampus"
    if "brainstem" in base:
        return "brainstem"
    return "subcortical"


def _piecewise_log(age: np.ndarray, knots: tuple[float, ...], slopes: tuple[float, ...]) -> np.ndarray:
    """Integral of a piecewise-constant slope from REFERENCE_AGE to ``age`` (log factor)."""
    age = np.asarray(age, float)
    edges = np.array((-np.inf, *knots, np.inf))

    def cumulative(a: np.ndarray) -> np.ndarray:
        total = np.zeros_like(a)
        for lo, hi, slope in zip(edges[:-1], edges[1:], slopes, strict=True):
            lo_c = max(lo, 0.0)
            total += slope * (np.clip(a, lo_c, hi) - lo_c)
        return total

    return cumulative(age) - cumulative(np.full_like(age, REFERENCE_AGE))


def grey_matter_factor(
    age: np.ndarray, sex: np.ndarray | str, lobe_rate: float | np.ndarray = 1.0
) -> np.ndarray:
    """Grey-matter volume factor at biological ``age`` (1 at 25 years).

    Growth to a peak at 6 years, adolescent thinning (-0.7 %/year), adult decline of
    0.45 %/year until 60 and 0.65 %/year after; ``lobe_rate`` scales the post-peak decline
    regionally and men decline 10 % faster.
    """
    male = np.asarray(sex) == "M"
    log_f = _piecewise_log(age, (6.0, 25.0, 60.0), (0.05, -0.007, -0.0045, -0.0065))
    scale = np.asarray(lobe_rate, float) * np.where(male, 1.1, 1.0)
    return np.exp(log_f * scale)


def ventricle_factor(age: np.ndarray) -> np.ndarray:
    """Lateral-ventricle volume factor (1 at 25 years): +10 %/decade, +20 %/decade after 45,
    +35 %/decade after 65 (exponential rates)."""
    return np.exp(_piecewise_log(age, (45.0, 65.0), (0.01, 0.02, 0.035)))


def intracranial_factor(age: np.ndarray) -> np.ndarray:
    """Intracranial volume factor: 1 from 15 years on, -1 %/year below (93 % at 8 years)."""
    age = np.asarray(age, float)
    return np.exp(-0.01 * np.clip(15.0 - age, 0.0, None))


def motion_scale(age: np.ndarray) -> np.ndarray:
    """Relative head-motion amplitude: children and older adults move more (Satterthwaite
    et al. 2012; Savalia et al. 2017); 1 for young adults."""
    age = np.asarray(age, float)
    return 1.0 + 1.5 * np.exp(-(age - 8.0) / 5.0) * (age < 25) + 0.02 * np.clip(age - 50.0, 0, None)
