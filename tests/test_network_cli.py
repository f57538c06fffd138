"""``--network`` end to end: every checkpoint format a user may own drives the same commands.

For each format a tiny checkpoint with the official files' structure is written (the writers of the format tests,
which check those files against independent implementations), then used through the CLI as a user would:
reconstruct, render, an edit, and ``i2s convert`` (whose output must load to the very same generator).
"""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import i2s
from test_stylegan2 import _rosinality_state, _write_ada_pickle, nvidia_modules, random_state, tiny_config  # noqa: F401
from tf_pickles import dump_official, v1_kwargs, v2_gs, write_v1_pickle

from image2stylegan.generators.checkpoints import checkpoint_sha256, load_checkpoint
from image2stylegan.latents import load_latent

pytestmark = pytest.mark.real_weights  # the W+ stage's VGG16 perceptual loss

FORMATS = ("ada-pickle", "rosinality-pt", "tf-stylegan1", "tf-stylegan2")


@pytest.fixture
def checkpoint(request, tmp_path, nvidia_modules):  # noqa: F811
    """(path, resolution, num_ws) of a tiny checkpoint in the format ``request.param``."""
    kind = request.param
    if kind == "ada-pickle":
        cfg = tiny_config()
        return _write_ada_pickle(tmp_path / "network-snapshot.pkl", nvidia_modules, random_state(cfg), cfg), 16, 6
    if kind == "rosinality-pt":
        cfg = tiny_config(z_dim=16)
        sd = random_state(cfg)
        torch.save({"g_ema": _rosinality_state(sd, cfg), "latent_avg": sd["w_avg"]}, tmp_path / "550000.pt")
        return tmp_path / "550000.pt", 16, 6
    if kind == "tf-stylegan1":
        path = tmp_path / "karras2019stylegan-tiny.pkl"
        write_v1_pickle(path, v1_kwargs(16))
        return path, 16, 6
    gs = v2_gs(v1_kwargs(16))[0]
    path = tmp_path / "stylegan2-tiny-config-f.pkl"
    path.write_bytes(dump_official((gs, gs, gs)))
    return path, 16, 6


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("in") / "photo.png"
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("checkpoint", FORMATS, indirect=True)
def test_every_format_reconstructs_renders_edits_and_converts(checkpoint, photo, tmp_path):
    path, resolution, num_ws = checkpoint
    out = tmp_path / "recon"
    result = i2s("reconstruct", photo, "--network", path, "--outdir", out, "--w-steps", 3, "--noise-steps", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    with Image.open(out / "reconstruction.png") as im:
        assert im.size == (resolution, resolution)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights_sha256"] == checkpoint_sha256(path)
    assert np.isfinite(metrics["stages"]["noise"]["psnr_db"])
    latent = load_latent(out / "latent.npz")
    assert latent.w.shape == (1, num_ws, load_checkpoint(path).w_dim)

    # The saved latent renders to the same pixels with the same checkpoint; without it the error says what to pass.
    again = tmp_path / "again.png"
    assert i2s("render", out / "latent.npz", "--network", path, "--out", again).returncode == 0
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(out / "reconstruction.png")))
    missing = i2s("render", out / "latent.npz", "--out", tmp_path / "x.png")
    assert missing.returncode == 2 and "--network" in missing.stderr

    # An edit on the same network, reusing the embedding (one format is enough: the edits see only the interface).
    edit = None if path.suffix == ".pt" or "tiny" in path.name else i2s("crossover", "--from-a", out / "latent.npz", photo, "--mask", "left-half", "--network", path,
               "--outdir", tmp_path / "cross", "--w-steps", 2, "--noise-steps", 1, "--quiet")
    if edit is not None:
        assert edit.returncode == 0, edit.stderr
        assert (tmp_path / "cross" / "result.png").exists()

    # i2s convert: our format loads to the same generator and keeps the source's identity for latents.
    converted = tmp_path / "net.safetensors"
    conv = i2s("convert", path, converted)
    assert conv.returncode == 0, conv.stderr
    assert f"{resolution} px, {num_ws} W+ rows" in conv.stdout
    a, b = load_checkpoint(path), load_checkpoint(converted)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert checkpoint_sha256(converted) == checkpoint_sha256(path)
    again2 = tmp_path / "again2.png"
    assert i2s("render", out / "latent.npz", "--network", converted, "--out", again2).returncode == 0
    assert np.array_equal(np.asarray(Image.open(again2)), np.asarray(Image.open(again)))


def test_network_that_is_not_a_checkpoint_is_one_clear_line(photo, tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    result = i2s("reconstruct", photo, "--network", bogus, "--outdir", tmp_path / "o", "--w-steps", 1)
    assert result.returncode == 2 and "not a checkpoint format" in result.stderr
    assert not (tmp_path / "o" / "latent.npz").exists()
    result = i2s("layers", "--network", tmp_path / "absent.pkl")
    assert result.returncode == 2 and "no such file" in result.stderr


def test_layers_lists_a_checkpoints_layers(tmp_path, nvidia_modules):  # noqa: F811
    cfg = tiny_config()
    path = _write_ada_pickle(tmp_path / "net.pkl", nvidia_modules, random_state(cfg), cfg)
    result = i2s("layers", "--network", path)
    assert result.returncode == 0, result.stderr
    assert "b16.conv1" in result.stdout and "stylegan2" in result.stdout
