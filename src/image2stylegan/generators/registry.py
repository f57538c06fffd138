"""Named pretrained generators and how to load them.

The bundled generator's weights arrive as OpenVINO IR (see :mod:`image2stylegan.weights`). The first load converts
them (strictly, see :mod:`.convert_ir`), computes the mean latent and caches the result beside the IR as
safetensors + a JSON config, so later loads take a fraction of a second and never parse XML again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from .. import weights
from ..errors import InputError
from ..io import atomic_write_bytes, atomic_write_json
from ..ir import read_ir
from .base import StyleGenerator
from .convert_ir import convert_mobilestylegan_ir
from .mobilestylegan import MobileStyleGAN, MobileStyleGANConfig

CONVERTED_FORMAT = 1  # bump when the converted layout changes, so stale caches are rebuilt
W_AVG_SAMPLES = 10_000  # the digest's recommendation (>= 10k z ~ N(0, I)), as NVIDIA's projector does
W_AVG_SEED = 0


@dataclass(frozen=True)
class GeneratorEntry:
    name: str
    artifact: str  # weights artifact holding the files
    description: str
    source_file: str  # the file whose sha256 identifies these weights (saved in latent files)


BUNDLED = GeneratorEntry(
    name="mobilestylegan-ffhq",
    artifact="mobilestylegan-ffhq",
    description="MobileStyleGAN FFHQ 1024 px (distilled from NVIDIA's StyleGAN2 config-f FFHQ); 23 W+ rows, 15 noise maps",
    source_file="SynthesisNetwork.bin",
)
GENERATORS: dict[str, GeneratorEntry] = {BUNDLED.name: BUNDLED}
DEFAULT_GENERATOR = BUNDLED.name


def load_network(
    network: str | Path | None = None, *, device: str | torch.device = "cpu"
) -> tuple[StyleGenerator, str]:
    """The generator behind a ``--network`` value and the sha256 that identifies its weights.

    Args:
        network: None (the bundled default), a registered name (:data:`GENERATORS`), or the path of a checkpoint
            a user owns: any format :func:`.checkpoints.load_checkpoint` reads (StyleGAN2/ADA pickles, NVIDIA's
            TensorFlow pickles, rosinality ``.pt``, or our converted format). Nothing in the file is executed.
        device: where to put it.

    Returns:
        (frozen generator in eval mode, sha256). For a checkpoint the sha256 is the source file's, also for our
        converted format (it records its source's), so latents made from a .pkl and from its conversion match.

    Raises:
        InputError: ``network`` is neither a registered name nor an existing file.
        WeightsFormatError: the file is not a checkpoint we can read (the message says why).
    """
    if network is None or str(network) in GENERATORS:
        name = DEFAULT_GENERATOR if network is None else str(network)
        return load_generator(name, device=device), weights_sha256(name)
    path = Path(network)
    if not path.exists():
        raise InputError(
            f"--network {network}: no such file, and not a registered generator ({', '.join(sorted(GENERATORS))})"
        )
    from .checkpoints import checkpoint_sha256, load_checkpoint  # imported here: the bundled generator never needs it

    return load_checkpoint(path, device=device), checkpoint_sha256(path)


def weights_sha256(name: str = DEFAULT_GENERATOR) -> str:
    """The sha256 that identifies a registered generator's weights (recorded in ``latent.npz``)."""
    entry = _entry(name)
    return weights.ARTIFACTS[entry.artifact].member(entry.source_file).sha256


def load_generator(
    name: str = DEFAULT_GENERATOR, *, device: str | torch.device = "cpu", weights_dir: str | Path | None = None
) -> StyleGenerator:
    """Load a registered generator, frozen (``requires_grad=False``) and in eval mode, on ``device``.

    Args:
        name: registry name (see :data:`GENERATORS`).
        device: where to put it.
        weights_dir: folder holding the IR files; default: the lookup order of :func:`weights.find_file`.

    Raises:
        WeightsNotFoundError: the weights are not fetched (the message says which command fetches them).
    """
    entry = _entry(name)
    files = {
        f: weights.find_file(entry.artifact, f, explicit=weights_dir)
        for f in ("MappingNetwork.xml", "MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin")
    }
    folder = files["SynthesisNetwork.bin"].parent
    source_sha = weights_sha256(name)
    cached = _load_converted(folder, source_sha)
    if cached is None:
        state, config = convert_mobilestylegan_ir(read_ir(files["MappingNetwork.xml"]), read_ir(files["SynthesisNetwork.xml"]))
        generator = MobileStyleGAN(config)
        generator.load_state_dict({**state, "w_avg": torch.zeros(config.w_dim)}, strict=True)
        generator.w_avg.copy_(compute_w_avg(generator))
        _save_converted(folder, generator, source_sha)
    else:
        generator = cached
    generator.requires_grad_(False).eval()
    return generator.to(device)


@torch.no_grad()
def compute_w_avg(generator: StyleGenerator, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> torch.Tensor:
    """Mean of the mapping network over ``samples`` seeded draws of z ~ N(0, I): [w_dim]."""
    rng = torch.Generator().manual_seed(seed)
    total = torch.zeros(generator.w_dim, dtype=torch.float64)
    for start in range(0, samples, 1000):
        z = torch.randn(min(1000, samples - start), generator.z_dim, generator=rng)
        # Accumulate in float64 on the CPU (MPS has no float64).
        total += generator.mapping(z.to(generator.w_avg.device)).cpu().double().sum(0)
    return (total / samples).float()


def _entry(name: str) -> GeneratorEntry:
    if name not in GENERATORS:
        raise KeyError(f"unknown generator {name!r}; registered: {sorted(GENERATORS)}")
    return GENERATORS[name]


def _converted_paths(folder: Path) -> tuple[Path, Path]:
    return folder / f"converted-v{CONVERTED_FORMAT}.safetensors", folder / f"converted-v{CONVERTED_FORMAT}.json"


def _load_converted(folder: Path, source_sha: str) -> MobileStyleGAN | None:
    tensors_path, meta_path = _converted_paths(folder)
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("source_sha256") != source_sha:
            return None
        generator = MobileStyleGAN(MobileStyleGANConfig.from_dict(meta["config"]))
        generator.load_state_dict(load_file(tensors_path), strict=True)
        return generator
    except (OSError, ValueError, KeyError, RuntimeError):
        return None  # absent or stale cache: convert again


def _save_converted(folder: Path, generator: MobileStyleGAN, source_sha: str) -> None:
    tensors_path, meta_path = _converted_paths(folder)
    meta = {"format": CONVERTED_FORMAT, "source_sha256": source_sha, "config": generator.config.to_dict()}
    state = {k: v.contiguous() for k, v in generator.state_dict().items()}
    try:
        atomic_write_bytes(tensors_path, save(state))
        atomic_write_json(meta_path, meta)
    except OSError:
        pass  # a read-only weights folder only costs a re-conversion next time
