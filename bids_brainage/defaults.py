"""Processing choices shared by the parser, the workflows and the methods text.

One place per fact: the command line offers exactly these, the interfaces accept exactly
these, and the methods boilerplate describes them from here.
"""

from __future__ import annotations

#: Connectivity measures computed per BOLD run, mapped to nilearn's ``ConnectivityMeasure`` kind.
#: nilearn's ``tangent`` kind is not offered: it needs a group reference (the mean covariance of
#: the training subjects) and is undefined for one run ("Tangent space parametrization can only
#: be applied to a group of subjects"); a one-subject tangent embedding would be all zeros.
CONNECTIVITY_KINDS: dict[str, str] = {
    "correlation": "correlation",
    "ledoit-wolf": "correlation",
    "partial-correlation": "partial correlation",
}

#: The relationship-matrix ``stat-`` entity of each measure.
RELMAT_STAT: dict[str, str] = {
    "correlation": "pearsoncorrelation",
    "ledoit-wolf": "ledoitwolfcorrelation",
    "partial-correlation": "partialcorrelation",
}


def connectivity_spelling(value: str) -> str:
    """``partial correlation`` and ``partial_correlation`` mean ``partial-correlation``."""
    return value.strip().lower().replace(" ", "-").replace("_", "-")


def connectivity_kind(value: str) -> str:
    """Canonical name of a connectivity measure; ``partial correlation`` (old spelling) is accepted."""
    name = connectivity_spelling(value)
    if name not in CONNECTIVITY_KINDS:
        raise ValueError(f"unknown connectivity {value!r}; choose from {', '.join(CONNECTIVITY_KINDS)}")
    return name


#: Coordinate-atlas spheres are at least this many BOLD voxels in radius: the published 4-5 mm
#: spheres hold only ~10 voxels of a 3 mm run, too few for a stable mean. ``--sphere-radius MM``
#: replaces the rule with a fixed radius.
SPHERE_RADIUS_VOXELS = 2.5

#: BOLD sidecar keys that say how many initial volumes are not at steady state, in the order
#: they are read (BIDS and vendor tools); without one, no volume is discarded.
DUMMY_KEYS = ("NumberOfVolumesDiscardedByUser", "NumberOfDummyScans", "DummyScans", "NonSteadyStateVolumes")

#: RepetitionTime (s) accepted for a BOLD run: outside it the sidecar is almost surely wrong
#: (2000 is a TR in milliseconds), and the band-pass filter would silently collapse.
PLAUSIBLE_TR_SECONDS = (0.1, 10.0)

#: Framewise displacement (mm, Power 2012) above which a volume is censored
#: (``--fd-spike-threshold``, fMRIPrep's name; ``--fd-threshold`` is an alias).
DEFAULT_FD_THRESHOLD = 0.5

#: Band-pass filter edges (Hz) of the ROI time series: the resting-state band
#: (``--lower-bpf``/``--upper-bpf``; ``--disable-bandpass-filter`` turns it off).
DEFAULT_BAND_PASS = (0.01, 0.1)

#: Nuisance-regression strategies (``--nuisance-regressors``; XCP-D's names where they exist),
#: each with the methods text that describes it. Only regressors the confounds step computes
#: are offered (no aCompCor, no ICA-AROMA); 36P's derivatives and squares of the WM, CSF and
#: global signals are expanded at the denoising step, as XCP-D does.
NUISANCE_STRATEGIES: dict[str, str] = {
    "none": "no confound regression",
    "24P": "the 24 motion parameters",
    "26P": "the 24 motion parameters and the mean WM and CSF signals",
    "27P": "the 24 motion parameters and the mean WM, CSF and global signals",
    "36P": "the 24 motion parameters and the mean WM, CSF and global signals with their temporal "
    "derivatives, quadratic terms and squared derivatives",
}
#: 26P is the default: motion and tissue signals without global signal regression, whose use is
#: debated for connectivity (it shifts correlations negative); ``--global-signal`` or ``27P``
#: adds it.
DEFAULT_NUISANCE_REGRESSORS = "26P"

#: A run censoring more than this fraction of its volumes is excluded (``--max-scrubbed-fraction``).
DEFAULT_MAX_SCRUBBED_FRACTION = 0.5

#: A run keeping less than this many seconds of data after censoring is excluded
#: (``--min-time``, XCP-D's option; the deprecated ``--min-volumes`` counts volumes instead).
#: 100 s is the 50 volumes of earlier releases at the common TR of 2 s: shorter runs give
#: unreliable correlations. XCP-D's default (240 s) is stricter: a 5-minute run would be
#: excluded once a fifth of its volumes is censored.
DEFAULT_MIN_TIME = 100.0

#: Connectivity measure (``--connectivity``; a key of :data:`CONNECTIVITY_KINDS`).
DEFAULT_CONNECTIVITY = "correlation"

#: Functional atlas (``--atlas``).
DEFAULT_ATLAS = "Seitzman300"

#: Cross-validation folds at the group level (``--n-folds``).
DEFAULT_N_FOLDS = 5

#: Site harmonisation (``--harmonize``; one of :data:`HARMONIZE_CHOICES`).
DEFAULT_HARMONIZE = "none"

#: Seed of every random step (``--random-seed``): registrations' metric sampling, folds, model.
DEFAULT_RANDOM_SEED = 0

#: Where the model runs (``--device``): ``auto`` is the GPU when there is one.
DEVICE_CHOICES = ("auto", "cpu", "cuda")
DEFAULT_DEVICE = "auto"

#: Ages (years) a prediction interval may span: bounds are clipped to this range.
PLAUSIBLE_AGE_YEARS = (0.0, 120.0)

#: Kinds of prediction interval (``model/calibration.py``) and the default. Age-conditional
#: (Mondrian conformal in bins of chronological age) is the default because leave-site-out on
#: ABIDE and FCON1000 it was the only kind whose 90 % intervals covered 87-93 % of people in
#: every age tercile, and it was also the narrowest (docs/benchmarks.md, uncertainty section).
INTERVAL_KINDS = ("age_conditional", "normalised", "constant")
#: Miscoverage of the prediction intervals (0.1: 90 % intervals).
DEFAULT_ALPHA = 0.1
DEFAULT_INTERVAL = "age_conditional"
#: Most chronological-age bins of the age-conditional interval, and the fewest calibration
#: people per bin (fewer people: fewer bins; under this number: one bin for everyone).
INTERVAL_AGE_BINS = 6
INTERVAL_MIN_BIN_SIZE = 50

#: Choices of ``--harmonize`` (site harmonisation before training; see ``model/harmonize.py``).
HARMONIZE_CHOICES = ("none", "combat")

#: Age-bias corrections of the brain-age gap, and the default. Quadratic (Smith 2019) is the
#: default because leave-site-out on ABIDE and FCON1000 it left the corrected gap least
#: correlated with age within the age terciles (|r| at most 0.26, in ABIDE's youngest tercile,
#: and at most 0.06 in the oldest) where linear (Beheshti 2019) left |r| up to 0.31 in the
#: oldest tercile (docs/benchmarks.md, uncertainty section).
BIAS_CORRECTIONS = ("linear", "quadratic")
DEFAULT_BIAS_CORRECTION = "quadratic"

#: Reports (issue 17). Below ``REPORT_SMALL_GROUP_N`` people, a group (an age decade, a sex, a
#: site) is drawn as its points instead of a box plot, and its R² and correlations are shown
#: as "n too small": with a handful of people R² swings far below zero (-2540 for one decade of
#: three people) and says nothing about the model.
REPORT_SMALL_GROUP_N = 10
#: Below ``REPORT_SMALL_TRAINING_N`` training participants the group report shows a banner:
#: brain-age accuracy keeps improving with training-set size well past a hundred people (see
#: the review by Baecker et al. 2021, EBioMedicine 67:103374), and with a few dozen people the
#: cross-validated MAE varies by years between folds and seeds, so such a model is a
#: demonstration; the banner points to ``--model`` (a bundle trained on a larger cohort).
REPORT_SMALL_TRAINING_N = 100
