"""ComBat site harmonisation (neuroHarmonize), fitted on training rows only.

Age and sex are protected covariates when ComBat is fitted: it removes each site's additive
and multiplicative effect on every feature after modelling the feature's dependence on age
and sex, so the age signal the model learns is kept.

Applying ComBat to a person the usual way needs that person's age, and leaks it: the
harmonised value is x/δ + (1 − 1/δ)(mean + age effect) − ..., so a site whose scale δ is not
1 gets a share of the person's *true* age effect written into the features the model then
reads (docs/benchmarks.md measures how much this flatters a leave-site-out MAE). Here the
person's own age is never used when features are harmonised: a known site gets the affine
map of its fitted location and scale with the age effect at the mean age of that site's
training people (the person's sex is used; it is an input of the model anyway). A site the
model has never seen is learned from its own people when it has at least
:data:`MIN_NEW_SITE_SIZE` of them with age and sex: its location and scale are estimated with
the training fit held fixed (no empirical-Bayes shrinkage) around the age effect at that
site's *mean* age, so only the site's mean age, not any person's, enters. Smaller unseen sites
are left unharmonised and flagged.

Two steps are written here rather than called from neuroHarmonize 2.5.2, for measured
reasons (FCON1000 with one site held out): its ``harmonizationApply`` raises an IndexError
unless every training site is among the rows (so one person could not be harmonised), and
its ``orig_model`` route for new sites fails with a shape error when given the new site's
rows alone. With each person's own age, the known-site adjustment here reproduces
``harmonizationLearn``'s own output on the training rows (``tests/model/test_harmonize.py``).
Only the arrays this needs are kept (the training design matrix would make a bundle
megabytes larger).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

LOGGER = logging.getLogger("bids_brainage.model")

#: People a site unseen in training needs before its own site effect is estimated: with
#: fewer, the per-feature site means and variances are too noisy to remove safely.
MIN_NEW_SITE_SIZE = 10


def _covars(site: np.ndarray, age: np.ndarray, sex: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"SITE": np.asarray(site).astype(str), "AGE": np.asarray(age, float), "SEX": np.asarray(sex, float)}
    )


@dataclass
class ComBatHarmonizer:
    """Per-feature ComBat with empirical Bayes, age and sex protected (neuroHarmonize).

    Parameters
    ----------
    min_new_site_size
        People with age an unseen site needs to be harmonised from its own data (default:
        :data:`MIN_NEW_SITE_SIZE`, read when transforming).

    Attributes
    ----------
    sites_ : list of str
        Training sites, in the order of the rows of ``gamma_`` and ``delta_``.
    varying_ : ndarray of bool
        Features harmonised: those that vary within every training site (ComBat divides by
        the within-site variance; a constant feature, e.g. a structure FreeSurfer reports as
        0 everywhere, would become NaN). The others pass through unchanged.
    grand_mean_, pooled_sd_, covariate_effect_, gamma_, delta_ : ndarray
        neuroHarmonize's fit for the varying features: grand mean and pooled SD per feature,
        the effects of age and sex (2 x features), and each site's empirical-Bayes location
        and scale (sites x features).
    """

    min_new_site_size: int | None = None
    sites_: list[str] = field(default_factory=list)
    varying_: np.ndarray | None = field(default=None, repr=False)
    grand_mean_: np.ndarray | None = field(default=None, repr=False)
    pooled_sd_: np.ndarray | None = field(default=None, repr=False)
    covariate_effect_: np.ndarray | None = field(default=None, repr=False)
    gamma_: np.ndarray | None = field(default=None, repr=False)
    delta_: np.ndarray | None = field(default=None, repr=False)
    #: Mean age of each training site's people (the age at which a site's map is anchored).
    site_mean_age_: np.ndarray | None = field(default=None, repr=False)

    #: Arrays stored in a model bundle's weights file.
    ARRAYS = (
        "varying_",
        "grand_mean_",
        "pooled_sd_",
        "covariate_effect_",
        "gamma_",
        "delta_",
        "site_mean_age_",
    )

    def fit(self, x: np.ndarray, site: np.ndarray, age: np.ndarray, sex: np.ndarray) -> ComBatHarmonizer:
        """Learn site effects from complete training rows (rows with missing values are skipped)."""
        from neuroHarmonize import harmonizationLearn

        x = np.asarray(x, float)
        site = np.asarray(site).astype(str)
        rows = (
            np.isfinite(x).all(axis=1)
            & np.isfinite(np.asarray(age, float))
            & np.isfinite(np.asarray(sex, float))
        )
        x, site, age, sex = x[rows], site[rows], np.asarray(age, float)[rows], np.asarray(sex, float)[rows]
        if len(np.unique(site)) < 2:
            raise ValueError("ComBat needs at least two sites with complete features in the training data")
        self.varying_ = np.all([x[site == s].std(axis=0) > 0 for s in np.unique(site)], axis=0)
        model, _ = harmonizationLearn(x[:, self.varying_], _covars(site, age, sex))
        n_sites = len(model["SITE_labels"])
        self.sites_ = [str(s) for s in model["SITE_labels"]]
        self.grand_mean_ = model["stand_mean"][:, 0].astype(np.float32)
        self.pooled_sd_ = np.sqrt(model["var_pooled"][:, 0]).astype(np.float32)
        # Design columns after the site one-hots are the protected covariates, AGE then SEX.
        self.covariate_effect_ = model["B_hat"][n_sites:, :].astype(np.float32)
        self.gamma_ = np.asarray(model["gamma_star"], np.float32)
        self.delta_ = np.asarray(model["delta_star"], np.float32)
        self.site_mean_age_ = np.array([age[site == s].mean() for s in self.sites_], np.float32)
        return self

    def transform(
        self,
        x: np.ndarray,
        site: np.ndarray,
        age: np.ndarray,
        sex: np.ndarray,
        individual_age: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Harmonise rows; returns the features and a status per row.

        Status: ``known`` (a training site), ``new`` (an unseen site learned from its own
        people), ``unseen`` (an unseen site with too few people with age: left as is),
        ``missing`` (sex or a feature missing: left as is). ``age`` is used only to find an
        unseen site's mean age, unless ``individual_age`` (ComBat's textbook application,
        which leaks each person's age into their features: for checks against the library).
        """
        x = np.array(x, float)
        site = np.asarray(site).astype(str)
        age, sex = np.asarray(age, float), np.asarray(sex, float)
        status = np.full(len(x), "known", dtype=object)
        usable = np.isfinite(sex) & np.isfinite(x).all(axis=1)
        status[~usable] = "missing"
        known = usable & np.isin(site, self.sites_)
        cols = self.varying_
        for index, name in enumerate(self.sites_):
            rows = known & (site == name)
            if rows.any():
                anchor = age[rows] if individual_age else np.full(rows.sum(), self.site_mean_age_[index])
                standardised, mean = self._standardise(x[np.ix_(rows, cols)], anchor, sex[rows])
                adjusted = (standardised - self.gamma_[index]) / np.sqrt(self.delta_[index])
                x[np.ix_(rows, cols)] = adjusted * self._sd + mean
        for new_site in sorted(set(site[usable & ~known])):
            rows = usable & (site == new_site)
            with_age = rows & np.isfinite(age)
            minimum = self.min_new_site_size or MIN_NEW_SITE_SIZE
            if with_age.sum() < minimum:
                status[rows] = "unseen"
                LOGGER.warning(
                    "site %s: %d people with age, fewer than %d: not harmonised (a site the model never saw)",
                    new_site,
                    with_age.sum(),
                    minimum,
                )
                continue
            # The site's own location and scale around the age effect at its mean age.
            anchor = np.full(rows.sum(), age[with_age].mean())
            standardised, mean = self._standardise(x[np.ix_(rows, cols)], anchor, sex[rows])
            location = standardised.mean(axis=0)
            scale = np.sqrt(np.maximum(standardised.var(axis=0, ddof=1), 1e-12))
            x[np.ix_(rows, cols)] = (standardised - location) / scale * self._sd + mean
            status[rows] = "new"
        return x, status.astype(str)

    @property
    def _sd(self) -> np.ndarray:
        return np.where(self.pooled_sd_ > 0, self.pooled_sd_, 1.0).astype(float)

    def _standardise(self, x: np.ndarray, age: np.ndarray, sex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ComBat's standardised data (site effects still in) and the mean it removed."""
        mean = self.grand_mean_ + np.column_stack([age, sex]) @ self.covariate_effect_
        return (x - mean) / self._sd, mean

    def arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays (for the bundle's weights file)."""
        return {name: np.asarray(getattr(self, name)) for name in self.ARRAYS}

    def to_dict(self) -> dict[str, Any]:
        """The small, JSON part (for ``model.json``)."""
        return {"kind": "combat", "min_new_site_size": self.min_new_site_size or MIN_NEW_SITE_SIZE,
                "sites": list(self.sites_)}  # fmt: skip

    @classmethod
    def from_parts(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ComBatHarmonizer:
        """Rebuild from :meth:`to_dict` and :meth:`arrays`."""
        out = cls(min_new_site_size=int(meta["min_new_site_size"]), sites_=[str(s) for s in meta["sites"]])
        for name in cls.ARRAYS:
            setattr(out, name, np.asarray(arrays[name]))
        out.varying_ = out.varying_.astype(bool)
        n_sites, n_varying = len(out.sites_), int(out.varying_.sum())
        expected = {"gamma_": (n_sites, n_varying), "delta_": (n_sites, n_varying), "covariate_effect_": (2, n_varying),
                    "grand_mean_": (n_varying,), "pooled_sd_": (n_varying,), "site_mean_age_": (n_sites,)}  # fmt: skip
        for name, shape in expected.items():
            if getattr(out, name).shape != shape:
                raise ValueError(
                    f"harmonisation array {name} has shape {getattr(out, name).shape}, expected {shape}"
                )
        return out
