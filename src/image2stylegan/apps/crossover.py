"""Image crossover (Image2StyleGAN++ Sec. 8.1, Alg. 3): copy a region of image A into image B, blended by the
generator -- with left/right half masks, the "two-face" of the paper's Fig. 1d.

Alg. 3, as run here (x = A = I1, the image the mask selects; y = B = I2 everywhere else)::

    M_blur = feather(M)                                      # Gaussian-blurred binary mask
    w_out  = W_l(M_blur, M_blur, 1, w*, n_ini, A) + W_l(1 - M_blur, 1 - M_blur, 1, w*, n_ini, B)
    n_out  = Mk_n(M_blur, w_out, n_ini, A, B)

The "+" is one optimisation of all W+ rows over the sum of the two Eq. 1 objectives (two :class:`TargetTerm`), not
two runs; the noise stage (Eq. 3) matches A inside M_blur and B outside it with equal weights. w* is the mean
latent, or an existing embedding of A (the paper's choice; ``ws=``). The result is the generator's output
G(w_out, n_out), not a composite.

What each image can influence: the pixel-MSE terms read A only where M_blur > 0 and B only where M_blur < 1, so
B's pixels under the core of the mask (M_blur exactly 1) never enter a pixel term, and vice versa. The perceptual
terms compare VGG features of the *whole* A and B under the mask resized to each feature map (Eq. 1's M_p), so a
pixel also counts through the receptive field of any feature cell the mask touches; pixels farther than that from
the blurred region have no influence at all (``tests/test_crossover.py`` checks both, bit for bit).

Defaults (the paper gives no iteration counts for crossover): the 'good' preset's 200 W+ + 200 noise steps
(docs/algorithm.md#iterations); the W+ stage embeds both images from the mean latent at the schedule's embedding
rate (docs/algorithm.md#schedules), the noise stage at lr 5; λ_mse : λ_p = 1 : 1 as in reconstruction (the fast
schedule weighs the MSE 30x more), feather σ = 3 % of the side (docs/algorithm.md#feather-width).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..embed import Callback, Embedding
from ..errors import InputError
from ..generators.base import StyleGenerator
from ..losses import PerceptualLoss
from ..masks import check_mask_content, feather
from ..recipe import Recipe, image_term
from .ranges import WEIGHT, check_not_all_zero, setting
from .settings import EditSettings, embedding_stage, mse_weight_setting, perceptual_weight_setting
from .outputs import EditResult, copy_paste, db
from .plan import Plan

__all__ = ["CrossoverSettings", "crossover", "crossover_recipe", "prepare_crossover"]


@dataclass(frozen=True)
class CrossoverSettings(EditSettings):
    """Alg. 3's settings.

    * ``w_steps`` / ``noise_steps`` = 200 / 200: the paper gives none for crossover; we use the
      other edits' budget (the 'good' preset, docs/algorithm.md#iterations).
    * the W+ stage runs at the ``schedule``'s embedding rate; ``noise_lr`` 5 is the paper's (Alg. 2).
    * ``mse_weight`` : ``perceptual_weight`` = 1 : 1 for both images (the paper's 1e-5 : 1e-5; Adam ignores the
      overall scale).
    * ``noise_second_weight`` = 1: B's term in the noise stage weighs as much as A's (Eq. 3 with λ_mse1 = λ_mse2).
    * ``feather`` = 0.03: σ of the Gaussian making M_blur, as a fraction of the image side (paper: "suitable size";
      docs/algorithm.md#feather-width); 0 keeps the mask hard.
    * ``noise_space`` 'paper' (one map per noise input) or 'extended'; ``noise_lr_scaling`` see :class:`NoiseStage`.
    * ``seed`` seeds n_ini (and so the whole run).
    """

    mse_weight: float = mse_weight_setting()
    perceptual_weight: float = perceptual_weight_setting()
    noise_second_weight: float = setting(1.0, WEIGHT, "weight of B's term in the noise stage (A's is 1)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_not_all_zero(self, ("mse_weight", "perceptual_weight"), "the W+ stage would match nothing")


def crossover_recipe(image_a: torch.Tensor, image_b: torch.Tensor, soft_mask: torch.Tensor,
                     settings: CrossoverSettings = CrossoverSettings()) -> Recipe:
    """Alg. 3 as a recipe: one W+ stage over both images, then the noise stage. ``soft_mask`` is M_blur
    [1, 1, H, W] (1 = take A)."""
    outside = 1.0 - soft_mask
    terms = (
        image_term(image_a, soft_mask, mse_weight=settings.mse_weight,
                   perceptual_weight=settings.perceptual_weight, name="a"),
        image_term(image_b, outside, mse_weight=settings.mse_weight,
                   perceptual_weight=settings.perceptual_weight, name="b"),
    )
    return Recipe(
        (
            embedding_stage(None, settings.w_steps, settings.schedule, terms=terms),
            settings.noise_stage(image_a, settings.noise_steps, settings.noise_space, "noise", mask=soft_mask,
                                 second_target=image_b, second_weight=settings.noise_second_weight),
        ),
        seed=settings.seed, application="crossover",
    )


def crossover(generator: StyleGenerator, image_a: torch.Tensor, image_b: torch.Tensor, mask: torch.Tensor,
              perceptual: PerceptualLoss | None, settings: CrossoverSettings = CrossoverSettings(), *,
              callback: Callback | None = None, **start) -> EditResult:
    """Run Alg. 3: :func:`prepare_crossover` (``start``: its ``ws`` / ``noise``), then the engine."""
    return prepare_crossover(generator, image_a, image_b, mask, settings, **start).run(generator, perceptual, callback)


def prepare_crossover(
    generator: StyleGenerator,
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    mask: torch.Tensor,
    settings: CrossoverSettings = CrossoverSettings(),
    *,
    ws: torch.Tensor | None = None,
    noise: Sequence[torch.Tensor] | None = None,
) -> Plan:
    """Alg. 3, ready to run: the region ``mask`` of ``image_a`` over ``image_b``, blended by the generator.

    Args:
        generator: a frozen :class:`StyleGenerator`; everything runs on its device.
        image_a: [1, 3, H, W] in [-1, 1] (H = W = the generator's resolution), taken where ``mask`` is 1.
        image_b: [1, 3, H, W] in [-1, 1], taken where ``mask`` is 0.
        mask: [1, 1, H, W] binary (values >= 0.5 count as A); both regions must be non-empty.
        ws: starting W+ [1, num_ws, w_dim], e.g. an embedding of A (the paper's w*); default the mean latent.
        noise: starting noise maps; default seeded N(0, 1) (the paper's n_ini).

    Returns:
        a :class:`.plan.Plan`; its result is an :class:`EditResult` whose panel is A | B | naive copy-paste |
        crossover and whose metrics give the PSNR of the result against A inside the hard mask and against B
        outside it, after each stage.
    """
    size = generator.resolution
    device = generator.w_avg.device
    image_a, image_b = (_check_image(x, size, name).to(device) for x, name in ((image_a, "A"), (image_b, "B")))
    if mask.ndim != 4 or tuple(mask.shape) != (1, 1, size, size):
        raise InputError(f"crossover mask must be [1, 1, {size}, {size}], got {list(mask.shape)}")
    check_mask_content(mask, "crossover")
    hard = (mask.to(device=device, dtype=image_a.dtype) >= 0.5).to(image_a.dtype)
    soft = feather(hard, settings.feather)

    recipe = crossover_recipe(image_a, image_b, soft, settings)
    start = Embedding(ws, None if noise is None else list(noise))
    return Plan(recipe, lambda result: _measure(generator, result, recipe, image_a, image_b, hard, settings, ws),
                start)


def _measure(generator, result, recipe, image_a, image_b, hard, settings, ws) -> EditResult:
    size, device = generator.resolution, generator.w_avg.device
    with torch.no_grad():
        final = generator.synthesis(result.ws, result.noise).clamp(-1, 1)
        start_ws = generator.mean_ws(1) if ws is None else ws.to(device)
        metrics = {
            "psnr_a_inside_db": db(final, image_a, hard),
            "psnr_b_outside_db": db(final, image_b, 1.0 - hard),
            "stages": {
                s.name: {"psnr_a_inside_db": db(s.image.clamp(-1, 1), image_a, hard),
                         "psnr_b_outside_db": db(s.image.clamp(-1, 1), image_b, 1.0 - hard)}
                for s in result.stages
            },
            "mask_fraction_a": float(hard.mean()),
            "feather_sigma_px": settings.feather * size,
            "start": "mean latent" if ws is None else "given W+ (embedding of A)",
            "w_change_rms": float((result.ws - start_ws).square().mean().sqrt()),
        }
    panel = [
        ("A (inside mask)", image_a[0]),
        ("B (outside mask)", image_b[0]),
        ("naive copy-paste", copy_paste(image_a, image_b, hard)[0]),
        ("crossover (Alg. 3)", final[0]),
    ]
    return EditResult(result.ws, result.noise, panel, metrics, result.history, result.stages,
                      noise_space=settings.noise_space, recipe=recipe.summary(), stopped=result.stopped)


def _check_image(image: torch.Tensor, size: int, name: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or tuple(image.shape) != (1, 3, size, size):
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"crossover image {name} must be [1, 3, {size}, {size}], got {shape}")
    return image
