"""Feature tables: TSV/CSV, column maps, sex parsing, clear errors naming the file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bids_brainage.errors import InputError
from bids_brainage.model.features import Preprocessor, load_table, parse_sex


def test_parse_sex():
    np.testing.assert_array_equal(
        parse_sex(pd.Series(["M", "f", "male", "Female", "1", "0"])), [1, 0, 1, 0, 1, 0]
    )
    np.testing.assert_array_equal(parse_sex(pd.Series([1, 0, 1.0])), [1, 0, 1])
    with pytest.raises(InputError, match="unrecognised"):
        parse_sex(pd.Series(["M", "x"]), "t.tsv")


def test_tsv_and_csv(tmp_path, small_table):
    small_table.to_csv(tmp_path / "t.tsv", sep="\t", index=False, na_rep="n/a")
    small_table.to_csv(tmp_path / "t.csv", index=False)
    a, b = load_table(tmp_path / "t.tsv"), load_table(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns[:4]) == ["participant_id", "age", "sex", "site"]


def test_column_map_for_freesurfer_style_table(tmp_path):
    frame = pd.DataFrame(
        {
            "sub_id": ["a", "b", "c"],
            "age": [20, 30, 40],
            "sex": [0, 1, 0],
            "site": ["x", "x", "y"],
            "lh_thick": [2.5, 2.4, 2.3],
            "TIV": [1.0, 1.1, 1.2],
        }
    )
    frame.to_csv(tmp_path / "fs.csv", index=False)
    (tmp_path / "map.json").write_text(json.dumps({"participant_id": "sub_id", "smri": "*"}))
    table = load_table(tmp_path / "fs.csv", tmp_path / "map.json")
    assert [c for c in table if c.startswith("smri__")] == ["smri__lh_thick", "smri__TIV"]
    assert table["participant_id"].tolist() == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns=["sex"]), "required column 'sex'"),
        (
            lambda f: f.drop(columns=[c for c in f if c.startswith(("smri__", "fmri__"))]),
            "no feature columns",
        ),
        (lambda f: f.assign(age=["x"] + [1.0] * (len(f) - 1)), "column 'age'"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "duplicate"),
    ],
)
def test_errors_name_the_file(tmp_path, small_table, edit, message):
    path = tmp_path / "bad.tsv"
    edit(small_table.copy()).to_csv(path, sep="\t", index=False)
    with pytest.raises(InputError, match=message) as info:
        load_table(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_table(tmp_path / "nope.tsv")


def test_preprocessor_pca_and_missing_rows():
    rng = np.random.default_rng(0)
    x_s, x_f = rng.normal(size=(50, 4)), rng.normal(size=(50, 30))
    x_f[:5] = np.nan
    pre = Preprocessor(n_pca=8).fit(x_s, x_f)
    zs, zf, mask = pre.transform(x_s, x_f)
    assert zs.shape == (50, 4) and zf.shape == (50, 8)
    assert mask[:5].sum() == 0 and mask[5:].all() and not zf[:5].any()
    np.testing.assert_allclose(zf[5:].std(0), 1.0, rtol=0.05)


def test_folded_pca_projection_matches_scale_then_project():
    """The one-matrix fMRI transform equals standardise → impute → project → scale, NaNs included."""
    rng = np.random.default_rng(1)
    x_f = rng.normal(3.0, 2.0, size=(60, 40))
    pre = Preprocessor(n_pca=6).fit(None, x_f)
    new = rng.normal(3.0, 2.0, size=(10, 40))
    new[2, [0, 7]] = np.nan  # isolated missing values: imputed with the training mean
    new[4, 3] = np.inf
    new[6] = np.nan  # no fMRI at all: zero row, mask 0
    _, zf, mask = pre.transform(None, new)
    z = (new - pre.f_mean) / pre.f_scale
    z[~np.isfinite(z)] = 0.0
    expected = (z @ pre.pca_components.T) / pre.pca_scale
    expected[6] = 0.0
    np.testing.assert_allclose(zf, expected, rtol=1e-4, atol=1e-5)
    assert mask.tolist() == [1.0] * 6 + [0.0] + [1.0] * 3
    _, zf32, _ = pre.transform(None, new.astype(np.float32))
    np.testing.assert_allclose(zf32, zf, rtol=1e-6, atol=1e-6)
