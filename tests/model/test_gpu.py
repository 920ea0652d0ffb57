"""The CUDA path (mixed precision). Runs only with a GPU; the same code is tested on CPU elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bids_brainage.model import fit_cross_validated, load_bundle, predict_table, save_bundle
from bids_brainage.model.train import TrainSettings


@pytest.mark.gpu
def test_cuda_fit_predict_round_trip(small_table, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    oof, ens, _ = fit_cross_validated(
        small_table, n_folds=2, device="cuda", settings=TrainSettings(max_epochs=5, batch_size=64)
    )
    assert ens.models[0].device_.type == "cuda"
    assert np.isfinite(oof["predicted_age"]).all()
    save_bundle(ens, tmp_path / "m")
    a = predict_table(ens, small_table)["predicted_age"].to_numpy()
    b = predict_table(load_bundle(tmp_path / "m", device="cpu"), small_table)["predicted_age"].to_numpy()
    np.testing.assert_allclose(a, b, atol=0.5)  # bf16 autocast on GPU vs fp32 on CPU
