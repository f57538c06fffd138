"""What every bench script records about the machine it ran on (so numbers from different runs can be compared)."""

from __future__ import annotations

import os
import platform
import sys

import torch


def machine_info(device: torch.device | None = None) -> dict:
    """CPU, threads, GPU name (on CUDA), versions, and the load average: timings taken on a busy machine say so."""
    on_cuda = device is not None and device.type == "cuda" or device is None and torch.cuda.is_available()
    return {
        "device": str(device) if device is not None else None,
        "gpu": torch.cuda.get_device_name(device) if on_cuda else None,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "load_average": os.getloadavg(),
    }


def common_options(parser, out: str) -> None:
    """``--device`` and ``--out`` (default ``out``), which every bench script takes. The report's folder is made
    when the options are read, so an unwritable place fails before a long run, not after it."""
    from pathlib import Path

    def out_path(text: str) -> Path:
        path = Path(text)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--out", type=out_path, default=out)


def bundled_models(device_name: str):
    """(device, the bundled generator, the VGG16 perceptual loss) on ``device_name`` ('auto' resolves it)."""
    from image2stylegan.cli import resolve_device
    from image2stylegan.generators.registry import load_generator
    from image2stylegan.losses import PerceptualLoss

    device = resolve_device(device_name)
    return device, load_generator(device=device), PerceptualLoss.from_file().to(device)
