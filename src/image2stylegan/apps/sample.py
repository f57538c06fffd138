"""Random faces from the generator with their exact latents: inputs for editing that need no embedding.

A sample is fully determined by (generator, seed, truncation ψ): z ~ N(0, I) and the noise maps are drawn from one
seeded CPU generator, so a seed gives the same face on every device. Its ``latent.npz`` can be passed to any
``--from`` option, which skips the embedding step entirely (the W+ code and noise are known exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..generators.base import StyleGenerator
from .ranges import SEED, TRUNCATION, check_value

DEFAULT_TRUNCATION = 0.7
"""ψ of the truncation trick, w = w_avg + ψ (w − w_avg): NVIDIA's usual value for curated FFHQ samples (StyleGAN
Fig. 8; StyleGAN2's examples). 1.0 samples the full distribution (more variety, more artefacts)."""

SEED_DOC = "one face per seed"
TRUNCATION_DOC = "psi of the truncation trick: 1 = none, 0 = the mean face"
MAX_SEEDS = 10_000
"""The most faces one ``--seeds`` list may name (each writes a PNG and a latent.npz)."""


def check_truncation(truncation: float) -> None:
    """Refuse a truncation outside [0, 1] (ψ > 1 extrapolates away from the mean face), NaN, or a non-number."""
    check_value(truncation, TRUNCATION, "--truncation", TRUNCATION_DOC)


@dataclass(frozen=True)
class Sample:
    seed: int
    truncation: float
    ws: torch.Tensor  # [1, num_ws, w_dim]: the same w in every row (a W code, not a W+ one)
    noise: list[torch.Tensor]  # unit-scale maps [1, 1, H, W] in synthesis order (the paper's noise space)


def sample(generator: StyleGenerator, seed: int, truncation: float = DEFAULT_TRUNCATION) -> Sample:
    """Draw z and the noise maps from ``seed`` and map z to W+ with truncation toward the mean latent.

    Raises:
        InputError: a seed outside 0 .. 2**32 - 1 or a truncation outside [0, 1] (ψ > 1 extrapolates away from the
            mean face); docs/algorithm.md#settings-and-their-valid-ranges.
    """
    check_value(seed, SEED, "--seeds", SEED_DOC)
    check_truncation(truncation)
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(1, generator.z_dim, generator=rng)
    noise = [torch.randn((1, *shape), generator=rng) for shape in generator.noise_shapes("paper")]
    device, dtype = generator.w_avg.device, generator.w_avg.dtype
    with torch.no_grad():
        w = generator.mapping(z.to(device, dtype))
        w = generator.w_avg + truncation * (w - generator.w_avg)
    ws = w[:, None, :].expand(1, generator.num_ws, generator.w_dim).clone()
    return Sample(seed, truncation, ws, [n.to(device, dtype) for n in noise])


def parse_seeds(spec: str) -> list[int]:
    """``"1,5,10-12"`` -> [1, 5, 10, 11, 12] (order kept, duplicates dropped).

    Raises:
        InputError: malformed entries, a seed outside 0 .. 2**32 - 1, more than :data:`MAX_SEEDS` seeds, or an
            empty list.
    """
    seeds: dict[int, None] = {}  # ordered, and a fast membership test
    for part in (p.strip() for p in spec.split(",")):
        try:
            if "-" in part.lstrip("-"):
                low, high = (int(x) for x in part.split("-", 1))
                if high < low:
                    raise ValueError
            else:
                low = high = int(part)
        except ValueError:
            raise InputError(f"cannot read seeds {spec!r}: use numbers and ranges like 1,5,10-12") from None
        check_value(low, SEED, "--seeds", SEED_DOC)
        check_value(high, SEED, "--seeds", SEED_DOC)
        if high - low >= MAX_SEEDS:
            raise InputError(f"--seeds {part} names {high - low + 1} faces; at most {MAX_SEEDS} per run")
        seeds.update(dict.fromkeys(range(low, high + 1)))
        if len(seeds) > MAX_SEEDS:
            raise InputError(f"--seeds names more than {MAX_SEEDS} faces; at most {MAX_SEEDS} per run")
    if not seeds:
        raise InputError("no seeds given")
    return list(seeds)
