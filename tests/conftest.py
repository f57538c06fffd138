"""Shared fixtures: a tiny seeded generator for fast unit tests, and the real weights for the smaller real set.

Real-weight tests never download: they use the weights `make test` fetched, and fail (not skip) with the one-line
message naming the fetch command when they are missing.
"""

from __future__ import annotations

import pytest
import torch

from image2stylegan.generators.tiny import tiny_generator
from image2stylegan.losses import PerceptualLoss
from image2stylegan.vgg import VGG16Features


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_tests(request):
    """Tiny runs are dominated by threading overhead on a busy 2-core machine: one thread is several times faster.
    Real-weight tests keep every thread."""
    if request.node.get_closest_marker("real_weights"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny():
    return tiny_generator(seed=0, resolution=32)


@pytest.fixture
def tiny_perceptual():
    # Random VGG weights at the image's own size: the tests check the engine, not ImageNet features.
    return PerceptualLoss(VGG16Features(input_size=None, random_init_seed=0), layers=("relu1_1", "relu1_2", "relu2_2"))


@pytest.fixture
def tiny_target(tiny):
    """A face-like target the tiny generator can represent exactly: a random W+ near the mean, own noise."""
    g = torch.Generator().manual_seed(123)
    ws = tiny.mean_ws(1) + 0.7 * torch.randn(1, tiny.num_ws, tiny.w_dim, generator=g)
    noise = [torch.randn((1, *s), generator=g) for s in tiny.noise_shapes()]
    with torch.no_grad():
        return tiny.synthesis(ws, noise).clamp(-1, 1)


@pytest.fixture(scope="session")
def real_generator():
    from image2stylegan.generators.registry import load_generator

    return load_generator()


@pytest.fixture(scope="session")
def real_perceptual():
    return PerceptualLoss.from_file()


@pytest.fixture(scope="session")
def real_latent_pair(real_generator):
    """Writes two embeddings for the real generator without embedding anything: ``a.npz`` is the mean face,
    ``b.npz`` a random face at truncation 0.7 (both with seeded noise). Call as ``real_latent_pair(folder, seed)``."""
    from image2stylegan.latents import save_latent

    G = real_generator

    def write(folder, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            w = G.w_avg + 0.7 * (G.mapping(torch.randn(1, G.z_dim, generator=g)) - G.w_avg)
        save_latent(folder / "a.npz", G.mean_ws(1), G.make_noise(1, generator=g), generator_name=G.name)
        save_latent(folder / "b.npz", w[:, None].repeat(1, G.num_ws, 1), G.make_noise(1, generator=g),
                    generator_name=G.name)

    return write


@pytest.fixture
def tiny_app_cli(monkeypatch, tiny, tiny_perceptual):
    """A CliRunner whose commands run on the tiny generator with the random VGG (and an L1 stand-in for LPIPS)
    instead of the real weights: every command module that opens the losses is patched."""
    from click.testing import CliRunner

    import image2stylegan.cli.activations as activations_cli
    import image2stylegan.cli.batch as batch_cli
    import image2stylegan.cli.crossover as crossover_cli
    import image2stylegan.cli.reconstruct as reconstruct_cli
    import image2stylegan.cli.style_transfer as style_cli
    from image2stylegan.generators import registry

    monkeypatch.setattr(registry, "load_generator", lambda *a, **k: tiny)
    monkeypatch.setattr(registry, "weights_sha256", lambda *a, **k: "0" * 64)
    both = lambda device: (tiny_perceptual, lambda x, y: (x - y).abs().mean(dim=(1, 2, 3)))  # noqa: E731
    for module in (reconstruct_cli, crossover_cli, batch_cli):
        monkeypatch.setattr(module, "perceptual_and_lpips", both)
    for module in (style_cli, activations_cli):
        monkeypatch.setattr(module, "perceptual_loss", lambda device: tiny_perceptual)
    return CliRunner()
