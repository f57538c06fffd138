"""Image inpainting (Image2StyleGAN++ Sec. 8.2, Alg. 4): fill a hole by embedding only the known pixels.

The paper's idea: "embed into the early layers of the W+ space to predict the missing content and in the later
layers to maintain color consistency". Alg. 4, as run here (M = the hole, 1 = missing; I_def = the defective
image)::

    w_out = W_l(1 - M, 1 - M, w_m, w_mean, n_ini, I_def)      # known pixels only; rows w_m only
    n_out = Mk_n(1 - M_blur+, w_out, n_ini, I_def, G(w_out, n_ini))
    result = G(w_out, n_out)                                  # the generator's output, no composite

* **Rows w_m.** The paper (18-row StyleGAN v1) optimises rows 1-9 and 17, 18 (1-indexed) and leaves the others at
  the mean latent: the coarse rows (4-64 px) predict the content, the last two keep the colours consistent. Here
  the set is computed from the generator's layers (:func:`inpainting_rows`): every row whose layer output is at
  most 64 px, plus the last two rows. For the bundled 23-row generator that is rows 0-12 (``conv1`` ...
  ``b64.conv2``) and 21, 22 (``b512.conv2``, ``b512.torgb``). (In StyleGAN v1 the rule gives rows 1-10: the paper
  stops after the first of the two 64 px rows.)
* **Only known pixels are read.** Before anything else the hole is replaced by the mean colour of the known
  pixels (``torch.where``, so whatever the hole holds, even NaN, is never read). The MSE terms are masked to the
  known region; the perceptual targets are VGG features of this filled image, so cells near the hole edge see the
  flat fill, never the hole's original pixels.
* **Noise stage.** M_blur+ = :func:`~image2stylegan.masks.blend_mask` (M) (the hole dilated by 2σ then blurred,
  exactly 1 inside the hole): the known region outside it is matched to I_def, the hole and its blurred border keep
  the W+ prediction G(w_out, n_ini). The paper's argument order for Mk_n is ambiguous
  (docs/algorithm.md#inpainting-noise-weights);
  we weight the kept-prediction term 10× the known term: λ_mse2 = 1e-4 over λ_mse1 = 1e-5. That keeps the noise
  maps, whose coarse layers reach into the hole, from dragging the prediction towards the known pixels.
* **Steps.** The paper uses 200 steps of plain gradient descent (lr unknown) for the W+ stage and 1000 noise
  steps; we use Adam for the preset's budget (200 + 200 by default), the W+ stage as a photo embedding from the mean
  latent at the schedule's rate (docs/algorithm.md#inpainting-optimiser): 200 Adam steps at 0.01 from the mean
  latent leave the known region visibly unfitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..embed import Callback, Embedding
from ..errors import InputError
from ..generators.base import StyleGenerator
from ..losses import PerceptualLoss
from ..masks import blend_mask, check_mask_content
from ..recipe import Recipe, Rendered, image_term
from .ranges import FEATHER, LAST_ROWS, STEPS, WEIGHT, check_not_all_zero, setting
from .settings import (EditSettings, embedding_stage, max_resolution_setting, method_setting, mse_weight_setting,
                       perceptual_weight_setting, rows_setting, w_steps_setting)
from .outputs import EditResult, db
from .plan import Plan

__all__ = ["InpaintSettings", "defective_view", "filled_photo", "hole_box", "inpaint",
           "inpainting_recipe", "inpainting_rows", "prepare_inpaint", "telea_fill"]


@dataclass(frozen=True)
class InpaintSettings(EditSettings):
    """Alg. 4's settings.

    * ``w_steps`` 400 with Adam at the schedule's embedding rate (the 'good' preset; 'draft' 200): the paper runs 200
      steps of gradient descent with an unpublished rate (docs/algorithm.md#inpainting-optimiser). The stage starts
      at the mean latent, so the presets give it the time other edits spend embedding their photo (apps.presets).
    * ``noise_steps`` 200 at Adam lr ``noise_lr`` 5 (the paper's rate; its count, 1000, with ``--quality paper``).
    * ``max_resolution`` 64 and ``last_rows`` 2: the W+ rows optimised (w_m) are those whose layer output is at
      most 64 px, plus the last 2 rows (the paper's rows 1-9, 17, 18); ``rows`` overrides the rule.
    * ``known_weight`` 1 and ``hole_weight`` 10: the noise stage's weights on "match I_def outside M_blur+" and
      "keep G(w_out) inside it" (the paper's λ_mse1 = 1e-5 and λ_mse2 = 1e-4; only the ratio matters for Adam).
    * ``feather`` 0.03 and ``dilate`` None (= 2 × feather): M_blur+ = the hole dilated by ``dilate`` × side, then
      blurred with σ = ``feather`` × side (docs/algorithm.md#blend-mask-size).
    * ``mse_weight`` : ``perceptual_weight`` 1 : 1 in the W+ stage, as reconstruction.
    * ``noise_space``, ``noise_lr_scaling``: see :class:`NoiseStage`; ``seed`` seeds n_ini.
    * ``method`` 'improved' (default) or 'paper' (docs/algorithm.md#edits-beyond-the-paper).
    * ``start_steps`` 0: W+ steps that first embed the photo with its hole filled by Telea's method (every row, the
      whole image), the start of the masked W+ stage instead of the mean latent; 'improved' only, off by default
      (docs/algorithm.md#inpainting-start).
    """

    W_STAGE_STARTS_AT_MEAN: ClassVar[bool] = True  # the presets' mean_start_w_steps (apps.presets)

    w_steps: int = w_steps_setting(400)  # the 'good' preset
    mse_weight: float = mse_weight_setting()
    perceptual_weight: float = perceptual_weight_setting()
    max_resolution: int = max_resolution_setting(64)
    last_rows: int = setting(2, LAST_ROWS, "also optimise this many last W+ rows (colour consistency)")
    rows: tuple[int, ...] | None = rows_setting()
    known_weight: float = setting(1.0, WEIGHT, "noise stage: weight of matching the known pixels")
    hole_weight: float = setting(10.0, WEIGHT, "noise stage: weight of keeping the W+ prediction in the hole")
    dilate: float | None = setting(None, FEATHER, "the hole's dilation before the blur, as a fraction of the image "
                                   "side; unset = 2 x feather", optional=True)
    method: str = method_setting()
    start_steps: int = setting(0, STEPS, "'improved': W+ steps embedding the Telea-filled photo (every row) before "
                               "the masked W+ stage; 0 starts that stage at the mean latent, as the paper does")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_not_all_zero(self, ("mse_weight", "perceptual_weight"), "the W+ stage would match nothing")


def inpainting_rows(generator: StyleGenerator, max_resolution: int = 64, last_rows: int = 2) -> list[int]:
    """Alg. 4's w_m: rows whose layer output is at most ``max_resolution`` px, plus the last ``last_rows`` rows.

    Bundled 23-row generator: [0, ..., 12, 21, 22]. Returns sorted row indices.
    """
    if last_rows < 0 or max_resolution < 1:
        raise InputError(f"inpainting rows: need max_resolution >= 1 and last_rows >= 0, got {max_resolution}, "
                         f"{last_rows}")
    coarse = set(generator.rows_up_to(max_resolution))
    last = set(range(max(generator.num_ws - last_rows, 0), generator.num_ws))
    rows = sorted(coarse | last)
    if not rows:
        raise InputError(f"no W+ row of {generator.name} drives a layer of at most {max_resolution} px")
    return rows


def defective_view(image: torch.Tensor, hole: torch.Tensor, fill: torch.Tensor | float) -> torch.Tensor:
    """``image`` with the hole replaced by ``fill`` ([1, 3, 1, 1] colour or a scalar); the hole is never read."""
    return torch.where(hole > 0.5, torch.as_tensor(fill, dtype=image.dtype, device=image.device), image)


def telea_fill(image: torch.Tensor, hole: torch.Tensor, radius: int = 5) -> torch.Tensor:
    """The classical baseline: OpenCV's fast-marching inpainting (Telea 2004) of ``image`` [1, 3, H, W] in [-1, 1]
    inside ``hole`` [1, 1, H, W] (>= 0.5 = missing), which propagates the hole's border inwards; the hole's own
    pixels are never read. Returns [1, 3, H, W] in [-1, 1] on ``image``'s device."""
    import cv2  # a dependency; imported here so that importing the library stays light

    pixels = ((image[0].detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    holes = (hole[0, 0].detach().cpu() >= 0.5)
    pixels = pixels.masked_fill(holes, 0).permute(1, 2, 0).contiguous().numpy()
    filled = cv2.inpaint(pixels, holes.to(torch.uint8).numpy() * 255, radius, cv2.INPAINT_TELEA)
    return (torch.from_numpy(filled).permute(2, 0, 1)[None].to(image) / 127.5 - 1.0)


def filled_photo(render: torch.Tensor, image: torch.Tensor, hole: torch.Tensor, *, tolerance: float = 1e-4,
                 max_iterations: int | None = None) -> torch.Tensor:
    """The photo with its hole filled: ``render`` [1, 3, H, W] blended into ``image``'s known pixels by Poisson
    image editing (Pérez et al. 2003) with the hole as the region.

    Inside the hole the result f solves Δf = Δrender, with f = ``image`` on the known pixels around it: it keeps the
    render's gradients (its mouth, its texture), while a colour or brightness offset between render and photo fades
    out across the hole instead of showing as a seam at its edge. Equivalently f = render + c, where c is harmonic
    in the hole and equals image - render on the known pixels next to it; c is found by conjugate gradients
    (``tolerance``: the residual relative to the right-hand side; ``max_iterations``, unset: 4 × the longer side of
    the hole's box, as CG on an n × n grid's Laplacian needs O(n) iterations; a 300 × 200 px hole takes ~0.7 s on 2
    CPU cores). At the image's own edge there are no neighbours and nothing is imposed there. Outside ``hole`` [1, 1, H, W] (>= 0.5 = missing) the result is ``image`` exactly,
    and ``image``'s pixels inside it are never read. (OpenCV's ``seamlessClone`` erodes its region by an unstated
    margin and works in 8 bits, so the known pixels next to the hole would change; here they cannot.)

    Returns [1, 3, H, W] in [-1, 1] on ``image``'s device.
    """
    inside = hole >= 0.5
    if not bool(inside.any()):
        return image.clone()
    # Everything happens in the hole's bounding box grown by the one known pixel that bounds it.
    top, bottom, left, right = hole_box(hole, margin=0.0)
    top, left = max(top - 1, 0), max(left - 1, 0)
    bottom, right = min(bottom + 1, hole.shape[-2]), min(right + 1, hole.shape[-1])
    box = (..., slice(top, bottom), slice(left, right))
    mask = inside[box].to(torch.float32)
    rendered = render.detach()[box].to(torch.float32)
    known = torch.where(inside, torch.zeros_like(image), image)[box].to(torch.float32)  # the hole never read

    def neighbours(x: torch.Tensor) -> torch.Tensor:  # sum of the 4-neighbours inside the box (0 past its edge)
        padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
        return padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1] + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:]

    # A hole pixel at the box's edge is at the image's edge (elsewhere the box has a known pixel beyond the hole),
    # so counting the neighbours inside the box counts those inside the image.
    count = neighbours(torch.ones_like(mask))

    def apply(x: torch.Tensor) -> torch.Tensor:  # the Dirichlet Laplacian (negated) on the hole's pixels
        return mask * (count * x - neighbours(mask * x))

    rhs = mask * neighbours((1 - mask) * (known - rendered))
    c = torch.zeros_like(rhs)
    residual = rhs.clone()
    direction = residual.clone()
    dims = (2, 3)
    rr = (residual * residual).sum(dim=dims, keepdim=True)
    stop = (tolerance ** 2) * (rhs * rhs).sum(dim=dims, keepdim=True).clamp_min(1e-30)
    for _ in range(max_iterations if max_iterations is not None else 4 * max(bottom - top, right - left)):
        if bool((rr <= stop).all()):
            break
        product = apply(direction)
        step = rr / (direction * product).sum(dim=dims, keepdim=True).clamp_min(1e-30)
        c = c + step * direction
        residual = residual - step * product
        new_rr = (residual * residual).sum(dim=dims, keepdim=True)
        direction = residual + (new_rr / rr.clamp_min(1e-30)) * direction
        rr = new_rr
    filled = image.clone()
    filled[box] = torch.where(inside[box], (rendered + c).clamp(-1, 1).to(image.dtype), image[box])
    return filled


def hole_box(hole: torch.Tensor, margin: float = 0.1) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the hole's bounding box grown by ``margin`` of its size on each side, clipped
    to the image: the crop in which LPIPS judges whether the fill looks like a face part or a smear."""
    rows = torch.nonzero((hole[0, 0] >= 0.5).any(dim=1)).flatten()
    cols = torch.nonzero((hole[0, 0] >= 0.5).any(dim=0)).flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    dy, dx = round(margin * (bottom - top)), round(margin * (right - left))
    size_h, size_w = hole.shape[-2:]
    return max(top - dy, 0), min(bottom + dy, size_h), max(left - dx, 0), min(right + dx, size_w)


def inpainting_recipe(defective: torch.Tensor, hole: torch.Tensor, rows: Sequence[int],
                      settings: InpaintSettings = InpaintSettings()) -> Recipe:
    """Alg. 4 as a recipe for the defective image (hole already filled, never read) and the binary ``hole``:
    W+ rows ``rows`` on the known pixels, then the noise stage matching the known region outside M_blur+ and
    keeping the W+ prediction G(w_out, n_ini) inside it.

    'improved' with ``settings.start_steps`` > 0 first embeds the photo with its hole filled by a classical
    inpainting (:func:`telea_fill`, which reads the known pixels only) with every row, so the masked stage starts
    from the person's colours and shape instead of the mean face."""
    known = 1.0 - hole
    term = image_term(defective, known, mse_weight=settings.mse_weight, perceptual_weight=settings.perceptual_weight)
    if settings.method == "improved":
        # VGG's receptive fields reach into the hole: features of the filled image near its edge describe the flat
        # fill, and about half of the perceptual term's pixel gradient pulls the hole towards it. Comparing with
        # the known pixels composited over the current render keeps the fill out of the objective.
        term = replace(term, perceptual_known=known)
    w_stage = embedding_stage(None, settings.w_steps, settings.schedule, rows=tuple(rows), terms=(term,))
    # 'paper': the known pixels are matched outside M_blur+ only, so a band 2-3 sigma wide around the hole keeps the
    # W+ prediction and the known region stays ~1 dB below what the noise stage can reach. 'improved': every known
    # pixel is matched and the prediction is kept in the hole itself (the noise maps carry detail, not layout, so
    # no seam appears at the hole's edge).
    fitted = known if settings.method == "improved" else 1.0 - blend_mask(hole, settings.dilate, settings.feather)
    noise_stage = settings.noise_stage(defective, settings.noise_steps, settings.noise_space, "noise",
                                       mse_weight=settings.known_weight, mask=fitted,
                                       second_target=Rendered(w_stage.name), second_weight=settings.hole_weight)
    stages = (w_stage, noise_stage)
    if settings.method == "improved" and settings.start_steps > 0:
        start = telea_fill(defective, hole)
        stages = (embedding_stage(start, settings.start_steps, settings.schedule, name="start_w_plus"), *stages)
    return Recipe(stages, seed=settings.seed, init="mean", application="inpaint")


def inpaint(generator: StyleGenerator, image: torch.Tensor, hole: torch.Tensor, perceptual: PerceptualLoss | None,
            settings: InpaintSettings = InpaintSettings(), *, callback: Callback | None = None, **extra) -> EditResult:
    """Run Alg. 4: :func:`prepare_inpaint` (``extra``: its ``reference`` / ``lpips`` / ``noise``), then the engine."""
    return prepare_inpaint(generator, image, hole, settings, **extra).run(generator, perceptual, callback)


def prepare_inpaint(
    generator: StyleGenerator, image: torch.Tensor, hole: torch.Tensor, settings: InpaintSettings = InpaintSettings(),
    *,
    reference: torch.Tensor | None = None,
    lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    noise: Sequence[torch.Tensor] | None = None,
) -> Plan:
    """Alg. 4, ready to run, on ``image`` with the missing region ``hole``.

    Args:
        generator: a frozen :class:`StyleGenerator`; everything runs on its device.
        image: [1, 3, H, W] in [-1, 1] at the generator's resolution; its pixels inside the hole are never read.
        hole: [1, 1, H, W], 1 (>= 0.5) where pixels are missing; neither empty nor the whole image.
        reference: the intact image [1, 3, H, W], only for metrics (PSNR inside the hole and overall) and the panel.
        lpips: optional LPIPS metric ``(x, y) -> [B]``, measured against ``reference`` over the whole image.
        noise: starting noise maps; default seeded N(0, 1) (n_ini). W+ always starts at the mean latent.

    Returns:
        a :class:`.plan.Plan`; its result is an :class:`EditResult` with panel defective input (hole grey) | naive
        fill | inpainted [| reference] and
        metrics: PSNR on the known region (after each stage), the rows optimised, and with ``reference`` the PSNR
        inside the hole of the result and of the naive fill.
    """
    size = generator.resolution
    device = generator.w_avg.device
    if not isinstance(image, torch.Tensor) or tuple(image.shape) != (1, 3, size, size):
        raise InputError(f"inpainting image must be [1, 3, {size}, {size}], got {_shape(image)}")
    if not isinstance(hole, torch.Tensor) or tuple(hole.shape) != (1, 1, size, size):
        raise InputError(f"inpainting hole mask must be [1, 1, {size}, {size}], got {_shape(hole)}")
    if reference is not None and tuple(reference.shape) != (1, 3, size, size):
        raise InputError(f"inpainting reference must be [1, 3, {size}, {size}], got {_shape(reference)}")
    check_mask_content(hole, "inpainting hole")
    image = image.to(device)
    hole = (hole.to(device=device, dtype=image.dtype) >= 0.5).to(image.dtype)
    known = 1.0 - hole
    rows = list(settings.rows) if settings.rows is not None else inpainting_rows(
        generator, settings.max_resolution, settings.last_rows)

    # I_def as the algorithm sees it: the hole holds the mean known colour, computed from known pixels only.
    fill = (defective_view(image, hole, 0.0) * known).sum(dim=(2, 3), keepdim=True) / known.sum(dim=(2, 3), keepdim=True)
    defective = defective_view(image, hole, fill)
    recipe = inpainting_recipe(defective, hole, rows, settings)
    start = None if noise is None else Embedding(None, list(noise))
    return Plan(recipe, lambda result: _measure(generator, result, recipe, image, hole, defective, fill, rows,
                                                reference, lpips, settings), start)


def _measure(generator, result, recipe, image, hole, defective, fill, rows, reference, lpips, settings) -> EditResult:
    known = 1.0 - hole
    with torch.no_grad():
        final = generator.synthesis(result.ws, result.noise).clamp(-1, 1)
        metrics = {
            "psnr_known_db": db(final, defective, known),
            "stages": {s.name: {"psnr_known_db": db(s.image.clamp(-1, 1), defective, known)} for s in result.stages},
            "hole_fraction": float(hole.mean()),
            "rows_optimised": rows,
            "fill_colour": [float(c) for c in fill.flatten()],
        }
        filled = filled_photo(final, image, hole)
        panel = [
            ("defective input", defective_view(image, hole, 0.0)[0]),
            ("naive fill (mean colour)", defective[0]),
            ("inpainted (Alg. 4)", final[0]),
            ("filled photo (blended)", filled[0]),
        ]
        if reference is not None:
            reference = reference.to(image.device)
            telea = telea_fill(image, hole)
            metrics["reference"] = {
                "psnr_hole_db": db(final, reference, hole),
                "psnr_full_db": db(final, reference, None),
                "filled_psnr_hole_db": db(filled, reference, hole),
                "naive_fill_psnr_hole_db": db(defective, reference, hole),
                "telea_psnr_hole_db": db(telea, reference, hole),
            }
            if lpips is not None:
                top, bottom, left, right = hole_box(hole)

                def crop(x: torch.Tensor) -> torch.Tensor:
                    return x[..., top:bottom, left:right]

                metrics["reference"]["lpips_full"] = float(lpips(final, reference)[0])
                metrics["reference"]["hole_box"] = [top, bottom, left, right]
                for key, x in (("lpips_hole_box", final), ("filled_lpips_hole_box", filled),
                               ("naive_fill_lpips_hole_box", defective), ("telea_lpips_hole_box", telea)):
                    metrics["reference"][key] = float(lpips(crop(x), crop(reference))[0])
            panel.append(("Telea fill (OpenCV)", telea[0]))
            panel.append(("reference", reference[0]))
    return EditResult(result.ws, result.noise, panel, metrics, result.history, result.stages,
                      noise_space=settings.noise_space, recipe=recipe.summary(), stopped=result.stopped,
                      images={"filled.png": filled[0]})


def _shape(x) -> object:
    return list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
