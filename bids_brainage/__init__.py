"""bids_brainage: brain age from T1w and resting-state fMRI with a sex-aware adversarial VAE."""

__version__ = "0.1.0"
__all__ = ["__version__"]
