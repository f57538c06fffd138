"""The generator interface on the tiny seeded MobileStyleGAN: explicit noise, capture, edits, batching."""

import math

import pytest
import torch
import torch.nn.functional as F

from image2stylegan.generators.mobilestylegan import inverse_haar
from image2stylegan.generators.tiny import tiny_generator


def _reference_idwt(x: torch.Tensor) -> torch.Tensor:
    """The exported network's IDWT: separable stride-2 transposed convs with Haar filters, band layout as exported."""
    b, c4, h, w = x.shape
    c = c4 // 4
    ll, high = x[:, :c], x[:, c:].reshape(b, c, 3, h, w)
    g0 = torch.tensor([1.0, 1.0]) / math.sqrt(2)
    g1 = torch.tensor([1.0, -1.0]) / math.sqrt(2)

    def rows(t, g):  # upsample along H
        return F.conv_transpose2d(t, g.view(1, 1, 2, 1).repeat(c, 1, 1, 1), stride=(2, 1), groups=c)

    def cols(t, g):  # upsample along W
        return F.conv_transpose2d(t, g.view(1, 1, 1, 2).repeat(c, 1, 1, 1), stride=(1, 2), groups=c)

    low = rows(ll, g0) + rows(high[:, :, 0], g1)
    high_ = rows(high[:, :, 1], g0) + rows(high[:, :, 2], g1)
    return cols(low, g0) + cols(high_, g1)


def test_inverse_haar_matches_the_exported_transposed_convolutions():
    x = torch.randn(2, 8, 5, 7, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(inverse_haar(x), _reference_idwt(x), atol=1e-6, rtol=0)


def test_shapes_and_layer_names(tiny):
    assert (tiny.num_ws, tiny.w_dim, tiny.resolution) == (8, 16, 32)
    assert tiny.layer_names() == ("conv1", "b8.up", "b8.conv1", "b8.conv2", "b16.up", "b16.conv1", "b16.conv2", "b16.torgb")
    assert tiny.noise_shapes("paper") == [(1, 4, 4), (1, 8, 8), (1, 8, 8), (1, 16, 16), (1, 16, 16)]
    # Extended: per-channel maps at the two finest blocks only.
    assert tiny.noise_shapes("extended") == [(1, 4, 4), (8, 8, 8), (8, 8, 8), (8, 16, 16), (8, 16, 16)]
    image = tiny.synthesis(tiny.mean_ws(3), tiny.make_noise(3))
    assert image.shape == (3, 3, 32, 32) and torch.isfinite(image).all()


def test_same_seed_same_generator_other_seed_other_generator():
    a, b, c = tiny_generator(seed=1), tiny_generator(seed=1), tiny_generator(seed=2)
    ws = a.mean_ws(1)
    assert torch.equal(a.synthesis(ws), b.synthesis(ws))
    assert not torch.allclose(a.synthesis(ws), c.synthesis(c.mean_ws(1)))


def test_noise_none_means_the_stored_maps(tiny):
    stored = [m.act.noise_const for m in [tiny.conv1] + [c for b in tiny.blocks.values() for c in (b.conv1, b.conv2)]]
    ws = tiny.mean_ws(1)
    torch.testing.assert_close(tiny.synthesis(ws), tiny.synthesis(ws, stored), atol=0, rtol=0)


def test_noise_is_explicit_and_matters(tiny):
    ws = tiny.mean_ws(1)
    n1 = tiny.make_noise(1, generator=torch.Generator().manual_seed(1))
    n2 = tiny.make_noise(1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(tiny.synthesis(ws, n1), tiny.synthesis(ws, n1))  # no hidden randomness
    assert not torch.allclose(tiny.synthesis(ws, n1), tiny.synthesis(ws, n2))


def test_single_channel_noise_equals_the_same_map_repeated_per_channel(tiny):
    ws = tiny.mean_ws(1)
    paper = tiny.make_noise(1, "paper", generator=torch.Generator().manual_seed(3))
    extended = [n.expand(-1, c, -1, -1) for n, (c, _, _) in zip(paper, tiny.noise_shapes("extended"))]
    torch.testing.assert_close(tiny.synthesis(ws, paper), tiny.synthesis(ws, extended), atol=1e-6, rtol=0)


def test_batch_of_two_equals_two_batches_of_one(tiny):
    g = torch.Generator().manual_seed(4)
    ws = tiny.mean_ws(2) + torch.randn(2, tiny.num_ws, tiny.w_dim, generator=g)
    noise = tiny.make_noise(2, generator=g)
    both = tiny.synthesis(ws, noise)
    for i in range(2):
        one = tiny.synthesis(ws[i : i + 1], [n[i : i + 1] for n in noise])
        torch.testing.assert_close(both[i : i + 1], one, atol=1e-5, rtol=1e-5)


def test_each_w_plus_row_drives_its_own_layer(tiny):
    ws = tiny.mean_ws(1)
    base = tiny.synthesis_trace(ws, capture=tiny.layer_names())
    changed = ws.clone()
    changed[:, 4] += 1.0  # row 4 = b16.up
    after = tiny.synthesis_trace(changed, capture=tiny.layer_names())
    for name in ("conv1", "b8.up", "b8.conv1", "b8.conv2"):
        assert torch.equal(base.activations[name], after.activations[name]), name
    assert not torch.allclose(base.activations["b16.up"], after.activations["b16.up"])


def test_capture_returns_every_named_activation_without_changing_the_image(tiny):
    ws, noise = tiny.mean_ws(2), tiny.make_noise(2)
    trace = tiny.synthesis_trace(ws, noise, capture=tiny.layer_names())
    assert list(trace.activations) == list(tiny.layer_names())
    assert trace.activations["b8.conv2"].shape == (2, 8, 8, 8)
    assert trace.activations["b16.torgb"].shape == (2, 12, 16, 16)
    assert torch.equal(trace.image, tiny.synthesis(ws, noise))
    with pytest.raises(KeyError, match="unknown layer"):
        tiny.synthesis_trace(ws, noise, capture=["b999.conv1"])


def test_edits_replace_an_activation_during_the_forward(tiny):
    ws, noise = tiny.mean_ws(1), tiny.make_noise(1)
    plain = tiny.synthesis_trace(ws, noise, capture=["b8.conv2", "b16.conv1"])
    same = tiny.synthesis(ws, noise, edits={"b8.conv2": lambda a: a})
    assert torch.equal(same, plain.image)

    zeros = torch.zeros_like(plain.activations["b8.conv2"])
    edited = tiny.synthesis_trace(ws, noise, capture=["b8.conv2", "b16.conv1"], edits={"b8.conv2": zeros})
    assert torch.equal(edited.activations["b8.conv2"], zeros)  # captured after the edit
    assert not torch.allclose(edited.activations["b16.conv1"], plain.activations["b16.conv1"])  # later layers see it

    # Copying a spatial region changes only what is downstream of it: the earlier layer is untouched.
    other = tiny.synthesis_trace(ws + 1.0, noise, capture=["b8.conv2"]).activations["b8.conv2"]
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    spatial = tiny.synthesis_trace(ws, noise, capture=["b8.conv1", "b8.conv2"],
                                   edits={"b8.conv2": lambda a: mask * other + (1 - mask) * a})
    assert torch.equal(spatial.activations["b8.conv1"], tiny.synthesis_trace(ws, noise, capture=["b8.conv1"]).activations["b8.conv1"])
    torch.testing.assert_close(spatial.activations["b8.conv2"][..., 4:], plain.activations["b8.conv2"][..., 4:], atol=0, rtol=0)

    with pytest.raises(ValueError, match="keep the shape"):
        tiny.synthesis(ws, noise, edits={"b8.conv2": torch.zeros(1, 3, 8, 8)})


def test_bad_shapes_are_refused_with_clear_messages(tiny):
    with pytest.raises(ValueError, match=r"ws must be \[B, 8, 16\]"):
        tiny.synthesis(torch.zeros(1, 7, 16))
    with pytest.raises(ValueError, match="expected 5 noise maps"):
        tiny.synthesis(tiny.mean_ws(1), tiny.make_noise(1)[:-1])
    bad = tiny.make_noise(1)
    bad[1] = torch.zeros(1, 3, 8, 8)
    with pytest.raises(ValueError, match="noise map 1"):
        tiny.synthesis(tiny.mean_ws(1), bad)


def test_gradients_reach_every_w_plus_row_and_noise_map(tiny):
    ws = tiny.mean_ws(1).requires_grad_(True)
    noise = [n.requires_grad_(True) for n in tiny.make_noise(1)]
    tiny.synthesis(ws, noise).square().mean().backward()
    assert (ws.grad.abs().sum(-1) > 0).all()
    assert all(n.grad.abs().sum() > 0 for n in noise)
    assert all(p.grad is None for p in tiny.parameters())  # the generator stays frozen
