"""T1w generation: aged tissue maps in MNI space, warped into a posed native head, imaged.

Tissue change is modelled where it happens: grey matter is converted to CSF (atrophy,
regional rates) or gained from adjacent white matter (the thicker cortex of children);
ventricles grow through a smooth warp that compresses the surrounding white matter.
All truth volumes are sums of the very partial-volume maps used to synthesise the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bids_brainage.simulate.cohort import Subject, Visit, subject_rng
from bids_brainage.simulate.config import SimulationConfig
from bids_brainage.simulate.lifespan import (
    grey_matter_factor,
    intracranial_factor,
    ventricle_factor,
    white_matter_factor,
)
from bids_brainage.simulate.rigid import centred_affine, grid_points
from bids_brainage.simulate.sites import Site
from bids_brainage.simulate.space import Reference, ventricle_flow
from bids_brainage.simulate.warp import SubjectWarp, random_field

T1W_FOV_MM = (200.0, 240.0, 208.0)
# Head scale giving a mean female adult TIV of about 1.35 L from the 1.9 L template.
BASE_SCALE = (1350.0 / 1895.0) ** (1 / 3)
MALE_TIV_RATIO = 1.10
TIV_LOG_SD = 0.08
REGION_LOG_SD = 0.05
#: Grey-matter volume change per SD of the latent ``reserve`` trait (log scale; an assumption
#: of the simulator: 4 %, half the between-person SD of head size, about 9 years of adult
#: decline). The same trait raises within-network connectivity (``connectivity.py``).
RESERVE_GM = 0.04
CHUNK = 1_500_000


@dataclass(frozen=True)
class SubjectTraits:
    """Per-subject constants (the same at every session)."""

    tiv_factor: float  # subject TIV / mean female adult TIV, at adult age
    anisotropy: np.ndarray  # (3,) head shape factors
    field: np.ndarray  # random displacement field
    region_factor: np.ndarray  # per-DK-region GM multiplier (index 0 = unlabelled)


def subject_traits(
    cfg: SimulationConfig, subject: Subject, n_regions: int, with_field: bool = True
) -> SubjectTraits:
    """Draw the subject's individual anatomy (stream 1 of its random generator).

    The deformation field is drawn last, so feature-level mode can skip it
    (``with_field=False``) and still get the same head size and regional volumes.
    """
    rng = subject_rng(cfg.seed, subject.index, 1)
    sex_ratio = MALE_TIV_RATIO if subject.sex == "M" else 1.0
    tiv = sex_ratio * float(np.exp(rng.normal(0.0, TIV_LOG_SD)))
    aniso = np.exp(rng.normal(0.0, 0.03, 3))
    aniso /= np.prod(aniso) ** (1 / 3)
    region = np.exp(rng.normal(0.0, REGION_LOG_SD, n_regions + 1)).astype(np.float32)
    region[0] = 1.0
    field = random_field(rng) if with_field else np.zeros((3, 1, 1, 1), np.float32)
    return SubjectTraits(tiv, aniso, field, region)


def visit_warp(
    cfg: SimulationConfig, subject: Subject, visit_index: int, traits: SubjectTraits, ref: Reference
) -> SubjectWarp:
    """Native-to-MNI mapping at one visit: new head pose, aged head size and ventricles."""
    visit = subject.visits[visit_index]
    rng = subject_rng(cfg.seed, subject.index, 10 + visit_index)
    pose = np.concatenate([rng.normal(0.0, 4.0, 3), np.deg2rad(rng.normal(0.0, 4.0, 3))])
    size = traits.tiv_factor * float(intracranial_factor(visit.biological_age))
    scale = BASE_SCALE * size ** (1 / 3) * traits.anisotropy
    alpha = ventricle_alpha(float(ventricle_factor(visit.biological_age, subject.sex, subject.pace)))
    disp, box = ventricle_flow(ref, alpha) if alpha else (None, None)
    return SubjectWarp(
        pose=pose, scale=scale, field=traits.field, alpha=alpha, vent_disp=disp, vent_affine=box
    )


# Ventricle volume ratio reached by the flow of strength alpha (measured once on the 2 mm
# reference; the 1 mm one agrees within a few percent). The truth tables record the volume
# actually produced, so this only steers the ageing curve.
_ALPHA_TABLE = np.array([-3.0, -1.0, 0.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0])
_RATIO_TABLE = np.array([0.596, 0.85, 1.0, 1.383, 1.827, 2.92, 4.166, 5.405, 7.539, 9.167])


def ventricle_alpha(ratio: float) -> float:
    """Flow strength that scales the ventricles by ``ratio``."""
    return float(np.interp(ratio, _RATIO_TABLE, _ALPHA_TABLE))


def regional_gm_factor(
    subject: Subject, visit: Visit, traits: SubjectTraits, region_rate: np.ndarray
) -> np.ndarray:
    """Grey-matter volume factor per Desikan-Killiany label (index 0 = unlabelled) at ``visit``.

    The lifespan curve (age, sex, regional rate, pace) times the subject's regional factors
    and its latent reserve; image and feature modes both use this.
    """
    curve = grey_matter_factor(visit.biological_age, subject.sex, region_rate, subject.pace)
    return curve * traits.region_factor * np.exp(RESERVE_GM * subject.reserve)


def aged_tissues(
    ref: Reference, subject: Subject, visit: Visit, traits: SubjectTraits
) -> dict[str, np.ndarray]:
    """GM, WM, CSF and ventricular-CSF maps of the subject's brain in MNI space at ``visit``.

    Each Desikan-Killiany region (and the unlabelled rest) changes its grey-matter volume
    by its ageing factor. The change happens where it does in real brains, not spread over
    every voxel: loss (atrophy) turns the grey matter nearest CSF into CSF, so the cortex
    thins from its pial side and the sulci widen; gain (the thicker cortex of children)
    turns the white matter of the voxels richest in grey matter into grey matter, so the
    grey/white boundary moves inwards. Whole voxels convert in that order until the
    region's change is reached (the last one partly), so the regional volumes are exactly
    those of the lifespan curves (as in feature-level mode). The late-life white-matter
    loss (:func:`~bids_brainage.simulate.lifespan.white_matter_factor`) turns the white
    matter nearest CSF, that is around the ventricles, into CSF.
    """
    factor = regional_gm_factor(subject, visit, traits, ref.region_rate)
    n_labels = len(ref.region_rate)
    gm, wm, csf = (a.reshape(-1) for a in (ref.gm, ref.wm, ref.csf))
    flat_dk = ref.dk.reshape(-1)
    change = np.bincount(flat_dk, weights=gm, minlength=n_labels) * (factor - 1.0)
    loss = _converted(gm, flat_dk, ref.loss_order, np.clip(-change, 0, None))
    gain = _converted(wm, flat_dk, ref.gain_order, np.clip(change, 0, None))
    wm_left = wm - gain
    wm_target = float(wm_left.sum(dtype=np.float64)) * (
        1.0 - float(white_matter_factor(visit.biological_age, subject.sex, subject.pace))
    )
    wm_loss = (
        _converted(wm_left, np.zeros(wm.size, np.int8), ref.wm_loss_order, np.array([wm_target]))
        if wm_target > 0
        else 0.0
    )
    shape = ref.gm.shape
    gm_new = (gm + gain - loss).reshape(shape)
    wm_new = (wm_left - wm_loss).reshape(shape)
    csf_new = (csf + loss + wm_loss).reshape(shape)
    return {"GM": gm_new, "WM": wm_new, "CSF": csf_new, "ventricles": csf_new * ref.ventricles}


def _converted(tissue: np.ndarray, labels: np.ndarray, order: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Amount of ``tissue`` (flat) converted per voxel so that label ``k`` loses ``target[k]``.

    Voxels are taken whole in ``order`` (sorted by label, then priority), the last one of
    each label partly; a label cannot lose more than it has.
    """
    values = tissue[order].astype(np.float64)
    lab = labels[order]
    cum = np.cumsum(values)
    # Cumulative amount within each label, before each voxel.
    starts = np.searchsorted(lab, np.arange(len(target)))
    offset = np.r_[0.0, cum][starts]
    before = cum - values - offset[lab]
    take = np.clip(target[lab] - before, 0.0, values)
    out = np.zeros(tissue.shape, np.float32)
    out[order] = take
    return out


@dataclass
class AnatomyResult:
    """A simulated T1w image and its ground truth, on the native grid."""

    affine: np.ndarray
    t1w: np.ndarray  # int16
    tissues: dict[str, np.ndarray]  # GM, WM, CSF partial volumes (float32)
    dk: np.ndarray  # int16 labels
    volumes: dict[str, float]  # mm^3


def sample(
    ref: Reference, maps: dict[str, np.ndarray], mni: np.ndarray, order: int = 1
) -> dict[str, np.ndarray]:
    """Sample reference-grid arrays at MNI points (3, N)."""
    vox = ref.world_to_voxel(mni)
    return {
        k: ndimage.map_coordinates(v, vox, order=order, cval=0.0, prefilter=False) for k, v in maps.items()
    }


def sample_grid(
    ref: Reference,
    warp: SubjectWarp,
    shape: tuple[int, int, int],
    affine: np.ndarray,
    maps: dict,
    labels: dict,
) -> dict[str, np.ndarray]:
    """Sample ``maps`` (linear) and ``labels`` (nearest) on a native grid.

    Works in slabs to bound memory, and only warps points that land near the template
    head: the rest of the field of view is air (zero).
    """
    out = {k: np.zeros(shape, np.float32) for k in maps} | {k: np.zeros(shape, np.int16) for k in labels}
    step = max(1, CHUNK // (shape[1] * shape[2]))
    for start in range(0, shape[0], step):
        stop = min(shape[0], start + step)
        slab = (stop - start, shape[1], shape[2])
        sub_affine = affine.copy()
        sub_affine[:3, 3] = affine[:3, :3] @ np.array([start, 0, 0]) + affine[:3, 3]
        approx = warp.affine_part(grid_points(slab, sub_affine))
        keep = np.flatnonzero(ref.in_support(approx))
        mni = warp.nonlinear_part(approx[:, keep])
        for group, order in ((maps, 1), (labels, 0)):
            for k, v in sample(ref, group, mni, order=order).items():
                out[k][start:stop].reshape(-1)[keep] = v
    return out


def bias_field(shape: tuple[int, int, int], rng: np.random.Generator, amplitude: float = 0.1) -> np.ndarray:
    """Smooth multiplicative intensity non-uniformity within ``1 +- amplitude``."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    log_b = np.zeros(shape, np.float32)
    for i in range(3):
        for j in range(3):
            for k in range(3 - i - j):
                if i + j + k == 0:
                    continue
                c = np.float32(rng.normal())
                log_b += (
                    c
                    * (axes[0][:, None, None] ** i)
                    * (axes[1][None, :, None] ** j)
                    * axes[2][None, None, :] ** k
                )
    log_b *= np.float32(np.log1p(amplitude)) / max(float(np.abs(log_b).max()), 1e-6)
    return np.exp(log_b)


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``image`` plus complex Gaussian noise (Rician statistics)."""
    if sigma <= 0:
        return image
    real = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    imag = np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.sqrt(real * real + imag * imag)


def simulate_t1w(
    cfg: SimulationConfig,
    ref: Reference,
    subject: Subject,
    visit_index: int,
    traits: SubjectTraits,
    warp: SubjectWarp,
    site: Site,
) -> AnatomyResult:
    """Synthesise the T1w image of ``subject`` at one visit and its truth."""
    visit = subject.visits[visit_index]
    shape = tuple(int(round(f / cfg.resolution)) for f in T1W_FOV_MM)
    affine = centred_affine(shape, cfg.resolution)
    maps = aged_tissues(ref, subject, visit, traits) | {"head": ref.head}
    got = sample_grid(ref, warp, shape, affine, maps, {"dk": ref.dk})
    gm, wm, csf = got["GM"], got["WM"], got["CSF"]
    brain = gm + wm + csf
    image = gm * site.t1_gm + wm + csf * site.t1_csf + np.clip(1.0 - brain, 0, None) * got["head"]
    rng = subject_rng(cfg.seed, subject.index, 20 + visit_index)
    image *= bias_field(shape, rng, 0.1 * min(cfg.noise_scale, 1.0) if cfg.noise_scale else 0.0)
    image = rician(image * np.float32(site.t1_scale), site.t1_noise * site.t1_scale * cfg.noise_scale, rng)
    t1w = np.clip(np.rint(image), 0, 32767).astype(np.int16)

    voxel = cfg.resolution**3
    volumes = {
        "GM_total": float(gm.sum(dtype=np.float64)) * voxel,
        "WM_total": float(wm.sum(dtype=np.float64)) * voxel,
        "CSF_total": float(csf.sum(dtype=np.float64)) * voxel,
        "ventricles": float(got["ventricles"].sum(dtype=np.float64)) * voxel,
    }
    volumes["TIV"] = volumes["GM_total"] + volumes["WM_total"] + volumes["CSF_total"]
    regional = np.bincount(got["dk"].ravel(), weights=gm.ravel(), minlength=len(ref.dk_names) + 1) * voxel
    for k, name in enumerate(ref.dk_names, start=1):
        volumes[f"GM_{name}"] = float(regional[k])
    return AnatomyResult(affine, t1w, {"GM": gm, "WM": wm, "CSF": csf}, got["dk"], volumes)
