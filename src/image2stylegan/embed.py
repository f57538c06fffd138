"""The embedding engine: one function, :func:`embed`, runs any :class:`~image2stylegan.recipe.Recipe`.

An embedding is a pair (w, n): W+ latents [B, num_ws, w_dim] and one noise map per noise input. The engine runs a
recipe's stages one after another, never jointly (Algorithm 1: noise optimisation is stable only after, not
together with, W+ optimisation), and returns one :class:`EmbeddingResult`: the final (w, n) of every embedding the
recipe optimises, every stage's outcome and the whole per-step history.

Every step reports a :class:`StepInfo` to one callback: the CLI's progress bar, the recorded curves, the browser
editor and the cluster runner all use it. The callback can look at the image the step rendered (``info.image``,
no extra forward pass) and stop the run by returning ``True``: the stage ends after that step, later stages are
skipped, and the result holds the embedding reached so far with ``stopped=True``. Nothing is copied to the host
per step unless the callback asks (``info.loss`` and ``info.psnr`` are read lazily) or the stage has a stopping
target (``until``: its PSNR is read every step), so a GPU is otherwise not synchronised every step.

Several images optimise together as a batch: losses are per image and summed, and Adam is element-wise, so each
image's trajectory is the one it would have alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

import torch

from .errors import InputError
from .generators.base import StyleGenerator
from .losses import (NORMALIZED_PERCEPTUAL_LAYERS, STYLE_LAYER, PerceptualLoss, gram_distance, gram_matrix,
                     masked_mse, masked_perceptual, normalized_perceptual)
from .metrics import psnr
from .recipe import (MAIN, NoiseStage, Recipe, Rendered, Stage, Target, TargetTerm, WPlusStage, lr_factor,
                     noise_map_rates)

__all__ = [
    "Callback",
    "Embedding",
    "EmbeddingResult",
    "StageOutcome",
    "StepInfo",
    "embed",
    "fit_noise_space",
    "initial_noise",
    "initial_ws",
    "start_noise",
    "to_noise_space",
]


class Embedding(NamedTuple):
    """(ws [B, num_ws, w_dim], noise maps [B, C, H, W] in synthesis order). As a start, ``ws`` None means the
    recipe's initial W+ and ``noise`` None its seeded N(0, 1) maps."""

    ws: torch.Tensor | None
    noise: list[torch.Tensor] | None


class StepInfo:
    """What a stage reports after each optimisation step (values averaged over the batch).

    ``loss``, ``psnr`` and ``terms`` are kept as device tensors and turned into floats when first read, so a run
    whose callback reads them only every k steps synchronises a GPU only then. ``image`` is the image this step
    rendered, [B, 3, H, W] (detached, not clamped); it is available only while the callback runs.
    ``target_reached`` is True on the last step of a stage that ends before its budget because every image reached
    the stage's stopping target (``until``), so a display can say why the stage ended.
    """

    __slots__ = ("stage", "step", "steps", "embedding", "seconds", "target_reached", "_loss", "_psnr", "_terms",
                 "_image")

    def __init__(self, stage: str, step: int, steps: int, loss, psnr, terms: Mapping, seconds: float,
                 embedding: str = MAIN, image: torch.Tensor | None = None, target_reached: bool = False):
        self.stage, self.step, self.steps, self.embedding, self.seconds = stage, step, steps, embedding, seconds
        self.target_reached = target_reached
        self._loss, self._psnr, self._terms, self._image = loss, psnr, dict(terms), image

    @property
    def loss(self) -> float:
        if isinstance(self._loss, torch.Tensor):
            self._loss = self._loss.item()
        return self._loss

    @property
    def psnr(self) -> float:
        """dB, of the image this step's loss was computed on, against the stage's main target."""
        if isinstance(self._psnr, torch.Tensor):
            self._psnr = self._psnr.item()
        return self._psnr

    @property
    def terms(self) -> dict[str, float]:
        if any(isinstance(v, torch.Tensor) for v in self._terms.values()):
            self._terms = {k: float(v) for k, v in self._terms.items()}
        return self._terms

    @property
    def image(self) -> torch.Tensor | None:
        return self._image

    def as_dict(self) -> dict:
        return {"stage": self.stage, "step": self.step, "loss": self.loss, "psnr": self.psnr, "terms": self.terms,
                "seconds": self.seconds}

    def __repr__(self) -> str:
        return f"StepInfo({self.stage!r}, step {self.step}/{self.steps})"


@dataclass(frozen=True)
class StageOutcome:
    name: str
    image: torch.Tensor  # [B, 3, H, W] rendered from the embedding at the end of the stage
    psnr: torch.Tensor  # [B] dB against the stage's main target
    seconds: float
    steps: int  # steps run (fewer than planned when stopped)
    embedding: str = MAIN
    stopped: bool = False
    # With an ``until`` target: per image, None or {"step", "psnr", "lpips", "seconds" into the stage} of the step
    # whose image reached it (the image is kept as it was then; the stage ended once every image had).
    reached: tuple[dict | None, ...] | None = None


@dataclass(frozen=True)
class EmbeddingResult:
    """What :func:`embed` returns.

    ``ws`` / ``noise`` are the final embedding of the last stage that ran (the start when none did);
    ``embeddings`` holds the final state of every embedding the recipe optimised (and of every given start).
    """

    ws: torch.Tensor  # [B, num_ws, w_dim]
    noise: list[torch.Tensor]  # one [B, C, H, W] per noise input
    history: list[StepInfo] = field(repr=False)
    stages: list[StageOutcome] = field(repr=False)
    embeddings: dict[str, Embedding] = field(default_factory=dict, repr=False)
    stopped: bool = False

    @property
    def image(self) -> torch.Tensor | None:
        return self.stages[-1].image if self.stages else None

    def outcome(self, stage: str) -> StageOutcome | None:
        """The outcome of stage ``stage``, or None when it did not run (the run was stopped before it)."""
        return next((s for s in self.stages if s.name == stage), None)


Callback = Callable[[StepInfo], "bool | None"]
"""Called after every step; returning True stops the run (see :func:`embed`)."""


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


def start_noise(
    generator: StyleGenerator, noise: Sequence[torch.Tensor] | None, seed: int, space: str
) -> tuple[list[torch.Tensor], str]:
    """The noise an edit starts from (the given maps, e.g. of a ``--from`` embedding, or the seeded n_ini the
    engine would draw) and the noise space that can hold them (:func:`fit_noise_space`)."""
    if noise is None:
        noise = initial_noise(generator, 1, seed)
    return fit_noise_space(generator, [n.to(generator.w_avg) for n in noise], space)


def embed(
    generator: StyleGenerator,
    recipe: Recipe,
    *,
    perceptual: PerceptualLoss | None = None,
    start: Embedding | tuple | Mapping[str, Embedding | tuple] | None = None,
    callback: Callback | None = None,
    lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> EmbeddingResult:
    """Run ``recipe``'s stages in order (Algorithm 1's sequential schedule) and return the result.

    Args:
        generator: a frozen :class:`StyleGenerator`; everything runs on its device.
        recipe: the stages; see :mod:`image2stylegan.recipe`.
        perceptual: the VGG16 loss (:class:`PerceptualLoss`), needed by W+ stages with perceptual or style terms.
        start: the starting embedding (e.g. from ``latent.npz``) of the recipe's main embedding, or a mapping from
            embedding names to starts. Embeddings without one start from the recipe's initialisation: ``init``
            ('mean' latent or 'uniform' U[-1, 1]) and N(0, 1) noise, both seeded by ``recipe.seed``.
        callback: called with a :class:`StepInfo` after every step; returning True stops the run after that step.
        lpips: the LPIPS metric (:class:`~image2stylegan.metrics.LPIPS`), needed by stages whose ``until`` target
            has an LPIPS value. With an ``until`` target each image is kept as it was at the first step whose
            image reached it, and the stage ends once every image has (its outcome's ``reached``); later stages run
            as planned.

    Returns:
        :class:`EmbeddingResult`, with ``stopped=True`` when the callback stopped the run.
    """
    if recipe.uses_lpips and lpips is None:
        raise ValueError("a stage of the recipe stops at an LPIPS target but embed() got no lpips metric")
    like = generator.w_avg
    starts = _starts(start, like)
    batch = _batch_size(recipe, starts)
    # Every embedding the recipe names or was given, at its start: a given one completed (ws or noise None) and the
    # others from the recipe's initialisation. A stopped run returns those it never reached as they started.
    states: dict[str, Embedding] = {}
    for name in [*starts, *(s.embedding for s in recipe.stages)]:
        ws, noise = starts.get(name, (None, None))
        states[name] = Embedding(initial_ws(generator, batch, recipe.init, recipe.seed) if ws is None else ws,
                                 initial_noise(generator, batch, recipe.seed) if noise is None else noise)
    ends: dict[str, Embedding] = {}
    renders: dict[str, torch.Tensor] = {}
    history: list[StepInfo] = []
    outcomes: list[StageOutcome] = []
    stop, done = False, 0
    current = next(iter(starts), None)  # the embedding the result's ws / noise come from

    def report(info: StepInfo) -> bool:
        """Record the step; True stops the run (the callback asked)."""
        nonlocal stop, done
        done = info.step
        history.append(info)
        if callback is not None and callback(info):
            stop = True
        info._image = None  # previews are for the callback only; the history must not keep every image alive
        return stop

    def resolve(target: Target | None) -> torch.Tensor | None:
        if isinstance(target, Rendered):
            return renders[target.stage]
        return None if target is None else _check_target(target, generator, batch).to(like)

    for stage in recipe.stages:
        if stop:
            break
        ws, noise = ends[stage.start] if stage.start is not None else states[stage.embedding]
        if ws.shape[0] != batch:
            raise ValueError(f"starting ws has batch {ws.shape[0]}, the recipe's targets have {batch}")
        began = time.perf_counter()
        done = 0
        goal = None if stage.until is None else _Goal(stage, lpips, resolve(stage.report_target), batch)
        if isinstance(stage, WPlusStage):
            ws = _run_w_plus(generator, stage, resolve, ws, noise, perceptual, report, goal)
        elif isinstance(stage, NoiseStage):
            noise = _run_noise(generator, stage, resolve, ws, to_noise_space(generator, noise, stage.noise_space),
                               report, goal)
        else:
            raise TypeError(f"unknown stage {stage!r}")
        seconds = time.perf_counter() - began
        with torch.no_grad():
            image = generator.synthesis(ws, noise)
        reference = resolve(stage.report_target)
        outcomes.append(StageOutcome(stage.name, image, psnr(image.clamp(-1, 1), reference), seconds, done,
                                     stage.embedding, stopped=stop and done < stage.steps,
                                     reached=None if goal is None else tuple(goal.reached)))
        ends[stage.name] = states[stage.embedding] = Embedding(ws, noise)
        current = stage.embedding
        renders[stage.name] = image
    if current is None:
        raise ValueError("the recipe has no stage and no start embedding: nothing to return")
    ws, noise = states[current]
    return EmbeddingResult(ws.detach(), [n.detach() for n in noise], history, outcomes, states, stopped=stop)


class _Goal:
    """A stage's :class:`~image2stylegan.recipe.GoodEnough` target, per image.

    Checked on each step's image before the optimiser moves it (PSNR every step, LPIPS every ``lpips_every`` steps
    once the PSNR target, if any, is met). An image that reaches the target is frozen there: its variables are put
    back after every later update, so it ends exactly where a run of that image alone would have stopped, and the
    others go on; the stage ends once every image has reached it.
    """

    def __init__(self, stage: Stage, lpips, reference: torch.Tensor, batch: int):
        self.until, self.lpips, self.reference = stage.until, lpips, reference
        self.began = time.perf_counter()
        self.mask = _binary(stage.report_mask)
        self.reached: list[dict | None] = [None] * batch
        self.kept: list[tuple[int, list[torch.Tensor]]] = []  # (image, its variables when it reached the target)

    @property
    def done(self) -> bool:
        return all(r is not None for r in self.reached)

    @torch.no_grad()
    def check(self, step: int, image: torch.Tensor, variables: Sequence[torch.Tensor]) -> None:
        """Record the images that ``image`` [B, 3, H, W] (rendered from ``variables``) shows at the target."""
        until, todo = self.until, [i for i, r in enumerate(self.reached) if r is None]
        if not todo or until.lpips is not None and step % until.lpips_every:
            return
        shown = image.detach().clamp(-1, 1)
        quality = psnr(shown, self.reference, mask=self.mask)
        if until.psnr is not None:
            todo = [i for i in todo if float(quality[i]) >= until.psnr]
        distance = None
        if until.lpips is not None and todo:
            distance = self.lpips(shown, self.reference.expand_as(shown))
            todo = [i for i in todo if float(distance[i]) <= until.lpips]
        for i in todo:
            self.reached[i] = {"step": step, "psnr": float(quality[i]),
                               "lpips": None if distance is None else float(distance[i]),
                               "seconds": time.perf_counter() - self.began}
            self.kept.append((i, [v[i].detach().clone() for v in variables]))

    @torch.no_grad()
    def restore(self, variables: Sequence[torch.Tensor]) -> None:
        """Put the frozen images' variables back after an optimiser step."""
        for i, values in self.kept:
            for v, kept in zip(variables, values):
                v[i].copy_(kept)


def _starts(start, like: torch.Tensor) -> dict[str, Embedding]:
    if start is None:
        return {}
    if isinstance(start, Mapping):
        items = start.items()
    else:
        items = [(MAIN, start)]
    out = {}
    for name, (ws, noise) in items:
        out[name] = Embedding(None if ws is None else ws.to(like).detach().clone(),
                              None if noise is None else [n.to(like) for n in noise])
    return out


def _batch_size(recipe: Recipe, starts: Mapping[str, Embedding]) -> int:
    for stage in recipe.stages:
        targets = [t.target for t in stage.terms] if isinstance(stage, WPlusStage) else [stage.target]
        for t in targets:
            if isinstance(t, torch.Tensor):
                return t.shape[0]
    for ws, noise in starts.values():
        return ws.shape[0] if ws is not None else noise[0].shape[0]
    return 1


def _check_target(target: torch.Tensor, generator: StyleGenerator, batch: int) -> torch.Tensor:
    expected = (3, generator.resolution, generator.resolution)
    if target.ndim != 4 or tuple(target.shape[1:]) != expected or target.shape[0] not in (1, batch):
        raise ValueError(f"a target must be [B, {', '.join(map(str, expected))}], got {list(target.shape)}")
    return target


def _run_w_plus(generator, stage: WPlusStage, resolve, ws, noise, perceptual, report, goal) -> torch.Tensor:
    if stage.uses_vgg and perceptual is None:
        raise ValueError(f"W+ stage {stage.name!r} has a perceptual or style term but embed() got no perceptual loss")
    ws = ws.detach().clone().requires_grad_(True)
    noise = [n.detach() for n in noise]
    row_mask = _row_mask(generator.num_ws, stage.rows, ws)
    optimizer = torch.optim.Adam([ws], lr=stage.lr, betas=(0.9, 0.999), eps=1e-8)
    # Target features and Gram matrices are fixed: compute them once, not every step.
    prepared = [_prepare_term(term, resolve(term.target), perceptual) for term in stage.terms]
    vgg_layers = tuple(dict.fromkeys(layer for term in stage.terms for layer in _term_layers(term, perceptual)))
    if any(t.style_weight > 0 for t in stage.terms):
        vgg_layers = tuple(dict.fromkeys([*vgg_layers, STYLE_LAYER]))
    reference, report_mask = resolve(stage.report_target), _binary(stage.report_mask)
    scheduled = stage.warmup_steps > 0 or stage.decay
    for step in range(1, stage.steps + 1):
        began = time.perf_counter()
        if scheduled:
            optimizer.param_groups[0]["lr"] = stage.lr * lr_factor(stage, step)
        image = generator.synthesis(ws, noise)
        features = perceptual.vgg(image, vgg_layers) if vgg_layers else {}
        loss, terms = 0.0, {}
        for term, target_features, target_gram in prepared:
            prefix = f"{term.name}." if term.name else ""
            if term.perceptual_known is not None and (term.perceptual_weight > 0 or term.normalized_weight > 0):
                target_features = _composite_features(perceptual, term, image)
            if term.mse_weight > 0:
                value = masked_mse(image, term.target, term.mse_mask)
                terms[prefix + "mse"], loss = value, loss + term.mse_weight * value
            if term.perceptual_weight > 0:
                own = {k: features[k] for k in perceptual.layers}
                value = masked_perceptual(own, target_features, term.perceptual_mask, perceptual.layer_weights)
                terms[prefix + "perceptual"], loss = value, loss + term.perceptual_weight * value
            if term.normalized_weight > 0:
                own = {k: features[k] for k in NORMALIZED_PERCEPTUAL_LAYERS}
                value = normalized_perceptual(own, target_features, term.perceptual_mask)
                terms[prefix + "normalized"], loss = value, loss + term.normalized_weight * value
            if term.style_weight > 0:
                value = gram_distance(gram_matrix(features[STYLE_LAYER], term.style_mask), target_gram)
                terms[prefix + "style"], loss = value, loss + term.style_weight * value
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        if row_mask is not None:
            ws.grad.mul_(row_mask)  # w_m: frozen rows get zero gradient, hence exactly zero Adam updates
        if step <= stage.tied_steps:
            _tie_rows(ws.grad, row_mask)
        if goal is not None:
            goal.check(step, image, [ws])
        optimizer.step()
        if goal is not None:
            goal.restore([ws])
        info = _step_info(stage, step, loss, terms, image, reference, report_mask, began, goal)
        if report(info) or goal and goal.done:
            break
    return ws.detach()


def _prepare_term(term: TargetTerm, target: torch.Tensor, perceptual):
    """(term with its target resolved and on the right device, target features for the perceptual term, Gram)."""
    term = replace(term, target=target)
    fixed = term.perceptual_known is None  # a composite target changes every step
    layers = _term_layers(term, perceptual)
    features = None
    if fixed and layers:
        with torch.no_grad():
            features = perceptual.vgg(target, layers)
    gram = None
    if term.style_weight > 0:
        with torch.no_grad():
            style_features = perceptual.vgg(target, (STYLE_LAYER,))[STYLE_LAYER]
            gram = gram_matrix(style_features, term.style_target_mask)
    return term, features, gram


def _term_layers(term: TargetTerm, perceptual) -> tuple[str, ...]:
    """The VGG layers of ``term``'s perceptual terms (the paper's and the normalised one; not the style layer)."""
    layers = [*(perceptual.layers if term.perceptual_weight > 0 else ()),
              *(NORMALIZED_PERCEPTUAL_LAYERS if term.normalized_weight > 0 else ())]
    return tuple(dict.fromkeys(layers))


@torch.no_grad()
def _composite_features(perceptual, term: TargetTerm, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Perceptual target features of K·target + (1 - K)·image (K = ``term.perceptual_known``), this step's."""
    known = term.perceptual_known.to(image)
    image = image.detach()
    target = torch.where(known > 0, term.target, image)  # where K is 0 the target is never read, even a NaN
    return perceptual.vgg(known * target + (1.0 - known) * image, _term_layers(term, perceptual))


def _run_noise(generator, stage: NoiseStage, resolve, ws, noise, report, goal) -> list[torch.Tensor]:
    ws = ws.detach()
    target, second = resolve(stage.target), resolve(stage.second_target)
    maps = [n.detach().clone().requires_grad_(True) for n in noise]
    rates = noise_map_rates(stage, generator.noise_strengths(), [m.shape[-1] for m in maps])
    groups = [{"params": [m], "lr": rate, "base_lr": rate} for m, rate in zip(maps, rates)]
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.999), eps=1e-8)
    outside = None if stage.mask is None else 1.0 - stage.mask
    report_mask = _binary(stage.mask)
    for step in range(1, stage.steps + 1):
        began = time.perf_counter()
        if stage.decay or stage.warmup_steps:
            factor = lr_factor(stage, step)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
        image = generator.synthesis(ws, maps)
        terms = {"mse": masked_mse(image, target, stage.mask)}
        loss = stage.mse_weight * terms["mse"]
        if stage.second_weight > 0:
            terms["mse_outside"] = masked_mse(image, second, outside)
            loss = loss + stage.second_weight * terms["mse_outside"]
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        if goal is not None:
            goal.check(step, image, maps)
        optimizer.step()
        if goal is not None:
            goal.restore(maps)
        info = _step_info(stage, step, loss, terms, image, target, report_mask, began, goal)
        if report(info) or goal and goal.done:
            break
    return [m.detach() for m in maps]


def _step_info(stage: Stage, step, loss, terms, image, target, mask, began, goal) -> StepInfo:
    with torch.no_grad():
        image = image.detach()
        quality = psnr(image.clamp(-1, 1), target, mask=mask).mean()
    return StepInfo(stage.name, step, stage.steps, loss.detach().mean(), quality,
                    {k: v.detach().mean() for k, v in terms.items()}, time.perf_counter() - began,
                    embedding=stage.embedding, image=image,
                    target_reached=goal is not None and goal.done and step < stage.steps)


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


def _tie_rows(grad: torch.Tensor, row_mask: torch.Tensor | None) -> None:
    """Replace each optimised row's gradient by their mean, in place: Adam then moves those rows by one shared
    offset (the W-space phase; rows that started equal stay equal). Frozen rows keep their zero gradient."""
    if row_mask is None:
        grad.copy_(grad.mean(dim=1, keepdim=True).expand_as(grad))
    else:
        mean = grad.sum(dim=1, keepdim=True) / row_mask.sum()
        grad.copy_(mean * row_mask)
