"""Learning-rate schedules, the W-space phase and stopping targets of the engine (tiny generator)."""

import math

import pytest
import torch

from image2stylegan.apps.settings import FAST, noise_schedule, w_schedule
from image2stylegan.embed import Embedding, embed, initial_noise
from image2stylegan.recipe import GoodEnough, NoiseStage, Recipe, WPlusStage, image_term, lr_factor


def test_warm_up_rises_linearly_and_the_cosine_ends_at_the_floor():
    stage = WPlusStage((image_term(torch.zeros(1, 3, 8, 8)),), steps=20, lr=0.1, warmup_steps=4, decay=True,
                       final_lr_fraction=0.1)
    factors = [lr_factor(stage, k) for k in range(1, 21)]
    assert factors[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])  # step k of the warm-up at k / (warmup + 1)
    assert factors[4] == pytest.approx(1.0) and factors[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))  # then it only falls
    constant = WPlusStage((image_term(torch.zeros(1, 3, 8, 8)),), steps=20)
    assert {lr_factor(constant, k) for k in range(1, 21)} == {1.0}  # the paper's constant rate, by construction


def test_a_hold_keeps_the_full_rate_between_warm_up_and_cosine():
    stage = WPlusStage((image_term(torch.zeros(1, 3, 8, 8)),), steps=20, lr=0.1, warmup_steps=3, hold_steps=12,
                       decay=True, final_lr_fraction=0.05)
    factors = [lr_factor(stage, k) for k in range(1, 21)]
    assert factors[:3] == pytest.approx([0.25, 0.5, 0.75])
    assert factors[3:16] == pytest.approx([1.0] * 13)  # the hold, and the cosine's first step at its top
    assert factors[-1] == pytest.approx(0.05)
    assert all(a > b for a, b in zip(factors[15:], factors[16:]))  # then it falls at every step
    without = WPlusStage((image_term(torch.zeros(1, 3, 8, 8)),), steps=20, lr=0.1, warmup_steps=3, decay=True)
    assert lr_factor(without, 5) < 1.0  # no hold: the cosine starts right after the warm-up


def test_fast_embedding_schedule_holds_then_decays():
    def embed_schedule(steps):
        return w_schedule("fast", steps, warmup_fraction=FAST.embed_warmup_fraction,
                          hold_fraction=FAST.embed_hold_fraction)

    assert embed_schedule(100) == {"warmup_steps": 15, "hold_steps": 68, "decay": True, "final_lr_fraction": 0.05}
    assert embed_schedule(1)["warmup_steps"] == 0 and embed_schedule(1)["hold_steps"] == 0
    for steps in (1, 2, 7, 50, 300, 5000):
        fields = embed_schedule(steps)
        assert fields["warmup_steps"] + fields["hold_steps"] < steps  # some steps are always left for the cosine


def test_the_noise_cosine_without_warm_up_is_the_one_noise_stages_always_had():
    stage = NoiseStage(torch.zeros(1, 3, 8, 8), steps=10, final_lr_fraction=0.05)
    for k in range(1, 11):
        old = 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (k - 1) / 9))
        assert lr_factor(stage, k) == pytest.approx(old, abs=1e-12)


def test_schedules_are_checked(tiny_target):
    with pytest.raises(ValueError, match="warmup_steps"):
        NoiseStage(tiny_target, warmup_steps=-1)
    with pytest.raises(ValueError, match="hold_steps"):
        WPlusStage((image_term(tiny_target),), hold_steps=-2)
    with pytest.raises(ValueError, match="final_lr_fraction"):
        WPlusStage((image_term(tiny_target),), final_lr_fraction=2.0)
    with pytest.raises(ValueError, match="tied_steps"):
        WPlusStage((image_term(tiny_target),), tied_steps=1.5)


def test_tied_steps_move_all_rows_together_then_free_them(tiny, tiny_target, tiny_perceptual):
    stage = WPlusStage((image_term(tiny_target),), steps=4, lr=0.05, tied_steps=4)
    tied = embed(tiny, Recipe((stage,)), perceptual=tiny_perceptual)
    # The mean start has equal rows; equal gradients through Adam give bit-equal updates, so they stay equal.
    assert torch.equal(tied.ws, tied.ws[:, :1].expand_as(tied.ws))
    assert not torch.equal(tied.ws, tiny.mean_ws(1))
    free = embed(tiny, Recipe((WPlusStage((image_term(tiny_target),), steps=6, lr=0.05, tied_steps=4),)),
                 perceptual=tiny_perceptual)
    assert not torch.equal(free.ws, free.ws[:, :1].expand_as(free.ws))


def test_tied_steps_keep_frozen_rows_frozen(tiny, tiny_target):
    start = tiny.mean_ws(1) + 0.1 * torch.randn(1, tiny.num_ws, tiny.w_dim, generator=torch.Generator().manual_seed(1))
    stage = WPlusStage((image_term(tiny_target, perceptual_weight=0.0),), steps=3, lr=0.05, rows=(0, 1), tied_steps=3)
    result = embed(tiny, Recipe((stage,)), start=Embedding(start, None))
    assert torch.equal(result.ws[:, 2:], start[:, 2:])
    moved = result.ws[:, :2] - start[:, :2]
    assert torch.allclose(moved[:, 0], moved[:, 1], atol=1e-7) and moved.abs().max() > 1e-3


def test_a_stage_ends_at_its_psnr_target_and_the_next_stage_still_runs(tiny, tiny_target, tiny_perceptual):
    plain = embed(tiny, Recipe((WPlusStage((image_term(tiny_target),), steps=40, lr=0.05),)),
                  perceptual=tiny_perceptual)
    psnrs = [h.psnr for h in plain.history]
    goal = (psnrs[0] + max(psnrs)) / 2  # reached somewhere inside the run
    first = next(i for i, p in enumerate(psnrs, 1) if p >= goal)
    recipe = Recipe((WPlusStage((image_term(tiny_target),), steps=40, lr=0.05, until=GoodEnough(psnr=goal)),
                     NoiseStage(tiny_target, steps=3)))
    result = embed(tiny, recipe, perceptual=tiny_perceptual)
    w_plus, noise = result.stages
    (reached,) = w_plus.reached
    assert w_plus.steps == first < 40 and reached["step"] == first and reached["psnr"] >= goal
    # The image is kept as the step that reached the target rendered it (not moved by that step's update).
    assert float(w_plus.psnr) == pytest.approx(psnrs[first - 1], abs=1e-4)
    assert not w_plus.stopped and not result.stopped
    assert noise.steps == 3 and noise.reached is None
    # The step that ended the stage says so to the callbacks (the editor's status line shows it); no other step does.
    flagged = [(h.stage, h.step) for h in result.history if h.target_reached]
    assert flagged == [("w_plus", first)]
    assert recipe.summary()["stages"][0]["until"] == {"psnr": goal, "lpips": None, "lpips_every": 10}


def test_in_a_batch_each_image_stops_at_its_own_target_as_it_would_alone(tiny, tiny_target, tiny_perceptual):
    other = tiny_target.flip(-1)
    goal = GoodEnough(psnr=11.0)  # the first image starts above it, the second reaches it after ~15 steps

    noise = initial_noise(tiny, 2, seed=0)  # the batch's maps; each image alone starts from its own share

    def run(target, start=None, steps=60):
        stage = WPlusStage((image_term(target),), steps=steps, lr=0.05, until=goal)
        return embed(tiny, Recipe((stage,)), perceptual=tiny_perceptual, start=start)

    alone = [run(t, Embedding(None, [n[i:i + 1] for n in noise])) for i, t in enumerate((tiny_target, other))]
    both = run(torch.cat([tiny_target, other]), Embedding(None, noise))
    steps = [a.stages[0].reached[0]["step"] for a in alone]
    assert steps[0] != steps[1], steps  # the images reach it at different steps, so one waits frozen
    assert [r["step"] for r in both.stages[0].reached] == steps and both.stages[0].steps == max(steps)
    for i, a in enumerate(alone):  # element-wise Adam: each image's trajectory, and where it stopped, are its own
        torch.testing.assert_close(both.ws[i], a.ws[0], rtol=1e-4, atol=1e-4)


def test_an_lpips_target_is_checked_every_few_steps_and_needs_the_metric(tiny, tiny_target, tiny_perceptual):
    calls = []

    def lpips(x, y):
        calls.append(1)
        return torch.zeros(x.shape[0])  # "already perfect": the first check ends the stage

    recipe = Recipe((WPlusStage((image_term(tiny_target),), steps=20, lr=0.05,
                                until=GoodEnough(lpips=0.1, lpips_every=5)),))
    with pytest.raises(ValueError, match="lpips"):
        embed(tiny, recipe, perceptual=tiny_perceptual)
    result = embed(tiny, recipe, perceptual=tiny_perceptual, lpips=lpips)
    assert result.stages[0].steps == 5 and len(calls) == 1 and result.stages[0].reached[0]["lpips"] == 0.0


def test_stopping_targets_are_checked(tiny_target):
    with pytest.raises(ValueError, match="PSNR or an LPIPS"):
        GoodEnough()
    with pytest.raises(ValueError, match="LPIPS target must be"):
        GoodEnough(lpips=2.0)
    mask = torch.ones(1, 1, 32, 32)
    with pytest.raises(ValueError, match="unmasked"):
        NoiseStage(tiny_target, mask=mask, until=GoodEnough(lpips=0.2))
    NoiseStage(tiny_target, mask=mask, until=GoodEnough(psnr=30.0))  # PSNR is measured inside the mask


def test_a_warm_noise_stage_started_from_an_edited_embedding_never_loses_psnr(tiny, tiny_target):
    """Adam's first steps move every element by about the full rate whatever the gradient: started from an edited
    embedding (fitted, then coarse rows moved), a cold noise stage at the default rate first makes the image worse;
    with the warm-up no step of the first 20 is worse than the start."""
    fit = embed(tiny, Recipe((WPlusStage((image_term(tiny_target, perceptual_weight=0.0),), steps=200, lr=0.05),
                              NoiseStage(tiny_target, steps=300))))
    edited = fit.ws.clone()
    edited[:, :2] += 0.2 * torch.randn(1, 2, tiny.w_dim, generator=torch.Generator().manual_seed(5))

    def psnrs(warmup: int) -> list[float]:
        result = embed(tiny, Recipe((NoiseStage(tiny_target, steps=40, warmup_steps=warmup),)),
                       start=Embedding(edited, fit.noise))
        return [h.psnr for h in result.history]

    cold, warm = psnrs(0), psnrs(10)
    assert min(cold[1:21]) < cold[0] - 0.3  # the dip the warm-up removes (0.77 dB when written)
    assert min(warm[1:21]) > warm[0]  # 0.52 dB above the start at its lowest when written
    assert warm[-1] > warm[0] + 1.0


def test_the_noise_warm_up_grows_with_long_stages_and_keeps_the_presets_ten_steps():
    # Ten steps for the presets' noise stages (at most a quarter of a short stage); 3 % of a long stage, whose start
    # after a long W+ stage is close enough to its optimum that ten steps lost PSNR (docs/algorithm.md#schedules).
    warmups = {steps: noise_schedule("fast", steps)["warmup_steps"] for steps in (1, 4, 20, 40, 100, 200, 1000, 3000)}
    assert warmups == {1: 0, 4: 1, 20: 5, 40: 10, 100: 10, 200: 10, 1000: 30, 3000: 90}
    assert noise_schedule("paper", 1000) == {"decay": False}
