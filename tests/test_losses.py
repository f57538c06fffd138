"""The terms of Eq. 1 and their combination (random VGG weights; no downloads)."""

from __future__ import annotations

import pytest
import torch

from image2stylegan.errors import InputError
from image2stylegan.losses import (
    NORMALIZED_PERCEPTUAL_LAYERS,
    PerceptualLoss,
    gram_matrix,
    masked_mse,
    masked_perceptual,
    masked_style_loss,
    normalized_perceptual,
    resize_mask,
)
from image2stylegan.metrics import LPIPS
from image2stylegan.vgg import VGG16Features


@pytest.fixture(scope="module")
def perceptual() -> PerceptualLoss:
    return PerceptualLoss(VGG16Features(input_size=32, random_init_seed=0))


def _images(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _left_half(size: int = 32) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., : size // 2] = 1
    return mask


# -- pixel term -------------------------------------------------------------------------------------------------------


def test_masked_mse_values_normalise_by_the_full_image():
    synth, target = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert torch.equal(masked_mse(synth, synth), torch.zeros(2))
    torch.testing.assert_close(masked_mse(synth, target), torch.full((2,), 0.25))
    # Half the pixels masked in: half the loss (N is the whole image, not the mask area).
    torch.testing.assert_close(masked_mse(synth, target, _left_half(4)), torch.full((2,), 0.125))


def test_masked_mse_all_ones_mask_is_the_unmasked_loss_exactly():
    x, y = _images(seed=1), _images(seed=2)
    assert torch.equal(masked_mse(x, y, torch.ones(1, 1, 32, 32)), masked_mse(x, y))


def test_masked_mse_gives_exactly_zero_gradient_outside_the_mask():
    x, y = _images(seed=1).requires_grad_(), _images(seed=2)
    mask = (torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    masked_mse(x, y, mask).sum().backward()
    outside = (mask == 0).expand_as(x)
    assert torch.all(x.grad[outside] == 0)
    assert torch.all(x.grad[~outside] != 0)


def test_losses_are_per_image_and_batch_independent():
    x, y = _images(b=3, seed=1), _images(b=3, seed=2)
    batched = masked_mse(x, y, _left_half())
    assert batched.shape == (3,)
    single = torch.cat([masked_mse(x[i : i + 1], y[i : i + 1], _left_half()) for i in range(3)])
    torch.testing.assert_close(batched, single)
    # One shared target broadcasts over the batch.
    shared = torch.cat([masked_mse(x[i : i + 1], y[:1]) for i in range(3)])
    torch.testing.assert_close(masked_mse(x, y[:1]), shared)


def test_shape_errors_are_input_errors():
    x = _images()
    with pytest.raises(InputError):
        masked_mse(x, x, torch.ones(1, 3, 32, 32))  # mask must have one channel
    with pytest.raises(InputError):
        masked_mse(x, x, torch.ones(1, 1, 16, 16))  # pixel masks must match the image
    with pytest.raises(InputError):
        masked_mse(x, _images(size=16))


# -- feature terms ----------------------------------------------------------------------------------------------------


def test_resize_mask_keeps_geometry_and_range():
    small = resize_mask(_left_half(32), 8)
    assert small.shape == (1, 1, 8, 8)
    assert torch.equal(small[..., :4], torch.ones(1, 1, 8, 4)) and torch.equal(small[..., 4:], torch.zeros(1, 1, 8, 4))
    soft = resize_mask(torch.rand(2, 1, 30, 30), (7, 11))  # non-integer ratios
    assert soft.shape == (2, 1, 7, 11) and soft.min() >= 0 and soft.max() <= 1
    mask = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(resize_mask(mask, 16).mean(), mask.mean())  # area averaging preserves coverage
    big = resize_mask(_left_half(8), 32)
    assert big.shape == (1, 1, 32, 32) and big.min() >= 0 and big.max() <= 1


def test_masked_perceptual_resizes_the_mask_to_each_layer():
    g = torch.Generator().manual_seed(0)
    synth = {"a": torch.randn(1, 2, 8, 8, generator=g), "b": torch.randn(1, 4, 4, 4, generator=g)}
    target = {"a": torch.zeros(1, 2, 8, 8), "b": torch.zeros(1, 4, 4, 4)}
    loss = masked_perceptual(synth, target, _left_half(16), layer_weights={"b": 3.0})
    # Left half at every resolution; each layer divided by its own full C·H·W.
    expected = synth["a"][..., :4].square().sum() / (2 * 8 * 8) + 3 * synth["b"][..., :2].square().sum() / (4 * 4 * 4)
    torch.testing.assert_close(loss, expected.view(1))


def test_perceptual_loss_identity_ones_mask_and_precomputed_target(perceptual):
    x, y = _images(seed=1), _images(seed=2)
    loss = perceptual(x, y)
    assert loss.shape == (2,) and torch.all(loss > 0)
    # Precomputed target features stand in for the target image (the embedding loop's fast path).
    fx, fy = perceptual.precompute(x), perceptual.precompute(y)
    assert set(fy) == set(perceptual.layers) and not any(f.requires_grad for f in fy.values())
    torch.testing.assert_close(perceptual(x, fy), loss)
    # Reuse the features for the mask checks rather than re-running the VGG.
    assert torch.equal(masked_perceptual(fx, fx), torch.zeros(2))
    assert torch.equal(masked_perceptual(fx, fy, torch.ones(1, 1, 32, 32)), masked_perceptual(fx, fy))
    assert masked_perceptual(fx, fy, _left_half()).lt(loss).all()


def test_perceptual_loss_rejects_unknown_layers(perceptual):
    with pytest.raises(InputError):
        PerceptualLoss(perceptual.vgg, layers=["relu9_9"])
    with pytest.raises(InputError):
        PerceptualLoss(perceptual.vgg, layer_weights={"relu4_3": 1.0})


def test_gram_matrix_of_masked_features():
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])  # [1, 2, 2, 2]
    flat = f.reshape(1, 2, 4)
    torch.testing.assert_close(gram_matrix(f), flat @ flat.transpose(1, 2) / 8)
    mask = _left_half(4)  # resized to 2x2: left column
    masked = f * torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(gram_matrix(f, mask), gram_matrix(masked))
    # Whatever lies outside the mask does not matter...
    g = f.clone()
    g[..., 1] = 100.0
    torch.testing.assert_close(gram_matrix(g, mask), gram_matrix(f, mask))
    # ...and area normalisation gives the Gram of the region itself.
    torch.testing.assert_close(gram_matrix(f, mask, area_normalized=True), gram_matrix(f[..., :1]))


def test_style_loss_zero_for_identical_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    a = {"relu3_3": torch.rand(2, 8, 6, 6, generator=g)}
    b = {"relu3_3": torch.rand(2, 8, 6, 6, generator=g)}
    assert torch.equal(masked_style_loss(a, a), torch.zeros(2))
    loss = masked_style_loss(a, b)
    assert loss.shape == (2,) and torch.all(loss > 0)
    assert torch.equal(masked_style_loss(a, b, torch.ones(1, 1, 12, 12), torch.ones(1, 1, 12, 12)), loss)
    assert torch.all(masked_style_loss(a, b, mask_synth=_left_half(12)) != loss)
    with pytest.raises(InputError):
        masked_style_loss(a, {"relu2_2": b["relu3_3"]})


# -- normalised perceptual term ----------------------------------------------------------------------------------------


def test_normalized_perceptual_is_lpips_with_equal_channel_weights():
    """The documented identity: LPIPS whose learned weights are all 1/C_l (its untrained state) is this term on
    LPIPS's own VGG features."""
    lpips = LPIPS(input_size=32, random_init_seed=0)
    x, y = _images(seed=1), _images(seed=2)
    fx, fy = lpips.vgg(x, NORMALIZED_PERCEPTUAL_LAYERS), lpips.vgg(y, NORMALIZED_PERCEPTUAL_LAYERS)
    torch.testing.assert_close(normalized_perceptual(fx, fy), lpips(x, y), rtol=1e-5, atol=1e-7)


def test_normalized_perceptual_ignores_the_scale_of_each_position():
    """Scaling a feature vector at a position by a positive factor (brighter edges, a stronger activation) changes
    nothing: only the direction of each channel vector counts."""
    g = torch.Generator().manual_seed(4)
    fs = {"a": torch.randn(2, 8, 5, 5, generator=g), "b": torch.randn(2, 16, 3, 3, generator=g)}
    ft = {k: torch.randn(v.shape, generator=g) for k, v in fs.items()}
    scaled = {k: v * (0.1 + torch.rand(v.shape[0], 1, *v.shape[2:], generator=g) * 10) for k, v in fs.items()}
    torch.testing.assert_close(normalized_perceptual(scaled, ft), normalized_perceptual(fs, ft))
    assert torch.all(normalized_perceptual(fs, ft) > 0)
    # Bounded by 4 per layer (two unit vectors differ by at most 2), whatever the activations' magnitude.
    assert torch.all(normalized_perceptual({k: v * 1e6 for k, v in fs.items()}, ft) <= 8.0)


def test_normalized_perceptual_masks_each_layer_and_is_zero_on_identical_features():
    g = torch.Generator().manual_seed(5)
    fs = {"a": torch.randn(2, 8, 8, 8, generator=g).requires_grad_(), "b": torch.randn(2, 8, 4, 4, generator=g)}
    ft = {k: torch.randn(v.shape, generator=g) for k, v in fs.items()}
    assert torch.equal(normalized_perceptual(ft, ft), torch.zeros(2))
    ones = torch.ones(1, 1, 32, 32)
    assert torch.equal(normalized_perceptual(fs, ft, ones), normalized_perceptual(fs, ft))
    normalized_perceptual(fs, ft, _left_half()).sum().backward()
    grad = fs["a"].grad
    assert torch.all(grad[..., 4:] == 0) and torch.all(grad[..., :4].abs().sum(dim=1) > 0)
    with pytest.raises(InputError, match="lack layer"):
        normalized_perceptual(fs, {"a": ft["a"]})
