"""Tests for the latent.npz format (image2stylegan.latents)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from image2stylegan.errors import InputError, Notice
from image2stylegan.latents import FORMAT_VERSION, LatentFile, complete_noise, load_latent, save_latent

NUM_WS, W_DIM = 6, 16
NOISE_SHAPES = [(1, 1, 4, 4), (1, 1, 8, 8), (1, 1, 8, 8), (1, 1, 16, 16)]


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(7)


def _noise(gen: torch.Generator, shapes=NOISE_SHAPES) -> list[torch.Tensor]:
    return [torch.randn(shape, generator=gen) for shape in shapes]


def test_round_trip_is_exact_with_metadata(tmp_path, gen):
    w = torch.randn(1, NUM_WS, W_DIM, generator=gen)
    noise = _noise(gen)
    path = tmp_path / "latent.npz"
    save_latent(path, w, noise, generator_name="ffhq-1024", weights_sha256="ab" * 32, extra={"noise_space": "per_layer"})

    loaded = load_latent(path)
    assert isinstance(loaded, LatentFile)
    assert torch.equal(loaded.w, w)
    assert len(loaded.noise) == len(noise)
    assert all(torch.equal(a, b) for a, b in zip(loaded.noise, noise))
    assert loaded.generator_name == "ffhq-1024"
    assert loaded.weights_sha256 == "ab" * 32
    assert loaded.meta["noise_space"] == "per_layer"
    assert loaded.meta["format_version"] == FORMAT_VERSION


def test_saved_file_needs_no_pickle_and_uses_documented_keys(tmp_path, gen):
    path = tmp_path / "latent.npz"
    save_latent(path, torch.zeros(1, NUM_WS, W_DIM), _noise(gen)[:2], generator_name="g")
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["format_version", "generator", "noise_00", "noise_01", "w"]
        assert data["generator"].shape == () and data["generator"].dtype.kind == "U"
        assert data["w"].dtype == np.float32


def test_w_only_file_loads(tmp_path):
    # The shape and key NVIDIA's projector writes as projected_w.npz.
    w = np.random.default_rng(0).standard_normal((1, 18, 512)).astype(np.float32)
    path = tmp_path / "projected_w.npz"
    np.savez(path, w=w)
    loaded = load_latent(path)
    assert loaded.w.shape == (1, 18, 512)
    assert np.array_equal(loaded.w.numpy(), w)
    assert loaded.noise == [] and loaded.generator_name is None and loaded.weights_sha256 is None


def test_unbatched_w_gets_a_batch_dim(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, w=np.ones((14, 512), np.float32))
    assert load_latent(path).w.shape == (1, 14, 512)


def test_float64_w_is_converted_to_float32(tmp_path):
    path = tmp_path / "w.npz"
    np.savez(path, w=np.ones((1, 14, 512), np.float64))
    assert load_latent(path).w.dtype == torch.float32


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"dlatents": np.zeros((1, 18, 512), np.float32)}, "no 'w' array"),
        ({"w": np.zeros(512, np.float32)}, "shape"),
        ({"w": np.zeros((2, 18, 512), np.float32)}, "shape"),
        ({"w": np.zeros((1, 18, 512), np.int32)}, "dtype"),
        ({"w": np.full((1, 18, 512), np.nan, np.float32)}, "NaN"),
        ({"w": np.zeros((1, 4, 8), np.float32), "noise_00": np.zeros((1, 1, 4, 4), np.float32),
          "noise_02": np.zeros((1, 1, 8, 8), np.float32)}, "noise_01 is missing"),
        ({"w": np.zeros((1, 4, 8), np.float32), "format_version": np.array(99)}, "newer"),
    ],
)
def test_bad_latents_raise_input_error(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=message) as info:
        load_latent(path)
    assert "bad.npz" in str(info.value) and "\n" not in str(info.value)


def test_missing_and_non_npz_files_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_latent(tmp_path / "nope.npz")
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a .npz"):
        load_latent(text)
    npy = tmp_path / "w.npy"
    np.save(npy, np.zeros((18, 512), np.float32))
    with pytest.raises(InputError, match="single .npy"):
        load_latent(npy)


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, w=np.zeros((1, 4, 8), np.float32), generator=np.array({"a": 1}, dtype=object))
    with pytest.raises(InputError, match="pickled"):
        load_latent(path)


def test_truncated_npz_raises_input_error(tmp_path, gen):
    path = tmp_path / "latent.npz"
    save_latent(path, torch.zeros(1, NUM_WS, W_DIM), _noise(gen))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="latent.npz is truncated or corrupt") as info:
        load_latent(path)
    assert "pickled" not in str(info.value)


def _npz_declaring(path, shape, descr="<f4", body=b""):
    """An .npz whose only entry 'w' declares ``shape`` in its .npy header but carries ``body`` as data."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", header.getvalue() + body)


def test_huge_declared_array_is_refused_before_allocating(tmp_path):
    path = tmp_path / "huge.npz"
    _npz_declaring(path, (1, 1 << 20, 1 << 20))  # 4 TiB of float32 in a file of a few hundred bytes
    with pytest.raises(InputError, match=r"huge.npz: 'w' declares .* \(4 TiB\), over the limit of 512 MiB"):
        load_latent(path)


def test_declared_size_larger_than_the_data_is_truncation(tmp_path):
    path = tmp_path / "short.npz"
    _npz_declaring(path, (1, 18, 512), body=b"\0" * 100)
    with pytest.raises(InputError, match="short.npz is truncated or corrupt"):
        load_latent(path)


def test_fortran_order_and_big_endian_arrays_load(tmp_path):
    path = tmp_path / "f.npz"
    w = np.asfortranarray(np.arange(24, dtype=">f8").reshape(1, 4, 6))
    np.savez(path, w=w)
    assert np.array_equal(load_latent(path).w.numpy(), w.astype(np.float32))


def test_save_rejects_reserved_extra_keys(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_latent(tmp_path / "x.npz", torch.zeros(1, 2, 3), [], extra={"noise_00": "x"})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- complete_noise


def test_complete_noise_fills_missing_layers_with_zeros(gen):
    present = _noise(gen)[:2]
    with pytest.warns(Notice) as record:
        maps = complete_noise(present, NOISE_SHAPES)
    assert [tuple(m.shape) for m in maps] == NOISE_SHAPES
    assert maps[0] is present[0] and maps[1] is present[1]
    assert all(torch.count_nonzero(m) == 0 for m in maps[2:])
    assert [str(w.message) for w in record] == [
        "latent.npz has no noise maps for layers 2..3; rendering them with zero noise"
    ]


def test_complete_noise_with_everything_present_has_no_notice(gen):
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)
        maps = complete_noise(_noise(gen), NOISE_SHAPES)
    assert len(maps) == len(NOISE_SHAPES)


def test_complete_noise_single_missing_layer_and_source_name(gen):
    with pytest.warns(Notice) as record:
        complete_noise(_noise(gen)[:3], NOISE_SHAPES, source="w.npz")
    assert [str(w.message) for w in record] == ["w.npz has no noise maps for layer 3; rendering them with zero noise"]


def test_complete_noise_accepts_one_or_all_channels(gen):
    expected = [(1, 4, 8, 8)]
    for channels in (1, 4):
        maps = complete_noise([torch.randn(1, channels, 8, 8, generator=gen)], expected)
        assert maps[0].shape[1] == channels
    with pytest.raises(InputError, match="noise map 00"):
        complete_noise([torch.randn(1, 2, 8, 8, generator=gen)], expected)


def test_complete_noise_rejects_wrong_resolution_and_too_many_maps(gen):
    with pytest.raises(InputError, match="different generator"):
        complete_noise([torch.zeros(1, 1, 5, 5)], NOISE_SHAPES)
    with pytest.raises(InputError, match="5 noise maps but the generator has 4"):
        complete_noise(_noise(gen) + [torch.zeros(1, 1, 16, 16)], NOISE_SHAPES)


def test_activation_edits_round_trip(tmp_path):
    edit = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "edited.npz"
    save_latent(path, torch.zeros(1, 3, 16), [], generator_name="g", edits={"b8.conv2": edit})
    loaded = load_latent(path)
    assert list(loaded.edits) == ["b8.conv2"] and torch.equal(loaded.edits["b8.conv2"], edit)
    assert "edit:b8.conv2" not in loaded.meta
    assert load_latent(path).w.shape == (1, 3, 16)
