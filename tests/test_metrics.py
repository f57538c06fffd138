"""PSNR, SSIM (against scikit-image) and LPIPS mechanics (random VGG weights; no downloads)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from skimage.metrics import structural_similarity

from image2stylegan.errors import InputError, WeightsFormatError
from image2stylegan.metrics import LPIPS, psnr, ssim
from image2stylegan.vgg import VGG16Features


def _astronaut(size: int = 64) -> torch.Tensor:
    """skimage's astronaut as [1, 3, size, size] in [-1, 1]."""
    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    return F.interpolate(img, size=(size, size), mode="area")


def test_psnr_of_a_known_mse():
    x = torch.zeros(2, 3, 8, 8)
    y = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.2)])
    # Offsets of 0.1 / 0.2 on [-1, 1] are 0.05 / 0.1 on [0, 1]: PSNR = -10·log10(MSE_[0,1]).
    expected = torch.tensor([-10 * math.log10(0.05**2), -10 * math.log10(0.1**2)])
    torch.testing.assert_close(psnr(x, y), expected)
    assert torch.isinf(psnr(x, x)).all()


def test_psnr_with_a_mask_averages_over_the_masked_pixels_only():
    x = torch.zeros(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1
    y = torch.where(mask.bool(), 0.2, 0.8).expand(1, 3, 8, 8)
    torch.testing.assert_close(psnr(x, y, mask), torch.tensor([-10 * math.log10(0.1**2)]))
    assert torch.isinf(psnr(x, x * mask + y * (1 - mask), mask)).all()  # errors only outside the mask
    with pytest.raises(InputError, match="empty"):
        psnr(x, y, torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("kind", ["noise", "blur"])
def test_ssim_matches_scikit_image(kind):
    x = _astronaut()
    if kind == "noise":
        y = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    else:
        y = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    as_np = lambda t: ((t[0] + 1) / 2).permute(1, 2, 0).double().numpy()
    reference = structural_similarity(
        as_np(x),
        as_np(y),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=2,
    )
    assert abs(ssim(x, y).item() - reference) < 1e-3
    assert reference < 0.95  # a pair that actually differs


def test_ssim_identity_and_batch():
    x = torch.cat([_astronaut(), _astronaut().flip(-1)])
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    assert ssim(x, x.flip(0)).shape == (2,)
    with pytest.raises(InputError):
        ssim(x[..., :8, :8], x[..., :8, :8])


@pytest.fixture(scope="module")
def lpips() -> LPIPS:
    return LPIPS(random_init_seed=0)


def test_lpips_zero_for_identical_positive_otherwise(lpips):
    x = _astronaut(32).expand(3, -1, -1, -1)
    y = torch.cat([_astronaut(32), _astronaut(32).flip(-1), _astronaut(32) * 0.5])
    d = lpips(x, y)
    assert d.shape == (3,)
    # Exactly 0: LPIPS runs x and y in two passes of the same shape, so image 0 of each is the same computation.
    assert d[0] == 0 and torch.all(d[1:] > 0)


def test_lpips_gradient_is_finite_even_on_flat_images(lpips):
    x = torch.full((1, 3, 32, 32), -1.0, requires_grad=True)  # black: deep activations can be all zero
    lpips(x, _astronaut(32)).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lpips.parameters())


def test_lpips_loads_lin_weights_and_rejects_negative_ones():
    vgg = VGG16Features(random_init_seed=1)
    state = {f"features.{k}": v for k, v in vgg.features.state_dict().items()}
    lins = {f"lin.{j}.weight": torch.rand(1, c, 1, 1) for j, c in enumerate((64, 128, 256, 512, 512))}
    net = LPIPS.from_state_dict({**state, **lins})
    assert torch.equal(net.lin[3].weight, lins["lin.3.weight"])
    assert torch.equal(net.vgg.features[0].weight, vgg.features[0].weight)
    bad = dict(lins, **{"lin.0.weight": -torch.ones(1, 64, 1, 1)})
    with pytest.raises(WeightsFormatError, match="negative"):
        LPIPS.from_state_dict({**state, **bad})
    with pytest.raises(WeightsFormatError, match=r"lin\.4"):
        LPIPS.from_state_dict({**state, **{k: v for k, v in lins.items() if k != "lin.4.weight"}})
    assert np.isclose(LPIPS().lin[0].weight.sum().item(), 1.0)
