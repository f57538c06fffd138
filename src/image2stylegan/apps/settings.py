"""The settings every optimising edit shares; each application's settings dataclass adds its own fields."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..masks import DEFAULT_FEATHER_FRACTION
from ..recipe import MAIN, GoodEnough, NoiseStage, Rendered, TargetTerm, WPlusStage, image_term
from .ranges import (FEATHER, LEARNING_RATE, LPIPS_TARGET, MAX_RESOLUTION, PSNR_TARGET, ROW, SEED, STEPS, WEIGHT,
                     check_ranges, choice, setting)

NOISE_SPACES = ("paper", "extended")
NOISE_LR_SCALINGS = ("strength", "paper")
INITS = ("mean", "uniform")
SCHEDULES = ("fast", "paper")
METHODS = ("improved", "paper")


@dataclass(frozen=True)
class FastSchedule:
    """What the 'fast' schedule changes, measured on the faces of ``bench/convergence.py`` (docs/algorithm.md#schedules).

    The W+ stage that embeds a photo from the initial W+ (reconstruction, and the embedding that starts every edit
    of a photo) replaces the paper's perceptual term (raw VGG16 activations, conv1_1 to conv3_3) by the
    unit-normalised one down to relu5_3 (:func:`~image2stylegan.losses.normalized_perceptual`), weighted
    ``embed_normalized_weight`` against the pixel MSE, and runs at peak rate ``embed_lr``: on the raw activations
    the shallow layers' large values dominated the loss about 40:1 and any rate above 0.03 overshot; normalised,
    the deep layers pull the face into place and rates up to 0.1 converge (0.08 with the hold below). Crossover's
    and inpainting's W+ stages (several masked terms, measured with ``bench/edits.py``) keep the paper's perceptual
    term, weigh their pixel MSE ``terms_mse_weight`` times it and run at ``terms_lr``.

    The photo's embedding warms its rate up linearly over ``embed_warmup_fraction`` of its steps, holds it for
    ``embed_hold_fraction`` of the rest and spends the remaining steps on a cosine down to ``final_lr_fraction``:
    with a cosine over the whole stage a 100-step embedding spent half its steps at low rates and stopped
    improving, while the same face was still gaining 1.3 dB per 25 steps at the full rate (docs/algorithm.md#time-to-
    quality). Crossover's and inpainting's W+ stages and an edit's own W+ stages warm up over ``warmup_fraction``,
    then follow the cosine over all the remaining steps. A noise stage warms up over ``noise_warmup_steps``, or
    ``noise_warmup_fraction`` of its steps when that is more (at most a quarter of its steps), before its cosine:
    Adam's first steps move every element by about the full rate whatever the gradient, which made a stage that
    starts near its optimum lose PSNR for ~20 steps. The fraction is for long runs: after a 1000-step W+ stage,
    ten warm-up steps still lost 1.3-3.9 dB in the first noise steps on every benchmark face, and thirty lost
    0.3 dB at most (seed 1; none on the other four; docs/algorithm.md#schedules). The noise stage that embeds a photo
    (after the W+ stage above) scales its maps' rates to ``embed_noise_reference_strength`` instead of
    :class:`~image2stylegan.recipe.NoiseStage`'s 0.05 and moves the two finest blocks' maps ``embed_noise_fine_rate``
    times faster (:func:`~image2stylegan.recipe.noise_map_rates`): 0.7-1.3 dB more after
    60 steps on every benchmark face; and like the W+ stage it holds the full rate, for
    ``embed_noise_hold_fraction`` of its steps after the warm-up but at most ``embed_noise_hold_max_steps``, before
    its cosine (:func:`embedding_noise_stage`). The cap is for long runs: held for hundreds of steps, the full rate
    threw faces that had reached 42-43 dB back by 5-8 dB, and the cosine did not win it back.
    An edit's own noise stages keep the rates and the cosine its benchmark was measured with.
    """

    embed_lr: float = 0.08
    embed_normalized_weight: float = 5.0
    terms_lr: float = 0.03
    terms_mse_weight: float = 30.0
    embed_warmup_fraction: float = 0.15
    embed_hold_fraction: float = 0.8
    warmup_fraction: float = 0.05
    final_lr_fraction: float = 0.05
    noise_warmup_steps: int = 10
    noise_warmup_fraction: float = 0.03
    embed_noise_reference_strength: float = 0.08
    embed_noise_fine_rate: float = 2.0
    embed_noise_hold_fraction: float = 0.6
    embed_noise_hold_max_steps: int = 120


FAST = FastSchedule()
PAPER_W_LR = 0.01
"""The paper's Adam rate for W+ (Alg. 2)."""


def w_steps_setting(default: int) -> Any:
    """The ``w_steps`` field every application shares (range and meaning)."""
    return setting(default, STEPS, "Adam steps of the W+ stage; 0 skips it")


def noise_steps_setting(default: int) -> Any:
    return setting(default, STEPS, "Adam steps of the noise stage; 0 skips it")


def w_lr_setting(default: float = PAPER_W_LR) -> Any:
    return setting(default, LEARNING_RATE, "Adam learning rate of the W+ stage; the paper's is 0.01")


def embed_lr_setting() -> Any:
    return setting(None, LEARNING_RATE, "peak Adam learning rate of the W+ stage embedding a photo; unset = the "
                   "schedule's (0.08 fast, 0.01 paper)", optional=True, option="--w-lr")


def schedule_setting(default: str = "fast") -> Any:
    return choice(default, SCHEDULES, "'fast': warm-up, cosine decay and pixel-weighted embedding "
                                      "(docs/algorithm.md#schedules); 'paper': the paper's constant Adam rates")


def method_setting(default: str = "improved") -> Any:
    return choice(default, METHODS, "'improved': the recipe with our measured fixes (docs/algorithm.md#edits-"
                                    "beyond-the-paper); 'paper': the paper's algorithm as written")


def until_psnr_setting(default: float | None = None) -> Any:
    return setting(default, PSNR_TARGET, "end each embedding stage once its PSNR reaches this many dB", optional=True)


def until_lpips_setting() -> Any:
    return setting(None, LPIPS_TARGET, "end each embedding stage once its LPIPS is at most this", optional=True)


def noise_lr_setting(default: float = 5.0) -> Any:
    return setting(default, LEARNING_RATE, "Adam learning rate of the noise maps; the paper's is 5")


def seed_setting(default: int = 0) -> Any:
    return setting(default, SEED, "seeds the starting noise n_ini and a uniform W+ start")


def feather_setting(default: float = DEFAULT_FEATHER_FRACTION) -> Any:
    return setting(default, FEATHER, "the mask blur's Gaussian sigma as a fraction of the image side: 0.03 is 3 %, "
                                     "0 keeps the mask hard")


def noise_space_setting(default: str = "paper") -> Any:
    return choice(default, NOISE_SPACES, "noise maps: one per noise input (the paper's) or per channel at the "
                                         "finest blocks")


def noise_lr_scaling_setting(default: str = "strength") -> Any:
    return choice(default, NOISE_LR_SCALINGS, "each noise map's learning rate scaled to its layer's noise "
                                              "strength, or one rate for all (the paper's)")


def init_setting(default: str = "mean") -> Any:
    return choice(default, INITS, "initial W+ when embedding a photo: the mean latent or U[-1, 1]")


def mse_weight_setting() -> Any:
    return setting(1.0, WEIGHT, "weight of the pixel MSE in the W+ stage")


def perceptual_weight_setting() -> Any:
    return setting(1.0, WEIGHT, "weight of the perceptual (VGG16) loss in the W+ stage")


def max_resolution_setting(default: int) -> Any:
    return setting(default, MAX_RESOLUTION, "optimise the W+ rows of the layers at most this many px")


def rows_setting() -> Any:
    return setting(None, ROW, "W+ rows to optimise instead of the rule", optional=True, items=True)


def until(psnr: float | None, lpips: float | None) -> GoodEnough | None:
    """The stopping target of ``--until-psnr`` / ``--until-lpips`` (None when neither is given)."""
    return None if psnr is None and lpips is None else GoodEnough(psnr=psnr, lpips=lpips)


def embedding_stage(target: torch.Tensor, steps: int, schedule: str, *, lr: float | None = None,
                    mask: torch.Tensor | None = None, rows=None, name: str = "w_plus", embedding: str = MAIN,
                    stop: GoodEnough | None = None, terms: tuple[TargetTerm, ...] | None = None) -> WPlusStage:
    """Eq. 2 for a W+ stage that embeds ``target`` [B, 3, H, W] (inside ``mask``) from the initial W+ (Alg. 2 line
    1, the embedding that starts every edit of a photo, and the W+ stages of crossover and inpainting, which start
    from the mean latent too), under ``schedule`` ('fast' or 'paper').

    ``lr`` None takes the schedule's rate; ``terms`` replaces the one reconstruction term (crossover's two images,
    inpainting's known region). Under 'fast' the one term is pixel MSE + the normalised perceptual term
    (``FAST.embed_normalized_weight``), and given ``terms`` keep the paper's perceptual term with their MSE weights
    multiplied by ``FAST.terms_mse_weight`` (:class:`FastSchedule`).
    """
    if schedule == "paper":
        terms = terms or (image_term(target, mask),)
        return WPlusStage(terms, steps=steps, lr=PAPER_W_LR if lr is None else lr, rows=rows, name=name,
                          embedding=embedding, until=stop)
    if terms is None:
        terms = (TargetTerm(target, mse_weight=1.0, perceptual_weight=0.0, mse_mask=mask, perceptual_mask=mask,
                            normalized_weight=FAST.embed_normalized_weight),)
        return WPlusStage(terms, steps=steps, lr=FAST.embed_lr if lr is None else lr, rows=rows, name=name,
                          embedding=embedding, until=stop,
                          **w_schedule(schedule, steps, warmup_fraction=FAST.embed_warmup_fraction,
                                       hold_fraction=FAST.embed_hold_fraction))
    terms = tuple(replace(t, mse_weight=t.mse_weight * FAST.terms_mse_weight) for t in terms)
    return WPlusStage(terms, steps=steps, lr=FAST.terms_lr if lr is None else lr, rows=rows, name=name,
                      embedding=embedding, until=stop, **w_schedule(schedule, steps))


def w_schedule(schedule: str, steps: int, *, decay: bool = True, warmup_fraction: float = FAST.warmup_fraction,
               hold_fraction: float = 0.0) -> dict[str, Any]:
    """The learning-rate schedule fields of a W+ stage of ``steps`` steps: a warm-up over ``warmup_fraction`` of them,
    a hold at the full rate over ``hold_fraction`` of the rest, then with ``decay`` the cosine, which always keeps at
    least one step; none for 'paper' (:class:`FastSchedule`)."""
    if schedule == "paper":
        return {}
    warmup = max(1, round(warmup_fraction * steps)) if steps > 1 else 0
    return {"warmup_steps": warmup, "hold_steps": _hold_steps(hold_fraction, steps, warmup), "decay": decay,
            "final_lr_fraction": FAST.final_lr_fraction}


def _hold_steps(fraction: float, steps: int, warmup: int) -> int:
    """Steps at the full rate after a warm-up of ``warmup``: ``fraction`` of the rest, leaving the cosine one step
    at least."""
    return max(0, min(round(fraction * (steps - warmup)), steps - warmup - 1))


def noise_schedule(schedule: str, steps: int) -> dict[str, Any]:
    """The schedule fields of a noise stage: the cosine decay we always used plus a warm-up ('fast'; 10 steps up to
    350 steps, 3 % of them beyond, a quarter of them at most), or the paper's constant rate."""
    if schedule == "paper":
        return {"decay": False}
    warmup = max(FAST.noise_warmup_steps, round(FAST.noise_warmup_fraction * steps))
    return {"decay": True, "warmup_steps": min(warmup, steps // 4)}


def embedding_noise_stage(target: torch.Tensor, steps: int, schedule: str, *, lr_scaling: str = "strength",
                          **fields: Any) -> NoiseStage:
    """The noise stage that embeds a photo (Alg. 2's second stage, after :func:`embedding_stage`): reconstruction's,
    and the one of the embedding an edit starts from.

    Under 'fast' it is :func:`noise_schedule`'s warm-up and cosine with a hold at the full rate in between
    (``FAST.embed_noise_hold_fraction`` of the steps after the warm-up, at most ``FAST.embed_noise_hold_max_steps``,
    the cosine keeping at least one step) and,
    with strength-scaled rates, the tuned rates (:class:`FastSchedule`). Under ``lr_scaling='paper'`` every map runs
    at ``lr`` and the rate fields would have no effect, so the recorded recipe leaves them at
    :class:`~image2stylegan.recipe.NoiseStage`'s defaults. 'paper' is the constant rate. ``fields`` (``lr``,
    ``noise_space``, ``name``, ``until``, ...) go to the stage and win over the schedule's."""
    schedule_fields = noise_schedule(schedule, steps)
    if schedule != "paper":
        schedule_fields["hold_steps"] = min(_hold_steps(FAST.embed_noise_hold_fraction, steps,
                                                        schedule_fields["warmup_steps"]),
                                            FAST.embed_noise_hold_max_steps)
        if lr_scaling != "paper":
            schedule_fields.update(reference_strength=FAST.embed_noise_reference_strength,
                                   fine_rate=FAST.embed_noise_fine_rate)
    return NoiseStage(target, steps=steps, lr_scaling=lr_scaling, **{**schedule_fields, **fields})


@dataclass(frozen=True)
class EditSettings:
    """Budget and schedule of an edit's stages.

    * ``w_steps`` / ``noise_steps`` = 200 / 200: the 'good' preset (:mod:`.presets`; the paper gives no count for
      its edits, docs/algorithm.md#iterations).
    * ``noise_lr`` 5: the paper's Adam rate (Alg. 2); W+ stages that embed from the mean latent (crossover,
      inpainting, the photo embedding of scribble and style transfer) run at the ``schedule``'s embedding rate
      (:func:`embedding_stage`); scribble and style transfer add the rate ``w_lr`` of their own edit stage.
    * ``feather`` = 0.03: σ of the Gaussian making M_blur, as a fraction of the image side (paper: "suitable
      size"; docs/algorithm.md#feather-width); 0 keeps the mask hard.
    * ``noise_space`` 'paper' (one map per noise input) or 'extended'; ``noise_lr_scaling`` see
      :class:`~image2stylegan.recipe.NoiseStage`; ``seed`` seeds n_ini (and so the whole run).

    Every numeric field has a valid range (:mod:`.ranges`, docs/algorithm.md#settings-and-their-valid-ranges),
    checked on construction: a value outside it raises :class:`~image2stylegan.errors.InputError` naming the option.
    """

    w_steps: int = w_steps_setting(200)  # the 'good' preset (apps.presets)
    noise_steps: int = noise_steps_setting(200)
    noise_lr: float = noise_lr_setting()
    feather: float = feather_setting()
    noise_space: str = noise_space_setting()
    noise_lr_scaling: str = noise_lr_scaling_setting()
    seed: int = seed_setting()
    schedule: str = schedule_setting()

    def __post_init__(self) -> None:
        check_ranges(self)

    def restoring_noise_stage(self, target: torch.Tensor, mask: torch.Tensor, kept: str, space: str,
                              name: str) -> NoiseStage:
        """Eq. 3 as the edits end: the noise maps to ``target`` inside ``mask`` and, with equal weight, to what
        stage ``kept`` rendered outside it (so the edit made there stays)."""
        return NoiseStage(target, steps=self.noise_steps, lr=self.noise_lr, mask=mask, second_target=Rendered(kept),
                          second_weight=1.0, lr_scaling=self.noise_lr_scaling, noise_space=space, name=name,
                          **noise_schedule(self.schedule, self.noise_steps))

    def noise_stage(self, target: torch.Tensor, steps: int, space: str, name: str, **fields: Any) -> NoiseStage:
        """A noise stage at this edit's rate, scaling and schedule (e.g. embedding the photo an edit starts from)."""
        return NoiseStage(target, steps=steps, lr=self.noise_lr, lr_scaling=self.noise_lr_scaling, noise_space=space,
                          name=name, **noise_schedule(self.schedule, steps), **fields)

    def edit_stage(self, terms: tuple[TargetTerm, ...], steps: int, lr: float, **fields: Any) -> WPlusStage:
        """An edit's own W+ stage (scribble, style transfer) at rate ``lr`` after the schedule's warm-up, without
        decay: the edit travels as far as at the constant rate while its first steps do not overshoot."""
        return WPlusStage(terms, steps=steps, lr=lr, **w_schedule(self.schedule, steps, decay=False), **fields)
