"""The ``i2s`` command end to end with the real weights at a tiny step budget, and its handling of bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from image2stylegan.latents import load_latent, save_latent

pytestmark = pytest.mark.real_weights

OUTPUTS = {"reconstruction.png", "comparison.png", "target.png", "latent.npz", "metrics.json", "curves.png"}


def i2s(*args, env=None):
    """Run the console entry point in a subprocess, as a user would."""
    cmd = [sys.executable, "-c", "from image2stylegan.cli import main; main()", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A non-square RGBA photo, so the run also exercises crop, resize and alpha handling."""
    rng = np.random.default_rng(0)
    rgba = np.zeros((300, 340, 4), np.uint8)
    rgba[..., :3] = rng.integers(0, 255, (300, 340, 3))
    rgba[..., 3] = 255
    rgba[:20, :20, 3] = 0
    path = tmp_path_factory.mktemp("in") / "photo.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


@pytest.fixture(scope="module")
def run(photo, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("out") / "recon"
    result = i2s("reconstruct", photo, "--outdir", outdir, "--w-steps", 2, "--noise-steps", 2, "--quiet")
    return result, outdir


def test_reconstruct_writes_every_output(run):
    result, outdir = run
    assert result.returncode == 0, result.stderr
    assert {p.name for p in outdir.iterdir()} == OUTPUTS
    assert "not square; centre-cropped" in result.stderr and "resized" in result.stderr
    assert "w_plus stage: PSNR" in result.stdout and "noise stage: PSNR" in result.stdout
    with Image.open(outdir / "reconstruction.png") as im:
        assert im.size == (1024, 1024) and im.mode == "RGB"
    metrics = json.loads((outdir / "metrics.json").read_text())
    for stage in ("w_plus", "noise"):
        assert {"psnr_db", "ssim", "lpips", "seconds_per_step"} <= set(metrics["stages"][stage])
    assert metrics["settings"]["w_steps"] == 2 and metrics["weights_sha256"]
    latent = load_latent(outdir / "latent.npz")
    assert latent.w.shape == (1, 23, 512) and len(latent.noise) == 15
    assert latent.generator_name == "mobilestylegan-ffhq"


def test_render_reproduces_the_reconstruction_bit_for_bit(run, tmp_path):
    _, outdir = run
    out = tmp_path / "again.png"
    result = i2s("render", outdir / "latent.npz", "--out", out)
    assert result.returncode == 0, result.stderr
    a, b = np.asarray(Image.open(out)), np.asarray(Image.open(outdir / "reconstruction.png"))
    # Bit for bit by construction: both processes run the same batch-1 synthesis of the same saved float32 (w, n)
    # with the same environment (hence thread count) on the same machine.
    assert np.array_equal(a, b)


def test_render_accepts_a_w_only_file_like_nvidias_projector_writes(run, tmp_path):
    _, outdir = run
    w_only = tmp_path / "projected_w.npz"
    np.savez(w_only, w=load_latent(outdir / "latent.npz").w.numpy())
    result = i2s("render", w_only, "--out", tmp_path / "w.png")
    assert result.returncode == 0, result.stderr
    assert "zero noise" in result.stderr and "bundled" in result.stderr
    assert (tmp_path / "w.png").exists()


def _one_line_error(result):
    """Exit status 2, no traceback, and exactly one 'error:' line (notices may precede it)."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2, result.stderr
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_truncated_photo_is_one_clear_line_and_writes_nothing(photo, tmp_path):
    bad = tmp_path / "cut.png"
    bad.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    outdir = tmp_path / "o"
    line = _one_line_error(i2s("reconstruct", bad, "--outdir", outdir, "--w-steps", 1, "--noise-steps", 1))
    assert "cut.png" in line
    assert not outdir.exists() or not any(outdir.iterdir())


def test_unwritable_outdir_is_refused_before_any_work(photo, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = _one_line_error(i2s("reconstruct", photo, "--outdir", blocker / "sub", "--w-steps", 1))
    assert "output folder" in line


def test_missing_weights_say_which_command_to_run(photo, tmp_path):
    env = {**__import__("os").environ, "I2S_HOME": str(tmp_path / "empty-cache")}
    line = _one_line_error(i2s("reconstruct", photo, "--outdir", tmp_path / "o", env=env))
    assert "i2s weights fetch" in line


def test_impossible_settings_are_usage_errors(photo, tmp_path):
    result = i2s("reconstruct", photo, "--outdir", tmp_path / "o", "--w-steps", -5)
    assert result.returncode == 2 and "--w-steps" in result.stderr
    result = i2s("reconstruct", photo, "--outdir", tmp_path / "o", "--noise-space", "nonsense")
    assert result.returncode == 2 and "--noise-space" in result.stderr


def test_latent_with_the_wrong_shape_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    save_latent(bad, np.zeros((1, 18, 512), np.float32), [])
    line = _one_line_error(i2s("render", bad, "--out", tmp_path / "x.png"))
    assert "[1, 23, 512]" in line


def test_demo_writes_both_noise_spaces_from_one_w_plus_stage(tmp_path):
    """What `make demo` runs, at a budget of 2 + 1 steps: one W+ stage, then the noise stage in each space."""
    outdir = tmp_path / "demo"
    result = i2s("demo", "--outdir", outdir, "--w-steps", 2, "--noise-steps", 1, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "w_plus stage: PSNR" in result.stdout and "noise (extended) stage" in result.stdout
    for space in ("paper", "extended"):
        assert {p.name for p in (outdir / space).iterdir()} == OUTPUTS
        metrics = json.loads((outdir / space / "metrics.json").read_text())
        assert sorted(metrics["stages"]) == sorted(["w_plus", f"noise ({space})"]) and metrics["stopped"] is False
        assert [s["name"] for s in metrics["recipe"]["stages"]] == ["w_plus", "noise (paper)", "noise (extended)"]
        assert load_latent(outdir / space / "latent.npz").meta["noise_space"] == space
    # Both spaces continue the same W+ embedding: their W+ codes are the same tensor, copied into two files.
    paper, extended = (load_latent(outdir / s / "latent.npz").w for s in ("paper", "extended"))
    assert np.array_equal(paper.numpy(), extended.numpy())
