"""A run's metrics.json describes it completely: :func:`apps.requests.rebuild` turns it back into the same recipe,
and running that plan gives the same embedding the command saved (the editor and the cluster runner send work
this way)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.apps.requests import APPLICATIONS, describe, rebuild
from image2stylegan.apps.crossover import CrossoverSettings
from image2stylegan.cli.common import cli
from image2stylegan.errors import InputError
from image2stylegan.latents import load_latent, save_latent


@pytest.fixture
def tiny_cli(tiny_app_cli):
    return tiny_app_cli


def _photo(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return str(path)


def _commands(tmp_path, tiny):
    a, b = _photo(tmp_path / "a.png", 0), _photo(tmp_path / "b.png", 1)
    scribbled = np.array(Image.open(a))
    scribbled[8:16, 8:16] = (255, 0, 0)
    Image.fromarray(scribbled).save(tmp_path / "scribbled.png")
    g = torch.Generator().manual_seed(3)
    save_latent(tmp_path / "a.npz", tiny.mean_ws(1) + 0.3 * torch.randn(1, tiny.num_ws, tiny.w_dim, generator=g),
                tiny.make_noise(1, generator=g), generator_name=tiny.name)
    latent = str(tmp_path / "a.npz")
    return {
        "reconstruct": ["reconstruct", a],
        "crossover": ["crossover", b, "--from-a", latent, "--mask", "left-half"],
        "inpaint": ["inpaint", a, "--mask", "center", "--reference", b],
        "style-transfer": ["style-transfer", a, b, "--mask", "center", "--embed-steps", "2"],
        "scribble": ["scribble", a, str(tmp_path / "scribbled.png"), "--from", latent],
        "transfer-attribute": ["transfer-attribute", b, "--from-a", latent, "--mask", "center",
                               "--layer", "b16.conv1"],
    }


@pytest.mark.parametrize("command", sorted(APPLICATIONS))
def test_metrics_json_rebuilds_the_run(tiny_cli, tiny, tiny_perceptual, tmp_path, command):
    outdir = tmp_path / "out"
    args = [*_commands(tmp_path, tiny)[command], "--outdir", str(outdir), "--w-steps", "3", "--noise-steps", "2",
            "--quiet", "--device", "cpu"]
    result = tiny_cli.invoke(cli, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((outdir / "metrics.json").read_text())

    plan = rebuild(metrics, tiny, perceptual=tiny_perceptual)
    assert json.loads(json.dumps(plan.recipe.summary())) == metrics["recipe"]
    rerun = plan.run(tiny, tiny_perceptual)
    saved = load_latent(outdir / "latent.npz")
    # The same computation in the same process and thread count as the command's run.
    torch.testing.assert_close(rerun.ws.cpu(), saved.w, rtol=0, atol=1e-6)


def test_a_changed_input_or_a_foreign_setting_is_refused(tiny, tmp_path):
    a, b = _photo(tmp_path / "a.png", 0), _photo(tmp_path / "b.png", 1)
    description = describe("crossover", CrossoverSettings(w_steps=1, noise_steps=1),
                           {"a": a, "b": b, "mask": "left-half"})
    assert description["inputs"]["mask"] == "left-half" and len(description["inputs"]["a"]["sha256"]) == 64
    assert rebuild(description, tiny).recipe.application == "crossover"

    with pytest.raises(InputError, match="no setting colour"):
        rebuild({**description, "settings": {"colour": 1}}, tiny)
    with pytest.raises(InputError, match="no application"):
        rebuild({**description, "command": "sharpen"}, tiny)
    with pytest.raises(InputError, match="aligned"):
        rebuild({**description, "alignment": {"photos": {}}}, tiny)
    recorded = json.loads(json.dumps(rebuild(description, tiny).recipe.summary()))
    assert rebuild({**description, "recipe": recorded}, tiny).recipe.application == "crossover"
    recorded["stages"][0]["lr"] = 0.01  # a run whose W+ stage ran at another rate (an older version's defaults)
    with pytest.raises(InputError, match="recorded recipe differs"):
        rebuild({**description, "recipe": recorded}, tiny)
    _photo(tmp_path / "a.png", 5)  # the photo changed since the run
    with pytest.raises(InputError, match="has changed"):
        rebuild(description, tiny)
    (tmp_path / "a.png").unlink()
    with pytest.raises(InputError, match="does not exist"):
        rebuild(description, tiny)
