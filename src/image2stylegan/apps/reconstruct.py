"""Application 1: improved reconstruction (the paper's Alg. 2): a W+ stage, then a noise stage, and its result
(the reconstruction, the side-by-side of each stage, PSNR / SSIM / LPIPS after each stage).

The demo's variant runs the noise stage twice from the same W+ embedding, once in each noise space, as one recipe
with two embeddings (:func:`demo_recipe`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..embed import Callback, Embedding, EmbeddingResult, embed
from ..generators.base import StyleGenerator
from ..losses import PerceptualLoss
from ..metrics import psnr, ssim
from ..recipe import MAIN, NoiseStage, Recipe, WPlusStage
from .outputs import EditResult, final_embedding
from .plan import Plan
from .ranges import check_ranges
from .settings import (embed_lr_setting, embedding_noise_stage, embedding_stage, init_setting,
                       noise_lr_scaling_setting, noise_lr_setting, noise_space_setting,
                       noise_steps_setting, schedule_setting, seed_setting, until, until_lpips_setting,
                       until_psnr_setting, w_steps_setting)

OUTPUT_FILES = ("reconstruction.png", "comparison.png", "target.png", "latent.npz", "metrics.json", "curves.png")
STAGE_NAMES = ("w_plus", "noise")
"""The reconstruction recipe's stages, in order (the per-stage columns of a folder run's results.csv)."""
SAVE_NAMES = {"image_name": "reconstruction.png", "panel_name": "comparison.png"}
"""Reconstruction's file names for :func:`.outputs.save` (the target is saved too, as ``target.png``)."""


@dataclass(frozen=True)
class ReconstructionSettings:
    """Alg. 2's settings. Defaults are the 'good' preset (:mod:`.presets`): 100 W+ + 200 noise steps under the
    'fast' schedule; ``presets.settings_for(ReconstructionSettings, "paper")`` gives the paper's 5000 W+ steps at
    Adam lr 0.01 and 3000 noise steps at lr 5.

    ``until_psnr`` / ``until_lpips`` end each stage once its image reaches them (LPIPS needs the metric: the
    application measures it anyway). Valid ranges: docs/algorithm.md#settings-and-their-valid-ranges (checked on
    construction)."""

    w_steps: int = w_steps_setting(100)
    noise_steps: int = noise_steps_setting(200)
    noise_space: str = noise_space_setting()  # 'paper' or 'extended' (beyond the paper; see NoiseStage)
    seed: int = seed_setting()
    init: str = init_setting()  # 'mean' latent (faces) or 'uniform' U[-1, 1] (other images)
    w_lr: float | None = embed_lr_setting()  # None: the schedule's
    noise_lr: float = noise_lr_setting()
    noise_lr_scaling: str = noise_lr_scaling_setting()  # 'paper' (one lr for all maps) or 'strength' (NoiseStage)
    schedule: str = schedule_setting()
    until_psnr: float | None = until_psnr_setting(40.0)
    until_lpips: float | None = until_lpips_setting()
    STAGES_EMBED_PHOTOS: ClassVar[bool] = True  # the presets give w_steps / noise_steps their embedding budget

    def __post_init__(self) -> None:
        check_ranges(self)

    def w_stage(self, target: torch.Tensor, name: str = STAGE_NAMES[0], **fields) -> WPlusStage:
        return embedding_stage(target, self.w_steps, self.schedule, lr=self.w_lr, name=name,
                               stop=until(self.until_psnr, self.until_lpips), **fields)

    def noise_stage(self, target: torch.Tensor, name: str = STAGE_NAMES[1], space: str | None = None,
                    **fields) -> NoiseStage:
        return embedding_noise_stage(target, self.noise_steps, self.schedule, lr_scaling=self.noise_lr_scaling,
                                     lr=self.noise_lr, noise_space=self.noise_space if space is None else space,
                                     name=name, until=until(self.until_psnr, self.until_lpips), **fields)


def reconstruction_recipe(target: torch.Tensor, settings: ReconstructionSettings = ReconstructionSettings()) -> Recipe:
    """Alg. 2 for ``target`` [B, 3, H, W]: W+ under MSE + perceptual, then the noise maps under MSE."""
    return Recipe((settings.w_stage(target), settings.noise_stage(target)), seed=settings.seed, init=settings.init,
                  application="reconstruct")


def demo_recipe(target: torch.Tensor, settings: ReconstructionSettings) -> Recipe:
    """One W+ stage, then the noise stage once in each noise space, both starting from the W+ result: the
    embeddings 'paper' and 'extended' (stages ``noise (paper)`` and ``noise (extended)``)."""
    w_stage = settings.w_stage(target)
    noise = [settings.noise_stage(target, f"noise ({space})", space, embedding=space, start=w_stage.name)
             for space in ("paper", "extended")]
    return Recipe((w_stage, *noise), seed=settings.seed, init=settings.init, application="demo")


def reconstruct(
    generator: StyleGenerator,
    target: torch.Tensor,
    perceptual: PerceptualLoss,
    settings: ReconstructionSettings = ReconstructionSettings(),
    callback: Callback | None = None,
    *,
    start=None,
    lpips: Callable | None = None,
) -> EmbeddingResult:
    """Embed ``target`` [B, 3, H, W] in [-1, 1]: W+ (MSE + perceptual), then noise (MSE only). ``lpips`` is needed
    with an ``until_lpips`` target."""
    return embed(generator, reconstruction_recipe(target, settings), perceptual=perceptual, start=start,
                 callback=callback, lpips=lpips)


def prepare_reconstruction(
    generator: StyleGenerator, target: torch.Tensor, settings: ReconstructionSettings = ReconstructionSettings(),
    *, lpips: Callable | None = None, start=None,
) -> Plan:
    """Alg. 2 for one image ``target`` [1, 3, H, W], ready to run; its result is the reconstruction as an
    :class:`EditResult` (save it with :data:`SAVE_NAMES`)."""
    recipe = reconstruction_recipe(target.to(generator.w_avg), settings)
    return Plan(recipe, lambda result: reconstruction_result(result, target.to(generator.w_avg), lpips, recipe,
                                                             noise_space=settings.noise_space), start, lpips)


def stage_metrics(result: EmbeddingResult, target: torch.Tensor, lpips: Callable | None, index: int = 0,
                  embedding: str | None = None) -> dict:
    """PSNR / SSIM (/ LPIPS) of image ``index`` after each stage (of ``embedding``'s stages, or all), with timings."""
    out = {}
    x = target[index : index + 1]
    for stage in result.stages:
        if embedding is not None and stage.embedding not in (embedding, MAIN):
            continue
        y = stage.image[index : index + 1].clamp(-1, 1)
        entry = {"psnr_db": float(psnr(y, x)[0]), "ssim": float(ssim(y, x)[0]), "steps": stage.steps,
                 "seconds": stage.seconds, "seconds_per_step": stage.seconds / stage.steps if stage.steps else None}
        if stage.reached is not None and stage.reached[index] is not None:
            entry["reached_target"] = stage.reached[index]  # the step whose image reached it, its PSNR (and LPIPS)
        if lpips is not None:
            with torch.no_grad():
                entry["lpips"] = float(lpips(y, x)[0])
        out[stage.name] = entry
    return out


def reconstruction_result(
    result: EmbeddingResult, target: torch.Tensor, lpips: Callable | None, recipe: Recipe, *, index: int = 0,
    embedding: str | None = None, noise_space: str = "paper",
) -> EditResult:
    """Image ``index`` of a (batched) run as an :class:`EditResult`: panel target | after each stage, per-stage
    PSNR / SSIM / LPIPS. ``embedding`` picks one embedding of a multi-embedding recipe (the demo's noise spaces)."""
    ws, noise = final_embedding(_pick(result, index), embedding)
    stages = [s for s in result.stages if embedding is None or s.embedding in (embedding, MAIN)]
    per_stage = stage_metrics(result, target, lpips, index, embedding)
    labels = ["target"] + [f"after {name} ({m['psnr_db']:.1f} dB)" for name, m in per_stage.items()]
    panel = list(zip(labels, [target[index]] + [s.image[index] for s in stages]))
    final = list(per_stage.values())[-1] if per_stage else {}
    history = [h for h in result.history if embedding is None or h.embedding in (embedding, MAIN)]
    return EditResult(ws, noise, panel, {"final": final}, history, stages, noise_space=noise_space,
                      stage_metrics=per_stage, recipe=recipe.summary(), stopped=result.stopped)


def _pick(result: EmbeddingResult, index: int) -> EmbeddingResult:
    """The result restricted to image ``index`` of the batch (embeddings only; stage images are indexed later)."""
    embeddings = {k: Embedding(w[index : index + 1], [n[index : index + 1] for n in ns])
                  for k, (w, ns) in result.embeddings.items()}
    return replace(result, ws=result.ws[index : index + 1], noise=[n[index : index + 1] for n in result.noise],
                   embeddings=embeddings)
