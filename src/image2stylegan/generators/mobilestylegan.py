"""MobileStyleGAN (Belousov 2021, arXiv 2104.04767) as a plain PyTorch module.

This is the bundled FFHQ-1024 generator: NVIDIA's StyleGAN2 mapping network and a distilled synthesis network in
which every StyleGAN2 block is replaced by

    up    : modulation (x * s) and an inverse Haar wavelet transform (IDWT) that doubles the resolution and divides
            the channels by 4 (the 4 sub-bands of each output channel are consecutive input channels);
    conv1 : modulated depthwise-separable 3x3 conv -> + bias + noise -> leaky ReLU(0.2);
    conv2 : the same;

and the image comes out of the last block as 12 wavelet channels (4 sub-bands x RGB) through one modulated 1x1
conv followed by an IDWT. There are no skip connections to RGB. Modulation here scales the input channels with no
demodulation (this is how the exported network computes; the distillation folded the rest into the weights).

W+ has 23 rows, one per style input, coarse to fine: ``conv1``, then ``up``, ``conv1``, ``conv2`` of each of the 7
blocks (8 px ... 512 px), then ``torgb``. Layer names (for ``capture=`` / ``edits=``) are ``conv1`` (4x4),
``b{res}.up``, ``b{res}.conv1``, ``b{res}.conv2`` and ``b512.torgb`` (the 12 wavelet channels before the final IDWT).

The module knows nothing about files: :mod:`image2stylegan.generators.convert_ir` turns the OpenVINO IR into a
state dict for it, and :mod:`image2stylegan.generators.registry` loads it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import ActivationTap, Edit, NoiseInput, StyleGenerator, SynthesisTrace


@dataclass(frozen=True)
class MobileStyleGANConfig:
    """Architecture hyper-parameters; saved as JSON beside converted weights."""

    z_dim: int = 512  # input latent Z dimensionality
    w_dim: int = 512  # intermediate latent W dimensionality
    mapping_layers: int = 8  # fully connected layers in the mapping network
    base_channels: int = 512  # channels of the learned 4x4 constant and the first conv
    channels: tuple[int, ...] = (512, 512, 512, 512, 256, 128, 64)  # conv channels of the blocks at 8, 16, ... px
    image_channels: int = 3
    lrelu_slope: float = 0.2

    @property
    def resolution(self) -> int:
        # Each block doubles 4 px; the final IDWT doubles once more.
        return 4 * 2 ** len(self.channels) * 2

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(8 * 2**i for i in range(len(self.channels)))

    @property
    def num_ws(self) -> int:
        return 1 + 3 * len(self.channels) + 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> MobileStyleGANConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown MobileStyleGAN config keys: {sorted(unknown)}")
        d = dict(d)
        if "channels" in d:
            d["channels"] = tuple(d["channels"])
        return cls(**d)


def inverse_haar(x: torch.Tensor) -> torch.Tensor:
    """Inverse one-level 2-D Haar transform.

    Args:
        x: [B, 4C, H, W]; channels ``[0, C)`` are the low-pass band LL and channels ``C + 3c + k`` (k = 0, 1, 2) the
           three high-pass bands of output channel c, the layout the exported network uses.

    Returns:
        [B, C, 2H, 2W]. Written as a 4x4 mix of the bands followed by ``pixel_shuffle``, which equals the exported
        separable transposed convolutions with filters g0 = [1, 1]/sqrt(2), g1 = [1, -1]/sqrt(2).
    """
    b, c4, h, w = x.shape
    c = c4 // 4
    ll = x[:, :c]
    high = x[:, c:].reshape(b, c, 3, h, w)
    h0, h1, h2 = high.unbind(2)
    # out[2i+k, 2j+l] = 1/2 * (ll + (-1)^k h0 + (-1)^l h1 + (-1)^(k+l) h2)
    a, s = ll + h2, h0 + h1
    d, e = ll - h2, h0 - h1
    quads = torch.stack((a + s, d + e, d - e, a - s), dim=2).mul_(0.5)  # [B, C, 4, H, W] in (k, l) order
    return F.pixel_shuffle(quads.reshape(b, c4, h, w), 2)


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then ``layers`` x (linear, leaky ReLU(0.2) * sqrt(2)). Equalised-lr scales are folded
    into the stored weights."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, slope: float):
        super().__init__()
        dims = [z_dim] + [w_dim] * layers
        self.fc = nn.ModuleList(nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:]))
        self.slope = slope

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for fc in self.fc:
            x = F.leaky_relu(fc(x), self.slope) * math.sqrt(2.0)
        return x


class StyleAffine(nn.Module):
    """w [B, w_dim] -> per-channel style s [B, C] = (A w + b) * scale; ``scale`` is the equalised-lr factor
    1/sqrt(fan_in) of the conv that the style modulates (1 for the IDWT upsampler)."""

    def __init__(self, w_dim: int, channels: int, scale: float):
        super().__init__()
        self.affine = nn.Linear(w_dim, channels)
        self.scale = scale

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)
        return s * self.scale if self.scale != 1.0 else s


class NoisyActivation(nn.Module):
    """The tail shared by every conv: + bias + noise_strength * noise -> leaky ReLU.

    The owning conv adds ``bias`` inside its convolution call (one pass over the activation fewer than a separate
    add, which matters at 512 px); this module adds the noise and applies the activation in place.
    """

    def __init__(self, channels: int, resolution: int, slope: float):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        # The generator's own unit-scale noise maps, used when the caller passes no noise.
        self.register_buffer("noise_const", torch.zeros(1, 1, resolution, resolution))
        self.slope = slope

    def forward(self, x_plus_bias: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        n = self.noise_const if noise is None else noise
        x = torch.addcmul(x_plus_bias, n, self.noise_strength)  # + strength * n, broadcast over batch / channels
        return F.leaky_relu_(x, self.slope)


class ModulatedConv(nn.Module):
    """The 4x4 layer: full 3x3 conv of the modulated input."""

    def __init__(self, w_dim: int, in_ch: int, out_ch: int, resolution: int, slope: float):
        super().__init__()
        self.style = StyleAffine(w_dim, in_ch, 1.0 / math.sqrt(in_ch * 9))
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, 3, 3))
        self.act = NoisyActivation(out_ch, resolution, slope)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        s = self.style(w)[:, :, None, None]
        return self.act(F.conv2d(x * s, self.weight, self.act.bias, padding=1), noise)


class ModulatedSeparableConv(nn.Module):
    """Modulated depthwise 3x3 + pointwise 1x1 conv.

    Modulation is per input channel and the depthwise conv is per channel, so dw(x * s) = dw(x) * s; we apply s to
    the (equal-sized) depthwise output instead, which lets the batch-1 case fold it into the pointwise weight.
    """

    def __init__(self, w_dim: int, in_ch: int, out_ch: int, resolution: int, slope: float):
        super().__init__()
        self.style = StyleAffine(w_dim, in_ch, 1.0 / math.sqrt(in_ch * 9))
        self.weight_dw = nn.Parameter(torch.zeros(in_ch, 1, 3, 3))
        self.weight_pw = nn.Parameter(torch.zeros(out_ch, in_ch, 1, 1))
        self.act = NoisyActivation(out_ch, resolution, slope)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        s = self.style(w)  # [B, in]
        y = F.conv2d(x, self.weight_dw, padding=1, groups=x.shape[1])
        if y.shape[0] == 1:
            y = F.conv2d(y, self.weight_pw * s[0].view(1, -1, 1, 1), self.act.bias)
        else:
            y = F.conv2d(y * s[:, :, None, None], self.weight_pw, self.act.bias)
        return self.act(y, noise)


class IDWTUpsample(nn.Module):
    """Modulation followed by the inverse Haar transform: [B, 4C, H, W] -> [B, C, 2H, 2W]."""

    def __init__(self, w_dim: int, channels: int):
        super().__init__()
        self.style = StyleAffine(w_dim, channels, 1.0)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return inverse_haar(x * self.style(w)[:, :, None, None])


class ToWavelets(nn.Module):
    """Modulated 1x1 conv to 4 sub-bands per image channel."""

    def __init__(self, w_dim: int, in_ch: int, out_ch: int):
        super().__init__()
        self.style = StyleAffine(w_dim, in_ch, 1.0 / math.sqrt(in_ch))
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.style(w)
        if x.shape[0] == 1:
            return F.conv2d(x, self.weight * s[0].view(1, -1, 1, 1), self.bias)
        return F.conv2d(x * s[:, :, None, None], self.weight, self.bias)


class SynthesisBlock(nn.Module):
    def __init__(self, w_dim: int, in_ch: int, out_ch: int, resolution: int, slope: float):
        super().__init__()
        self.up = IDWTUpsample(w_dim, in_ch)
        self.conv1 = ModulatedSeparableConv(w_dim, in_ch // 4, out_ch, resolution, slope)
        self.conv2 = ModulatedSeparableConv(w_dim, out_ch, out_ch, resolution, slope)


class MobileStyleGAN(StyleGenerator):
    """The bundled generator. Build with a config, then ``load_state_dict`` (see the registry)."""

    name = "mobilestylegan-ffhq"

    def __init__(self, config: MobileStyleGANConfig | None = None):
        super().__init__()
        cfg = config or MobileStyleGANConfig()
        self.config = cfg
        self.z_dim, self.w_dim, self.num_ws, self.resolution = cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.resolution
        slope = cfg.lrelu_slope
        self.mapping_net = MappingNetwork(cfg.z_dim, cfg.w_dim, cfg.mapping_layers, slope)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        self.const = nn.Parameter(torch.zeros(1, cfg.base_channels, 4, 4))
        self.conv1 = ModulatedConv(cfg.w_dim, cfg.base_channels, cfg.base_channels, 4, slope)
        blocks, in_ch = {}, cfg.base_channels
        for res, out_ch in zip(cfg.block_resolutions, cfg.channels):
            blocks[f"b{res}"] = SynthesisBlock(cfg.w_dim, in_ch, out_ch, res, slope)
            in_ch = out_ch
        self.blocks = nn.ModuleDict(blocks)
        self.torgb = ToWavelets(cfg.w_dim, in_ch, 4 * cfg.image_channels)
        last = f"b{cfg.block_resolutions[-1]}"
        # Beyond the paper: per-channel noise at the two finest blocks gives the noise stage enough freedom
        # for a 1024 px image (the finest paper maps are single-channel 512 px).
        self.extended_noise_layers = tuple(
            f"b{r}.{c}" for r in cfg.block_resolutions[-2:] for c in ("conv1", "conv2")
        )
        self._torgb_name = f"{last}.torgb"
        self._noise_inputs = self._describe_noise()
        # Channels-last weights and activations let oneDNN's CPU kernels (and cuDNN's) skip layout conversions
        # around every depthwise and pointwise conv: 1.5 s -> 1.0 s per 1024 px forward + backward on 2 cores.
        # Loading a state dict copies into these tensors and keeps their layout.
        self.to(memory_format=torch.channels_last)

    def _describe_noise(self) -> tuple[NoiseInput, ...]:
        out = [NoiseInput("conv1", self.config.base_channels, 4, 4)]
        for name, block in self.blocks.items():
            res = int(name[1:])
            out.append(NoiseInput(f"{name}.conv1", block.conv1.weight_pw.shape[0], res, res))
            out.append(NoiseInput(f"{name}.conv2", block.conv2.weight_pw.shape[0], res, res))
        return tuple(out)

    @property
    def noise_inputs(self) -> tuple[NoiseInput, ...]:
        return self._noise_inputs

    def noise_strengths(self) -> list[float]:
        """The per-layer noise strengths, in synthesis order (recovered from the export by the converter)."""
        layers = [self.conv1] + [c for b in self.blocks.values() for c in (b.conv1, b.conv2)]
        return [layer.act.noise_strength.item() for layer in layers]

    def layer_names(self) -> tuple[str, ...]:
        names = ["conv1"]
        for name in self.blocks:
            names += [f"{name}.up", f"{name}.conv1", f"{name}.conv2"]
        return tuple(names + [self._torgb_name])

    def layer_rows(self) -> list[int | None]:
        # One style input per named layer, consumed in synthesis order (see _forward).
        return list(range(self.num_ws))

    def layer_resolutions(self) -> list[int]:
        res = self.config.block_resolutions
        return [4] + [r for r in res for _ in range(3)] + [res[-1]]  # torgb: wavelets at the last block's size

    def _forward(
        self,
        ws: torch.Tensor,
        noise: Sequence[torch.Tensor] | None,
        capture: Sequence[str],
        edits: Mapping[str, Edit],
    ) -> SynthesisTrace:
        noise_iter = iter(noise) if noise is not None else None
        rows = iter(ws.unbind(1))

        emit = ActivationTap(capture, edits)

        def next_noise() -> torch.Tensor | None:
            return next(noise_iter) if noise_iter is not None else None

        x = self.const.expand(ws.shape[0], -1, -1, -1).contiguous(memory_format=torch.channels_last)
        x = emit("conv1", self.conv1(x, next(rows), next_noise()))
        for name, block in self.blocks.items():
            x = emit(f"{name}.up", block.up(x, next(rows)))
            x = emit(f"{name}.conv1", block.conv1(x, next(rows), next_noise()))
            x = emit(f"{name}.conv2", block.conv2(x, next(rows), next_noise()))
        x = emit(self._torgb_name, self.torgb(x, next(rows)))
        return SynthesisTrace(inverse_haar(x), emit.captured)
