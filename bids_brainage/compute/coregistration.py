"""Rigid BOLD -> T1w coregistration (no nipype; wrapped by :mod:`bids_brainage.interfaces.functional`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from bids_brainage.compute.registration import seeded_registration


def coregister_bold(
    boldref: str,
    bold_mask: str,
    t1w_brain: str,
    sloppy: bool,
    omp_nthreads: int,
    random_seed: int,
    out_dir: str,
) -> dict[str, Any]:
    """Rigid BOLD->T1w registration with ANTs (Mattes mutual information, EPI vs T1w brain).

    The T1w brain is resampled to the BOLD voxel size (at least 3 mm) first: a 3 mm EPI carries
    no finer information, and registration then takes seconds. Writes the ANTs transform
    (``apply_transforms(fixed=T1w, moving=boldref, [xfm])`` maps BOLD to T1w) and the boldref
    resampled into the T1w grid in ``out_dir``; returns ``xfm`` (ITK binary ``.mat``, which
    ``ants.apply_transforms`` can invert), ``xfm_txt`` (the same transform as ITK text, the
    derivative, as fMRIPrep writes it) and ``boldref_t1w``.
    """
    import ants

    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", str(omp_nthreads))
    t1w = ants.image_read(t1w_brain)
    # A 3 mm EPI carries nothing finer than ~3 mm: register at the BOLD resolution (>= 2 mm).
    bold_vox = max(3.0, float(np.min(ants.image_read(boldref).spacing)))
    fixed = ants.resample_image(t1w, (bold_vox,) * 3, use_voxels=False, interp_type=0)
    bref = ants.image_read(boldref)
    mask = ants.image_read(bold_mask)
    moving = bref * mask
    reg = seeded_registration(
        ants,
        fixed=fixed,
        moving=moving,
        type_of_transform="Rigid",
        aff_metric="mattes",
        aff_iterations=(50, 25) if sloppy else (100, 50),
        aff_shrink_factors=(2, 1),
        aff_smoothing_sigmas=(1, 0),
        aff_sampling=32,
        aff_random_sampling_rate=0.5,
        outprefix=os.path.join(out_dir, "coreg_"),
        random_seed=random_seed,
    )
    xfm = os.path.join(out_dir, "from-boldref_to-T1w_xfm.mat")
    os.replace(reg["fwdtransforms"][0], xfm)
    xfm_txt = os.path.join(out_dir, "from-boldref_to-T1w_xfm.txt")
    ants.write_transform(ants.read_transform(xfm), xfm_txt)
    warped = ants.apply_transforms(fixed=t1w, moving=bref, transformlist=[xfm], interpolator="linear")
    out = os.path.join(out_dir, "boldref_t1w.nii.gz")
    warped.to_filename(out)
    return dict(xfm=xfm, xfm_txt=xfm_txt, boldref_t1w=out)
