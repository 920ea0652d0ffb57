"""``ants.registration`` with an explicit sampling seed, for every registration the app runs."""

from __future__ import annotations

from typing import Any


def registration_seed(random_seed: int) -> int:
    """antsRegistration's ``--random-seed`` for the app's ``--random-seed`` (0 -> 1: ANTs
    treats a seed of 0 as "not given" in places, so the two are offset by one)."""
    return int(random_seed) + 1


def seeded_registration(ants: Any, *args: Any, random_seed: int, **kwargs: Any) -> dict[str, Any]:
    """``ants.registration(*args, **kwargs)`` with antsRegistration's ``--random-seed`` set.

    Rigid and affine stages sample the metric at jittered regular points, seeded from the
    clock unless ``--random-seed`` is given (antspyx adds it only when
    ``ants.config._random_seed`` is set). Unseeded, pumi sub-001's first-pass affine, hence its
    brain mask and classes, changed run to run (GM median 276 in one run, 260 in the next; CSF
    152 vs 232), and so did the BOLD->T1w coregistration and with it the ROIs the BOLD covers.
    The seed comes from the app's ``--random-seed`` through the nodes' inputs, so nipype's cache
    reruns a registration when the seed changes.
    """
    previous = ants.config._random_seed
    ants.config._random_seed = registration_seed(random_seed)
    try:
        return ants.registration(*args, **kwargs)
    finally:
        ants.config._random_seed = previous
