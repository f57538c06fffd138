"""Quality presets: a whole run's budget in one word (``--quality draft|good|paper``).

A preset fixes every step count of a run (the embedding of the photo an edit starts from included), the schedule,
and a stopping target; explicit options (``--w-steps``, ``--embed-steps``, ``--until-psnr``, ...) override single
values. Times are for the bundled 1024 px generator on 2 CPU cores (about 1.5 s per W+ step, 1.1 s per noise
step; a laptop with more cores or a GPU is faster):

======  ====================================  ==================================  ==========================
preset  reconstruction (W+ + noise steps)     edits: embedding + edit steps        about
======  ====================================  ==================================  ==========================
draft   50 + 50, stages end at 33 dB           50 + 50, then 100 + 100               2 min / 6 min
good    100 + 200, stages end at 40 dB         100 + 200, then 200 + 200             6 min / 14 min
paper   5000 + 3000 (Alg. 2), paper schedule   5000 + 3000, then 1000 + 1000         hours
======  ====================================  ==================================  ==========================

Inpainting embeds no photo first: its W+ stage starts at the mean latent and is the only fit of the photo's known
pixels, so the presets give that stage the time the other edits spend embedding (``mean_start_w_steps``: 200, 400
and the paper budget's 1000 W+ steps; draft inpainting takes about 8 minutes on 2 cores).

``good`` is the default: what a user on a laptop CPU should run. The dataclass defaults of the settings classes
are the ``good`` preset's values, so the library and the CLI agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

__all__ = ["DEFAULT_QUALITY", "PRESETS", "Preset", "budget_line", "settings_for"]


@dataclass(frozen=True)
class Preset:
    """Step budgets, schedule and stopping target of one quality level."""

    name: str
    embed_w_steps: int  # W+ steps embedding a photo (reconstruction, and the start of every edit of a photo)
    embed_noise_steps: int  # noise steps embedding a photo
    edit_w_steps: int  # an edit's own W+ stage
    edit_noise_steps: int  # an edit's own noise stage
    mean_start_w_steps: int  # the W+ stage of an edit that starts at the mean latent, not at a photo's embedding
    schedule: str  # 'fast' or 'paper' (apps.settings)
    noise_lr_scaling: str  # 'strength' or 'paper'
    until_psnr: float | None  # reconstruction stages end once they reach this PSNR
    summary: str

    def values(self, settings_class: type) -> dict[str, Any]:
        """This preset's value of each field ``settings_class`` has."""
        fields = {f.name for f in dataclasses.fields(settings_class)}
        # Reconstruction's and attribute transfer's stages *are* photo embeddings; the edits' are their own.
        embeds = getattr(settings_class, "STAGES_EMBED_PHOTOS", False)
        # Inpainting's W+ stage is its photo's only embedding: it gets the embedding's time as well (module doc).
        from_mean = getattr(settings_class, "W_STAGE_STARTS_AT_MEAN", False)
        edit_w_steps = self.mean_start_w_steps if from_mean else self.edit_w_steps
        values = {
            "w_steps": self.embed_w_steps if embeds else edit_w_steps,
            "noise_steps": self.embed_noise_steps if embeds else self.edit_noise_steps,
            "embed_steps": self.embed_w_steps,  # style transfer: W+ only
            "embed_w_steps": self.embed_w_steps,  # scribble
            "embed_noise_steps": self.embed_noise_steps,
            "schedule": self.schedule,
            "noise_lr_scaling": self.noise_lr_scaling,
            "until_psnr": self.until_psnr,
        }
        return {k: v for k, v in values.items() if k in fields}


PRESETS: dict[str, Preset] = {
    "draft": Preset("draft", 50, 50, 100, 100, 200, "fast", "strength", 33.0,
                    "a quick look: 50 W+ + 50 noise steps to embed, ending at 33 dB"),
    "good": Preset("good", 100, 200, 200, 200, 400, "fast", "strength", 40.0,
                   "the default: 100 W+ + 200 noise steps to embed, ending at 40 dB"),
    "paper": Preset("paper", 5000, 3000, 1000, 1000, 1000, "paper", "paper", None,
                    "the paper's Alg. 2 budgets (5000 W+ + 3000 noise steps) at its constant Adam rates"),
}
DEFAULT_QUALITY = "good"


def settings_for(settings_class: type, quality: str = DEFAULT_QUALITY, **given: Any) -> Any:
    """``settings_class`` filled from preset ``quality``; each of ``given`` that is not None wins over it.

    Raises:
        InputError: an unknown preset (or, from the settings class, a value out of its range).
    """
    if quality not in PRESETS:
        raise InputError(f"--quality must be one of {', '.join(PRESETS)}, got {quality!r}")
    values = PRESETS[quality].values(settings_class)
    values.update({k: v for k, v in given.items() if v is not None})
    return settings_class(**values)


def budget_line(recipe) -> str:
    """``"budget: 400 steps (w_plus 200, noise 200)"``: what a command prints before it starts."""
    parts = ", ".join(f"{stage.name} {stage.steps}" for stage in recipe.stages)
    targets = sorted({stage.until.describe() for stage in recipe.stages if stage.until is not None})
    ends = f"; a stage ends early at {' / '.join(targets)}" if targets else ""
    return f"budget: {recipe.total_steps} steps ({parts}){ends}"
