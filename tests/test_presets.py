"""Quality presets bound a whole run; every command prints its step budget before it starts; stopping targets end
reconstruction stages and are recorded."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.apps.activations import AttributeTransferSettings
from image2stylegan.apps.crossover import CrossoverSettings, crossover_recipe
from image2stylegan.apps.inpaint import InpaintSettings, inpainting_recipe
from image2stylegan.apps.presets import DEFAULT_QUALITY, PRESETS, budget_line, settings_for
from image2stylegan.apps.reconstruct import ReconstructionSettings, reconstruction_recipe
from image2stylegan.apps.scribble import ScribbleSettings
from image2stylegan.apps.settings import FAST
from image2stylegan.apps.style_transfer import StyleTransferSettings
from image2stylegan.errors import InputError
from image2stylegan.latents import save_latent
from image2stylegan.recipe import NoiseStage

CLASSES = (ReconstructionSettings, CrossoverSettings, InpaintSettings, ScribbleSettings, StyleTransferSettings,
           AttributeTransferSettings)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_settings_defaults_are_the_default_preset(cls):
    assert settings_for(cls, DEFAULT_QUALITY) == cls()


def test_a_preset_sets_every_budget_of_a_run_and_explicit_values_win():
    draft, paper = PRESETS["draft"], PRESETS["paper"]
    st = settings_for(StyleTransferSettings, "draft")
    assert (st.embed_steps, st.w_steps, st.noise_steps) == (draft.embed_w_steps, draft.edit_w_steps,
                                                           draft.edit_noise_steps)
    sc = settings_for(ScribbleSettings, "paper", embed_w_steps=7)
    assert (sc.embed_w_steps, sc.embed_noise_steps, sc.schedule) == (7, paper.embed_noise_steps, "paper")
    rec = settings_for(ReconstructionSettings, "paper")
    assert (rec.w_steps, rec.noise_steps, rec.schedule, rec.noise_lr_scaling, rec.until_psnr) == (
        5000, 3000, "paper", "paper", None)
    with pytest.raises(InputError, match="--quality must be one of draft, good, paper"):
        settings_for(ReconstructionSettings, "best")


@pytest.mark.parametrize("quality", list(PRESETS))
def test_inpaintings_w_stage_gets_the_embedding_time_it_has_no_photo_embedding_for(quality):
    preset = PRESETS[quality]
    # Inpainting starts at the mean latent; an edit that starts from an embedded photo gets the edit budget.
    assert settings_for(InpaintSettings, quality).w_steps == preset.mean_start_w_steps
    assert settings_for(CrossoverSettings, quality).w_steps == preset.edit_w_steps


def test_the_budget_line_counts_every_stage_and_names_the_targets():
    recipe = reconstruction_recipe(torch.zeros(1, 3, 4, 4), ReconstructionSettings(w_steps=30, noise_steps=12))
    assert budget_line(recipe) == "budget: 42 steps (w_plus 30, noise 12); a stage ends early at PSNR >= 40 dB"


def test_the_paper_schedule_is_the_papers_constant_rates():
    recipe = reconstruction_recipe(torch.zeros(1, 3, 4, 4), settings_for(ReconstructionSettings, "paper"))
    w, n = recipe.stages
    assert (w.lr, w.warmup_steps, w.decay, w.terms[0].mse_weight, w.terms[0].perceptual_weight) == (0.01, 0, False,
                                                                                                   1.0, 1.0)
    assert (n.lr, n.warmup_steps, n.decay, n.lr_scaling) == (5.0, 0, False, "paper")
    fast = reconstruction_recipe(torch.zeros(1, 3, 4, 4), ReconstructionSettings())
    assert fast.stages[0].decay and fast.stages[0].warmup_steps > 0 and fast.stages[1].warmup_steps > 0


def test_the_fast_schedule_embeds_a_photo_under_the_normalised_perceptual_term_and_edits_keep_theirs():
    photo = torch.zeros(1, 3, 4, 4)
    (term,) = reconstruction_recipe(photo, ReconstructionSettings()).stages[0].terms
    assert (term.mse_weight, term.perceptual_weight, term.normalized_weight) == (1.0, 0.0, FAST.embed_normalized_weight)
    assert reconstruction_recipe(photo, ReconstructionSettings()).stages[0].lr == FAST.embed_lr
    # Crossover's two masked terms keep the paper's perceptual term (their defaults were measured with it).
    mask = torch.ones(1, 1, 4, 4)
    w_stage = crossover_recipe(photo, photo, mask, CrossoverSettings()).stages[0]
    assert all(t.perceptual_weight == 1.0 and t.normalized_weight == 0.0 for t in w_stage.terms)
    assert all(t.mse_weight == FAST.terms_mse_weight for t in w_stage.terms) and w_stage.lr == FAST.terms_lr


def test_the_noise_stage_embedding_a_photo_gets_the_tuned_rates_and_an_edits_keeps_its_own():
    from image2stylegan.apps.activations import photo_embedding_recipe
    from image2stylegan.apps.scribble import scribble_recipe

    photo, mask = torch.zeros(1, 3, 4, 4), torch.zeros(1, 1, 4, 4)
    mask[..., :2] = 1.0
    tuned = (FAST.embed_noise_reference_strength, FAST.embed_noise_fine_rate)
    embedding_noise = [reconstruction_recipe(photo, ReconstructionSettings()).stages[1],
                       scribble_recipe(photo, photo, mask, [0]).stages[1],
                       photo_embedding_recipe({"a": photo}, AttributeTransferSettings()).stages[1]]
    assert [(n.name, n.reference_strength, n.fine_rate) for n in embedding_noise] == [
        (n.name, *tuned) for n in embedding_noise]
    # ... and hold the full rate for FAST.embed_noise_hold_fraction of the steps after the warm-up (200 steps: 114),
    # for FAST.embed_noise_hold_max_steps at most (a long run would lose what it reached at the full rate).
    assert [(n.steps, n.warmup_steps, n.hold_steps) for n in embedding_noise] == [(200, 10, 114)] * 3
    long = reconstruction_recipe(photo, ReconstructionSettings(noise_steps=1000)).stages[1]
    assert (long.warmup_steps, long.hold_steps) == (30, FAST.embed_noise_hold_max_steps) and long.decay
    # An edit's own noise stages, the paper schedule and one rate for every map keep NoiseStage's rates.
    own = tuple(NoiseStage.__dataclass_fields__[k].default for k in ("reference_strength", "fine_rate"))
    kept = [crossover_recipe(photo, photo, mask, CrossoverSettings()).stages[-1],
            scribble_recipe(photo, photo, mask, [0]).stages[-1],
            inpainting_recipe(photo, mask, [0]).stages[-1],
            reconstruction_recipe(photo, settings_for(ReconstructionSettings, "paper")).stages[1],
            reconstruction_recipe(photo, ReconstructionSettings(noise_lr_scaling="paper")).stages[1]]
    assert all(isinstance(n, NoiseStage) for n in kept)
    assert [(n.reference_strength, n.fine_rate) for n in kept] == [own] * len(kept)
    # The edits' own noise stages and the paper schedule keep the cosine without a hold; one rate for every map
    # still holds it (the hold is the schedule's, not the rates').
    assert [n.hold_steps for n in kept] == [0, 0, 0, 0, 114]


def test_the_fast_embedding_converges_under_the_normalised_term(tiny, tiny_perceptual):
    """The engine runs the normalised term (its VGG layers down to relu5_3) and logs it; it falls."""
    from image2stylegan.embed import embed
    from image2stylegan.recipe import Recipe

    with torch.no_grad():
        target = tiny.synthesis(tiny.mean_ws(1) + 0.3, tiny.make_noise(1, generator=torch.Generator().manual_seed(2)))
    settings = ReconstructionSettings(w_steps=30, noise_steps=0, until_psnr=None)
    recipe = Recipe((settings.w_stage(target),))
    history = embed(tiny, recipe, perceptual=tiny_perceptual).history
    assert set(history[0].terms) == {"mse", "normalized"}
    assert history[-1].terms["normalized"] < 0.5 * history[0].terms["normalized"]
    # The target's noise differs from the run's, so PSNR stays low; it rose 1.2 dB when written.
    assert history[-1].psnr > history[0].psnr + 0.5


@pytest.fixture
def photos(tmp_path, tiny):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    scribbled = a.copy()
    scribbled[8:16, 8:16] = (255, 0, 0)  # a red stroke
    for name, pixels in (("a.png", a), ("b.png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)),
                         ("scribbled.png", scribbled)):
        Image.fromarray(pixels).save(tmp_path / name)
    save_latent(tmp_path / "b.npz", tiny.mean_ws(1), tiny.make_noise(1, generator=torch.Generator().manual_seed(1)),
                generator_name=tiny.name)
    return tmp_path


def _commands(d):
    return {
        "reconstruct": ["reconstruct", d / "a.png"],
        "crossover": ["crossover", d / "a.png", d / "b.png", "--mask", "left-half"],
        "inpaint": ["inpaint", d / "a.png", "--mask", "center"],
        "style-transfer": ["style-transfer", d / "a.png", d / "b.png", "--mask", "center"],
        "scribble": ["scribble", d / "a.png", d / "scribbled.png"],
        "transfer-attribute": ["transfer-attribute", d / "a.png", "--from-b", d / "b.npz", "--mask", "center"],
    }


# The budget each command runs under --quality draft with --noise-steps 2 (and nothing else given): the photo
# embedding included, the hidden budgets of before are gone.
DRAFT = PRESETS["draft"]
EXPECTED_TOTAL = {
    "reconstruct": DRAFT.embed_w_steps + 2,
    "crossover": DRAFT.edit_w_steps + 2,
    "inpaint": DRAFT.mean_start_w_steps + 2,
    "style-transfer": DRAFT.embed_w_steps + DRAFT.edit_w_steps + 2,
    "scribble": DRAFT.embed_w_steps + DRAFT.embed_noise_steps + DRAFT.edit_w_steps + 2,
    "transfer-attribute": DRAFT.embed_w_steps + 2,
}


@pytest.mark.parametrize("command", list(EXPECTED_TOTAL))
def test_every_command_prints_its_whole_budget_before_it_starts(tiny_app_cli, photos, monkeypatch, command):
    import image2stylegan.embed as engine

    seen = []
    real = engine.embed
    monkeypatch.setattr(engine, "embed", lambda *a, **k: seen.append("started") or real(*a, **k))
    for module in ("image2stylegan.apps.plan", "image2stylegan.apps.reconstruct"):
        monkeypatch.setattr(f"{module}.embed", lambda *a, **k: (seen.append("started"), real(*a, **k))[1])
    # Steps are counted, not run: a stop after the first step keeps the test fast.
    args = [*_commands(photos)[command], "--quality", "draft", "--noise-steps", "2", "--quiet",
            "--outdir", photos / "out"]
    lines = []
    monkeypatch.setattr("click.echo", lambda message="", *a, **k: lines.append(str(message)))
    monkeypatch.setattr("image2stylegan.cli.common.click.echo", lambda message="", *a, **k: lines.append(str(message)))
    monkeypatch.setattr("image2stylegan.cli.common.running", _stop_at_once)
    tiny_app_cli.invoke(__import__("image2stylegan.cli", fromlist=["cli"]).cli, [str(a) for a in args],
                        catch_exceptions=False)
    budget = [line for line in lines if line.startswith("budget: ")]
    assert len(budget) == 1, lines
    assert int(re.match(r"budget: (\d+) steps", budget[0]).group(1)) == EXPECTED_TOTAL[command], budget
    assert seen == ["started"]


def _stop_at_once(quiet):
    """``running`` with a callback that stops the run after its first step (signals untouched)."""
    from contextlib import contextmanager

    @contextmanager
    def block():
        def callback(info):
            return True

        callback.control = type("Control", (), {"requested": False})()
        yield callback

    return block()


def test_until_psnr_ends_the_stages_and_metrics_json_records_when(tiny_app_cli, photos):
    from image2stylegan.cli import cli

    out = photos / "out"
    result = tiny_app_cli.invoke(cli, ["reconstruct", str(photos / "a.png"), "--w-steps", "30", "--noise-steps", "30",
                                       "--until-psnr", "1", "--quiet", "--outdir", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "reached its target" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    stage = metrics["stages"]["w_plus"]
    assert stage["steps"] == 1 and stage["reached_target"]["step"] == 1 and stage["reached_target"]["psnr"] >= 1
    assert 0 <= stage["reached_target"]["seconds"] <= stage["seconds"]
    assert metrics["settings"]["until_psnr"] == 1.0
