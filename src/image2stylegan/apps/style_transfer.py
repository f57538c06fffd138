"""Local style transfer (Image2StyleGAN++ Sec. 8.4, Alg. 6): keep a content image inside a mask, give the rest of
the picture the Gram-matrix style of a second image, then restore detail with the masked noise stage.

    1: (w*, n_ini) <- initialize()                                    w* = W+ embedding of the content image I1
    2: w_out = W_l(M_blur, M_blur, 1, w*, n_ini, I1) + M_st(1 - M_blur, w*, n_ini, I2)           (Eq. 2 + Eq. 4)
    3: n_out = Mk_n(M_blur, w_out, n_ini, I1, G(w_out))                                                    (Eq. 3)

Line 2 is ONE optimisation of all W+ rows over the sum of the content terms (MSE + perceptual under M_blur) and the
style term (Gram matrices of VGG16 conv3_3 = ``relu3_3`` under 1 - M_blur). Line 3 optimises the noise maps to
match I1 inside M_blur and G(w_out, n) outside it, so the noise sharpens the kept region without undoing the style.

Choices where the paper is silent (see :class:`StyleTransferSettings`): the style statistics are taken from the
same region (1 - M_blur) of the style image, which keeps the two Gram matrices on one scale (``gram_matrix``
divides by the whole map's C·H·W, so a Gram over a masked region shrinks with the region's area); λ_s is calibrated
for our normalisation, not copied from the paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..embed import Callback, Embedding, start_noise
from ..errors import InputError
from ..generators.base import StyleGenerator
from ..losses import STYLE_LAYER, PerceptualLoss, gram_distance, gram_matrix
from ..masks import check_mask_content, feather
from ..recipe import Recipe, TargetTerm
from .ranges import LEARNING_RATE, STEPS, STYLE_WEIGHT, WEIGHT, check_not_all_zero, choice, setting
from .settings import PAPER_W_LR, EditSettings, embedding_stage, init_setting, method_setting
from .outputs import EditResult, by_stage, copy_paste, db, start_point
from .plan import Plan

__all__ = [
    "DEFAULT_STYLE_WEIGHT",
    "StyleTransferSettings",
    "local_style_transfer",
    "style_transfer_recipe",
    "outside_style_distance",
    "prepare_style_transfer",
    "style_transfer_terms",
]

DEFAULT_STYLE_WEIGHT = 5e4
"""λ_s relative to λ_mse = λ_p = 1. The paper's 5e-7 against λ_p = 1e-5 (a ratio of 0.05) belongs to its own,
unknown, Gram normalisation (docs/algorithm.md#style-weight); ours divides by C·H·W (Gatys), which makes the style
loss about 1e-4
of the perceptual term, so the ratio cannot be copied. Calibrated instead so that, at the start of the W+ stage
(the content's embedding w*), the style term's gradient on W+ is as large as the content terms' (MSE + perceptual):
on the bundled generator, the astronaut face (250-step embedding), mask "center", four style images (Hubble deep
field, an immunohistochemistry slide, coffee, gravel) needed λ_s = 4.2e4 ... 6.1e4 for equal gradient norms
(3.1e4 from the mean latent). One 40-step real run at 5e4 cut the outside Gram distance by 74 % while the PSNR
inside the mask went from 35.0 to 32.9 dB (34.1 dB after 10 noise steps)."""


@dataclass(frozen=True)
class StyleTransferSettings(EditSettings):
    """Alg. 6's settings.

    Iteration counts are UNKNOWN in the paper; the defaults are the 'good' preset's 200 W+ + 200 noise steps
    (:mod:`.presets`, docs/algorithm.md#iterations), Adam ``w_lr`` after a warm-up (W+; unset = 0.05, or the
    paper's 0.01 with ``method`` 'paper') and 5 (noise).
    ``embed_steps`` (100) W+ steps embed the content image first at the schedule's embedding rate (skipped when a
    starting embedding is given, the CLI's ``--from``).

    Weights: λ_mse = λ_p = 1 on the content (the paper's 1e-5 : 1e-5); ``style_weight`` is λ_s, see
    :data:`DEFAULT_STYLE_WEIGHT`. ``feather`` is M_blur's Gaussian σ as a fraction of the side (3 %,
    docs/algorithm.md#feather-width).
    """

    w_lr: float | None = setting(None, LEARNING_RATE, "Adam learning rate of the style W+ stage; unset = the method's "
                                 "(0.05 improved, the paper's 0.01)", optional=True)
    embed_steps: int = setting(100, STEPS, "W+ steps embedding the content image first; 0 skips them")
    style_weight: float = setting(DEFAULT_STYLE_WEIGHT, STYLE_WEIGHT, "lambda_s of the Gram style term, against "
                                  "content weights of 1")
    content_mse_weight: float = setting(1.0, WEIGHT, "weight of the content's pixel MSE term inside the mask")
    content_perceptual_weight: float = setting(1.0, WEIGHT, "weight of the content's perceptual term inside "
                                               "the mask")
    init: str = init_setting()
    w_plus_noise: str = choice("fitted", ("fitted", "fresh"), "noise maps the style W+ stage renders with: the "
                               "content's fitted maps, or fresh seeded N(0, 1) maps (the paper's n_ini)")
    method: str = method_setting()

    def __post_init__(self) -> None:
        super().__post_init__()
        check_not_all_zero(self, ("content_mse_weight", "content_perceptual_weight"),
                           "nothing would keep the content inside the mask")

    @property
    def edit_lr(self) -> float:
        """The style stage's rate: ``w_lr``, or the method's (:data:`IMPROVED_STYLE_LR`, the paper's 0.01)."""
        if self.w_lr is not None:
            return self.w_lr
        return IMPROVED_STYLE_LR if self.method == "improved" else PAPER_W_LR


IMPROVED_STYLE_LR = 0.05
"""The style stage's Adam rate under the 'improved' method. At the quick budget (100 + 100 steps from a draft
embedding, generated face seed 1, Hubble Deep Field) 0.01 took the Gram distance outside the mask 71 % below the
content's own, with 33.4 dB inside; 0.05 took it 88 % below, with 34.6 dB inside (docs/algorithm.md#edit-benchmark)."""


def style_transfer_terms(
    content: torch.Tensor, style: torch.Tensor, m_blur: torch.Tensor, settings: StyleTransferSettings
) -> tuple[TargetTerm, TargetTerm]:
    """Alg. 6 line 2 as two target terms summed in one W+ stage.

    Args:
        content: I1 [1, 3, H, W] in [-1, 1]; style: I2, same shape.
        m_blur: M_blur [1, 1, H, W], 1 where the content is kept.

    Returns:
        (content term: MSE + perceptual under M_blur, style term: Gram distance at relu3_3 under 1 - M_blur).
    """
    outside = 1.0 - m_blur
    content_term = TargetTerm(
        content, settings.content_mse_weight, settings.content_perceptual_weight, 0.0,
        mse_mask=m_blur, perceptual_mask=m_blur, name="content",
    )
    # The style image's Gram is taken over the same region: both Grams are then scaled alike by the region's
    # area (gram_matrix divides by the whole map's C·H·W), so they can actually be matched.
    style_term = TargetTerm(
        style, 0.0, 0.0, settings.style_weight, style_mask=outside, style_target_mask=outside, name="style",
    )
    return content_term, style_term


@torch.no_grad()
def outside_style_distance(
    perceptual: PerceptualLoss, images: torch.Tensor, style: torch.Tensor, outside: torch.Tensor
) -> torch.Tensor:
    """The style term's (unweighted) value: Gram distance at relu3_3 between ``images`` [B, 3, H, W] and ``style``
    [1, 3, H, W], both restricted to ``outside`` [1, 1, H, W]. Returns [B]."""
    feats = perceptual.vgg(torch.cat([images, style.to(images)]), (STYLE_LAYER,))[STYLE_LAYER]
    grams = gram_matrix(feats, outside.to(images))
    return gram_distance(grams[:-1], grams[-1:])


def style_transfer_recipe(
    content: torch.Tensor, style: torch.Tensor, m_blur: torch.Tensor,
    settings: StyleTransferSettings = StyleTransferSettings(), *, embed_content: bool = True,
    noise_space: str | None = None,
) -> Recipe:
    """Alg. 6 as a recipe: [embed the content's W+,] one W+ stage over the content and style terms, then the noise
    maps to the content inside M_blur and to the styled render G(w_out, n) outside it."""
    space = settings.noise_space if noise_space is None else noise_space
    stages: list = []
    if embed_content:  # line 1: w* = embedding of the content image (all rows, MSE + perceptual, no masks)
        stages.append(embedding_stage(content, settings.embed_steps, settings.schedule, name="content_w_plus"))
    stages.append(settings.edit_stage(style_transfer_terms(content, style, m_blur, settings), settings.w_steps,
                                      settings.edit_lr, name="style_w_plus"))
    # Line 3: noise to I1 inside M_blur, to G(w_out, n) outside (what line 2 made of the outside is kept).
    stages.append(settings.restoring_noise_stage(content, m_blur, "style_w_plus", space, "noise"))
    return Recipe(tuple(stages), seed=settings.seed, init=settings.init, application="style-transfer")


def local_style_transfer(generator: StyleGenerator, content: torch.Tensor, style: torch.Tensor, mask: torch.Tensor,
                         perceptual: PerceptualLoss, settings: StyleTransferSettings = StyleTransferSettings(), *,
                         callback: Callback | None = None, **start) -> EditResult:
    """Run Alg. 6: :func:`prepare_style_transfer` (``start``: its ``ws`` / ``noise``), then the engine."""
    return prepare_style_transfer(generator, content, style, mask, perceptual, settings, **start).run(
        generator, perceptual, callback)


def prepare_style_transfer(
    generator: StyleGenerator,
    content: torch.Tensor,
    style: torch.Tensor,
    mask: torch.Tensor,
    perceptual: PerceptualLoss,
    settings: StyleTransferSettings = StyleTransferSettings(),
    *,
    ws: torch.Tensor | None = None,
    noise: Sequence[torch.Tensor] | None = None,
) -> Plan:
    """Alg. 6: content of ``content`` inside ``mask``, style of ``style`` outside it.

    Args:
        generator: a frozen :class:`StyleGenerator`.
        content: I1 [1, 3, H, W] in [-1, 1] at the generator's resolution.
        style: I2 [1, 3, H, W] in [-1, 1] (any picture: a painting, a texture, another face).
        mask: M [1, 1, H, W] in [0, 1] (binary), 1 where the content is kept (e.g. the face).
        perceptual: the VGG16 loss; its VGG also supplies the relu3_3 features of the style term.
        ws, noise: the content image's embedding (w*, n), e.g. from ``latent.npz``; None embeds ``content``
            first with ``settings.embed_steps`` W+ steps (noise: seeded N(0, 1)).

    Returns:
        a :class:`.plan.Plan`; its result is an :class:`EditResult`: panel content | style | naive copy-paste | result;
        metrics: PSNR against the content
        inside the mask and the Gram (style) distance outside it, each at the start (w*), after the W+ stage and at
        the end.

    Raises:
        InputError: bad shapes, or a mask that is empty or covers the whole image.
    """
    size = generator.resolution
    for image, what in ((content, "content"), (style, "style")):
        if image.ndim != 4 or tuple(image.shape) != (1, 3, size, size):
            raise InputError(f"{what} image must be [1, 3, {size}, {size}], got {list(image.shape)}")
    if mask.ndim != 4 or tuple(mask.shape) != (1, 1, size, size):
        raise InputError(f"style-transfer mask must be [1, 1, {size}, {size}], got {list(mask.shape)}")
    check_mask_content(mask, "style-transfer")  # needs both a kept region and a region to restyle
    like = generator.w_avg
    content, style, mask = content.to(like), style.to(like), mask.to(like)
    m_blur = feather(mask, settings.feather)
    if settings.w_plus_noise == "fresh" or settings.method == "paper":
        noise = None  # Alg. 6 line 1: n_ini, whatever noise the content's embedding came with
    noise, space = start_noise(generator, noise, settings.seed, settings.noise_space)
    recipe = style_transfer_recipe(content, style, m_blur, settings, embed_content=ws is None, noise_space=space)
    points = {"start": start_point(generator, ws, noise, "content_w_plus"), "after_w_plus": "style_w_plus",
              "final": "noise"}
    return Plan(recipe, lambda result: _measure(generator, perceptual, result, recipe, content, style, mask, m_blur,
                                                points, space), Embedding(ws, noise))


def _measure(generator, perceptual, result, recipe, content, style, mask, m_blur, points, space) -> EditResult:
    images = {p: img for p, img in by_stage(result, lambda x: x, points).items() if img is not None}
    naive = copy_paste(content, style, mask)  # the hard copy-paste the paper's figures compare against
    outside = 1.0 - m_blur
    # One VGG pass for every image measured: the stages' renders, the copy-paste and the content itself.
    values = outside_style_distance(perceptual, torch.cat([*images.values(), naive, content]), style, outside)
    distances = dict(zip(images, (float(v) for v in values[:-2])))
    naive_distance, own = float(values[-2]), float(values[-1])  # own: the content's own distance
    d_start, d_final = distances.get("start"), distances.get("final")
    metrics = {
        "psnr_inside_mask_db": by_stage(result, lambda x: db(x, content, mask), points),
        "style_distance_outside": {p: distances.get(p) for p in points},
        "style_distance_outside_naive": naive_distance,
        "style_distance_reduction": float(1.0 - d_final / d_start) if d_start and d_final is not None else 0.0,
        "style_distance_outside_content": own,
        "style_distance_reduction_vs_content": float(1.0 - d_final / own) if own and d_final is not None else 0.0,
        "mask_fraction": float(mask.mean()),
        "noise_space": space,
    }
    with torch.no_grad():
        final = generator.synthesis(result.ws, result.noise)
    panel = [("content", content[0]), ("style", style[0]), ("naive copy-paste", naive[0]),
             ("result", final[0].clamp(-1, 1))]
    return EditResult(result.ws, result.noise, panel, metrics, result.history, result.stages, noise_space=space,
                      recipe=recipe.summary(), stopped=result.stopped)
