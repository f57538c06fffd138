"""What every application shares: its result type, reusing saved embeddings, the baselines and metrics helpers,
and the one function that writes a result's files.

Each application (reconstruction, crossover, inpainting, style transfer, ...) builds a recipe, runs it through
:func:`image2stylegan.embed.embed` and returns an :class:`EditResult`; :func:`save` writes its image, its panel
(inputs | naive baseline | result, as in the paper's figures), ``latent.npz``, ``curves.png`` and, last,
``metrics.json``, each atomically. The image is rendered again from the saved (w, n), so ``i2s render latent.npz``
reproduces it bit for bit on the same device.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import torch

from ..embed import Embedding, EmbeddingResult, StageOutcome, StepInfo
from ..errors import InputError, notice
from ..generators.base import Edit, StyleGenerator
from ..io import atomic_save_png, atomic_write_json, save_image
from ..latents import complete_noise, load_latent, save_latent
from ..metrics import psnr
from ..report import plot_curves, side_by_side
from ..weights import sha256_file
from .publish import MANIFEST, code_version, publish, staged

EDIT_OUTPUT_FILES = ("result.png", "panel.png", "latent.npz", "metrics.json", "curves.png")


@dataclass(frozen=True)
class EditResult:
    """An application's outcome for one image.

    ``edits`` are activation edits (layer -> replacement tensor) applied when rendering; empty for the pure
    embedding applications. They are saved in ``latent.npz`` so ``i2s render`` reproduces the result.
    ``stage_metrics`` adds per-stage entries (e.g. PSNR after each stage) to the stage table of ``metrics.json``;
    ``recipe`` is the summary of the recipe that ran; ``stopped`` says the run was stopped before its end.
    """

    ws: torch.Tensor  # [1, num_ws, w_dim]
    noise: list[torch.Tensor]  # one [1, C, H, W] per noise input
    panel: list[tuple[str, torch.Tensor]]  # (label, [3, H, W] in [-1, 1]) in display order
    metrics: dict[str, Any]
    history: list[StepInfo] = field(default_factory=list, repr=False)
    stages: list[StageOutcome] = field(default_factory=list, repr=False)
    edits: dict[str, Edit] = field(default_factory=dict, repr=False)
    noise_space: str = "paper"
    stage_metrics: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    recipe: dict[str, Any] | None = field(default=None, repr=False)
    stopped: bool = False
    embeddings: dict[str, Embedding] = field(default_factory=dict, repr=False)  # named embeddings the run made
    # further images the application made, file name -> [3, H, W] in [-1, 1] (inpainting's filled photo); written
    # beside result.png, which stays the render of latent.npz
    images: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)


def render(generator: StyleGenerator, result: EditResult) -> torch.Tensor:
    """The result image [1, 3, H, W] from its (w, n) and activation edits."""
    with torch.no_grad():
        return generator.synthesis(result.ws, result.noise, edits=result.edits or None)


def load_embedding(generator: StyleGenerator, path: Path) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(ws [1, num_ws, w_dim], noise maps) from a ``latent.npz`` made for ``generator`` (``--from``).

    Noise maps the file lacks are zeros (:func:`image2stylegan.latents.complete_noise` says which in a notice)."""
    data = load_latent(path)
    if data.generator_name is not None and data.generator_name != generator.name:
        raise InputError(f"{path} was made with generator {data.generator_name!r}, not {generator.name!r}")
    ws, noise, _ = _embedding_of(generator, data, path)
    return ws, noise


def load_for_render(
    generator: StyleGenerator, path: Path, weights_sha256: str | None = None
) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
    """(ws, noise, activation edits) to render a ``latent.npz`` with ``generator`` (``i2s render``):
    a file made with another generator or other weights renders with a notice, not an error."""
    data = load_latent(path)
    if data.generator_name is not None and data.generator_name != generator.name:
        notice(f"{path} was made with generator {data.generator_name!r}; rendering it with {generator.name!r}")
    elif None not in (data.weights_sha256, weights_sha256) and data.weights_sha256 != weights_sha256:
        notice(f"{path} was made with different {generator.name} weights (sha256 {data.weights_sha256[:12]}...)")
    ws, noise, edits = _embedding_of(generator, data, path)
    unknown = set(edits) - set(generator.layer_names())
    if unknown:
        raise InputError(f"{path} edits layer(s) {sorted(unknown)} that {generator.name} does not have")
    return ws, noise, edits


def _embedding_of(generator: StyleGenerator, data, path: Path):
    if tuple(data.w.shape[1:]) != (generator.num_ws, generator.w_dim):
        raise InputError(
            f"{path}: w has shape {list(data.w.shape)}, {generator.name} needs [1, {generator.num_ws}, {generator.w_dim}]"
        )
    expected = [(1, spec.channels, spec.height, spec.width) for spec in generator.noise_inputs]
    noise = complete_noise(data.noise, expected, source=str(path))
    device = generator.w_avg.device
    edits = {layer: t.to(device) for layer, t in data.edits.items()}
    return data.w.to(device), [n.to(device) for n in noise], edits


# -- baselines and measurements shared by the applications ----------------------------------------------------


def copy_paste(inside: torch.Tensor, outside: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The naive baseline of the paper's figures: ``M ⊙ inside + (1 − M) ⊙ outside`` ([B, 3, H, W] images)."""
    mask = mask.to(inside.device, inside.dtype)
    return mask * inside + (1.0 - mask) * outside


def db(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> float | None:
    """PSNR (dB) of image 0 of ``x`` against ``y`` over ``mask``; None where it is infinite (identical images),
    which strict JSON cannot hold, or where the mask selects nothing."""
    if mask is not None and not bool((mask > 0).any()):
        return None
    value = psnr(x, y, mask=mask)[0]
    return float(value) if torch.isfinite(value) else None


def mean_abs_error(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float | None:
    """Mean absolute colour error of image 0 of ``x`` against ``y`` over ``mask`` (weights [1, 1, H, W]), on the
    0-1 scale (images are in [-1, 1]); None where the mask selects nothing."""
    weight = mask[:1].to(x)
    total = float(weight.sum())
    if total <= 0:
        return None
    return float(((x[:1] - y[:1].to(x)).abs().mean(dim=1, keepdim=True) * weight).sum()) / total / 2.0


def by_stage(result: EmbeddingResult, measure: Callable[[torch.Tensor], float | None],
             points: Mapping[str, str | torch.Tensor]) -> dict[str, float | None]:
    """``measure`` at named points of a run: each point is a stage name (its end image, None when the stage did
    not run because the run was stopped) or an image tensor (e.g. the start embedding's render)."""
    out = {}
    for point, where in points.items():
        if isinstance(where, str):
            outcome = result.outcome(where)
            out[point] = None if outcome is None else measure(outcome.image.clamp(-1, 1))
        else:
            out[point] = measure(where.clamp(-1, 1))
    return out


def start_point(generator: StyleGenerator, ws: torch.Tensor | None, noise, embedding_stage: str) -> str | torch.Tensor:
    """Where an edit's "start" measurements are taken (for :func:`by_stage`): the render of the given starting
    embedding, or, when the recipe embeds the photo first, the end of that stage."""
    if ws is None:
        return embedding_stage
    with torch.no_grad():
        return generator.synthesis(ws.to(generator.w_avg), noise)


def final_embedding(result: EmbeddingResult, embedding: str | None = None) -> Embedding:
    """The final (ws, noise) of ``embedding`` (default: the last stage's), image 0 of the batch."""
    ws, noise = (result.ws, result.noise) if embedding is None else result.embeddings[embedding]
    return Embedding(ws[:1], [n[:1] for n in noise])


# -- writing ------------------------------------------------------------------------------------------------------


def input_record(inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    """The inputs as ``metrics.json`` records them: files by path and sha256, anything else (mask presets,
    parameters) as given."""
    out: dict[str, Any] = {}
    for role, value in (inputs or {}).items():
        if value is None or value == "":
            continue
        path = Path(str(value))
        if isinstance(value, (str, Path)) and path.is_file():
            out[role] = {"file": str(value), "sha256": file_sha256(path)}
        else:
            out[role] = str(value) if isinstance(value, Path) else value
    return out


def file_sha256(path: Path) -> str:
    """Hex sha256 of an input file, remembered while the file keeps its size and modification time: a folder run
    asks for each photo's hash when it plans, when it resumes and when it saves."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _INPUT_HASHES:
        _INPUT_HASHES[key] = sha256_file(Path(path))
    return _INPUT_HASHES[key]


_INPUT_HASHES: dict[tuple[str, int, int], str] = {}


def save(
    outdir: Path,
    result: EditResult,
    *,
    generator: StyleGenerator,
    command: str,
    settings: Any,
    weights_sha256: str | None,
    inputs: Mapping[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    before_metrics: Callable[[torch.Tensor, Path], None] | None = None,
    image_name: str = "result.png",
    panel_name: str = "panel.png",
    extra_images: Mapping[str, torch.Tensor] | None = None,
    extra_files: Mapping[str, Callable[[Path], None]] | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Write an application's outputs into ``outdir`` (which must exist) as one set and return the metrics.

    Files: ``image_name`` (the result rendered from the saved latent), ``panel_name``, ``latent.npz``,
    ``curves.png``, each of ``result.images`` and ``extra_images`` (name -> [3, H, W]) and ``extra_files`` (name
    -> a function that writes that file), whatever ``before_metrics(result [1, 3, H, W], folder)`` writes into ``folder`` (e.g. the
    paste-back), and ``metrics.json``. They are written into a staging folder and published together, replacing
    the previous set in ``outdir`` (:mod:`.publish`); ``metrics.json`` lists them under ``"files"``. ``extra``
    entries are added to the metrics.
    """
    image = render(generator, result)
    metrics = {
        "code_version": code_version(),
        "command": command,
        "generator": generator.name,
        "weights_sha256": weights_sha256,
        "device": device if device is not None else str(image.device),
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads{', torch.compile' if generator.compiled else ''}",
        "inputs": input_record(inputs),
        "settings": plain(settings),
        "recipe": result.recipe,
        "stopped": result.stopped,
        "metrics": result.metrics,
        "stages": {
            s.name: {**result.stage_metrics.get(s.name, {}), "steps": s.steps, "seconds": s.seconds,
                     "seconds_per_step": s.seconds / s.steps if s.steps else None,
                     **({"stopped": True} if s.stopped else {})}
            for s in result.stages
        },
        "total_seconds": sum(s.seconds for s in result.stages),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    with staged(outdir) as stage:
        save_latent(
            stage / "latent.npz",
            result.ws.cpu(),
            [n.cpu() for n in result.noise],
            generator_name=generator.name,
            weights_sha256=weights_sha256,
            extra={"noise_space": result.noise_space, "command": command},
            edits={layer: t.detach().cpu() for layer, t in result.edits.items()},
        )
        save_image(stage / image_name, image[0])
        for name, extra_image in {**result.images, **(extra_images or {})}.items():
            save_image(stage / name, extra_image)
        for name, write in (extra_files or {}).items():
            write(stage / name)
        labels, tiles = zip(*result.panel) if result.panel else ((), ())
        atomic_save_png(stage / panel_name, side_by_side(list(tiles), list(labels)))
        plot_curves([h.as_dict() for h in result.history], stage / "curves.png")
        if before_metrics is not None:
            before_metrics(image, stage)
        metrics["files"] = sorted([*(p.name for p in stage.iterdir() if p.is_file()), MANIFEST])
        atomic_write_json(stage / MANIFEST, metrics)
        publish(stage, outdir)
    return metrics


def plain(settings: Any) -> Any:
    """Settings as JSON-friendly data (tensors summarised, dataclasses as dicts)."""
    if is_dataclass(settings) and not isinstance(settings, type):
        settings = asdict(settings)
    if isinstance(settings, dict):
        return {k: plain(v) for k, v in settings.items()}
    if isinstance(settings, (list, tuple)):
        return [plain(v) for v in settings]
    if isinstance(settings, torch.Tensor):
        return f"tensor{list(settings.shape)}"
    if isinstance(settings, Path):
        return str(settings)
    return settings


def noise_space_of(noise: Sequence[torch.Tensor]) -> str:
    """"extended" if any noise map has more than one channel (per-channel maps), else "paper"."""
    return "extended" if any(n.shape[1] > 1 for n in noise) else "paper"
