"""Strict converters from foreign StyleGAN2 checkpoints to :class:`StyleGAN2` state dicts.

Pure ``object -> (tensors, config)`` functions, no file I/O (see :mod:`.checkpoints`):

* :func:`convert_stylegan2_ada`: the ``G_ema`` of a stylegan2-ada-pytorch or stylegan3-repository pickle (StyleGAN2
  generators), as read by :mod:`.safe_pickle` (a tree of :class:`PersistentObject` records);
* :func:`convert_rosinality`: the ``g_ema`` state dict of a rosinality/stylegan2-pytorch ``.pt``.

Strict in NVIDIA's ``legacy.py`` manner: every tensor of the source is either used or ignored for a stated reason,
every setting (constructor keyword, module attribute, filter buffer) is either understood and checked or refused,
and every tensor of the target is filled exactly once with the right shape. Anything else raises
:class:`WeightsFormatError` naming the tensor or setting.

Our parameters keep NVIDIA's names, shapes and meaning (see :mod:`.stylegan2`), so an ADA pickle converts by
renaming. rosinality stores the same network differently, undone here: conv weights are ``[1, O, I, k, k]`` and
multiplied by 1/sqrt(fan_in) in forward (we multiply them in: NVIDIA applies no such factor and demodulation cancels
it, except inside the 1e-8 epsilon, where storing the product reproduces rosinality exactly); ``to_rgb`` weights get
the same factor, which NVIDIA applies to the style instead (same product); noise strengths are ``[1]``, noise maps
``[1, 1, r, r]``, the constant ``[1, C, 4, 4]`` and ``to_rgb`` biases ``[1, 3, 1, 1]``; the FIR filters are stored
as buffers (checked, then dropped). The mapping network's learning-rate multiplier is not stored: rosinality's
default 0.01 is assumed (``lr_mlp``); it only matters for ``mapping()``, not for rendering W+.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ..errors import WeightsFormatError
from .base import check_resolution, checked_config, expected_state
from .safe_pickle import PersistentObject
from .stylegan2 import FIR_TAPS, LRELU_GAIN, StyleGAN2, StyleGAN2Config, fir_kernel_2d

_MISSING = object()


# -- checking helpers -----------------------------------------------------------------------------------------------
def _fail(msg: str) -> WeightsFormatError:
    return WeightsFormatError(f"cannot convert: {msg}")


def _config(**settings: Any) -> StyleGAN2Config:
    """A StyleGAN2Config from settings read from a file, every size checked (:func:`.base.check_config`) before
    anything is allocated for it."""
    return checked_config(StyleGAN2Config, StyleGAN2, settings, "cannot convert")


def _close(a: Any, b: float) -> bool:
    try:
        return math.isclose(float(a), b, rel_tol=1e-6, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _float_tensor(t: Any, where: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise _fail(f"{where} is {type(t).__name__} {getattr(t, 'dtype', '')}, expected a float tensor")
    # A fresh float32 copy: nothing of the unpickled object (views, hooks) survives into the generator.
    return t.detach().to(torch.float32).clone()


def _check_filter(t: Any, where: str, gain: float = 1.0) -> None:
    """Resampling filters are stored as buffers; they must be the [1, 3, 3, 1] filter we implement."""
    expected = fir_kernel_2d(FIR_TAPS, gain)
    ok = isinstance(t, torch.Tensor) and tuple(t.shape) == (4, 4) and torch.allclose(t.float(), expected, atol=1e-6)
    if not ok:
        raise _fail(f"{where}: resampling filter is not [1, 3, 3, 1] (only that filter is supported)")


# Bookkeeping attributes of every nn.Module / persistent class that carry no network settings.
_HOOK_ATTR = re.compile(r"^_(?:.*hooks.*|non_persistent_buffers_set)$")


class _Node:
    """One pickled module: parameters, buffers, submodules and attributes, recording which of them were read so
    that :meth:`finish` can refuse anything left over."""

    def __init__(self, obj: Any, path: str, class_name: str):
        if not isinstance(obj, PersistentObject):
            raise _fail(f"{path} is a {type(obj).__name__}, expected a pickled {class_name} module")
        if obj.class_name != class_name:
            raise _fail(f"{path} is a {obj.class_name}, expected {class_name}")
        self.path = path
        state = obj.state
        self.tensors: dict[str, Any] = {}
        for group in ("_parameters", "_buffers"):
            for k, v in (state.get(group) or {}).items():
                if v is not None:  # a registered-but-None parameter holds nothing
                    self.tensors[k] = v
        self.children: dict[str, Any] = dict(state.get("_modules") or {})
        self.attrs: dict[str, Any] = {}
        for k, v in state.items():
            if k in ("_parameters", "_buffers", "_modules", "training"):
                continue
            if _HOOK_ATTR.match(k) or k == "_is_full_backward_hook":
                if v:  # hooks are functions: a module pickled with any is refused
                    raise _fail(f"{path}.{k} is not empty")
                continue
            self.attrs[k] = v
        self.used: set[str] = set()

    def tensor(self, name: str) -> Any:
        if name not in self.tensors:
            raise _fail(f"{self.path}.{name} is missing")
        self.used.add("t:" + name)
        return self.tensors[name]

    def has(self, name: str) -> bool:
        return name in self.children or name in self.tensors

    def child(self, name: str, class_name: str) -> _Node:
        if name not in self.children:
            raise _fail(f"{self.path}.{name} is missing")
        self.used.add("m:" + name)
        return _Node(self.children[name], f"{self.path}.{name}", class_name)

    def attr(self, name: str, default: Any = _MISSING) -> Any:
        if name not in self.attrs:
            if default is _MISSING:
                raise _fail(f"{self.path} has no attribute {name!r}")
            return default
        self.used.add("a:" + name)
        return self.attrs[name]

    def expect(self, name: str, expected: Any, default: Any = _MISSING) -> None:
        """Check an attribute (float values with a tolerance); ``default``: its value when absent (older code)."""
        value = self.attr(name, default)
        ok = _close(value, expected) if isinstance(expected, float) else value == expected
        if not ok:
            raise _fail(f"{self.path}.{name} = {value!r}, only {expected!r} is supported")

    def ignore(self, *names: str) -> None:
        """Mark attributes as read; callers state why they do not affect the float32 forward."""
        self.used.update("a:" + n for n in names if n in self.attrs)

    def finish(self) -> None:
        left = [f"tensor {k}" for k in self.tensors if "t:" + k not in self.used]
        left += [f"module {k}" for k in self.children if "m:" + k not in self.used]
        left += [f"attribute {k}" for k in self.attrs if "a:" + k not in self.used]
        if left:
            raise _fail(f"{self.path} has {', '.join(left)} that this converter does not understand")


# -- stylegan2-ada-pytorch / stylegan3 ------------------------------------------------------------------------------
# Generator keyword arguments: ADA nests synthesis settings in synthesis_kwargs, the stylegan3 repository's
# networks_stylegan2.py takes them as top-level keywords.
_GENERATOR_KWARGS = {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"}
_MAPPING_KWARGS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier", "w_avg_beta"}
_SYNTHESIS_KWARGS = {
    "channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "resample_filter", "use_noise",
    "activation", "kernel_size", "fp16_channels_last", "fused_modconv_default", "channels_last",
}


def convert_stylegan2_ada(g_ema: Any) -> tuple[dict[str, torch.Tensor], StyleGAN2Config]:
    """Convert the ``G_ema`` record of an ADA / stylegan3-repository pickle (see :mod:`.safe_pickle`).

    Args:
        g_ema: the :class:`PersistentObject` of class ``Generator`` found under the pickle's ``'G_ema'`` key.

    Returns:
        (state dict for ``StyleGAN2(config)``, including ``w_avg`` when the pickle tracks it, config).

    Raises:
        WeightsFormatError: not a StyleGAN2 generator (e.g. StyleGAN3's), a conditional one, a setting we do not
            implement, or a tensor missing, extra or of the wrong shape.

    Settings that only change speed or precision on NVIDIA's GPUs are accepted and ignored: ``num_fp16_res`` /
    ``use_fp16`` (we compute in float32, as NVIDIA's ``force_fp32=True`` and its CPU path), ``channels_last`` /
    ``fp16_channels_last`` (memory layout) and ``fused_modconv_default`` (both of NVIDIA's paths compute the same
    function). ``w_avg_beta`` only drives the training-time average of W.
    """
    g = _Node(g_ema, "G_ema", "Generator")
    if g.attr("c_dim") != 0:
        raise _fail("G_ema is a conditional generator (c_dim > 0); embedding needs an unconditional one")
    kwargs = _check_generator_kwargs(g.attr("_init_kwargs"), g.attr("_init_args"))
    mkw = dict(kwargs.get("mapping_kwargs") or {})
    skw = dict(kwargs.get("synthesis_kwargs") or {}) | {k: v for k, v in kwargs.items() if k in _SYNTHESIS_KWARGS}

    res, w_dim, z_dim = g.attr("img_resolution"), g.attr("w_dim"), g.attr("z_dim")
    mapping, synthesis = g.child("mapping", "MappingNetwork"), g.child("synthesis", "SynthesisNetwork")
    if "input" in synthesis.children or any(k.startswith("L") for k in synthesis.children):
        raise _fail("G_ema is a StyleGAN3 generator; only StyleGAN2 generators are supported")
    try:
        check_resolution(res)
    except WeightsFormatError as e:
        raise _fail(str(e)) from None

    tensors: dict[str, torch.Tensor] = {}
    blocks = [f"b{2 ** i}" for i in range(2, int(res).bit_length())]
    b4 = synthesis.child("b4", "SynthesisBlock")
    config = _config(
        resolution=res, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping.attr("num_layers"),
        channel_base=skw.get("channel_base", 32768), channel_max=skw.get("channel_max", 512),
        img_channels=g.attr("img_channels"), architecture=b4.attr("architecture"),
        conv_clamp=_conv_clamp(b4),
    )
    _check_synthesis_kwargs(skw, config)
    lr_mul, hidden = _convert_mapping(mapping, config, mkw, tensors)
    config = _config(**{**config.to_dict(), "mapping_lr_multiplier": lr_mul,
                        "mapping_features": None if hidden == w_dim else hidden})
    synthesis.expect("w_dim", w_dim)
    synthesis.expect("img_resolution", res)
    synthesis.expect("img_resolution_log2", len(blocks) + 1)
    synthesis.expect("img_channels", config.img_channels)
    synthesis.expect("block_resolutions", [int(b[1:]) for b in blocks])
    synthesis.ignore("num_fp16_res", "_init_args", "_init_kwargs")  # precision; settings checked from the Generator
    synthesis.expect("num_ws", config.num_ws)
    g.expect("num_ws", config.num_ws)
    for k, name in enumerate(blocks):
        block = b4 if k == 0 else synthesis.child(name, "SynthesisBlock")
        _convert_block(block, config, int(name[1:]), tensors)
    synthesis.finish()
    g.finish()
    _check_complete(tensors, config)
    return tensors, config


def _check_generator_kwargs(kwargs: Any, args: Any) -> dict:
    if args != () or not isinstance(kwargs, dict):
        raise _fail(f"G_ema was constructed with positional arguments {args!r}; expected keywords only")
    unknown = set(kwargs) - _GENERATOR_KWARGS - _SYNTHESIS_KWARGS
    unknown |= {f"mapping_kwargs.{k}" for k in set(kwargs.get("mapping_kwargs") or {}) - _MAPPING_KWARGS}
    unknown |= {f"synthesis_kwargs.{k}" for k in set(kwargs.get("synthesis_kwargs") or {}) - _SYNTHESIS_KWARGS}
    if unknown:
        raise _fail(f"G_ema was constructed with settings this converter does not know: {sorted(unknown)}")
    return kwargs


def _check_synthesis_kwargs(skw: dict, config: StyleGAN2Config) -> None:
    """The keyword arguments restate what the modules' attributes and shapes already showed; check they agree."""
    checks = {
        "architecture": config.architecture, "conv_clamp": config.conv_clamp, "use_noise": True,
        "activation": "lrelu", "kernel_size": 3, "resample_filter": list(FIR_TAPS),
    }
    for key, expected in checks.items():
        value = list(skw.get(key, [])) if key == "resample_filter" else skw.get(key)
        if key in skw and value != expected:
            raise _fail(f"synthesis setting {key} = {skw[key]!r} is not supported (expected {expected!r})")


def _convert_mapping(m: _Node, cfg: StyleGAN2Config, mkw: dict, out: dict) -> tuple[float, int]:
    """Fill ``mapping_net.*`` (and ``w_avg``); returns the learning-rate multiplier and hidden width found."""
    z_dim, w_dim = cfg.z_dim, cfg.w_dim
    m.expect("z_dim", z_dim)
    m.expect("w_dim", w_dim)
    m.expect("c_dim", 0)
    m.expect("num_ws", cfg.num_ws)
    m.ignore("w_avg_beta", "_init_args", "_init_kwargs")  # training-time EMA rate; kwargs restate the attributes
    if mkw.get("activation", "lrelu") != "lrelu":
        raise _fail(f"mapping activation {mkw['activation']!r} is not supported")
    layers = m.attr("num_layers")
    if layers != cfg.mapping_layers:
        raise _fail(f"mapping.num_layers = {layers}, expected {cfg.mapping_layers}")
    lr_mul, hidden = None, w_dim
    for i in range(layers):
        fc = m.child(f"fc{i}", "FullyConnectedLayer")
        weight, bias = fc.tensor("weight"), fc.tensor("bias")
        out_f, in_f = weight.shape
        if i == 0 and in_f != z_dim:
            raise _fail(f"mapping.fc0 takes {in_f} inputs, expected z_dim = {z_dim}")
        if i < layers - 1:
            hidden = out_f
        lr_mul = float(fc.attr("bias_gain")) if lr_mul is None else lr_mul
        fc.expect("activation", "lrelu")
        fc.expect("bias_gain", lr_mul)
        fc.expect("weight_gain", lr_mul / math.sqrt(in_f))
        fc.ignore("in_features", "out_features", "_init_args", "_init_kwargs")  # restate the shapes
        fc.finish()
        out[f"mapping_net.fc{i}.weight"] = _float_tensor(weight, f"mapping.fc{i}.weight")
        out[f"mapping_net.fc{i}.bias"] = _float_tensor(bias, f"mapping.fc{i}.bias")
    if m.has("w_avg"):
        out["w_avg"] = _float_tensor(m.tensor("w_avg"), "mapping.w_avg")
    m.finish()
    return lr_mul, hidden


def _conv_clamp(b4: _Node) -> float | None:
    """The clamp every conv of the network shares (read from the first layer; all others are checked)."""
    value = b4.children.get("conv1")
    clamp = value.state.get("conv_clamp") if isinstance(value, PersistentObject) else None
    return None if clamp is None else float(clamp)


def _convert_block(b: _Node, cfg: StyleGAN2Config, res: int, out: dict) -> None:
    p = f"b{res}"
    in_ch = cfg.channels(res // 2) if res > 4 else 0
    is_last = res == cfg.resolution
    b.expect("in_channels", in_ch)
    b.expect("w_dim", cfg.w_dim)
    b.expect("resolution", res)
    b.expect("img_channels", cfg.img_channels)
    b.expect("is_last", is_last)
    b.expect("architecture", cfg.architecture)
    b.expect("num_conv", 1 if res == 4 else 2)
    has_rgb = is_last or cfg.architecture == "skip"
    b.expect("num_torgb", int(has_rgb))
    # Precision and memory-layout switches: we always compute in float32 (NVIDIA's force_fp32 / CPU path).
    b.ignore("use_fp16", "channels_last", "fused_modconv_default", "_init_args", "_init_kwargs")
    _check_filter(b.tensor("resample_filter"), f"synthesis.{p}.resample_filter")
    if res == 4:
        out[f"{p}.const"] = _float_tensor(b.tensor("const"), f"synthesis.{p}.const")
    else:
        _convert_layer(b.child("conv0", "SynthesisLayer"), cfg, res, True, 1.0, out)
    _convert_layer(b.child("conv1", "SynthesisLayer"), cfg, res, False, 1.0, out)
    if has_rgb:
        t = b.child("torgb", "ToRGBLayer")
        weight = t.tensor("weight")
        t.expect("weight_gain", 1.0 / math.sqrt(weight.shape[1] * weight.shape[2] * weight.shape[3]))
        t.expect("conv_clamp", cfg.conv_clamp)
        t.ignore("in_channels", "out_channels", "w_dim", "_init_args", "_init_kwargs")  # restate the shapes
        _affine(t, f"{p}.torgb", out)
        out[f"{p}.torgb.weight"] = _float_tensor(weight, f"synthesis.{p}.torgb.weight")
        out[f"{p}.torgb.bias"] = _float_tensor(t.tensor("bias"), f"synthesis.{p}.torgb.bias")
        t.finish()
    if cfg.architecture == "resnet" and res > 4:
        s = b.child("skip", "Conv2dLayer")
        weight = s.tensor("weight")
        for name, expected in (("activation", "linear"), ("up", 2), ("down", 1), ("conv_clamp", None), ("padding", 0),
                               ("weight_gain", 1.0 / math.sqrt(weight.shape[1])), ("act_gain", 1.0)):
            s.expect(name, expected)
        if s.attrs.get("bias", None) is not None or "bias" in s.tensors:
            raise _fail(f"synthesis.{p}.skip has a bias; NVIDIA's resnet shortcut has none")
        s.ignore("bias", "in_channels", "out_channels", "_init_args", "_init_kwargs")
        _check_filter(s.tensor("resample_filter"), f"synthesis.{p}.skip.resample_filter")
        out[f"{p}.skip.weight"] = _float_tensor(weight, f"synthesis.{p}.skip.weight")
        s.finish()
    b.finish()


def _convert_layer(layer: _Node, cfg: StyleGAN2Config, res: int, up: bool, gain: float, out: dict) -> None:
    name = f"b{res}.conv{0 if up else 1}"
    layer.expect("resolution", res)
    layer.expect("up", 2 if up else 1)
    layer.expect("use_noise", True)
    layer.expect("activation", "lrelu")
    layer.expect("padding", 1)
    layer.expect("act_gain", LRELU_GAIN * gain)
    layer.expect("conv_clamp", cfg.conv_clamp)
    layer.ignore("in_channels", "out_channels", "w_dim", "_init_args", "_init_kwargs")  # restate the shapes
    _check_filter(layer.tensor("resample_filter"), f"synthesis.{name}.resample_filter")
    _affine(layer, name, out)
    for t in ("weight", "bias", "noise_strength", "noise_const"):
        out[f"{name}.{t}"] = _float_tensor(layer.tensor(t), f"synthesis.{name}.{t}")
    layer.finish()


def _affine(parent: _Node, name: str, out: dict) -> None:
    a = parent.child("affine", "FullyConnectedLayer")
    weight = a.tensor("weight")
    a.expect("activation", "linear")
    a.expect("bias_gain", 1.0)
    a.expect("weight_gain", 1.0 / math.sqrt(weight.shape[1]))
    a.ignore("in_features", "out_features", "_init_args", "_init_kwargs")  # restate the shapes
    out[f"{name}.affine.weight"] = _float_tensor(weight, f"synthesis.{name}.affine.weight")
    out[f"{name}.affine.bias"] = _float_tensor(a.tensor("bias"), f"synthesis.{name}.affine.bias")
    a.finish()


# -- rosinality/stylegan2-pytorch -----------------------------------------------------------------------------------
ROSINALITY_LR_MLP = 0.01  # rosinality's Generator(lr_mlp=0.01) default; the .pt does not record it


def convert_rosinality(
    state_dict: Mapping[str, Any],
    latent_avg: torch.Tensor | None = None,
    *,
    lr_mlp: float = ROSINALITY_LR_MLP,
) -> tuple[dict[str, torch.Tensor], StyleGAN2Config]:
    """Convert rosinality's ``g_ema`` state dict.

    Args:
        state_dict: the ``'g_ema'`` entry of the ``.pt`` (``style.{i}``, ``input.input``, ``conv1``, ``to_rgb1``,
            ``convs.{j}``, ``to_rgbs.{k}``, ``noises.noise_{n}``).
        latent_avg: the file's top-level ``latent_avg`` ([w_dim] or [1, w_dim]), becomes ``w_avg``; None: absent.
        lr_mlp: the mapping network's learning-rate multiplier, which the file does not record (rosinality's
            default 0.01 is what ``convert_weight.py`` and ``train.py`` use).

    Returns:
        (state dict for ``StyleGAN2(config)``, config).

    Raises:
        WeightsFormatError: a key missing, unexpected or of the wrong shape; the message names it.
    """
    sd = dict(state_dict)
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise _fail(f"g_ema has no tensor {key!r}")
        used.add(key)
        return _float_tensor(sd[key], f"g_ema[{key!r}]")

    n_mlp = sum(1 for k in sd if re.fullmatch(r"style\.\d+\.weight", k))
    n_blocks = sum(1 for k in sd if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k))
    if n_mlp == 0 or "input.input" not in sd:
        raise _fail("g_ema has no style.{i}.weight / input.input: not a rosinality StyleGAN2 generator")
    res = 2 ** (n_blocks + 2)
    out: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        out[f"mapping_net.fc{i}.weight"] = take(f"style.{i + 1}.weight")  # style.0 is the PixelNorm
        out[f"mapping_net.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    w_dim = out["mapping_net.fc0.weight"].shape[1]
    const = take("input.input")
    out["b4.const"] = const[0]
    channels = {4: const.shape[1]}

    def styled_conv(src: str, dst: str, res: int, noise: int, up: bool) -> None:
        weight = take(f"{src}.conv.weight")[0]  # [O, I, 3, 3]
        out[f"{dst}.weight"] = weight / math.sqrt(weight[0].numel())  # rosinality's 1/sqrt(fan_in) in forward
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape(())
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        out[f"{dst}.noise_const"] = take(f"noises.noise_{noise}").reshape(res, res)
        if up:
            _check_filter(take(f"{src}.conv.blur.kernel"), f"g_ema[{src}.conv.blur.kernel]", gain=4.0)
        channels[res] = weight.shape[0]

    def to_rgb(src: str, dst: str, upsample: bool) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]  # 1/sqrt(fan_in): NVIDIA applies it to the style
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)
        if upsample:
            _check_filter(take(f"{src}.upsample.kernel"), f"g_ema[{src}.upsample.kernel]", gain=4.0)

    styled_conv("conv1", "b4.conv1", 4, 0, False)
    to_rgb("to_rgb1", "b4.torgb", False)
    for k in range(n_blocks):
        r = 2 ** (k + 3)
        styled_conv(f"convs.{2 * k}", f"b{r}.conv0", r, 2 * k + 1, True)
        styled_conv(f"convs.{2 * k + 1}", f"b{r}.conv1", r, 2 * k + 2, False)
        to_rgb(f"to_rgbs.{k}", f"b{r}.torgb", True)
    left = sorted(set(sd) - used)
    if left:
        raise _fail(f"g_ema has tensors this converter does not understand: {left[:8]}")

    config = _config(
        resolution=res, z_dim=w_dim, w_dim=w_dim, mapping_layers=n_mlp, mapping_lr_multiplier=lr_mlp,
        channel_base=_channel_base(channels, res), channel_max=channels[4], img_channels=3,
    )
    if latent_avg is not None:
        avg = _float_tensor(latent_avg, "latent_avg")
        if avg.numel() != w_dim:
            raise _fail(f"latent_avg has shape {list(avg.shape)}, expected [{w_dim}]")
        out["w_avg"] = avg.reshape(w_dim)
    _check_complete(out, config)
    return out, config


def _channel_base(channels: dict[int, int], res: int) -> int:
    """A channel_base reproducing the widths found (with channel_max = the 4 px width); :func:`_check_complete`
    then checks every shape against it, so an irregular channel table is refused there."""
    below_max = [c * r for r, c in channels.items() if c < channels[4]]
    return max(below_max) if below_max else channels[4] * res


def _check_complete(state: dict[str, torch.Tensor], config: StyleGAN2Config) -> None:
    """Every target tensor filled with the right shape, nothing extra (``w_avg`` optional: computed if absent).
    The target's shapes come from a meta-device build (no memory); ``config`` was checked by :func:`_config`."""
    target = expected_state(config, StyleGAN2)
    missing = sorted(set(target) - set(state) - {"w_avg"})
    extra = sorted(set(state) - set(target))
    if missing or extra:
        raise _fail(f"state dict mismatch: missing {missing[:6]}, unexpected {extra[:6]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise _fail(f"{key} has shape {list(value.shape)}, expected {list(target[key].shape)} for {config}")
