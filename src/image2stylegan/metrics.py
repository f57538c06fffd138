"""Image quality metrics for reporting: PSNR, SSIM and LPIPS (VGG, v0.1).

All take images [B, 3, H, W] in [-1, 1] and return one value per image, [B]. They are for evaluation, not
optimisation objectives (LPIPS is differentiable all the same).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError, WeightsFormatError
from .losses import NORMALIZED_PERCEPTUAL_LAYERS, _check_images, _check_mask, unit_normalize
from .vgg import VGG16Features, load_vgg16_state

__all__ = ["LPIPS", "LPIPS_LAYERS", "psnr", "ssim"]


def psnr(x: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio in dB, ``10·log10(peak² / MSE)``.

    Computed as on the usual [0, 1] scale with peak 1, i.e. with data range 2 on the [-1, 1] input:
    ``10·log10(4 / MSE_[-1,1])``.

    Args:
        x, y: [B, C, H, W] and [B or 1, C, H, W] in [-1, 1].
        mask: [B or 1, 1, H, W] in [0, 1]; the MSE is then averaged over the masked pixels only (weighted by the
            mask), unlike the loss terms, so PSNR of a region is comparable to PSNR of a whole image.

    Returns:
        [B] dB; +inf for identical images.

    Raises:
        InputError: bad shapes, or a mask that is empty for some image.
    """
    _check_images(x, y)
    sq = (x - y).square()
    if mask is None:
        mse = sq.mean(dim=(1, 2, 3))
    else:
        m = _check_mask(mask, x).expand(sq.shape[0], 1, *sq.shape[-2:])
        area = m.sum(dim=(1, 2, 3))
        if bool((area <= 0).any()):
            raise InputError("psnr mask is empty for at least one image")
        mse = (sq * m).sum(dim=(1, 2, 3)) / (area * sq.shape[1])
    return 10.0 * torch.log10(4.0 / mse)


def _gaussian_window(size: int, sigma: float, like: Tensor) -> Tensor:
    t = torch.arange(size, device=like.device, dtype=like.dtype) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, *, window_size: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Wang et al. 2004) with a Gaussian window, per channel, averaged.

    Follows ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=...)``: the images are mapped to [0, 1]
    (K1 = 0.01, K2 = 0.03, L = 1), local statistics use an 11-tap Gaussian window (σ = 1.5), the SSIM map is taken
    only where the window fits inside the image, and it is averaged over positions and RGB channels (not computed on
    luminance).

    Args:
        x, y: [B, C, H, W] and [B or 1, C, H, W] in [-1, 1], H and W >= window_size.

    Returns:
        [B], 1 for identical images.
    """
    _check_images(x, y)
    if min(x.shape[-2:]) < window_size:
        raise InputError(f"ssim needs images of at least {window_size}x{window_size}, got {list(x.shape[-2:])}")
    x01, y01 = (x + 1) / 2, (y.expand_as(x) + 1) / 2
    c = x.shape[1]
    g = _gaussian_window(window_size, sigma, x)
    # Separable depthwise filtering, "valid" region only: equals skimage's reflect-padded filter followed by its
    # crop of (window_size - 1) / 2 pixels per side.
    kh, kw = g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), g.view(1, 1, 1, -1).repeat(c, 1, 1, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    mu_x, mu_y = blur(x01), blur(y01)
    var_x = blur(x01 * x01) - mu_x**2
    var_y = blur(y01 * y01) - mu_y**2
    cov = blur(x01 * y01) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3))


LPIPS_LAYERS: tuple[str, ...] = NORMALIZED_PERCEPTUAL_LAYERS
# LPIPS's ScalingLayer constants on [-1, 1] input (ImageNet mean/std re-expressed for that range, rounded).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class LPIPS(nn.Module):
    """Learned Perceptual Image Patch Similarity, VGG16 variant, v0.1 (Zhang et al. 2018).

    ``d(x, y) = Σ_l mean_{h,w} w_lᵀ (f̂_l(x) − f̂_l(y))²`` over relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, where
    f̂ is the channel-wise unit-normalised activation and w_l ≥ 0 the learned 1x1 "lin" weights.

    The input is used at its own resolution unless ``input_size`` is given (then resized like
    :class:`~image2stylegan.vgg.VGG16Features` does). Parameters are frozen; gradients reach the inputs.

    Args:
        input_size: optional square size to resize the inputs to (None: keep).
        random_init_seed: seed of the random VGG (tests; None: uninitialised, for loaders); the lin weights start
            at 1/C_l. Use :meth:`from_file` for the calibrated metric.
    """

    def __init__(self, *, input_size: int | None = None, random_init_seed: int | None = 0) -> None:
        super().__init__()
        self.vgg = VGG16Features(input_size, shift=LPIPS_SHIFT, scale=LPIPS_SCALE, random_init_seed=random_init_seed)
        # "meta" then fill: no draw from the global RNG for weights that are set right away.
        self.lin = nn.ModuleList(
            nn.Conv2d(ch, 1, kernel_size=1, bias=False, device="meta") for ch in _LPIPS_CHANNELS
        ).to_empty(device="cpu")
        with torch.no_grad():
            for conv, ch in zip(self.lin, _LPIPS_CHANNELS, strict=True):
                conv.weight.fill_(1.0 / ch)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor], **kwargs: Any) -> LPIPS:
        """Build from :func:`~image2stylegan.vgg.load_vgg16_state` output (``features.*`` and ``lin.*`` keys)."""
        for j, ch in enumerate(_LPIPS_CHANNELS):
            key = f"lin.{j}.weight"
            if key not in state or tuple(state[key].shape) != (1, ch, 1, 1):
                raise WeightsFormatError(f"LPIPS state lacks {key} of shape [1, {ch}, 1, 1]")
            if bool((state[key] < 0).any()):
                raise WeightsFormatError(f"LPIPS {key} has negative entries; v0.1 lin weights are non-negative")
        net = cls(**{"random_init_seed": None, **kwargs})  # every parameter is about to be overwritten
        net.vgg.load_features(state)
        with torch.no_grad():
            for j, conv in enumerate(net.lin):
                conv.weight.copy_(state[f"lin.{j}.weight"])
        return net

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> LPIPS:
        """Load from ``vgg16.ckpt`` (``path`` None: looked up and verified with ``find_file``)."""
        if path is None:
            from .weights import find_file

            path = find_file("vgg16-lpips", "vgg16.ckpt")
        return cls.from_state_dict(load_vgg16_state(path), **kwargs)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS distance of x [B, 3, H, W] and y [B or 1, 3, H, W], both in [-1, 1] -> [B] (0 iff features match)."""
        _check_images(x, y)
        # Two passes rather than one concatenated batch: identical inputs then give bit-identical features and an
        # exact zero.
        fx, fy = self.vgg(x, LPIPS_LAYERS), self.vgg(y, LPIPS_LAYERS)
        total = x.new_zeros(x.shape[0])
        for name, lin in zip(LPIPS_LAYERS, self.lin, strict=True):
            diff = (unit_normalize(fx[name]) - unit_normalize(fy[name])).square()
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total
