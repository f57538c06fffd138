"""What every ``i2s`` command shares: the click group, device resolution, notices, the VGG-based losses."""

from __future__ import annotations

import click
import torch

from .. import __version__
from ..errors import InputError

NOISE_SPACE_HELP = (
    "'paper': one single-channel map per noise input, as the paper. 'extended' (beyond the paper): per-channel "
    "maps at the two finest blocks, enough freedom for a 1024 px image."
)


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


def notice(message: str) -> None:
    click.echo(f"note: {message}", err=True)


def perceptual_and_lpips(device: torch.device):
    """The W+ stage's VGG16 perceptual loss and the LPIPS metric (VGG, measured at 256 px as is customary for
    1024 px inversions; at full size LPIPS mostly measures pixel-level texture)."""
    from ..losses import PerceptualLoss
    from ..metrics import LPIPS

    return PerceptualLoss.from_file().to(device), LPIPS.from_file(input_size=256).to(device)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="i2s")
def cli() -> None:
    """Image2StyleGAN++: embed images into a pretrained style-based generator and edit them."""




NETWORK_HELP = (
    "Generator to run on: a checkpoint you own (stylegan2-ada-pytorch/stylegan3 .pkl, NVIDIA's TensorFlow .pkl of "
    "StyleGAN or StyleGAN2, rosinality .pt, or a folder/file written by `i2s convert`), or a registered name. "
    "Nothing in a checkpoint is executed. Default: the bundled mobilestylegan-ffhq."
)


def network_option(func):
    """``--network PATH|NAME`` for every command that runs a generator."""
    return click.option("--network", default=None, metavar="PATH|NAME", help=NETWORK_HELP)(func)


def open_generator(network: str | None, device: torch.device):
    """(generator, sha256 of its weights) for ``--network``: the bundled generator when None."""
    from ..generators.registry import load_network

    return load_network(network, device=device)
