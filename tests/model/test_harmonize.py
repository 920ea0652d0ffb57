"""ComBat site harmonisation: the library's fit, training rows only, unseen sites flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_brainage.model.harmonize import MIN_NEW_SITE_SIZE, ComBatHarmonizer, _covars


def _sites(n_per_site=40, n_features=8, seed=0):
    """Features with an age effect and additive + multiplicative site effects."""
    rng = np.random.default_rng(seed)
    sites = np.repeat(["A", "B", "C", "D"], n_per_site)
    age = rng.uniform(20, 80, len(sites))
    sex = rng.integers(0, 2, len(sites)).astype(float)
    shift = {"A": 0.0, "B": 3.0, "C": -2.0, "D": 5.0}
    stretch = {"A": 1.0, "B": 1.5, "C": 0.7, "D": 1.2}
    x = 50 - 0.2 * age[:, None] + rng.normal(0, 1, (len(sites), n_features))
    x = x * np.array([stretch[s] for s in sites])[:, None] + np.array([shift[s] for s in sites])[:, None]
    x[:, -1] = 7.0  # a constant feature (e.g. a structure reported as 0 everywhere)
    return x, sites, age, sex


def test_matches_neuroharmonize_on_training_rows():
    from neuroHarmonize import harmonizationLearn

    x, site, age, sex = _sites()
    harmonizer = ComBatHarmonizer().fit(x, site, age, sex)
    textbook, _ = harmonizer.transform(x, site, age, sex, individual_age=True)
    _, reference = harmonizationLearn(x[:, :-1], _covars(site, age, sex))
    np.testing.assert_allclose(textbook[:, :-1], reference, rtol=1e-4, atol=1e-4)
    mine, status = harmonizer.transform(x, site, age, sex)
    np.testing.assert_array_equal(mine[:, -1], x[:, -1])  # constant feature passed through
    assert set(status) == {"known"}
    # Site means differ before, and hardly after (the age effect is kept).
    before = pd.Series(x[:, 0]).groupby(site).mean()
    after = pd.Series(mine[:, 0]).groupby(site).mean()
    assert before.max() - before.min() > 4 and after.max() - after.min() < 1.5
    assert np.corrcoef(age, mine[:, 0])[0, 1] < -0.8


def test_fitted_on_training_rows_only():
    """Changing a held-out row changes neither the fit nor the other rows' harmonised values."""
    x, site, age, sex = _sites()
    train = np.arange(len(x)) % 4 != 0
    first = ComBatHarmonizer().fit(x[train], site[train], age[train], sex[train])
    changed = x.copy()
    changed[~train] += 100.0
    second = ComBatHarmonizer().fit(changed[train], site[train], age[train], sex[train])
    for name in ComBatHarmonizer.ARRAYS:
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    a, _ = first.transform(x, site, age, sex)
    b, _ = second.transform(changed, site, age, sex)
    np.testing.assert_array_equal(a[train], b[train])


def test_unseen_site_flagged_or_learned_from_its_own_people():
    x, site, age, sex = _sites()
    seen = site != "D"
    harmonizer = ComBatHarmonizer().fit(x[seen], site[seen], age[seen], sex[seen])
    few = np.flatnonzero(~seen)[: MIN_NEW_SITE_SIZE - 1]
    out, status = harmonizer.transform(x[few], site[few], age[few], sex[few])
    assert set(status) == {"unseen"} and np.array_equal(out, x[few])
    many = np.flatnonzero(~seen)
    out, status = harmonizer.transform(x[many], site[many], age[many], sex[many])
    assert set(status) == {"new"}
    reference = pd.Series(harmonizer.transform(x[seen], site[seen], age[seen], sex[seen])[0][:, 0]).mean()
    assert abs(out[:, 0].mean() - reference) < 1.5  # the +5 shift of site D is gone
    missing_sex = sex[many].copy()
    missing_sex[0] = np.nan
    _, status = harmonizer.transform(x[many], site[many], age[many], missing_sex)
    assert status[0] == "missing" and set(status[1:]) == {"new"}


def test_a_persons_own_age_never_reaches_their_features():
    """Harmonised features do not change when a person's age changes (known or new site):
    ComBat's textbook application would write a share of the true age into them."""
    x, site, age, sex = _sites()
    seen = site != "D"
    harmonizer = ComBatHarmonizer().fit(x[seen], site[seen], age[seen], sex[seen])
    other_age = age.copy()
    other_age[::7] += 30.0  # change some people's ages, keep each site's mean age for new sites
    other_age[~seen] = age[~seen] - age[~seen].mean() + age[~seen].mean()
    a, _ = harmonizer.transform(x, site, age, sex)
    b, _ = harmonizer.transform(x, site, other_age, sex)
    np.testing.assert_allclose(a[seen], b[seen])
    textbook_a, _ = harmonizer.transform(x[seen], site[seen], age[seen], sex[seen], individual_age=True)
    textbook_b, _ = harmonizer.transform(x[seen], site[seen], other_age[seen], sex[seen], individual_age=True)
    assert np.abs(textbook_a - textbook_b).max() > 0.1  # the leak this avoids
    # People without an age are harmonised at a known site.
    no_age = np.full(len(x), np.nan)
    c, status = harmonizer.transform(x[seen], site[seen], no_age[seen], sex[seen])
    assert set(status) == {"known"} and np.allclose(c, a[seen])


def test_needs_two_sites():
    x, site, age, sex = _sites()
    with pytest.raises(ValueError, match="two sites"):
        ComBatHarmonizer().fit(x[site == "A"], site[site == "A"], age[site == "A"], sex[site == "A"])


def test_bundle_round_trip_with_combat(small_table, tiny, tmp_path):
    """--harmonize combat: the harmonisers are stored in the bundle and applied at prediction;
    a site the model never saw is flagged."""
    from bids_brainage.model import fit_cross_validated, load_bundle, predict_table, save_bundle

    oof, ensemble, _ = fit_cross_validated(
        small_table, n_folds=3, device="cpu", harmonize="combat", settings=tiny
    )
    assert set(ensemble.harmonizers) == {"smri", "fmri"}
    save_bundle(ensemble, tmp_path / "m")
    loaded = load_bundle(tmp_path / "m", device="cpu")
    assert loaded.harmonizers["smri"].sites_ == ensemble.harmonizers["smri"].sites_
    new = small_table.copy()
    new.loc[:4, "site"] = "elsewhere"
    pred = predict_table(loaded, new)
    np.testing.assert_allclose(
        pred["predicted_age"], predict_table(ensemble, new)["predicted_age"], rtol=1e-5, atol=1e-4
    )
    assert list(pred["site_seen_in_training"][:6]) == [False] * 5 + [True]
    assert set(pred["harmonization"][:5]) == {"unseen"} and pred["harmonization"][5] == "known"
    assert np.isfinite(pred["predicted_age"]).all() and (pred["lower"] >= 0).all()


def test_model_fit_harmonize_through_the_console_script(small_table, tmp_path):
    from console import run_app

    table = tmp_path / "features.tsv"
    small_table.to_csv(table, sep="\t", index=False)
    fit = run_app("model", "fit", table, "--out", tmp_path / "m", "--harmonize", "combat", "--n-folds", "3",
                  "--max-epochs", "3", "--device", "cpu")  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-2000:]
    meta = (tmp_path / "m" / "model.json").read_text()
    assert '"harmonization"' in meta and '"combat"' in meta
    pred = run_app("model", "predict", tmp_path / "m", table, "--out", tmp_path / "p.tsv")
    assert pred.returncode == 0, pred.stderr[-2000:]
    out = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    # The brain-age table schema: every site was in training, so no row is flagged.
    assert set(out["harmonization"]) == {"known"} and not out["flag_unseen_site"].any()


def test_metrics_by_group_has_site_sex_and_tercile_rows():
    from bids_brainage.model.metrics import metrics_by_group

    rng = np.random.default_rng(0)
    n = 90
    age = rng.uniform(20, 80, n)
    frame = pd.DataFrame({"age": age, "predicted_age": age + rng.normal(0, 3, n), "sex": rng.integers(0, 2, n),
                          "site": np.repeat(["a", "b", "c"], n // 3), "corrected_gap": rng.normal(0, 3, n)})  # fmt: skip
    frame["lower"], frame["upper"] = frame["predicted_age"] - 5, frame["predicted_age"] + 5
    rows = metrics_by_group(frame)
    assert set(rows["grouping"]) == {"site", "sex", "age tercile"}
    assert rows.groupby("grouping")["n"].sum().eq(n).all()
    assert rows["median_width"].eq(10).all() and rows["coverage"].between(0, 1).all()
