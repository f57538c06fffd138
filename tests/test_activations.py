"""Activation-tensor operations (Eq. 5), attribute-level feature transfer (I_att) and ``i2s layers`` /
``i2s transfer-attribute``: unit tests on the tiny generator, one real-weight CLI run."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import image2stylegan.cli.activations  # noqa: F401  (registers the commands on the shared group)
from image2stylegan.apps.activations import (
    ActivationOp,
    AttributeTransferSettings,
    activation_at,
    activation_edit,
    average,
    channel_copy,
    check_edit,
    layer_mask,
    layer_rows,
    layer_table,
    parse_index_ranges,
    resolve_layer,
    spatial_copy,
    transfer_attribute,
)
from image2stylegan.cli.common import cli
from image2stylegan.errors import InputError
from image2stylegan.generators.tiny import random_embedding
from image2stylegan.latents import load_latent, save_latent
from image2stylegan.masks import resize_for_layer
from image2stylegan.metrics import psnr

embedding = random_embedding


@pytest.fixture
def pair(tiny):
    return embedding(tiny, 1), embedding(tiny, 2)


@pytest.fixture
def box_mask():
    """A 32 px mask selecting a 12 x 16 box: several cells of every layer grid (4, 8, 16 px), not all."""
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 4:20] = 1.0
    return mask


def trace_all(generator, embedding, edits=None):
    ws, noise = embedding
    with torch.no_grad():
        return generator.synthesis_trace(ws, noise, capture=generator.layer_names(), edits=edits)


# -- layers ------------------------------------------------------------------------------------------------------
def test_layer_table_has_every_layer_with_its_activation_shape(tiny):
    table = layer_table(tiny)
    assert [info.name for info in table] == list(tiny.layer_names())
    trace = trace_all(tiny, embedding(tiny, 0))
    for info in table:
        assert (1, *info.shape) == tuple(trace.activations[info.name].shape)


def test_each_w_plus_row_drives_the_layer_the_table_names(tiny):
    """Perturbing row r first changes the activation of the layer the table says row r drives."""
    base = embedding(tiny, 0)
    reference = trace_all(tiny, base).activations
    rows = layer_rows(tiny)
    names = tiny.layer_names()
    for r in range(tiny.num_ws):
        ws = base[0].clone()
        ws[:, r] += 1.0
        changed = trace_all(tiny, (ws, base[1])).activations
        first = next(n for n in names if not torch.equal(changed[n], reference[n]))
        assert rows[names.index(first)] == r


def test_layer_aliases_name_the_readings_of_the_fourth_layer(tiny):
    assert resolve_layer(tiny, "b8.conv1") == "b8.conv1"
    assert resolve_layer(tiny, "fourth-row") == "b8.conv2"  # the last 8x8 activation (StyleGAN's 8x8/Conv1)
    assert resolve_layer(tiny, "fourth-conv") == tiny.noise_inputs[3].layer == "b16.conv1"
    with pytest.raises(InputError, match="32x32"):
        resolve_layer(tiny, "fourth-block")  # the tiny generator's layers stop at 16 px
    with pytest.raises(InputError, match="i2s layers"):
        resolve_layer(tiny, "b1024.conv9")


def test_parse_index_ranges():
    assert parse_index_ranges("0-3,6, 5", 8, "channels") == [0, 1, 2, 3, 5, 6]
    assert parse_index_ranges([3, 1, 1], 8, "rows") == [1, 3]
    for bad, match in (("0-8", "out of range"), ("3-1", "backwards"), ("x", "not an index"), ("", "nothing")):
        with pytest.raises(InputError, match=match):
            parse_index_ranges(bad, 8, "channels")


# -- the operations ----------------------------------------------------------------------------------------------
def test_spatial_copy_changes_only_the_masked_cells_and_no_earlier_layer(tiny, pair, box_mask):
    a, b = pair
    layer = "b8.conv2"
    edit = activation_edit(tiny, a, b, layer, ActivationOp("spatial"), box_mask)
    m = resize_for_layer(box_mask, 8).bool().expand_as(edit.tensor)
    assert 0 < int(m[:, 0].sum()) < 64
    assert torch.equal(edit.tensor[~m], edit.base[~m])  # outside: A's activation, bit for bit
    assert torch.equal(edit.tensor[m], edit.source[m])  # inside: B's 1x1xC pixels
    edited = trace_all(tiny, a, edit.edits).activations
    original = trace_all(tiny, a).activations
    names = tiny.layer_names()
    for name in names[: names.index(layer)]:
        assert torch.equal(edited[name], original[name]), name
    assert torch.equal(edited[layer][~m], original[layer][~m])
    assert not torch.equal(edited[layer], original[layer])
    stats = edit.change_stats()
    assert stats["activation_changed_fraction_outside_mask"] == 0.0
    assert stats["activation_changed_fraction_inside_mask"] > 0.9


def test_layer_mask_is_the_nearest_neighbour_resize(tiny, box_mask):
    a = activation_at(tiny, embedding(tiny, 0), "b8.conv1")
    mask_l = layer_mask(box_mask, a)
    assert mask_l.shape == (1, 1, 8, 8) and set(mask_l.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(mask_l, resize_for_layer(box_mask, 8))


def test_channel_copy_changes_only_those_channels(tiny, pair, box_mask):
    a, b = pair
    edit = activation_edit(tiny, a, b, "b16.conv1", ActivationOp("channel", "1-2,5"), None)
    changed = (edit.tensor != edit.base).flatten(2).any(-1)[0]
    assert changed.nonzero().flatten().tolist() == [1, 2, 5]
    assert torch.equal(edit.tensor[:, [1, 2, 5]], edit.source[:, [1, 2, 5]])
    # With a mask: those channels, inside the mask only.
    masked = activation_edit(tiny, a, b, "b16.conv1", ActivationOp("channel", "1-2,5"), box_mask)
    m = resize_for_layer(box_mask, 16).bool()[0, 0]
    diff = masked.tensor != masked.base  # [1, C, H, W]
    assert not diff[:, :, ~m].any() and not diff[:, [0, 3, 4, 6, 7]].any()
    assert diff[0, 1][m].any()
    # The pure function agrees.
    assert torch.equal(channel_copy(edit.base, edit.source, [1, 2, 5]), edit.tensor)


def test_average_with_alpha_one_is_a_exactly(tiny, pair, box_mask):
    a, b = pair
    for mask in (None, box_mask):
        edit = activation_edit(tiny, a, b, "b8.conv1", ActivationOp("average", alpha=1.0), mask)
        assert torch.equal(edit.tensor, edit.base)
        with torch.no_grad():
            assert torch.equal(tiny.synthesis(*a, edits=edit.edits), tiny.synthesis(*a))
    x, y = torch.randn(2, 1, 4, 3, 3).unbind(0)
    assert torch.equal(average(x, y, 0.0), y)
    assert torch.allclose(average(x, y, 0.25), 0.25 * x + 0.75 * y)
    assert torch.equal(spatial_copy(x, y, torch.zeros(1, 1, 3, 3)), x)


def test_check_edit_rejects_bad_input_before_any_work(tiny, box_mask):
    with pytest.raises(InputError, match="needs a mask"):
        check_edit(tiny, "b8.conv1", ActivationOp("spatial"), None)
    with pytest.raises(InputError, match="out of range"):
        check_edit(tiny, "b8.conv1", ActivationOp("channel", "0-8"), None)  # 8 channels: 0-7
    speck = torch.zeros(1, 1, 32, 32)
    speck[..., 0, 0] = 1.0  # one pixel: no cell centre of the 4x4 grid falls on it
    with pytest.raises(InputError, match="selects no cell"):
        check_edit(tiny, "conv1", ActivationOp("spatial"), speck)
    with pytest.raises(InputError, match="empty"):
        check_edit(tiny, "b8.conv1", ActivationOp("spatial"), torch.zeros(1, 1, 32, 32))
    with pytest.raises(InputError, match="--channels"):
        ActivationOp("channel")
    assert check_edit(tiny, "fourth-row", ActivationOp("spatial"), box_mask).name == "b8.conv2"


# -- transfer_attribute ------------------------------------------------------------------------------------------
def test_transfer_attribute_renders_a_with_bs_features_in_the_mask(tiny, pair, box_mask):
    a, b = pair
    settings = AttributeTransferSettings(layer="fourth-row")
    result = transfer_attribute(tiny, a, b, box_mask, settings)
    assert torch.equal(result.ws, a[0])
    assert [label for label, _ in result.panel][:3] == ["A", "B", "naive copy-paste"] and len(result.panel) == 4
    m = result.metrics
    assert m["layer"] == "b8.conv2" and m["layer_alias"] == "fourth-row" and m["layer_shape"] == [8, 8, 8]
    assert m["layer_row"] == 3 and m["activation_changed_fraction_outside_mask"] == 0.0
    with torch.no_grad():
        image = tiny.synthesis(result.ws, result.noise, edits=result.edits)
        render_a = tiny.synthesis(*a)
    assert torch.equal(result.panel[-1][1], image[0])
    assert np.isfinite(m["psnr_outside_mask_vs_a_render_db"]) and m["psnr_inside_mask_vs_b_render_db"] > 0
    # Everything happens inside the mask's footprint at the image: outside it, the image stays closer to A.
    assert m["psnr_outside_mask_vs_a_render_db"] > float(psnr(image.clamp(-1, 1), render_a.clamp(-1, 1), box_mask))
    # Style from B: B's code drives the rest, the injected tensor is the same.
    from_b = transfer_attribute(tiny, a, b, box_mask, AttributeTransferSettings(layer="b8.conv2", style_from="b"))
    assert torch.equal(from_b.ws, b[0]) and torch.equal(from_b.edits["b8.conv2"], result.edits["b8.conv2"])


def test_transfer_attribute_without_a_mask_needs_a_non_spatial_op(tiny, pair):
    a, b = pair
    with pytest.raises(InputError, match="mask"):
        transfer_attribute(tiny, a, b, None, AttributeTransferSettings(layer="b8.conv1"))
    result = transfer_attribute(tiny, a, b, None, AttributeTransferSettings(layer="b8.conv1", op="average"))
    assert len(result.panel) == 3 and result.metrics["activation_changed_fraction"] > 0.9


# -- CLI (the tiny generator stands in for the bundled one) -------------------------------------------------------
@pytest.fixture
def tiny_cli(tiny, monkeypatch):
    from image2stylegan.generators import registry

    monkeypatch.setattr(registry, "load_generator", lambda *args, **kwargs: tiny)
    return CliRunner()


def test_layers_command_lists_every_layer(tiny, tiny_cli):
    result = tiny_cli.invoke(cli, ["layers"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for info in layer_table(tiny):
        row = next(line for line in lines if line.split()[0] == info.name)
        assert f"[{info.channels}, {info.height}, {info.width}]" in row and f" {info.row} " in row
    assert "fourth-conv (default)" in next(line for line in lines if line.startswith("b16.conv1 "))


def test_transfer_attribute_command_from_latents(tiny, tiny_cli, pair, box_mask, tmp_path):
    for name, (ws, noise) in zip("ab", pair):
        save_latent(tmp_path / f"{name}.npz", ws, noise, generator_name=tiny.name)
    Image.fromarray((box_mask[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    args = ["transfer-attribute", "--from-a", tmp_path / "a.npz", "--from-b", tmp_path / "b.npz", "--mask",
            tmp_path / "mask.png", "--layer", "fourth-row", "--outdir", out, "--device", "cpu"]
    result = tiny_cli.invoke(cli, list(map(str, args)))
    assert result.exit_code == 0, result.output
    assert {"result.png", "panel.png", "latent.npz", "metrics.json", "curves.png"} <= {p.name for p in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["activation_changed_fraction_outside_mask"] == 0.0
    assert metrics["settings"]["layer"] == "fourth-row" and metrics["metrics"]["layer"] == "b8.conv2"
    assert torch.equal(load_latent(out / "latent.npz").w, pair[0][0])
    # A photo count that does not match the --from options is a one-line input error.
    bad = tiny_cli.invoke(cli, list(map(str, args[:1] + ["x.png"] + args[1:])))
    assert bad.exit_code != 0 and isinstance(bad.exception, InputError)


# -- real weights ------------------------------------------------------------------------------------------------
@pytest.mark.real_weights
def test_transfer_attribute_cli_on_the_bundled_generator(real_latent_pair, tmp_path):
    """No embedding: A = the mean face, B = a random face, both saved as latents."""
    real_latent_pair(tmp_path, seed=5)  # writes a.npz (mean face) and b.npz (a random face)
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "import image2stylegan.cli.activations; from image2stylegan.cli import main; main()",
           "transfer-attribute", "--from-a", tmp_path / "a.npz", "--from-b", tmp_path / "b.npz", "--mask", "center",
           "--outdir", out, "--device", "cpu"]
    result = subprocess.run(list(map(str, cmd)), check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "fourth-conv is b16.conv1" in result.stderr
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["layer"] == "b16.conv1" and metrics["activation_changed_fraction_outside_mask"] == 0.0
    # The edit is local: outside the mask the result stays much closer to A than B is.
    assert metrics["psnr_outside_mask_vs_a_render_db"] > 20
    image = np.asarray(Image.open(out / "result.png"))
    assert image.shape == (1024, 1024, 3) and np.isfinite(image).all()
