"""StyleGAN2 / ADA generator and its checkpoint loaders, on tiny seeded configurations.

Every format is written here with the structure of the official files, then loaded and checked against
``_reference_forward``: a slow, per-sample implementation of NVIDIA's networks.py mathematics that shares no code
with the package (NVIDIA's generic up-sampling path: zero insertion, padding, FIR filter, then a true convolution).

How the NVIDIA pickle structure was verified: NVlabs/stylegan2-ada-pytorch (commit d72cc7d) was run, outside this
project, to build a ``training.networks.Generator`` and ``pickle.dump`` it as its training loop does (torch 2.13). The
globals its stream references are exactly ``_NVIDIA_GLOBALS`` below (``dnnlib.util.EasyDict`` appears as soon as the
keyword arguments are EasyDicts, as in ``train.py``), and the state of each persistent object has the same keys as
the modules built by ``_nvidia_module`` (nn.Module internals + the attributes listed there). The test asserts the
globals of its own pickle, so a drift would show. The same external script compared our loader's output with
NVIDIA's own forward at 256 px and 1024 px (max abs difference <= 1e-4).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import math
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
from nvidia_modules import nvidia_stand_ins
import torch
import torch.nn.functional as F
from torch import nn

from image2stylegan.errors import WeightsFormatError
from image2stylegan.generators import safe_pickle
from image2stylegan.generators.base import compute_w_avg
from image2stylegan.generators.checkpoints import (
    checkpoint_sha256,
    convert_checkpoint,
    load_checkpoint,
    read_checkpoint,
    save_converted,
    sniff_format,
)
from image2stylegan.generators.convert_stylegan2 import convert_rosinality
from image2stylegan.generators.stylegan2 import StyleGAN2, StyleGAN2Config, modulated_conv2d, upsample2d

TOL = dict(atol=2e-5, rtol=1e-5)


def tiny_config(**overrides) -> StyleGAN2Config:
    base = dict(resolution=16, z_dim=12, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
    return StyleGAN2Config(**{**base, **overrides})  # channels 16 (4, 8 px) and 8 (16 px)


def random_state(config: StyleGAN2Config, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded values for every tensor, sized so that activations stay O(1) and every path (noise, bias) matters."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, t in StyleGAN2(config).state_dict().items():
        r = torch.randn(t.shape, generator=g)
        if key.endswith("affine.bias"):
            r = 1.0 + 0.2 * r
        elif key.endswith(("bias", "noise_strength")):
            r = 0.3 * r
        state[key] = r
    return state


def tiny_generator(config: StyleGAN2Config, seed: int = 0) -> StyleGAN2:
    g = StyleGAN2(config)
    g.load_state_dict(random_state(config, seed))
    return g.requires_grad_(False).eval()


# -- the independent reference ---------------------------------------------------------------------------------------
def _fir(gain: float) -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = torch.outer(f, f)
    return f * gain / f.sum()


def _ref_upsample(x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Zero insertion (x at even positions), zero padding, FIR filter with gain 4 (NVIDIA's upfirdn2d)."""
    b, c, h, w = x.shape
    z = x.new_zeros(b, c, 2 * h, 2 * w)
    z[:, :, ::2, ::2] = x
    z = F.pad(z, (pad[0], pad[1], pad[0], pad[1]))
    return F.conv2d(z, _fir(4.0).expand(c, 1, 4, 4), groups=c)


def _ref_layer(x, w, weight, affine_w, affine_b, demod, up):
    """One sample through a modulated conv: per-sample weights, NVIDIA's generic path when upsampling."""
    s = w @ (affine_w / math.sqrt(affine_w.shape[1])).t() + affine_b
    if not demod:
        s = s / math.sqrt(weight[0].numel())
    wt = weight * s.view(1, -1, 1, 1)
    if demod:
        wt = wt / torch.sqrt(wt.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
    if up:
        return F.conv2d(_ref_upsample(x, (3, 2)), wt.flip(2, 3))  # true convolution after the FIR
    return F.conv2d(x, wt, padding=weight.shape[-1] // 2)


def _ref_conv(x, w, sd, p, cfg, noise, up, gain=1.0):
    y = _ref_layer(x, w, sd[f"{p}.weight"], sd[f"{p}.affine.weight"], sd[f"{p}.affine.bias"], True, up)
    n = sd[f"{p}.noise_const"][None, None] if noise is None else noise
    y = y + n * sd[f"{p}.noise_strength"] + sd[f"{p}.bias"].view(1, -1, 1, 1)
    y = F.leaky_relu(y, 0.2) * math.sqrt(2) * gain
    return y if cfg.conv_clamp is None else y.clamp(-cfg.conv_clamp * gain, cfg.conv_clamp * gain)


def _reference_forward(sd, cfg, ws, noise=None, capture=()):
    """Image (and named activations) for ws [B, num_ws, w_dim], one sample at a time."""
    images, acts = [], {name: [] for name in capture}
    for b in range(ws.shape[0]):
        maps = iter([n[b : b + 1] if n.shape[0] > 1 else n for n in noise] if noise is not None else [])
        nxt = (lambda: next(maps)) if noise is not None else (lambda: None)
        x = img = None
        w_idx = 0
        for res in [2**i for i in range(2, cfg.resolution.bit_length())]:
            p, last = f"b{res}", res == cfg.resolution
            n_conv, n_rgb = (1 if res == 4 else 2), int(last or cfg.architecture == "skip")
            rows = iter(ws[b, w_idx : w_idx + n_conv + n_rgb])
            w_idx += n_conv
            if res == 4:
                x = _ref_conv(sd["b4.const"][None], next(rows), sd, "b4.conv1", cfg, nxt(), False)
                names = ["b4.conv1"]
            else:
                resnet = cfg.architecture == "resnet"
                if resnet:
                    skip = F.conv2d(x, sd[f"{p}.skip.weight"] / math.sqrt(x.shape[1]))
                    skip = _ref_upsample(skip, (2, 1)) * math.sqrt(0.5)
                x = _ref_conv(x, next(rows), sd, f"{p}.conv0", cfg, nxt(), True)
                if capture and f"{p}.conv0" in capture:
                    acts[f"{p}.conv0"].append(x)
                x = _ref_conv(x, next(rows), sd, f"{p}.conv1", cfg, nxt(), False, math.sqrt(0.5) if resnet else 1.0)
                x = x + skip if resnet else x
                names = [f"{p}.conv1"]
            for name in names:
                if name in capture:
                    acts[name].append(x)
            if n_rgb:
                y = _ref_layer(x, next(rows), sd[f"{p}.torgb.weight"], sd[f"{p}.torgb.affine.weight"],
                               sd[f"{p}.torgb.affine.bias"], False, False)
                y = y + sd[f"{p}.torgb.bias"].view(1, -1, 1, 1)
                y = y if cfg.conv_clamp is None else y.clamp(-cfg.conv_clamp, cfg.conv_clamp)
                if f"{p}.torgb" in capture:
                    acts[f"{p}.torgb"].append(y)
                img = y if img is None else _ref_upsample(img, (2, 1)) + y
        images.append(img)
    return torch.cat(images), {k: torch.cat(v) for k, v in acts.items()}


def _ref_mapping(sd, cfg, z):
    x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
    for i in range(cfg.mapping_layers):
        wt, bs = sd[f"mapping_net.fc{i}.weight"], sd[f"mapping_net.fc{i}.bias"]
        lr = cfg.mapping_lr_multiplier
        x = F.leaky_relu(x @ (wt * lr / math.sqrt(wt.shape[1])).t() + bs * lr, 0.2) * math.sqrt(2)
    return x


def _ws(g: StyleGAN2, batch: int = 1, seed: int = 1) -> torch.Tensor:
    return g.w_avg + 0.7 * torch.randn(batch, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(seed))


# -- model ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch,clamp", [("skip", None), ("skip", 0.4), ("orig", None), ("resnet", 0.4)])
def test_forward_matches_the_reference(arch, clamp):
    cfg = tiny_config(architecture=arch, conv_clamp=clamp)
    g = tiny_generator(cfg)
    sd = random_state(cfg)
    ws = _ws(g, 2)
    expected, _ = _reference_forward(sd, cfg, ws)
    torch.testing.assert_close(g.synthesis(ws), expected, **TOL)  # batch 2: activation-scaling path
    torch.testing.assert_close(g.synthesis(ws[1:]), expected[1:], **TOL)  # batch 1: folded-weight path
    z = torch.randn(3, cfg.z_dim, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(g.mapping(z), _ref_mapping(sd, cfg, z), **TOL)


def test_upsample2d_and_modulated_conv_match_nvidias_generic_path():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 6, 7, generator=gen)
    torch.testing.assert_close(upsample2d(x), _ref_upsample(x, (2, 1)), atol=1e-6, rtol=0)
    weight, styles = torch.randn(4, 5, 3, 3, generator=gen), torch.randn(2, 5, generator=gen)
    blur = _fir(4.0).expand(4, 1, 4, 4)
    eye = torch.eye(5) * math.sqrt(5)  # identity affine: s = w
    for up in (False, True):
        want = torch.cat([_ref_layer(x[b : b + 1], styles[b], weight, eye, torch.zeros(5), True, up) for b in range(2)])
        got = modulated_conv2d(x, weight, styles, up=up, blur=blur)  # batch 2
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        got1 = modulated_conv2d(x[:1], weight, styles[:1], up=up, blur=blur)  # batch 1, folded
        torch.testing.assert_close(got1, want[:1], atol=1e-5, rtol=1e-5)


def test_wplus_gradients_agree_between_evaluation_paths():
    g = tiny_generator(tiny_config())
    ws = _ws(g, 1).requires_grad_(True)
    g.synthesis(ws).square().mean().backward()  # activation scaling (styles need a gradient)
    ref_ws = _ws(g, 1).requires_grad_(True)
    _reference_forward(random_state(g.config), g.config, ref_ws)[0].square().mean().backward()
    torch.testing.assert_close(ws.grad, ref_ws.grad, atol=1e-6, rtol=1e-4)


def test_joint_wplus_and_noise_gradients_match_the_reference():
    cfg = tiny_config(conv_clamp=0.9)  # the clamp is active for some activations of this seed
    g, sd = tiny_generator(cfg), random_state(cfg)
    base_ws, base_noise = _ws(g, 1), g.make_noise(1, "extended", generator=torch.Generator().manual_seed(6))
    grads = []
    for forward in (g.synthesis, lambda w, n: _reference_forward(sd, cfg, w, n)[0]):
        ws = base_ws.clone().requires_grad_(True)
        noise = [n.clone().requires_grad_(True) for n in base_noise]
        forward(ws, noise).square().mean().backward()
        grads.append([ws.grad] + [n.grad for n in noise])
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-4)


def test_layout_rows_resolutions_and_nvidias_w_counts():
    for res, num_ws in ((256, 14), (512, 16), (1024, 18)):
        assert StyleGAN2Config(resolution=res).num_ws == num_ws
    g = tiny_generator(tiny_config())
    assert g.layer_names() == (
        "b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b8.torgb", "b16.conv0", "b16.conv1", "b16.torgb"
    )
    assert g.layer_rows() == [0, 1, 1, 2, 3, 3, 4, 5]
    assert g.layer_resolutions() == [4, 4, 8, 8, 8, 16, 16, 16]
    assert max(r for r in g.layer_rows() if r is not None) == g.num_ws - 1 == 5
    assert [n.layer for n in g.noise_inputs] == ["b4.conv1", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]
    assert g.noise_shapes("extended") == [(1, 4, 4), (16, 8, 8), (16, 8, 8), (8, 16, 16), (8, 16, 16)]
    assert g.rows_up_to(8) == [0, 1, 2, 3]
    trace = g.synthesis_trace(g.mean_ws(2), capture=g.layer_names())
    for name, res in zip(g.layer_names(), g.layer_resolutions()):
        assert trace.activations[name].shape[-2:] == (res, res)
    resnet = StyleGAN2(tiny_config(architecture="resnet"))
    assert "b8.skip" in resnet.layer_names() and len(resnet.layer_rows()) == len(resnet.layer_resolutions())
    orig = StyleGAN2(tiny_config(architecture="orig"))
    assert [n for n in orig.layer_names() if n.endswith("torgb")] == ["b16.torgb"] and orig.num_ws == 6


def test_noise_strengths_and_explicit_noise():
    cfg = tiny_config()
    g, sd = tiny_generator(cfg), random_state(cfg)
    strengths = [sd[f"{n.layer}.noise_strength"].item() for n in g.noise_inputs]
    assert g.noise_strengths() == pytest.approx(strengths)
    ws = _ws(g, 2)
    stored = [sd[f"{n.layer}.noise_const"][None, None] for n in g.noise_inputs]
    torch.testing.assert_close(g.synthesis(ws), g.synthesis(ws, stored), atol=0, rtol=0)  # None = stored maps
    noise = g.make_noise(2, generator=torch.Generator().manual_seed(4))  # unit scale; strengths applied inside
    torch.testing.assert_close(g.synthesis(ws, noise), _reference_forward(sd, cfg, ws, noise)[0], **TOL)
    # Extended space: per-channel maps; a map repeated over the channels equals the single-channel one.
    ext = [n.expand(-1, c, -1, -1).clone() for n, (c, _, _) in zip(noise, g.noise_shapes("extended"))]
    torch.testing.assert_close(g.synthesis(ws, ext), g.synthesis(ws, noise), atol=1e-6, rtol=0)
    # With zero strengths the noise no longer matters.
    zero = {k: (torch.zeros_like(v) if k.endswith("noise_strength") else v) for k, v in sd.items()}
    g0 = StyleGAN2(cfg)
    g0.load_state_dict(zero)
    torch.testing.assert_close(g0.synthesis(ws, noise), g0.synthesis(ws), atol=0, rtol=0)


def test_capture_and_edits_at_named_layers():
    cfg = tiny_config()
    g, sd = tiny_generator(cfg), random_state(cfg)
    ws = _ws(g, 2)
    names = ("b8.conv0", "b8.conv1", "b16.torgb")
    trace = g.synthesis_trace(ws, capture=names)
    _, want = _reference_forward(sd, cfg, ws, capture=names)
    for name in names:
        torch.testing.assert_close(trace.activations[name], want[name], **TOL)
    torch.testing.assert_close(g.synthesis(ws, edits={"b8.conv1": lambda a: a}), trace.image, atol=0, rtol=0)
    # Replacing b8.conv1 by sample 1's activations makes sample 0 continue from them.
    swapped = g.synthesis(ws, edits={"b8.conv1": trace.activations["b8.conv1"][[1, 1]]})
    assert not torch.allclose(swapped[0], trace.image[0], atol=1e-3)
    torch.testing.assert_close(swapped[1], trace.image[1], atol=1e-6, rtol=0)
    with pytest.raises(KeyError):
        g.synthesis_trace(ws, capture=["b32.conv1"])


def test_batch_renders_equal_single_renders():
    g = tiny_generator(tiny_config())
    ws = _ws(g, 3)
    noise = g.make_noise(3, generator=torch.Generator().manual_seed(5))
    batch = g.synthesis(ws, noise)
    singles = torch.cat([g.synthesis(ws[i : i + 1], [n[i : i + 1] for n in noise]) for i in range(3)])
    torch.testing.assert_close(batch, singles, atol=1e-5, rtol=1e-5)


def test_config_round_trip_and_validation():
    cfg = tiny_config(conv_clamp=256.0, architecture="resnet", mapping_features=24)
    assert StyleGAN2Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        StyleGAN2Config.from_dict({**cfg.to_dict(), "fused_modconv": True})
    with pytest.raises(ValueError):
        StyleGAN2Config(resolution=48)


# -- NVIDIA pickles ---------------------------------------------------------------------------------------------------
# Globals of a stylegan2-ada-pytorch pickle under torch 2.13 / numpy 2 (see the module docstring).
_NVIDIA_GLOBALS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"), ("dnnlib.util", "EasyDict"),
    ("collections", "OrderedDict"), ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_tensor_v2"),
    ("torch.storage", "_load_from_bytes"), ("numpy", "dtype"), (np.float64(0).__reduce__()[0].__module__, "scalar"),
}
_MODULE_SRC = "# stands in for training/networks.py; never run\nraise SystemExit('module_src was executed')\n"


@pytest.fixture
def nvidia_modules():
    """Stand-ins for torch_utils.persistence and dnnlib.util while a test writes a pickle (tests/nvidia_modules.py)."""
    with nvidia_stand_ins() as stand_ins:
        yield stand_ins


class _Persistent(nn.Module):
    """Pickles like a ``@persistence.persistent_class`` module: (reconstruct, ({type, version, module_src,
    class_name, state: __dict__},)). The class name is that of the dynamic subclass (NVIDIA's class names)."""

    reconstruct = None
    module_src = _MODULE_SRC

    def __reduce__(self):
        meta = dict(type="class", version=6, module_src=self.module_src, class_name=type(self).__name__,
                    state=self.__dict__)
        return (type(self).reconstruct, (meta,))


def _nvidia_module(ns, class_name, params=(), buffers=(), modules=(), attrs=None, init_args=(), init_kwargs=None):
    cls = type(class_name, (_Persistent,), {"reconstruct": staticmethod(ns.reconstruct)})
    m = cls()
    for k, v in dict(params).items():
        setattr(m, k, nn.Parameter(v.clone(), requires_grad=False))
    for k, v in dict(buffers).items():
        m.register_buffer(k, v.clone())
    for k, v in dict(modules).items():
        setattr(m, k, v)
    for k, v in (attrs or {}).items():
        setattr(m, k, v)
    m._init_args, m._init_kwargs = tuple(init_args), dict(init_kwargs or {})
    return m.eval()


def _nvidia_g_ema(ns, sd, cfg):
    """The G_ema module tree of training/networks.py (attributes as its constructors set them) for state ``sd``."""
    f = _fir(1.0)

    def fc(prefix, in_f, out_f, act, lr):
        tensors = [("weight", sd[f"{prefix}.weight"]), ("bias", sd[f"{prefix}.bias"])]
        return _nvidia_module(ns, "FullyConnectedLayer", tensors,
                              attrs=dict(activation=act, weight_gain=lr / np.sqrt(in_f), bias_gain=lr),
                              init_args=(in_f, out_f), init_kwargs=dict(activation=act, lr_multiplier=lr))

    def layer(p, in_ch, out_ch, res, up):
        attrs = dict(resolution=res, up=2 if up else 1, use_noise=True, activation="lrelu", conv_clamp=cfg.conv_clamp,
                     padding=1, act_gain=np.sqrt(2))
        return _nvidia_module(ns, "SynthesisLayer", [(t, sd[f"{p}.{t}"]) for t in ("weight", "noise_strength", "bias")],
                              [("resample_filter", f), ("noise_const", sd[f"{p}.noise_const"])],
                              [("affine", fc(f"{p}.affine", cfg.w_dim, in_ch, "linear", 1))], attrs, (in_ch, out_ch),
                              dict(w_dim=cfg.w_dim, resolution=res, up=2 if up else 1, conv_clamp=cfg.conv_clamp))

    blocks = {}
    for res in cfg.block_resolutions:
        p, in_ch, out_ch = f"b{res}", cfg.channels(res // 2) if res > 4 else 0, cfg.channels(res)
        mods = {} if res == 4 else {"conv0": layer(f"{p}.conv0", in_ch, out_ch, res, True)}
        mods["conv1"] = layer(f"{p}.conv1", out_ch, out_ch, res, False)
        mods["torgb"] = _nvidia_module(
            ns, "ToRGBLayer", [("weight", sd[f"{p}.torgb.weight"]), ("bias", sd[f"{p}.torgb.bias"])], (),
            [("affine", fc(f"{p}.torgb.affine", cfg.w_dim, out_ch, "linear", 1))],
            dict(conv_clamp=cfg.conv_clamp, weight_gain=1 / np.sqrt(out_ch)), (out_ch, 3),
            dict(w_dim=cfg.w_dim, conv_clamp=cfg.conv_clamp))
        attrs = dict(in_channels=in_ch, w_dim=cfg.w_dim, resolution=res, img_channels=3, is_last=res == cfg.resolution,
                     architecture="skip", use_fp16=False, channels_last=False, num_conv=len(mods) - 1, num_torgb=1)
        blocks[p] = _nvidia_module(ns, "SynthesisBlock", [("const", sd["b4.const"])] if res == 4 else [],
                                   [("resample_filter", f)], mods, attrs, (in_ch, out_ch), dict(w_dim=cfg.w_dim))
    synthesis = _nvidia_module(ns, "SynthesisNetwork", modules=blocks, attrs=dict(
        w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_resolution_log2=cfg.resolution.bit_length() - 1,
        img_channels=3, block_resolutions=list(cfg.block_resolutions), num_ws=cfg.num_ws))
    fcs = {f"fc{i}": fc(f"mapping_net.fc{i}", cfg.z_dim if i == 0 else cfg.w_dim, cfg.w_dim, "lrelu", 0.01)
           for i in range(cfg.mapping_layers)}
    mapping = _nvidia_module(ns, "MappingNetwork", buffers=[("w_avg", sd["w_avg"])], modules=fcs, attrs=dict(
        z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, num_ws=cfg.num_ws, num_layers=cfg.mapping_layers, w_avg_beta=0.995))
    kwargs = dict(z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_channels=3,
                  mapping_kwargs=ns.EasyDict(num_layers=cfg.mapping_layers),
                  synthesis_kwargs=ns.EasyDict(channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                               num_fp16_res=4, conv_clamp=cfg.conv_clamp))
    return _nvidia_module(ns, "Generator", modules=dict(synthesis=synthesis, mapping=mapping), attrs=dict(
        z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_channels=3, num_ws=cfg.num_ws),
        init_kwargs=kwargs)


def _write_ada_pickle(path, ns, sd, cfg, g_ema=None):
    g_ema = g_ema if g_ema is not None else _nvidia_g_ema(ns, sd, cfg)
    d = _nvidia_module(ns, "Discriminator", [("w", torch.ones(2))], init_kwargs=dict(c_dim=0))
    with open(path, "wb") as f:  # the dict training_loop.py pickles for each snapshot
        pickle.dump(dict(training_set_kwargs=ns.EasyDict(path="ffhq.zip", resolution=cfg.resolution), G=g_ema, D=d,
                         G_ema=g_ema, augment_pipe=None), f)
    return path


@pytest.mark.parametrize("clamp", [None, 0.4])
def test_ada_pickle_loads_and_matches_the_reference(tmp_path, nvidia_modules, clamp):
    cfg, sd = tiny_config(conv_clamp=clamp), None
    sd = random_state(cfg)
    path = _write_ada_pickle(tmp_path / "network-snapshot.pkl", nvidia_modules, sd, cfg)
    seen = set()

    class Recording(dict):
        def __getitem__(self, key):
            seen.add(key)
            return super().__getitem__(key)

    policy = safe_pickle.PicklePolicy("recording", Recording(safe_pickle.ADA_PICKLE.allowed))
    with open(path, "rb") as f:
        safe_pickle.RestrictedUnpickler(f, policy).load()
    assert seen == _NVIDIA_GLOBALS  # the same globals as a real stylegan2-ada-pytorch pickle
    assert sniff_format(path) == "nvidia-pickle"
    g = load_checkpoint(path)
    assert g.config == cfg and not any(p.requires_grad for p in g.parameters())
    torch.testing.assert_close(g.w_avg, sd["w_avg"], atol=0, rtol=0)
    ws = _ws(g, 2)
    torch.testing.assert_close(g.synthesis(ws), _reference_forward(sd, cfg, ws)[0], **TOL)


def test_ada_converter_is_strict(tmp_path, nvidia_modules):
    cfg = tiny_config()
    sd = random_state(cfg)

    def refused(mutate, match):
        g_ema = _nvidia_g_ema(nvidia_modules, sd, cfg)
        mutate(g_ema)
        path = _write_ada_pickle(tmp_path / "bad.pkl", nvidia_modules, sd, cfg, g_ema)
        with pytest.raises(WeightsFormatError, match=match):
            load_checkpoint(path)

    refused(lambda g: delattr(g.synthesis.b8.conv1, "noise_strength"), r"b8\.conv1\.noise_strength is missing")
    refused(lambda g: g.synthesis.b8.conv1.register_buffer("extra", torch.ones(1)), r"b8\.conv1 has tensor extra")
    refused(lambda g: setattr(g.synthesis.b16.conv0, "demodulate", False), r"attribute demodulate")
    refused(lambda g: g._init_kwargs["synthesis_kwargs"].update(fused_anything=1), "fused_anything")
    refused(lambda g: setattr(g.synthesis.b8.conv0, "activation", "relu"), r"activation = 'relu'")
    refused(lambda g: setattr(g, "c_dim", 10), "conditional")
    refused(lambda g: g.synthesis.b8.register_buffer("resample_filter", torch.ones(4, 4) / 16), r"\[1, 3, 3, 1\]")
    refused(lambda g: setattr(g.synthesis.b16.conv1, "weight", nn.Parameter(torch.ones(8, 8, 1, 1))), "shape")

    def stylegan3(g):
        g.synthesis.input = _nvidia_module(nvidia_modules, "SynthesisInput")

    refused(stylegan3, "StyleGAN3")


def test_booby_trapped_pickles_are_refused_without_running(tmp_path, nvidia_modules):
    marker = tmp_path / "pwned"

    class Reduce:
        def __init__(self, fn, *args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return self.fn, self.args

    cases = {
        "os.system": {"G_ema": Reduce(os.system, f"touch {marker}")},
        "builtins.exec": {"G_ema": Reduce(exec, f"open({str(marker)!r}, 'w').close()")},
        "builtins.eval": [Reduce(eval, f"__import__('os').system('touch {marker}')")],
    }
    for name, payload in cases.items():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(payload))
        with pytest.raises(WeightsFormatError, match="refusing to load"):
            load_checkpoint(path)
    assert not marker.exists()
    pickle.loads((tmp_path / "os.system.pkl").read_bytes())  # the traps are live: a plain unpickler runs them
    assert marker.exists()
    marker.unlink()
    # A storage stream (torch.storage._load_from_bytes) whose inner pickle would run a command.
    inner = pickle.dumps(Reduce(os.system, f"touch {marker}"), protocol=2)
    path = tmp_path / "storage.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Reduce(torch.storage._load_from_bytes, inner)}))
    with pytest.raises(WeightsFormatError, match="not a torch.save stream"):
        load_checkpoint(path)
    stream = io.BytesIO()  # the same trap inside a well-formed legacy torch.save stream: torch's reader refuses it
    torch.save(Reduce(os.system, f"touch {marker}"), stream, _use_new_zipfile_serialization=False)
    path.write_bytes(pickle.dumps({"G_ema": Reduce(torch.storage._load_from_bytes, stream.getvalue())}))
    with pytest.raises(WeightsFormatError, match="storage stream: it contains code or Python objects we do not load"):
        load_checkpoint(path)
    # A valid network whose carried module source would create the marker if it were ever run: loads, never runs.
    cfg = tiny_config()
    _Persistent.module_src = f"open({str(marker)!r}, 'w').write('module_src ran')\n" + _MODULE_SRC
    try:
        path = _write_ada_pickle(tmp_path / "src.pkl", nvidia_modules, random_state(cfg), cfg)
    finally:
        _Persistent.module_src = _MODULE_SRC
    assert load_checkpoint(path).config == cfg
    # A rosinality-style .pt carrying an executable object is refused by torch's weights-only loader.
    torch.save({"g_ema": {}, "latent_avg": Reduce(os.system, f"touch {marker}")}, tmp_path / "evil.pt")
    with pytest.raises(WeightsFormatError, match=r"evil.pt: it contains code or Python objects we do not load \(it "
                                                 rf"references {os.system.__module__}\.system\)") as info:
        load_checkpoint(tmp_path / "evil.pt")
    assert "weights_only" not in str(info.value) and "\n" not in str(info.value)  # never torch's advice to run it
    assert not marker.exists()


# -- rosinality -------------------------------------------------------------------------------------------------------
def _rosinality_state(sd, cfg):
    """rosinality's Generator.state_dict() layout for the network ``sd`` (see model.py: Generator, StyledConv,
    ModulatedConv2d (weight [1, O, I, k, k] scaled by 1/sqrt(fan_in) in forward), NoiseInjection, ToRGB)."""
    out = OrderedDict()
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping_net.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping_net.fc{i}.bias"]
    out["input.input"] = sd["b4.const"][None]
    blur = _fir(4.0)

    def styled(dst, src, noise_idx, up):
        w = sd[f"{src}.weight"]
        out[f"{dst}.conv.weight"] = (w * math.sqrt(w[0].numel()))[None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        if up:
            out[f"{dst}.conv.blur.kernel"] = blur
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        out[f"noises.noise_{noise_idx}"] = sd[f"{src}.noise_const"][None, None]

    def rgb(dst, src, up):
        if up:
            out[f"{dst}.upsample.kernel"] = blur
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].view(1, 3, 1, 1)

    styled("conv1", "b4.conv1", 0, False)
    rgb("to_rgb1", "b4.torgb", False)
    for k, res in enumerate(cfg.block_resolutions[1:]):
        styled(f"convs.{2 * k}", f"b{res}.conv0", 2 * k + 1, True)
        styled(f"convs.{2 * k + 1}", f"b{res}.conv1", 2 * k + 2, False)
        rgb(f"to_rgbs.{k}", f"b{res}.torgb", True)
    return out


def test_rosinality_pt_loads_and_matches_the_reference(tmp_path):
    cfg = tiny_config(z_dim=16)  # rosinality: z_dim = w_dim = style_dim
    sd = random_state(cfg)
    ros = _rosinality_state(sd, cfg)
    # As convert_weight.py writes them (zip format), and a legacy-format training checkpoint with its argparse args.
    torch.save({"g_ema": ros, "latent_avg": sd["w_avg"]}, tmp_path / "converted.pt")
    torch.save({"g": ros, "d": {"x": torch.ones(1)}, "g_ema": ros, "g_optim": {"state": {}}, "d_optim": {"state": {}},
                "args": argparse.Namespace(size=16, channel_multiplier=2), "ada_aug_p": 0.1},
               tmp_path / "010000.pt", _use_new_zipfile_serialization=False)
    ws = _ws(tiny_generator(cfg), 2)
    expected = _reference_forward(sd, cfg, ws)[0]
    for name in ("converted.pt", "010000.pt"):
        assert sniff_format(tmp_path / name) == "torch"
        g = load_checkpoint(tmp_path / name)
        assert g.config == cfg
        torch.testing.assert_close(g.synthesis(ws), expected, **TOL)
    torch.testing.assert_close(load_checkpoint(tmp_path / "converted.pt").w_avg, sd["w_avg"], atol=0, rtol=0)
    # Without latent_avg the mean latent is computed from the mapping network.
    g = load_checkpoint(tmp_path / "010000.pt")
    torch.testing.assert_close(g.w_avg, compute_w_avg(g), atol=0, rtol=0)


def test_rosinality_converter_is_strict():
    cfg = tiny_config(z_dim=16)
    ros = _rosinality_state(random_state(cfg), cfg)
    for key in ("convs.1.noise.weight", "noises.noise_2", "to_rgbs.0.upsample.kernel"):
        with pytest.raises(WeightsFormatError, match=key.replace(".", r"\.")):
            convert_rosinality({k: v for k, v in ros.items() if k != key})
    with pytest.raises(WeightsFormatError, match=r"convs\.0\.conv\.extra"):
        convert_rosinality({**ros, "convs.0.conv.extra": torch.ones(1)})
    with pytest.raises(WeightsFormatError, match="shape"):
        convert_rosinality({**ros, "convs.1.activate.bias": torch.ones(3)})
    with pytest.raises(WeightsFormatError, match="latent_avg"):
        convert_rosinality(ros, torch.ones(3))


# -- converted format -----------------------------------------------------------------------------------------------
def test_convert_checkpoint_round_trip(tmp_path, nvidia_modules):
    cfg = tiny_config(conv_clamp=0.4)
    sd = random_state(cfg)
    src = _write_ada_pickle(tmp_path / "net.pkl", nvidia_modules, sd, cfg)
    out = convert_checkpoint(src, tmp_path / "net.safetensors")
    assert sniff_format(out) == "converted"
    assert checkpoint_sha256(out) == checkpoint_sha256(src) == hashlib.sha256(src.read_bytes()).hexdigest()
    assert read_checkpoint(out).source_format == "converted"
    g = load_checkpoint(out)
    ws = _ws(g, 1)
    torch.testing.assert_close(g.synthesis(ws), load_checkpoint(src).synthesis(ws), atol=0, rtol=0)
    # A safetensors file that we did not write, and one whose tensors disagree with its config, are refused.
    from safetensors.torch import save_file

    save_file({"x": torch.ones(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsFormatError, match="not one written"):
        load_checkpoint(tmp_path / "other.safetensors")
    g.b8.conv1.register_buffer("stray", torch.ones(1))
    save_converted(g, tmp_path / "stray.safetensors")
    with pytest.raises(WeightsFormatError, match="stray"):
        load_checkpoint(tmp_path / "stray.safetensors")
    (tmp_path / "junk.bin").write_bytes(b"hello world")
    with pytest.raises(WeightsFormatError, match="not a checkpoint format"):
        load_checkpoint(tmp_path / "junk.bin")


def test_tensorflow_pickles_go_through_the_same_entry_points(tmp_path):
    """NVIDIA's TF pickles (read and converted by tf_pickle / tf_stylegan2, tested there) load, sniff and convert
    through load_checkpoint / convert_checkpoint like the PyTorch formats."""
    from tf_pickles import dump_official, v1_kwargs, v2_gs, write_v1_pickle

    from image2stylegan.generators.stylegan1 import StyleGAN

    gs = v2_gs(v1_kwargs(16), seed=2)[0]
    (tmp_path / "stylegan2.pkl").write_bytes(dump_official((gs, gs, gs)))
    write_v1_pickle(tmp_path / "karras2019stylegan.pkl", v1_kwargs(32))
    for name, kind in (("stylegan2.pkl", StyleGAN2), ("karras2019stylegan.pkl", StyleGAN)):
        path = tmp_path / name
        assert sniff_format(path) == "nvidia-tf-pickle"
        loaded = load_checkpoint(path)
        converted = load_checkpoint(convert_checkpoint(path, tmp_path / f"{name}.safetensors"))
        assert type(loaded) is type(converted) is kind
        noise = torch.randn(1, loaded.num_ws, loaded.w_dim, generator=torch.Generator().manual_seed(0))
        ws = loaded.mean_ws(1) + 0.5 * noise
        torch.testing.assert_close(converted.synthesis(ws), loaded.synthesis(ws), atol=0, rtol=0)
        torch.testing.assert_close(converted.w_avg, loaded.w_avg, atol=0, rtol=0)
