"""The settings every optimising edit shares; each application's settings dataclass adds its own fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..masks import DEFAULT_FEATHER_FRACTION
from ..recipe import NoiseStage, Rendered
from .ranges import FEATHER, LEARNING_RATE, MAX_RESOLUTION, ROW, SEED, STEPS, WEIGHT, check_ranges, choice, setting

NOISE_SPACES = ("paper", "extended")
NOISE_LR_SCALINGS = ("strength", "paper")
INITS = ("mean", "uniform")


def w_steps_setting(default: int) -> Any:
    """The ``w_steps`` field every application shares (range and meaning)."""
    return setting(default, STEPS, "Adam steps of the W+ stage; 0 skips it")


def noise_steps_setting(default: int) -> Any:
    return setting(default, STEPS, "Adam steps of the noise stage; 0 skips it")


def w_lr_setting(default: float = 0.01) -> Any:
    return setting(default, LEARNING_RATE, "Adam learning rate of the W+ stage; the paper's is 0.01")


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


@dataclass(frozen=True)
class EditSettings:
    """Budget and schedule of an edit's stages.

    * ``w_steps`` / ``noise_steps`` = 1000 / 1000: the paper gives no count for its edits
      (docs/algorithm.md#iterations).
    * ``w_lr`` 0.01 and ``noise_lr`` 5: the paper's Adam rates (reconstruction, Alg. 2).
    * ``feather`` = 0.03: σ of the Gaussian making M_blur, as a fraction of the image side (paper: "suitable
      size"; docs/algorithm.md#feather-width); 0 keeps the mask hard.
    * ``noise_space`` 'paper' (one map per noise input) or 'extended'; ``noise_lr_scaling`` see
      :class:`~image2stylegan.recipe.NoiseStage`; ``seed`` seeds n_ini (and so the whole run).

    Every numeric field has a valid range (:mod:`.ranges`, docs/algorithm.md#settings-and-their-valid-ranges),
    checked on construction: a value outside it raises :class:`~image2stylegan.errors.InputError` naming the option.
    """

    w_steps: int = w_steps_setting(1000)
    noise_steps: int = noise_steps_setting(1000)
    w_lr: float = w_lr_setting()
    noise_lr: float = noise_lr_setting()
    feather: float = feather_setting()
    noise_space: str = noise_space_setting()
    noise_lr_scaling: str = noise_lr_scaling_setting()
    seed: int = seed_setting()

    def __post_init__(self) -> None:
        check_ranges(self)

    def restoring_noise_stage(self, target: torch.Tensor, mask: torch.Tensor, kept: str, space: str,
                              name: str) -> NoiseStage:
        """Eq. 3 as the edits end: the noise maps to ``target`` inside ``mask`` and, with equal weight, to what
        stage ``kept`` rendered outside it (so the edit made there stays)."""
        return NoiseStage(target, steps=self.noise_steps, lr=self.noise_lr, mask=mask, second_target=Rendered(kept),
                          second_weight=1.0, lr_scaling=self.noise_lr_scaling, noise_space=space, name=name)
