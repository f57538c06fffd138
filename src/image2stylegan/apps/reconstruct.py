"""Application 1: improved reconstruction (the paper's Alg. 2): W+ stage, then noise stage, and the files a run
writes (reconstruction, side-by-side, latent.npz, metrics.json, curves)."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..embed import EmbeddingResult, NoiseStage, StageOutcome, StepInfo, WPlusStage, embed
from ..generators.base import StyleGenerator
from ..io import atomic_save_png, atomic_write_json, save_image
from ..latents import save_latent
from ..losses import PerceptualLoss
from ..metrics import psnr, ssim
from ..report import plot_curves, side_by_side

OUTPUT_FILES = ("reconstruction.png", "comparison.png", "target.png", "latent.npz", "metrics.json", "curves.png")


@dataclass(frozen=True)
class ReconstructionSettings:
    """Alg. 2's settings. Defaults are the paper's (5000 W+ steps at Adam lr 0.01, 3000 noise steps at lr 5)."""

    w_steps: int = 5000
    noise_steps: int = 3000
    noise_space: str = "paper"  # 'paper' or 'extended' (beyond the paper; see NoiseStage / the README)
    seed: int = 0
    init: str = "mean"  # 'mean' latent (faces) or 'uniform' U[-1, 1] (other images)
    w_lr: float = 0.01
    noise_lr: float = 5.0
    noise_lr_scaling: str = "strength"  # 'paper' (one lr for all maps) or 'strength' (see NoiseStage)

    def stages(self) -> list[WPlusStage | NoiseStage]:
        return [
            WPlusStage(steps=self.w_steps, lr=self.w_lr),
            NoiseStage(steps=self.noise_steps, lr=self.noise_lr, lr_scaling=self.noise_lr_scaling),
        ]


def reconstruct(
    generator: StyleGenerator,
    target: torch.Tensor,
    perceptual: PerceptualLoss,
    settings: ReconstructionSettings = ReconstructionSettings(),
    callback: Callable[[StepInfo], None] | None = None,
    on_stage_end: Callable[[StageOutcome], None] | None = None,
) -> EmbeddingResult:
    """Embed ``target`` [B, 3, H, W] in [-1, 1]: W+ (MSE + perceptual), then noise (MSE only)."""
    return embed(
        generator,
        target,
        settings.stages(),
        perceptual=perceptual,
        noise_space=settings.noise_space,
        init=settings.init,
        seed=settings.seed,
        callback=callback,
        on_stage_end=on_stage_end,
    )


def stage_metrics(result: EmbeddingResult, target: torch.Tensor, lpips: Callable | None, index: int = 0) -> dict:
    """PSNR / SSIM / LPIPS of image ``index`` after each stage, plus timings."""
    out = {}
    x = target[index : index + 1]
    for stage in result.stages:
        y = stage.image[index : index + 1].clamp(-1, 1)
        entry = {
            "psnr_db": float(psnr(y, x)[0]),
            "ssim": float(ssim(y, x)[0]),
            "steps": stage.steps,
            "seconds": stage.seconds,
            "seconds_per_step": stage.seconds / stage.steps if stage.steps else None,
        }
        if lpips is not None:
            with torch.no_grad():
                entry["lpips"] = float(lpips(y, x)[0])
        out[stage.name] = entry
    return out


def save_outputs(
    outdir: Path,
    *,
    generator: StyleGenerator,
    target: torch.Tensor,
    result: EmbeddingResult,
    settings: ReconstructionSettings,
    weights_sha256: str | None,
    lpips: Callable | None = None,
    index: int = 0,
    source: str | None = None,
    device: str | None = None,
    extra: dict | None = None,
    before_metrics: Callable[[torch.Tensor], None] | None = None,
) -> dict:
    """Write one image's outputs into ``outdir`` (each file atomically) and return its metrics.

    The reconstruction is rendered again from exactly the (w, n) saved in ``latent.npz``, one image at a time, so
    ``i2s render latent.npz`` reproduces ``reconstruction.png`` bit for bit on the same device.

    ``extra`` entries are added to ``metrics.json``. ``before_metrics(reconstruction [1, 3, H, W])`` runs after
    every other file is written and before ``metrics.json``, which is always written last: a folder with a
    ``metrics.json`` is complete (folder runs resume on that), so files derived from the result (the paste-back)
    must be written through this hook.
    """
    ws = result.ws[index : index + 1].contiguous()
    noise = [n[index : index + 1].contiguous() for n in result.noise]
    with torch.no_grad():
        final = generator.synthesis(ws, noise)
    metrics = {
        "source": source,
        "generator": generator.name,
        "weights_sha256": weights_sha256,
        "device": device,
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "settings": asdict(settings),
        "stages": stage_metrics(result, target, lpips, index),
        "total_seconds": sum(s.seconds for s in result.stages),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    labels = ["target"] + [f"after {name} ({m['psnr_db']:.1f} dB)" for name, m in metrics["stages"].items()]
    panel = side_by_side([target[index]] + [s.image[index] for s in result.stages], labels)

    save_latent(
        outdir / "latent.npz",
        ws.cpu(),
        [n.cpu() for n in noise],
        generator_name=generator.name,
        weights_sha256=weights_sha256,
        extra={"noise_space": settings.noise_space},
    )
    save_image(outdir / "reconstruction.png", final[0])
    save_image(outdir / "target.png", target[index])
    atomic_save_png(outdir / "comparison.png", panel)
    plot_curves([h.as_dict() for h in result.history], outdir / "curves.png")
    if before_metrics is not None:
        before_metrics(final)
    atomic_write_json(outdir / "metrics.json", metrics)
    return metrics

