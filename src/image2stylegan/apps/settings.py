"""The settings every optimising edit shares; each application's settings dataclass adds its own fields."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..masks import DEFAULT_FEATHER_FRACTION
from ..recipe import NoiseStage, Rendered


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
    """

    w_steps: int = 1000
    noise_steps: int = 1000
    w_lr: float = 0.01
    noise_lr: float = 5.0
    feather: float = DEFAULT_FEATHER_FRACTION
    noise_space: str = "paper"
    noise_lr_scaling: str = "strength"
    seed: int = 0

    def restoring_noise_stage(self, target: torch.Tensor, mask: torch.Tensor, kept: str, space: str,
                              name: str) -> NoiseStage:
        """Eq. 3 as the edits end: the noise maps to ``target`` inside ``mask`` and, with equal weight, to what
        stage ``kept`` rendered outside it (so the edit made there stays)."""
        return NoiseStage(target, steps=self.noise_steps, lr=self.noise_lr, mask=mask, second_target=Rendered(kept),
                          second_weight=1.0, lr_scaling=self.noise_lr_scaling, noise_space=space, name=name)
