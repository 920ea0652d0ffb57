"""ComBat site harmonisation (neuroHarmonize), fitted on training rows only.

Age and sex are protected covariates: ComBat removes each site's additive and multiplicative
effect on every feature after modelling the feature's dependence on age and sex, so the age
signal the model learns is kept. The fitted model is applied unchanged to known sites. A site
the model has never seen is learned from that site's own people when it has at least
:data:`MIN_NEW_SITE_SIZE` people with age and sex (the training fit stays fixed: grand mean,
pooled variance and the age and sex effects; only the new site's location and scale are
estimated, without the empirical-Bayes shrinkage); otherwise its people are left
unharmonised and flagged. This step is written here because neuroHarmonize 2.5.2's own
route for it (``harmonizationLearn(..., orig_model=...)``) fails with a shape error when it
is given the new site's rows alone, and its ``harmonizationApply`` raises an IndexError unless
every training site is among the rows (so one person could not be harmonised); both were
measured on FCON1000 with one site held out. The adjustment applied to a known site is
ComBat's, with neuroHarmonize's fitted empirical-Bayes parameters, and reproduces
``harmonizationLearn``'s own output on the training rows (``tests/model/test_harmonize.py``).
Only the arrays this needs are kept (the training design matrix would make a bundle
megabytes larger). Harmonising needs each person's age (a protected
covariate): people without one are left unharmonised and flagged too.
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
        People an unseen site needs to be harmonised from its own data.

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

    min_new_site_size: int = MIN_NEW_SITE_SIZE
    sites_: list[str] = field(default_factory=list)
    varying_: np.ndarray | None = field(default=None, repr=False)
    grand_mean_: np.ndarray | None = field(default=None, repr=False)
    pooled_sd_: np.ndarray | None = field(default=None, repr=False)
    covariate_effect_: np.ndarray | None = field(default=None, repr=False)
    gamma_: np.ndarray | None = field(default=None, repr=False)
    delta_: np.ndarray | None = field(default=None, repr=False)

    #: Arrays stored in a model bundle's weights file.
    ARRAYS = ("varying_", "grand_mean_", "pooled_sd_", "covariate_effect_", "gamma_", "delta_")

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
        return self

    def transform(
        self, x: np.ndarray, site: np.ndarray, age: np.ndarray, sex: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Harmonise rows; returns the features and a status per row.

        Status: ``known`` (a training site), ``new`` (an unseen site learned from its own
        rows), ``unseen`` (an unseen site with too few people: left as is), ``missing`` (age,
        sex or a feature missing: left as is).
        """
        x = np.array(x, float)
        site = np.asarray(site).astype(str)
        age, sex = np.asarray(age, float), np.asarray(sex, float)
        status = np.full(len(x), "known", dtype=object)
        usable = np.isfinite(age) & np.isfinite(sex) & np.isfinite(x).all(axis=1)
        status[~usable] = "missing"
        known = usable & np.isin(site, self.sites_)
        cols = self.varying_
        for index, name in enumerate(self.sites_):
            rows = known & (site == name)
            if rows.any():
                standardised, mean = self._standardise(x[np.ix_(rows, cols)], age[rows], sex[rows])
                adjusted = (standardised - self.gamma_[index]) / np.sqrt(self.delta_[index])
                x[np.ix_(rows, cols)] = adjusted * self._sd + mean
        for new_site in sorted(set(site[usable & ~known])):
            rows = usable & (site == new_site)
            if rows.sum() < self.min_new_site_size:
                status[rows] = "unseen"
                LOGGER.warning(
                    "site %s: %d people, fewer than %d: not harmonised (a site the model never saw)",
                    new_site,
                    rows.sum(),
                    self.min_new_site_size,
                )
                continue
            # The site's own location and scale, the training fit held fixed (no EB shrinkage).
            standardised, mean = self._standardise(x[np.ix_(rows, cols)], age[rows], sex[rows])
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
        return {"kind": "combat", "min_new_site_size": self.min_new_site_size, "sites": list(self.sites_)}

    @classmethod
    def from_parts(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> ComBatHarmonizer:
        """Rebuild from :meth:`to_dict` and :meth:`arrays`."""
        out = cls(min_new_site_size=int(meta["min_new_site_size"]), sites_=[str(s) for s in meta["sites"]])
        for name in cls.ARRAYS:
            setattr(out, name, np.asarray(arrays[name]))
        out.varying_ = out.varying_.astype(bool)
        n_sites, n_varying = len(out.sites_), int(out.varying_.sum())
        expected = {"gamma_": (n_sites, n_varying), "delta_": (n_sites, n_varying), "covariate_effect_": (2, n_varying),
                    "grand_mean_": (n_varying,), "pooled_sd_": (n_varying,)}  # fmt: skip
        for name, shape in expected.items():
            if getattr(out, name).shape != shape:
                raise ValueError(
                    f"harmonisation array {name} has shape {getattr(out, name).shape}, expected {shape}"
                )
        return out
