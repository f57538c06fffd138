"""What ``make demo`` runs: reconstruct a public-domain photo with both noise spaces from one W+ embedding.

The photo is scikit-image's ``astronaut`` (Eileen Collins, NASA, public domain), cropped to a face square placed
the way FFHQ places faces (eyes at 47 % height, eye distance a quarter of the width), so the bundled FFHQ generator
can embed it without a landmark detector. The run itself is :func:`.reconstruct.demo_recipe`: one W+ stage, then
the noise stage in each noise space from the same W+ embedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import atomic_save_png
from .ranges import check_ranges
from .settings import noise_steps_setting, w_steps_setting

# Face square in the 512 px astronaut photo, from its eye centres (~(204, 101), (248, 103)) and mouth (~(224, 145)).
ASTRONAUT_FACE_BOX = (138, 19, 314, 195)  # left, top, right, bottom


@dataclass(frozen=True)
class DemoBudget:
    """Step counts that finish in about 10 minutes on 2 CPU cores under the fast schedule (see the README for
    measured times)."""

    w_steps: int = w_steps_setting(200)
    noise_steps: int = noise_steps_setting(100)

    def __post_init__(self) -> None:
        check_ranges(self)


def write_demo_photo(path: Path) -> Path:
    """Write the cropped astronaut face (176 px square) as a PNG and return its path."""
    from skimage import data  # the demo extra; imported here so the library does not need scikit-image

    left, top, right, bottom = ASTRONAUT_FACE_BOX
    crop = np.ascontiguousarray(data.astronaut()[top:bottom, left:right, :3])
    atomic_save_png(path, crop)
    return path
