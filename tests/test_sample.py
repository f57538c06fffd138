"""Sampling faces with their exact latents (``i2s sample``): determinism, truncation, seeds, and reuse via --from."""

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.apps.sample import parse_seeds, sample
from image2stylegan.errors import InputError
from image2stylegan.latents import load_latent


def test_a_seed_gives_the_same_latent_and_noise_every_time(tiny):
    a, b = sample(tiny, 5), sample(tiny, 5)
    assert torch.equal(a.ws, b.ws) and all(torch.equal(x, y) for x, y in zip(a.noise, b.noise))
    assert not torch.equal(a.ws, sample(tiny, 6).ws)


def test_sample_is_a_w_code_with_paper_space_noise(tiny):
    s = sample(tiny, 1)
    assert s.ws.shape == (1, tiny.num_ws, tiny.w_dim)
    assert torch.equal(s.ws, s.ws[:, :1].expand_as(s.ws))  # every row the same w
    assert [tuple(n.shape[1:]) for n in s.noise] == tiny.noise_shapes("paper")


def test_truncation_moves_w_linearly_towards_the_mean(tiny):
    full, half, none = (sample(tiny, 3, t).ws[0, 0] for t in (1.0, 0.5, 0.0))
    assert torch.allclose(none, tiny.w_avg)
    assert torch.allclose(half, tiny.w_avg + 0.5 * (full - tiny.w_avg), atol=1e-6)


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_truncation_outside_0_1_is_refused(tiny, bad):
    with pytest.raises(InputError, match="truncation"):
        sample(tiny, 0, bad)


def test_parse_seeds():
    assert parse_seeds("1,5,10-12,5") == [1, 5, 10, 11, 12]
    for bad in ("", "a", "3-1", "-2", "1,,2"):
        with pytest.raises(InputError):
            parse_seeds(bad)


@pytest.mark.real_weights
def test_cli_sample_writes_a_face_and_a_latent_that_render_reproduces(tmp_path):
    from test_cli import i2s

    result = i2s("sample", "--seeds", "4", "--outdir", tmp_path)
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "seed0004.png") as im:
        assert im.size == (1024, 1024)
        face = np.asarray(im)
    latent = load_latent(tmp_path / "seed0004.npz")
    assert latent.w.shape == (1, 23, 512) and len(latent.noise) == 15 and latent.generator_name
    again = i2s("render", tmp_path / "seed0004.npz", "--out", tmp_path / "again.png")
    assert again.returncode == 0, again.stderr
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), face)
