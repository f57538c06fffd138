"""Converter: MobileStyleGAN OpenVINO IR (the ``random-face`` export) -> :class:`MobileStyleGAN` state dict.

Strict in both directions, in the manner of NVIDIA's ``legacy.py``: every tensor of the target module is filled
exactly once with the right shape, every float constant of the source graph is either used or recognised (and
checked: Haar filters, leaky-ReLU slopes, equalised-lr scales, sqrt(2) gains), and anything unexpected raises
:class:`ConversionError`. Pure ``dict -> dict``: no file I/O here (see :func:`image2stylegan.ir.read_ir`).

The export froze each layer's noise as a constant already multiplied by that layer's learned noise strength. We
split it back: strength = std(map) (the map was one N(0, 1) draw times the strength) and the stored unit-scale map
= map / strength, so optimised noise maps live at unit scale like the paper's N(0, I) initialisation.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import Image2StyleGANError
from ..ir import IRGraph, IRLayer
from .mobilestylegan import MobileStyleGAN, MobileStyleGANConfig


class ConversionError(Image2StyleGANError):
    """The checkpoint does not have the structure this converter understands."""


_HAAR = 1.0 / math.sqrt(2.0)


def convert_mobilestylegan_ir(mapping: IRGraph, synthesis: IRGraph) -> tuple[dict[str, torch.Tensor], MobileStyleGANConfig]:
    """Convert the two IR graphs into a state dict for ``MobileStyleGAN(config)`` (``w_avg`` excluded: it is not in
    the export and is computed from the mapping network by the caller)."""
    used: set[str] = set()
    sd: dict[str, np.ndarray] = {}
    sd.update(_convert_mapping(mapping, used))
    mapping_used = set(used)
    _check_all_used(mapping, mapping_used, "MappingNetwork")

    used = set()
    synth_sd, config = _convert_synthesis(synthesis, used)
    sd.update(synth_sd)
    _check_all_used(synthesis, used, "SynthesisNetwork")

    state = {k: torch.tensor(np.asarray(v, dtype=np.float32)) for k, v in sd.items()}
    _check_complete(state, config)
    return state, config


# -- mapping -----------------------------------------------------------------------------------------------------
def _convert_mapping(g: IRGraph, used: set[str]) -> dict[str, np.ndarray]:
    out = {}
    matmuls = g.of_type("MatMul")
    for i, mm in enumerate(matmuls):
        weight_id = _const_input(g, mm, used)
        add = _only_user(g, mm, "Add")
        bias_id = _const_input_through(g, add, used)
        prelu = _only_user(g, add, "PReLU")
        _expect_scalar(g, prelu, used, 0.2, "mapping leaky-ReLU slope")
        gain = _only_user(g, prelu, "Multiply")
        _expect_scalar(g, gain, used, math.sqrt(2.0), "mapping activation gain")
        out[f"mapping_net.fc.{i}.weight"] = g.const(weight_id)
        out[f"mapping_net.fc.{i}.bias"] = g.const(bias_id).reshape(-1)
    if len(matmuls) != 8:
        raise ConversionError(f"expected 8 mapping layers, found {len(matmuls)}")
    # Pixel norm constants (exponent 2, eps 1e-8, 0.5 for sqrt, -1 for the reciprocal, numerator 1).
    for layer in g.of_type("Power") + g.of_type("Add") + g.of_type("Multiply"):
        for src in layer.inputs:
            if g.is_const(src) and g.const(src).size == 1:
                used.add(src)
    return out


# -- synthesis ---------------------------------------------------------------------------------------------------
def _convert_synthesis(g: IRGraph, used: set[str]) -> tuple[dict[str, np.ndarray], MobileStyleGANConfig]:
    named = {layer.name: layer.id for layer in g.of_type("Const")}

    def take(name: str) -> np.ndarray:
        if name not in named:
            raise ConversionError(f"SynthesisNetwork has no tensor {name!r}")
        used.add(named[name])
        return g.const(named[name])

    num_blocks = 1 + max(int(n.split(".")[2]) for n in named if n.startswith("m.layers."))
    out: dict[str, np.ndarray] = {"const": take("m.input.input")}

    # 4x4 layer: full 3x3 conv.
    style_mul = _style_multiply(g, "m.conv1.conv.modulation", named)
    conv = _only_user(g, style_mul, "Convolution")
    out["conv1.weight"] = g.const(_const_input(g, conv, used))
    fan_in = out["conv1.weight"].shape[1] * 9
    _check_style_scale(g, "m.conv1.conv.modulation", named, used, fan_in)
    out.update(_style(take, "m.conv1.conv.modulation", "conv1.style"))
    out.update(_noise_and_bias(g, conv, take("m.conv1.bias"), "conv1.act", used))

    channels = []
    for i in range(num_blocks):
        res = 8 * 2**i
        blk = f"blocks.b{res}"
        out.update(_style(take, f"m.layers.{i}.up.modulation", f"{blk}.up.style"))
        _check_style_scale(g, f"m.layers.{i}.up.modulation", named, used, None)
        for k in ("conv1", "conv2"):
            src = f"m.layers.{i}.{k}"
            dw_layer = _only_user_of_const(g, named[f"{src}.conv.weight_dw"], "GroupConvolution")
            out[f"{blk}.{k}.weight_dw"] = take(f"{src}.conv.weight_dw").reshape(-1, 1, 3, 3)
            pw = _only_user(g, dw_layer, "Convolution")
            out[f"{blk}.{k}.weight_pw"] = g.const(_const_input(g, pw, used))
            _check_style_scale(g, f"{src}.conv.modulation", named, used, out[f"{blk}.{k}.weight_dw"].shape[0] * 9)
            out.update(_style(take, f"{src}.conv.modulation", f"{blk}.{k}.style"))
            out.update(_noise_and_bias(g, pw, take(f"{src}.bias"), f"{blk}.{k}.act", used))
        channels.append(out[f"{blk}.conv2.weight_pw"].shape[0])

    last = f"m.layers.{num_blocks - 1}.to_img"
    out.update(_style(take, f"{last}.conv.modulation", "torgb.style"))
    out["torgb.weight"] = take(f"{last}.conv.weight")
    out["torgb.bias"] = take(f"{last}.bias").reshape(-1)
    _check_style_scale(g, f"{last}.conv.modulation", named, used, out["torgb.weight"].shape[1])

    _check_haar_filters(g, used)
    for prelu in g.of_type("PReLU"):
        _expect_scalar(g, prelu, used, 0.2, "synthesis leaky-ReLU slope")
    _mark_shape_consts(g, used)

    config = MobileStyleGANConfig(
        base_channels=out["const"].shape[1],
        channels=tuple(channels),
        image_channels=out["torgb.weight"].shape[0] // 4,
    )
    return out, config


def _style(take, src: str, dst: str) -> dict[str, np.ndarray]:
    return {f"{dst}.affine.weight": take(f"{src}.weight"), f"{dst}.affine.bias": take(f"{src}.bias").reshape(-1)}


def _style_multiply(g: IRGraph, src: str, named: dict) -> IRLayer:
    """Follow modulation MatMul -> Add -> Reshape [-> Multiply(scale)] -> Multiply(activation)."""
    matmul = _only_user_of_const(g, named[f"{src}.weight"], "MatMul")
    node = _only_user(g, _only_user(g, matmul, "Add"), "Reshape")
    node = _only_user(g, node, "Multiply")
    if any(g.is_const(i) for i in node.inputs):  # the equalised-lr scale
        node = _only_user(g, node, "Multiply")
    return node


def _check_style_scale(g: IRGraph, src: str, named: dict, used: set[str], fan_in: int | None) -> None:
    matmul = _only_user_of_const(g, named[f"{src}.weight"], "MatMul")
    mul = _only_user(g, _only_user(g, _only_user(g, matmul, "Add"), "Reshape"), "Multiply")
    consts = [i for i in mul.inputs if g.is_const(i)]
    expected = 1.0 if fan_in is None else 1.0 / math.sqrt(fan_in)
    if not consts:
        if fan_in is not None:
            raise ConversionError(f"{src}: expected a modulation scale 1/sqrt({fan_in}), found none")
        return
    value = float(g.const(consts[0]).reshape(-1)[0])
    if not math.isclose(value, expected, rel_tol=1e-5):
        raise ConversionError(f"{src}: modulation scale {value} != 1/sqrt(fan_in) = {expected}")
    used.add(consts[0])


def _noise_and_bias(g: IRGraph, conv: IRLayer, bias: np.ndarray, dst: str, used: set[str]) -> dict[str, np.ndarray]:
    add_noise = _only_user(g, conv, "Add")
    noise_id = _const_input(g, add_noise, used)
    scaled = g.const(noise_id)
    if scaled.ndim != 4 or scaled.shape[:2] != (1, 1):
        raise ConversionError(f"{dst}: noise constant has shape {scaled.shape}, expected [1, 1, H, W]")
    strength = float(scaled.std(dtype=np.float64))
    add_bias = _only_user(g, add_noise, "Add")
    if not any(g.is_const(i) and g.const(i).shape == (1, bias.size, 1, 1) for i in add_bias.inputs):
        raise ConversionError(f"{dst}: expected the bias add after the noise add")
    return {
        f"{dst}.noise_const": scaled / strength,
        f"{dst}.noise_strength": np.asarray(strength, dtype=np.float32),
        f"{dst}.bias": bias.reshape(-1),
    }


def _check_haar_filters(g: IRGraph, used: set[str]) -> None:
    lo, hi = np.array([_HAAR, _HAAR]), np.array([_HAAR, -_HAAR])
    for layer in g.of_type("GroupConvolutionBackpropData"):
        if layer.attrs.get("pads_begin") != "0, 0" or layer.attrs.get("pads_end") != "0, 0":
            raise ConversionError(f"{layer.name}: IDWT transposed conv with padding is not supported")
        fid = _const_input(g, layer, used)
        taps = g.const(fid).reshape(g.const(fid).shape[0], 2)
        if not (np.allclose(taps, lo, atol=1e-6) or np.allclose(taps, hi, atol=1e-6)):
            raise ConversionError(f"{layer.name}: filter is not a Haar synthesis filter: {taps[0]}")


def _mark_shape_consts(g: IRGraph, used: set[str]) -> None:
    """Integer constants (shapes, axes, split sizes) and the broadcast fill value only drive reshapes."""
    for lid, value in g.consts.items():
        if value.dtype.kind in "iub":
            used.add(lid)
    for layer in g.of_type("Broadcast"):
        used.update(i for i in layer.inputs if g.is_const(i))


# -- graph helpers -----------------------------------------------------------------------------------------------
def _only_user(g: IRGraph, layer: IRLayer, op_type: str) -> IRLayer:
    users = g.users(layer.id, op_type)
    if len(users) != 1:
        raise ConversionError(f"{layer.name}: expected one {op_type} consumer, found {len(users)}")
    return users[0]


def _only_user_of_const(g: IRGraph, const_id: str, op_type: str) -> IRLayer:
    return _only_user(g, g.layers[const_id], op_type)


def _const_input(g: IRGraph, layer: IRLayer, used: set[str]) -> str:
    consts = [i for i in layer.inputs if g.is_const(i)]
    if len(consts) != 1:
        raise ConversionError(f"{layer.name}: expected one constant input, found {len(consts)}")
    used.add(consts[0])
    return consts[0]


def _const_input_through(g: IRGraph, layer: IRLayer, used: set[str]) -> str:
    """A constant feeding ``layer`` directly or through one Reshape (how the mapping biases are wired)."""
    for src in layer.inputs:
        if g.is_const(src):
            used.add(src)
            return src
        node = g.layers[src]
        if node.type == "Reshape" and g.is_const(node.inputs[0]):
            used.add(node.inputs[0])
            return node.inputs[0]
    raise ConversionError(f"{layer.name}: no constant input found")


def _expect_scalar(g: IRGraph, layer: IRLayer, used: set[str], expected: float, what: str) -> None:
    cid = _const_input(g, layer, used)
    value = float(g.const(cid).reshape(-1)[0])
    if g.const(cid).size != 1 or not math.isclose(value, expected, rel_tol=1e-6):
        raise ConversionError(f"{layer.name}: {what} is {value}, expected {expected}")


def _check_all_used(g: IRGraph, used: set[str], which: str) -> None:
    left = [g.layers[lid].name for lid, v in g.consts.items() if lid not in used and v.dtype.kind == "f"]
    if left:
        raise ConversionError(f"{which}: {len(left)} float constant(s) not understood, e.g. {left[:5]}")


def _check_complete(state: dict[str, torch.Tensor], config: MobileStyleGANConfig) -> None:
    target = MobileStyleGAN(config).state_dict()
    expected = set(target) - {"w_avg"}
    missing, extra = expected - set(state), set(state) - expected
    if missing or extra:
        raise ConversionError(f"state dict mismatch: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(target[key].shape):
            raise ConversionError(f"{key}: shape {tuple(value.shape)} != expected {tuple(target[key].shape)}")
