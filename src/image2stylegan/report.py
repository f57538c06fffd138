"""Pictures of a run: labelled comparison strips and optimisation curves.

Matplotlib is driven through ``Figure`` + ``FigureCanvasAgg`` directly rather than
pyplot, so importing this module neither picks a global backend nor keeps figures alive
in pyplot's registry (which leaks memory in long batch runs).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from image2stylegan.io import atomic_write, tensor_to_uint8

__all__ = ["plot_curves", "side_by_side"]

PathLike = str | os.PathLike

_WHITE = (255, 255, 255)
_TEXT = (20, 20, 20)


# --------------------------------------------------------------------------- side by side


def _label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` px; the fixed bitmap font if FreeType is missing."""
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ImportError):
        return ImageFont.load_default()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Any, max_width: int) -> str:
    """Shorten ``text`` with an ellipsis until it fits in ``max_width`` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "...", font=font) > max_width:
        text = text[:-1]
    return text + "..."


def _fit_tile(image: torch.Tensor, tile: int) -> Image.Image:
    """Scale an image to fit a ``tile`` x ``tile`` box (aspect kept), centred on white."""
    pil = Image.fromarray(tensor_to_uint8(image))
    scale = tile / max(pil.size)
    new_size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    if new_size != pil.size:
        pil = pil.resize(new_size, Image.Resampling.LANCZOS)
    if pil.size == (tile, tile):
        return pil
    canvas = Image.new("RGB", (tile, tile), _WHITE)
    canvas.paste(pil, ((tile - pil.width) // 2, (tile - pil.height) // 2))
    return canvas


def side_by_side(images: Sequence[torch.Tensor], labels: Sequence[str], tile: int = 512) -> np.ndarray:
    """Lay images out in a row, each with its label underneath, on white.

    Used for "target | after W+ | after noise" comparisons.

    Args:
        images: tensors ``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1], any sizes.
        labels: one caption per image; too-long captions are shortened with "...".
        tile: side length in pixels each image is scaled to (aspect ratio kept).

    Returns:
        uint8 ``[H, W, 3]`` with ``H = 2 * gap + tile + label_height`` and
        ``W = gap + len(images) * (tile + gap)``.
    """
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    if not images:
        raise ValueError("side_by_side needs at least one image")
    if tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")

    gap = max(4, tile // 32)
    font_size = max(10, tile // 20)
    label_height = 2 * font_size
    font = _label_font(font_size)

    width = gap + len(images) * (tile + gap)
    height = 2 * gap + tile + label_height
    sheet = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(sheet)
    for index, (image, label) in enumerate(zip(images, labels)):
        left = gap + index * (tile + gap)
        sheet.paste(_fit_tile(image, tile), (left, gap))
        text = _fit_text(draw, str(label), font, tile)
        # Anchor "mm" centres the text box on the point, whatever the font's metrics.
        centre = (left + tile / 2, gap + tile + label_height / 2)
        draw.text(centre, text, fill=_TEXT, font=font, anchor="mm")
    return np.asarray(sheet).copy()


# --------------------------------------------------------------------------- curves


def _stage_segments(stages: Sequence[str]) -> list[tuple[str, int, int]]:
    """Consecutive runs of one stage as ``(stage, start, stop)`` with ``stop`` exclusive."""
    segments: list[tuple[str, int, int]] = []
    start = 0
    for index in range(1, len(stages) + 1):
        if index == len(stages) or stages[index] != stages[start]:
            segments.append((stages[start], start, index))
            start = index
    return segments


def _as_float(value: Any) -> float:
    """A finite float, or NaN for missing / infinite values (matplotlib leaves gaps there)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number if math.isfinite(number) else math.nan


def _positive(values: np.ndarray) -> np.ndarray:
    """Mask non-positive values, which a log axis cannot show."""
    return np.where(values > 0, values, np.nan)


def _draw_stage_shading(axes: Sequence[Any], segments: Sequence[tuple[str, int, int]], colours: Mapping[str, Any]) -> None:
    """Tint each stage's span and draw a dashed line where one stage hands over to the next."""
    for ax in axes:
        for stage, start, stop in segments:
            ax.axvspan(start - 0.5, stop - 0.5, color=colours[stage], alpha=0.08, linewidth=0)
            if start > 0:
                ax.axvline(start - 0.5, color="0.35", linestyle="--", linewidth=1)


def plot_curves(history: Sequence[Mapping[str, Any]], path: PathLike) -> None:
    """Plot loss and PSNR against the global step and write a PNG atomically.

    Args:
        history: one dict per optimisation step, in order, with ``stage`` (str),
            ``step`` (int, within the stage), ``loss`` (float), ``psnr`` (float, dB) and
            optionally ``terms`` (dict of named loss terms, e.g. ``{"mse": .., "perceptual": ..}``).
        path: destination PNG.

    The top panel shows the total loss (log scale) coloured by stage, plus each term as a
    thin line; the bottom panel shows PSNR. The global step is the index in ``history``.
    Non-finite values leave gaps instead of failing. An empty history gives a figure
    that says so, so a zero-step run still gets its report.
    """
    figure = Figure(figsize=(9.0, 6.5), dpi=100, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    ax_loss, ax_psnr = figure.subplots(2, 1, sharex=True)
    ax_loss.set_ylabel("loss")
    ax_psnr.set_ylabel("PSNR (dB)")
    ax_psnr.set_xlabel("step (all stages)")
    for ax in (ax_loss, ax_psnr):
        ax.grid(True, which="major", alpha=0.3)

    if not history:
        ax_loss.text(0.5, 0.5, "no optimisation steps recorded", ha="center", va="center", transform=ax_loss.transAxes)
    else:
        _plot_history(history, ax_loss, ax_psnr)

    atomic_write(path, canvas.print_png)


def _plot_history(history: Sequence[Mapping[str, Any]], ax_loss: Any, ax_psnr: Any) -> None:
    """Draw the curves of a non-empty ``history`` onto the two axes."""
    stages = [str(record["stage"]) for record in history]
    steps = np.arange(len(history))
    loss = np.array([_as_float(record.get("loss")) for record in history])
    psnr = np.array([_as_float(record.get("psnr")) for record in history])

    segments = _stage_segments(stages)
    stage_names = list(dict.fromkeys(stages))  # first-appearance order, no duplicates
    # "C<n>" are matplotlib's default cycle colours; terms continue after the stages'.
    colours = {stage: f"C{i % 10}" for i, stage in enumerate(stage_names)}
    _draw_stage_shading((ax_loss, ax_psnr), segments, colours)

    labelled: set[str] = set()
    for stage, start, stop in segments:
        # Label a stage once even if it recurs, so the legend has one entry per stage.
        label = stage if stage not in labelled else None
        labelled.add(stage)
        span = slice(start, stop)
        ax_loss.plot(steps[span], _positive(loss[span]), color=colours[stage], linewidth=1.6, label=label)
        ax_psnr.plot(steps[span], psnr[span], color=colours[stage], linewidth=1.6, label=label)

    any_positive = bool(np.isfinite(_positive(loss)).any())
    term_names = list(dict.fromkeys(name for record in history for name in (record.get("terms") or {})))
    for i, name in enumerate(term_names):
        # A term missing from some stage's records is NaN there: a gap, not a zero.
        values = _positive(np.array([_as_float((record.get("terms") or {}).get(name)) for record in history]))
        any_positive |= bool(np.isfinite(values).any())
        colour = f"C{(len(stage_names) + i) % 10}"
        ax_loss.plot(steps, values, color=colour, linestyle=":", linewidth=1.0, label=name)

    if any_positive:  # a log axis with nothing positive on it only produces warnings
        ax_loss.set_yscale("log")
    ax_loss.legend(loc="upper right", fontsize="small")
    ax_psnr.legend(loc="lower right", fontsize="small")
    ax_psnr.set_xlim(-0.5, len(history) - 0.5)
