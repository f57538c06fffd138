"""NVIDIA TensorFlow StyleGAN2 pickles -> stylegan2-ada-pytorch names -> our StyleGAN2, checked against an independent
float64 re-implementation of ``training/networks_stylegan2.py`` and ``dnnlib/tflib/ops/upfirdn_2d.py``'s reference
ops written below from the TF variable names (modulated/demodulated convs, ``upsample_conv_2d`` as the adjoint of a
strided VALID conv followed by ``upfirdn_2d``, skip / orig / resnet outputs, G_main's truncation)."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tf_pickles import dump_official, v1_kwargs, v2_gs

from image2stylegan.errors import WeightsFormatError
from image2stylegan.generators.checkpoints import load_checkpoint
from image2stylegan.generators.stylegan2 import StyleGAN2
from image2stylegan.generators.tf_pickle import read_tf_generator, tf_generator_kind
from image2stylegan.generators.tf_stylegan1 import convert_tf_stylegan1
from image2stylegan.generators.tf_stylegan2 import convert_tf_stylegan2, convert_tf_stylegan2_to_ada


def T(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


FIR = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])).double()
FIR = FIR / FIR.sum() * 4  # _setup_kernel(k) * gain * factor**2


def upfirdn(x, up, pad0, pad1):
    """_upfirdn_2d_ref with the [1, 3, 3, 1] kernel: zero-insert, pad, convolve (VALID)."""
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, (pad0, pad1, pad0, pad1))
    return F.conv2d(x, FIR.flip(0, 1).expand(c, 1, 4, 4), groups=c)


def upsample_conv_2d(x, w):
    """TF upsample_conv_2d(x, w [k, k, I, O]): conv2d_transpose (VALID, stride 2) with the flipped kernel, then FIR."""
    k = w.shape[0]
    wt = w.flip(0, 1).permute(0, 1, 3, 2)  # [k, k, O, I], TF's conv2d_transpose filter layout
    b, _, h, wd = x.shape
    u = torch.zeros(b, w.shape[3], (h - 1) * 2 + k, (wd - 1) * 2 + k, dtype=x.dtype, requires_grad=True)
    y = F.conv2d(u, wt.permute(3, 2, 0, 1), stride=2)  # the conv whose adjoint conv2d_transpose is
    x = torch.autograd.grad((y * x).sum(), u)[0]
    p = 2 - (k - 1)
    return upfirdn(x, 1, (p + 1) // 2 + 1, p // 2 + 1)


def modconv(x, w, s, demodulate=True, up=False):
    """modulated_conv2d_layer per sample: w [k, k, I, O] raw, s [B, I] styles (mod bias + 1 already added)."""
    k, cin = w.shape[0], w.shape[2]
    outs = []
    for b in range(x.shape[0]):
        ww = w / math.sqrt(k * k * cin) * s[b].view(1, 1, -1, 1)
        if demodulate:
            ww = ww * torch.rsqrt(ww.square().sum((0, 1, 2)) + 1e-8)
        xb = x[b : b + 1]
        outs.append(upsample_conv_2d(xb, ww) if up else F.conv2d(xb, ww.permute(3, 2, 0, 1), padding=k // 2))
    return torch.cat(outs)


def ref_generator(own, mapping, syn, kwargs, z, psi=0.5):
    arch, w_dim = kwargs.get("architecture", "skip"), kwargs["dlatent_size"]
    res_log2 = int(math.log2(kwargs["resolution"]))
    """G_main at its defaults (truncation psi 0.5 on every row, stored noise): (w [B, W], ws [B, L, W], image)."""
    x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
    for i in range(kwargs["mapping_layers"]):
        wt = T(mapping[f"Dense{i}/weight"])
        x = x @ (wt / math.sqrt(wt.shape[0]) * 0.01) + T(mapping[f"Dense{i}/bias"]) * 0.01
        x = F.leaky_relu(x, 0.2) * math.sqrt(2)
    w, num = x, 2 * res_log2 - 2
    ws = torch.lerp(T(own["dlatent_avg"]), w.unsqueeze(1).expand(-1, num, -1), psi)  # truncation_cutoff None

    def style(scope, row):
        return ws[:, row] @ (T(syn[f"{scope}/mod_weight"]) / math.sqrt(w_dim)) + T(syn[f"{scope}/mod_bias"]) + 1

    def layer(x, scope, row, up=False):
        x = modconv(x, T(syn[f"{scope}/weight"]), style(scope, row), up=up)
        x = x + T(syn[f"noise{row}"]) * float(syn[f"{scope}/noise_strength"])
        return F.leaky_relu(x + T(syn[f"{scope}/bias"]).view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def torgb(x, scope, row):
        y = modconv(x, T(syn[f"{scope}/weight"]), style(scope, row), demodulate=False)
        return y + T(syn[f"{scope}/bias"]).view(1, -1, 1, 1)

    x = layer(T(syn["4x4/Const/const"]).expand(z.shape[0], -1, -1, -1), "4x4/Conv", 0)
    y = torgb(x, "4x4/ToRGB", 1) if arch == "skip" else None
    for r in range(3, res_log2 + 1):
        scope, t = f"{2**r}x{2**r}", x
        x = layer(x, f"{scope}/Conv0_up", 2 * r - 5, up=True)
        x = layer(x, f"{scope}/Conv1", 2 * r - 4)
        if arch == "resnet":
            t = upsample_conv_2d(t, T(syn[f"{scope}/Skip/weight"]) / math.sqrt(t.shape[1]))
            x = (x + t) / math.sqrt(2)
        if arch == "skip":
            y = upfirdn(y, 2, 2, 1) + torgb(x, f"{scope}/ToRGB", 2 * r - 3)  # upsample_2d: p = 2
        elif r == res_log2:
            y = torgb(x, f"{scope}/ToRGB", 2 * r - 3)
    return w, ws, y


@pytest.mark.parametrize("architecture", ["skip", "orig", "resnet"])
def test_tf_stylegan2_matches_independent_reference(tmp_path, architecture):
    kwargs = v1_kwargs(16, architecture=architecture)
    gs, own, mapping, syn = v2_gs(kwargs, seed=2)
    path = tmp_path / "sg2.pkl"
    path.write_bytes(dump_official((gs, gs, gs)))
    G = load_checkpoint(path)
    assert isinstance(G, StyleGAN2) and G.num_ws == 6 and G.config.architecture == architecture
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    w_ref, ws_ref, image_ref = ref_generator(own, mapping, syn, kwargs, z.double())
    torch.testing.assert_close(G.mapping(z).double(), w_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(G.w_avg, torch.from_numpy(own["dlatent_avg"]))
    with torch.no_grad():
        image = G.synthesis(ws_ref.float())  # stored noise = TF's noise variables
    assert image.shape == (2, 3, 16, 16)
    torch.testing.assert_close(image.double(), image_ref, rtol=1e-4, atol=2e-4)
    assert G.noise_strengths()[0] == pytest.approx(float(syn["4x4/Conv/noise_strength"]))


def test_tf_stylegan2_converts_to_ada_names():
    kwargs = v1_kwargs(16)
    gs, own, mapping, syn = v2_gs(kwargs)
    tf_gs = read_tf_generator(io.BytesIO(dump_official((gs, gs, gs))))
    assert tf_generator_kind(tf_gs) == "stylegan2"
    with pytest.raises(WeightsFormatError, match="StyleGAN2"):
        convert_tf_stylegan1(tf_gs)
    state, hp = convert_tf_stylegan2_to_ada(tf_gs)
    conv = ["weight", "bias", "affine.weight", "affine.bias", "noise_strength", "noise_const"]
    rgb = ["weight", "bias", "affine.weight", "affine.bias"]
    expected = {"mapping.w_avg", "synthesis.b4.const"}
    expected |= {f"mapping.fc{i}.{p}" for i in (0, 1) for p in ("weight", "bias")}
    expected |= {f"synthesis.b4.conv1.{p}" for p in conv}
    expected |= {f"synthesis.b{r}.torgb.{p}" for r in (4, 8, 16) for p in rgb}
    expected |= {f"synthesis.b{r}.conv{j}.{p}" for r in (8, 16) for j in (0, 1) for p in conv}
    assert set(state) == expected
    assert hp["channel_base"] == 128 and hp["channels"] == {4: 8, 8: 8, 16: 8} and hp["num_ws"] == 6
    w = syn["16x16/Conv0_up/weight"]  # [kh, kw, in, out]; ADA's up-conv takes it rotated by 180 degrees
    assert state["synthesis.b16.conv0.weight"][5, 3, 0, 1].item() == w[2, 1, 3, 5]
    assert state["synthesis.b16.conv1.weight"][5, 3, 0, 1].item() == syn["16x16/Conv1/weight"][0, 1, 3, 5]
    torch.testing.assert_close(state["synthesis.b8.conv1.affine.bias"], torch.from_numpy(syn["8x8/Conv1/mod_bias"] + 1))
    assert torch.equal(state["synthesis.b8.conv0.noise_const"], torch.from_numpy(syn["noise1"][0, 0]))
    assert torch.equal(state["synthesis.b16.conv1.noise_const"], torch.from_numpy(syn["noise4"][0, 0]))
    assert state["synthesis.b4.conv1.noise_strength"].item() == syn["4x4/Conv/noise_strength"]
    assert state["synthesis.b4.const"].shape == (8, 4, 4)
    ours, _ = convert_tf_stylegan2(tf_gs)
    renamed = {k.replace("synthesis.", "").replace("mapping.w_avg", "w_avg") for k in state}
    renamed = {k.replace("mapping.", "mapping_net.") for k in renamed}
    assert set(ours) == renamed


@pytest.mark.parametrize(
    "change, message",
    [
        ({"extra": {"16x16/Conv1/Extra/weight": np.ones(2, np.float32)}}, "16x16/Conv1/Extra/weight"),
        ({"kwargs": {"resample_kernel": [1, 2, 1]}}, "resample_kernel"),
        ({"kwargs": {"fused_modconv": False, "nonlinearity": "relu"}}, "leaky-ReLU"),
        ({"kwargs": {"fmap_decay": 0.5}}, "fmap_decay=0.5"),
        ({"kwargs": {"label_size": 3}}, "label_size=3"),
        ({"kwargs": {"new_thing": 1}}, "new_thing"),
    ],
    ids=["extra-variable", "filter", "nonlinearity", "fmap-decay", "labels", "unknown-kwarg"],
)
def test_tf_stylegan2_converter_is_strict(change, message):
    kwargs = {**v1_kwargs(16), **change.get("kwargs", {})}
    gs, *_ = v2_gs(kwargs, extra=change.get("extra"))
    with pytest.raises(WeightsFormatError, match=message):
        convert_tf_stylegan2(read_tf_generator(io.BytesIO(dump_official((gs, gs, gs)))))
