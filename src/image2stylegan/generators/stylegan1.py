"""StyleGAN (v1; Karras, Laine, Aila, CVPR 2019), the generator the Image2StyleGAN++ paper embeds into, in plain
PyTorch.

The forward follows NVIDIA's TensorFlow reference (``training/networks_stylegan.py``: ``G_style``, ``G_mapping``,
``G_synthesis``) at inference time with ``lod = 0`` (no progressive-growing blend):

    mapping   : z -> pixel norm -> ``mapping_layers`` x (dense, bias, leaky ReLU 0.2) -> w. Equalised learning rate:
                each weight is multiplied at run time by gain / sqrt(fan_in) * lr_mul (gain sqrt(2), lr_mul 0.01), each
                bias by lr_mul. No activation gain (unlike StyleGAN2).
    synthesis : a learned 4x4 constant, then 2 layers per resolution 4, 8, ..., R. Every layer ends with the same
                epilogue, and every epilogue takes one W+ row (18 rows at 1024 px):

                  x = x + noise * noise_weight      noise [B, 1, H, W] broadcast over channels, weight per channel [C]
                  x = leaky_relu(x + bias, 0.2)
                  x = instance_norm(x)              per sample and channel over H, W; eps 1e-8
                  x = x * (1 + s_scale(w)) + s_shift(w)     AdaIN: [s_scale, s_shift] = dense(w) + bias, gain 1

                ``b4.const`` is the epilogue applied to the constant, ``b4.conv`` a 3x3 conv. Each later block has
                ``conv0`` (2x upsampling conv, then a [1, 2, 1] blur) and ``conv1`` (3x3 conv). Upsampling is nearest
                2x then the conv below 128 px; from 128 px on (``fused_scale='auto'``) it is TF's fused transposed
                convolution, which is *not* the same function of the weights (it equals nearest-up followed by the
                spatially flipped 3x3 kernel), so both are implemented exactly.
    torgb     : a 1x1 conv (gain 1) + bias at the final resolution only (the lower-resolution ToRGB layers of
                progressive growing do not contribute at lod 0).

Noise. The paper's noise space is NVIDIA's: one single-channel N(0, 1) map per layer (18 at 1024 px), which the layer
multiplies by its learned per-channel weights. The extended space (beyond the paper) gives the layers in
``extended_noise_layers`` one map per channel: channel c receives ``n_c * weight_c``, so each map is still unit scale
and the per-channel weights still set how much it can move that channel; a paper map repeated over the channels
renders the same image. :meth:`StyleGAN.noise_strengths` reports one number per layer: the RMS of its per-channel
weights, sqrt(mean_c weight_c^2), the standard deviation of what a unit map adds, pooled over the channels.

Layer names (``capture=`` / ``edits=``): ``b4.const``, ``b4.conv``, ``b8.conv0``, ``b8.conv1``, ...,
``b{R}.conv1``, ``b{R}.torgb``; each is the layer's output after its epilogue (the AdaIN'd activation), ``torgb`` the
image before it is returned. Parameters keep the TF values (equalised-lr scales are applied at run time) so the
converter is a pure transpose; see :mod:`image2stylegan.generators.tf_stylegan1`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import ActivationTap, Edit, NoiseInput, StyleGenerator, SynthesisTrace

FUSED_SCALE_MIN_RES = 128  # TF 'auto': fused upsampling conv when the output side is >= 128 px
CONFIG_DEFAULT = object()  # "use the config's value" for StyleGAN.truncate's cutoff, where None means every row


@dataclass(frozen=True)
class StyleGANConfig:
    """Architecture hyper-parameters (the TF ``static_kwargs`` that change the math); saved as JSON beside converted
    weights. Defaults are NVIDIA's FFHQ-1024 model."""

    resolution: int = 1024  # output side, a power of two >= 4
    z_dim: int = 512  # latent_size
    w_dim: int = 512  # dlatent_size
    mapping_layers: int = 8
    mapping_fmaps: int = 512  # width of the hidden mapping layers
    mapping_lr_mul: float = 0.01  # equalised-lr multiplier of the mapping network (weights and biases)
    fmap_base: int = 8192  # channels at a resolution: min(fmap_base / 2 ** (stage * fmap_decay), fmap_max)
    fmap_decay: float = 1.0
    fmap_max: int = 512
    image_channels: int = 3  # num_channels
    blur_filter: tuple[int, ...] = (1, 2, 1)  # separable low-pass after each upsampling conv; () = none
    fused_scale: str | bool = "auto"  # True / False / 'auto' (fused from 128 px on)
    lrelu_slope: float = 0.2
    truncation_psi: float = 0.7  # G_style's sampling defaults, used by StyleGAN.truncate
    truncation_cutoff: int = 8

    def __post_init__(self):
        log2 = int(math.log2(self.resolution)) if self.resolution > 0 else 0
        if self.resolution < 4 or 2**log2 != self.resolution:
            raise ValueError(f"resolution must be a power of two >= 4, got {self.resolution}")
        if self.fused_scale not in (True, False, "auto"):
            raise ValueError(f"fused_scale must be True, False or 'auto', got {self.fused_scale!r}")
        if self.mapping_layers < 1:
            raise ValueError("mapping_layers must be >= 1")

    @property
    def log2_resolution(self) -> int:
        return int(math.log2(self.resolution))

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Block resolutions 4, 8, ..., resolution."""
        return tuple(2**r for r in range(2, self.log2_resolution + 1))

    @property
    def num_ws(self) -> int:
        return 2 * len(self.resolutions)

    def channels(self, res: int) -> int:
        """Channel count of the activations at ``res`` px (TF ``nf(log2(res) - 1)``)."""
        stage = int(math.log2(res)) - 1
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    def fused(self, res: int) -> bool:
        """Whether the upsampling conv producing ``res`` px is TF's fused transposed conv."""
        return res >= FUSED_SCALE_MIN_RES if self.fused_scale == "auto" else bool(self.fused_scale)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["blur_filter"] = list(self.blur_filter)
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> StyleGANConfig:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown StyleGAN config keys: {sorted(unknown)}")
        d = dict(d)
        if "blur_filter" in d:
            d["blur_filter"] = tuple(int(v) for v in d["blur_filter"])
        return cls(**d)


def truncation(ws: torch.Tensor, w_avg: torch.Tensor, psi: float = 0.7, cutoff: int | None = 8) -> torch.Tensor:
    """The truncation trick of ``G_style``: pull the first ``cutoff`` W+ rows towards the mean latent.

    Args:
        ws: [B, num_ws, w_dim] W+ latents.
        w_avg: [w_dim] mean latent.
        psi: style strength (1 = unchanged, 0 = the mean face).
        cutoff: rows ``< cutoff`` are truncated (v1's default 8: the 4 coarsest resolutions); None = every row.

    Returns:
        [B, num_ws, w_dim]: ``w_avg + (ws - w_avg) * psi`` on the truncated rows, ``ws`` elsewhere.
    """
    coefs = torch.ones(ws.shape[1], 1, dtype=ws.dtype, device=ws.device)
    coefs[: ws.shape[1] if cutoff is None else cutoff] = psi
    return torch.lerp(w_avg.to(ws), ws, coefs)


def fused_upsample_kernel(weight: torch.Tensor) -> torch.Tensor:
    """TF ``upscale2d_conv2d(fused_scale=True)``'s kernel: [O, I, 3, 3] -> [I, O, 4, 4] for ``conv_transpose2d``.

    TF zero-pads the 3x3 kernel to 5x5 and sums its four 4x4 shifted windows; the stride-2 transposed conv with that
    kernel and padding 1 (TF's 'SAME' for a 4x4 kernel at stride 2) then doubles the resolution.
    """
    w = F.pad(weight, (1, 1, 1, 1))
    w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
    return w.transpose(0, 1)


class EqualizedLinear(nn.Module):
    """Dense layer with run-time weight scale ``gain / sqrt(in) * lr_mul`` and bias scale ``lr_mul``.

    ``weight`` [out, in] and ``bias`` [out] hold the TF variables (transposed); x [B, in] -> [B, out].
    """

    def __init__(self, in_dim: int, out_dim: int, gain: float, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.weight_gain = gain / math.sqrt(in_dim) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.lr_mul != 1.0 else self.bias
        return F.linear(x, self.weight * self.weight_gain, bias)


class MappingNetwork(nn.Module):
    """z [B, z_dim] -> w [B, w_dim]: pixel norm, then dense + bias + leaky ReLU (no gain), ``fc0`` ... ``fc{L-1}``."""

    def __init__(self, cfg: StyleGANConfig):
        super().__init__()
        dims = [cfg.z_dim] + [cfg.mapping_fmaps] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for i in range(cfg.mapping_layers):
            self.add_module(f"fc{i}", EqualizedLinear(dims[i], dims[i + 1], math.sqrt(2.0), cfg.mapping_lr_mul))
        self.num_layers, self.slope = cfg.mapping_layers, cfg.lrelu_slope

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        for i in range(self.num_layers):
            x = F.leaky_relu(getattr(self, f"fc{i}")(x), self.slope)
        return x


class StyleLayer(nn.Module):
    """One synthesis layer: optional conv (plain 3x3, or 2x upsampling 3x3 + blur), then the v1 epilogue.

    Parameters (TF variable in brackets): ``weight`` [O, I, 3, 3] (``Conv*/weight``, absent for ``b4.const``),
    ``noise_weight`` [O] (``Noise/weight``), ``bias`` [O], ``style.weight`` [2O, w_dim] / ``style.bias`` [2O]
    (``StyleMod``); buffer ``noise_const`` [1, 1, H, W] (``noise{i}``): the stored unit-scale map.
    """

    def __init__(self, cfg: StyleGANConfig, in_ch: int | None, out_ch: int, res: int, up: bool = False):
        super().__init__()
        self.up, self.fused, self.slope = up, up and cfg.fused(res), cfg.lrelu_slope
        if in_ch is not None:
            self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, 3, 3))
            self.weight_gain = math.sqrt(2.0) / math.sqrt(in_ch * 9)
        else:
            self.weight = None
        if up and cfg.blur_filter:
            f = torch.tensor(cfg.blur_filter, dtype=torch.float32)
            f = torch.outer(f, f)
            # Depthwise [O, 1, k, k], normalised to sum 1 as TF's _blur2d(normalize=True); symmetric, so no flip.
            self.register_buffer("blur", (f / f.sum()).expand(out_ch, 1, *f.shape).clone(), persistent=False)
        else:
            self.blur = None
        self.noise_weight = nn.Parameter(torch.zeros(out_ch))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.style = EqualizedLinear(cfg.w_dim, 2 * out_ch, gain=1.0)
        self.register_buffer("noise_const", torch.zeros(1, 1, res, res))

    def conv(self, x: torch.Tensor) -> torch.Tensor:
        """[B, I, H, W] -> [B, O, H', W'] (H' = 2H when upsampling), with the layer's bias already added.

        The bias comes before the noise in TF, but both are plain additions before the activation, so it rides
        along in the last convolution for free.
        """
        w = self.weight * self.weight_gain
        if not self.up:
            return F.conv2d(x, w, self.bias, padding=1)
        bias = None if self.blur is not None else self.bias
        if self.fused:
            x = F.conv_transpose2d(x, fused_upsample_kernel(w), bias, stride=2, padding=1)
        else:
            x = F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, bias, padding=1)
        if self.blur is not None:
            x = F.conv2d(x, self.blur, self.bias, padding=self.blur.shape[-1] // 2, groups=x.shape[1])
        return x

    def epilogue(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """x [B, O, H, W] (conv output + bias, a fresh tensor this may overwrite), w [B, w_dim], noise [B or 1,
        1 or O, H, W] unit scale (None: the stored map) -> [B, O, H, W].

        TF: + noise * weight, leaky ReLU, instance norm ((x - mean) / sqrt(biased var + 1e-8) per sample and
        channel), then x * (1 + s_scale) + s_shift. Instance norm and AdaIN are both per-channel affine maps, so
        they are folded into one ``x * a + b`` after a single statistics pass.
        """
        n = self.noise_const if noise is None else noise
        x = F.leaky_relu_(x.addcmul_(n, self.noise_weight.view(1, -1, 1, 1)), self.slope)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        style = self.style(w)  # [B, 2O]: scale then shift, as TF's reshape to [-1, 2, O]
        scale, shift = style.view(style.shape[0], 2, -1, 1, 1).unbind(1)
        a = (scale + 1.0) * torch.rsqrt(var + 1e-8)
        return torch.addcmul(shift - mean * a, x, a)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self.weight is None:  # b4.const: the (expanded) constant plus the bias, as a new tensor
            return self.epilogue(x + self.bias.view(1, -1, 1, 1), w, noise)
        return self.epilogue(self.conv(x), w, noise)


class ToRGB(nn.Module):
    """1x1 conv with gain 1 plus bias: [B, C, H, W] -> [B, image_channels, H, W]. ``weight`` [3, C, 1, 1]."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_ch, in_ch, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.weight_gain = 1.0 / math.sqrt(in_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias)


class StyleGAN(StyleGenerator):
    """StyleGAN v1 generator. Build from a config, then ``load_state_dict`` (e.g. from
    :func:`image2stylegan.generators.tf_stylegan1.convert_tf_stylegan1`).

    State dict: ``mapping_net.fc{i}.{weight,bias}``, ``w_avg``, ``const`` [1, C4, 4, 4],
    ``layers.b{res}.{const|conv|conv0|conv1}.{weight,noise_weight,bias,style.weight,style.bias,noise_const}``,
    ``torgb.{weight,bias}``.
    """

    name = "stylegan1"

    def __init__(self, config: StyleGANConfig | None = None, *, name: str | None = None):
        super().__init__()
        cfg = config or StyleGANConfig()
        self.config = cfg
        if name is not None:
            self.name = name  # e.g. the checkpoint's registry name, recorded in latent files
        self.z_dim, self.w_dim, self.num_ws, self.resolution = cfg.z_dim, cfg.w_dim, cfg.num_ws, cfg.resolution
        self.mapping_net = MappingNetwork(cfg)
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))
        self.const = nn.Parameter(torch.ones(1, cfg.channels(4), 4, 4))
        layers: dict[str, nn.ModuleDict] = {
            "b4": nn.ModuleDict(
                {
                    "const": StyleLayer(cfg, None, cfg.channels(4), 4),
                    "conv": StyleLayer(cfg, cfg.channels(4), cfg.channels(4), 4),
                }
            )
        }
        for res in cfg.resolutions[1:]:
            in_ch, out_ch = cfg.channels(res // 2), cfg.channels(res)
            layers[f"b{res}"] = nn.ModuleDict(
                {"conv0": StyleLayer(cfg, in_ch, out_ch, res, up=True), "conv1": StyleLayer(cfg, out_ch, out_ch, res)}
            )
        self.layers = nn.ModuleDict(layers)
        self.torgb = ToRGB(cfg.channels(cfg.resolution), cfg.image_channels)
        self._torgb_name = f"b{cfg.resolution}.torgb"
        # Beyond the paper: per-channel noise for the convs of the two finest resolutions.
        self.extended_noise_layers = tuple(
            f"b{r}.{c}" for r in cfg.resolutions[-2:] for c in (("const", "conv") if r == 4 else ("conv0", "conv1"))
        )
        self._noise_inputs = tuple(
            NoiseInput(name, layer.noise_weight.shape[0], layer.noise_const.shape[2], layer.noise_const.shape[3])
            for name, layer in self.named_style_layers()
        )
        # Channels-last weights and activations let oneDNN's CPU kernels (and cuDNN) skip layout conversions around
        # every conv, the transposed convs and the depthwise blurs (1024 px on 2 CPU cores: forward 6.0 s -> 2.6 s,
        # forward + backward 9.4 s -> 6.9 s).
        # Loading a state dict copies into these tensors and keeps their layout.
        self.to(memory_format=torch.channels_last)

    # -- structure ----------------------------------------------------------------------------------------------
    def named_style_layers(self) -> list[tuple[str, StyleLayer]]:
        """(layer name, module) of the 2 * log2(resolution) - 2 style layers in synthesis order (= W+ row order)."""
        return [(f"{block}.{name}", layer) for block, group in self.layers.items() for name, layer in group.items()]

    @property
    def noise_inputs(self) -> tuple[NoiseInput, ...]:
        return self._noise_inputs

    def noise_strengths(self) -> list[float]:
        """One number per noise input: the RMS over channels of the layer's per-channel noise weights.

        v1 scales a unit map by a weight per channel; the RMS is the standard deviation, averaged over the channels'
        variances, of what the layer adds, the single strength that plays the role of StyleGAN2's scalar.
        """
        return [layer.noise_weight.detach().square().mean().sqrt().item() for _, layer in self.named_style_layers()]

    def layer_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.named_style_layers()) + (self._torgb_name,)

    def layer_rows(self) -> list[int | None]:
        # Style layer i takes row i; ToRGB has no style input in v1.
        return list(range(self.num_ws)) + [None]

    def layer_resolutions(self) -> list[int]:
        return [r for r in self.config.resolutions for _ in range(2)] + [self.resolution]

    # -- latents ------------------------------------------------------------------------------------------------
    def truncate(
        self, ws: torch.Tensor, psi: float | None = None, cutoff: int | None | object = CONFIG_DEFAULT
    ) -> torch.Tensor:
        """:func:`truncation` with this generator's ``w_avg``; ``psi`` / ``cutoff`` default to the config's
        (0.7 / 8 for NVIDIA's models); ``cutoff=None`` truncates every row. ws [B, num_ws, w_dim]."""
        psi = self.config.truncation_psi if psi is None else psi
        cutoff = self.config.truncation_cutoff if cutoff is CONFIG_DEFAULT else cutoff
        return truncation(ws, self.w_avg, psi, cutoff)

    def sample_ws(
        self, z: torch.Tensor, psi: float | None = None, cutoff: int | None | object = CONFIG_DEFAULT
    ) -> torch.Tensor:
        """z [B, z_dim] -> truncated W+ [B, num_ws, w_dim], as ``G_style`` samples (psi = 1 disables truncation)."""
        ws = self.mapping(z).unsqueeze(1).expand(-1, self.num_ws, -1)
        return self.truncate(ws, psi, cutoff)

    # -- forward ------------------------------------------------------------------------------------------------
    def _forward(
        self,
        ws: torch.Tensor,
        noise: Sequence[torch.Tensor] | None,
        capture: Sequence[str],
        edits: Mapping[str, Edit],
    ) -> SynthesisTrace:

        emit = ActivationTap(capture, edits)

        x = self.const.expand(ws.shape[0], -1, -1, -1).contiguous(memory_format=torch.channels_last)
        for i, (name, layer) in enumerate(self.named_style_layers()):
            x = emit(name, layer(x, ws[:, i], None if noise is None else noise[i]))
        image = emit(self._torgb_name, self.torgb(x))
        return SynthesisTrace(image.contiguous(), emit.captured)


@torch.no_grad()
def random_stylegan(config: StyleGANConfig, seed: int = 0) -> StyleGAN:
    """A frozen, eval-mode StyleGAN with seeded random weights at TF's initialisation scales (unit-variance weights,
    so equalised lr gives He-scaled layers; small random biases and noise weights; the style bias gives scale ~1).

    For tests and examples; ``w_avg`` is the mean of the mapping over 256 seeded z.
    """
    generator = StyleGAN(config)
    rng = torch.Generator().manual_seed(seed)
    for name, tensor in generator.state_dict().items():
        randn = torch.randn(tensor.shape, generator=rng)
        leaf = name.rsplit(".", 1)[-1]
        if leaf in ("weight", "noise_const") or name == "const":
            tensor.copy_(randn)
        elif leaf == "noise_weight":
            tensor.copy_(0.3 * randn)
        elif leaf == "bias":
            tensor.copy_(0.1 * randn / (config.mapping_lr_mul if name.startswith("mapping_net") else 1.0))
    generator.w_avg.copy_(generator.mapping(torch.randn(256, config.z_dim, generator=rng)).mean(0))
    return generator.requires_grad_(False).eval()
