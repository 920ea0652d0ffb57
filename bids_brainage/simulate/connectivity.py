"""Network model of resting-state ROI signals on the Seitzman-300 ROIs.

ROI ``j`` of network ``n`` carries ``s_j = sqrt(w_n) z_n + sqrt(1 - w_n) e_j``: ``z`` are
band-limited (0.01-0.1 Hz) network signals with correlation ``C``, ``e_j`` private
band-limited noise, so within-network correlation is ``w_n`` and between-network
correlation is ``sqrt(w_m w_n) C_mn``.

Age effects are non-linear over the lifespan:

* development (8-20 years): within-network correlation strengthens and between-network
  coupling weakens as networks segregate, "local to distributed" (Fair et al. 2009, PLoS
  Comput Biol 5:e1000381): ``w`` is ``DEV_WITHIN_DEFICIT`` lower at 8 years and the common
  component of ``C`` ``DEV_MIX_EXCESS`` higher, both closing quadratically (zero slope) at 20;
* ageing (after 20): ``w`` of the default-mode and control networks declines
  (Andrews-Hanna et al. 2007; Damoiseaux et al. 2008) and a common component mixes into ``C``
  so between-network coupling rises (dedifferentiation, Chan et al. 2014; Geerligs et al.
  2015; Betzel et al. 2014; Varangis et al. 2019); both changes accelerate with age (half a
  constant rate, half a rate growing linearly, tripling from 20 to 80 years: segregation
  is nearly stable in young adults and falls faster from middle age, Chan et al. 2014;
  Betzel et al. 2014 fit quadratic trajectories over 7-85 years). The total 20-80 year
  changes are those of the earlier linear model.

Sex: women have slightly stronger default-mode coupling (Biswal et al. 2010; Allen et al.
2011), and men's ageing rates are 10 % faster, as for their structural ageing
(``lifespan.MALE_RATE``; sex x age interactions of network connectivity: Scheinost et al.
2015, Hum Brain Mapp 36:1524). Shared latent traits (``cohort.Subject``): ``reserve`` raises
every within-network ``w`` by ``RESERVE_WITHIN`` per SD (the same trait enlarges grey matter),
``pace`` scales the ageing rates (after 20 years here) as in the structural curves
(``lifespan.rate_scale``). Each subject also gets individual, fMRI-only deviations of ``w``
larger than the age effect over a decade, so the fMRI age signal is weaker and noisier than
the structural one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bids_brainage.simulate.lifespan import rate_scale
from bids_brainage.templates import coord_atlas

AGEING_NETWORKS = ("DefaultMode", "FrontoParietal", "CinguloOpercular", "Salience", "DorsalAttention")
BASE_WITHIN = 0.55
WITHIN_DECLINE_PER_YEAR = 0.003  # mean 20-80 y rate for AGEING_NETWORKS
OTHER_DECLINE_PER_YEAR = 0.001
GLOBAL_MIX_PER_YEAR = 0.003  # mean 20-80 y rise of the common component in C
DEV_WITHIN_DEFICIT = 0.08  # w lower at 8 years than at 20 (Fair et al. 2009)
DEV_MIX_EXCESS = 0.05  # common component higher at 8 years than at 20
FEMALE_DMN_BONUS = 0.03
RESERVE_WITHIN = 0.02  # w per SD of the latent reserve (an assumption, below INDIVIDUAL_SD)
INDIVIDUAL_SD = 0.05

# Known large-scale relations between networks (positive or anticorrelated).
_NETWORK_LINKS = {
    ("DefaultMode", "DorsalAttention"): -0.35,
    ("DefaultMode", "FrontoParietal"): 0.25,
    ("DefaultMode", "ParietoMedial"): 0.4,
    ("DefaultMode", "MedialTemporalLobe"): 0.35,
    ("CinguloOpercular", "Salience"): 0.45,
    ("CinguloOpercular", "SomatomotorDorsal"): 0.25,
    ("SomatomotorDorsal", "SomatomotorLateral"): 0.55,
    ("SomatomotorDorsal", "Auditory"): 0.35,
    ("SomatomotorLateral", "Auditory"): 0.4,
    ("Visual", "DorsalAttention"): 0.3,
    ("FrontoParietal", "DorsalAttention"): 0.3,
    ("VentralAttention", "Auditory"): 0.25,
    ("Reward", "DefaultMode"): 0.2,
    ("CinguloOpercular", "DefaultMode"): -0.2,
}


@dataclass(frozen=True)
class NetworkModel:
    """ROI-to-network assignment and the population network correlation."""

    roi_labels: tuple[str, ...]
    roi_network: np.ndarray  # index into ``networks`` per ROI
    networks: tuple[str, ...]
    base_corr: np.ndarray  # (n_networks, n_networks)


@lru_cache(maxsize=1)
def network_model() -> NetworkModel:
    """The Seitzman-300 network model (no randomness: it is the population)."""
    atlas = coord_atlas("Seitzman300")
    networks = tuple(sorted(set(atlas.networks)))
    index = {n: i for i, n in enumerate(networks)}
    corr = np.eye(len(networks))
    for (a, b), value in _NETWORK_LINKS.items():
        corr[index[a], index[b]] = corr[index[b], index[a]] = value
    corr = _nearest_correlation(corr)
    return NetworkModel(tuple(atlas.labels), np.array([index[n] for n in atlas.networks]), networks, corr)


def _nearest_correlation(mat: np.ndarray, floor: float = 0.05) -> np.ndarray:
    vals, vecs = np.linalg.eigh(mat)
    mat = (vecs * np.clip(vals, floor, None)) @ vecs.T
    d = np.sqrt(np.diag(mat))
    return mat / d[:, None] / d[None, :]


@dataclass(frozen=True)
class SubjectConnectivity:
    """One subject's generative connectivity parameters."""

    within: np.ndarray  # w per network
    net_corr: np.ndarray  # C per subject (age-mixed)

    def roi_correlation(self, model: NetworkModel) -> np.ndarray:
        """Model (expected) ROI x ROI correlation matrix."""
        w = np.sqrt(self.within[model.roi_network])
        corr = np.outer(w, w) * self.net_corr[np.ix_(model.roi_network, model.roi_network)]
        np.fill_diagonal(corr, 1.0)
        return corr


def ageing_years(age: float) -> float:
    """Equivalent years of constant-rate ageing after 20: ``y/2 + y^2/120`` (``y`` = age - 20).

    Its rate is 0.5 at 20 and 1.5 at 80, so 60 years of ageing equal 60 years of the
    constant rate, accelerating with age (see the module docstring).
    """
    years = max(age - 20.0, 0.0)
    return 0.5 * years + years**2 / 120.0


def development_deficit(age: float) -> float:
    """Immaturity 1 at 8 years, 0 from 20 on, closing quadratically (zero slope at 20)."""
    return float(np.clip((20.0 - age) / 12.0, 0.0, None)) ** 2


def subject_connectivity(
    age: float, sex: str, rng: np.random.Generator, reserve: float = 0.0, pace: float = 0.0
) -> SubjectConnectivity:
    """Network parameters at biological ``age`` for one subject (individual deviations from ``rng``).

    ``reserve`` and ``pace`` are the subject's latent traits shared with the anatomy.
    """
    model = network_model()
    # rate_scale at any adult age: sex and pace scale all of the post-20 ageing.
    years = ageing_years(age) * float(rate_scale(np.inf, sex, pace))
    immature = development_deficit(age)
    within = np.empty(len(model.networks))
    for i, net in enumerate(model.networks):
        decline = WITHIN_DECLINE_PER_YEAR if net in AGEING_NETWORKS else OTHER_DECLINE_PER_YEAR
        within[i] = BASE_WITHIN - decline * years - DEV_WITHIN_DEFICIT * immature + RESERVE_WITHIN * reserve
        if net == "DefaultMode" and sex == "F":
            within[i] += FEMALE_DMN_BONUS
        if net == "unassigned":
            within[i] = 0.1
    within = np.clip(within + rng.normal(0.0, INDIVIDUAL_SD, within.size), 0.05, 0.9)
    mix = min(0.05 + GLOBAL_MIX_PER_YEAR * years + DEV_MIX_EXCESS * immature, 0.5)
    ones = np.ones_like(model.base_corr)
    corr = (1 - mix) * model.base_corr + mix * ones
    return SubjectConnectivity(within, corr)


def band_limited(
    n_time: int, n_signals: int, tr: float, rng: np.random.Generator, band=(0.01, 0.1)
) -> np.ndarray:
    """Independent unit-variance signals (n_time, n_signals) with power in ``band`` Hz."""
    n_fft = 2 * n_time
    freqs = np.fft.rfftfreq(n_fft, tr)
    lo, hi = band
    # Smooth (raised-cosine) band edges avoid ringing.
    gain = np.clip((freqs - lo * 0.5) / (lo * 0.5), 0, 1) * np.clip((hi * 1.3 - freqs) / (hi * 0.3), 0, 1)
    spectrum = rng.standard_normal((freqs.size, n_signals)) + 1j * rng.standard_normal(
        (freqs.size, n_signals)
    )
    signals = np.fft.irfft(spectrum * gain[:, None], n=n_fft, axis=0)[:n_time]
    signals -= signals.mean(0)
    signals /= signals.std(0) + 1e-12
    return signals


def roi_signals(conn: SubjectConnectivity, n_time: int, tr: float, rng: np.random.Generator) -> np.ndarray:
    """Noise-free ROI signals (n_time, n_rois) following ``conn``."""
    model = network_model()
    latent = band_limited(n_time, len(model.networks), tr, rng) @ np.linalg.cholesky(conn.net_corr).T
    private = band_limited(n_time, len(model.roi_labels), tr, rng)
    w = conn.within[model.roi_network]
    return np.sqrt(w) * latent[:, model.roi_network] + np.sqrt(1 - w) * private
