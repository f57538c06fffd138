"""What every editing application shares: its result type, reusing saved embeddings, and the files it writes.

Each application (crossover, inpainting, style transfer, ...) returns an :class:`EditResult`; :func:`save_edit`
writes ``result.png``, ``panel.png`` (inputs | naive copy-paste | result, as in the paper's figures),
``latent.npz``, ``metrics.json`` and ``curves.png``, each atomically. The result is rendered again from the saved
(w, n), so ``i2s render latent.npz`` reproduces ``result.png`` bit for bit on the same device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch

from ..embed import StageOutcome, StepInfo
from ..errors import InputError
from ..generators.base import Edit, StyleGenerator
from ..io import atomic_save_png, atomic_write_json, save_image
from ..latents import complete_noise, load_latent, save_latent
from ..report import plot_curves, side_by_side

EDIT_OUTPUT_FILES = ("result.png", "panel.png", "latent.npz", "metrics.json", "curves.png")


@dataclass(frozen=True)
class EditResult:
    """An application's outcome for one image.

    ``edits`` are activation edits (layer -> replacement tensor) applied when rendering; empty for the pure
    embedding applications. They are saved in ``latent.npz`` so ``i2s render`` reproduces the result.
    """

    ws: torch.Tensor  # [1, num_ws, w_dim]
    noise: list[torch.Tensor]  # one [1, C, H, W] per noise input
    panel: list[tuple[str, torch.Tensor]]  # (label, [3, H, W] in [-1, 1]) in display order
    metrics: dict[str, Any]
    history: list[StepInfo] = field(default_factory=list, repr=False)
    stages: list[StageOutcome] = field(default_factory=list, repr=False)
    edits: dict[str, Edit] = field(default_factory=dict, repr=False)
    noise_space: str = "paper"


def render(generator: StyleGenerator, result: EditResult) -> torch.Tensor:
    """The result image [1, 3, H, W] from its (w, n) and activation edits."""
    with torch.no_grad():
        return generator.synthesis(result.ws, result.noise, edits=result.edits or None)


def load_embedding(generator: StyleGenerator, path: Path) -> tuple[torch.Tensor, list[torch.Tensor], list[str]]:
    """(ws [1, num_ws, w_dim], noise maps, notices) from a ``latent.npz`` made for ``generator`` (``--from``)."""
    data = load_latent(path)
    if data.generator_name is not None and data.generator_name != generator.name:
        raise InputError(f"{path} was made with generator {data.generator_name!r}, not {generator.name!r}")
    if tuple(data.w.shape[1:]) != (generator.num_ws, generator.w_dim):
        raise InputError(
            f"{path}: w has shape {list(data.w.shape)}, {generator.name} needs [1, {generator.num_ws}, {generator.w_dim}]"
        )
    expected = [(1, spec.channels, spec.height, spec.width) for spec in generator.noise_inputs]
    noise, notices = complete_noise(data.noise, expected, source=str(path))
    device = generator.w_avg.device
    return data.w.to(device), [n.to(device) for n in noise], notices


def save_edit(
    outdir: Path,
    result: EditResult,
    *,
    generator: StyleGenerator,
    command: str,
    settings: Any,
    weights_sha256: str | None,
    inputs: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    before_metrics: Callable[[torch.Tensor], None] | None = None,
) -> dict[str, Any]:
    """Write an application's outputs into ``outdir`` (which must exist) and return the metrics written.

    ``extra`` entries are added to ``metrics.json``; ``before_metrics(result [1, 3, H, W])`` runs after the other
    files and before ``metrics.json``, which is written last (e.g. to paste the result back into the photo).
    """
    image = render(generator, result)
    metrics = {
        "command": command,
        "generator": generator.name,
        "weights_sha256": weights_sha256,
        "inputs": inputs or {},
        "settings": _plain(settings),
        "metrics": result.metrics,
        "stages": {
            s.name: {"steps": s.steps, "seconds": s.seconds, "seconds_per_step": s.seconds / s.steps if s.steps else None}
            for s in result.stages
        },
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    save_latent(
        outdir / "latent.npz",
        result.ws.cpu(),
        [n.cpu() for n in result.noise],
        generator_name=generator.name,
        weights_sha256=weights_sha256,
        extra={"noise_space": result.noise_space, "command": command},
        edits={layer: t.detach().cpu() for layer, t in result.edits.items()},
    )
    save_image(outdir / "result.png", image[0])
    labels, tiles = zip(*result.panel) if result.panel else ((), ())
    atomic_save_png(outdir / "panel.png", side_by_side(list(tiles), list(labels)))
    plot_curves([h.as_dict() for h in result.history], outdir / "curves.png")
    if before_metrics is not None:
        before_metrics(image)
    atomic_write_json(outdir / "metrics.json", metrics)
    return metrics


def _plain(settings: Any) -> Any:
    """Settings as JSON-friendly data (tensors summarised, dataclasses as dicts)."""
    if is_dataclass(settings) and not isinstance(settings, type):
        settings = asdict(settings)
    if isinstance(settings, dict):
        return {k: _plain(v) for k, v in settings.items()}
    if isinstance(settings, (list, tuple)):
        return [_plain(v) for v in settings]
    if isinstance(settings, torch.Tensor):
        return f"tensor{list(settings.shape)}"
    if isinstance(settings, Path):
        return str(settings)
    return settings
