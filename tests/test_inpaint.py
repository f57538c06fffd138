"""Inpainting (Alg. 4): the hole is never read, frozen W+ rows stay put, the row rule, outputs, CLI, real weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import image2stylegan.cli.crossover as cli_module
from image2stylegan.apps.inpaint import (
    InpaintSettings,
    defective_view,
    filled_photo,
    hole_box,
    inpaint,
    inpainting_recipe,
    inpainting_rows,
    telea_fill,
)
from image2stylegan.apps.outputs import EDIT_OUTPUT_FILES
from image2stylegan.cli.common import cli
from image2stylegan.errors import InputError
from image2stylegan.generators.mobilestylegan import (
    MobileStyleGAN,
    MobileStyleGANConfig,
)
from image2stylegan.masks import preset_mask
from image2stylegan.metrics import psnr

# Rows whose layers are at most 8 px (conv1, b8.up, b8.conv1, b8.conv2) plus the last two: rows 4 and 5 are frozen.
FAST = InpaintSettings(w_steps=5, noise_steps=5, max_resolution=8)
STARTED = InpaintSettings(w_steps=5, noise_steps=5, max_resolution=8, start_steps=3)


@pytest.fixture
def hole():
    return preset_mask("center", 32)


def _same(r1, r2) -> bool:
    # Bit for bit by design: the same computation in one process and thread count, and the hole's pixels are
    # replaced (torch.where) or weighted by exactly 0.0 (1 - M_blur+ is 0 inside the hole), never merely small.
    same = torch.equal(r1.ws, r2.ws) and all(torch.equal(x, y) for x, y in zip(r1.noise, r2.noise))
    same &= [h.as_dict() | {"seconds": 0} for h in r1.history] == [h.as_dict() | {"seconds": 0} for h in r2.history]
    same &= all(torch.equal(t1, t2) for (_, t1), (_, t2) in zip(r1.panel, r2.panel))
    return same and r1.metrics == r2.metrics


def test_the_hole_is_never_read(tiny, tiny_perceptual, tiny_target, hole):
    base = inpaint(tiny, tiny_target, hole, tiny_perceptual, FAST)
    for content in (torch.rand(1, 3, 32, 32) * 2 - 1, torch.full((1, 3, 32, 32), float("nan"))):
        other = torch.where(hole > 0.5, content, tiny_target)
        assert _same(base, inpaint(tiny, other, hole, tiny_perceptual, FAST))  # bit for bit
    # Control: a known pixel does matter.
    nudged = tiny_target.clone()
    nudged[..., 0, 0] += 0.5
    assert not torch.equal(base.ws, inpaint(tiny, nudged, hole, tiny_perceptual, FAST).ws)


def test_only_the_named_rows_move(tiny, tiny_perceptual, tiny_target, hole):
    assert inpainting_rows(tiny, max_resolution=8) == [0, 1, 2, 3, 6, 7]
    result = inpaint(tiny, tiny_target, hole, tiny_perceptual, FAST)
    mean = tiny.mean_ws(1)
    assert torch.equal(result.ws[:, 4:6], mean[:, 4:6])  # frozen at the mean latent, exactly
    assert all(not torch.equal(result.ws[:, r], mean[:, r]) for r in (0, 1, 2, 3, 6, 7))
    assert result.metrics["rows_optimised"] == [0, 1, 2, 3, 6, 7]


def test_improved_starts_from_an_embedding_of_the_telea_filled_photo(tiny, tiny_perceptual, tiny_target, hole):
    """'improved' first embeds the photo with its hole filled by Telea (every row, the whole image); the masked
    stage then moves only its rows, so the others keep what that embedding made of them. 'paper' has no such
    stage, and neither has 'improved' with start_steps 0 (the default)."""
    from image2stylegan.embed import embed

    recipe = inpainting_recipe(defective_view(tiny_target, hole, 0.0), hole, [0, 1, 2, 3, 6, 7], STARTED)
    assert [stage.name for stage in recipe.stages] == ["start_w_plus", "w_plus", "noise"]
    first = recipe.stages[0]
    assert first.rows is None and first.steps == 3 and first.terms[0].mse_mask is None
    assert torch.equal(first.terms[0].target, telea_fill(tiny_target, hole))
    start_only = embed(tiny, dataclasses.replace(recipe, stages=recipe.stages[:1]), perceptual=tiny_perceptual)
    result = inpaint(tiny, tiny_target, hole, tiny_perceptual, STARTED)
    assert torch.equal(result.ws[:, 4:6], start_only.ws[:, 4:6])  # set by the start, frozen after it
    assert not torch.equal(result.ws[:, 4:6], tiny.mean_ws(1)[:, 4:6])
    for settings in (replace(STARTED, method="paper"), FAST):
        assert [s.name for s in inpainting_recipe(tiny_target, hole, [0], settings).stages] == ["w_plus", "noise"]
    # Whatever the hole holds in the defective image, the start is the Telea fill of the known pixels.
    assert torch.equal(inpainting_recipe(tiny_target, hole, [0], STARTED).stages[0].terms[0].target,
                       telea_fill(tiny_target, hole))


def test_rows_of_the_bundled_architecture():
    # The bundled 23-row layout with 8 channels per layer (cheap at 1024 px); its weights do not matter here.
    torch.manual_seed(0)
    g = MobileStyleGAN(MobileStyleGANConfig(z_dim=8, w_dim=8, mapping_layers=1, base_channels=8, channels=(8,) * 7))
    assert g.layer_resolutions() == [4] + [r for r in (8, 16, 32, 64, 128, 256, 512) for _ in range(3)] + [512]
    assert inpainting_rows(g) == list(range(13)) + [21, 22]  # conv1 ... b64.conv2, b512.conv2, b512.torgb


def test_noise_stage_fits_the_known_region_and_metrics(tiny, tiny_perceptual, tiny_target, hole):
    result = inpaint(tiny, tiny_target, hole, tiny_perceptual,
                     InpaintSettings(w_steps=10, noise_steps=10), reference=tiny_target,
                     lpips=lambda x, y: (x - y).abs().mean(dim=(1, 2, 3)))
    m = result.metrics
    with torch.no_grad():
        start = tiny.synthesis(tiny.mean_ws(1), None).clamp(-1, 1)
    assert m["stages"]["w_plus"]["psnr_known_db"] > float(psnr(start, tiny_target, mask=1 - hole)[0])
    assert m["stages"]["noise"]["psnr_known_db"] > m["stages"]["w_plus"]["psnr_known_db"]
    assert {"psnr_hole_db", "psnr_full_db", "filled_psnr_hole_db", "naive_fill_psnr_hole_db", "telea_psnr_hole_db",
            "lpips_full", "hole_box", "lpips_hole_box", "filled_lpips_hole_box", "naive_fill_lpips_hole_box",
            "telea_lpips_hole_box"} == set(m["reference"])
    # The filled photo is the photo outside the hole, exactly.
    known = hole[0, 0] < 0.5
    assert torch.equal(result.images["filled.png"][:, known], tiny_target[0][:, known])
    labels = [label for label, _ in result.panel]
    assert labels[0] == "defective input" and labels[-2:] == ["Telea fill (OpenCV)", "reference"] and len(labels) == 6
    assert torch.equal(result.images["filled.png"], result.panel[3][1])
    assert torch.equal(result.panel[0][1][:, 16, 16], torch.zeros(3))  # the hole is shown grey


def test_the_perceptual_target_is_the_known_pixels_over_the_render(tiny, tiny_perceptual, tiny_target, hole):
    """'improved' composites the render into the hole of the perceptual target, so what the hole holds in the
    filled image (the flat fill) does not matter to the W+ stage; the paper's recipe feeds VGG the fill."""
    from image2stylegan.embed import embed

    known = 1.0 - hole
    for method, fill_matters in (("improved", False), ("paper", True)):
        settings = InpaintSettings(w_steps=4, noise_steps=0, method=method)
        results = [embed(tiny, inpainting_recipe(defective_view(tiny_target, hole, fill), hole, [0, 1, 2, 3, 6, 7],
                                                 settings), perceptual=tiny_perceptual) for fill in (-1.0, 1.0)]
        # The MSE term is masked to the known region either way: only the perceptual target can see the fill.
        differ = not torch.allclose(results[0].ws, results[1].ws, rtol=0, atol=1e-6)
        assert differ == fill_matters, method
    term = inpainting_recipe(tiny_target, hole, [0], InpaintSettings()).stages[0].terms[0]
    assert torch.equal(term.perceptual_known, known)
    assert inpainting_recipe(tiny_target, hole, [0], InpaintSettings(method="paper")).stages[0].terms[0] \
        .perceptual_known is None


def test_telea_fill_reads_only_the_known_pixels():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 48, 48, generator=g) * 2 - 1
    hole = torch.zeros(1, 1, 48, 48)
    hole[..., 16:32, 12:36] = 1.0
    base = telea_fill(image, hole)
    other = telea_fill(torch.where(hole > 0.5, torch.full_like(image, float("nan")), image), hole)
    assert torch.equal(base, other) and torch.isfinite(base).all()
    # Outside the hole it returns the image (to 8-bit precision); inside, the border's colours carried inwards.
    assert (base - image).abs()[..., hole[0, 0] < 0.5].max() <= 1 / 127.5 + 1e-6
    flat = telea_fill(torch.where(hole > 0.5, image, torch.full_like(image, 0.2)), hole)
    assert (flat[..., hole[0, 0] > 0.5] - 0.2).abs().max() < 0.02
    assert hole_box(hole, margin=0.25) == (12, 36, 6, 42)


def _smooth_image(size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    coarse = torch.rand(1, 3, 6, 6, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)


@pytest.mark.parametrize("box", [(20, 41, 17, 46), (0, 17, 0, 25), (40, 64, 45, 64)])  # odd and even, at the borders
def test_the_filled_photo_blends_the_render_into_the_known_pixels(box):
    """Poisson blending: a render that is the photo plus a colour offset fills the hole with the photo itself (the
    offset fades out), nothing outside the blend region moves, and the hole's own pixels are never read."""
    image = _smooth_image()
    hole = torch.zeros(1, 1, 64, 64)
    top, bottom, left, right = box
    hole[..., top:bottom, left:right] = 1.0
    offset = torch.tensor([0.2, -0.15, 0.1]).view(1, 3, 1, 1)
    filled = filled_photo(image + offset, image, hole)
    inside = hole[0, 0] > 0.5
    # The offset (0.1-0.2, 13-25 levels) is gone: the render's gradients are the photo's, and the photo bounds the
    # hole on at least one side.
    assert (filled - image).abs()[..., inside].max() < 1e-3
    assert torch.equal(filled[..., ~inside], image[..., ~inside])  # every known pixel kept, exactly
    other = filled_photo(image + offset, torch.where(hole > 0.5, torch.full_like(image, float("nan")), image), hole)
    assert torch.equal(filled, other)
    # What the render draws in the hole stays: a bump of 0.3 in its middle is there in the filled photo.
    bump = torch.zeros_like(image)
    bump[..., (top + bottom) // 2, (left + right) // 2] = 0.3
    bumped = filled_photo(image + offset + bump, image, hole)
    assert (bumped - filled)[..., (top + bottom) // 2, (left + right) // 2].min() > 0.2


@pytest.mark.parametrize("name", ["empty", "full"])
def test_holes_that_leave_nothing_to_do_are_refused(tiny, tiny_perceptual, tiny_target, name):
    mask = torch.zeros(1, 1, 32, 32) if name == "empty" else torch.ones(1, 1, 32, 32)
    with pytest.raises(InputError, match="inpainting hole mask"):
        inpaint(tiny, tiny_target, mask, tiny_perceptual, FAST)


# -- CLI on the tiny generator ------------------------------------------------------------------------------------
@pytest.fixture
def tiny_cli(monkeypatch, tiny, tiny_perceptual):
    from image2stylegan.generators import registry

    monkeypatch.setattr(registry, "load_generator", lambda *a, **k: tiny)
    monkeypatch.setattr(registry, "weights_sha256", lambda name: "0" * 64)
    monkeypatch.setattr(cli_module, "perceptual_and_lpips",
                        lambda dev: (tiny_perceptual, lambda x, y: (x - y).abs().mean(dim=(1, 2, 3))))
    return CliRunner()


def test_cli_writes_every_output(tiny_cli, tmp_path):
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(photo)
    hole = tmp_path / "hole.png"
    Image.fromarray(np.pad(np.full((8, 8), 255, np.uint8), 12)).save(hole)
    out = tmp_path / "out"
    args = ["--outdir", str(out), "--w-steps", "2", "--noise-steps", "2", "--quiet", "--device", "cpu"]
    res = tiny_cli.invoke(cli, ["inpaint", str(photo), "--mask", str(hole), "--reference", str(photo), *args])
    assert res.exit_code == 0, res.output
    assert "in the hole vs the reference" in res.output
    assert {p.name for p in out.iterdir()} == {*EDIT_OUTPUT_FILES, "filled.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["command"] == "inpaint" and metrics["metrics"]["hole_fraction"] == pytest.approx(1 / 16)

    again = ["inpaint", "--from", str(out / "latent.npz"), "--mask", "center", *args]
    refused = tiny_cli.invoke(cli, again)  # the folder holds the first run: replaced only when asked
    assert refused.exit_code != 0 and "--overwrite" in str(refused.exception)
    res = tiny_cli.invoke(cli, [*again, "--overwrite"])
    assert res.exit_code == 0, res.output
    res = tiny_cli.invoke(cli, ["inpaint", str(photo), "--from", str(out / "latent.npz"), "--mask", "center", *args])
    assert res.exit_code == 2 and "exactly one of PHOTO or --from" in res.output


# -- real weights -------------------------------------------------------------------------------------------------
@pytest.mark.real_weights
def test_real_inpainting_of_a_generated_face(real_generator, real_perceptual):
    assert inpainting_rows(real_generator) == list(range(13)) + [21, 22]
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        w = real_generator.mapping(torch.randn(1, 512, generator=g))
        face = real_generator.synthesis((0.7 * w + 0.3 * real_generator.w_avg).unsqueeze(1)
                                        .expand(-1, real_generator.num_ws, -1), None).clamp(-1, 1)
        start = real_generator.synthesis(real_generator.mean_ws(1), None).clamp(-1, 1)
    hole = preset_mask("center", real_generator.resolution)
    result = inpaint(real_generator, face, hole, real_perceptual,
                     InpaintSettings(w_steps=3, noise_steps=3), reference=face)
    final = result.panel[2][1]
    assert final.shape == (3, 1024, 1024) and torch.isfinite(final).all()
    assert result.metrics["psnr_known_db"] > float(psnr(start, face, mask=1 - hole)[0])
    assert torch.equal(result.ws[:, 13:21], real_generator.mean_ws(1)[:, 13:21])
    assert result.images["filled.png"].shape == (3, 1024, 1024)
