"""Unusable BOLD runs fail with one clear InputError naming the file; exclusion falls back cleanly."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_brainage.compute.bold import dummy_scans_from_metadata, resolve_dummy_scans, validate_bold
from bids_brainage.compute.connectivity import (
    connectivity_matrix,
    feature_names,
    fisher_z,
    sphere_labels,
)
from bids_brainage.defaults import CONNECTIVITY_KINDS
from bids_brainage.errors import InputError
from bids_brainage.interfaces.connectivity import (
    ConnectivityMatrix,
    DenoiseTimeseries,
    FunctionalFeatures,
    RunQC,
)


def _bids_bold(root, data, affine=None, meta=None):
    func = root / "sub-01" / "func"
    func.mkdir(parents=True, exist_ok=True)
    path = func / "sub-01_task-rest_bold.nii.gz"
    if affine is None or np.any(affine):
        img = nib.Nifti1Image(data, np.diag([3.0, 3.0, 3.0, 1.0]) if affine is None else affine)
    else:
        # nibabel refuses a singular affine in the constructor: put a singular sform in the header.
        img = nib.Nifti1Image(data, None)
        img.header.set_qform(None, code=0)
        img.header.set_sform(np.diag([3.0, 3.0, 0.0, 1.0]), code=1)
    img.to_filename(path)
    (func / "sub-01_task-rest_bold.json").write_text(
        json.dumps({"RepetitionTime": 2.0} if meta is None else meta)
    )
    (root / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.10.0"}))
    return path


def _build(root, path, tmp_path, **options):
    from bids_brainage.workflows.functional import init_func_wf

    return init_func_wf(
        bold_file=str(path), output_dir=str(tmp_path / "out"), subject="01", session=None,
        bids_root=str(root), sloppy=True, omp_nthreads=1, **options,
    )  # fmt: skip


rng = np.random.default_rng(0)
GOOD = rng.normal(100, 1, (8, 8, 8, 30)).astype(np.float32)


@pytest.mark.parametrize(
    ("data", "affine", "meta", "dummy", "message"),
    [
        (GOOD[..., 0], None, None, 0, "4D"),
        (GOOD, None, {"TaskName": "rest"}, 0, "RepetitionTime"),
        (GOOD[..., :5], None, None, 0, "too few volumes"),
        (np.where(GOOD > 101, np.nan, GOOD).astype(np.float32), None, None, 0, "NaN"),
        (GOOD, np.zeros((4, 4)), None, 0, "affine"),
        (GOOD, np.diag([3.0, 3.0, 3.0, 1.0]), {"RepetitionTime": -2}, 0, "positive"),
        (GOOD, None, {"RepetitionTime": 2000}, 0, "milliseconds? BIDS wants seconds: 2"),
        (GOOD, None, {"RepetitionTime": 1e9}, 0, "outside the plausible 0.1-10 s"),
        (GOOD, None, {"RepetitionTime": 0.002}, 0, "outside the plausible 0.1-10 s"),
        (GOOD, None, None, -5, "dummy scans must be >= 0"),
        (GOOD, None, {"RepetitionTime": 2.0, "NumberOfDummyScans": 25}, None, "too few volumes: 30 (25 dummy)"),
    ],
    ids=[
        "3d", "no-tr", "few-volumes", "nan", "broken-affine", "negative-tr", "tr-in-ms", "tr-huge",
        "tr-tiny", "negative-dummy", "metadata-dummy",
    ],
)  # fmt: skip
def test_bad_bold_raises_input_error(tmp_path, data, affine, meta, dummy, message):
    """The one BOLD check (with the one dummy-scan rule) names the file and the reason."""
    from bids_brainage.bids import sidecar_metadata

    root = tmp_path / "bids"
    path = _bids_bold(root, data, affine, meta)
    metadata = sidecar_metadata(root, path)
    with pytest.raises(InputError) as err:
        validate_bold(str(path), metadata, resolve_dummy_scans(metadata, dummy))
    assert str(path) in str(err.value) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_good_bold_builds_and_dummy_scans(tmp_path):
    root = tmp_path / "bids"
    path = _bids_bold(root, GOOD, meta={"RepetitionTime": 2.0, "NumberOfVolumesDiscardedByUser": 4})
    wf = _build(root, path, tmp_path)
    assert wf.get_node("prepare_bold").inputs.dummy_scans == 4
    assert wf.get_node("prepare_bold").inputs.tr == 2.0
    assert wf.get_node("hmc") is not None
    assert dummy_scans_from_metadata({}) == 0
    meta = {"RepetitionTime": 2.0, "NumberOfVolumesDiscardedByUser": 4}
    assert resolve_dummy_scans(meta, None) == 4 and resolve_dummy_scans(meta, 0) == 0
    img, tr = validate_bold(str(path), {"RepetitionTime": 2.0}, 0)
    assert tr == 2.0 and img.shape[-1] == 30


def test_a_bold_run_is_validated_in_one_place_only():
    """One check per run: validate_bold is called from run_subject alone (it used to run three
    times with different dummy-scan rules, so a run passing the first could abort the subject
    in a later one). The builder reads the sidecar but does not load the series."""
    import bids_brainage

    package = Path(bids_brainage.__file__).parent
    calls = [
        f"{path.relative_to(package)}:{number}"
        for path in sorted(package.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "validate_bold(" in line and "def validate_bold(" not in line
    ]
    assert len(calls) == 1 and calls[0].startswith(f"cli{os.sep}participant.py:"), calls


def test_the_builder_does_not_validate(tmp_path):
    """A run the check would refuse (NaNs) still builds: checking is run_subject's job."""
    root = tmp_path / "bids"
    path = _bids_bold(root, np.where(GOOD > 101, np.nan, GOOD).astype(np.float32))
    assert _build(root, path, tmp_path).get_node("prepare_bold") is not None


def test_sphere_labels_never_empty():
    # 3 mm grid, centres between voxels, radius smaller than a voxel: each ROI still gets a voxel.
    ijk = np.indices((10, 10, 10)).transpose(1, 2, 3, 0) * 3.0
    coords = np.array([[4.4, 4.4, 4.4], [13.4, 13.4, 13.4], [20.0, 5.0, 9.0]])
    labels = sphere_labels(ijk, np.ones((10, 10, 10), bool), coords, radius=1.0)
    assert set(np.unique(labels)) == {0, 1, 2, 3}


def _fc_inputs(tmp_path, fd):
    n_t = len(fd)
    shape = (6, 6, 6)
    t = np.arange(n_t) * 2.0
    shared = np.sin(2 * np.pi * 0.05 * t)
    data = rng.normal(1000, 5, (*shape, n_t)).astype(np.float32)
    labels = np.zeros(shape, np.int16)
    labels[:2], labels[2:4], labels[4:] = 1, 2, 3
    data[labels == 1] += 20 * shared
    data[labels == 2] += 20 * shared
    nib.Nifti1Image(data, np.eye(4)).to_filename(tmp_path / "bold.nii")
    nib.Nifti1Image(labels, np.eye(4)).to_filename(tmp_path / "atlas.nii")
    pd.DataFrame({"index": [1, 2, 3], "name": ["a", "b", "c"], "network": ["x", "x", "y"]}).to_csv(
        tmp_path / "atlas.tsv", sep="\t", index=False
    )
    conf = {
        f"{p}": rng.normal(0, 0.01, n_t) for p in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
    }
    conf |= {
        "white_matter": rng.normal(size=n_t),
        "csf": rng.normal(size=n_t),
        "global_signal": rng.normal(size=n_t),
    }
    conf |= {"framewise_displacement": fd, "dvars": np.abs(rng.normal(size=n_t)), "std_dvars": np.ones(n_t)}
    pd.DataFrame(conf).to_csv(tmp_path / "conf.tsv", sep="\t", index=False)
    return tmp_path


def _run_fc_nodes(tmp_path):
    """The functional workflow's denoise -> connectivity -> run_qc -> features nodes, in turn;
    returns their outputs merged."""
    atlas_tsv = str(tmp_path / "atlas.tsv")
    out = {}
    for step in ("denoise", "connectivity", "run_qc", "features"):
        (tmp_path / step).mkdir()
    out |= DenoiseTimeseries(
        bold=str(tmp_path / "bold.nii"), atlas_file=str(tmp_path / "atlas.nii"), atlas_tsv=atlas_tsv,
        confounds=str(tmp_path / "conf.tsv"), tr=2.0,
    ).run(cwd=str(tmp_path / "denoise")).outputs.get()  # fmt: skip
    out |= (
        ConnectivityMatrix(timeseries_array=out["timeseries_array"], atlas_tsv=atlas_tsv)
        .run(cwd=str(tmp_path / "connectivity"))
        .outputs.get()
    )
    out |= RunQC(
        confounds=str(tmp_path / "conf.tsv"), n_rois=out["n_rois"], missing_rois=out["missing_rois"],
        band_pass_applied=out["band_pass_applied"], tsnr=50.0, min_volumes=40,
    ).run(cwd=str(tmp_path / "run_qc")).outputs.get()  # fmt: skip
    out |= FunctionalFeatures(
        relmat_array=out["relmat_array"], atlas_tsv=atlas_tsv, participant_id="sub-01",
        excluded=out["excluded"], qc=out["qc"], regressors=out["regressors"],
    ).run(cwd=str(tmp_path / "features")).outputs.get()  # fmt: skip
    return SimpleNamespace(**out)


def test_connectivity_features_and_usable_run(tmp_path):
    res = _run_fc_nodes(_fc_inputs(tmp_path, np.full(120, 0.1)))
    feats = pd.read_csv(res.features_tsv, sep="\t")
    assert list(feats.columns) == ["participant_id", *feature_names(["a", "b", "c"])]
    assert feats["fmri__a__b"].iloc[0] > 1.0  # shared signal -> large Fisher z
    assert abs(feats["fmri__a__c"].iloc[0]) < 0.5
    assert res.excluded is False
    # The relmat derivative as XCP-D writes it: Node column, raw r, unit diagonal, symmetric.
    relmat = pd.read_csv(res.relmat, sep="\t")
    assert list(relmat.columns) == ["Node", "a", "b", "c"] and list(relmat["Node"]) == ["a", "b", "c"]
    r = relmat[["a", "b", "c"]].to_numpy()
    assert np.allclose(np.diag(r), 1.0) and np.allclose(r, r.T) and np.abs(r).max() <= 1.0
    assert r[0, 1] > 0.7  # shared signal, as r
    # The features are the Fisher z of the same matrix (the TSVs keep 5 significant digits).
    assert np.isclose(feats["fmri__a__b"].iloc[0], np.arctanh(r[0, 1]), rtol=1e-3)
    # No volume censored: the outliers file is all 0, one row per volume.
    outliers = pd.read_csv(res.outliers, sep="\t")
    assert list(outliers.columns) == ["framewise_displacement"] and len(outliers) == 120
    assert outliers["framewise_displacement"].sum() == 0


@pytest.mark.parametrize(
    ("fd", "reason"),
    [
        (np.r_[np.full(70, 0.9), np.full(50, 0.1)], "scrubbed"),
        (np.r_[np.full(30, 0.1), np.full(5, 0.9)], "usable volumes"),
    ],
    ids=["too-much-motion", "too-few-volumes"],
)
def test_excluded_run_falls_back(tmp_path, fd, reason):
    from bids_brainage.gather import _functional_usable

    res = _run_fc_nodes(_fc_inputs(tmp_path, fd))
    assert res.excluded is True and reason in res.exclusion_reason
    # The censoring mask marks exactly the volumes above the FD threshold (0.5 mm).
    outliers = pd.read_csv(res.outliers, sep="\t")["framewise_displacement"].to_numpy()
    np.testing.assert_array_equal(outliers, (fd > 0.5).astype(int))
    assert json.loads(open(res.outliers_json).read())["Threshold"]["framewise_displacement"] == 0.5
    feats = pd.read_csv(res.features_tsv, sep="\t")
    assert feats.filter(like="fmri__").isna().all(axis=None)  # nothing the model could use
    meta = json.loads(open(res.features_json).read())
    assert meta["QC"]["excluded"] is True and reason in meta["QC"]["exclusion_reason"]
    # The group level reads the sidecar and falls back to structural-only for this run.
    out = tmp_path / "sub-01_task-rest_desc-functional_features.tsv"
    out.write_text(open(res.features_tsv).read())
    out.with_suffix(".json").write_text(json.dumps(meta))
    usable, why = _functional_usable(out)
    assert not usable and reason in why


@pytest.mark.parametrize("kind", list(CONNECTIVITY_KINDS))
def test_every_offered_connectivity_works_on_one_run(kind):
    """Each measure the command line offers is defined for a single subject's run."""
    t = np.arange(120) * 2.0
    shared = np.sin(2 * np.pi * 0.05 * t)
    ts = rng.normal(size=(120, 4))
    ts[:, :2] += 2 * shared[:, None]
    mat = connectivity_matrix(ts, kind)
    assert mat.shape == (4, 4) and np.all(np.isfinite(mat)) and np.all(np.diag(mat) == 1)
    assert np.allclose(mat, mat.T) and np.abs(mat).max() <= 1.0
    assert mat[0, 1] > 0.3  # the shared signal shows
    z = fisher_z(mat)  # the features' scale
    assert np.all(np.diag(z) == 0) and np.isclose(z[0, 1], np.arctanh(mat[0, 1]))


def test_tangent_is_not_offered_and_spellings_are_accepted():
    from bids_brainage.cli.parser import build_parser

    assert "tangent" not in CONNECTIVITY_KINDS
    parser = build_parser()
    args = parser.parse_args(["b", "o", "participant", "--connectivity", "partial correlation"])
    assert args.connectivity == "partial-correlation"
    with pytest.raises(SystemExit):
        parser.parse_args(["b", "o", "participant", "--connectivity", "tangent"])
    with pytest.raises(SystemExit):
        parser.parse_args(["b", "o", "participant", "--dummy-scans", "-5"])


def test_censored_volumes_get_motion_outlier_columns():
    from bids_brainage.compute.confounds import motion_outliers

    fd = np.array([np.nan, 0.1, 0.7, 0.2, 0.9])
    spikes = motion_outliers(fd, 0.5)
    assert list(spikes.columns) == ["motion_outlier00", "motion_outlier01"]
    assert spikes["motion_outlier00"].tolist() == [0, 0, 1, 0, 0]
    assert spikes["motion_outlier01"].tolist() == [0, 0, 0, 0, 1]
    assert motion_outliers(fd, 1.0).shape == (5, 0)


def test_random_seed_reaches_every_registration(tmp_path):
    """--random-seed seeds the registrations through the nodes' inputs (it was a constant)."""
    from bids_brainage.compute.registration import registration_seed
    from bids_brainage.workflows.anatomical import init_anat_wf

    anat = init_anat_wf(
        output_dir=str(tmp_path / "out"), subject="01", session=None, bids_root=str(tmp_path),
        sloppy=True, omp_nthreads=1, random_seed=7,
    )  # fmt: skip
    assert anat.get_node("initial_brain_mask").inputs.random_seed == 7
    assert anat.get_node("register").inputs.random_seed == 7
    root = tmp_path / "bids"
    path = _bids_bold(root, GOOD)
    func = _build(root, path, tmp_path, random_seed=7)
    assert func.get_node("coreg").inputs.random_seed == 7
    assert registration_seed(0) == 1 and registration_seed(7) == 8


def test_fmriprep_outputs_found_for_a_symlinked_datalad_bold(tmp_path):
    """--derivatives fmriprep on a DataLad dataset: the BOLD is a symlink into the annex, and
    the fMRIPrep outputs are looked up by the link's BIDS location, not the annex object's."""
    from bids_brainage.compute.fmriprep import find_fmriprep_run

    root, prep = tmp_path / "bids", tmp_path / "fmriprep"
    annexed = root / ".git" / "annex" / "objects" / "Xy" / "SHA256E-s1--abc.nii.gz"
    annexed.parent.mkdir(parents=True)
    annexed.write_bytes(b"x")
    func = root / "sub-01" / "func"
    func.mkdir(parents=True)
    bold = func / "sub-01_task-rest_bold.nii.gz"
    bold.symlink_to(os.path.relpath(annexed, func))
    out = prep / "sub-01" / "func"
    out.mkdir(parents=True)
    for name in ("space-T1w_desc-preproc_bold.nii.gz", "desc-confounds_timeseries.tsv",
                 "from-boldref_to-T1w_mode-image_desc-coreg_xfm.txt"):  # fmt: skip
        (out / f"sub-01_task-rest_{name}").write_text("x")
    found = find_fmriprep_run(prep, str(bold), root)
    assert found is not None and found["bold"].endswith("sub-01_task-rest_space-T1w_desc-preproc_bold.nii.gz")
