"""Image crossover (Alg. 3): which pixels of A and B can influence the run, outputs, CLI, and one real-weight run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import image2stylegan.cli.crossover as cli_module
from image2stylegan.apps.crossover import CrossoverSettings, crossover
from image2stylegan.apps.outputs import copy_paste
from image2stylegan.apps.outputs import EDIT_OUTPUT_FILES
from image2stylegan.cli.common import cli
from image2stylegan.errors import InputError
from image2stylegan.masks import feather, preset_mask

FAST = CrossoverSettings(w_steps=4, noise_steps=4, feather=0.0)


@pytest.fixture
def image_b(tiny):
    """A second face of the tiny generator, unlike ``tiny_target``."""
    g = torch.Generator().manual_seed(7)
    ws = tiny.mean_ws(1) + 0.7 * torch.randn(1, tiny.num_ws, tiny.w_dim, generator=g)
    with torch.no_grad():
        return tiny.synthesis(ws, tiny.make_noise(1, generator=g)).clamp(-1, 1)


def _scribble(image: torch.Tensor, columns: slice, seed: int = 99) -> torch.Tensor:
    """``image`` with random values in ``columns``."""
    out = image.clone()
    g = torch.Generator().manual_seed(seed)
    out[..., columns] = torch.rand(out[..., columns].shape, generator=g) * 2 - 1
    return out


def _run(tiny, perceptual, a, b, mask, settings=FAST):
    return crossover(tiny, a, b, mask, perceptual, settings)


def _same_trajectory(r1, r2, *, include_psnr: bool = True) -> bool:
    # Bit-for-bit comparison is sound here: both runs are the same computation in the same process and thread
    # count, and the changed pixels enter only multiplied by a mask value of exactly 0.0.
    same = torch.equal(r1.ws, r2.ws) and all(torch.equal(x, y) for x, y in zip(r1.noise, r2.noise))
    for h1, h2 in zip(r1.history, r2.history):
        same &= h1.terms == h2.terms and h1.loss == h2.loss and (not include_psnr or h1.psnr == h2.psnr)
    return same and len(r1.history) == len(r2.history)


# Receptive field of the tiny perceptual loss's deepest layer (relu2_2): a feature cell j (2 px wide) sees input
# pixels 2j-6 ... 2j+7. With the hard left-half mask at 32 px, B enters the perceptual term only through cells
# j >= 8 (pixels >= 10) and A only through cells j <= 7 (pixels <= 21); the pixel terms read B only at columns
# >= 16 and A only at columns < 16. So B's columns 0-7 and A's columns 24-31 can never matter.
B_NEVER_READ = slice(0, 8)
A_NEVER_READ = slice(24, 32)


def test_b_pixels_under_the_mask_never_matter(tiny, tiny_perceptual, tiny_target, image_b):
    mask = preset_mask("left-half", 32)
    base = _run(tiny, tiny_perceptual, tiny_target, image_b, mask)
    changed = _run(tiny, tiny_perceptual, tiny_target, _scribble(image_b, B_NEVER_READ), mask)
    assert _same_trajectory(base, changed)  # bit for bit: W+, noise, every logged loss term and PSNR
    # Control: B outside the mask does steer the run.
    steered = _run(tiny, tiny_perceptual, tiny_target, _scribble(image_b, slice(16, 32)), mask)
    assert not torch.equal(base.ws, steered.ws)


def test_a_pixels_outside_the_mask_never_matter(tiny, tiny_perceptual, tiny_target, image_b):
    mask = preset_mask("left-half", 32)
    base = _run(tiny, tiny_perceptual, tiny_target, image_b, mask)
    changed = _run(tiny, tiny_perceptual, _scribble(tiny_target, A_NEVER_READ), image_b, mask)
    # The W+ stage logs PSNR against the whole of A (embed's target), so only W+, noise and the losses must agree.
    assert _same_trajectory(base, changed, include_psnr=False)
    steered = _run(tiny, tiny_perceptual, _scribble(tiny_target, slice(0, 16)), image_b, mask)
    assert not torch.equal(base.ws, steered.ws)


def test_with_pixel_terms_only_b_is_ignored_wherever_the_blurred_mask_is_one(tiny, tiny_target, image_b):
    mask = preset_mask("left-half", 32)
    settings = CrossoverSettings(w_steps=4, noise_steps=4, perceptual_weight=0.0)  # default feather, σ ≈ 1 px
    # The columns where M_blur is exactly 1 by design (the kernel's whole footprint is inside M; see
    # masks.gaussian_blur_mask), so 1 - M_blur weighs B there by exactly 0.0 on any CPU.
    core = (feather(mask, settings.feather) == 1.0)[0, 0, 0]
    assert 8 <= int(core.sum()) < 16
    changed_b = image_b.clone()
    changed_b[..., core] = -image_b[..., core]
    base = crossover(tiny, tiny_target, image_b, mask, None, settings)
    changed = crossover(tiny, tiny_target, changed_b, mask, None, settings)
    assert _same_trajectory(base, changed)


def test_result_moves_towards_both_images_and_reports_the_panel(tiny, tiny_perceptual, tiny_target, image_b):
    mask = preset_mask("left-half", 32)
    result = _run(tiny, tiny_perceptual, tiny_target, image_b, mask,
                  CrossoverSettings(w_steps=15, noise_steps=10, feather=0.05))
    with torch.no_grad():
        start = tiny.synthesis(tiny.mean_ws(1), None).clamp(-1, 1)
    from image2stylegan.metrics import psnr

    start_a = float(psnr(start, tiny_target, mask=mask)[0])
    start_b = float(psnr(start, image_b, mask=1 - mask)[0])
    m = result.metrics
    assert m["psnr_a_inside_db"] > start_a and m["psnr_b_outside_db"] > start_b
    assert m["stages"]["noise"]["psnr_a_inside_db"] == pytest.approx(m["psnr_a_inside_db"])
    assert [label for label, _ in result.panel][2] == "naive copy-paste"
    assert all(tile.shape == (3, 32, 32) for _, tile in result.panel)
    assert torch.equal(result.panel[2][1], copy_paste(tiny_target, image_b, mask)[0])
    assert [s.name for s in result.stages] == ["w_plus", "noise"]


def test_starting_from_an_embedding_of_a(tiny, tiny_perceptual, tiny_target, image_b):
    start = tiny.mean_ws(1) + 0.3
    zero = crossover(tiny, tiny_target, image_b, preset_mask("top-half", 32), tiny_perceptual,
                     CrossoverSettings(w_steps=0, noise_steps=0), ws=start)
    assert torch.equal(zero.ws, start)
    assert zero.metrics["start"].startswith("given")


@pytest.mark.parametrize("name", ["empty", "full"])
def test_masks_that_leave_one_image_out_are_refused(tiny, tiny_perceptual, tiny_target, image_b, name):
    mask = torch.zeros(1, 1, 32, 32) if name == "empty" else torch.ones(1, 1, 32, 32)
    with pytest.raises(InputError, match="crossover mask"):
        crossover(tiny, tiny_target, image_b, mask, tiny_perceptual, FAST)


def test_wrong_image_size_is_refused(tiny, tiny_perceptual, tiny_target):
    with pytest.raises(InputError, match="image B"):
        crossover(tiny, tiny_target, torch.zeros(1, 3, 16, 16), preset_mask("left-half", 32), tiny_perceptual)


# -- CLI on the tiny generator ------------------------------------------------------------------------------------
@pytest.fixture
def tiny_cli(monkeypatch, tiny, tiny_perceptual):
    from image2stylegan.generators import registry

    monkeypatch.setattr(registry, "load_generator", lambda *a, **k: tiny)
    monkeypatch.setattr(registry, "weights_sha256", lambda name: "0" * 64)
    monkeypatch.setattr(cli_module, "perceptual_and_lpips", lambda dev: (tiny_perceptual, None))
    return CliRunner()


def _photo(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def test_cli_writes_every_output_and_reuses_a_saved_embedding(tiny_cli, tmp_path):
    a, b = _photo(tmp_path / "a.png", 0), _photo(tmp_path / "b.png", 1)
    out = tmp_path / "out"
    args = ["--outdir", str(out), "--w-steps", "2", "--noise-steps", "2", "--quiet", "--device", "cpu"]
    res = tiny_cli.invoke(cli, ["crossover", str(a), str(b), "--mask", "left-half", *args])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == set(EDIT_OUTPUT_FILES)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["command"] == "crossover" and metrics["settings"]["w_steps"] == 2
    assert {"psnr_a_inside_db", "psnr_b_outside_db"} <= set(metrics["metrics"])

    again = tmp_path / "again"
    args[1] = str(again)
    res = tiny_cli.invoke(cli, ["crossover", str(b), "--from-a", str(out / "latent.npz"), "--mask", "right-half", *args])
    assert res.exit_code == 0, res.output
    inputs = json.loads((again / "metrics.json").read_text())["inputs"]
    # Inputs are recorded by file and sha256 (a --from latent is the input, not its render).
    assert inputs["a"]["file"] == str(out / "latent.npz") and inputs["b"]["file"] == str(b)
    assert len(inputs["b"]["sha256"]) == 64


def test_cli_counts_its_images(tiny_cli, tmp_path):
    a = _photo(tmp_path / "a.png", 0)
    res = tiny_cli.invoke(cli, ["crossover", str(a), "--mask", "left-half", "--outdir", str(tmp_path / "o")])
    assert res.exit_code == 2 and "needs images A and B" in res.output


# -- real weights -------------------------------------------------------------------------------------------------
@pytest.mark.real_weights
def test_real_crossover_of_two_faces_moves_towards_both(real_generator, real_perceptual):
    from image2stylegan.metrics import psnr

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        faces = [real_generator.synthesis(real_generator.mapping(torch.randn(1, 512, generator=g)).unsqueeze(1)
                                          .expand(-1, real_generator.num_ws, -1) * 0.7
                                          + real_generator.w_avg * 0.3, None).clamp(-1, 1) for _ in range(2)]
        start = real_generator.synthesis(real_generator.mean_ws(1), None).clamp(-1, 1)
    mask = preset_mask("left-half", real_generator.resolution)
    result = crossover(real_generator, faces[0], faces[1], mask, real_perceptual,
                       CrossoverSettings(w_steps=3, noise_steps=3))
    final = result.panel[-1][1]
    assert final.shape == (3, 1024, 1024) and torch.isfinite(final).all()
    m = result.metrics
    assert m["psnr_a_inside_db"] > float(psnr(start, faces[0], mask=mask)[0])
    assert m["psnr_b_outside_db"] > float(psnr(start, faces[1], mask=1 - mask)[0])
