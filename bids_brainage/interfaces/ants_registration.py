"""``ants.registration`` with a constant sampling seed, for every registration the app runs."""

from __future__ import annotations

from typing import Any

#: Seed of antsRegistration's random sampling (``--random-seed``).
REGISTRATION_SEED = 1


def seeded_registration(ants: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``ants.registration(*args, **kwargs)`` with antsRegistration's ``--random-seed`` set.

    Rigid and affine stages sample the metric at jittered regular points, seeded from the
    clock unless ``--random-seed`` is given (antspyx adds it only when
    ``ants.config._random_seed`` is set). Unseeded, pumi sub-001's first-pass affine, hence its
    brain mask and classes, changed run to run (GM median 276 in one run, 260 in the next; CSF
    152 vs 232), and so did the BOLD->T1w coregistration and with it the ROIs the BOLD covers.
    """
    previous = ants.config._random_seed
    ants.config._random_seed = REGISTRATION_SEED
    try:
        return ants.registration(*args, **kwargs)
    finally:
        ants.config._random_seed = previous
