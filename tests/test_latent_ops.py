"""Local + global edits (W+ arithmetic, optionally with an Eq. 5 activation edit) and ``i2s latent-edit``: unit
tests on the tiny generator, one real-weight CLI run."""

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
from image2stylegan.apps.latent_ops import (
    LatentEditSettings,
    expression,
    latent_edit,
    mix_rows,
    morph,
    noise_rows,
    resolve_rows,
)
from image2stylegan.cli.common import cli
from image2stylegan.errors import InputError
from image2stylegan.generators.tiny import random_embedding
from image2stylegan.latents import load_latent, save_latent
from image2stylegan.masks import resize_for_layer

embedding = random_embedding


@pytest.fixture
def three(tiny):
    return embedding(tiny, 1), embedding(tiny, 2), embedding(tiny, 3)


@pytest.fixture
def box_mask():
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 4:20] = 1.0
    return mask


# -- the operations ----------------------------------------------------------------------------------------------
def test_morph_endpoints_are_exact():
    w1, w2 = torch.randn(2, 1, 8, 16).unbind(0)
    assert torch.equal(morph(w1, w2, 1.0), w1)  # exact: products with exactly 1.0 and 0.0
    assert torch.equal(morph(w1, w2, 0.0), w2)
    assert torch.allclose(morph(w1, w2, 0.5), (w1 + w2) / 2)


def test_mixing_takes_exactly_the_given_rows_from_b():
    w1, w2 = torch.randn(2, 1, 8, 16).unbind(0)
    out = mix_rows(w1, w2, [2, 5, 6])
    for r in range(8):
        assert torch.equal(out[:, r], (w2 if r in (2, 5, 6) else w1)[:, r])
    assert not torch.equal(out, w1) and out.data_ptr() != w1.data_ptr()


def test_expression_with_zero_amount_is_w1():
    w1, w2, w3 = torch.randn(3, 1, 8, 16).unbind(0)
    assert torch.equal(expression(w1, w2, w3, 0.0), w1)
    assert torch.equal(expression(w1, w2, w2, 3.0), w1)  # no expression difference, no change
    assert torch.allclose(expression(w1, w2, w3, 1.0), w1 + w3 - w2)


def test_row_presets_follow_the_resolution_each_row_drives(tiny):
    # Tiny: conv1 (4 px), b8.* (8 px), b16.* and b16.torgb (16 px).
    assert resolve_rows(tiny, "coarse") == [0, 1, 2, 3]
    assert resolve_rows(tiny, "middle") == [4, 5, 6, 7]
    assert resolve_rows(tiny, "2-4,7") == [2, 3, 4, 7]
    with pytest.raises(InputError, match="no W\\+ row"):
        resolve_rows(tiny, "fine")
    with pytest.raises(InputError, match="out of range"):
        resolve_rows(tiny, "0-8")
    assert noise_rows(tiny) == [0, 2, 3, 5, 6]  # conv1, b8.conv1, b8.conv2, b16.conv1, b16.conv2


# -- latent_edit -------------------------------------------------------------------------------------------------
def test_latent_edit_global_operations(tiny, three):
    a, b, c = three
    result = latent_edit(tiny, a, b, settings=LatentEditSettings(op="morph", amount=1.0))
    assert torch.equal(result.ws, a[0]) and result.metrics["rows_changed"] == [] and not result.edits
    assert all(torch.equal(x, y) for x, y in zip(result.noise, a[1]))
    half = latent_edit(tiny, a, b, settings=LatentEditSettings(op="morph", noise="follow"))
    assert half.metrics["amount"] == 0.5 and torch.allclose(half.ws, (a[0] + b[0]) / 2)
    assert all(torch.allclose(n, (x + y) / 2) for n, x, y in zip(half.noise, a[1], b[1]))

    mixed = latent_edit(tiny, a, b, settings=LatentEditSettings(op="mix", rows="3-5", noise="follow"))
    assert mixed.metrics["rows_changed"] == mixed.metrics["rows_from_b"] == [3, 4, 5]
    # Noise maps go with their rows: b8.conv2 (row 3) and b16.conv1 (row 5) from B, the rest from A.
    expected = [a[1][0], a[1][1], b[1][2], b[1][3], a[1][4]]
    assert all(torch.equal(n, e) for n, e in zip(mixed.noise, expected))

    smile = latent_edit(tiny, a, b, c, LatentEditSettings(op="expression", amount=0.0))
    assert torch.equal(smile.ws, a[0])
    with pytest.raises(InputError, match="three latents"):
        latent_edit(tiny, a, b, None, LatentEditSettings(op="expression"))
    assert [label for label, _ in latent_edit(tiny, a, b, c, LatentEditSettings(op="expression")).panel][:3] == [
        "A", "B", "C"]


def test_local_edit_on_top_of_a_global_edit_touches_only_the_mask_at_its_layer(tiny, three, box_mask):
    a, b, c = three
    settings = LatentEditSettings(op="morph", amount=0.3, layer="b8.conv2")
    result = latent_edit(tiny, a, b, settings=settings, mask=box_mask, activation_source=c)
    global_only = latent_edit(tiny, a, b, settings=LatentEditSettings(op="morph", amount=0.3))
    assert torch.equal(result.ws, global_only.ws)
    names = tiny.layer_names()
    with torch.no_grad():
        edited = tiny.synthesis_trace(result.ws, result.noise, capture=names, edits=result.edits).activations
        plain = tiny.synthesis_trace(result.ws, result.noise, capture=names).activations
        source = tiny.synthesis_trace(*c, capture=["b8.conv2"]).activations["b8.conv2"]
    for name in names[:3]:
        assert torch.equal(edited[name], plain[name]), name
    m = resize_for_layer(box_mask, 8).bool().expand_as(source)
    assert torch.equal(edited["b8.conv2"][~m], plain["b8.conv2"][~m])
    assert torch.equal(edited["b8.conv2"][m], source[m])
    assert result.metrics["activation_changed_fraction_outside_mask"] == 0.0
    labels = [label for label, _ in result.panel]
    assert labels[:3] == ["A", "B", "activation source"] and "naive copy-paste" in labels
    with pytest.raises(InputError, match="--mask"):
        latent_edit(tiny, a, b, settings=settings)


# -- CLI (the tiny generator stands in for the bundled one) -------------------------------------------------------
@pytest.fixture
def tiny_cli(tiny, monkeypatch):
    from image2stylegan.generators import registry

    monkeypatch.setattr(registry, "load_generator", lambda *args, **kwargs: tiny)
    return CliRunner()


def test_latent_edit_command(tiny, tiny_cli, three, box_mask, tmp_path):
    paths = []
    for name, (ws, noise) in zip("abc", three):
        paths.append(tmp_path / f"{name}.npz")
        save_latent(paths[-1], ws, noise, generator_name=tiny.name)
    Image.fromarray((box_mask[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    out = tmp_path / "mix"
    result = tiny_cli.invoke(cli, list(map(str, ["latent-edit", *paths[:2], "--op", "mix", "--rows", "4-7",
                                                 "--outdir", out, "--device", "cpu"])))
    assert result.exit_code == 0, result.output
    w = load_latent(out / "latent.npz").w
    assert torch.equal(w, mix_rows(three[0][0], three[1][0], [4, 5, 6, 7]))
    assert json.loads((out / "metrics.json").read_text())["metrics"]["rows_changed"] == [4, 5, 6, 7]

    out = tmp_path / "local"
    result = tiny_cli.invoke(cli, list(map(str, ["latent-edit", *paths, "--op", "expression", "--amount", "0.5",
                                                 "--mask", tmp_path / "mask.png", "--layer", "b8.conv2",
                                                 "--from-activation", "c", "--outdir", out, "--device", "cpu"])))
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["activation_changed_fraction_outside_mask"] == 0.0
    assert metrics["inputs"]["activation_source"] == "c"
    assert torch.allclose(load_latent(out / "latent.npz").w, expression(*(e[0] for e in three), 0.5))

    bad = tiny_cli.invoke(cli, list(map(str, ["latent-edit", *paths, "--op", "morph", "--outdir", out])))
    assert bad.exit_code != 0 and "takes 2 latents" in str(bad.exception)


# -- real weights ------------------------------------------------------------------------------------------------
@pytest.mark.real_weights
def test_latent_edit_cli_on_the_bundled_generator(real_latent_pair, tmp_path):
    """Morph the mean face towards a random face, with the random face's activation pasted in the centre."""
    real_latent_pair(tmp_path, seed=7)  # writes a.npz (mean face) and b.npz (a random face)
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "import image2stylegan.cli.activations; from image2stylegan.cli import main; main()",
           "latent-edit", tmp_path / "a.npz", tmp_path / "b.npz", "--op", "mix", "--mask", "center", "--outdir", out,
           "--device", "cpu"]
    result = subprocess.run(list(map(str, cmd)), check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["rows_changed"] == list(range(10, 23))  # "fine": the rows driving 64 px and finer layers
    assert metrics["layer"] == "b16.conv1" and metrics["activation_changed_fraction_outside_mask"] == 0.0
    assert metrics["psnr_outside_mask_vs_global_edit_db"] > 20
    image = np.asarray(Image.open(out / "result.png"))
    assert image.shape == (1024, 1024, 3)
    assert load_latent(out / "latent.npz").w.shape == (1, 23, 512)
