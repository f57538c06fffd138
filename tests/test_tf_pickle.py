"""NVIDIA TensorFlow StyleGAN (v1) pickles, read without TensorFlow and without executing anything.

The tiny pickles (``tf_pickles.py``) have the official files' structure; outputs are checked against an independent
float64 re-implementation of NVIDIA's TF ops written below from the TF variable names (dense/conv with run-time He
scales, tile upscale, conv2d_transpose as the adjoint of TF's strided 'SAME' conv, depthwise blur, instance norm,
StyleMod).
"""

from __future__ import annotations

import builtins
import io
import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tf_pickles import (
    MARKER_SRC,
    RECONSTRUCT,
    SCALAR,
    FakeNetwork,
    OfficialPickler,
    dump_official,
    v1_gs,
    v1_kwargs,
    v1_variables,
    write_v1_pickle,
)

from image2stylegan.errors import WeightsFormatError, WeightsNotFoundError
from image2stylegan.generators.checkpoints import load_checkpoint
from image2stylegan.generators.stylegan1 import StyleGAN, StyleGANConfig
from image2stylegan.generators.tf_pickle import is_tf_network_pickle, read_tf_generator, read_tf_pickle
from image2stylegan.generators.tf_stylegan1 import convert_tf_stylegan1


# -- an independent float64 re-implementation of NVIDIA's TF ops -------------------------------------------------
def T(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def tf_conv(x, w, gain):
    """tf.nn.conv2d(x, w * gain / sqrt(fan_in), 'SAME'), w [k, k, in, out], odd k, stride 1."""
    k = w.shape[0]
    return F.conv2d(x, (w * gain / math.sqrt(k * k * w.shape[2])).permute(3, 2, 0, 1), padding=k // 2)


def tf_upscale_conv(x, w, fused):
    """upscale2d_conv2d: tile-upscale then conv, or conv2d_transpose with the padded-sum kernel."""
    if not fused:
        return tf_conv(x.repeat_interleave(2, 2).repeat_interleave(2, 3), w, math.sqrt(2))
    w = (w * math.sqrt(2) / math.sqrt(9 * w.shape[2])).permute(0, 1, 3, 2)  # [k, k, out, in]
    wp = torch.zeros(5, 5, *w.shape[2:], dtype=w.dtype)
    wp[1:4, 1:4] = w
    w4 = wp[1:, 1:] + wp[:-1, 1:] + wp[1:, :-1] + wp[:-1, :-1]  # [4, 4, out, in]
    # conv2d_transpose = adjoint of conv2d(u, w4, stride 2, 'SAME'), which pads 1 on each side of a 2H input.
    b, _, h, wd = x.shape
    u = torch.zeros(b, w4.shape[2], 2 * h, 2 * wd, dtype=x.dtype, requires_grad=True)
    y = F.conv2d(F.pad(u, (1, 1, 1, 1)), w4.permute(3, 2, 0, 1), stride=2)
    return torch.autograd.grad((y * x).sum(), u)[0]


def tf_blur(x):
    f = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype)
    f = torch.outer(f, f) / 16
    p, (h, w) = F.pad(x, (1, 1, 1, 1)), x.shape[2:]
    return sum(f[a, b] * p[:, :, a : a + h, b : b + w] for a in range(3) for b in range(3))


def ref_mapping(mapping, z, layers):
    x = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
    for i in range(layers):
        wt, b = T(mapping[f"Dense{i}/weight"]), T(mapping[f"Dense{i}/bias"])
        x = x @ (wt * math.sqrt(2) / math.sqrt(wt.shape[0]) * 0.01) + b * 0.01
        x = torch.maximum(x, 0.2 * x)
    return x


def ref_synthesis(syn, dlatents, noise, fused_scale):
    def epilogue(x, scope, i):
        x = x + noise[i] * T(syn[f"{scope}/Noise/weight"]).view(1, -1, 1, 1)
        x = x + T(syn[f"{scope}/bias"]).view(1, -1, 1, 1)
        x = torch.maximum(x, 0.2 * x)
        x = x - x.mean((2, 3), keepdim=True)
        x = x * torch.rsqrt(x.square().mean((2, 3), keepdim=True) + 1e-8)
        sw = T(syn[f"{scope}/StyleMod/weight"])
        style = dlatents[:, i] @ (sw / math.sqrt(sw.shape[0])) + T(syn[f"{scope}/StyleMod/bias"])
        style = style.view(-1, 2, x.shape[1], 1, 1)
        return x * (style[:, 0] + 1) + style[:, 1]

    x = T(syn["4x4/Const/const"]).expand(dlatents.shape[0], -1, -1, -1)
    x = epilogue(x, "4x4/Const", 0)
    x = epilogue(tf_conv(x, T(syn["4x4/Conv/weight"]), math.sqrt(2)), "4x4/Conv", 1)
    res = 8
    while f"{res}x{res}/Conv1/weight" in syn:
        fused = fused_scale is True or (fused_scale == "auto" and res >= 128)
        scope = f"{res}x{res}"
        i = 2 * int(math.log2(res)) - 4  # layer index of Conv0_up
        x = epilogue(tf_blur(tf_upscale_conv(x, T(syn[f"{scope}/Conv0_up/weight"]), fused)), f"{scope}/Conv0_up", i)
        x = epilogue(tf_conv(x, T(syn[f"{scope}/Conv1/weight"]), math.sqrt(2)), f"{scope}/Conv1", i + 1)
        res *= 2
    return tf_conv(x, T(syn["ToRGB_lod0/weight"]), 1.0) + T(syn["ToRGB_lod0/bias"]).view(1, -1, 1, 1)


# -- tests -------------------------------------------------------------------------------------------------------
class RecordingUnpickler(pickle.Unpickler):
    """Plain unpickler used only to inspect our test files: records every global and Network state."""

    def __init__(self, f):
        super().__init__(f)
        self.globals, self.states = [], []
        rec = self

        class Net:
            def __setstate__(self, state):
                rec.states.append(state)

        self._net = Net

    def find_class(self, module, name):
        self.globals.append((module, name))
        if (module, name) == ("dnnlib.tflib.network", "Network"):
            return self._net
        return {"_reconstruct": RECONSTRUCT, "scalar": SCALAR, "ndarray": np.ndarray, "dtype": np.dtype}[name]


def test_tiny_pickle_has_the_official_structure(tmp_path):
    path = tmp_path / "tiny.pkl"
    write_v1_pickle(path, v1_kwargs())
    data = path.read_bytes()
    assert data[:2] == b"\x80\x04"  # protocol 4, as pickle.HIGHEST_PROTOCOL on Python 3.6
    rec = RecordingUnpickler(io.BytesIO(data))
    top = rec.load()
    assert isinstance(top, tuple) and len(top) == 3
    assert set(rec.globals) == {
        ("dnnlib.tflib.network", "Network"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }
    keys = {"version", "name", "static_kwargs", "components", "build_module_src", "build_func_name", "variables"}
    assert all(set(s) == keys for s in rec.states) and len(rec.states) == 7  # G (+2), D, Gs (+2)
    assert {s["build_func_name"] for s in rec.states} == {"G_style", "G_mapping", "G_synthesis", "D_basic"}


@pytest.mark.parametrize(
    "resolution, extra",
    [(32, {}), (32, {"fused_scale": True}), (128, {"fmap_base": 256})],
    ids=["32px-auto", "32px-fused", "128px-auto"],
)
def test_tf_stylegan1_matches_independent_reference(tmp_path, resolution, extra):
    kwargs = {**v1_kwargs(resolution), **extra}
    path = tmp_path / "g.pkl"
    own, mapping, syn = write_v1_pickle(path, kwargs, seed=1)
    G = load_checkpoint(path)
    assert isinstance(G, StyleGAN)
    fused = kwargs.get("fused_scale", "auto")
    assert G.num_ws == 2 * int(math.log2(resolution)) - 2 and not G.w_avg.requires_grad

    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    w_ref = ref_mapping(mapping, z.double(), 2)
    torch.testing.assert_close(G.mapping(z).double(), w_ref, rtol=1e-4, atol=1e-4)

    # G_style at its defaults: broadcast, truncation psi 0.7 on rows < 8 towards dlatent_avg, stored noise.
    coefs = torch.tensor([0.7 if i < 8 else 1.0 for i in range(G.num_ws)], dtype=torch.float64).view(1, -1, 1)
    ws_ref = torch.lerp(T(own["dlatent_avg"]), w_ref.unsqueeze(1).expand(-1, G.num_ws, -1), coefs)
    ws = G.sample_ws(z)
    torch.testing.assert_close(ws.double(), ws_ref, rtol=1e-4, atol=1e-4)
    stored = [T(syn[f"noise{i}"]) for i in range(G.num_ws)]
    with torch.no_grad():
        image = G.synthesis(ws_ref.float())
    ref = ref_synthesis(syn, ws_ref, stored, fused)
    assert ref.shape == (2, 3, resolution, resolution)
    torch.testing.assert_close(image.double(), ref, rtol=1e-4, atol=2e-4)

    # Caller-supplied unit-scale maps enter exactly where TF's noise inputs do.
    noise = G.make_noise(2, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        image = G.synthesis(ws_ref.float(), noise)
    ref = ref_synthesis(syn, ws_ref, [n.double() for n in noise], fused)
    torch.testing.assert_close(image.double(), ref, rtol=1e-4, atol=2e-4)


def test_converted_tensors_follow_tf_layouts(tmp_path):
    kwargs = v1_kwargs(32)
    own, mapping, syn = write_v1_pickle(tmp_path / "g.pkl", kwargs)
    state, config = convert_tf_stylegan1(read_tf_generator(tmp_path / "g.pkl"))
    assert config == StyleGANConfig(
        resolution=32, z_dim=16, w_dim=16, mapping_layers=2, mapping_fmaps=16, fmap_base=64, fmap_max=8
    )
    w = syn["16x16/Conv0_up/weight"]  # [kh, kw, in, out]
    assert state["layers.b16.conv0.weight"][5, 3, 0, 2].item() == w[0, 2, 3, 5]
    assert torch.equal(state["mapping_net.fc1.weight"], torch.from_numpy(mapping["Dense1/weight"].T.copy()))
    assert torch.equal(state["w_avg"], torch.from_numpy(own["dlatent_avg"]))
    assert torch.equal(state["layers.b8.conv1.noise_const"], torch.from_numpy(syn["noise3"]))
    assert torch.equal(state["torgb.weight"][:, :, 0, 0], torch.from_numpy(syn["ToRGB_lod0/weight"][0, 0].T.copy()))
    # The target side: exactly the tensors of StyleGAN(config), with their shapes.
    StyleGAN(config).load_state_dict(state, strict=True)


def test_ffhq_1024_layout_converts(tmp_path):
    """The full FFHQ-1024 variable set (zeros: layout only) converts to the default config with 18 rows."""
    kwargs = dict(num_channels=3, resolution=1024, label_size=0)
    gs = v1_gs(kwargs, *v1_variables(kwargs, 0, zeros=True))
    state, config = convert_tf_stylegan1(read_tf_generator(io.BytesIO(dump_official((gs, gs, gs)))))
    assert config == StyleGANConfig() and config.num_ws == 18
    target = StyleGAN(config).state_dict()
    assert {k: tuple(v.shape) for k, v in target.items()} == {k: tuple(v.shape) for k, v in state.items()}
    assert state["layers.b1024.conv1.noise_const"].shape == (1, 1, 1024, 1024)
    assert state["torgb.weight"].shape == (3, 16, 1, 1)


# -- nothing in a pickle runs ------------------------------------------------------------------------------------
class _Reduces:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("trap", ["os.system", "builtins.exec", "nested-in-variables", "network-reduce-call"])
def test_booby_trapped_pickles_are_refused_and_never_run(tmp_path, trap):
    marker = tmp_path / "pwned"
    write = f"open({str(marker)!r}, 'w').write('x')"
    if trap == "os.system":
        payload = pickle.dumps(_Reduces(os.system, f"touch {marker}"), protocol=4)
    elif trap == "builtins.exec":
        payload = pickle.dumps(_Reduces(builtins.exec, write), protocol=4)
    elif trap == "nested-in-variables":
        kwargs = v1_kwargs()
        own, mapping, syn = v1_variables(kwargs, 0)
        syn["4x4/Const/bias"] = _Reduces(builtins.exec, write)
        payload = dump_official((v1_gs(kwargs, own, mapping, syn),) * 3)
    else:  # the Network class itself called with arguments (REDUCE instead of NEWOBJ)
        payload = dump_official(_Reduces(FakeNetwork, "Gs", "G_style", {}, {}))
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(WeightsFormatError, match="refusing|not a readable"):
        read_tf_pickle(path)
    assert not marker.exists()


def test_build_module_source_is_never_executed(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    seen = []

    def spy(real):
        def wrapper(source, *args, **kwargs):
            if str(marker) in str(source):
                seen.append(real.__name__)
            return real(source, *args, **kwargs)

        return wrapper

    for fn in ("exec", "eval", "compile"):
        monkeypatch.setattr(builtins, fn, spy(getattr(builtins, fn)))
    path = tmp_path / "g.pkl"
    write_v1_pickle(path, v1_kwargs(), src=MARKER_SRC.format(path=str(marker)))
    gs = read_tf_generator(path)
    assert str(marker) in gs.components["synthesis"].build_module_src  # kept as inert text
    G = load_checkpoint(path)
    G.synthesis(G.mean_ws(1))
    assert not marker.exists() and seen == []


# -- strictness --------------------------------------------------------------------------------------------------
def _delete(key, where="syn"):
    def mutate(own, mapping, syn, kwargs):
        del {"own": own, "mapping": mapping, "syn": syn}[where][key]

    return mutate


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_delete("8x8/Conv1/StyleMod/bias"), "missing TF variable 'synthesis/8x8/Conv1/StyleMod/bias'"),
        (_delete("noise5"), "missing TF variable 'synthesis/noise5'"),
        (_delete("dlatent_avg", "own"), "missing TF variable 'dlatent_avg'"),
        (lambda o, m, s, k: s.update({"8x8/Conv1/Extra/weight": np.ones(3, np.float32)}), "8x8/Conv1/Extra/weight"),
        (lambda o, m, s, k: s.update({"8x8/Conv1/bias": np.ones(5, np.float32)}), r"has shape \[5\], expected \[8\]"),
        (lambda o, m, s, k: s.update({"lod": np.float32(1.0)}), "lod"),
        (lambda o, m, s, k: k.update({"architecture": "skip"}), r"unknown static kwargs \['architecture'\]"),
        (lambda o, m, s, k: k.update({"use_instance_norm": False}), "use_instance_norm=False is not supported"),
        (lambda o, m, s, k: k.update({"label_size": 4}), "label_size=4"),
        (lambda o, m, s, k: s.update({"4x4/Conv/bias": np.array(["a"], dtype=object)}), "not numeric"),
    ],
    ids=[
        "missing", "missing-noise", "missing-avg", "extra", "shape", "lod", "unknown-kwarg", "changed-math", "labels",
        "object-array",
    ],  # fmt: skip
)
def test_converter_is_strict(tmp_path, mutate, message):
    path = tmp_path / "g.pkl"
    write_v1_pickle(path, v1_kwargs(), mutate=mutate)
    with pytest.raises(WeightsFormatError, match=message):
        convert_tf_stylegan1(read_tf_generator(path))


def test_malformed_files_are_refused(tmp_path):
    path = tmp_path / "junk.pkl"
    path.write_bytes(os.urandom(64))
    with pytest.raises(WeightsFormatError, match="not a readable"):
        read_tf_pickle(path)
    state_extra = FakeNetwork("Gs", "G_style", {}, {})
    state_extra.state["exec_me"] = "print(1)"
    path.write_bytes(dump_official(state_extra))
    with pytest.raises(WeightsFormatError, match="state keys"):
        read_tf_pickle(path)
    path.write_bytes(dump_official({"G": 1}))
    with pytest.raises(WeightsFormatError, match="expected the tuple"):
        read_tf_generator(path)


def test_missing_file_and_cyclic_state(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="cannot read"):
        read_tf_pickle(tmp_path / "absent.pkl")
    net = FakeNetwork("Gs", "G_style", {}, {})
    net.state["components"] = {"synthesis": net}  # a Network that contains itself
    with pytest.raises(WeightsFormatError, match="RecursionError"):
        read_tf_pickle(io.BytesIO(dump_official(net)))


def test_sniffer_recognises_tf_pickles_without_loading_them(tmp_path):
    path = tmp_path / "g.pkl"
    write_v1_pickle(path, v1_kwargs())
    assert is_tf_network_pickle(path)
    for proto in (3, 4):  # GLOBAL and STACK_GLOBAL spellings
        buf = io.BytesIO()
        OfficialPickler(buf, protocol=proto).dump(FakeNetwork("Gs", "G_style", {}, {"lod": np.float32(0.0)}))
        buf.seek(0)
        assert is_tf_network_pickle(buf) and buf.tell() == 0
        assert read_tf_pickle(buf).variables["lod"].shape == ()  # both spellings load
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps(_Reduces(os.system, f"touch {marker}")))
    assert not is_tf_network_pickle(path) and not marker.exists()
    path.write_bytes(b"PK\x03\x04 a zip, not a pickle")
    assert not is_tf_network_pickle(path)
