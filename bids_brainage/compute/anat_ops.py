"""Image operations of the anatomical workflow (antspyx + NumPy), free of nipype.

Each function reads and writes files so that the nipype interfaces in
:mod:`bids_brainage.interfaces.anatomical` stay thin and every step can be cached.

Conventions
-----------
* Images in T1w space are on the grid of the validated T1w, reoriented to RAS.
* Registrations use the MNI152NLin2009aSym template as the *fixed* image and the
  participant as the *moving* image, so ANTs' forward transforms resample T1w-space
  images into template space and the inverse transforms do the opposite.
* Tissue classes are always ordered GM, WM, CSF (labels 1, 2, 3 in the ``dseg``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from bids_brainage.compute.registration import seeded_registration
from bids_brainage.errors import InputError
from bids_brainage.templates import mni_brain_mask, mni_t1w, mni_tissue_priors, template_cache_dir

TISSUES = ("GM", "WM", "CSF")


def set_itk_threads(n_threads: int) -> None:
    """Limit ITK (hence antspyx) to ``n_threads`` threads in this process.

    ITK reads the variable when a filter is created, so setting it before each step is
    enough; nipype runs each node in a worker process that inherits it.
    """
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(n_threads)))


# --------------------------------------------------------------------------- validation


def check_t1w(path: str | os.PathLike) -> nib.Nifti1Image:
    """Load a T1w image and refuse anything unusable with a one-line :class:`InputError`.

    Returns the image as float32, reoriented to RAS (closest canonical), with NaN/inf
    voxels set to zero (they are reported as an error only when nothing finite is left).
    """
    from bids_brainage.bids import check_available

    path = Path(path)
    check_available(path)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises many types for corrupt files
        reason = " ".join(str(err).split()) or type(err).__name__
        raise InputError(path, f"cannot be read as a NIfTI image ({reason})") from None
    # A trailing singleton dimension (x, y, z, 1) is a 3D image saved as 4D: accept it.
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"is not a 3D image (shape {tuple(img.shape)})")
    if min(data.shape) < 8:
        raise InputError(path, f"is too small to be a T1w image (shape {data.shape})")
    affine = np.asarray(img.affine, dtype=float)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if (
        not np.all(np.isfinite(affine))
        or abs(np.linalg.det(affine[:3, :3])) < 1e-6
        or np.any(zooms < 0.05)
        or np.any(zooms > 20)
    ):
        raise InputError(path, "has a broken affine (voxel-to-world matrix is singular or not finite)")
    finite = np.isfinite(data)
    if not finite.any():
        raise InputError(path, "contains no finite values (all NaN/inf)")
    data = np.where(finite, data, 0.0).astype(np.float32)
    if float(data.max() - data.min()) <= 0:
        raise InputError(path, "is empty (all voxels have the same value)")
    if np.count_nonzero(data) < 0.01 * data.size:
        raise InputError(path, "is nearly empty (fewer than 1% non-zero voxels)")
    out = nib.Nifti1Image(data, affine)
    out.header.set_xyzt_units("mm")
    return nib.as_closest_canonical(out)


# --------------------------------------------------------------------------- helpers


def _ants() -> Any:
    import ants

    return ants


def save_like(
    data: np.ndarray,
    reference: nib.spatialimages.SpatialImage,
    path: str | os.PathLike,
    dtype: Any = np.float32,
) -> str:
    """Save ``data`` on the grid of ``reference`` as NIfTI (float32 or an integer type)."""
    img = nib.Nifti1Image(np.asarray(data).astype(dtype), reference.affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(reference.affine, code=1)
    img.set_sform(reference.affine, code=1)
    nib.save(img, str(path))
    return str(Path(path).resolve())


def _template_data(kind: str, resolution: int) -> np.ndarray:
    head = mni_t1w(resolution)
    if kind == "head":
        return head.get_fdata()
    if kind == "mask":
        return mni_brain_mask(resolution).get_fdata()
    if kind == "brain":
        return head.get_fdata() * mni_brain_mask(resolution).get_fdata()
    if kind in TISSUES:
        return mni_tissue_priors(resolution)[kind].get_fdata()
    raise ValueError(f"unknown template image {kind!r}")


def template_file(kind: str, resolution: int, out_dir: str | os.PathLike) -> str:
    """One template image (``head``, ``mask``, ``brain``, ``GM``, ``WM``, ``CSF``) as a file.

    ANTs reads images from disk. The file is written once into the shared template cache
    (:func:`bids_brainage.templates.template_cache_dir`) and reused by every step, subject
    and run; where that folder cannot be written (a read-only home in a container), into
    ``out_dir``, once per directory. Building the 1 mm files from nilearn's templates and
    writing them cost every registration node about 8 s of CPU (ds002748 sub-02, default
    mode), because each nipype node runs in a fresh process. The file appears under its
    name only when complete (written to a temporary name, then renamed), so concurrent
    processes never read half a file.
    """
    name = f"tpl-res{resolution}_{kind}.nii.gz"
    cache = template_cache_dir()
    for folder in ([cache] if cache is not None else []) + [Path(out_dir)]:
        path = folder / name
        if path.exists():
            return str(path.resolve())
        partial = folder / f".{name[: -len('.nii.gz')]}.{os.getpid()}.partial.nii.gz"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_like(_template_data(kind, resolution), mni_t1w(resolution), partial)
            os.replace(partial, path)
        except OSError:
            partial.unlink(missing_ok=True)
            continue
        return str(path.resolve())
    raise OSError(f"cannot write the template image {name} to {out_dir}")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    denom = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / denom) if denom else 1.0


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a boolean mask."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndimage.sum(mask, labels, index=np.arange(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def _as_list(value: str | list[str]) -> list[str]:
    # antspyx returns a bare string when it writes one composite transform.
    return [str(Path(value).resolve())] if isinstance(value, str) else [str(Path(v).resolve()) for v in value]


def coarsened(img: Any, target_mm: float, interp: int = 0) -> Any:
    """``img`` resampled so that no axis is finer than ``target_mm`` (unchanged if none is).

    ``interp`` is antspyx's ``interp_type`` (0 linear, 1 nearest neighbour). Images whose
    voxels are all at least ``target_mm`` wide come back as they are, so 2 mm inputs run
    exactly as before.
    """
    spacing = tuple(float(s) for s in img.spacing)
    if min(spacing) >= target_mm - 1e-3:
        return img
    ants = _ants()
    target = tuple(max(s, target_mm) for s in spacing)
    return ants.resample_image(img, target, use_voxels=False, interp_type=interp)


def smoothed_to(img: Any, target_mm: float) -> Any:
    """``img`` smoothed to the resolution of a ``target_mm`` grid, then resampled onto it.

    The Gaussian's FWHM per axis is sqrt(target^2 - spacing^2), so that linear sampling on
    the coarser grid averages the voxels it replaces instead of picking every n-th one
    (which keeps the noise of one voxel and aliases edges).
    """
    spacing = np.asarray(img.spacing, dtype=float)
    if spacing.min() >= target_mm - 1e-3:
        return img
    fwhm = np.sqrt(np.maximum(target_mm**2 - spacing**2, 0.0))
    sigma_vox = fwhm / 2.3548 / spacing
    blurred = img.new_image_like(ndimage.gaussian_filter(img.numpy(), sigma_vox).astype(np.float32))
    return coarsened(blurred, target_mm, interp=0)


# --------------------------------------------------------------------------- N4


def head_mask(data: np.ndarray) -> np.ndarray:
    """Rough head mask for N4: above the mean intensity, closed, filled, largest component.

    A SciPy version of ``ants.get_mask(cleanup=2)``, which is ~10x slower; only the N4 fit
    uses it, so a rough mask is enough.
    """
    mask = data > data.mean()
    mask = ndimage.binary_opening(mask, iterations=1)
    mask = largest_component(mask)
    mask = ndimage.binary_closing(mask, iterations=2)
    return ndimage.binary_fill_holes(mask)


#: Grid (mm) N4 fits the bias field on: finer inputs are resampled onto it first and the
#: field is brought back to the T1w grid (it is smooth: a 200 mm B-spline distance).
N4_GRID_MM = 2.0


def n4_correct(in_file: str, out_file: str) -> str:
    """N4 bias-field correction inside a rough head mask, intensities truncated first.

    Truncating the top 0.1 % (vessels, fat) and fitting only inside the head, with a
    200 mm B-spline distance, mirrors fMRIPrep's settings and is ~10x faster than antspyx's
    defaults on the whole field of view. Images finer than :data:`N4_GRID_MM` are fitted
    on that grid, as 2 mm inputs always were (shrink factor 4: an 8 mm fitting grid; the
    field's B-spline mesh is 200 mm), and the fitted field is interpolated back to the
    T1w grid and divided out: at native resolution a 0.87 x 0.87 x 1 mm T1w was fitted on
    a 3.5 mm grid, 12 times the points, for a field just as smooth.
    """
    ants = _ants()
    img = ants.image_read(in_file)
    arr = img.numpy()
    top = float(np.percentile(arr[arr > 0], 99.9)) if np.any(arr > 0) else float(arr.max())
    clipped = np.clip(arr, 0, top).astype(np.float32)
    img = ants.from_numpy(clipped, origin=img.origin, spacing=img.spacing, direction=img.direction)
    # The same fit in both modes: sloppy mode's former coarse mesh and 2x20 iterations left
    # a bias that blurred GM into WM on atrophied brains (nichart12 S1: class SDs 96/71 vs
    # 77/59 after the full fit, and the tissue fractions swapped), and on the 2 mm fitting
    # grid the full fit costs about 1 s more.
    settings = {"spline_param": 200, "convergence": {"iters": [50, 50, 50, 50], "tol": 1e-6}}
    small = coarsened(img, N4_GRID_MM)
    # The head mask and the fit on the (at most) 2 mm grid; shrink 4 fits on 8 mm there.
    head_arr = head_mask(small.numpy())
    head = small.new_image_like(head_arr.astype(np.float32))
    fitted = ants.n4_bias_field_correction(
        small, mask=head, shrink_factor=4, return_bias_field=small is not img, **settings
    )
    if small is img:
        values = fitted.numpy()
        scale = float(np.percentile(values[head_arr], 99)) or 1.0
    else:
        field = fitted.numpy()
        scale = float(np.percentile(small.numpy()[head_arr] / np.maximum(field[head_arr], 1e-6), 99)) or 1.0
        # Beyond the coarse grid's last voxel centres (the outer < 2 mm of the field of
        # view) interpolation gives 0: keep the field within the range it has in the head.
        inside = field[head_arr]
        field = ants.resample_image_to_target(fitted, img, interp_type="linear").numpy()
        values = clipped / np.clip(field, float(inside.min()), float(inside.max()))
    # Rescale so the 99th percentile of the head is 1000: stable Atropos/registration input.
    corrected = img.new_image_like((values * (1000.0 / scale)).astype(np.float32))
    ants.image_write(corrected, out_file)
    return str(Path(out_file).resolve())


# --------------------------------------------------------------------------- registration


def _syn_params(sloppy: bool) -> dict[str, Any]:
    """Levels and iterations of the SyN registration to the (cropped, 2 mm) template brain.

    SyN starts from the first-pass affine, at 4 and 2 mm (shrink 2 and 1 of the 2 mm
    template) in both modes, like antsBrainExtraction's 50x10x0 at 4x2x1; sloppy mode runs
    half the iterations. Sloppy mode used to stop at 4 mm (8 and 4 mm levels): without a
    2 mm level the brain's edge and the tissue priors stayed where the affine put them
    (nichart12 S3: Dice of the warped template GM > 0.5 with DLMUSE's GM 0.65; 0.71 at
    4/2 mm with 20x10 iterations, 0.73 with 40x20), and the tissue volumes followed.
    """
    return {"reg_iterations": (20, 10) if sloppy else (40, 20)}


#: Margin (mm) kept around the template brain when the registration target is cropped.
CROP_MARGIN_MM = 10.0


def _cropped_template_brain(out: Path) -> Any:
    """The 2 mm template brain cropped to its mask's bounding box plus :data:`CROP_MARGIN_MM`.

    The template brain is zero outside the mask: on the whole grid (99x117x95) this
    background is 37 % of the voxels SyN updates, smooths and inverts at every iteration,
    and it dominates Mattes MI's joint histogram. Cropping it cuts the registration's
    CPU time by a third and makes the fit better (IXI012, default levels: correlation of
    the warped T1w with the template in the brain 0.775 -> 0.806, GM label Dice with the
    template 0.776 -> 0.787). The SyN field lives on the cropped grid; outside it (10 mm
    beyond the brain) the mapping is the affine alone.
    """
    ants = _ants()
    fixed = ants.image_read(template_file("brain", 2, out))
    mask = nib.load(template_file("mask", 2, out)).get_fdata() > 0
    box = ndimage.binary_dilation(mask, iterations=max(1, round(CROP_MARGIN_MM / 2)))
    return ants.crop_image(fixed, fixed.new_image_like(box.astype(np.float32)))


def _warp_soft_mask(
    ants: Any, mask_file: str, reference: Any, transforms: list[str], which: Any, out: Path
) -> str:
    # Smooth the binary template mask so linear interpolation gives a soft prior.
    mask_img = nib.load(mask_file)
    soft = ndimage.gaussian_filter(mask_img.get_fdata().astype(np.float32), 0.7)
    soft_file = save_like(soft, mask_img, out / "tpl_mask_soft.nii.gz")
    kwargs = {"whichtoinvert": which} if which is not None else {}
    prior = ants.apply_transforms(
        reference, ants.image_read(soft_file), transforms, interpolator="linear", **kwargs
    )
    prior_file = str((out / "brain_prior.nii.gz").resolve())
    ants.image_write(prior, prior_file)
    return prior_file


#: Template-to-subject volume ratio of the first-pass affine above which the fit is redone.
#: Good fits of adult heads give 0.7-0.8 (the MNI152 brain region is larger than most
#: brains); fits that stretched the template brain onto the scalp gave 1.19-1.24.
MAX_VOLUME_RATIO = 1.0
#: Typical template-to-subject volume ratio, the starting point of the retry.
TYPICAL_VOLUME_RATIO = 0.73


def _volume_ratio(ants: Any, affine_file: str) -> float:
    """|det| of the linear part of an ANTs affine (template → subject volume ratio)."""
    params = np.asarray(ants.read_transform(affine_file).parameters, dtype=float)
    return float(abs(np.linalg.det(params[:9].reshape(3, 3))))


def _shrink_transform(ants: Any, fixed: Any, out_file: Path) -> str:
    """Isotropic scaling about the template centre to :data:`TYPICAL_VOLUME_RATIO`."""
    scale = TYPICAL_VOLUME_RATIO ** (1 / 3)
    centre = np.asarray(fixed.origin) + np.asarray(fixed.direction) @ (
        (np.asarray(fixed.shape) - 1) / 2 * np.asarray(fixed.spacing)
    )
    tx = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, matrix=np.eye(3) * scale, center=list(centre)
    )
    ants.write_transform(tx, str(out_file))
    return str(out_file)


#: Height (mm) of the top slab of the head whose centroid places the template brain.
HEAD_SLAB_MM = 70.0
#: Scalp and skull thickness (mm) added around the template brain to mimic a head.
SCALP_MM = 10.0


def _top_slab(mask: np.ndarray, affine: np.ndarray) -> tuple[float, np.ndarray]:
    """Superior end (world z, mm) of a RAS mask and the centroid of its top slab (mm)."""
    ijk = np.argwhere(mask)
    xyz = ijk @ affine[:3, :3].T + affine[:3, 3]
    top = float(xyz[:, 2].max())
    return top, xyz[xyz[:, 2] >= top - HEAD_SLAB_MM].mean(axis=0)


def _head_top_translation(t1w: str, tpl_mask_file: str, out_file: Path) -> str:
    """Translation placing the template brain under the vertex of the head (initial transform).

    antsRegistration's default start aligns centres of mass. The template is a brain and the
    T1w a head whose field of view may reach far into the neck: on pumi sub-001 the head's
    centre of mass lies 125 mm below the vertex (IXI: 100-115 mm; the template brain's,
    72 mm below its top), so the template brain started 40 mm too low, on the brainstem
    and face, and the rigid fit stayed there. The vertex does not depend on the field of
    view: the template brain, grown by the scalp thickness, is moved so that its top meets
    the top of the head mask and the centroids of their top 70 mm slabs coincide in x and y.
    """
    ants = _ants()
    img = nib.load(t1w)  # RAS (validated), so world z is superior
    data = img.get_fdata(dtype=np.float32)
    head = head_mask(np.clip(data, 0, np.percentile(data, 99.9)))
    tpl = nib.load(tpl_mask_file)
    spacing = float(np.sqrt((tpl.affine[:3, :3] ** 2).sum(axis=0)).min())
    tpl_head = ndimage.binary_dilation(tpl.get_fdata() > 0, iterations=max(1, round(SCALP_MM / spacing)))
    head_top, head_centre = _top_slab(head, img.affine)
    tpl_top, tpl_centre = _top_slab(tpl_head, tpl.affine)
    shift = head_centre - tpl_centre
    shift[2] = head_top - tpl_top
    # ANTs transforms map fixed (template) points to moving (T1w) points, in LPS.
    tx = ants.create_ants_transform(
        transform_type="AffineTransform", dimension=3, translation=list(shift * np.array([-1, -1, 1]))
    )
    ants.write_transform(tx, str(out_file))
    return str(out_file)


#: Grid (mm) of the first-pass fit's moving image (the template it is fitted to is 2 mm).
FIRST_PASS_GRID_MM = 2.0
#: Grid (mm) of the SyN registration's moving image (its finest level is the 2 mm template).
SYN_MOVING_GRID_MM = 1.5


def initial_brain_mask(t1w: str, out_dir: str, sloppy: bool, random_seed: int = 0) -> dict[str, str]:
    """First pass of the template-based brain extraction: an affine fit of the template brain.

    nilearn's MNI152NLin2009aSym template is skull-stripped, so it cannot be matched to a
    whole head directly (the brain would be stretched onto the scalp). Instead the metric
    is restricted, with a fixed-image mask, to the template brain dilated by ~10 mm: there
    the template's zero background must meet the dark CSF/skull band around the brain,
    which pins the scale. Rigid then affine, at 2 mm. Returns the template brain mask
    warped to the T1w (a probability) and the affine (which initialises the SyN step).
    ``random_seed`` is the app's ``--random-seed`` (seeds the metric sampling).
    """
    ants = _ants()
    out = Path(out_dir)
    tpl_mask_file = template_file("mask", 2, out)
    fixed = ants.image_read(template_file("brain", 2, out))
    tpl_mask = nib.load(tpl_mask_file).get_fdata() > 0
    rim = ndimage.binary_dilation(tpl_mask, iterations=5)
    fixed_mask = fixed.new_image_like(rim.astype(np.float32))
    native = ants.image_read(t1w)
    # The fit runs on the 2 mm template: a finer T1w is smoothed onto a 2 mm grid first
    # (:data:`FIRST_PASS_GRID_MM`), so the head mask, the pyramid's smoothing and the rough
    # tissue mask of the brain-to-brain refit work on ~1/10 of the voxels of a 0.9 mm scan.
    moving = smoothed_to(native, FIRST_PASS_GRID_MM)
    moving_file = t1w
    if moving is not native:
        moving_file = str((out / "t1w_coarse.nii.gz").resolve())
        ants.image_write(moving, moving_file)
    # Rigid first: an affine started from the centre of mass alone lets the scale run
    # away to the scalp. Coarser pyramids (16/8 mm) misalign the rigid stage on real heads.
    levels = {"aff_shrink_factors": (4, 2, 1), "aff_smoothing_sigmas": (2, 1, 0)}
    iterations = (100, 50, 0) if sloppy else (200, 100, 50)
    start = _head_top_translation(moving_file, tpl_mask_file, out / "head_top.mat")
    rigid = seeded_registration(
        ants, fixed, moving, type_of_transform="Rigid", mask=fixed_mask, outprefix=str(out / "rigid_"),
        initial_transform=[start], aff_iterations=iterations, **levels, random_seed=random_seed,
    )  # fmt: skip
    affine = seeded_registration(
        ants, fixed, moving, type_of_transform="Affine", mask=fixed_mask, outprefix=str(out / "affine_"),
        initial_transform=_as_list(rigid["fwdtransforms"]), aff_iterations=iterations, **levels, random_seed=random_seed,
    )  # fmt: skip
    xfm = _as_list(affine["fwdtransforms"])
    if _volume_ratio(ants, xfm[-1]) > MAX_VOLUME_RATIO:
        # The template brain was stretched onto the scalp (a local optimum): restart the
        # affine from the rigid fit shrunk to the typical template-to-subject scale.
        shrink = _shrink_transform(ants, fixed, out / "shrink.mat")
        retry = seeded_registration(
            ants, fixed, moving, type_of_transform="Affine", mask=fixed_mask, outprefix=str(out / "affine2_"),
            initial_transform=[*_as_list(rigid["fwdtransforms"]), shrink], aff_iterations=iterations, **levels, random_seed=random_seed,
        )  # fmt: skip
        xfm = _as_list(retry["fwdtransforms"])
        if _volume_ratio(ants, xfm[-1]) > MAX_VOLUME_RATIO:
            # Still stretched: keep the typical scale and fit position and rotation only.
            fixed_scale = seeded_registration(
                ants, fixed, moving, type_of_transform="Rigid", mask=fixed_mask, outprefix=str(out / "affine3_"),
                initial_transform=[*_as_list(rigid["fwdtransforms"]), shrink], aff_iterations=iterations,
                **levels, random_seed=random_seed,
            )  # fmt: skip
            xfm = _as_list(fixed_scale["fwdtransforms"])
    xfm = _brain_to_brain_affine(
        ants, fixed, moving, tpl_mask_file, xfm, iterations, levels, out, random_seed
    )
    prior = _warp_soft_mask(ants, tpl_mask_file, native, xfm, [True] * len(xfm), out)
    return {"prior": prior, "affine": xfm[-1]}


#: Erosion (mm) that cuts the thin bridges between brain and scalp in the tissue mask.
ROUGH_EROSION_MM = 4.0
#: Margin (mm) of CSF added around the tissue mask for the brain-to-brain affine.
ROUGH_MARGIN_MM = 8.0
#: Plausible volumes (mL) of the rough tissue mask; outside them the head-to-template fit stands.
ROUGH_VOLUME_ML = (500.0, 2000.0)


def otsu_thresholds(values: np.ndarray, bins: int = 128) -> tuple[float, float]:
    """The two thresholds of a three-class Otsu split of ``values`` (maximal between-class variance).

    ``ants.otsu_segmentation`` counts the zero background outside its mask as data, and its
    classes then follow the zeros and the scalp fat rather than CSF, GM and WM (nichart12
    S3: its "tissue" threshold fell at 332, inside GM); this takes only the values given.
    """
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.concatenate([[0], np.cumsum(hist)]).astype(float)
    moment = np.concatenate([[0], np.cumsum(hist * centres)])

    def between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        w = weight[b] - weight[a]
        return np.where(w > 0, (moment[b] - moment[a]) ** 2 / np.maximum(w, 1), 0.0)

    i, j = np.meshgrid(np.arange(1, bins), np.arange(1, bins), indexing="ij")
    score = between(np.zeros_like(i), i) + between(i, j) + between(j, np.full_like(j, bins))
    score = np.where(j > i, score, -np.inf)
    best_i, best_j = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(edges[best_i + 1]), float(edges[best_j + 1])


def rough_brain_tissue(t1: np.ndarray, first: np.ndarray, spacing: float) -> np.ndarray:
    """The brain's GM and WM near the first-pass mask ``first``: Otsu, eroded, largest component, regrown.

    A three-class Otsu split of the intensities inside ``first`` (the brightest 1 %, fat and
    vessels, left out) separates dark (CSF, skull) from GM and WM; voxels above the lower
    threshold within 15 mm of ``first`` are tissue. Scalp and neck are tissue too, joined to
    the brain by thin bridges (meninges, optic nerves, the skull base): an erosion by
    :data:`ROUGH_EROSION_MM` cuts them, the largest component is the brain, and a dilation
    by the same amount, kept to tissue voxels, gives back its surface. Returns the closed,
    filled mask (boolean, the image's index order).
    """
    steps = max(1, round(ROUGH_EROSION_MM / spacing))
    inside = t1[first]
    low, _ = otsu_thresholds(np.clip(inside, 0, np.percentile(inside, 99)))
    region = ndimage.binary_dilation(first, iterations=max(1, round(15 / spacing)))
    tissue = (t1 > low) & region
    core = largest_component(ndimage.binary_erosion(tissue, iterations=steps))
    brain = ndimage.binary_dilation(core, iterations=steps) & tissue
    brain = ndimage.binary_closing(brain, iterations=max(1, round(6 / spacing)))
    return ndimage.binary_fill_holes(brain)


def _brain_to_brain_affine(
    ants: Any,
    fixed: Any,
    moving: Any,
    tpl_mask_file: str,
    xfm: list[str],
    iterations: tuple[int, ...],
    levels: dict[str, Any],
    out: Path,
    random_seed: int,
) -> list[str]:
    """Refit the affine of the template brain to the T1w's brain, scalp removed.

    The head-to-template fit matches a skull-stripped template to a whole head, which is
    ill-posed: the template's edge must find the brain's edge among the dark bands of
    CSF and skull, and on atrophied brains, whose wide CSF moves that edge, it stretched
    onto the scalp or slid backwards (nichart12, ages 69-96: Dice of the warped template
    mask with the DLMUSE intracranial mask 0.72-0.81 on 4 of 5 people; the final brain
    mask missed the frontal lobe and took in the occipital scalp). Here the T1w is masked
    with its own brain (:func:`rough_brain_tissue` inside the first-pass mask dilated by
    15 mm, grown by :data:`ROUGH_MARGIN_MM` of CSF) and the template brain is fitted to it,
    starting from the first-pass affine: brain to brain, with no scalp to catch it
    (nichart12 S1, S3, S9: Dice 0.75, 0.72, 0.79 -> 0.93, 0.88, 0.94). If the tissue
    mask has an implausible volume, the first-pass affine stands.
    """
    spacing = min(moving.spacing)
    first = (
        ants.apply_transforms(
            moving, ants.image_read(tpl_mask_file), xfm, whichtoinvert=[True] * len(xfm)
        ).numpy()
        > 0.5
    )
    tissue = rough_brain_tissue(moving.numpy(), first, spacing)
    volume = float(tissue.sum() * np.prod(moving.spacing)) / 1000.0
    if not ROUGH_VOLUME_ML[0] <= volume <= ROUGH_VOLUME_ML[1]:
        return xfm
    grown = ndimage.binary_dilation(tissue, iterations=max(1, round(ROUGH_MARGIN_MM / spacing)))
    brain_only = moving * moving.new_image_like(grown.astype(np.float32))
    refit = seeded_registration(
        ants, fixed, brain_only, type_of_transform="Affine", outprefix=str(out / "brain_affine_"),
        initial_transform=[xfm[-1]], aff_iterations=iterations, **levels, random_seed=random_seed,
    )  # fmt: skip
    return _as_list(refit["fwdtransforms"])


#: Margin (mm) of the first-pass brain mask that the SyN moving image keeps; the rest of
#: the head is set to zero so it cannot pull the warp.
MOVING_MARGIN_MM = 16.0
#: Margin (mm) around the template brain inside which SyN's metric is evaluated.
METRIC_MARGIN_MM = 2.0


def register_to_template(
    t1w: str, prior: str, init_affine: str, resolution: int, sloppy: bool, out_dir: str, random_seed: int = 0
) -> dict[str, Any]:
    """Register the T1w brain to the template brain (SyN from the first-pass affine), composite transforms.

    The moving image is the T1w masked with the first-pass brain mask dilated by
    :data:`MOVING_MARGIN_MM`, so neck and face cannot pull the warp, and the metric is
    evaluated only in the template brain plus :data:`METRIC_MARGIN_MM`: the template has no
    skull, so outside its brain there is nothing to match. With the metric on the whole
    grid (and a 6 mm margin), SyN aligned the template's zero background with the zeros of
    the masked moving image and stretched the template brain onto that artificial edge:
    nichart12 S1, default mode, brain mask 1715 mL against DLMUSE's ICV 1507, 231 mL of it
    outside the ICV, its edge a median 2 mm from the mask's edge. With the metric mask:
    1462 mL, 40 mL outside, Dice with the ICV 0.920 -> 0.958. The registration starts from
    the first-pass affine.
    The outputs are ANTs composite HDF5 transforms (initial affine included), each usable
    alone with ``ants.apply_transforms``. The template brain mask and GM/WM/CSF priors are
    warped back to the T1w for the segmentation and the final brain mask.
    """
    ants = _ants()
    out = Path(out_dir)
    fixed = ants.image_read(template_file("brain", resolution, out))
    target = _cropped_template_brain(out)
    t1 = ants.image_read(t1w)
    # A finer T1w is smoothed onto a :data:`SYN_MOVING_GRID_MM` grid: SyN's finest level is
    # the 2 mm template, and the pyramid smoothed all 15 million voxels of a 0.9 mm scan.
    small = smoothed_to(t1, SYN_MOVING_GRID_MM)
    prior_img = ants.image_read(prior)
    if small is not t1:
        prior_img = ants.resample_image_to_target(prior_img, small, interp_type="linear")
    prior_arr = prior_img.numpy() > 0.5
    spacing = min(small.spacing)
    dilated = ndimage.binary_dilation(prior_arr, iterations=max(1, round(MOVING_MARGIN_MM / spacing)))
    moving = small * small.new_image_like(dilated.astype(np.float32))
    # SyN's metric mask: the template brain + :data:`METRIC_MARGIN_MM` (why: see the docstring).
    inside = ndimage.binary_dilation(
        target.numpy() > 0, iterations=max(1, round(METRIC_MARGIN_MM / min(target.spacing)))
    )
    # SyN alone from the first-pass affine, on the 2 mm template in both modes (the finest
    # level is 2 mm at most; default-mode outputs are resampled on the 1 mm grid). antspyx's
    # "SyN" would add an affine stage with fixed 2100x1200x1200 iterations (it ignores
    # aff_iterations): 35 % of the default mode's registration time, and no better fit.
    reg = seeded_registration(
        ants,
        target,
        moving,
        type_of_transform="SyNOnly",
        initial_transform=[init_affine],
        mask=target.new_image_like(inside.astype(np.float32)),
        outprefix=str(out / "t1w2std_"),
        write_composite_transform=True,
        random_seed=random_seed,
        **_syn_params(sloppy),
    )
    fwd, inv = _as_list(reg["fwdtransforms"]), _as_list(reg["invtransforms"])
    warped = ants.apply_transforms(fixed, t1, fwd, interpolator="linear")
    std_file = str((out / "t1w_space-std.nii.gz").resolve())
    ants.image_write(warped, std_file)
    priors = []
    for name in TISSUES:
        moved = ants.apply_transforms(
            t1, ants.image_read(template_file(name, resolution, out)), inv, interpolator="linear"
        )
        fname = str((out / f"prior_{name}.nii.gz").resolve())
        ants.image_write(moved, fname)
        priors.append(fname)
    brain_prior = _warp_soft_mask(ants, template_file("mask", resolution, out), t1, inv, None, out)
    return {
        "anat2std": fwd,
        "std2anat": inv,
        "std_t1w": std_file,
        "priors": priors,
        "brain_prior": brain_prior,
    }


# --------------------------------------------------------------------------- segmentation


#: Grid (mm) of the Atropos fit, by mode (``True``: sloppy). Finer inputs are smoothed and
#: resampled onto it; the posteriors come back to the T1w grid by linear interpolation and
#: the tissue fractions are fitted on the T1w's own voxels (:func:`partial_volume_fractions`).
SEGMENT_GRID_MM = {True: 1.5, False: 1.2}
#: Margin (mm) of the box around the brain mask that Atropos works in.
BOX_MARGIN_MM = 4.0
#: Atropos's EM convergence (``-c [iterations,threshold]``), the same in both modes. Sloppy
#: mode ran ``[3,0.005]`` until issue 22: three EM passes left the GM/WM boundary where the
#: priors put it, and on nichart12 (2 mm, registrations unchanged) it cost WM r with DLMUSE
#: 0.896 (0.919 with these settings) and the oldest person's GM (S5: 504 vs 519 mL, DLMUSE
#: 548) that set the GM/TIV-vs-age slope (51 % off DLMUSE's, 24 % with these settings).
ATROPOS_CONVERGENCE = "[5,0.001]"


def brain_box(
    mask: np.ndarray, spacing: tuple[float, ...], margin_mm: float = BOX_MARGIN_MM
) -> tuple[slice, ...]:
    """Index slices of the bounding box of ``mask`` plus ``margin_mm`` on every side."""
    where = np.argwhere(mask)
    if where.size == 0:
        return tuple(slice(0, n) for n in mask.shape)
    pad = [int(np.ceil(margin_mm / float(sp))) for sp in spacing]
    lower = np.maximum(where.min(axis=0) - pad, 0)
    upper = np.minimum(where.max(axis=0) + 1 + np.asarray(pad), mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lower, upper, strict=True))


def crop_ants(img: Any, box: tuple[slice, ...]) -> Any:
    """The voxels of ``img`` in ``box`` as an ANTs image at the same place in world space."""
    ants = _ants()
    lower = np.array([sl.start for sl in box], dtype=float)
    origin = np.asarray(img.origin) + np.asarray(img.direction) @ (lower * np.asarray(img.spacing))
    return ants.from_numpy(
        np.ascontiguousarray(img.numpy()[box]).astype(np.float32),
        # Rounded to float32 as in a NIfTI header: antspyx's Atropos writes the priors to
        # files and ITK refuses images whose origins differ in the last digits.
        origin=tuple(float(v) for v in origin.astype(np.float32)),
        spacing=img.spacing,
        direction=img.direction,
    )


def run_atropos(ants: Any, scratch: Path, **kwargs: Any) -> dict[str, Any]:
    """``ants.atropos(**kwargs)`` with its temporary files kept in ``scratch`` and removed after.

    antspyx writes the prior and posterior images to ``antsr*probNN.nii.gz`` files in the
    system temporary directory and never deletes them (hundreds piled up in ``/tmp``); it
    names them with :func:`tempfile.mktemp`, which follows :data:`tempfile.tempdir`.
    """
    import shutil
    import tempfile

    scratch.mkdir(parents=True, exist_ok=True)
    previous = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        return ants.atropos(**kwargs)
    finally:
        tempfile.tempdir = previous
        shutil.rmtree(scratch, ignore_errors=True)


def _extend_into_background(post: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Give every voxel outside ``inside`` the posteriors of its nearest voxel inside.

    Linear interpolation back to the finer T1w grid then never mixes in the zeros outside
    the coarse mask at the brain's edge.
    """
    if inside.all() or not inside.any():
        return post
    _, nearest = ndimage.distance_transform_edt(~inside, return_indices=True)
    return post[(slice(None), *nearest)]


def segment(t1w: str, prior_mask: str, priors: list[str], sloppy: bool, out_dir: str) -> dict[str, Any]:
    """Brain mask from the warped template mask, then Atropos GM/WM/CSF inside it.

    The template brain mask warped through the SyN registration (probability > 0.5, holes
    filled, largest component) is the brain mask: with a good registration it is better
    than any intensity rule (on simulated data it reaches Dice 0.99 with the truth), and it
    includes the CSF around the brain, which intensity alone cannot tell from bone. The only
    refinement is to drop boundary voxels darker than half the CSF intensity (skull or air
    caught by a misregistration). Atropos (prior weight 0.25, MRF 0.1) then runs inside it,
    in the brain's bounding box (:data:`BOX_MARGIN_MM`) and on a grid no finer than
    :data:`SEGMENT_GRID_MM` (full-resolution T1w images are smoothed and resampled onto it:
    the fit's cost follows the number of voxels). Its posteriors, brought back to the T1w
    grid, give the hard segmentation (``dseg``) and start the partial-volume model whose
    tissue fractions, fitted on the T1w's own voxels, are the probability maps (``tpms``, as
    fMRIPrep's FAST ``pve`` maps), see :func:`partial_volume_fractions`.
    """
    ants = _ants()
    out = Path(out_dir)
    t1 = ants.image_read(t1w)
    ref = nib.load(t1w)
    brain = nib.load(prior_mask).get_fdata() > 0.5
    brain = largest_component(ndimage.binary_fill_holes(brain))
    box = brain_box(brain, t1.spacing)
    t1_box = crop_ants(t1, box)
    mask_box = t1_box.new_image_like(brain[box].astype(np.float32))
    # Every image Atropos sees gets the header of the one grid (headers read back from
    # files differ in the last float digits, and ITK then refuses to add the images).
    prior_box = [t1_box.new_image_like(ants.image_read(p).numpy()[box].astype(np.float32)) for p in priors]
    grid = smoothed_to(t1_box, SEGMENT_GRID_MM[bool(sloppy)])
    coarse = grid is not t1_box
    if coarse:
        mask_grid = ants.resample_image_to_target(mask_box, grid, interp_type="linear").numpy() > 0.5
        prior_grid = [
            grid.new_image_like(ants.resample_image_to_target(p, grid, interp_type="linear").numpy())
            for p in prior_box
        ]
    else:
        mask_grid, prior_grid = brain[box], prior_box
    result = run_atropos(
        ants,
        out / "atropos_tmp",
        a=grid,
        x=grid.new_image_like(mask_grid.astype(np.float32)),
        i=prior_grid,
        m="[0.1,1x1x1]",
        c=ATROPOS_CONVERGENCE,
        priorweight=0.25,
        # Atropos seeds its sampler from the clock unless told otherwise (-r 1 is its
        # default); a constant seed makes the segmentation identical run to run.
        r=0,
    )
    # ants.image_read/numpy give arrays in the file's index order, matching ``ref``.
    post_grid = np.clip(np.nan_to_num(np.stack([p.numpy() for p in result["probabilityimages"]])), 0, 1)
    if coarse:
        post_grid = _extend_into_background(post_grid, mask_grid)
        post_box = np.stack(
            [
                ants.resample_image_to_target(
                    grid.new_image_like(p.astype(np.float32)), t1_box, interp_type="linear"
                ).numpy()
                for p in post_grid
            ]
        )
    else:
        post_box = post_grid
    # The rest works in the box too (nothing of the brain lies outside it).
    post = post_box
    t1_full = ref.get_fdata(dtype=np.float32)
    t1_arr = t1_full[box]
    brain_in = brain[box]
    core = ndimage.binary_erosion(brain_in, iterations=2)
    csf = core & (post[2] > 0.5)
    if csf.sum() > 100:
        band = brain_in & ~ndimage.binary_erosion(brain_in)
        dark = t1_arr < 0.5 * float(np.median(t1_arr[csf]))
        keep_in = largest_component(brain_in & ~(band & dark))
    else:
        keep_in = brain_in
    post = post * keep_in
    total = post.sum(axis=0)
    # Every brain voxel gets a full distribution (Atropos may leave a few at zero).
    post = np.where(total > 0, post / np.maximum(total, 1e-6), 0)
    keep = np.zeros(brain.shape, dtype=bool)
    keep[box] = keep_in
    dseg = np.zeros(brain.shape, dtype=np.uint8)
    dseg[box] = np.where(keep_in, np.argmax(post, axis=0) + 1, 0)
    fractions = np.zeros((3, *brain.shape), dtype=np.float32)
    fractions[(slice(None), *box)][:, keep_in] = partial_volume_fractions(t1_arr[keep_in], post[:, keep_in])
    t1_arr = t1_full
    files = {
        "mask": save_like(keep, ref, out / "brain_mask.nii.gz", np.uint8),
        "brain": save_like(t1_arr * keep, ref, out / "brain.nii.gz"),
        "dseg": save_like(dseg, ref, out / "dseg.nii.gz", np.uint8),
        "tpms": [save_like(fractions[k], ref, out / f"probseg_{n}.nii.gz") for k, n in enumerate(TISSUES)],
    }
    return files


# --------------------------------------------------------------------------- QC

#: Plausible share of TIV per tissue over the lifespan. Healthy young adults have GM/TIV
#: about 0.45-0.50 and the oldest about 0.35 (DLMUSE on nichart12, ages 69-96: GM/ICV
#: 0.37-0.44; WM/ICV 0.30-0.37); CSF/TIV grows from about 0.10 to 0.30. Children's GM share
#: is higher (grey matter peaks at 6-10 years), and partial volume at coarse resolution adds
#: to it: the demo's simulated young adults at 4 mm gave 0.58-0.62, so the GM limit is 0.66
#: (0.60 left them out of training). A class swap still lands far outside (nichart12 S7: GM
#: 0.65 with WM 0.12, caught by the WM limit and the other checks).
QC_FRACTIONS = {"GM": (0.28, 0.66), "WM": (0.20, 0.50), "CSF": (0.04, 0.45)}
#: Plausible TIV (mL): adult intracranial volumes lie in 1000-2000 mL.
QC_TIV_ML = (900.0, 2300.0)
#: Minimum GM/WM contrast, (WM - GM) / WM of the class medians. Correct segmentations of
#: real T1w images gave 0.29-0.39 when the brain mask reached into the skull; with the
#: tighter masks of the registration's metric mask (issue 22) the low-contrast 1.5 T image
#: IXI012 gives 0.175, and 0.155 under the warped template priors, which do not depend on
#: the labels: the image's own contrast. Classes that swallowed CSF or swapped gave
#: -0.43-0.23; above this floor the relative check against the priors
#: (:data:`QC_MIN_PRIOR_AGREEMENT`) judges them.
QC_MIN_CONTRAST = 0.12
#: Minimum WM volume of the partial-volume fractions as a share of the WM label's volume.
#: The fractions move boundary voxels between tissues (0.97-1.22 on correct runs); a fit in
#: which another tissue swallowed WM gave 0.42-0.70 (nichart12 S7; S15 in default mode).
QC_MIN_PV_WM_RATIO = 0.8
#: Minimum agreement of the image with the warped template priors: the contrast between the
#: image under the template's WM core (prior > 0.9) and its GM (prior > 0.6), (WM - GM) / WM,
#: as a share of the segmentation's own GM/WM contrast (images differ in contrast: IXI's is
#: lower). It does not depend on the labels and sees a registration or brain mask that slid
#: off the brain: 0.80-0.97 after correct fits (ixi10, nichart12, ds002748), 0.35-0.73 (or a
#: negative contrast) on the nichart12 brains whose fit slid before the brain-to-brain affine.
QC_MIN_PRIOR_AGREEMENT = 0.77


def segmentation_qc(t1w: str, mask: str, dseg: str, tpms: list[str], priors: list[str]) -> dict[str, Any]:
    """Automatic QC of one segmentation: tissue order, contrast, fit to the template, fractions.

    Checks, each with its reason when it fails:

    * the class medians of the bias-corrected T1w follow T1w contrast, CSF < GM < WM (a
      swapped or swallowing class breaks it);
    * the GM/WM contrast of the classes, (WM - GM) / WM, is at least :data:`QC_MIN_CONTRAST`;
    * the image agrees with the warped template priors: voxels under the template's WM core
      are brighter than under its GM, by at least :data:`QC_MIN_PRIOR_AGREEMENT` of the
      segmentation's GM/WM contrast;
    * the partial-volume WM is at least :data:`QC_MIN_PV_WM_RATIO` of the WM label's volume;
    * GM, WM and CSF shares of TIV and TIV itself lie in :data:`QC_FRACTIONS` and
      :data:`QC_TIV_ML`.

    Parameters
    ----------
    t1w : str
        Bias-corrected T1w.
    mask, dseg : str
        Brain mask and hard segmentation (1 GM, 2 WM, 3 CSF), on the T1w grid.
    tpms : list of str
        GM, WM, CSF partial-volume fractions.
    priors : list of str
        GM, WM, CSF template priors warped to the T1w.

    Returns
    -------
    dict
        ``failed`` (bool), ``reasons`` (list of str) and the measured numbers.
    """
    t1 = nib.load(t1w).get_fdata(dtype=np.float32)
    inside = np.asarray(nib.load(mask).dataobj) > 0
    labels = np.asarray(nib.load(dseg).dataobj)
    vox = float(abs(np.linalg.det(nib.load(mask).affine[:3, :3]))) / 1000.0
    volumes = {
        name: float((nib.load(path).get_fdata(dtype=np.float32)[inside]).sum() * vox)
        for name, path in zip(TISSUES, tpms, strict=True)
    }
    tiv = sum(volumes.values())
    medians = {}
    for label, name in enumerate(TISSUES, start=1):
        values = t1[labels == label]
        medians[name] = float(np.median(values)) if values.size else float("nan")
    prior_gm = nib.load(priors[0]).get_fdata(dtype=np.float32)
    prior_wm = nib.load(priors[1]).get_fdata(dtype=np.float32)
    core_wm, core_gm = t1[inside & (prior_wm > 0.9)], t1[inside & (prior_gm > 0.6)]
    reasons = []
    if not medians["CSF"] < medians["GM"] < medians["WM"]:
        order = " < ".join(sorted(medians, key=lambda k: medians[k]))
        reasons.append(f"tissue classes out of T1w intensity order ({order}; expected CSF < GM < WM)")
    contrast = (medians["WM"] - medians["GM"]) / medians["WM"] if medians["WM"] > 0 else float("nan")
    if not contrast >= QC_MIN_CONTRAST:
        reasons.append(f"GM/WM contrast {contrast:.2f} below {QC_MIN_CONTRAST}")
    if core_wm.size and core_gm.size:
        wm_level = float(np.median(core_wm))
        prior_contrast = (wm_level - float(np.median(core_gm))) / wm_level if wm_level > 0 else float("nan")
    else:
        prior_contrast = float("nan")
    agreement = prior_contrast / contrast if contrast >= QC_MIN_CONTRAST else float("nan")
    if contrast >= QC_MIN_CONTRAST and not agreement >= QC_MIN_PRIOR_AGREEMENT:
        reasons.append(
            f"image does not match the warped template priors (WM-vs-GM contrast under the priors "
            f"{prior_contrast:.2f} = {agreement:.2f} of the segmentation's, below {QC_MIN_PRIOR_AGREEMENT}): "
            "registration or brain mask failed"
        )
    labelled_wm = float(np.count_nonzero(labels == 2) * vox)
    pv_wm_ratio = volumes["WM"] / labelled_wm if labelled_wm > 0 else float("nan")
    if not pv_wm_ratio >= QC_MIN_PV_WM_RATIO:
        reasons.append(
            f"partial-volume WM is {pv_wm_ratio:.2f} of the WM label's volume (below {QC_MIN_PV_WM_RATIO}): "
            "the tissue-fraction fit disagrees with the segmentation"
        )
    fractions = {name: volumes[name] / tiv if tiv > 0 else float("nan") for name in TISSUES}
    for name, (low, high) in QC_FRACTIONS.items():
        if not low <= fractions[name] <= high:
            reasons.append(f"{name}/TIV {fractions[name]:.2f} outside {low}-{high}")
    if not QC_TIV_ML[0] <= tiv <= QC_TIV_ML[1]:
        reasons.append(f"TIV {tiv:.0f} mL outside {QC_TIV_ML[0]:.0f}-{QC_TIV_ML[1]:.0f} mL")
    return {
        "failed": bool(reasons),
        "reasons": reasons,
        "class_medians": medians,
        "gm_wm_contrast": float(contrast),
        "prior_contrast": float(prior_contrast),
        "prior_agreement": float(agreement),
        "pv_wm_ratio": float(pv_wm_ratio),
        "fractions": fractions,
        "TIV": tiv,
    }


# --------------------------------------------------------------------------- partial volumes

#: Mixing fractions of the two-tissue partial-volume components (CSF/GM and GM/WM).
PV_FRACTIONS = np.linspace(0.05, 0.95, 10)
#: Largest SD of a pure tissue, as a share of the smallest gap between tissue means.
PV_MAX_SD_GAP = 0.5


def _pv_components(
    means: np.ndarray, sds: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tissue content (n, 3: GM, WM, CSF), family, mean and SD of every mixture component.

    Families: 0-2 the pure tissues GM, WM, CSF; 3 CSF/GM mixtures; 4 GM/WM mixtures (one
    component per fraction in :data:`PV_FRACTIONS`). A mixture's mean is the
    fraction-weighted mean of its tissues and its noise combines theirs.
    """
    content = [np.eye(3)[k] for k in range(3)]
    family = [0, 1, 2]
    for a, b, fam in ((2, 0, 3), (0, 1, 4)):
        for frac in PV_FRACTIONS:
            row = np.zeros(3)
            row[a], row[b] = 1.0 - frac, frac
            content.append(row)
            family.append(fam)
    content_arr = np.array(content)
    return content_arr, np.array(family), content_arr @ means, np.sqrt(content_arr**2 @ sds**2)


def _pv_responsibilities(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, sds: np.ndarray
) -> np.ndarray:
    """Posterior (n_components, len(x)) of the components given intensities ``x``."""
    content, family, mu, sd = _pv_components(means, sds)
    prior = weights[family] / np.bincount(family)[family]
    log_lik = np.log(np.maximum(prior, 1e-300))[:, None] - np.log(sd)[:, None]
    log_lik = log_lik - 0.5 * ((x[None] - mu[:, None]) / sd[:, None]) ** 2
    log_lik -= log_lik.max(axis=0, keepdims=True)
    lik = np.exp(log_lik)
    return lik / lik.sum(axis=0, keepdims=True)


def partial_volume_fractions(values: np.ndarray, posteriors: np.ndarray, n_iter: int = 60) -> np.ndarray:
    """GM, WM and CSF fractions (3, N) of brain voxels from a partial-volume mixture model.

    Atropos posteriors say which tissue a voxel most likely *is*; summing them counts a
    voxel that is 70 % GM and 30 % CSF as one GM voxel. Grey matter, the middle intensity,
    absorbs the CSF/GM and GM/WM mixtures at every boundary, so posterior sums overestimate
    GM wherever boundaries are many (atrophied brains, coarse voxels). Like FSL FAST's
    ``pve`` maps (Santago & Gage 1993; Shattuck et al. 2001), this models the brain's
    intensity histogram as three pure tissues (Gaussian) plus CSF/GM and GM/WM mixtures
    (uniform mixing fraction, tissue means mixed linearly) and returns each voxel's expected
    tissue content. The pure tissues' means and SDs are measured, not fitted: the median and
    the MAD-based SD of each Atropos class (SD capped at :data:`PV_MAX_SD_GAP` of the
    smallest gap between means); EM fits only the five families' weights. Fitting the means
    and SDs by EM as well let one tissue swallow another (nichart12 S5, default mode: GM 662
    / WM 338 mL against DLMUSE's 548 / 474; measured: 544 / 481). If a class has too few
    voxels or the means are out of order, the posteriors are returned unchanged.
    """
    values = np.asarray(values, dtype=np.float64)
    posteriors = np.asarray(posteriors, dtype=np.float64)
    if values.size < 1000:
        return posteriors.astype(np.float32)
    labels = np.argmax(posteriors, axis=0)
    means, sds = np.zeros(3), np.zeros(3)
    for k in range(3):
        members = values[labels == k]
        if members.size < 50:
            return posteriors.astype(np.float32)
        means[k] = np.median(members)
        sds[k] = 1.4826 * np.median(np.abs(members - means[k]))
    if not means[2] < means[0] < means[1]:
        return posteriors.astype(np.float32)
    lo, hi = np.percentile(values, [0.1, 99.9])
    floor = (hi - lo) / 256
    gap = min(means[0] - means[2], means[1] - means[0])
    sds = np.clip(sds, floor, max(PV_MAX_SD_GAP * gap, floor))
    hist, edges = np.histogram(np.clip(values, lo, hi), bins=256, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    content, family, _, _ = _pv_components(means, sds)
    weights = np.full(5, 0.2)
    for _ in range(n_iter):
        resp = _pv_responsibilities(centres, weights, means, sds) * hist[None]
        weights = np.bincount(family, weights=resp.sum(axis=1), minlength=5)
        weights /= weights.sum()
    # Expected content per histogram bin, then interpolated to every voxel.
    fine = np.linspace(lo, hi, 1024)
    table = content.T @ _pv_responsibilities(fine, weights, means, sds)
    clipped = np.clip(values, lo, hi)
    return np.stack([np.interp(clipped, fine, table[k]) for k in range(3)]).astype(np.float32)


# --------------------------------------------------------------------------- modulation


def jacobian_determinant(anat2std: list[str], t1w: str, resolution: int, out_dir: str) -> str:
    """Determinant of the Jacobian of the template-to-T1w point mapping, on the template grid.

    Computed from the composite transform itself: the world coordinates of the T1w grid are
    resampled into template space with the forward transforms (linear interpolation of a
    linear function is exact), which gives, for every template voxel, the T1w point it maps
    to; finite differences of that map give the Jacobian. This avoids any assumption on how
    ANTs orders and inverts its affine and warp components.
    """
    ants = _ants()
    out = Path(out_dir)
    full = nib.load(t1w)
    # The coordinates are a linear function of the voxel indices, so a grid of every n-th
    # T1w voxel (no finer than 2 mm) resamples them just as exactly: 1/10 of the voxels of a
    # 0.9 mm scan to write and warp. Only the last < 2 mm at the far edges of the field of
    # view, far from the brain, are lost.
    zooms = np.sqrt((full.affine[:3, :3] ** 2).sum(axis=0))
    step = np.maximum(1, np.floor(2.0 / zooms + 1e-6)).astype(int)
    ref = nib.Nifti1Image(
        np.zeros([int(np.ceil(n / k)) for n, k in zip(full.shape[:3], step, strict=True)], np.uint8),
        full.affine @ np.diag([*step, 1]),
    )
    ijk = np.indices(ref.shape, dtype=np.float32)
    world = np.tensordot(ref.affine[:3, :3], ijk, axes=1) + ref.affine[:3, 3][:, None, None, None]
    tpl_file = template_file("head", resolution, out)
    fixed = ants.image_read(tpl_file)
    coords = []
    for axis in range(3):
        fname = save_like(world[axis], ref, out / f"coord{axis}.nii.gz")
        moved = ants.apply_transforms(fixed, ants.image_read(fname), anat2std, interpolator="linear")
        # ANTs resamples in float32: float64 would add memory, not precision.
        coords.append(moved.numpy().astype(np.float32))
    tpl_img = nib.load(tpl_file)
    spacing = np.sqrt((tpl_img.affine[:3, :3] ** 2).sum(axis=0))
    # J[i][j] = d x_subject_i / d (template voxel j) / spacing_j; template axes are RAS-aligned.
    # The determinant by cofactors on float32 arrays: a (..., 3, 3) float64 stack and
    # np.linalg.det's copies of it took ~1 GB at 1 mm.
    g = [np.gradient(coords[i], *spacing) for i in range(3)]
    del coords
    det = g[0][0] * (g[1][1] * g[2][2] - g[1][2] * g[2][1])
    det -= g[0][1] * (g[1][0] * g[2][2] - g[1][2] * g[2][0])
    det += g[0][2] * (g[1][0] * g[2][1] - g[1][1] * g[2][0])
    del g
    det = np.abs(det)
    # Outside the T1w field of view the coordinates are 0 and the determinant meaningless.
    det = np.where(np.isfinite(det) & (det < 20), det, 0.0)
    return save_like(det, tpl_img, out / "jacobian.nii.gz")


def modulate_gm(gm: str, anat2std: list[str], jacobian: str, out_dir: str) -> str:
    """GM probability warped to the template and multiplied by the Jacobian determinant.

    The sum of the result times the template voxel volume equals the T1w GM volume, so
    regional sums in the template are the participant's regional GM volumes.
    """
    ants = _ants()
    out = Path(out_dir)
    jac = ants.image_read(jacobian)
    warped = ants.apply_transforms(jac, ants.image_read(gm), anat2std, interpolator="linear")
    ref = nib.load(jacobian)
    mod = np.clip(warped.numpy(), 0, 1) * ref.get_fdata()
    return save_like(mod, ref, out / "gm_modulated.nii.gz")
