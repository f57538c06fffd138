"""The embedding engine: Image2StyleGAN++'s Algorithm 1 run as sequential optimisation stages.

An embedding is a pair (w, n): W+ latents [B, num_ws, w_dim] and one noise map per noise input. :func:`embed`
runs a list of stages one after another, never jointly (the paper's key finding: noise optimisation is stable only
after, not together with, W+ optimisation):

* :class:`WPlusStage` -- Eq. 2, ``W_l``: W+ rows (optionally a subset, the row mask w_m) under pixel MSE with mask
  M_m plus the VGG16 perceptual loss with mask M_p; noise fixed.
* :class:`NoiseStage` -- Eq. 3, ``Mk_n``: the noise maps under pixel MSE only, to x inside a mask M and to a second
  target y outside it; W+ fixed.

Every step reports to an optional callback (the CLI's progress bar, the recorded curves and a future web UI all use
it). Several images optimise together as a batch: losses are per image and summed, and Adam is element-wise, so
each image's trajectory is the one it would have alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Union

import torch

from .errors import InputError
from .generators.base import StyleGenerator
from .losses import STYLE_LAYER, PerceptualLoss, gram_distance, gram_matrix, masked_mse, masked_perceptual
from .metrics import psnr


@dataclass(frozen=True)
class TargetTerm:
    """One target image's share of a W+ objective (Eq. 1):

        λ_mse · MSE(M_m; G, target) + λ_p · L_percept(M_p; G, target) + λ_s · L_style(M_s; G, target)

    The applications sum several of these in one optimisation (the paper's "+" between two blocks in one line of
    an algorithm): crossover takes image 1 inside M_blur and image 2 outside it; local style transfer takes the
    content image's MSE + perceptual terms inside the mask and the style image's Gram term outside.
    """

    target: torch.Tensor  # [B or 1, 3, H, W] in [-1, 1]
    mse_weight: float = 1.0
    perceptual_weight: float = 1.0
    style_weight: float = 0.0
    mse_mask: torch.Tensor | None = None  # M_m
    perceptual_mask: torch.Tensor | None = None  # M_p
    style_mask: torch.Tensor | None = None  # M_s: region of G(w, n) whose Gram matrix is matched
    style_target_mask: torch.Tensor | None = None  # region of the target the style statistics come from
    name: str = ""  # prefix of this term's entries in the step log

    def __post_init__(self) -> None:
        weights = (self.mse_weight, self.perceptual_weight, self.style_weight)
        if min(weights) < 0 or sum(weights) == 0:
            raise ValueError("a W+ target term needs a positive MSE, perceptual or style weight (and none negative)")


@dataclass(frozen=True)
class WPlusStage:
    """Eq. 2 (``W_l``): optimise W+ with λ_mse·MSE(M_m) + λ_p·L_percept(M_p); noise fixed.

    Defaults follow the paper's reconstruction (Alg. 2): Adam lr 0.01, 5000 steps, λ_mse : λ_p = 1 : 1 (the
    paper's 1e-5 : 1e-5; Adam is invariant to the overall loss scale, so only the ratio matters).

    With ``terms`` the objective is their sum instead of the single term built from ``embed()``'s target and
    the weight and mask fields here (which must then keep their defaults).
    """

    steps: int = 5000
    lr: float = 0.01
    mse_weight: float = 1.0  # λ_mse1
    perceptual_weight: float = 1.0  # λ_p
    mse_mask: torch.Tensor | None = None  # M_m, [B or 1, 1, H, W]
    perceptual_mask: torch.Tensor | None = None  # M_p
    rows: Sequence[int] | None = None  # w_m: the W+ rows to optimise (None = all)
    terms: tuple[TargetTerm, ...] | None = None
    name: str = "w_plus"

    def __post_init__(self) -> None:
        _check_common(self.steps, self.lr, self.name)
        if self.terms is not None:
            if not self.terms:
                raise ValueError("W+ stage: terms, when given, must not be empty")
            if (self.mse_weight, self.perceptual_weight, self.mse_mask, self.perceptual_mask) != (1.0, 1.0, None, None):
                raise ValueError("W+ stage: give either terms or the single-term weights and masks, not both")
        elif self.mse_weight < 0 or self.perceptual_weight < 0 or self.mse_weight + self.perceptual_weight == 0:
            raise ValueError("W+ stage needs a positive MSE or perceptual weight (and none negative)")

    def objective(self, target: torch.Tensor) -> tuple[TargetTerm, ...]:
        """The terms this stage minimises, given ``embed()``'s target."""
        if self.terms is not None:
            return self.terms
        return (TargetTerm(target, self.mse_weight, self.perceptual_weight, 0.0, self.mse_mask, self.perceptual_mask),)


@dataclass(frozen=True)
class NoiseStage:
    """Eq. 3 (``Mk_n``): optimise the noise maps with λ_1·MSE(M; G, x) + λ_2·MSE(1 - M; G, y); W+ fixed.

    ``lr`` is the paper's Adam learning rate (5) for unit-scale N(0, 1) maps. ``lr_scaling`` says how each map's
    rate is adapted to its layer's noise strength s_i (which spans 8e-5 ... 0.25 in the bundled generator):

    * ``"paper"``: every map uses ``lr`` (one step moves the activations by lr * s_i: 1.25 at the strongest
      layer, 4e-4 at the weakest -- the uneven steps the faithful setting suffers from);
    * ``"strength"`` (default): map i uses ``lr * reference_strength / s_i``, so one step moves every layer's
      activations by the same ``lr * reference_strength`` (a layer of strength 0.05 keeps the paper's lr).
      Tuned on the demo photo from a 200-step W+ embedding (17.5 dB), 80 noise steps: reference 0.002 / 0.01 /
      0.03 / 0.1 gave 24.4 / 31.9 / 34.2 / 33.4 dB in the paper's space and 26.5 / 34.8 / 37.1 / 38.3 dB in the
      extended one (0.3: 35.0 dB); one lr for all maps ("paper") gave 31.1 dB.

    ``decay`` lowers the rate along a cosine to ``lr * final_lr_fraction`` at the last step, which lets Adam settle
    instead of oscillating at lr 5.
    """

    steps: int = 3000
    lr: float = 5.0
    mse_weight: float = 1.0  # λ on the x-term, inside ``mask``
    mask: torch.Tensor | None = None  # M (None = everywhere)
    second_target: torch.Tensor | None = None  # y, matched outside ``mask``
    second_weight: float = 0.0  # λ on the y-term
    lr_scaling: Literal["paper", "strength"] = "strength"
    reference_strength: float = 0.05
    decay: bool = True
    final_lr_fraction: float = 0.05
    name: str = "noise"

    def __post_init__(self) -> None:
        _check_common(self.steps, self.lr, self.name)
        if self.lr_scaling not in ("paper", "strength"):
            raise ValueError(f"lr_scaling must be 'paper' or 'strength', got {self.lr_scaling!r}")
        if self.second_weight > 0 and self.second_target is None:
            raise ValueError("noise stage: second_weight > 0 needs a second_target")


Stage = Union[WPlusStage, NoiseStage]


@dataclass(frozen=True)
class StepInfo:
    """What a stage reports after each optimisation step (values averaged over the batch)."""

    stage: str
    step: int  # 1-based within the stage
    steps: int
    loss: float
    psnr: float  # dB, of the image this step's loss was computed on
    terms: dict[str, float]
    seconds: float  # wall time of this step

    def as_dict(self) -> dict:
        return {"stage": self.stage, "step": self.step, "loss": self.loss, "psnr": self.psnr, "terms": self.terms,
                "seconds": self.seconds}


@dataclass(frozen=True)
class StageOutcome:
    name: str
    image: torch.Tensor  # [B, 3, H, W] rendered from the embedding at the end of the stage
    psnr: torch.Tensor  # [B] dB against the stage's main target
    seconds: float
    steps: int


@dataclass(frozen=True)
class EmbeddingResult:
    """The embedding (w, n), the per-step history and what each stage ended with."""

    ws: torch.Tensor  # [B, num_ws, w_dim]
    noise: list[torch.Tensor]  # one [B, C, H, W] per noise input
    history: list[StepInfo] = field(repr=False)
    stages: list[StageOutcome] = field(repr=False)

    @property
    def image(self) -> torch.Tensor:
        return self.stages[-1].image if self.stages else None


Callback = Callable[[StepInfo], None]


def initial_ws(
    generator: StyleGenerator, batch: int, init: Literal["mean", "uniform"] = "mean", seed: int = 0
) -> torch.Tensor:
    """The paper's initial W+: the mean latent (faces) or U[-1, 1] per entry (other images). [B, num_ws, w_dim]"""
    if init == "mean":
        return generator.mean_ws(batch)
    if init == "uniform":
        rng = torch.Generator().manual_seed(seed)
        u = torch.rand((batch, generator.num_ws, generator.w_dim), generator=rng) * 2 - 1
        return u.to(generator.w_avg)
    raise ValueError(f"init must be 'mean' or 'uniform', got {init!r}")


def initial_noise(generator: StyleGenerator, batch: int, seed: int = 0) -> list[torch.Tensor]:
    """Unit N(0, 1) maps in the paper's space, drawn on the CPU from ``seed`` so every device starts alike."""
    rng = torch.Generator().manual_seed(seed + 1)  # not the stream initial_ws uses
    return [torch.randn((batch, *shape), generator=rng).to(generator.w_avg) for shape in generator.noise_shapes("paper")]


def to_noise_space(generator: StyleGenerator, noise: Sequence[torch.Tensor], space: str) -> list[torch.Tensor]:
    """Express maps in ``space``: per-channel layers get the single-channel map repeated over channels, which
    renders the same image, so a noise stage in the extended space starts exactly where the W+ stage ended."""
    out = []
    for n, (c, _, _), spec in zip(noise, generator.noise_shapes(space), generator.noise_inputs):
        if n.shape[1] == c:
            out.append(n.clone())
        elif n.shape[1] == 1:
            out.append(n.expand(-1, c, -1, -1).clone())
        elif torch.equal(n, n[:, :1].expand_as(n)):  # the same map on every channel (e.g. zero-filled)
            out.append(n[:, :1].clone())
        else:
            raise InputError(f"the starting noise has per-channel maps at {spec.layer}, which the {space!r} noise "
                             "space cannot hold; use the 'extended' noise space")
    return out


def fit_noise_space(
    generator: StyleGenerator, noise: Sequence[torch.Tensor], space: str
) -> tuple[list[torch.Tensor], str]:
    """Make saved noise maps usable by :func:`embed` in ``space`` (for a ``--from`` embedding).

    ``apps.outputs.load_embedding`` returns maps with 1 or C channels (zeros of C channels for maps a file lacks). A map whose
    channels all hold the same values is the paper's single-channel map and is reduced to one channel; genuinely
    per-channel maps (an extended-space embedding) switch the space to 'extended'.

    Returns:
        (maps, the noise space to run in).
    """
    def per_channel(n: torch.Tensor) -> bool:
        return n.shape[1] > 1 and not torch.equal(n, n[:, :1].expand_as(n))

    if space == "paper" and any(per_channel(n) for n in noise):
        space = "extended"
    out = []
    for n, spec, (channels, _, _) in zip(noise, generator.noise_inputs, generator.noise_shapes(space)):
        if n.shape[1] != channels and channels == 1:
            if per_channel(n):
                raise InputError(f"the starting embedding has per-channel noise at {spec.layer}, which no noise "
                                 "space of this generator has; was it made with a different generator?")
            n = n[:, :1]
        out.append(n)
    return out, space


def embed(
    generator: StyleGenerator,
    target: torch.Tensor,
    stages: Sequence[Stage],
    *,
    perceptual: PerceptualLoss | None = None,
    ws: torch.Tensor | None = None,
    noise: Sequence[torch.Tensor] | None = None,
    noise_space: str = "paper",
    init: Literal["mean", "uniform"] = "mean",
    seed: int = 0,
    callback: Callback | None = None,
    on_stage_end: Callable[[StageOutcome], None] | None = None,
) -> EmbeddingResult:
    """Embed ``target`` by running ``stages`` in order (Algorithm 1 with the paper's sequential schedule).

    Args:
        generator: a frozen :class:`StyleGenerator`.
        target: [B, 3, H, W] images in [-1, 1] at the generator's resolution (x of Eq. 1).
        stages: e.g. ``[WPlusStage(), NoiseStage()]`` for the paper's reconstruction (Alg. 2).
        perceptual: the VGG16 loss (:class:`PerceptualLoss`), needed by W+ stages with perceptual or style terms.
        ws, noise: a starting embedding (e.g. from ``latent.npz``); default the paper's initialisation:
            ``init`` ('mean' latent or 'uniform' U[-1, 1]) and seeded N(0, 1) noise.
        noise_space: 'paper' (one map per noise input) or 'extended' (per-channel maps at the finest blocks).
        seed: makes the initialisation, hence the whole run, reproducible.
        callback: called with a :class:`StepInfo` after every step.
        on_stage_end: called with each :class:`StageOutcome` as its stage finishes.

    Returns:
        :class:`EmbeddingResult` with the final (w, n) and the history.
    """
    batch = target.shape[0]
    expected = (3, generator.resolution, generator.resolution)
    if target.ndim != 4 or tuple(target.shape[1:]) != expected:
        raise ValueError(f"target must be [B, {', '.join(map(str, expected))}], got {list(target.shape)}")
    target = target.to(generator.w_avg)
    ws = (initial_ws(generator, batch, init, seed) if ws is None else ws.to(target)).detach().clone()
    noise = initial_noise(generator, batch, seed) if noise is None else [n.to(target) for n in noise]
    noise = to_noise_space(generator, noise, noise_space)
    if ws.shape[0] != batch:
        raise ValueError(f"starting ws has batch {ws.shape[0]}, target has {batch}")

    history: list[StepInfo] = []
    outcomes: list[StageOutcome] = []

    def report(info: StepInfo) -> None:
        history.append(info)
        if callback is not None:
            callback(info)

    for stage in stages:
        start = time.perf_counter()
        if isinstance(stage, WPlusStage):
            ws = _run_w_plus(generator, target, ws, noise, stage, perceptual, report)
        elif isinstance(stage, NoiseStage):
            noise = _run_noise(generator, target, ws, noise, stage, report)
        else:
            raise TypeError(f"unknown stage {stage!r}")
        seconds = time.perf_counter() - start
        with torch.no_grad():
            image = generator.synthesis(ws, noise)
        outcomes.append(StageOutcome(stage.name, image, psnr(image.clamp(-1, 1), target), seconds, stage.steps))
        if on_stage_end is not None:
            on_stage_end(outcomes[-1])
    return EmbeddingResult(ws.detach(), [n.detach() for n in noise], history, outcomes)


def _run_w_plus(generator, target, ws, noise, stage: WPlusStage, perceptual, report) -> torch.Tensor:
    objective = stage.objective(target)
    needs_vgg = any(t.perceptual_weight > 0 or t.style_weight > 0 for t in objective)
    if needs_vgg and perceptual is None:
        raise ValueError("this W+ stage has a perceptual or style term but embed() got no perceptual loss")
    ws = ws.clone().requires_grad_(True)
    noise = [n.detach() for n in noise]
    row_mask = _row_mask(generator.num_ws, stage.rows, ws)
    optimizer = torch.optim.Adam([ws], lr=stage.lr, betas=(0.9, 0.999), eps=1e-8)
    # Target features and Gram matrices are fixed: compute them once, not every step.
    prepared = [_prepare_term(term, target, perceptual) for term in objective]
    style_layers = {STYLE_LAYER} if any(t.style_weight > 0 for t in objective) else set()
    vgg_layers = tuple(dict.fromkeys([*(perceptual.layers if needs_vgg else ()), *style_layers]))
    report_mask = objective[0].mse_mask if stage.terms is None else None
    for step in range(1, stage.steps + 1):
        start = time.perf_counter()
        image = generator.synthesis(ws, noise)
        features = perceptual.vgg(image, vgg_layers) if vgg_layers else {}
        loss, terms = 0.0, {}
        for term, target_features, target_gram in prepared:
            prefix = f"{term.name}." if term.name else ""
            if term.mse_weight > 0:
                value = masked_mse(image, term.target, term.mse_mask)
                terms[prefix + "mse"], loss = value, loss + term.mse_weight * value
            if term.perceptual_weight > 0:
                own = {k: features[k] for k in perceptual.layers}
                value = masked_perceptual(own, target_features, term.perceptual_mask, perceptual.layer_weights)
                terms[prefix + "perceptual"], loss = value, loss + term.perceptual_weight * value
            if term.style_weight > 0:
                value = gram_distance(gram_matrix(features[STYLE_LAYER], term.style_mask), target_gram)
                terms[prefix + "style"], loss = value, loss + term.style_weight * value
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        if row_mask is not None:
            ws.grad.mul_(row_mask)  # w_m: frozen rows get zero gradient, hence exactly zero Adam updates
        optimizer.step()
        report(_step_info(stage, step, loss, terms, image, target, report_mask, start))
    return ws.detach()


def _prepare_term(term: TargetTerm, target: torch.Tensor, perceptual):
    """(term with its target on the right device, target features for the perceptual term, target Gram)."""
    term = replace(term, target=term.target.to(target))
    features = perceptual.precompute(term.target) if term.perceptual_weight > 0 else None
    gram = None
    if term.style_weight > 0:
        with torch.no_grad():
            style_features = perceptual.vgg(term.target, (STYLE_LAYER,))[STYLE_LAYER]
            gram = gram_matrix(style_features, term.style_target_mask)
    return term, features, gram


def _run_noise(generator, target, ws, noise, stage: NoiseStage, report) -> list[torch.Tensor]:
    ws = ws.detach()
    maps = [n.detach().clone().requires_grad_(True) for n in noise]
    strengths = generator.noise_strengths()
    groups = []
    for m, s in zip(maps, strengths):
        scale = 1.0 if stage.lr_scaling == "paper" else stage.reference_strength / max(abs(s), 1e-12)
        groups.append({"params": [m], "lr": stage.lr * scale, "base_lr": stage.lr * scale})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-8)
    outside = None if stage.mask is None else 1.0 - stage.mask
    for step in range(1, stage.steps + 1):
        start = time.perf_counter()
        if stage.decay:
            factor = _cosine(step - 1, stage.steps, stage.final_lr_fraction)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
        image = generator.synthesis(ws, maps)
        terms = {"mse": masked_mse(image, target, stage.mask)}
        loss = stage.mse_weight * terms["mse"]
        if stage.second_weight > 0:
            terms["mse_outside"] = masked_mse(image, stage.second_target.to(image), outside)
            loss = loss + stage.second_weight * terms["mse_outside"]
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        report(_step_info(stage, step, loss, terms, image, target, stage.mask, start))
    return [m.detach() for m in maps]


def _step_info(stage, step, loss, terms, image, target, mask, start) -> StepInfo:
    with torch.no_grad():
        quality = psnr(image.detach().clamp(-1, 1), target, mask=_binary(mask)).mean().item()
    return StepInfo(
        stage=stage.name,
        step=step,
        steps=stage.steps,
        loss=loss.detach().mean().item(),
        psnr=quality,
        terms={k: v.detach().mean().item() for k, v in terms.items()},
        seconds=time.perf_counter() - start,
    )


def _binary(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None else (mask > 0.5).to(mask.dtype)


def _row_mask(num_ws: int, rows: Sequence[int] | None, like: torch.Tensor) -> torch.Tensor | None:
    if rows is None:
        return None
    rows = list(rows)
    if not rows or min(rows) < 0 or max(rows) >= num_ws:
        raise ValueError(f"W+ rows must be a non-empty subset of 0..{num_ws - 1}, got {rows}")
    mask = torch.zeros(1, num_ws, 1, dtype=like.dtype, device=like.device)
    mask[:, rows] = 1.0
    return mask


def _cosine(step: int, steps: int, floor: float) -> float:
    """Cosine from 1 at step 0 to ``floor`` at the last step."""
    if steps <= 1:
        return 1.0
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * step / (steps - 1)))


def _check_common(steps: int, lr: float, name: str) -> None:
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"{name}: steps must be a non-negative integer, got {steps!r}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"{name}: learning rate must be positive and finite, got {lr!r}")
