"""The embedding engine on the tiny generator: sequential stages, determinism, masks on rows, batching, recipes
with several embeddings and rendered targets, stopping."""

from dataclasses import replace

import pytest
import torch

from image2stylegan.embed import Embedding, embed, initial_noise, initial_ws, to_noise_space
from image2stylegan.recipe import NoiseStage, Recipe, Rendered, TargetTerm, WPlusStage, noise_map_rates


def W(target, *, mse_weight=1.0, perceptual_weight=1.0, mask=None, **kw):
    """A W+ stage fitting one target (Eq. 1 with M_m = M_p = ``mask``)."""
    term = TargetTerm(target, mse_weight, perceptual_weight, mse_mask=mask, perceptual_mask=mask)
    return WPlusStage((term,), **kw)


def _run(tiny, target, stages, perceptual=None, *, seed=0, ws=None, noise=None, noise_space=None, callback=None):
    """Run ``stages``; stages given as callables get the target (``lambda t: W(t, steps=5)``)."""
    built = []
    for stage in stages:
        stage = stage(target) if callable(stage) else stage
        if noise_space is not None and isinstance(stage, NoiseStage):
            stage = replace(stage, noise_space=noise_space)
        built.append(stage)
    start = None if ws is None and noise is None else Embedding(ws, noise)
    return embed(tiny, Recipe(tuple(built), seed=seed), perceptual=perceptual, start=start, callback=callback)


def test_w_plus_stage_leaves_noise_untouched_and_noise_stage_leaves_w_plus_untouched(tiny, tiny_target, tiny_perceptual):
    start_ws, start_noise = initial_ws(tiny, 1), initial_noise(tiny, 1, seed=0)
    after_w = _run(tiny, tiny_target, [(lambda t: W(t, steps=5, lr=0.05))], tiny_perceptual)
    assert not torch.equal(after_w.ws, start_ws)
    for a, b in zip(after_w.noise, start_noise):
        assert torch.equal(a, b)

    after_n = _run(tiny, tiny_target, [(lambda t: NoiseStage(t, steps=5, lr=0.5))], ws=after_w.ws, noise=after_w.noise)
    assert torch.equal(after_n.ws, after_w.ws)
    assert any(not torch.equal(a, b) for a, b in zip(after_n.noise, after_w.noise))


def test_reconstruction_improves_in_the_w_plus_stage_and_again_in_the_noise_stage(tiny, tiny_target, tiny_perceptual):
    history = []
    result = _run(
        tiny, tiny_target,
        [(lambda t: W(t, steps=60, lr=0.05)), (lambda t: NoiseStage(t, steps=60, lr=0.3, lr_scaling="paper"))],
        tiny_perceptual,
        callback=history.append,
    )
    w_plus, noise = result.stages
    first_psnr = history[0].psnr
    assert w_plus.psnr.item() > first_psnr + 3.0
    assert noise.psnr.item() > w_plus.psnr.item() + 1.0
    assert [h.stage for h in history] == ["w_plus"] * 60 + ["noise"] * 60
    assert [h.step for h in history[:3]] == [1, 2, 3] and history[-1].step == 60
    assert set(history[0].terms) == {"mse", "perceptual"} and set(history[-1].terms) == {"mse"}


def test_same_seed_gives_identical_runs_and_another_seed_does_not(tiny, tiny_target, tiny_perceptual):
    stages = [(lambda t: W(t, steps=4, lr=0.05)), (lambda t: NoiseStage(t, steps=4, lr=1.0))]
    a = _run(tiny, tiny_target, stages, tiny_perceptual, seed=7)
    b = _run(tiny, tiny_target, stages, tiny_perceptual, seed=7)
    c = _run(tiny, tiny_target, stages, tiny_perceptual, seed=8)
    assert torch.equal(a.ws, b.ws) and all(torch.equal(x, y) for x, y in zip(a.noise, b.noise))
    assert [h.loss for h in a.history] == [h.loss for h in b.history]
    assert not all(torch.equal(x, y) for x, y in zip(a.noise, c.noise))


def test_row_mask_freezes_the_other_w_plus_rows_exactly(tiny, tiny_target):
    start = initial_ws(tiny, 1)
    result = _run(tiny, tiny_target, [(lambda t: W(t, perceptual_weight=0.0, steps=6, lr=0.1, rows=[0, 1, 7]))])
    moved = (result.ws - start).abs().sum(-1)[0]
    assert (moved[[0, 1, 7]] > 0).all()
    assert torch.equal(moved[2:7], torch.zeros(5))  # zero gradient every step: Adam's update is exactly 0


def test_a_batch_optimises_each_image_as_if_alone(tiny, tiny_target, tiny_perceptual):
    other = torch.flip(tiny_target, dims=[-1])
    stages = [(lambda t: W(t, steps=5, lr=0.05)), (lambda t: NoiseStage(t, steps=5, lr=1.0))]
    both = _run(tiny, torch.cat([tiny_target, other]), stages, tiny_perceptual, seed=3)
    # Same initial noise as the batch's second image: initial_noise draws per-image maps from one stream.
    noise = initial_noise(tiny, 2, seed=3)
    alone = _run(tiny, other, stages, tiny_perceptual, ws=initial_ws(tiny, 1), noise=[n[1:] for n in noise])
    torch.testing.assert_close(both.ws[1:], alone.ws, atol=1e-4, rtol=1e-4)
    for b, a in zip(both.noise, alone.noise):
        torch.testing.assert_close(b[1:], a, atol=1e-3, rtol=1e-3)


def test_extended_noise_space_starts_from_the_same_image_and_has_per_channel_maps(tiny, tiny_target):
    noise = initial_noise(tiny, 1)
    extended = to_noise_space(tiny, noise, "extended")
    assert [tuple(n.shape[1:]) for n in extended] == tiny.noise_shapes("extended")
    ws = tiny.mean_ws(1)
    torch.testing.assert_close(tiny.synthesis(ws, extended), tiny.synthesis(ws, noise), atol=1e-6, rtol=0)
    result = _run(tiny, tiny_target, [(lambda t: NoiseStage(t, steps=3, lr=1.0))], noise_space="extended")
    assert [tuple(n.shape[1:]) for n in result.noise] == tiny.noise_shapes("extended")
    assert not torch.allclose(result.noise[-1][:, 0], result.noise[-1][:, 1])  # channels move independently


def test_masked_noise_stage_ignores_the_target_outside_the_mask(tiny, tiny_target):
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1.0
    scrambled = tiny_target.clone()
    scrambled[..., 16:] = torch.rand_like(scrambled[..., 16:]) * 2 - 1
    a = _run(tiny, tiny_target, [(lambda t: NoiseStage(t, steps=3, lr=1.0, mask=mask))])
    b = _run(tiny, scrambled, [(lambda t: NoiseStage(t, steps=3, lr=1.0, mask=mask))])
    for x, y in zip(a.noise, b.noise):
        assert torch.equal(x, y)


def test_strength_scaling_equalises_how_far_each_layer_moves(tiny, tiny_target):
    # Give the layers very different noise strengths, like the bundled generator (8e-5 ... 0.25).
    layers = [tiny.conv1] + [c for blk in tiny.blocks.values() for c in (blk.conv1, blk.conv2)]
    for layer, s in zip(layers, [0.5, 0.05, 0.005, 0.0005, 0.2]):
        layer.act.noise_strength.fill_(s)
    start = initial_noise(tiny, 1)
    for scaling, expect_even in (("strength", True), ("paper", False)):
        result = _run(tiny, tiny_target, [(lambda t: NoiseStage(t, steps=1, lr=0.1, lr_scaling=scaling, decay=False))],
                      noise=start)
        # Adam's first step moves every element by ~lr; the activation moves by that times the strength.
        act_step = [((n - s0).abs().mean() * st).item() for n, s0, st in zip(result.noise, start, tiny.noise_strengths())]
        ratio = max(act_step) / min(act_step)
        assert (ratio < 1.5) if expect_even else (ratio > 100), (scaling, act_step)


def test_the_finest_blocks_noise_maps_move_fine_rate_times_further(tiny, tiny_target):
    strengths, widths = [0.5, 0.05, 0.005, 0.0005, 0.2], [4, 8, 8, 16, 16]
    stage = NoiseStage(tiny_target, lr=2.0, reference_strength=0.1, fine_rate=3.0)
    assert noise_map_rates(stage, strengths, widths) == pytest.approx([0.4, 4.0 * 3, 40.0 * 3, 400.0 * 3, 1.0 * 3])
    assert noise_map_rates(replace(stage, lr_scaling="paper"), strengths, widths) == [2.0] * 5
    with pytest.raises(ValueError, match="5 noise strengths for 4 noise maps"):
        noise_map_rates(stage, strengths, widths[:4])
    # Full-size layouts: StyleGAN (two maps per block from 4 px) and StyleGAN2 (one map at 4 px, then two per
    # block) get the faster rate at their two finest blocks only, whatever repeats below them.
    for layout in ([4, 4, 8, 8, 16, 16, 32, 32], [4, 8, 8, 16, 16, 32, 32]):
        rates = noise_map_rates(stage, [0.2] * len(layout), layout)
        assert rates == pytest.approx([1.0 * (3 if w >= 16 else 1) for w in layout]), layout
    # In a run: Adam's first step moves every element by about its rate, so the finest two sizes' maps move
    # fine_rate times as far and the others as far as without it.
    start = initial_noise(tiny, 1)
    moved = {}
    for fine in (1.0, 2.0):
        result = _run(tiny, tiny_target, [NoiseStage(tiny_target, steps=1, lr=0.1, decay=False, fine_rate=fine)],
                      noise=start)
        moved[fine] = [(n - s0).abs().mean().item() for n, s0 in zip(result.noise, start)]
    finest = sorted({n.shape[-1] for n in start})[-2:]
    for n, one, two in zip(start, moved[1.0], moved[2.0]):
        assert two / one == pytest.approx(2.0 if n.shape[-1] in finest else 1.0, rel=0.05), (n.shape, one, two)


def test_invalid_settings_are_refused(tiny_target):
    with pytest.raises(ValueError, match="steps"):
        W(tiny_target, steps=-1)
    with pytest.raises(ValueError, match="learning rate"):
        NoiseStage(tiny_target, lr=0.0)
    with pytest.raises(ValueError, match="learning rate"):
        W(tiny_target, lr=float("nan"))
    with pytest.raises(ValueError, match="second_target"):
        NoiseStage(tiny_target, second_weight=1.0)
    with pytest.raises(ValueError, match="positive MSE, perceptual, style or normalized perceptual"):
        W(tiny_target, mse_weight=0.0, perceptual_weight=0.0)
    with pytest.raises(ValueError, match="noise_space"):
        NoiseStage(tiny_target, noise_space="other")
    with pytest.raises(ValueError, match="fine_rate must be positive"):
        NoiseStage(tiny_target, fine_rate=0.0)
    with pytest.raises(ValueError, match="reference_strength must be positive"):
        NoiseStage(tiny_target, reference_strength=float("inf"))


def test_recipes_check_stage_names_and_references(tiny_target):
    with pytest.raises(ValueError, match="unique"):
        Recipe((W(tiny_target, name="a"), W(tiny_target, name="a")))
    with pytest.raises(ValueError, match="does not run before it"):
        Recipe((NoiseStage(tiny_target, second_target=Rendered("w_plus"), second_weight=1.0), W(tiny_target)))
    with pytest.raises(ValueError, match="does not run before it"):
        Recipe((W(tiny_target, start="later"),))


def test_engine_checks_its_inputs(tiny, tiny_target):
    with pytest.raises(ValueError, match="target must be"):
        embed(tiny, Recipe((NoiseStage(torch.zeros(1, 3, 16, 16), steps=1),)))
    with pytest.raises(ValueError, match="perceptual"):
        embed(tiny, Recipe((W(tiny_target, steps=1),)))
    with pytest.raises(ValueError, match="W\\+ rows"):
        embed(tiny, Recipe((W(tiny_target, steps=1, perceptual_weight=0.0, rows=[99]),)))


def test_summed_target_terms_only_see_their_own_regions(tiny, tiny_target, tiny_perceptual):
    # Crossover-shaped objective: image A inside the mask, image B outside (Alg. 3, line 2).
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1.0
    other = torch.flip(tiny_target, dims=[-1])

    def run(b):
        terms = (TargetTerm(tiny_target, perceptual_weight=0.0, mse_mask=mask, name="a"),
                 TargetTerm(b, perceptual_weight=0.0, mse_mask=1 - mask, name="b"))
        return _run(tiny, tiny_target, [WPlusStage(terms, steps=4, lr=0.05)])

    base = run(other)
    scrambled = other.clone()
    scrambled[..., :16] = 0.0  # B's pixels inside A's region are never read
    assert torch.equal(run(scrambled).ws, base.ws)
    assert set(base.history[0].terms) == {"a.mse", "b.mse"}
    scrambled[..., 16:] = 0.0  # but B's own region is
    assert not torch.equal(run(scrambled).ws, base.ws)


def test_style_term_matches_the_gram_statistics_of_the_style_image(tiny, tiny_target, tiny_perceptual):
    from image2stylegan.losses import PerceptualLoss
    from image2stylegan.vgg import VGG16Features

    perceptual = PerceptualLoss(VGG16Features(input_size=None, random_init_seed=0))  # has relu3_3
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(9)) * 2 - 1
    term = TargetTerm(style, mse_weight=0.0, perceptual_weight=0.0, style_weight=1.0)
    history = []
    _run(tiny, tiny_target, [WPlusStage((term,), steps=30, lr=0.05)], perceptual, callback=history.append)
    assert history[-1].terms["style"] < 0.7 * history[0].terms["style"]


def test_a_w_plus_stage_needs_valid_terms(tiny_target):
    with pytest.raises(ValueError, match="at least one target term"):
        WPlusStage(terms=())
    with pytest.raises(ValueError, match="target term"):
        TargetTerm(tiny_target, mse_weight=0.0, perceptual_weight=0.0)


def test_starting_noise_is_brought_into_the_requested_space(tiny, tiny_target):
    from image2stylegan.errors import InputError

    broadcast = [n.expand(-1, c, -1, -1) for n, (c, _, _) in zip(initial_noise(tiny, 1), tiny.noise_shapes("extended"))]
    paper = to_noise_space(tiny, broadcast, "paper")  # identical channels (e.g. zero-filled maps) fold back to one
    assert [tuple(n.shape[1:]) for n in paper] == tiny.noise_shapes("paper")
    per_channel = [torch.randn_like(n) for n in broadcast]
    with pytest.raises(InputError, match="extended"):
        to_noise_space(tiny, per_channel, "paper")


def test_a_callback_can_stop_the_run_and_the_result_keeps_what_was_reached(tiny, tiny_target, tiny_perceptual):
    stages = [(lambda t: W(t, steps=6, lr=0.05)), (lambda t: NoiseStage(t, steps=6, lr=1.0))]
    full = _run(tiny, tiny_target, stages, tiny_perceptual)
    seen = []

    def stop_at_third(info):
        seen.append((info.stage, info.step, info.image is not None))
        return info.step == 3

    stopped = _run(tiny, tiny_target, stages, tiny_perceptual, callback=stop_at_third)
    assert stopped.stopped and not full.stopped
    assert seen == [("w_plus", 1, True), ("w_plus", 2, True), ("w_plus", 3, True)]
    assert [(s.name, s.steps, s.stopped) for s in stopped.stages] == [("w_plus", 3, True)]
    assert stopped.outcome("noise") is None
    # The embedding reached after 3 steps is the one an uninterrupted 3-step run reaches (same computation).
    three = _run(tiny, tiny_target, [(lambda t: W(t, steps=3, lr=0.05))], tiny_perceptual)
    torch.testing.assert_close(stopped.ws, three.ws, rtol=0, atol=1e-6)
    assert all(h.image is None for h in stopped.history)  # previews are not kept alive by the history


def test_step_values_are_read_lazily_and_cached(tiny, tiny_target):
    history = []
    _run(tiny, tiny_target, [(lambda t: NoiseStage(t, steps=2, lr=1.0))], callback=history.append)
    info = history[0]
    assert isinstance(info._loss, torch.Tensor)  # nothing was copied to the host until asked
    assert isinstance(info.loss, float) and info.loss == info.loss and isinstance(info._loss, float)
    assert set(info.as_dict()) == {"stage", "step", "loss", "psnr", "terms", "seconds"}


def test_a_recipe_holds_several_embeddings_and_rendered_targets(tiny, tiny_target):
    other = torch.flip(tiny_target, dims=[-1])
    w_a = W(tiny_target, perceptual_weight=0.0, steps=3, lr=0.05, name="a w", embedding="a")
    w_b = W(other, perceptual_weight=0.0, steps=3, lr=0.05, name="b w", embedding="b")
    # Keep what "a w" rendered inside the mask while matching B outside it, starting from A's embedding.
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1.0
    noise_a = NoiseStage(other, steps=2, lr=1.0, mask=1 - mask, second_target=Rendered("a w"), second_weight=1.0,
                         name="a noise", embedding="a")
    branch = NoiseStage(tiny_target, steps=2, lr=1.0, name="from a w", embedding="c", start="a w")
    result = embed(tiny, Recipe((w_a, w_b, noise_a, branch)))
    assert sorted(result.embeddings) == ["a", "b", "c"]
    alone_a = embed(tiny, Recipe((W(tiny_target, perceptual_weight=0.0, steps=3, lr=0.05),)))
    alone_b = embed(tiny, Recipe((W(other, perceptual_weight=0.0, steps=3, lr=0.05),)))
    # Each embedding starts from the recipe's seeded start, whatever ran before it.
    torch.testing.assert_close(result.outcome("a w").image, alone_a.image, rtol=0, atol=1e-6)
    torch.testing.assert_close(result.outcome("b w").image, alone_b.image, rtol=0, atol=1e-6)
    # The branch starts from the end of "a w", not from where embedding "a" went afterwards.
    torch.testing.assert_close(result.embeddings["c"].ws, alone_a.ws, rtol=0, atol=0)  # W+ is not touched by noise
    torch.testing.assert_close(result.embeddings["a"].ws, alone_a.ws, rtol=0, atol=0)
    # ws / noise of the result are the last stage's embedding.
    assert result.ws is result.embeddings["c"].ws or torch.equal(result.ws, result.embeddings["c"].ws)


def test_a_recipe_summary_is_json_and_names_every_stage(tiny_target):
    import json

    recipe = Recipe((W(tiny_target, steps=2, rows=[0, 1]),
                     NoiseStage(tiny_target, steps=3, second_target=Rendered("w_plus"), second_weight=1.0,
                                mask=torch.ones(1, 1, 32, 32))), seed=4, application="test")
    summary = json.loads(json.dumps(recipe.summary()))
    assert summary["seed"] == 4 and summary["application"] == "test"
    assert [s["name"] for s in summary["stages"]] == ["w_plus", "noise"]
    assert (summary["stages"][0]["rows"] == [0, 1]
            and summary["stages"][0]["terms"][0]["target"] == "tensor[1, 3, 32, 32]")
    assert summary["stages"][1]["second_target"] == "rendered after w_plus"
