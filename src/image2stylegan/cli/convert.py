"""``i2s convert``: turn a checkpoint a user owns into our safetensors format once, so later runs load it fast."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .common import cli


@cli.command(short_help="Convert a StyleGAN/StyleGAN2 checkpoint to our safetensors format (loads fast and safely).")
@click.argument("source", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
def convert(source: Path, out: Path) -> None:
    """Read SOURCE (stylegan2-ada-pytorch / stylegan3 .pkl, NVIDIA's TensorFlow .pkl of StyleGAN or StyleGAN2,
    rosinality .pt) without executing anything in it, check every tensor and setting, and write OUT: one
    .safetensors file with the generator kind, its config (JSON, in the header) and the mean latent. Pass OUT to
    any command's --network. Latents made with SOURCE and with OUT are interchangeable (OUT records SOURCE's
    sha256)."""
    from ..errors import InputError
    from ..generators.checkpoints import convert_checkpoint, load_checkpoint, sniff_format
    from ..io import ensure_outdir

    if out.exists() and out.is_dir():
        raise InputError(f"{out} is a folder; give the file to write, e.g. {out / (source.stem + '.safetensors')}")
    ensure_outdir(out.parent if str(out.parent) else Path("."))
    start = time.perf_counter()
    fmt = sniff_format(source)
    convert_checkpoint(source, out)
    generator = load_checkpoint(out)  # prove the written file loads before saying so
    click.echo(
        f"{source} ({fmt}) -> {out}: {type(generator).__name__} {generator.resolution} px, {generator.num_ws} W+ rows, "
        f"{len(generator.noise_inputs)} noise maps ({time.perf_counter() - start:.1f} s)"
    )
