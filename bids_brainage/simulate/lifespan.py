"""Lifespan curves of the generative model: how tissue volumes change with biological age.

All curves return *multiplicative factors relative to a 25-year-old adult* (the age of the
MNI152 2009 template population), so the template itself is the reference anatomy. They
are parametric approximations (exponential rates, piecewise in age, continuous) of
published normative curves; see ``docs/simulation.md`` for the full references:

* grey matter (GM) grows to a peak at 5.9 years (Bethlehem et al. 2022, Nature 604:525,
  95 % CI 5.8-6.1 y, sexes pooled), about a year earlier in girls than in boys (Lenroot
  et al. 2007: cortical GM peaks 1-2 years earlier in females), thins during adolescence
  and declines by roughly 0.5 %/year in adults, faster after 60 and faster in frontal and
  temporal than in occipital cortex (Raz et al. 2005; Fjell et al. 2009);
* white matter (WM) peaks at 28.7 years (Bethlehem et al. 2022, CI 28.1-29.2 y) and its
  decline accelerates after 50 (ibid.); in the model the WM growth and the first decades
  of decline come from the GM and ventricle mechanisms (see ``anatomy.aged_tissues``),
  :func:`white_matter_factor` adds the accelerating loss after 50;
* the lateral ventricles expand slowly in young adults and by about 20 %/decade after
  45 years, accelerating further after 65 (Scahill et al. 2003; Fjell et al. 2009;
  Bethlehem et al. 2022: ventricular CSF rises steeply in late life);
* intracranial volume reaches adult size in adolescence (about 93 % at 8 years) and is
  about 10 % larger in men (Ruigrok et al. 2014);
* sex x age: besides the earlier GM peak of girls, men's post-peak rates of GM decline,
  WM loss and ventricular expansion are 10 % faster (Gur et al. 1991: greater age-related
  atrophy and CSF increase in men; Good et al. 2001: steeper GM decline in men);
* pace of ageing: ``pace`` is a subject's latent ageing-rate factor (standard normal,
  shared with the functional model, see ``cohort.Subject``); every rate after 25 years is
  multiplied by ``1 + PACE_EFFECT * pace`` (at least 0.25), so people differ in how fast,
  not only how far, they have aged (Smith et al. 2020, eLife 9:e52677: several modes of
  brain ageing shared by structural and functional measures; Cox et al. 2019: vascular
  risk and brain structure).
"""

from __future__ import annotations

import numpy as np

REFERENCE_AGE = 25.0

#: Peak of grey-matter volume in years (Bethlehem et al. 2022: 5.9 y pooled; girls about
#: one year before boys, Lenroot et al. 2007).
GM_PEAK = {"F": 5.4, "M": 6.4}
#: Peak of white-matter volume (Bethlehem et al. 2022: 28.7 y) and start of its
#: accelerating decline (ibid.: "accelerated decline in WMV after 50 years").
WM_PEAK = 28.7
WM_ACCELERATION_AGE = 50.0
#: Rate of the extra WM loss grows by this much per year after 50 (log scale, per year^2):
#: 0.7 %/year at 85, a further 11.5 % of WM lost by 85 beyond the ventricles' compression,
#: so total WM at 85 is about 20 % below its peak, as in the normative curves.
WM_LOSS_ACCELERATION = 0.0002
#: Men's post-peak ageing rates relative to women's (Gur et al. 1991; Good et al. 2001).
MALE_RATE = 1.1
#: Relative change of every post-25 ageing rate per SD of the latent pace factor (an
#: assumption of the simulator, not a fitted value: +1 SD ages 25 % faster).
PACE_EFFECT = 0.25

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


def rate_scale(age: np.ndarray, sex: np.ndarray | str, pace: float | np.ndarray = 0.0) -> np.ndarray:
    """Multiplier of the post-25 ageing rates: men x ``MALE_RATE``, pace x ``1 + PACE_EFFECT * pace``."""
    male = np.asarray(sex) == "M"
    pace_scale = np.maximum(1.0 + PACE_EFFECT * np.asarray(pace, float), 0.25)
    return np.where(male, MALE_RATE, 1.0) * np.where(np.asarray(age, float) > REFERENCE_AGE, pace_scale, 1.0)


def grey_matter_factor(
    age: np.ndarray,
    sex: np.ndarray | str,
    lobe_rate: float | np.ndarray = 1.0,
    pace: float | np.ndarray = 0.0,
) -> np.ndarray:
    """Grey-matter volume factor at biological ``age`` (1 at 25 years).

    Growth of +5 %/year to the peak (5.4 y in women, 6.4 y in men; Bethlehem et al. 2022
    pooled 5.9 y; Lenroot et al. 2007), adolescent thinning (-0.7 %/year to 25), adult
    decline of 0.45 %/year until 60 and 0.65 %/year after (Fotenos et al. 2005; Raz et al.
    2005; Fjell et al. 2009). ``lobe_rate`` scales the change regionally; men's rates are
    10 % faster and every rate after 25 is scaled by the pace factor (:func:`rate_scale`).
    """
    age = np.asarray(age, float)
    male = np.asarray(sex) == "M"
    log_f = np.where(
        male,
        _piecewise_log(age, (GM_PEAK["M"], 25.0, 60.0), (0.05, -0.007, -0.0045, -0.0065)),
        _piecewise_log(age, (GM_PEAK["F"], 25.0, 60.0), (0.05, -0.007, -0.0045, -0.0065)),
    )
    return np.exp(log_f * np.asarray(lobe_rate, float) * rate_scale(age, sex, pace))


def white_matter_factor(
    age: np.ndarray, sex: np.ndarray | str = "F", pace: float | np.ndarray = 0.0
) -> np.ndarray:
    """Fraction of white matter left after the late-life loss (1 up to 50 years).

    The WM loss rate grows linearly after 50 years (``WM_LOSS_ACCELERATION`` per year^2,
    Bethlehem et al. 2022: accelerated WMV decline after 50), so the factor is
    ``exp(-a (age - 50)^2 / 2)``: 0.98 at 65, 0.89 at 85 for a woman of average pace. The
    earlier inverted U (growth to about 30 years, slow decline) comes from the GM and
    ventricle mechanisms of the anatomy; together they peak near 30 years.
    """
    years = np.clip(np.asarray(age, float) - WM_ACCELERATION_AGE, 0.0, None)
    return np.exp(-0.5 * WM_LOSS_ACCELERATION * years**2 * rate_scale(age, sex, pace))


def ventricle_factor(
    age: np.ndarray, sex: np.ndarray | str = "F", pace: float | np.ndarray = 0.0
) -> np.ndarray:
    """Lateral-ventricle volume factor (1 at 25 years): +10 %/decade, +20 %/decade after 45,
    +35 %/decade after 65 (exponential rates; Scahill et al. 2003; Fjell et al. 2009), men
    10 % faster (Gur et al. 1991) and the pace factor after 25 (:func:`rate_scale`)."""
    log_f = _piecewise_log(age, (45.0, 65.0), (0.01, 0.02, 0.035))
    return np.exp(log_f * rate_scale(age, sex, pace))


def intracranial_factor(age: np.ndarray) -> np.ndarray:
    """Intracranial volume factor: 1 from 15 years on, -1 %/year below (93 % at 8 years)."""
    age = np.asarray(age, float)
    return np.exp(-0.01 * np.clip(15.0 - age, 0.0, None))


def motion_scale(age: np.ndarray) -> np.ndarray:
    """Relative head-motion amplitude: children and older adults move more (Satterthwaite
    et al. 2012; Savalia et al. 2017); 1 for young adults."""
    age = np.asarray(age, float)
    return 1.0 + 1.5 * np.exp(-(age - 8.0) / 5.0) * (age < 25) + 0.02 * np.clip(age - 50.0, 0, None)
