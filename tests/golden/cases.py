"""The inputs of the golden-output cases, shared by ``make_golden.py`` (which writes the goldens) and
``tests/test_golden.py`` (which checks the library against them), so both see identical inputs by construction.

Only APIs outside the embedding engine and the applications are used here: the tiny seeded generator, the VGG16
perceptual loss with random weights, and torch. Everything an application takes is built from them: seeded W+
codes near the mean latent with seeded noise (the ``tiny_target`` fixture of ``tests/conftest.py``), their renders
as target photos, rectangular masks, and plain-data settings (dicts whose keys are the settings fields at the
commit the goldens were made from; the adapters in ``tests/test_golden.py`` turn them into the API's objects).

Each case is ``CASES[name] = {"app": <adapter name>, **arguments}``; the arguments are zero-argument builders
(so every run gets fresh tensors) or plain values. Budgets are tiny: 4 W+ steps and 3 noise steps per stage.
"""

from __future__ import annotations

import functools

import torch

from image2stylegan.generators.tiny import tiny_generator
from image2stylegan.losses import PerceptualLoss
from image2stylegan.vgg import VGG16Features

RESOLUTION = 32
W_STEPS = 4
NOISE_STEPS = 3


def generator():
    """The tiny seeded 32 px generator of the unit tests (8 W+ rows of 16 dims, 5 noise inputs)."""
    return tiny_generator(seed=0, resolution=RESOLUTION)


def perceptual():
    """The tests' tiny perceptual loss: a seeded random VGG16 at the image's own size, three shallow layers."""
    return PerceptualLoss(VGG16Features(input_size=None, random_init_seed=0), layers=("relu1_1", "relu1_2", "relu2_2"))


# -- seeded inputs -----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _inputs_generator():
    """One generator for building inputs (read-only use: mean latent, shapes, renders)."""
    return generator()


def embedding(seed: int, spread: float = 0.7, space: str = "paper") -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A seeded (ws [1, 8, 16], noise maps) pair: W+ rows scattered around the mean latent, fresh N(0, 1) noise
    (per-channel maps with ``space="extended"``). Drawn on the CPU from one ``torch.Generator``."""
    G = _inputs_generator()
    g = torch.Generator().manual_seed(seed)
    ws = G.mean_ws(1) + spread * torch.randn(1, G.num_ws, G.w_dim, generator=g)
    noise = [torch.randn((1, *s), generator=g) for s in G.noise_shapes(space)]
    return ws, noise


def approximate_embedding(seed: int, jitter: float = 0.1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """:func:`embedding` (``seed``) with its W+ code moved by seeded N(0, ``jitter``²) noise: a starting embedding
    close to, but not exactly, the one that renders ``photo(seed)`` (as a saved reconstruction would be; an exact
    one makes some PSNR metrics infinite)."""
    ws, noise = embedding(seed)
    g = torch.Generator().manual_seed(10_000 + seed)
    return ws + jitter * torch.randn(ws.shape, generator=g), noise


def photo(seed: int, spread: float = 0.7) -> torch.Tensor:
    """The render [1, 3, 32, 32] in [-1, 1] of :func:`embedding` (``seed``, ``spread``): a target the tiny
    generator can represent. ``photo(123)`` is the ``tiny_target`` fixture."""
    ws, noise = embedding(seed, spread)
    with torch.no_grad():
        return _inputs_generator().synthesis(ws, noise).clamp(-1, 1)


def box(top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """A binary mask [1, 1, 32, 32]: 1 inside rows top:bottom, columns left:right."""
    mask = torch.zeros(1, 1, RESOLUTION, RESOLUTION)
    mask[..., top:bottom, left:right] = 1.0
    return mask


def left_half() -> torch.Tensor:
    return box(0, RESOLUTION, 0, RESOLUTION // 2)


def scribbled(seed: int, region: tuple[int, int, int, int], colour=(1.0, -1.0, -1.0)) -> torch.Tensor:
    """``photo(seed)`` with a flat-coloured rectangle (top, bottom, left, right) painted on it."""
    mask = box(*region)
    return torch.where(mask > 0, torch.tensor(colour).view(1, 3, 1, 1), photo(seed))


TARGET_SEED = 123  # the tiny_target fixture
SCRIBBLE_BOX = (8, 20, 10, 24)
ATTRIBUTE_BOX = (8, 20, 4, 20)  # several cells of every layer grid (4, 8, 16 px), not all

# -- the cases ---------------------------------------------------------------------------------------------------
CASES: dict[str, dict] = {
    # apps/reconstruct.py: Alg. 2 (W+ stage, then noise stage)
    "reconstruct_paper": dict(
        app="reconstruct", target=lambda: photo(TARGET_SEED),
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, noise_space="paper"),
    ),
    "reconstruct_extended": dict(
        app="reconstruct", target=lambda: photo(TARGET_SEED),
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, noise_space="extended"),
    ),
    "reconstruct_uniform": dict(  # U[-1, 1] init, another seed, one learning rate for every noise map
        app="reconstruct", target=lambda: photo(TARGET_SEED),
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, noise_space="paper", init="uniform", seed=5,
                      w_lr=0.05, noise_lr=0.5, noise_lr_scaling="paper"),
    ),
    # apps/demo.py: one W+ stage, then a noise stage in each noise space from the same (w, n)
    "demo_both_noise_spaces": dict(
        app="demo", target=lambda: photo(TARGET_SEED), w_steps=W_STEPS, noise_steps=NOISE_STEPS, seed=0,
    ),
    # apps/crossover.py: Alg. 3, left half of A over B
    "crossover_mean_start": dict(
        app="crossover", image_a=lambda: photo(TARGET_SEED), image_b=lambda: photo(7), mask=left_half,
        start=None, settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS),
    ),
    "crossover_given_ws": dict(  # w* = A's own code (the paper's choice), extended noise space
        app="crossover", image_a=lambda: photo(TARGET_SEED), image_b=lambda: photo(7), mask=left_half,
        start=lambda: embedding(TARGET_SEED)[0],
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, feather=0.05, noise_space="extended"),
    ),
    # apps/inpaint.py: Alg. 4 with the intact image as reference (rows up to 8 px + the last two)
    "inpaint_reference": dict(
        app="inpaint", image=lambda: photo(TARGET_SEED), hole=lambda: box(10, 22, 8, 20),
        reference=lambda: photo(TARGET_SEED),
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, max_resolution=8),
    ),
    # apps/style_transfer.py: Alg. 6 (λ_s large: the random VGG's Gram values are ~1e-9)
    "style_transfer_embed_first": dict(
        app="style_transfer", content=lambda: photo(1), style=lambda: photo(2, spread=1.5),
        mask=lambda: box(8, 24, 8, 24), start=None,
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, embed_steps=W_STEPS, style_weight=1e6),
    ),
    "style_transfer_given_embedding": dict(
        app="style_transfer", content=lambda: photo(1), style=lambda: photo(2, spread=1.5),
        mask=lambda: box(8, 24, 8, 24), start=lambda: approximate_embedding(1),
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, embed_steps=W_STEPS, style_weight=1e6),
    ),
    # apps/scribble.py: Alg. 5 (coarse rows = layers up to 8 px on the 32 px generator: rows 0-3)
    "scribble_embed_first": dict(  # mask derived from the scribble
        app="scribble", photo=lambda: photo(3), scribbled=lambda: scribbled(3, SCRIBBLE_BOX), mask=None, start=None,
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, embed_w_steps=W_STEPS, embed_noise_steps=NOISE_STEPS,
                      max_resolution=8),
    ),
    "scribble_given_embedding": dict(  # explicit mask; per-channel starting noise switches to the extended space
        app="scribble", photo=lambda: photo(3), scribbled=lambda: scribbled(3, SCRIBBLE_BOX),
        mask=lambda: box(*SCRIBBLE_BOX), start=lambda: embedding(3, space="extended"),
        settings=dict(w_steps=W_STEPS, noise_steps=NOISE_STEPS, embed_w_steps=W_STEPS, embed_noise_steps=NOISE_STEPS,
                      max_resolution=8),
    ),
    # apps/activations.py: Eq. 5 (I_att) between two embeddings
    "attribute_spatial": dict(
        app="attribute", a=lambda: embedding(1), b=lambda: embedding(2), mask=lambda: box(*ATTRIBUTE_BOX),
        settings=dict(layer="fourth-conv", op="spatial"),
    ),
    "attribute_channel_style_b": dict(
        app="attribute", a=lambda: embedding(1), b=lambda: embedding(2), mask=None,
        settings=dict(layer="b8.conv1", op="channel", channels="0-3,6", style_from="b"),
    ),
    "attribute_average_masked": dict(
        app="attribute", a=lambda: embedding(1), b=lambda: embedding(2), mask=lambda: box(*ATTRIBUTE_BOX),
        settings=dict(layer="fourth-row", op="average", alpha=0.3),
    ),
    # Both photos embedded first (Alg. 2 at the app's budget), as the CLI does. Not photo(1): its 3-step noise stage
    # at full rate is chaotic (the last bit of rounding moves its maps by 0.1), which no golden can pin down.
    "attribute_from_photos": dict(
        app="attribute_photos", photo_a=lambda: photo(4), photo_b=lambda: photo(2), mask=lambda: box(*ATTRIBUTE_BOX),
        settings=dict(layer="b16.conv1", op="spatial", w_steps=W_STEPS, noise_steps=NOISE_STEPS),
    ),
    "activation_edit_channel_masked": dict(
        app="activation_edit", a=lambda: embedding(1), b=lambda: embedding(2), mask=lambda: box(*ATTRIBUTE_BOX),
        layer="b16.conv2", op=dict(op="channel", channels="2-5"),
    ),
    # apps/latent_ops.py: W+ arithmetic, optionally with a local Eq. 5 edit in the same render
    "latent_morph": dict(
        app="latent", a=lambda: embedding(1), b=lambda: embedding(2), c=None, mask=None, source=None,
        settings=dict(op="morph"),
    ),
    "latent_morph_follow": dict(
        app="latent", a=lambda: embedding(1), b=lambda: embedding(2), c=None, mask=None, source=None,
        settings=dict(op="morph", amount=0.3, noise="follow"),
    ),
    "latent_mix_coarse_follow": dict(
        app="latent", a=lambda: embedding(1), b=lambda: embedding(2), c=None, mask=None, source=None,
        settings=dict(op="mix", rows="coarse", noise="follow"),
    ),
    "latent_mix_rows_noise_b": dict(
        app="latent", a=lambda: embedding(1), b=lambda: embedding(2), c=None, mask=None, source=None,
        settings=dict(op="mix", rows="2,5-6", noise="b"),
    ),
    "latent_expression": dict(
        app="latent", a=lambda: embedding(1), b=lambda: embedding(2), c=lambda: embedding(3), mask=None, source=None,
        settings=dict(op="expression", amount=0.8),
    ),
    "latent_morph_local_spatial": dict(  # morph, then C's features pasted inside the box at b16.conv1
        app="latent", a=lambda: embedding(1), b=lambda: embedding(2), c=None, mask=lambda: box(*ATTRIBUTE_BOX),
        source=lambda: embedding(3), settings=dict(op="morph", amount=0.3, layer="b16.conv1", activation_op="spatial"),
    ),
    "latent_mix_local_average": dict(  # mix + an unmasked average with B's activation (the default source)
        app="latent", a=lambda: embedding(1), b=lambda: embedding(2), c=None, mask=None, source=None,
        settings=dict(op="mix", rows="middle", layer="b8.conv2", activation_op="average", alpha=0.25),
    ),
}


def build(case: str) -> dict:
    """The case's arguments with every builder called: fresh tensors (and plain values) for one run."""
    return {k: (v() if callable(v) else v) for k, v in CASES[case].items()}
