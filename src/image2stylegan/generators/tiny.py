"""A tiny seeded random generator with the bundled architecture, for fast tests and examples.

It is the real :class:`MobileStyleGAN` code with a few channels and random weights, so every test that uses it
exercises the same forward, noise handling, capture and edits as the pretrained model.

>>> G = tiny_generator(seed=0)
>>> G.synthesis(G.mean_ws(2), G.make_noise(2)).shape
torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import torch

from .mobilestylegan import MobileStyleGAN, MobileStyleGANConfig


def tiny_config(resolution: int = 32) -> MobileStyleGANConfig:
    """A config with 8 channels per block, W of 16 dims and 2 mapping layers; ``resolution`` >= 16 (power of 2)."""
    blocks = resolution.bit_length() - 4  # 4 px const, one block per doubling, one final IDWT doubling
    if blocks < 1 or 2 ** (blocks + 3) != resolution:
        raise ValueError(f"tiny generator resolution must be a power of two >= 16, got {resolution}")
    return MobileStyleGANConfig(z_dim=16, w_dim=16, mapping_layers=2, base_channels=16, channels=(8,) * blocks)


@torch.no_grad()
def tiny_generator(seed: int = 0, resolution: int = 32) -> MobileStyleGAN:
    """A frozen, eval-mode tiny generator with seeded random weights (identical for identical arguments)."""
    config = tiny_config(resolution)
    generator = MobileStyleGAN(config)
    rng = torch.Generator().manual_seed(seed)
    for name, tensor in generator.state_dict().items():
        tensor.copy_(_init(name, tensor, rng))
    generator.w_avg.copy_(generator.mapping(torch.randn(512, config.z_dim, generator=rng)).mean(0))
    return generator.requires_grad_(False).eval()


def random_embedding(generator, seed: int, spread: float = 0.7) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A seeded (ws [1, num_ws, w_dim], noise maps) pair: W+ rows scattered around the mean latent, fresh noise.

    Stands in for an embedded image in tests and examples, for any generator.
    """
    rng, like = torch.Generator().manual_seed(seed), generator.w_avg  # drawn on the CPU: same values on any device
    ws = generator.mean_ws(1) + spread * torch.randn(1, generator.num_ws, generator.w_dim, generator=rng).to(like)
    return ws, [torch.randn((1, *shape), generator=rng).to(like) for shape in generator.noise_shapes()]


def _init(name: str, tensor: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    randn = torch.randn(tensor.shape, generator=rng)
    leaf = name.rsplit(".", 1)[-1]
    if "affine" in name:
        # Styles near 1, as StyleGAN initialises the affine bias to 1, so activations neither vanish nor explode.
        return 1.0 + 0.1 * randn if leaf == "bias" else randn / tensor.shape[-1] ** 0.5
    if name.startswith("mapping_net"):
        return randn / tensor.shape[-1] ** 0.5 if leaf == "weight" else 0.1 * randn
    if leaf == "noise_strength":
        return torch.full_like(tensor, 0.2)
    if leaf == "weight_pw":
        # Modulation scales the input by ~1/sqrt(fan_in * 9) (the equalised-lr factor); undo it so the
        # activations keep unit scale through the stack of tiny layers.
        return randn * 1.5
    if name.startswith("torgb") and leaf == "weight":
        return 0.3 * randn
    if leaf in ("weight", "weight_dw", "const", "noise_const"):
        return randn
    return 0.1 * randn  # biases
