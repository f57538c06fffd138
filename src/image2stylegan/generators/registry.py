"""Named pretrained generators and how to load them.

The bundled generator's weights arrive as OpenVINO IR (see :mod:`image2stylegan.weights`). The first load converts
them (strictly, see :mod:`.convert_ir`), computes the mean latent and caches the result beside the IR in the same
converted format as ``i2s convert`` writes (:func:`.checkpoints.save_converted`, recording the IR's sha256), so
later loads take a fraction of a second and never parse XML again.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import weights
from ..errors import InputError, WeightsError
from ..ir import read_ir
from .base import StyleGenerator, compute_w_avg
from .checkpoints import checkpoint_sha256, load_checkpoint, save_converted
from .convert_ir import convert_mobilestylegan_ir
from .mobilestylegan import MobileStyleGAN

CACHE_FILE = "converted.safetensors"  # beside the IR files; its format version is checked by load_checkpoint


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
    return load_checkpoint(path, device=device), checkpoint_sha256(path)


def weights_sha256(name: str = DEFAULT_GENERATOR) -> str:
    """The sha256 that identifies a registered generator's weights (recorded in ``latent.npz``)."""
    entry = _entry(name)
    return weights.ARTIFACTS[entry.artifact].member(entry.source_file).sha256


def load_generator(name: str = DEFAULT_GENERATOR, *, device: str | torch.device = "cpu") -> StyleGenerator:
    """Load a registered generator, frozen (``requires_grad=False``) and in eval mode, on ``device``.

    Args:
        name: registry name (see :data:`GENERATORS`).
        device: where to put it.

    Raises:
        WeightsNotFoundError: the weights are not fetched (the message says which command fetches them).
    """
    entry = _entry(name)
    files = {
        f: weights.find_file(entry.artifact, f)  # $I2S_GENERATOR_DIR, else the cache
        for f in ("MappingNetwork.xml", "MappingNetwork.bin", "SynthesisNetwork.xml", "SynthesisNetwork.bin")
    }
    cache = files["SynthesisNetwork.bin"].parent / CACHE_FILE
    source_sha = weights_sha256(name)
    generator = _load_cached(cache, source_sha)
    if generator is None:
        mapping, synthesis = read_ir(files["MappingNetwork.xml"]), read_ir(files["SynthesisNetwork.xml"])
        state, config = convert_mobilestylegan_ir(mapping, synthesis)
        generator = MobileStyleGAN(config)
        generator.load_state_dict({**state, "w_avg": torch.zeros(config.w_dim)}, strict=True)
        generator.w_avg.copy_(compute_w_avg(generator))
        with suppress(OSError):  # a read-only weights folder only costs a re-conversion next time
            save_converted(generator, cache, source_format="openvino-ir", source_sha256=source_sha)
    generator.requires_grad_(False).eval()
    return generator.to(device)


def _entry(name: str) -> GeneratorEntry:
    if name not in GENERATORS:
        raise KeyError(f"unknown generator {name!r}; registered: {sorted(GENERATORS)}")
    return GENERATORS[name]


def _load_cached(path: Path, source_sha: str) -> MobileStyleGAN | None:
    """The cached conversion, or None when it is absent, stale (other IR, older format) or unreadable."""
    try:
        if checkpoint_sha256(path) != source_sha:
            return None
        generator = load_checkpoint(path)
    except (WeightsError, OSError):
        return None
    return generator if isinstance(generator, MobileStyleGAN) else None
