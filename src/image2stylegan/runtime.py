"""What every entry point opens before it runs anything: the device, the generator, the losses.

The CLI, the browser editor and the cluster workers all open them here, so a run on any of them resolves ``auto``
the same way and measures LPIPS at the same size.
"""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["open_generator", "perceptual_and_lpips", "perceptual_loss", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; an explicit device that is not available is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available to this PyTorch build; use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise InputError("--device mps: Apple's MPS backend is not available here; use --device cpu or auto")
    return torch.device(name)


def open_generator(network: str | None, device: torch.device, *, compile: bool = False):
    """(generator, sha256 of its weights) for ``--network``: the bundled generator when None. ``compile`` routes its
    optimisation renders through torch.compile (``--compile``; :meth:`StyleGenerator.compile_synthesis`)."""
    from .generators.registry import load_network

    generator, sha = load_network(network, device=device)
    return generator.compile_synthesis(compile), sha


def perceptual_and_lpips(device: torch.device):
    """The W+ stage's VGG16 perceptual loss and the LPIPS metric (VGG, measured at 256 px as is customary for
    1024 px inversions; at full size LPIPS mostly measures pixel-level texture)."""
    from .metrics import LPIPS

    return perceptual_loss(device), LPIPS.from_file(input_size=256).to(device)


def perceptual_loss(device: torch.device):
    """The W+ stages' VGG16 perceptual loss (its VGG also computes the Gram style term)."""
    from .losses import PerceptualLoss

    return PerceptualLoss.from_file().to(device)
