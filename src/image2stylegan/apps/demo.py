"""What ``make demo`` runs: reconstruct a public-domain photo with both noise spaces from one W+ embedding.

The photo is scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain), cropped to a face square placed
the way FFHQ places faces (eyes at 47 % height, eye distance a quarter of the width), so the bundled FFHQ generator
can embed it without a landmark detector.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..embed import EmbeddingResult, NoiseStage, WPlusStage, embed
from ..io import atomic_save_png

# Face square in the 512 px astronaut photo, from its eye centres (~(204, 101), (248, 103)) and mouth (~(224, 145)).
ASTRONAUT_FACE_BOX = (138, 19, 314, 195)  # left, top, right, bottom


@dataclass(frozen=True)
class DemoBudget:
    """Step counts that finish in about 15 minutes on 2 CPU cores (see the README for measured times)."""

    w_steps: int = 400
    noise_steps: int = 100


def write_demo_photo(path: Path) -> Path:
    """Write the cropped astronaut face (176 px square) as a PNG and return its path."""
    from skimage import data  # the demo extra; imported here so the library does not need scikit-image

    left, top, right, bottom = ASTRONAUT_FACE_BOX
    crop = np.ascontiguousarray(data.astronaut()[top:bottom, left:right, :3])
    atomic_save_png(path, crop)
    return path


def embed_both_noise_spaces(
    generator, target, perceptual, *, w_stage: WPlusStage, noise_stage: NoiseStage, seed: int = 0,
    callback=None, on_stage_end=None,
) -> dict[str, EmbeddingResult]:
    """One W+ stage, then the noise stage once in each noise space starting from the same (w, n).

    Returns ``{"paper": result, "extended": result}``, each with the shared W+ stage in its history.
    """
    first = embed(generator, target, [w_stage], perceptual=perceptual, seed=seed, callback=callback,
                  on_stage_end=on_stage_end)
    results = {}
    for space in ("paper", "extended"):
        second = embed(
            generator, target, [replace(noise_stage, name=f"noise ({space})")], ws=first.ws, noise=first.noise,
            noise_space=space, callback=callback, on_stage_end=on_stage_end,
        )
        results[space] = EmbeddingResult(
            second.ws, second.noise, first.history + second.history, first.stages + second.stages
        )
    return results
