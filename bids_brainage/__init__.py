"""bids_brainage: brain age from T1w and resting-state fMRI with a sex-aware adversarial VAE."""

import os

# nipype asks the internet for its latest version when imported outside a script (e.g. in
# a forkserver process), and hangs where there is no network; nothing is fetched at run time.
os.environ.setdefault("NIPYPE_NO_ET", "1")

__version__ = "0.1.0"
__all__ = ["__version__"]
