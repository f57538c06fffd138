"""StyleGAN v1 generator: structure, noise through per-channel weights, capture/edits, truncation, fused upsampling.

Numerical agreement with NVIDIA's TF definition (from a TF-structured pickle) is in test_tf_pickle.py.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from image2stylegan.generators.stylegan1 import (
    StyleGAN,
    StyleGANConfig,
    fused_upsample_kernel,
    random_stylegan,
    truncation,
)


def tiny_config(**overrides) -> StyleGANConfig:
    base = dict(resolution=32, z_dim=16, w_dim=16, mapping_layers=2, mapping_fmaps=16, fmap_base=64, fmap_max=8)
    return StyleGANConfig(**{**base, **overrides})


@pytest.fixture(scope="module")
def G():
    return random_stylegan(tiny_config(), seed=0)


def _ws(G, seed=1, batch=1):
    g = torch.Generator().manual_seed(seed)
    return G.mean_ws(batch) + 0.7 * torch.randn(batch, G.num_ws, G.w_dim, generator=g)


def test_ffhq_1024_layout():
    G = StyleGAN(StyleGANConfig())  # zero weights: only the layout is looked at
    assert G.num_ws == 18 and len(G.noise_inputs) == 18
    names = G.layer_names()
    assert names[:4] == ("b4.const", "b4.conv", "b8.conv0", "b8.conv1") and names[-1] == "b1024.torgb"
    assert G.layer_rows() == list(range(18)) + [None]
    assert G.layer_resolutions() == [4, 4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256, 512, 512, 1024, 1024, 1024]
    assert [n.channels for n in G.noise_inputs][::2] == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert G.noise_shapes("paper")[-1] == (1, 1024, 1024)
    assert G.extended_noise_layers == ("b512.conv0", "b512.conv1", "b1024.conv0", "b1024.conv1")
    assert G.noise_shapes("extended")[-4:] == [(32, 512, 512), (32, 512, 512), (16, 1024, 1024), (16, 1024, 1024)]
    assert G.rows_up_to(64) == list(range(10))
    # TF 'auto': the fused transposed conv from 128 px on.
    fused = {name: layer.fused for name, layer in G.named_style_layers() if layer.up}
    assert [r for r in fused if fused[r]] == ["b128.conv0", "b256.conv0", "b512.conv0", "b1024.conv0"]


def test_config_round_trip_and_validation():
    cfg = tiny_config(blur_filter=(1, 3, 3, 1), fused_scale=True, truncation_cutoff=None)
    assert StyleGANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        StyleGANConfig.from_dict({**cfg.to_dict(), "architecture": "skip"})
    with pytest.raises(ValueError, match="power of two"):
        tiny_config(resolution=48)
    with pytest.raises(ValueError, match="fused_scale"):
        tiny_config(fused_scale="yes")


def test_forward_shapes_batch_and_determinism(G):
    ws = _ws(G, batch=2)
    noise = G.make_noise(2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        both = G.synthesis(ws, noise)
        first = G.synthesis(ws[:1], [n[:1] for n in noise])
        again = G.synthesis(ws, noise)
    assert both.shape == (2, 3, 32, 32) and torch.isfinite(both).all()
    torch.testing.assert_close(both[:1], first, rtol=1e-5, atol=1e-5)
    assert torch.equal(both, again)
    assert G.mapping(torch.randn(3, 16)).shape == (3, 16)


def test_noise_enters_only_through_per_channel_weights():
    G = random_stylegan(tiny_config(), seed=3)
    ws = _ws(G)
    noise = G.make_noise(1, generator=torch.Generator().manual_seed(1))
    k = 4  # b16.conv0
    layer = dict(G.named_style_layers())["b16.conv0"]
    other = [n.clone() for n in noise]
    other[k] = torch.randn_like(other[k]) * 5
    with torch.no_grad():
        layer.noise_weight.zero_()
        assert torch.equal(G.synthesis(ws, noise), G.synthesis(ws, other))  # zero weights: the map is irrelevant
        # One channel's weight on: a per-channel (extended) map matters only through that channel.
        layer.noise_weight[2] = 0.5
        ext = noise[k].expand(1, 8, 16, 16).clone()
        ext_other = ext.clone()
        ext_other[:, [0, 1, 3, 4, 5, 6, 7]] = torch.randn(1, 7, 16, 16)
        a = G.synthesis_trace(ws, noise[:k] + [ext] + noise[k + 1 :], capture=["b16.conv0"])
        b = G.synthesis_trace(ws, noise[:k] + [ext_other] + noise[k + 1 :], capture=["b16.conv0"])
        assert torch.equal(a.image, b.image)
        ext_other[:, 2] += 1.0
        c = G.synthesis_trace(ws, noise[:k] + [ext_other] + noise[k + 1 :], capture=["b16.conv0"])
        changed = (c.activations["b16.conv0"] - a.activations["b16.conv0"]).abs().amax(dim=(0, 2, 3))
        assert changed[2] > 1e-3 and torch.all(changed[[0, 1, 3, 4, 5, 6, 7]] == 0)
        # A paper map repeated over channels is the same image as the paper map.
        torch.testing.assert_close(a.image, G.synthesis(ws, noise), rtol=0, atol=1e-6)


def test_noise_strengths_are_rms_of_channel_weights(G):
    strengths = G.noise_strengths()
    assert len(strengths) == len(G.noise_inputs) == G.num_ws
    for s, (_, layer) in zip(strengths, G.named_style_layers()):
        assert s == pytest.approx(layer.noise_weight.pow(2).mean().sqrt().item())


def test_stored_noise_is_the_default(G):
    ws = _ws(G)
    stored = [layer.noise_const for _, layer in G.named_style_layers()]
    with torch.no_grad():
        assert torch.equal(G.synthesis(ws), G.synthesis(ws, stored))


def test_capture_and_edits_at_named_layers(G):
    ws = _ws(G)
    noise = G.make_noise(1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        base = G.synthesis_trace(ws, noise, capture=["b8.conv1", "b32.torgb"])
        assert base.activations["b8.conv1"].shape == (1, 8, 8, 8)
        assert torch.equal(base.activations["b32.torgb"], base.image)
        # Feeding back the captured tensor reproduces the image; replacing it changes only what follows.
        same = G.synthesis(ws, noise, edits={"b8.conv1": base.activations["b8.conv1"]})
        assert torch.equal(same, base.image)
        edited = G.synthesis_trace(ws, noise, capture=["b8.conv1", "b8.conv0"], edits={"b8.conv1": lambda a: -a})
        assert torch.equal(edited.activations["b8.conv1"], -base.activations["b8.conv1"])
        assert not torch.allclose(edited.image, base.image)
        # The edited activation plays the role of the original for the rest of the forward: rows before are unused.
        ws2 = ws.clone()
        ws2[:, :4] += 3.0
        resumed = G.synthesis(ws2, noise, edits={"b8.conv1": base.activations["b8.conv1"]})
        torch.testing.assert_close(resumed, base.image, rtol=0, atol=1e-6)
    with pytest.raises(KeyError, match="unknown layer"):
        G.synthesis_trace(ws, noise, capture=["b8.conv2"])


def test_gradients_reach_ws_and_noise(G):
    ws = _ws(G).requires_grad_(True)
    noise = [n.requires_grad_(True) for n in G.make_noise(1, space="extended")]
    G.synthesis(ws, noise).square().mean().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    assert all(n.grad is not None and n.grad.abs().sum() > 0 for n in noise)


def test_truncation():
    g = torch.Generator().manual_seed(0)
    ws, w_avg = torch.randn(2, 6, 4, generator=g), torch.randn(4, generator=g)
    assert torch.equal(truncation(ws, w_avg, psi=1.0), ws)  # torch.lerp is exact at both ends (weight 0 and 1)
    out = truncation(ws, w_avg, psi=0.0, cutoff=2)
    assert torch.equal(out[:, :2], w_avg.expand(2, 2, 4)) and torch.equal(out[:, 2:], ws[:, 2:])
    out = truncation(ws, w_avg, psi=0.7, cutoff=None)
    torch.testing.assert_close(out, w_avg + 0.7 * (ws - w_avg))

    G = random_stylegan(tiny_config(), seed=0)
    z = torch.randn(3, 16, generator=g)
    w = G.mapping(z)
    sampled = G.sample_ws(z)  # v1 defaults: psi 0.7 on the first 8 rows (all 8 rows at 32 px)
    torch.testing.assert_close(sampled, (G.w_avg + 0.7 * (w - G.w_avg)).unsqueeze(1).expand(3, 8, 16))
    torch.testing.assert_close(G.sample_ws(z, psi=0.5, cutoff=2)[:, 2:], w.unsqueeze(1).expand(3, 6, 16))


def test_fused_upsampling_is_nearest_up_then_flipped_kernel():
    """TF's fused conv2d_transpose is nearest-upsample followed by the 3x3 kernel rotated by 180 degrees; our
    ``fused_upsample_kernel`` must reproduce that (an independent check of the kernel construction)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64)
    fused = F.conv_transpose2d(x, fused_upsample_kernel(w), stride=2, padding=1)
    nearest = F.conv2d(x.repeat_interleave(2, 2).repeat_interleave(2, 3), w.flip(2, 3), padding=1)
    torch.testing.assert_close(fused, nearest)
    assert not torch.allclose(fused, F.conv2d(x.repeat_interleave(2, 2).repeat_interleave(2, 3), w, padding=1))
