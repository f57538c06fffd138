"""Recipes: what an embedding run optimises, as data.

Every application of Image2StyleGAN++ is a list of optimisation stages run one after another (Algorithm 1: W+
first, then the noise maps, never jointly). A :class:`Recipe` is that list. Each stage carries everything it
needs: its targets, masks, W+ rows, loss weights and learning-rate schedule, which embedding it optimises and
where that embedding starts. :func:`image2stylegan.embed.embed` runs any recipe; the applications in
:mod:`image2stylegan.apps` only build recipes and measure their results (see ``docs/algorithm.md``).

* :class:`WPlusStage` -- Eq. 2, ``W_l``: W+ (optionally a subset of its rows, the row mask w_m) under a sum of
  :class:`TargetTerm` (pixel MSE + VGG16 perceptual loss of Eq. 1, and the Gram style loss of Eq. 4), each with
  its own masks; the noise maps stay fixed.
* :class:`NoiseStage` -- Eq. 3, ``Mk_n``: the noise maps under pixel MSE only, to a target x inside a mask M and
  to a second target y outside it; W+ stays fixed.

A target is an image tensor or :class:`Rendered` (``"the image rendered at the end of stage s"``): the scribble,
inpainting and style-transfer recipes keep what an earlier stage made of a region while a later stage restores
the rest. A recipe may hold several embeddings (the demo's two noise spaces, attribute transfer's two photos):
each stage names the embedding it optimises (``embedding``) and may start from the end of an earlier stage
(``start``) instead of continuing that embedding.

A recipe is plain data: :meth:`Recipe.summary` describes its stages as JSON (no pixels). Every ``metrics.json``
records it (``"recipe"``) beside what built it: the command, its settings and its inputs by file and sha256, so an
application's recipe builder (``reconstruction_recipe``, ``crossover_recipe``, ...) can build it again from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import torch

__all__ = [
    "MAIN",
    "GoodEnough",
    "NoiseStage",
    "Recipe",
    "Rendered",
    "Stage",
    "Target",
    "TargetTerm",
    "WPlusStage",
    "image_term",
    "lr_factor",
    "noise_map_rates",
]

MAIN = "main"
"""The name of a recipe's embedding when it has only one."""


@dataclass(frozen=True)
class Rendered:
    """A target that is the image rendered from the embedding reached at the end of stage ``stage``
    (e.g. Alg. 5's ``G(w_out, n*)``): resolved by the engine when the stage that uses it starts."""

    stage: str


Target = Union[torch.Tensor, Rendered]


@dataclass(frozen=True)
class GoodEnough:
    """A stage's stopping target: the stage ends after the first step whose image reaches PSNR >= ``psnr`` dB and
    LPIPS <= ``lpips`` against the stage's main target (inside its mask), whichever are given (both, when both are).

    PSNR is measured every step (the engine computes it anyway; reading it synchronises a GPU each step); LPIPS
    costs a VGG pass, so it is measured every ``lpips_every`` steps, once the PSNR target (if any) is met. ``embed``
    then needs an ``lpips`` metric. For a batch, the mean PSNR and the worst LPIPS count.
    """

    psnr: float | None = None
    lpips: float | None = None
    lpips_every: int = 10

    def __post_init__(self) -> None:
        if self.psnr is None and self.lpips is None:
            raise ValueError("a stopping target needs a PSNR or an LPIPS value")
        if self.psnr is not None and not (isinstance(self.psnr, (int, float)) and math.isfinite(self.psnr)):
            raise ValueError(f"the PSNR target must be a finite number of dB, got {self.psnr!r}")
        if self.lpips is not None and not (isinstance(self.lpips, (int, float)) and 0 <= self.lpips <= 1):
            raise ValueError(f"the LPIPS target must be between 0 and 1, got {self.lpips!r}")
        if isinstance(self.lpips_every, bool) or not isinstance(self.lpips_every, int) or self.lpips_every < 1:
            raise ValueError(f"lpips_every must be a positive integer, got {self.lpips_every!r}")

    def describe(self) -> str:
        parts = ([f"PSNR >= {self.psnr:g} dB"] if self.psnr is not None else []) + (
            [f"LPIPS <= {self.lpips:g}"] if self.lpips is not None else [])
        return " and ".join(parts)


@dataclass(frozen=True)
class TargetTerm:
    """One target image's share of a W+ objective (Eq. 1, with the style term of Eq. 4):

        λ_mse · MSE(M_m; G, target) + λ_p · L_percept(M_p; G, target) + λ_s · L_style(M_s; G, target)
          + λ_n · L_normalized(M_p; G, target)

    λ_n weighs :func:`~image2stylegan.losses.normalized_perceptual` (unit-normalised VGG features down to relu5_3),
    the perceptual term of the 'fast' schedule's embedding stages; the paper's recipes leave it at 0.

    A W+ stage sums several of these in one optimisation (the paper's "+" between two blocks in one line of an
    algorithm): crossover takes image A inside M_blur and image B outside it; local style transfer takes the
    content's MSE + perceptual terms inside the mask and the style image's Gram term outside.
    """

    target: Target  # [B or 1, 3, H, W] in [-1, 1], or Rendered
    mse_weight: float = 1.0
    perceptual_weight: float = 1.0
    style_weight: float = 0.0
    mse_mask: torch.Tensor | None = None  # M_m [B or 1, 1, H, W]
    perceptual_mask: torch.Tensor | None = None  # M_p
    style_mask: torch.Tensor | None = None  # M_s: region of G(w, n) whose Gram matrix is matched
    style_target_mask: torch.Tensor | None = None  # region of the target the style statistics come from
    # K [B or 1, 1, H, W]: where the target's pixels are known. Set, the perceptual term compares G(w, n) with the
    # composite K·target + (1 - K)·G(w, n) (the render detached, rebuilt every step), so VGG's receptive fields
    # never see the unknown pixels (inpainting's flat fill) and nothing pulls the unknown region towards them.
    perceptual_known: torch.Tensor | None = None
    name: str = ""  # prefix of this term's entries in the step log
    normalized_weight: float = 0.0  # λ_n, masked by perceptual_mask (and composited by perceptual_known) too

    def __post_init__(self) -> None:
        weights = (self.mse_weight, self.perceptual_weight, self.style_weight, self.normalized_weight)
        if not all(math.isfinite(w) for w in weights) or min(weights) < 0 or sum(weights) == 0:
            raise ValueError("a W+ target term needs a positive MSE, perceptual, style or normalized perceptual "
                             "weight (and none negative)")

    @property
    def uses_vgg(self) -> bool:
        return self.perceptual_weight > 0 or self.style_weight > 0 or self.normalized_weight > 0


def image_term(target: Target, mask: torch.Tensor | None = None, *, mse_weight: float = 1.0,
               perceptual_weight: float = 1.0, name: str = "") -> TargetTerm:
    """Eq. 1's reconstruction term with one mask for both the MSE and the perceptual part (M_m = M_p)."""
    return TargetTerm(target, mse_weight, perceptual_weight, 0.0, mse_mask=mask, perceptual_mask=mask, name=name)


@dataclass(frozen=True)
class WPlusStage:
    """Eq. 2 (``W_l``): optimise W+ under the sum of ``terms``; the noise maps stay fixed.

    Defaults follow the paper's reconstruction (Alg. 2): Adam lr 0.01 (β = 0.9, 0.999), 5000 steps. ``rows`` is
    the row mask w_m (None = every row). The stage's reported PSNR is measured against the first term's target
    (inside its MSE mask when it is the only term).
    """

    terms: tuple[TargetTerm, ...]
    steps: int = 5000
    lr: float = 0.01
    rows: tuple[int, ...] | None = None
    name: str = "w_plus"
    embedding: str = MAIN
    start: str | None = None  # start from the end of this earlier stage instead of the embedding's current state
    warmup_steps: int = 0  # the rate rises linearly to ``lr`` over these first steps
    hold_steps: int = 0  # then stays at ``lr`` for these steps (with ``decay``: before the cosine begins)
    decay: bool = False  # then falls along a cosine to ``lr * final_lr_fraction`` at the last step
    final_lr_fraction: float = 0.05
    tied_steps: int = 0  # the first steps move every optimised row by the same offset (a W-space phase)
    until: GoodEnough | None = None  # end the stage early once its image is this good

    def __post_init__(self) -> None:
        _check_common(self.steps, self.lr, self.name)
        _check_schedule(self)
        if isinstance(self.tied_steps, bool) or not isinstance(self.tied_steps, int) or self.tied_steps < 0:
            raise ValueError(f"{self.name}: tied_steps must be a non-negative integer, got {self.tied_steps!r}")
        if not self.terms:
            raise ValueError(f"{self.name}: a W+ stage needs at least one target term")
        if self.rows is not None:
            object.__setattr__(self, "rows", tuple(int(r) for r in self.rows))
            if not self.rows or min(self.rows) < 0:
                raise ValueError(f"{self.name}: W+ rows must be a non-empty set of row indices, got {list(self.rows)}")

    @property
    def uses_vgg(self) -> bool:
        return any(t.uses_vgg for t in self.terms)

    @property
    def report_target(self) -> Target:
        return self.terms[0].target

    @property
    def report_mask(self) -> torch.Tensor | None:
        return self.terms[0].mse_mask if len(self.terms) == 1 else None


@dataclass(frozen=True)
class NoiseStage:
    """Eq. 3 (``Mk_n``): optimise the noise maps with λ_1·MSE(M; G, x) + λ_2·MSE(1 - M; G, y); W+ stays fixed.

    ``lr`` is the paper's Adam learning rate (5) for unit-scale N(0, 1) maps. ``lr_scaling`` says how each map's
    rate is adapted to its layer's noise strength s_i (which spans 8e-5 ... 0.25 in the bundled generator):

    * ``"paper"``: every map uses ``lr`` (one step moves the activations by lr * s_i: 1.25 at the strongest
      layer, 4e-4 at the weakest -- the uneven steps the faithful setting suffers from);
    * ``"strength"`` (default): map i uses ``lr * reference_strength / s_i``, so one step moves every layer's
      activations by the same ``lr * reference_strength`` (see ``docs/algorithm.md``, noise learning rates), and
      the maps of the two finest resolutions ``fine_rate`` times that (:func:`noise_map_rates`).

    ``decay`` lowers the rate along a cosine to ``lr * final_lr_fraction`` at the last step, which lets Adam settle
    instead of oscillating at lr 5. ``noise_space`` is the space the maps are optimised in: 'paper' (one map per
    noise input) or 'extended' (per-channel maps at the finest blocks); the maps are converted when the stage
    starts, which renders the same image.
    """

    target: Target  # x
    steps: int = 3000
    lr: float = 5.0
    mse_weight: float = 1.0  # λ on the x-term, inside ``mask``
    mask: torch.Tensor | None = None  # M (None = everywhere)
    second_target: Target | None = None  # y, matched outside ``mask``
    second_weight: float = 0.0  # λ on the y-term
    lr_scaling: Literal["paper", "strength"] = "strength"
    reference_strength: float = 0.05
    fine_rate: float = 1.0  # 'strength' scaling: the maps of the two finest sizes move this many times further
    decay: bool = True
    final_lr_fraction: float = 0.05
    noise_space: str = "paper"
    name: str = "noise"
    embedding: str = MAIN
    start: str | None = None
    warmup_steps: int = 0  # the rate rises linearly to ``lr`` over these first steps
    hold_steps: int = 0  # then stays at ``lr`` for these steps before the cosine (with ``decay``)
    until: GoodEnough | None = None  # end the stage early once its image is this good

    def __post_init__(self) -> None:
        _check_common(self.steps, self.lr, self.name)
        _check_schedule(self)
        if self.lr_scaling not in ("paper", "strength"):
            raise ValueError(f"lr_scaling must be 'paper' or 'strength', got {self.lr_scaling!r}")
        for field in ("reference_strength", "fine_rate"):
            value = getattr(self, field)
            if isinstance(value, bool) or not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{self.name}: {field} must be positive and finite, got {value!r}")
        if self.noise_space not in ("paper", "extended"):
            raise ValueError(f"noise_space must be 'paper' or 'extended', got {self.noise_space!r}")
        if self.second_weight > 0 and self.second_target is None:
            raise ValueError("noise stage: second_weight > 0 needs a second_target")

    @property
    def report_target(self) -> Target:
        return self.target

    @property
    def report_mask(self) -> torch.Tensor | None:
        return self.mask


Stage = Union[WPlusStage, NoiseStage]


@dataclass(frozen=True)
class Recipe:
    """Stages run in order by :func:`image2stylegan.embed.embed`.

    ``seed`` and ``init`` make the starting embedding of each embedding the recipe optimises when none is given:
    W+ at the mean latent ('mean', faces) or U[-1, 1] per entry ('uniform', other images), and seeded N(0, 1) noise
    maps in the paper's space. ``application`` names what built it (for the logs and ``metrics.json``).
    """

    stages: tuple[Stage, ...]
    seed: int = 0
    init: Literal["mean", "uniform"] = "mean"
    application: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.init not in ("mean", "uniform"):
            raise ValueError(f"init must be 'mean' or 'uniform', got {self.init!r}")
        seen: set[str] = set()
        for stage in self.stages:
            if stage.name in seen:
                raise ValueError(f"recipe stage names must be unique; {stage.name!r} appears twice")
            for ref in _rendered_refs(stage) + ([stage.start] if stage.start else []):
                if ref not in seen:
                    raise ValueError(f"stage {stage.name!r} refers to stage {ref!r}, which does not run before it")
            seen.add(stage.name)

    @property
    def uses_vgg(self) -> bool:
        return any(isinstance(s, WPlusStage) and s.uses_vgg for s in self.stages)

    @property
    def uses_lpips(self) -> bool:
        return any(s.until is not None and s.until.lpips is not None for s in self.stages)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def summary(self) -> dict[str, Any]:
        """The recipe as JSON-friendly data: every stage's settings, with tensors described by their shape."""
        return {
            "application": self.application,
            "seed": self.seed,
            "init": self.init,
            "stages": [_stage_summary(s) for s in self.stages],
        }


def _rendered_refs(stage: Stage) -> list[str]:
    targets = [t.target for t in stage.terms] if isinstance(stage, WPlusStage) else [stage.target, stage.second_target]
    return [t.stage for t in targets if isinstance(t, Rendered)]


def _describe(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return f"tensor{list(value.shape)}"
    if isinstance(value, Rendered):
        return f"rendered after {value.stage}"
    return value


def _stage_summary(stage: Stage) -> dict[str, Any]:
    common = {"name": stage.name, "steps": stage.steps, "lr": stage.lr, "embedding": stage.embedding,
              "start": stage.start}
    if stage.until is not None:
        common["until"] = {"psnr": stage.until.psnr, "lpips": stage.until.lpips,
                           "lpips_every": stage.until.lpips_every}
    if isinstance(stage, WPlusStage):
        keys = ("name", "target", "mse_weight", "perceptual_weight", "normalized_weight", "style_weight", "mse_mask",
                "perceptual_mask", "style_mask", "style_target_mask", "perceptual_known")
        terms = [{k: _describe(getattr(t, k)) for k in keys} for t in stage.terms]
        return {"kind": "w_plus", **common, "rows": list(stage.rows) if stage.rows is not None else None,
                "warmup_steps": stage.warmup_steps, "hold_steps": stage.hold_steps, "decay": stage.decay,
                "final_lr_fraction": stage.final_lr_fraction, "tied_steps": stage.tied_steps, "terms": terms}
    keys = ("target", "mse_weight", "mask", "second_target", "second_weight", "lr_scaling", "reference_strength",
            "fine_rate", "decay", "final_lr_fraction", "warmup_steps", "hold_steps", "noise_space")
    return {"kind": "noise", **common, **{k: _describe(getattr(stage, k)) for k in keys}}


def _check_schedule(stage: Stage) -> None:
    """Checks the fields every stage has beyond steps and lr: its schedule and its stopping target."""
    if stage.until is not None:
        if not isinstance(stage.until, GoodEnough):
            raise ValueError(f"{stage.name}: until must be a GoodEnough target, got {stage.until!r}")
        if stage.until.lpips is not None and stage.report_mask is not None:
            raise ValueError(f"{stage.name}: an LPIPS target needs an unmasked stage (LPIPS compares whole images)")
    for field in ("warmup_steps", "hold_steps"):
        value = getattr(stage, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{stage.name}: {field} must be a non-negative integer, got {value!r}")
    floor = stage.final_lr_fraction
    if not (isinstance(floor, (int, float)) and 0 <= floor <= 1):
        raise ValueError(f"{stage.name}: final_lr_fraction must be in [0, 1], got {floor!r}")


def lr_factor(stage: Stage, step: int) -> float:
    """The multiple of ``stage.lr`` used at ``step`` (1-based): a linear warm-up over ``warmup_steps`` (step k of
    it at k / (warmup_steps + 1), so no step starts at the full rate), the full rate for ``hold_steps``, then with
    ``decay`` a cosine from 1 down to ``final_lr_fraction`` at the last step (warm-up, hold, decay: a short run
    spends most of its steps at the full rate and still ends at a low one)."""
    if step <= stage.warmup_steps:
        return step / (stage.warmup_steps + 1)
    if not stage.decay:
        return 1.0
    flat = stage.warmup_steps + stage.hold_steps
    span = stage.steps - flat
    if span <= 1 or step <= flat:
        return 1.0
    floor = stage.final_lr_fraction
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * (step - flat - 1) / (span - 1)))


def noise_map_rates(stage: NoiseStage, strengths: Sequence[float], widths: Sequence[int]) -> list[float]:
    """The Adam rate of each noise map before the schedule's factor, given each map's noise strength s_i and width.

    'paper': ``lr`` for every map. 'strength': ``lr * reference_strength / s_i``, times ``fine_rate`` for the maps
    whose width is one of the two largest: the finest blocks carry the detail the noise stage exists to fit, and at
    twice the rate there it gained 0.6-0.8 dB after 60 steps on every benchmark face
    (docs/algorithm.md#noise-stage-tuning, measured on the bundled generator). The rule reads only the maps' sizes:
    on full-size StyleGAN, StyleGAN2 and the bundled generator it picks the two finest blocks' maps (the ones their
    ``extended_noise_layers`` name); on a generator with very few sizes, such as a 16 px test generator, it picks
    every map but the coarsest."""
    if len(strengths) != len(widths):
        raise ValueError(f"{len(strengths)} noise strengths for {len(widths)} noise maps")
    if stage.lr_scaling == "paper":
        return [float(stage.lr)] * len(widths)
    finest = sorted(set(widths))[-2:]
    return [stage.lr * stage.reference_strength / max(abs(s), 1e-12) * (stage.fine_rate if w in finest else 1.0)
            for s, w in zip(strengths, widths)]


def _check_common(steps: int, lr: float, name: str) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{name}: steps must be a non-negative integer, got {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"{name}: learning rate must be positive and finite, got {lr!r}")
