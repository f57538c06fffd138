"""Tests for image loading, quantisation and atomic writes (image2stylegan.io)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.errors import InputError, Notice
from image2stylegan.io import (
    atomic_open,
    atomic_save_npz,
    atomic_save_png,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    ensure_outdir,
    load_image,
    save_image,
    tensor_to_uint8,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def _notices(record) -> list[str]:
    """The Notice messages among the warnings ``record`` caught, in order."""
    return [str(w.message) for w in record if issubclass(w.category, Notice)]


def _rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- colour modes


def test_rgb_png_values_map_to_minus_one_one(tmp_path, rng):
    pixels = _rgb(rng, 8, 8)
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)  # no notice for a square image of the right size
        image = load_image(path, 8)
    assert image.shape == (1, 3, 8, 8) and image.dtype == torch.float32
    expected = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255 * 2 - 1
    torch.testing.assert_close(image[0], expected)


def test_grayscale_becomes_three_equal_channels(tmp_path, rng):
    gray = rng.integers(0, 256, size=(6, 6), dtype=np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    image = load_image(path, 6)
    torch.testing.assert_close(image[0, 0], image[0, 1])
    torch.testing.assert_close(image[0, 0], image[0, 2])
    torch.testing.assert_close(image[0, 0], torch.from_numpy(gray).float() / 255 * 2 - 1)


def test_rgba_is_composited_onto_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255  # pure red ...
    rgba[:2, :, 3] = 255  # ... opaque on top, fully transparent below
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    with pytest.warns(Notice, match="transparency"):
        image = load_image(path, 4)
    assert torch.allclose(image[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(image[0, :, 3, 0], torch.ones(3))


def test_palette_image(tmp_path):
    img = Image.new("P", (5, 5))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    img.putpixel((0, 0), 1)
    path = tmp_path / "palette.png"
    img.save(path)
    image = load_image(path, 5)
    assert torch.allclose(image[0, :, 0, 0], torch.tensor([-1.0, -1.0, 1.0]))
    assert torch.allclose(image[0, :, 1, 1], torch.tensor([1.0, -1.0, -1.0]))


def test_16bit_grayscale_png_scales_full_range(tmp_path):
    values = np.array([[0, 32768, 65535]] * 3, dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as opened:
        assert opened.mode in ("I;16", "I")  # the case this test is about
    image = load_image(path, 3)
    assert image[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0]
    assert image[0, :, 0, 2].tolist() == [1.0, 1.0, 1.0]
    assert abs(image[0, 0, 0, 1].item()) < 1e-4


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # red in CMYK
    image = load_image(path, 16)
    red, green, blue = image[0, :, 8, 8].tolist()
    assert red > 0.8 and green < -0.8 and blue < -0.8


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)
    pixels[:, :4] = 255  # left half white in storage
    img = Image.fromarray(pixels)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "phone.png"
    img.save(path, exif=exif)
    with pytest.warns(Notice, match="EXIF orientation 6"):
        image = load_image(path, 4)
    # After rotating 90 degrees clockwise, the (stored) left half lies on top.
    assert torch.all(image[0, :, 0, :] > 0.9) and torch.all(image[0, :, -1, :] < -0.9)


# --------------------------------------------------------------------------- crop and resize


def test_non_square_is_centre_cropped_with_notice(tmp_path, rng):
    pixels = _rgb(rng, 6, 10)
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    with pytest.warns(Notice) as record:
        image = load_image(path, 6)
    assert _notices(record) == ["wide.png: 10x6 is not square; centre-cropped to 6x6"]
    expected = torch.from_numpy(pixels[:, 2:8]).permute(2, 0, 1).float() / 255 * 2 - 1
    torch.testing.assert_close(image[0], expected)


def test_resize_notice_and_range(tmp_path, rng):
    path = tmp_path / "big.png"
    Image.fromarray(_rgb(rng, 40, 30)).save(path)
    with pytest.warns(Notice) as record:
        image = load_image(path, 16)
    assert image.shape == (1, 3, 16, 16)
    assert _notices(record) == [
        "big.png: 30x40 is not square; centre-cropped to 30x30",
        "big.png: resized from 30x30 to 16x16",
    ]
    assert image.min() >= -1.0 and image.max() <= 1.0


# --------------------------------------------------------------------------- bad files


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".png"), ("JPEG", ".jpg")])
def test_truncated_file_raises_input_error(tmp_path, rng, fmt, suffix):
    path = tmp_path / f"cut{suffix}"
    Image.fromarray(_rgb(rng, 64, 64)).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut"):
        load_image(path, 64)


def test_text_file_named_png_raises_input_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(InputError, match="notes.png"):
        load_image(path, 8)


def test_missing_file_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.png", 8)


def test_folder_instead_of_file_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path, 8)


def test_errors_are_one_line(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("x")
    with pytest.raises(InputError) as info:
        load_image(path, 8)
    assert "\n" not in str(info.value)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but carries almost no pixel data (a few hundred bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 20_000])  # under and over Pillow's own hard limit
def test_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, side):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(InputError, match=r"huge\.png is .*over the limit of 40 megapixels.*I2S_MAX_PIXELS") as info:
        load_image(path, 8)
    assert "\n" not in str(info.value)


def test_pixel_limit_comes_from_the_environment(tmp_path, rng, monkeypatch):
    path = tmp_path / "photo.png"
    Image.fromarray(_rgb(rng, 40, 50)).save(path)
    monkeypatch.setenv("I2S_MAX_PIXELS", "1999")
    with pytest.raises(InputError, match=r"50x40 \(0\.002 megapixels\), over the limit of 0\.002 megapixels"):
        load_image(path, 8)
    monkeypatch.setenv("I2S_MAX_PIXELS", "2000")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)
        assert load_image(path, 8).shape == (1, 3, 8, 8)
    monkeypatch.setenv("I2S_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="I2S_MAX_PIXELS='lots' is not a positive whole number"):
        load_image(path, 8)


# --------------------------------------------------------------------------- quantisation


def test_uint8_round_trip_is_bit_exact(tmp_path, rng):
    pixels = _rgb(rng, 12, 12)
    first = tmp_path / "first.png"
    Image.fromarray(pixels).save(first)
    image = load_image(first, 12)
    second = tmp_path / "second.png"
    save_image(second, image)
    with Image.open(second) as saved:
        assert np.array_equal(np.asarray(saved), pixels)
    assert np.array_equal(tensor_to_uint8(load_image(second, 12)[0]), pixels)


def test_tensor_to_uint8_clamps_and_accepts_both_shapes():
    img = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0, float("nan")]).view(1, 1, 6).expand(3, 1, 6)
    out = tensor_to_uint8(img)
    assert out.dtype == np.uint8 and out.shape == (1, 6, 3)
    assert out[0, :, 0].tolist() == [0, 0, 128, 255, 255, 0]
    assert np.array_equal(tensor_to_uint8(img.unsqueeze(0)), out)
    with pytest.raises(ValueError):
        tensor_to_uint8(torch.zeros(2, 3, 4, 4))


def test_save_image_rejects_unknown_extension(tmp_path):
    with pytest.raises(InputError, match=r"\.bmp"):
        save_image(tmp_path / "x.bmp", torch.zeros(3, 4, 4))


# --------------------------------------------------------------------------- atomic writes


def test_atomic_write_leaves_nothing_when_writer_raises(tmp_path):
    target = tmp_path / "result.bin"

    def failing(handle):
        handle.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(target, failing)
    assert _leftovers(tmp_path) == []


def test_atomic_open_keeps_old_file_when_writer_raises(tmp_path):
    target = tmp_path / "result.txt"
    target.write_bytes(b"old")
    with pytest.raises(KeyError), atomic_open(target) as handle:
        handle.write(b"new")
        raise KeyError("boom")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["result.txt"]


def test_atomic_writers_produce_files(tmp_path, rng):
    atomic_write_bytes(tmp_path / "a.bin", b"abc")
    assert (tmp_path / "a.bin").read_bytes() == b"abc"

    atomic_write_json(tmp_path / "m.json", {"b": np.float32(0.5), "a": np.int64(3), "arr": np.arange(2)})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text) == {"a": 3, "arr": [0, 1], "b": 0.5}
    assert text.index('"a"') < text.index('"b"') and text.endswith("\n")

    atomic_save_npz(tmp_path / "arrays.npz", x=np.ones(3, np.float32))
    with np.load(tmp_path / "arrays.npz", allow_pickle=False) as data:
        assert data["x"].tolist() == [1.0, 1.0, 1.0]

    pixels = _rgb(rng, 5, 7)
    atomic_save_png(tmp_path / "p.png", pixels)
    with Image.open(tmp_path / "p.png") as saved:
        assert np.array_equal(np.asarray(saved), pixels)

    assert sorted(_leftovers(tmp_path)) == ["a.bin", "arrays.npz", "m.json", "p.png"]
    # mkstemp makes 0600 files; results should get the permissions a plain open() gives.
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert os.stat(tmp_path / "a.bin").st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_atomic_save_png_rejects_wrong_shape(tmp_path):
    with pytest.raises(ValueError):
        atomic_save_png(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- output folders


def test_ensure_outdir_creates_nested_folders(tmp_path):
    out = ensure_outdir(tmp_path / "a" / "b")
    assert out.is_dir()
    assert _leftovers(out) == []  # the write probe is cleaned up


def test_ensure_outdir_under_a_regular_file_raises(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write to output folder"):
        ensure_outdir(blocker / "out")


def test_ensure_outdir_on_a_regular_file_raises(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        ensure_outdir(blocker)
