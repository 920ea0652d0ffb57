"""Methods text of the group-level model step (:mod:`bids_brainage.compute.brainage`).

Written beside the step it describes, from the values the run used, like the ``__desc__``
of the participant workflows; :mod:`bids_brainage.reports.citation` assembles it.
Citations are ``[key]`` keys of :data:`bids_brainage.reports.citation.REFERENCES`.
"""

from __future__ import annotations

from bids_brainage.defaults import (
    BIAS_CORRECTIONS,
    DEFAULT_ALPHA,
    DEFAULT_BIAS_CORRECTION,
    DEFAULT_HARMONIZE,
    DEFAULT_N_FOLDS,
    INTERVAL_AGE_BINS,
    INTERVAL_MIN_BIN_SIZE,
    PLAUSIBLE_AGE_YEARS,
)

#: Age-bias correction -> (methods wording, reference key).
BIAS_TEXT = {
    "linear": ("a linear bias correction", "beheshti2019"),
    "quadratic": ("a quadratic bias correction", "smith2019"),
}


def device_text(device: str) -> str:
    """How the methods text names ``--device`` (or the device ``brainage.json`` recorded)."""
    return {"auto": "the GPU when one was available, otherwise the CPU", "cuda": "a CUDA GPU"}.get(
        device, "the CPU" if device == "cpu" else device
    )


def interval_methods() -> str:
    """Methods text of the prediction interval, from the defaults the code uses."""
    return (
        f"Prediction intervals ({1 - DEFAULT_ALPHA:.0%}) were obtained by Mondrian split-conformal prediction "
        f"[vovk2005; lei2018] with crepes [bostrom2022], calibrated separately within up to "
        f"{INTERVAL_AGE_BINS} quantile bins of chronological age (at least {INTERVAL_MIN_BIN_SIZE} training "
        f"participants per bin), so that coverage holds at every age and not only on average; bounds are "
        f"clipped to {PLAUSIBLE_AGE_YEARS[0]:g}-{PLAUSIBLE_AGE_YEARS[1]:g} years. Participants without a "
        f"recorded age received a normalised split-conformal interval [papadopoulos2011] whose width follows "
        f"the expected error at the predicted age."
    )


def model_methods(
    *,
    n_folds: int = DEFAULT_N_FOLDS,
    harmonize: str = DEFAULT_HARMONIZE,
    bias_correction: str = DEFAULT_BIAS_CORRECTION,
    device: str = "auto",
    network: str | None = None,
) -> str:
    """Methods text of training and applying the brain-age model with these settings.

    Parameters
    ----------
    n_folds, harmonize, bias_correction, device : int, str, str, str
        ``--n-folds``, ``--harmonize``, ``--bias-correction`` and ``--device`` (or the device
        the fitted model recorded).
    network : str, optional
        The fitted network as ``brainage.json`` records it (``Model``).
    """
    harmonize_text = ""
    if harmonize == "combat":
        harmonize_text = (
            "Site effects on the features were removed with ComBat [johnson2007] as implemented in "
            "neuroHarmonize [pomponio2020], with age and sex protected, fitted on the training data of "
            "each fold only. "
        )
    bias = bias_correction if bias_correction in BIAS_CORRECTIONS else DEFAULT_BIAS_CORRECTION
    bias_text, bias_ref = BIAS_TEXT[bias]
    network_text = f"Each fold's model was: {network}. " if network else ""
    return (
        f"Brain age was estimated with a sex-aware adversarial variational autoencoder (SA-AVAE) "
        f"[saavae] implemented in PyTorch [pytorch], which encodes the structural and functional "
        f"features into shared and modality-specific latent codes and regresses age from them. "
        f"Sex enters the latent model: the encoders are conditioned on sex, the modality-specific codes "
        f"have a sex-conditioned prior with learned means, and the age regressor has one output head per "
        f"sex, so that ageing can differ between women and men. {network_text}"
        f"{harmonize_text}"
        f"Training used {n_folds}-fold cross-validation so that every training participant receives an "
        f"out-of-fold prediction, on {device_text(device)}. The age dependence of the brain-age gap was "
        f"removed with {bias_text} fitted on training data only [{bias_ref}]. {interval_methods()}"
    )
