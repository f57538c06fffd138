"""Local edits using scribbles (Image2StyleGAN++ Sec. 8.3, Alg. 5): a user paints rough strokes on a photo, and
embedding the painted image into the *coarse* W+ rows only turns the strokes into a photo-realistic change.

    1: (w*, n*) <- embedding of the unscribbled photo (W+ stage, then noise stage; or a saved latent)
    2: w_out = W_l(1, 1, w_m, w*, n*, I_scr)      w_m = the coarse rows; all spatial masks 1        (Eq. 2)
    3: n_out = Mk_n(1 - M_blur, w_out, n*, I, G(w_out, n*))                                          (Eq. 3)

Line 2 can only change what the coarse layers control (shape, layout, large colour regions), so the scribble's
flat colours act as a guide, not a target to copy ("approximate embedding"). Line 3 restores the photo's detail
*outside* the edit: the noise maps match the original photo I where 1 - M_blur is 1 and the edited rendering
G(w_out, n*) inside the (blurred) scribble region. M is the set of pixels the scribble changed.

The paper says "the first 4 to 6 layers" of its 18-row W+ (StyleGAN at 1024 px: rows 0-1 run at 4 px, 2-3 at
8 px, 4-5 at 16 px), i.e. the rows of the layers up to 16 px. :func:`coarse_rows` finds those rows for any
generator from the resolution of each layer's output (rows 0-6 of the bundled generator's 23).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..embed import Callback, Embedding, start_noise
from ..errors import InputError
from ..generators.base import StyleGenerator
from ..losses import PerceptualLoss
from ..masks import blend_mask, check_mask_content, difference_mask, feather
from ..recipe import Recipe, TargetTerm, image_term
from .ranges import MAX_RESOLUTION, STEPS, THRESHOLD, WEIGHT, check_not_all_zero, setting
from .settings import (EditSettings, embedding_noise_stage, embedding_stage, init_setting, method_setting,
                       mse_weight_setting, perceptual_weight_setting, rows_setting, w_lr_setting)
from .outputs import EditResult, by_stage, db, mean_abs_error, start_point
from .plan import Plan

__all__ = ["COLOUR_ROWS", "ScribbleSettings", "coarse_rows", "scribble_blend_mask", "scribble_edit",
           "scribble_mask", "scribble_recipe", "scribble_rows",
           "prepare_scribble"]


@dataclass(frozen=True)
class ScribbleSettings(EditSettings):
    """Alg. 5's settings.

    * ``method`` 'improved' (default) or 'paper': see :func:`scribble_recipe` and
      docs/algorithm.md#edits-beyond-the-paper. ``edit_weight`` 5 and ``keep_weight`` 5 weigh its extra terms.
    * ``max_resolution`` unset: the edit stage optimises the W+ rows of the layers whose output is at most 32 px
      ('improved', plus the last two rows) or 16 px ('paper', the paper's "first 4 to 6 layers";
      docs/algorithm.md#scribble-rows); ``rows`` names them explicitly instead.
    * Iterations are UNKNOWN in the paper: the 'good' preset's 200 W+ + 200 noise steps (:mod:`.presets`,
      docs/algorithm.md#iterations), Adam ``w_lr`` 0.01 after a warm-up / 5. ``embed_w_steps`` /
      ``embed_noise_steps`` (100 + 200) embed the unscribbled photo first at the schedule's embedding rate
      (skipped with a starting embedding, the CLI's ``--from``).
    * λ_mse = λ_p = 1 (the paper's 1e-5 : 1e-5), no spatial masks in the W+ stage, no latent regulariser (the
      paper mentions none; freezing the fine rows is what keeps the edit local in W+).
    * ``threshold`` = 0.05 on the [0, 1] scale: a pixel belongs to the scribble when a channel changed by more
      (about 13 grey levels). ``feather`` = 0.03: M_blur's Gaussian σ as a fraction of the side
      (docs/algorithm.md#feather-width).
    """

    w_lr: float = w_lr_setting()
    embed_w_steps: int = setting(100, STEPS, "W+ steps embedding the photo first; 0 skips them")
    embed_noise_steps: int = setting(200, STEPS, "noise steps embedding the photo first; 0 skips them")
    max_resolution: int | None = setting(None, MAX_RESOLUTION, "optimise the W+ rows of the layers at most this many "
                                         "px; unset = the method's (32 improved, the paper's 16)", optional=True)
    rows: tuple[int, ...] | None = rows_setting()
    mse_weight: float = mse_weight_setting()
    perceptual_weight: float = perceptual_weight_setting()
    threshold: float = setting(0.05, THRESHOLD, "a pixel is scribbled when a channel changed by more, on the "
                                                "0-1 scale")
    init: str = init_setting()
    method: str = method_setting()
    edit_weight: float = setting(5.0, WEIGHT, "'improved' method: weight of the extra pixel MSE to the scribbled "
                                 "image inside the dilated edit region, as a mean over that region")
    keep_weight: float = setting(5.0, WEIGHT, "'improved' method: weight of an extra pixel MSE to the photo outside "
                                 "the dilated edit region, as a mean over that region")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_not_all_zero(self, ("mse_weight", "perceptual_weight"), "the W+ stage would match nothing")

    @property
    def coarse_limit(self) -> int:
        """``max_resolution``, or the method's: 32 px ('improved'; the rows up to 16 px could not draw the strokes),
        16 px (the paper's "first 4 to 6 layers")."""
        if self.max_resolution is not None:
            return self.max_resolution
        return 32 if self.method == "improved" else 16


COLOUR_ROWS = 2
"""'improved': the last W+ rows (the bundled generator's ``b512.conv2`` and ``b512.torgb``) are optimised with the
coarse rows. They carry colour: frozen (the paper), a colour scribble cannot change the colour of what it covers."""



@torch.no_grad()
def coarse_rows(generator: StyleGenerator, max_resolution: int = 16) -> list[int]:
    """The W+ rows that drive the layers whose output is at most ``max_resolution`` px on its longer side.

    From the generator interface (:meth:`StyleGenerator.rows_up_to`); the bundled generator: conv1 at 4 px,
    b8.up, b8.conv1, b8.conv2, b16.up, ... -> rows 0-6 for 16 px.

    Raises:
        InputError: no layer is that coarse.
    """
    rows = generator.rows_up_to(max_resolution)
    if not rows:
        raise InputError(f"no layer of {generator.name} runs at {max_resolution} px or less; raise the limit")
    return rows


def scribble_mask(photo: torch.Tensor, scribbled: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """M [1, 1, H, W]: the pixels the scribble changed (:func:`masks.difference_mask`), checked to be a real edit."""
    mask = difference_mask(photo, scribbled, threshold)
    if not bool(mask.any()):
        raise InputError(f"the scribbled image does not differ from the photo by more than {threshold} anywhere; "
                         "paint on a copy of the photo, or pass --mask")
    return mask


def scribble_blend_mask(mask: torch.Tensor, settings: ScribbleSettings = ScribbleSettings()) -> torch.Tensor:
    """M_blur [1, 1, H, W]: the region the restoring noise stage leaves to the edit.

    'paper': the scribble mask feathered with σ = ``settings.feather`` × side. On thin strokes that averages about
    0.6 (0.22 at worst), so the noise stage pulls the edited pixels ~40 % back to the photo and undoes a third of
    the edit. 'improved': :func:`~image2stylegan.masks.blend_mask`, dilated by 2σ before the blur and exactly 1 on
    every scribbled pixel."""
    if settings.method == "paper":
        return feather(mask, settings.feather)
    return blend_mask(mask, None, settings.feather)


def scribble_rows(generator: StyleGenerator, settings: ScribbleSettings = ScribbleSettings()) -> list[int]:
    """The W+ rows the edit stage optimises: ``settings.rows``, or the rows up to ``settings.coarse_limit`` px
    (:func:`coarse_rows`) and, with the 'improved' method, the last :data:`COLOUR_ROWS` rows."""
    if settings.rows is not None:
        rows = list(settings.rows)
    else:
        rows = coarse_rows(generator, settings.coarse_limit)
        if settings.method == "improved":
            rows = sorted(set(rows) | set(range(max(generator.num_ws - COLOUR_ROWS, 0), generator.num_ws)))
    if not rows or min(rows) < 0 or max(rows) >= generator.num_ws:
        raise InputError(f"scribble rows must be a non-empty subset of 0..{generator.num_ws - 1}, got {rows}")
    return rows


def scribble_recipe(
    photo: torch.Tensor, scribbled: torch.Tensor, m_blur: torch.Tensor, rows: Sequence[int],
    settings: ScribbleSettings = ScribbleSettings(), *, embed_photo: bool = True, noise_space: str | None = None,
) -> Recipe:
    """Alg. 5 as a recipe: [embed the photo (W+, then noise),] the coarse rows to the scribbled image, then the
    noise maps to the photo outside M_blur and to the edited render G(w_out, n*) inside it.

    With ``settings.method`` 'improved', ``m_blur`` is the dilated blend mask (:func:`scribble_blend_mask`), the
    edit stage adds a pixel MSE to the scribbled image inside it (``settings.edit_weight``) and one to the photo
    outside it (``settings.keep_weight``), and ``rows`` runs to 32 px and includes the colour rows
    (:func:`scribble_rows`)."""
    space = settings.noise_space if noise_space is None else noise_space
    stages: list = []
    if embed_photo:  # line 1: (w*, n*) = the paper's reconstruction (Alg. 2) of the unscribbled photo
        stages += [
            embedding_stage(photo, settings.embed_w_steps, settings.schedule, name="photo_w_plus"),
            embedding_noise_stage(photo, settings.embed_noise_steps, settings.schedule,
                                  lr_scaling=settings.noise_lr_scaling, lr=settings.noise_lr, noise_space=space,
                                  name="photo_noise"),
        ]
    # Line 2: the rows, MSE + perceptual to the scribbled image, no spatial masks (the colours guide).
    terms = [image_term(scribbled, mse_weight=settings.mse_weight, perceptual_weight=settings.perceptual_weight)]
    if settings.method == "improved":
        area = float(m_blur.mean())
        # Without it the whole-image loss barely asks for the edit: most of the scribbled image matches the photo.
        # Divided by the region's area, its mean error counts ``edit_weight`` times as much as the whole image's.
        terms.append(TargetTerm(scribbled, settings.edit_weight / area, 0.0, mse_mask=m_blur, name="edit"))
        if settings.keep_weight > 0:  # the rows that make the edit also move the rest: hold it to the photo
            terms.append(TargetTerm(photo, settings.keep_weight / (1.0 - area), 0.0, mse_mask=1.0 - m_blur,
                                    name="keep"))
    stages.append(settings.edit_stage(tuple(terms), settings.w_steps, settings.w_lr, rows=tuple(rows),
                                      name="scribble_w_plus"))
    # Line 3: noise to the ORIGINAL photo outside M_blur and to the edited rendering inside it.
    stages.append(settings.restoring_noise_stage(photo, 1.0 - m_blur, "scribble_w_plus", space, "restore_noise"))
    return Recipe(tuple(stages), seed=settings.seed, init=settings.init, application="scribble")


def scribble_edit(generator: StyleGenerator, photo: torch.Tensor, scribbled: torch.Tensor, perceptual: PerceptualLoss,
                  settings: ScribbleSettings = ScribbleSettings(), *, callback: Callback | None = None,
                  **start) -> EditResult:
    """Run Alg. 5: :func:`prepare_scribble` (``start``: its ``mask`` / ``ws`` / ``noise``), then the engine."""
    return prepare_scribble(generator, photo, scribbled, settings, **start).run(generator, perceptual, callback)


def prepare_scribble(
    generator: StyleGenerator,
    photo: torch.Tensor,
    scribbled: torch.Tensor,
    settings: ScribbleSettings = ScribbleSettings(),
    *,
    mask: torch.Tensor | None = None,
    ws: torch.Tensor | None = None,
    noise: Sequence[torch.Tensor] | None = None,
) -> Plan:
    """Alg. 5, ready to run: turn the scribbles of ``scribbled`` into a realistic edit of ``photo``.

    Args:
        generator: a frozen :class:`StyleGenerator`.
        photo: the original I [1, 3, H, W] in [-1, 1] at the generator's resolution.
        scribbled: the same photo with strokes painted on, [1, 3, H, W].
        mask: M [1, 1, H, W], the edited region; None = the pixels where the two images differ
            (``settings.threshold``).
        ws, noise: the photo's embedding (w*, n*), e.g. from ``latent.npz``; None embeds ``photo`` first
            (``embed_w_steps`` W+ steps, then ``embed_noise_steps`` noise steps).

    Returns:
        a :class:`.plan.Plan`; its result is an :class:`EditResult`: panel original | scribbled | result; metrics:
        PSNR against the photo outside the edit
        (weighted by 1 - M_blur, the region the noise stage restores) and inside it, each at the start, after the
        W+ stage and at the end, plus the rows optimised.

    Raises:
        InputError: bad shapes, no difference between the images, or a mask that is empty or covers everything.
    """
    size = generator.resolution
    for image, what in ((photo, "photo"), (scribbled, "scribbled image")):
        if image.ndim != 4 or tuple(image.shape) != (1, 3, size, size):
            raise InputError(f"{what} must be [1, 3, {size}, {size}], got {list(image.shape)}")
    like = generator.w_avg
    photo, scribbled = photo.to(like), scribbled.to(like)
    if mask is None:
        mask = scribble_mask(photo, scribbled, settings.threshold)
    elif mask.ndim != 4 or tuple(mask.shape) != (1, 1, size, size):
        raise InputError(f"scribble mask must be [1, 1, {size}, {size}], got {list(mask.shape)}")
    mask = mask.to(like)
    check_mask_content(mask, "scribble")  # the noise stage needs an outside to restore
    m_blur = scribble_blend_mask(mask, settings)
    outside = 1.0 - m_blur
    rows = scribble_rows(generator, settings)
    noise, space = start_noise(generator, noise, settings.seed, settings.noise_space)
    recipe = scribble_recipe(photo, scribbled, m_blur, rows, settings, embed_photo=ws is None, noise_space=space)
    points = {"start": start_point(generator, ws, noise, "photo_noise"), "after_w_plus": "scribble_w_plus",
              "final": "restore_noise"}
    # Outside the dilated edit, whatever the method ('improved' already made that mask: M_blur is it).
    kept = outside if settings.method == "improved" else 1.0 - blend_mask(mask, None, settings.feather)
    return Plan(recipe, lambda result: _measure(generator, result, recipe, photo, scribbled, mask, outside, kept,
                                                rows, points, space), Embedding(ws, noise))


def _measure(generator, result, recipe, photo, scribbled, mask, outside, kept, rows, points, space) -> EditResult:
    # Measured the same way whatever the method: "kept" = outside the dilated blend mask (1 - M_blur+), which
    # neither method's edit should touch; "progress" = how much closer to the scribble's colours the edited pixels
    # came, from the photo (0: unchanged; 1: the scribble's colours exactly; the naive copy-paste scores 1).
    before = mean_abs_error(photo, scribbled, mask)

    def progress(x: torch.Tensor) -> float | None:
        after = mean_abs_error(x, scribbled, mask)
        return None if not before or after is None else 1.0 - after / before

    metrics = {
        "psnr_outside_edit_db": by_stage(result, lambda x: db(x, photo, outside), points),
        "psnr_outside_dilated_edit_db": by_stage(result, lambda x: db(x, photo, kept), points),
        "psnr_inside_edit_vs_photo_db": by_stage(result, lambda x: db(x, photo, mask), points),
        "psnr_inside_edit_vs_scribbled_db": by_stage(result, lambda x: db(x, scribbled, mask), points),
        "colour_error_inside_edit": by_stage(result, lambda x: mean_abs_error(x, scribbled, mask), points),
        "photo_colour_error_inside_edit": before,
        "edit_progress": by_stage(result, progress, points),
        "rows": rows,
        "mask_fraction": float(mask.mean()),
        "noise_space": space,
    }
    with torch.no_grad():
        final = generator.synthesis(result.ws, result.noise)
    panel = [("original", photo[0]), ("scribbled", scribbled[0]), ("result", final[0].clamp(-1, 1))]
    return EditResult(result.ws, result.noise, panel, metrics, result.history, result.stages, noise_space=space,
                      recipe=recipe.summary(), stopped=result.stopped)
