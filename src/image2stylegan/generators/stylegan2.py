"""StyleGAN2 / StyleGAN2-ADA generator (Karras et al., CVPR 2020 and NeurIPS 2020) as a plain PyTorch module.

The same mathematics as NVIDIA's ``training/networks.py`` of stylegan2-ada-pytorch (config E/F, the "skip" generator,
plus the "orig" and "resnet" variants), written for speed on CPUs without compiled ops:

    mapping    : z -> normalise 2nd moment -> ``mapping_layers`` x (equalised-lr linear, leaky ReLU(0.2) * sqrt 2);
    b4         : learned 4x4 constant -> ``conv1`` -> ``torgb``;
    b{res}     : ``conv0`` (x2 upsampling conv) -> ``conv1`` -> ``torgb``; the image is the sum of every block's
                 ``torgb`` output, each coarser partial image upsampled x2 by the FIR filter [1, 3, 3, 1].

Each conv is a modulated 3x3 conv: style s = A(w) scales the input channels, the weights are demodulated (each output
channel renormalised to unit expected scale), then + noise_strength * noise + bias -> leaky ReLU(0.2) * sqrt 2
(clamped to +-conv_clamp when the checkpoint sets one). ``torgb`` is a modulated 1x1 conv without demodulation.

Parameter names follow NVIDIA's, so that their checkpoints convert by renaming, with prefixes changed because
``mapping`` and ``synthesis`` are methods of :class:`StyleGenerator`: ``mapping.fc{i}`` -> ``mapping_net.fc{i}``,
``mapping.w_avg`` -> ``w_avg`` and ``synthesis.b{res}.*`` -> ``b{res}.*``. Tensors keep NVIDIA's shapes and
meaning (raw weights; the equalised-lr gains are applied in forward), so a converted checkpoint is a renamed copy.

Layer names for ``capture=`` / ``edits=`` are the module paths, in synthesis order: ``b4.conv1``, ``b4.torgb``,
``b8.conv0``, ``b8.conv1``, ``b8.torgb``, ... (``b{res}.skip`` too for the resnet variant; the "orig" variant
has only the last block's ``torgb``). ``b{res}.conv*`` is the activation after the leaky ReLU (and clamp),
``[B, C, res, res]``; for the resnet variant ``b{res}.conv1`` is the block output (shortcut added) and
``b{res}.skip`` the upsampled shortcut. ``b{res}.torgb`` is that block's RGB contribution before the upsampled
coarser image is added, ``[B, 3, res, res]``. W+ rows follow NVIDIA: ``b4.conv1`` reads row 0 and block k >= 1
(8 px, 16 px, ...) reads rows 2k-1 (conv0) and 2k (conv1); each ``torgb`` shares the next conv0's row (2k+1), so a
1024 px model has 18 rows (256 px: 14, 512 px: 16). Noise inputs are the convs, in that order (17 at 1024 px):
maps passed to ``synthesis`` are unit scale and each layer multiplies its map by its learned ``noise_strength``
(:meth:`StyleGAN2.noise_strengths`); ``noise=None`` uses the stored unit-scale maps (NVIDIA's ``noise_const``).

Speed (CPU first, same code on CUDA/MPS; all paths agree to float32 rounding): activations and weights are
channels-last; the FIR upsampling of the image is one bilinear pass (:func:`upsample2d`); each conv picks one of
three evaluations of the same function: per-sample folded weights when no style gradient is needed (rendering, the
noise stage), :class:`_StyleGradLayer` for batch-1 W+ steps at the larger layers (no weight-gradient conv, fewer
passes over the activations), and activation scaling otherwise (:func:`modulated_conv2d`). On 2 CPU cores a W+ step
(forward + backward) takes less than half the time of NVIDIA's reference code path (``bench/generator.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import ActivationTap, Edit, NoiseInput, StyleGenerator, SynthesisTrace

ARCHITECTURES = ("skip", "orig", "resnet")
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)  # NVIDIA's resample_filter; the only one supported
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activations' second moment through leaky ReLU(0.2), as NVIDIA's def_gain
DEMOD_EPS = 1e-8


@dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture hyper-parameters (NVIDIA's constructor arguments); saved as JSON with converted weights."""

    resolution: int = 1024  # output side in px, a power of two >= 4
    z_dim: int = 512  # input latent Z dimensionality
    w_dim: int = 512  # intermediate latent W dimensionality
    mapping_layers: int = 8  # fully connected layers in the mapping network
    mapping_features: int | None = None  # width of the hidden mapping layers (NVIDIA's layer_features); None = w_dim
    mapping_lr_multiplier: float = 0.01  # equalised-lr multiplier of the mapping layers (scales weights and biases)
    channel_base: int = 32768  # channels at resolution r = min(channel_base // r, channel_max); 32768 = config-f
    channel_max: int = 512
    img_channels: int = 3
    architecture: str = "skip"  # 'skip' (config E/F and ADA), 'orig' (RGB from the last block only), 'resnet'
    conv_clamp: float | None = None  # clamp every conv output to +-conv_clamp (ADA trains with 256); None = off

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 4, got {r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if min(self.z_dim, self.w_dim, self.mapping_layers, self.channel_base, self.channel_max, self.img_channels) < 1:
            raise ValueError(f"dimensions must be positive: {self}")

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(2**i for i in range(2, self.resolution.bit_length()))

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def num_ws(self) -> int:
        # One row per conv (1 + 2 per block above 4 px) plus the last block's torgb: NVIDIA's count.
        return 2 * len(self.block_resolutions)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> StyleGAN2Config:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown StyleGAN2 config keys: {sorted(unknown)}")
        return cls(**d)


# -- functional ops -------------------------------------------------------------------------------------------------
def fir_kernel_2d(taps: Sequence[float] = FIR_TAPS, gain: float = 1.0) -> torch.Tensor:
    """The separable FIR filter outer(taps, taps), normalised to sum ``gain``: [k, k] (NVIDIA's ``setup_filter``)."""
    t = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(t, t)
    return k * (gain / k.sum())


def upsample2d(x: torch.Tensor) -> torch.Tensor:
    """x2 upsampling with the FIR filter [1, 3, 3, 1] and zero padding: [B, C, H, W] -> [B, C, 2H, 2W].

    NVIDIA's ``upsample2d`` inserts zeros and filters with outer([1,3,3,1], [1,3,3,1]) * 4 / 64. Per output phase
    that is a 2-tap filter (1/4, 3/4), exactly what bilinear interpolation with ``align_corners=False`` computes at
    scale 2, except that bilinear replicates the border where NVIDIA pads with zeros; padding one zero pixel first
    and cropping the two extra output pixels per side makes them equal, in one pass instead of a 4x4 conv.
    """
    y = F.interpolate(F.pad(x, (1, 1, 1, 1)), scale_factor=2.0, mode="bilinear", align_corners=False)
    return y[:, :, 2:-2, 2:-2]


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    up: bool = False,
    blur: torch.Tensor | None = None,
    out_gain: float = 1.0,
    weight_sq: torch.Tensor | None = None,
    weight_t: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated and demodulated 3x3 conv, optionally upsampling x2 (NVIDIA's ``modulated_conv2d`` with
    ``demodulate=True``, and ``up=2, padding=1`` with the [1, 3, 3, 1] filter when ``up``).

    Args:
        x: [B, I, H, W] input.
        weight: [O, I, k, k] raw conv weight.
        styles: [B, I] per-sample input-channel scales s.
        up: upsample x2: transposed stride-2 conv, then the FIR blur ``blur`` ([O, 1, 4, 4], gain 4, padding 1).
        out_gain: a factor applied to the result (callers fold their activation gain in here for free).
        weight_sq: optional precomputed ``weight.square().sum((2, 3))``, [O, I].
        weight_t: optional precomputed ``weight.transpose(0, 1)`` in a conv-friendly layout, [I, O, k, k].

    Returns:
        [B, O, H, W] (or [B, O, 2H, 2W] with ``up``): conv(x * s, weight) * d * out_gain, where the demodulation
        d[b, o] = 1 / sqrt(sum_(i, kh, kw) (weight[o, i, kh, kw] * s[b, i])^2 + 1e-8).

    Two evaluations with the same result, chosen for speed:

    1. batch 1 and no gradient through ``styles`` (rendering, the noise stage): fold s, d and the gain into one
       per-sample weight and run one plain conv (NVIDIA's "fused" path).
    2. otherwise scale the activations. The conv weight stays constant, so backpropagating to W+ costs one conv
       (the input gradient) where the fused path needs two (input and per-sample weight); the gradients of s and d
       are cheap reductions.
    """
    b, i = styles.shape
    o, _, k, _ = weight.shape
    if weight_sq is None:
        weight_sq = weight.square().sum(dim=(2, 3))
    # sum_(i,kh,kw) (W s)^2 = (s^2 @ sum_k W^2)[b, o]: a matmul instead of a [B, O, I, k, k] tensor.
    dcoefs = torch.rsqrt(styles.square() @ weight_sq.t() + DEMOD_EPS)  # [B, O]
    if b == 1 and not (styles.requires_grad and torch.is_grad_enabled()):
        w = weight * styles.view(1, i, 1, 1) * (dcoefs * out_gain).view(o, 1, 1, 1)  # [O, I, k, k]
        if not up:
            return F.conv2d(x, w, padding=k // 2)
        y = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)  # [1, O, 2H+1, 2W+1]
        return F.conv2d(y, blur, padding=1, groups=o)  # [1, O, 2H, 2W]
    xs = x * styles.view(b, i, 1, 1)
    if up:
        wt = weight.transpose(0, 1) if weight_t is None else weight_t
        y = F.conv2d(F.conv_transpose2d(xs, wt, stride=2), blur, padding=1, groups=o)
    else:
        y = F.conv2d(xs, weight, padding=k // 2)
    return y * (dcoefs * out_gain).view(b, o, 1, 1)


# -- layers ---------------------------------------------------------------------------------------------------------
class FullyConnected(nn.Module):
    """Equalised-lr linear layer: y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul, optionally leaky ReLU * sqrt 2."""

    def __init__(self, in_features: int, out_features: int, lr_multiplier: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, in] -> [B, out]
        # Scale the (small) input rather than the weight matrix: (x g) W^T = x (g W)^T, one pass over B x in values.
        b = self.bias * self.bias_gain if self.bias_gain != 1 else self.bias
        y = F.linear(x * self.weight_gain, self.weight, b)
        return F.leaky_relu(y, LRELU_SLOPE) * LRELU_GAIN if self.activation else y


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: normalise the second moment, then ``layers`` x FullyConnected with activation."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        hidden = cfg.mapping_features or cfg.w_dim
        dims = [cfg.z_dim] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for idx in range(cfg.mapping_layers):
            self.add_module(f"fc{idx}", FullyConnected(dims[idx], dims[idx + 1], cfg.mapping_lr_multiplier, True))
        self.num_layers = cfg.mapping_layers

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally x2 upsampling) + noise + bias -> leaky ReLU * sqrt 2 (* ``gain``), clamped.

    ``gain`` is 1, or sqrt(1/2) for the resnet variant's second conv (NVIDIA's ``gain`` argument); it scales the
    activation gain and the clamp.
    """

    def __init__(self, w_dim: int, in_ch: int, out_ch: int, resolution: int, up: bool, conv_clamp: float | None,
                 gain: float = 1.0):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_ch)
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.zeros(resolution, resolution))  # unit-scale stored noise
        if up:
            self.register_buffer("blur", fir_kernel_2d(gain=4.0).expand(out_ch, 1, 4, 4).clone(), persistent=False)
        self.up, self.resolution = up, resolution
        self.act_gain = LRELU_GAIN * gain
        self.clamp = conv_clamp * gain if conv_clamp is not None else None
        self._cache: tuple | None = None

    def _weight_constants(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(sum_k W^2 [O, I], W transposed for the upsampling conv or None), computed once per weight version while
        the weight is frozen: recomputing them costs a pass over a 9 MB tensor per layer and step."""
        w = self.weight
        if w.requires_grad:
            return w.square().sum(dim=(2, 3)), None
        key = (w.data_ptr(), w._version, w.device, w.dtype)
        if self._cache is None or self._cache[0] != key:
            wt = w.transpose(0, 1).contiguous(memory_format=torch.channels_last) if self.up else None
            self._cache = (key, w.square().sum(dim=(2, 3)), wt)
        return self._cache[1], self._cache[2]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """x [B, I, r, r] (r = res / 2 when upsampling), w [B, w_dim], noise [B or 1, 1 or O, res, res] unit scale
        or None (the stored map) -> [B, O, res, res]."""
        g = self.act_gain
        wsq, wt = self._weight_constants()
        styles = self.affine(w)
        n = self.noise_const.view(1, 1, *self.noise_const.shape) if noise is None else noise.to(x.dtype)
        blur = getattr(self, "blur", None)
        # leaky_relu(v) * g == leaky_relu(v * g) for g > 0: fold g into the conv scale, bias and noise strength.
        if self._style_grad_path(x, styles):
            dg = torch.rsqrt(styles.square() @ wsq.t() + DEMOD_EPS) * g  # [1, O]
            weight = wt if self.up else self.weight
            y = _StyleGradLayer.apply(x, styles, dg, n, weight, self.bias * g, self.noise_strength * g, blur)
        else:
            y = modulated_conv2d(x, self.weight, styles, up=self.up, blur=blur, out_gain=g, weight_sq=wsq, weight_t=wt)
            # In place: neither add needs its inputs for backward, and leaky ReLU's backward reads only its output.
            y = y.add_((self.bias * g).view(1, -1, 1, 1)).add_(n * (self.noise_strength * g))
            y = F.leaky_relu_(y, LRELU_SLOPE)
        return y.clamp(-self.clamp, self.clamp) if self.clamp is not None else y

    def _style_grad_path(self, x: torch.Tensor, styles: torch.Tensor) -> bool:
        """Use :class:`_StyleGradLayer`: batch 1, gradients wanted for the styles, frozen parameters, and an output
        with at least as many values as the weight (at 4-64 px, building per-sample 512 x 512 x 9 weights costs
        more than scaling the small activations)."""
        return (
            x.shape[0] == 1 and styles.requires_grad and torch.is_grad_enabled()
            and self.resolution**2 >= 9 * self.weight.shape[1]
            and not any(p.requires_grad for p in (self.weight, self.bias, self.noise_strength))
            and bool((styles != 0).all())  # its style gradient divides by s
        )


class _StyleGradLayer(torch.autograd.Function):
    """One synthesis layer, batch 1, for the W+ stage: gradients for x, the styles, dg and the noise map only.

    out = lrelu(conv(x, W * s * dg) + b_g + n * sn_g) (with the x2 upsampling conv when ``blur`` is given), so the
    forward is one conv on per-sample weights with the bias inside, one noise add and one in-place leaky ReLU. The
    backward avoids the weight-gradient conv that autograd would run for per-sample weights:

    * gz = lrelu'(z) * grad; grad_x = the conv's input gradient with the same per-sample weights;
    * grad_s[i] = sum_hw x[i] * grad_x[i] / s[i]  (grad_x[i] = s[i] * (input gradient of the unmodulated conv));
    * grad_dg[o] = sum_hw gz[o] * (z[o] - b_g[o] - n sn_g) / dg[o], where sum_hw gz * z = sum_hw grad * out because
      leaky ReLU is positively homogeneous (z * lrelu'(z) = lrelu(z)), so z itself is never stored.

    ``weight`` is [O, I, 3, 3], or [I, O, 3, 3] (the transposed-conv layout) when upsampling. The parameters must be
    frozen (the caller checks); ``s`` must have no exact zeros (styles are affine outputs).
    """

    @staticmethod
    def forward(ctx, x, s, dg, noise, weight, bias_g, sn_g, blur):  # noqa: D102 - documented on the class
        up = blur is not None
        o = dg.shape[1]
        scale = (dg.view(1, o, 1, 1) * s.view(-1, 1, 1, 1)) if up else (dg.view(o, 1, 1, 1) * s.view(1, -1, 1, 1))
        wf = weight * scale  # one pass over the weight; [O, I, 3, 3] or [I, O, 3, 3]
        if up:
            z = F.conv2d(F.conv_transpose2d(x, wf, stride=2), blur, bias_g, padding=1, groups=o)
        else:
            z = F.conv2d(x, wf, bias_g, padding=1)
        out = F.leaky_relu_(z.add_(noise * sn_g), LRELU_SLOPE)
        ctx.save_for_backward(x, s, dg, noise, wf, bias_g, sn_g, blur, out)
        return out

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, s, dg, noise, wf, bias_g, sn_g, blur, out = ctx.saved_tensors
        o = dg.shape[1]
        gz = torch.ops.aten.leaky_relu_backward(grad, out, LRELU_SLOPE, True)
        grad_s = grad_dg = grad_noise = None
        if blur is None:
            grad_x = torch.ops.aten.convolution_backward(
                gz, x, wf, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, False, False])[0]
        else:
            gy = torch.ops.aten.convolution_backward(  # through the blur (input shape [1, O, 2H+1, 2W+1])
                gz, gz.new_empty(1, o, gz.shape[2] + 1, gz.shape[3] + 1), blur, None, [1, 1], [1, 1], [1, 1],
                False, [0, 0], o, [True, False, False])[0]
            grad_x = F.conv2d(gy, wf, stride=2)  # adjoint of the transposed conv
        if ctx.needs_input_grad[1]:
            grad_s = _channel_sum(x * grad_x).div_(s.view(-1)).view(1, -1)
        if ctx.needs_input_grad[2]:
            c = _channel_sum(grad * out) - _channel_sum(gz) * bias_g  # [O]
            if noise.shape[1] == 1:  # <gz[o], n> as one matrix-vector product
                c = c - sn_g * (noise.reshape(1, -1) @ _pixels(gz))[0]
            else:
                c = c - sn_g * _channel_sum(gz * noise)
            grad_dg = (c / dg.view(-1)).view(1, o)
        if ctx.needs_input_grad[3]:
            gn = gz * sn_g
            grad_noise = gn.sum(dim=1, keepdim=True) if noise.shape[1] == 1 else gn
        return grad_x if ctx.needs_input_grad[0] else None, grad_s, grad_dg, grad_noise, None, None, None, None


def _pixels(t: torch.Tensor) -> torch.Tensor:
    """[1, C, H, W] -> [H*W, C]; a view for channels-last tensors."""
    return t[0].permute(1, 2, 0).reshape(-1, t.shape[1])


def _channel_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of a [1, C, H, W] tensor over its pixels: [C]. Summing the rows of the [H*W, C] view is several times
    faster than ``sum(dim=(0, 2, 3))`` on channels-last tensors."""
    return _pixels(t).sum(dim=0)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB without demodulation, + bias, clamped: [B, I, H, W] -> [B, img_channels, H, W]."""

    def __init__(self, w_dim: int, in_ch: int, img_channels: int, conv_clamp: float | None):
        super().__init__()
        self.affine = FullyConnected(w_dim, in_ch)
        self.weight = nn.Parameter(torch.zeros(img_channels, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_ch)
        self.clamp = conv_clamp

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, i = x.shape[:2]
        s = self.affine(w) * self.weight_gain  # [B, I]
        if b == 1:
            # The per-sample weight is tiny (3 x I): folding the style in beats scaling the I-channel activation,
            # and the conv's weight gradient is a cheap reduction.
            y = F.conv2d(x, self.weight * s.view(1, i, 1, 1), self.bias)
        else:
            y = F.conv2d(x * s.view(b, i, 1, 1), self.weight, self.bias)
        return y.clamp(-self.clamp, self.clamp) if self.clamp is not None else y


class SkipConv(nn.Module):
    """The resnet variant's shortcut: 1x1 conv (no bias), x2 FIR upsampling, times sqrt(1/2)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, 1, 1))
        self.weight_gain = 1.0 / math.sqrt(in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upsample2d(F.conv2d(x, self.weight * (self.weight_gain * math.sqrt(0.5))))


class SynthesisBlock(nn.Module):
    """One resolution: [const or conv0 (upsampling)], conv1, [torgb], [skip]; see the module docstring."""

    def __init__(self, cfg: StyleGAN2Config, res: int):
        super().__init__()
        out_ch = cfg.channels(res)
        is_last = res == cfg.resolution
        self.resnet = cfg.architecture == "resnet" and res > 4
        if res == 4:
            self.const = nn.Parameter(torch.zeros(out_ch, 4, 4))
        else:
            in_ch = cfg.channels(res // 2)
            self.conv0 = SynthesisLayer(cfg.w_dim, in_ch, out_ch, res, True, cfg.conv_clamp)
        gain = math.sqrt(0.5) if self.resnet else 1.0
        self.conv1 = SynthesisLayer(cfg.w_dim, out_ch, out_ch, res, False, cfg.conv_clamp, gain)
        if is_last or cfg.architecture == "skip":
            self.torgb = ToRGB(cfg.w_dim, out_ch, cfg.img_channels, cfg.conv_clamp)
        if self.resnet:
            self.skip = SkipConv(cfg.channels(res // 2), out_ch)


# -- the generator --------------------------------------------------------------------------------------------------
class StyleGAN2(StyleGenerator):
    """StyleGAN2 / StyleGAN2-ADA generator. Build with a config, then ``load_state_dict`` (see
    :mod:`image2stylegan.generators.checkpoints`); the constructor does no I/O and leaves all tensors zero."""

    name = "stylegan2"

    def __init__(self, config: StyleGAN2Config | None = None, *, name: str | None = None):
        super().__init__()
        cfg = config or StyleGAN2Config()
        self.config = cfg
        if name is not None:
            self.name = name
        self.z_dim, self.w_dim, self.num_ws, self.resolution = cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.resolution
        self.mapping_net = MappingNetwork(cfg)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        for res in cfg.block_resolutions:
            self.add_module(f"b{res}", SynthesisBlock(cfg, res))
        top = cfg.block_resolutions[-2:]
        # Beyond the paper, as for the bundled generator: per-channel noise in the two finest blocks.
        self.extended_noise_layers = tuple(f"b{r}.{c}" for r in top for c in ("conv0", "conv1") if r > 4)
        self._layers = self._describe_layers()
        self._noise_inputs = tuple(
            NoiseInput(name, cfg.channels(res), res, res) for name, res, _ in self._layers if ".conv" in name
        )
        # Channels-last weights and activations let oneDNN (and cuDNN) skip layout conversions around every conv.
        self.to(memory_format=torch.channels_last)

    def _describe_layers(self) -> list[tuple[str, int, int | None]]:
        """(name, resolution, W+ row) of each named layer in synthesis order."""
        out: list[tuple[str, int, int | None]] = []
        for k, res in enumerate(self.config.block_resolutions):
            block = getattr(self, f"b{res}")
            if res == 4:
                out.append(("b4.conv1", 4, 0))
            else:
                if block.resnet:
                    out.append((f"b{res}.skip", res, None))
                out += [(f"b{res}.conv0", res, 2 * k - 1), (f"b{res}.conv1", res, 2 * k)]
            if hasattr(block, "torgb"):
                out.append((f"b{res}.torgb", res, 2 * k + 1))
        return out

    # -- interface ----------------------------------------------------------------------------------------------
    @property
    def noise_inputs(self) -> tuple[NoiseInput, ...]:
        return self._noise_inputs

    def layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self._layers)

    def layer_rows(self) -> list[int | None]:
        return [row for _, _, row in self._layers]

    def layer_resolutions(self) -> list[int]:
        return [res for _, res, _ in self._layers]

    def noise_strengths(self) -> list[float]:
        return [self.get_submodule(n.layer).noise_strength.item() for n in self._noise_inputs]

    def _forward(
        self,
        ws: torch.Tensor,
        noise: Sequence[torch.Tensor] | None,
        capture: Sequence[str],
        edits: Mapping[str, Edit],
    ) -> SynthesisTrace:
        noise_iter = iter(noise) if noise is not None else None

        emit = ActivationTap(capture, edits)

        def next_noise() -> torch.Tensor | None:
            return next(noise_iter) if noise_iter is not None else None

        x = img = None
        for k, res in enumerate(self.config.block_resolutions):
            block, p = getattr(self, f"b{res}"), f"b{res}"
            if res == 4:
                x = block.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
                x = x.contiguous(memory_format=torch.channels_last)
                x = emit(f"{p}.conv1", block.conv1(x, ws[:, 0], next_noise()))
            else:
                shortcut = emit(f"{p}.skip", block.skip(x)) if block.resnet else None
                x = emit(f"{p}.conv0", block.conv0(x, ws[:, 2 * k - 1], next_noise()))
                x = block.conv1(x, ws[:, 2 * k], next_noise())
                x = emit(f"{p}.conv1", x + shortcut if shortcut is not None else x)
            if hasattr(block, "torgb"):
                y = emit(f"{p}.torgb", block.torgb(x, ws[:, 2 * k + 1]))
                img = y if img is None else upsample2d(img) + y
        return SynthesisTrace(img.contiguous(), emit.captured)
