"""Tests for mask presets, mask files, blurring, dilation and scribble masks (image2stylegan.masks)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from image2stylegan.errors import InputError, Notice
from image2stylegan.losses import resize_mask
from image2stylegan.masks import (
    PRESETS,
    blend_mask,
    check_mask_content,
    difference_mask,
    dilate,
    feather,
    gaussian_blur_mask,
    load_mask,
    preset_mask,
    resize_for_layer,
    resolve_mask,
    snap_unit_interval,
)


def _square_mask(size: int, top: int, left: int, side: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., top : top + side, left : left + side] = 1.0
    return mask


def _notices(record) -> list[str]:
    """The Notice messages among the warnings ``record`` caught, in order."""
    return [str(w.message) for w in record if issubclass(w.category, Notice)]


def _save_gray(path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path)


# --------------------------------------------------------------------------- presets


@pytest.mark.parametrize("size", [8, 9])
def test_half_presets_are_exact_complements(size):
    for a, b in (("left-half", "right-half"), ("top-half", "bottom-half")):
        total = preset_mask(a, size) + preset_mask(b, size)
        assert torch.equal(total, torch.ones(1, 1, size, size))


def test_presets_are_binary_and_oriented():
    left = preset_mask("left-half", 8)
    assert left.shape == (1, 1, 8, 8) and left.dtype == torch.float32
    assert left[0, 0, :, :4].eq(1).all() and left[0, 0, :, 4:].eq(0).all()
    assert preset_mask("top-half", 8)[0, 0, :4].eq(1).all()
    for name in PRESETS:
        assert set(preset_mask(name, 8).unique().tolist()) == {0.0, 1.0}


def test_center_preset_is_a_centred_half_side_square():
    center = preset_mask("center", 16)
    assert torch.equal(center, _square_mask(16, 4, 4, 8))
    assert torch.equal(center, center.flip(-1)) and torch.equal(center, center.flip(-2))


def test_unknown_preset_lists_the_choices():
    with pytest.raises(InputError, match="left-half"):
        preset_mask("lefthalf", 8)


# --------------------------------------------------------------------------- files


def test_load_mask_thresholds_grey_levels(tmp_path):
    gray = np.array([[0, 127], [128, 255]], dtype=np.uint8)
    _save_gray(tmp_path / "m.png", gray)
    with pytest.warns(Notice, match=r"grey.*0\.5"):
        mask = load_mask(tmp_path / "m.png", 2)
    assert mask.shape == (1, 1, 2, 2) and mask.dtype == torch.float32
    assert mask[0, 0].tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_load_mask_downsizes_with_notice(tmp_path):
    gray = np.zeros((16, 16), dtype=np.uint8)
    gray[:, :8] = 255
    _save_gray(tmp_path / "m.png", gray)
    with pytest.warns(Notice) as record:
        mask = load_mask(tmp_path / "m.png", 8)
    assert torch.equal(mask, preset_mask("left-half", 8))
    assert _notices(record) == ["m.png: resized from 16x16 to 8x8"]


@pytest.mark.parametrize("rounding", [0.0, -6e-8, 6e-8])
def test_load_mask_selects_half_covered_pixels_whatever_the_rounding(tmp_path, monkeypatch, rounding):
    gray = np.zeros((6, 6), dtype=np.uint8)
    gray[:, :3] = 255  # resized to 3 px, the middle column is half covered: exactly 0.5 in exact arithmetic
    _save_gray(tmp_path / "m.png", gray)
    interpolate = F.interpolate
    monkeypatch.setattr(F, "interpolate", lambda *a, **k: interpolate(*a, **k) + rounding)  # another CPU's rounding
    mask = load_mask(tmp_path / "m.png", 3)
    assert mask[0, 0, 0].tolist() == [1.0, 1.0, 0.0]


def test_load_mask_upsizes_a_pixel_into_a_block(tmp_path):
    gray = np.zeros((4, 4), dtype=np.uint8)
    gray[1, 1] = 255
    _save_gray(tmp_path / "m.png", gray)
    mask = load_mask(tmp_path / "m.png", 8)
    assert torch.equal(mask, _square_mask(8, 2, 2, 2))


def test_load_mask_centre_crops_non_square(tmp_path):
    gray = np.zeros((8, 12), dtype=np.uint8)  # 12 wide: columns 2..9 survive the crop
    gray[:, 2:6] = 255
    _save_gray(tmp_path / "wide.png", gray)
    with pytest.warns(Notice) as record:
        mask = load_mask(tmp_path / "wide.png", 8)
    assert torch.equal(mask, preset_mask("left-half", 8))
    assert _notices(record) == ["wide.png: 12x8 is not square; centre-cropped to 8x8"]


def test_rgba_uses_alpha_when_it_varies(tmp_path):
    rgba = np.full((8, 8, 4), 255, dtype=np.uint8)  # white everywhere: luminance would select everything
    rgba[:, 4:, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    with pytest.warns(Notice, match="alpha"):
        mask = load_mask(tmp_path / "a.png", 8)
    assert torch.equal(mask, preset_mask("left-half", 8))


def test_opaque_rgba_uses_luminance(tmp_path):
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:4, :, :3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "o.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)  # no notice
        mask = load_mask(tmp_path / "o.png", 8)
    assert torch.equal(mask, preset_mask("top-half", 8))


def test_coloured_rgb_uses_luminance(tmp_path):
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[:, :4] = (255, 255, 0)  # yellow: bright
    rgb[:, 4:] = (0, 0, 255)  # blue: dark
    Image.fromarray(rgb).save(tmp_path / "c.png")
    mask = load_mask(tmp_path / "c.png", 8)
    assert torch.equal(mask, preset_mask("left-half", 8))


def test_sixteen_bit_grayscale(tmp_path):
    gray = np.zeros((4, 4), dtype=np.uint16)
    gray[:2] = 40000  # 0.61 -> selected
    gray[2:, :2] = 30000  # 0.46 -> not selected; 8-bit scaling by 255 would select it
    Image.fromarray(gray).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    mask = load_mask(tmp_path / "d.png", 4)
    assert torch.equal(mask, preset_mask("top-half", 4))


def test_one_bit_and_jpeg_masks(tmp_path):
    gray = np.zeros((16, 16), dtype=np.uint8)
    gray[:8] = 255
    Image.fromarray(gray).convert("1").save(tmp_path / "b.png")
    Image.fromarray(gray).save(tmp_path / "j.jpg", quality=90)
    for name in ("b.png", "j.jpg"):
        mask = load_mask(tmp_path / name, 16)
        assert torch.equal(mask, preset_mask("top-half", 16)), name


def test_exif_orientation_is_applied(tmp_path):
    gray = np.zeros((8, 8), dtype=np.uint8)
    gray[:, :4] = 255
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180 degrees: the left half shows on the right
    Image.fromarray(gray).save(tmp_path / "r.png", exif=exif)
    with pytest.warns(Notice, match="EXIF"):
        mask = load_mask(tmp_path / "r.png", 8)
    assert torch.equal(mask, preset_mask("right-half", 8))


def test_truncated_file_raises_input_error(tmp_path):
    rng = np.random.default_rng(0)
    _save_gray(tmp_path / "full.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png") as info:
        load_mask(tmp_path / "cut.png", 64)
    assert "\n" not in str(info.value)


def test_non_image_raises_input_error(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(InputError, match="notes.png"):
        load_mask(tmp_path / "notes.png", 8)


def test_resolve_mask_presets_files_and_typos(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)  # a preset has no notice
        mask = resolve_mask("center", 8)
    assert torch.equal(mask, preset_mask("center", 8))
    _save_gray(tmp_path / "m.png", np.full((8, 8), 255, dtype=np.uint8))
    mask = resolve_mask(str(tmp_path / "m.png"), 8)
    assert mask.eq(1).all()
    with pytest.raises(InputError, match="neither a preset"):
        resolve_mask("centre", 8)


# --------------------------------------------------------------------------- blur


def test_blur_impulse_response_is_the_normalised_gaussian():
    sigma = 1.5  # radius ceil(3σ) = 5
    impulse = _square_mask(21, 10, 10, 1)
    taps = torch.exp(-0.5 * (torch.arange(-5, 6, dtype=torch.float64) / sigma) ** 2)
    taps = taps / taps.sum()
    expected = torch.zeros(21, 21)
    expected[5:16, 5:16] = torch.outer(taps, taps).float()
    torch.testing.assert_close(gaussian_blur_mask(impulse, sigma)[0, 0], expected, atol=1e-7, rtol=1e-5)


def test_blur_stays_in_range_and_preserves_mass_away_from_borders():
    mask = torch.zeros(1, 1, 64, 64)
    g = torch.Generator().manual_seed(0)
    mask[..., 20:44, 20:44] = (torch.rand(1, 1, 24, 24, generator=g) > 0.5).float()
    out = gaussian_blur_mask(mask, 3.0)
    assert out.min() >= 0 and out.max() <= 1
    assert math.isclose(out.sum().item(), mask.sum().item(), rel_tol=1e-4)


def test_blur_rejects_negative_sigma_and_zero_is_identity():
    mask = preset_mask("center", 8)
    assert torch.equal(gaussian_blur_mask(mask, 0), mask)
    with pytest.raises(InputError, match="sigma"):
        gaussian_blur_mask(mask, -1.0)


def test_feather_keeps_all_ones_and_edge_regions():
    ones = torch.ones(1, 1, 32, 32)
    assert torch.equal(feather(ones, 0.1), ones)  # exact by design: every footprint is all ones
    left = feather(preset_mask("left-half", 64), 0.05)
    # Replicate padding: the half touching the border stays fully selected there; the edge is symmetric.
    assert left[..., 0].min() > 0.999 and left[..., -1].max() < 1e-3
    torch.testing.assert_close(left, 1 - left.flip(-1), atol=1e-6, rtol=0)


def test_feather_sigma_follows_the_side():
    mask = preset_mask("center", 100)
    torch.testing.assert_close(feather(mask, 0.03), gaussian_blur_mask(mask, 3.0))


# --------------------------------------------------------------------------- exact 0 and 1 by design


def test_snap_unit_interval_makes_near_zero_and_near_one_exact():
    values = [-1e-7, 0.0, 6e-8, 1e-6, 2e-6, 0.5, 0.999998, 0.99999994, 1.0, 1.0000001]
    expected = [0.0, 0.0, 0.0, 0.0, 2e-6, 0.5, 0.999998, 1.0, 1.0, 1.0]
    mask = torch.tensor(values).view(1, 1, 1, -1)
    snapped = snap_unit_interval(mask)
    assert snapped.dtype == mask.dtype and mask[0, 0, 0, 2] > 0  # a new tensor; the input is left as it was
    assert snapped.flatten().tolist() == torch.tensor(expected).tolist()
    one = snapped == 1
    assert torch.equal((1 - snapped)[one], torch.zeros(int(one.sum())))  # 1 - M is exactly 0 where M is 1


def _off_by_rounding(monkeypatch, error: float) -> None:
    """Make every F.conv2d in this test pull its result ``error`` towards 0.5 (1 -> 1 − error, 0 -> error): what
    another CPU's summation order (or float32 taps not summing to 1) does, as large or larger, on every machine."""
    conv2d = F.conv2d
    monkeypatch.setattr(F, "conv2d", lambda *a, **k: conv2d(*a, **k) * (1 - 2 * error) + error)


@pytest.mark.parametrize("error", [6e-8, 5e-7, 1e-5])
def test_blur_is_exactly_one_inside_and_zero_far_outside_whatever_the_rounding(monkeypatch, error):
    _off_by_rounding(monkeypatch, error)
    mask = _square_mask(64, 16, 16, 32)
    out = feather(mask, 0.03)  # σ = 1.92 px, footprint radius r = ceil(3σ) = 6
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1
    # Exactly 1 where the whole (2r+1)² footprint lies inside the square, exactly 0 where it lies outside; nothing
    # else is exactly 1 (the next ring is about 0.998), so this is the mechanism, not the snap tolerance.
    assert torch.equal(out == 1, _square_mask(64, 22, 22, 20).bool())
    assert torch.equal(out == 0, ~_square_mask(64, 10, 10, 44).bool())
    assert ((1 - out) == 0).sum() == 400


@pytest.mark.parametrize("threads", [1, 4])
def test_feather_is_exact_inside_and_outside_with_any_thread_count(threads):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # 1024 px and the default σ = 30.72 px: before the footprint rule the maximum was 0.99999988 on some CPUs.
        out = feather(preset_mask("center", 1024))
    finally:
        torch.set_num_threads(before)
    r = math.ceil(3 * 0.03 * 1024)  # 93
    assert torch.equal(out == 1, _square_mask(1024, 256 + r, 256 + r, 512 - 2 * r).bool())
    assert bool((out[..., : 256 - r, :] == 0).all()) and bool((out[..., 768 + r :] == 0).all())
    assert bool((1 - out[..., 512, 512] == 0).all())


def test_blur_of_a_soft_mask_and_sigma_zero_are_snapped():
    nearly = torch.full((1, 1, 16, 16), 0.99999994)
    assert torch.equal(gaussian_blur_mask(nearly, 0), torch.ones_like(nearly))
    assert torch.equal(gaussian_blur_mask(nearly, 1.0), torch.ones_like(nearly))
    assert torch.equal(gaussian_blur_mask(torch.full_like(nearly, 6e-8), 1.0), torch.zeros_like(nearly))


def test_blend_mask_and_resized_masks_are_snapped():
    hole = preset_mask("center", 64) * 0.99999994 + 6e-8  # a soft hole, a rounding away from binary
    blended = blend_mask(hole)
    assert blended.max() == 1 and blended[hole > 0.5].eq(1).all() and blended[..., 0, 0] == 0
    # Area averages and bilinear weights of ones are 1 in exact arithmetic: exactly 1 after the snap.
    ones = torch.full((1, 1, 24, 24), 0.99999994)
    for size in (7, 5, 48, 37):
        assert torch.equal(resize_mask(ones, size), torch.ones(1, 1, size, size)), size
        assert torch.equal(resize_for_layer(preset_mask("left-half", 24), size, mode="area")[..., :, 0],
                           torch.ones(1, 1, size)), size


# --------------------------------------------------------------------------- dilation


def test_dilate_square_grows_a_pixel_into_a_square():
    point = _square_mask(15, 7, 7, 1)
    assert torch.equal(dilate(point, 3, shape="square"), _square_mask(15, 4, 4, 7))


def test_dilate_disk_grows_a_pixel_into_a_disk():
    point = _square_mask(15, 7, 7, 1)
    yy, xx = torch.meshgrid(torch.arange(15), torch.arange(15), indexing="ij")
    disk = (((yy - 7) ** 2 + (xx - 7) ** 2) <= 9).float().view(1, 1, 15, 15)
    out = dilate(point, 3)
    assert torch.equal(out, disk) and out.sum() == 29


@pytest.mark.parametrize("radius", [1, 2, 5, 9])
def test_dilate_disk_matches_a_brute_force_reference(radius):
    g = torch.Generator().manual_seed(radius)
    mask = (torch.rand(2, 1, 23, 29, generator=g) > 0.97).float()
    offsets = torch.arange(-radius, radius + 1)
    footprint = ((offsets.view(-1, 1) ** 2 + offsets.view(1, -1) ** 2) <= radius**2).float()
    reference = (F.conv2d(mask, footprint.view(1, 1, *footprint.shape), padding=radius) > 0).float()
    assert torch.equal(dilate(mask, radius), reference)


def test_dilate_does_not_wrap_and_validates():
    corner = _square_mask(8, 0, 0, 1)
    assert torch.equal(dilate(corner, 2, shape="square"), _square_mask(8, 0, 0, 3))
    assert torch.equal(dilate(corner, 0), corner)
    with pytest.raises(InputError, match="dilation"):
        dilate(corner, -1)


def test_blend_mask_is_larger_soft_and_one_inside():
    hole = preset_mask("center", 64)
    blended = blend_mask(hole)
    assert blended.min() >= 0 and blended.max() <= 1
    assert blended[hole.bool()].eq(1).all()  # the hole comes entirely from the prediction
    # "Slightly larger": the 1-pixel ring around the hole is still mostly selected (2σ dilation, σ = 1.92 px).
    ring = dilate(hole, 1, shape="square").bool() & ~hole.bool()
    assert blended[ring].min() > 0.8
    row = blended[0, 0, 32, :17]  # from the left border to the first hole pixel: a smooth monotone ramp
    assert (row.diff() >= 0).all() and row[0] < 1e-3


# --------------------------------------------------------------------------- difference, content, layer resize


def test_difference_mask_finds_the_scribble_only():
    g = torch.Generator().manual_seed(0)
    original = torch.rand(1, 3, 32, 32, generator=g) - 0.5  # in [-0.5, 0.5]: pure red differs by >= 0.25
    edited = original + (torch.rand(original.shape, generator=g) - 0.5) * 0.04  # <= 0.01 on [0, 1]: ignored
    scribble = torch.zeros(1, 1, 32, 32)
    scribble[..., 10, 5:25] = 1.0
    scribble[..., 11:20, 24] = 1.0
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1)
    edited = torch.where(scribble.bool(), red, edited)
    assert torch.equal(difference_mask(original, edited), scribble)


def test_difference_mask_uses_the_largest_channel_change():
    original = torch.zeros(1, 3, 4, 4)
    edited = original.clone()
    edited[0, 2, 1, 1] = 0.2  # 0.1 on the [0, 1] scale, in one channel only
    edited[0, 0, 2, 2] = 0.08  # 0.04: below the default threshold
    expected = _square_mask(4, 1, 1, 1)
    assert torch.equal(difference_mask(original, edited), expected)


def test_difference_mask_validates():
    img = torch.zeros(1, 3, 8, 8)
    with pytest.raises(InputError, match="same size"):
        difference_mask(img, torch.zeros(1, 3, 8, 9))
    with pytest.raises(InputError, match="threshold"):
        difference_mask(img, img, threshold=0)


def test_check_mask_content():
    empty, full = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    with pytest.raises(InputError, match="^inpainting hole mask is empty: "):
        check_mask_content(empty, "inpainting hole")
    with pytest.raises(InputError, match="^crossover mask covers the whole image: "):
        check_mask_content(full, "crossover")
    check_mask_content(empty, "x", allow_empty=True)
    check_mask_content(full, "x", allow_full=True)
    check_mask_content(preset_mask("center", 8), "x")
    with pytest.raises(InputError, match=r"batch item 1"):
        check_mask_content(torch.cat([preset_mask("center", 8), empty]), "x")


def test_resize_for_layer_nearest_samples_cell_centres():
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 1, 8, 8, generator=g) > 0.5).float()
    out = resize_for_layer(mask, 3)
    idx = [math.floor((i + 0.5) * 8 / 3) for i in range(3)]  # 1, 4, 6
    assert torch.equal(out[0, 0], mask[0, 0][idx][:, idx])
    assert torch.equal(resize_for_layer(preset_mask("center", 64), 8), preset_mask("center", 8))
    assert resize_for_layer(mask, (2, 4)).shape == (1, 1, 2, 4)


def test_resize_for_layer_area_matches_the_loss_masks():
    mask = preset_mask("center", 12)
    torch.testing.assert_close(resize_for_layer(mask, 4, mode="area"), resize_mask(mask, 4))
    with pytest.raises(InputError, match="nearest"):
        resize_for_layer(mask, 4, mode="bicubic")
