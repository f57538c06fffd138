"""What the editor page's controls hold, turned into what the library takes: painted layers into masks and
scribbled images, the "Advanced" fields into settings overrides, detected faces into a picture to click on, and the
budget line a run will print. Pure functions, tested without a browser."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..apps.presets import settings_for
from ..apps.requests import APPLICATIONS
from ..apps.settings import until
from ..errors import Image2StyleGANError as I2SError
from ..errors import InputError

__all__ = ["ADVANCED", "advanced_names", "advanced_values", "budget_text", "composite", "embedding_overrides",
           "face_at", "faces_overlay", "painted_mask"]


def painted_mask(value: dict | None, size: int) -> np.ndarray | None:
    """White where any layer of an ImageEditor value was painted: uint8 [size, size]; None when nothing was."""
    if not value or not value.get("layers"):
        return None
    alpha = None
    for layer in value["layers"]:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] < 4:
            continue
        a = layer[..., 3] > 0
        alpha = a if alpha is None else (alpha | a)
    if alpha is None or not alpha.any():
        return None
    mask = Image.fromarray(alpha.astype(np.uint8) * 255)
    if mask.size != (size, size):
        mask = mask.resize((size, size), Image.NEAREST)
    return np.asarray(mask)


def composite(value: dict | None, size: int) -> np.ndarray | None:
    """The painted canvas (background with the layers over it) as uint8 [size, size, 3]."""
    if not value or value.get("composite") is None:
        return None
    image = Image.fromarray(np.asarray(value["composite"])).convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(white, image).convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.LANCZOS)
    return np.asarray(image)


def faces_overlay(pixels: np.ndarray, boxes, longest: int = 768) -> tuple[np.ndarray, float]:
    """The photo at most ``longest`` px wide or tall with each face's box drawn and numbered (its --face index);
    returns the image and the scale from photo pixels to its pixels."""
    image = Image.fromarray(pixels)
    scale = min(1.0, longest / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.LANCZOS)
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 250))
    font_size = max(16, round(max(image.size) / 30))
    for index, box in enumerate(boxes):
        left, top, right, bottom = (float(v) * scale for v in box)
        draw.rectangle((left, top, right, bottom), outline=(255, 210, 0), width=width)
        label = str(index)
        text_box = draw.textbbox((left, top), label, font_size=font_size)
        draw.rectangle(text_box, fill=(255, 210, 0))
        draw.text((left, top), label, fill=(0, 0, 0), font_size=font_size)
    return np.asarray(image), scale


def face_at(x: float, y: float, boxes) -> int:
    """The index of the box (left, top, right, bottom) holding (x, y): the smallest such box, since a small face
    can lie inside a large box; the nearest box centre when none holds it."""
    inside = [i for i, (left, top, right, bottom) in enumerate(boxes) if left <= x <= right and top <= y <= bottom]
    if inside:
        return min(inside, key=lambda i: (boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    return min(range(len(boxes)), key=lambda i: ((boxes[i][0] + boxes[i][2]) / 2 - x) ** 2
               + ((boxes[i][1] + boxes[i][3]) / 2 - y) ** 2)


ADVANCED = {
    "w_lr": ("W+ learning rate", None),
    "noise_lr": ("noise learning rate", None),
    "feather": ("mask feather (blur sigma, fraction of the side)", None),
    "noise_space": ("noise maps", ("paper", "extended")),
    "seed": ("seed", None),
}
"""The settings an application's "Advanced" section offers beside its step counts, where it has them: label and
choices (None: a number)."""


def advanced_names(command: str) -> list[str]:
    """The settings the "Advanced" section of ``command`` edits, in order: the steps, then those of
    :data:`ADVANCED` that the application has."""
    fields = {f.name for f in dataclasses.fields(APPLICATIONS[command].settings)}
    return ["w_steps", "noise_steps", *(name for name in ADVANCED if name in fields)]


def advanced_values(names, values) -> dict[str, Any]:
    """The page's advanced fields as settings overrides: empty, 0 steps and "preset" keep the preset's value.

    Raises:
        InputError: a field that is not a number (the settings check the ranges)."""
    out: dict[str, Any] = {}
    for name, value in zip(names, values):
        if isinstance(value, str):
            value = value.strip()
        if value in (None, "", "preset") or (name.endswith("_steps") and not value):
            continue
        if name in ADVANCED and ADVANCED[name][1]:  # a choice
            out[name] = str(value)
            continue
        try:
            number = float(value)
            out[name] = int(number) if name.endswith("_steps") or name == "seed" else number
        except (TypeError, ValueError):
            raise InputError(f"{ADVANCED.get(name, (name,))[0]}: {value!r} is not a number") from None
    return out


def embedding_overrides(w_steps, noise_steps, until_psnr=None, until_lpips=None) -> dict[str, Any]:
    """The "Embedding: advanced" fields as :class:`~image2stylegan.apps.reconstruct.ReconstructionSettings`
    overrides (what ``--w-steps``, ``--noise-steps``, ``--until-psnr`` and ``--until-lpips`` are on the command
    line). 0 or empty keeps the preset's value: its step counts and its PSNR target (the preset has no LPIPS target,
    so there 0 means none); a PSNR of 100 never ends a stage early.

    Raises:
        InputError: a field that is not a number (the settings check the ranges)."""
    out: dict[str, Any] = {}
    for name, value, kind in (("w_steps", w_steps, int), ("noise_steps", noise_steps, int),
                              ("until_psnr", until_psnr, float), ("until_lpips", until_lpips, float)):
        if isinstance(value, str):
            value = value.strip()
        try:
            number = kind(float(value)) if value not in (None, "") else 0
        except (TypeError, ValueError):
            raise InputError(f"{name.replace('_', ' ')}: {value!r} is not a number") from None
        out[name] = number or None
    return out


def budget_text(command: str, quality: str, w_steps, noise_steps, until_psnr=None, until_lpips=None) -> str:
    """The step budget of ``command`` (an edit's own stages; 'reconstruct': the embedding) under the preset and the
    page's fields (:func:`embedding_overrides`), with the stopping target where the settings carry one: what the run
    will print. A value the settings refuse is said, not raised."""
    try:
        settings = settings_for(APPLICATIONS[command].settings, quality,
                                **embedding_overrides(w_steps, noise_steps, until_psnr, until_lpips))
    except (I2SError, TypeError) as exc:
        return f"budget: {exc}"
    target = until(getattr(settings, "until_psnr", None), getattr(settings, "until_lpips", None))
    ends = f"; a stage ends early at {target.describe()}" if target is not None else ""
    return f"budget: {settings.w_steps} W+ + {settings.noise_steps} noise steps ({quality}){ends}"
