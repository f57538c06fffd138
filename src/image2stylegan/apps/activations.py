"""Activation-tensor operations (the paper's Eq. 5) and attribute-level feature transfer (``I_att``, Sec. 8.5).

Eq. 5 renders two embeddings (w, n) of images I1 and I2, takes the output ``A_l``, ``B_l`` [1, C_l, H_l, W_l] of one
synthesis layer ``l`` of each, combines them into ``t`` and runs the generator again with layer ``l``'s output
replaced by ``t``; every later layer runs normally, driven by one image's style code (I1's in the paper's figure):

    I_att(M_1, M_2, w, n, l) = G(w, n, t),    t = M_1 ⊙ A_l + (1 − M_2) ⊙ B_l,

with the image-space masks downsampled to H_l × W_l by nearest neighbour. Here the user's mask ``M`` marks where
B's features go (the attribute to transfer), i.e. Eq. 5 with ``M_1 = M_2 = 1 − M``: ``t = (1 − M) ⊙ A_l + M ⊙ B_l``.
Three operations (Sec. 5) are offered, all pure functions of the two tensors:

* :func:`spatial_copy`: B's 1 × 1 × C_l "high-dimensional pixels" replace A's inside the mask (the paper's choice:
  "spatial copying works a bit better than averaging and channel-wise copying");
* :func:`channel_copy`: chosen channels come from B (optionally only inside a mask), the rest from A;
* :func:`average`: ``α · A_l + (1 − α) · B_l`` (optionally only inside a mask).

Each is written as ``(1 − m) · A + m · (...)``, so where the effective mask ``m`` is exactly 0 the result *is* A
bit for bit (``1·a + 0·b == a`` in floating point); the tests rely on that.

Which layer is the paper's "fourth layer" is ambiguous (docs/algorithm.md#fourth-layer); each reading has a name:

* ``fourth-row``: StyleGAN's layers counted like W+ rows, layer 4 = ``8x8/Conv1``, the last 8 × 8 activation
  (here ``b8.conv2``, also the layer driven by W+ row 3);
* ``fourth-conv``: the fourth convolution with a noise input, as StyleGAN2 (which the bundled generator distils)
  counts them: 4 × 4 conv, 8 × 8 conv0, conv1, 16 × 16 conv0 (here ``b16.conv1``); the default, see
  :data:`DEFAULT_LAYER`;
* ``fourth-block``: synthesis blocks counted (4, 8, 16, 32 px), the last 32 × 32 activation (here ``b32.conv2``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import torch

from ..embed import Callback, Embedding, StageOutcome, StepInfo
from ..errors import InputError
from ..generators.base import StyleGenerator
from ..masks import check_mask_content, resize_for_layer
from ..metrics import psnr
from ..recipe import Recipe
from .outputs import EditResult, copy_paste, noise_space_of
from .plan import Plan
from .ranges import ALPHA, check_ranges, setting
from .settings import (embedding_noise_stage, embedding_stage, noise_space_setting,
                       noise_steps_setting, schedule_setting, seed_setting, w_steps_setting)

ALPHA_DOC = "for the average operation: the weight of A; 1 keeps A unchanged"

OPS = ("spatial", "channel", "average")

LAYER_ALIASES = {
    "fourth-row": "the last 8x8 activation (StyleGAN layer 4 = 8x8/Conv1, counting W+ rows)",
    "fourth-conv": "the 4th conv layer with a noise input (StyleGAN2 counting: 4x4, 8x8 conv0, conv1, 16x16 conv0)",
    "fourth-block": "the last 32x32 activation (the 4th synthesis block: 4, 8, 16, 32 px)",
}
"""The readings of the paper's "fourth layer" (see the module doc), accepted wherever a layer name is."""

DEFAULT_LAYER = "fourth-conv"
"""Default layer of ``transfer-attribute``: ``fourth-conv`` (``b16.conv1`` on the bundled generator). The paper
says the result "blends well in spite of the different alignment of the two faces"; on pairs of generated faces
(glasses, mouth) only the 16 × 16 layers do that: at ``fourth-row`` (8 × 8) B's attribute barely arrives (faint
glasses, the mouth unchanged) and at ``fourth-block`` (32 × 32) it arrives with B's skin colour and a visible seam
at the mask's edge, close to the naive copy-paste."""


# ---------------------------------------------------------------------------------------------------------------
# Layers


@dataclass(frozen=True)
class LayerInfo:
    """One named activation of the synthesis network (what ``capture=`` / ``edits=`` accept)."""

    index: int  # position in synthesis order
    name: str
    channels: int
    height: int
    width: int
    row: int | None  # W+ row whose style modulates the computation producing this activation (None: unknown)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


def layer_rows(generator: StyleGenerator) -> list[int | None]:
    """The W+ row driving each layer of ``generator.layer_names()`` (the generator interface says)."""
    return list(generator.layer_rows())


@torch.no_grad()
def layer_table(generator: StyleGenerator) -> list[LayerInfo]:
    """Every named layer with its activation shape [C, H, W] and W+ row, from one batch-1 forward pass.

    The shapes are recorded by identity edits rather than ``capture=``, so no activation is kept alive (at 1024 px
    the captured tensors would take about half a gigabyte).
    """
    names = generator.layer_names()
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str):
        def record(x: torch.Tensor) -> torch.Tensor:
            shapes[name] = tuple(x.shape[1:])
            return x

        return record

    generator.synthesis(generator.mean_ws(1), None, edits={name: recorder(name) for name in names})
    return [
        LayerInfo(i, name, *shapes[name], row=row) for i, (name, row) in enumerate(zip(names, layer_rows(generator)))
    ]


def resolve_layer(generator: StyleGenerator, name: str, table: Sequence[LayerInfo] | None = None) -> str:
    """A layer name, or an alias of :data:`LAYER_ALIASES` (see the module doc), as a layer name.

    Raises:
        InputError: unknown name, or the alias's resolution does not exist in this generator.
    """
    names = generator.layer_names()
    if name in names:
        return name
    if name in LAYER_ALIASES:
        if name == "fourth-conv":
            inputs = generator.noise_inputs
            if len(inputs) < 4:
                raise InputError(f"layer alias '{name}' means {LAYER_ALIASES[name]}; {generator.name} has fewer")
            return inputs[3].layer
        res = 8 if name == "fourth-row" else 32
        at_res = [info.name for info in (table or layer_table(generator)) if info.height == res]
        if not at_res:
            raise InputError(f"layer alias '{name}' means {LAYER_ALIASES[name]}; {generator.name} has none")
        return at_res[-1]
    raise InputError(
        f"unknown layer '{name}'; {generator.name} has {', '.join(names)} (or an alias: "
        f"{', '.join(LAYER_ALIASES)}); `i2s layers` lists them with their shapes"
    )


def parse_index_ranges(spec: str | Sequence[int], size: int, what: str) -> list[int]:
    """Parse ``"0-63,128-255"`` (inclusive ranges and single indices) into sorted unique indices in [0, size).

    A sequence of ints is validated and returned sorted. Used for channels (``--channels``) and W+ rows (``--rows``).

    Raises:
        InputError: malformed text, a reversed range, an index out of range, or nothing selected.
    """
    if isinstance(spec, str):
        out: set[int] = set()
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            lo, sep, hi = part.partition("-")
            try:
                first, last = int(lo), int(hi) if sep else int(lo)
            except ValueError:
                raise InputError(f"{what} '{spec}': '{part}' is not an index or a range like 0-63") from None
            if last < first:
                raise InputError(f"{what} '{spec}': range {part} runs backwards")
            out.update(range(first, last + 1))
        indices = sorted(out)
    else:
        indices = sorted({int(i) for i in spec})
    if not indices:
        raise InputError(f"{what} '{spec}' selects nothing")
    if indices[0] < 0 or indices[-1] >= size:
        raise InputError(f"{what} '{spec}' is out of range: valid indices are 0-{size - 1}")
    return indices


# ---------------------------------------------------------------------------------------------------------------
# The three operations (pure functions of the activations)


def layer_mask(mask: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """Image-space mask [B, 1, H, W] -> [B, 1, H_l, W_l] by nearest neighbour (Eq. 5), on the activation's device."""
    return resize_for_layer(mask.to(activation.device, activation.dtype), tuple(activation.shape[-2:]))


def _blend(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Eq. 5 with ``M_1 = M_2 = 1 − m``: ``(1 − m) ⊙ a + m ⊙ b`` (exactly ``a`` where m = 0, ``b`` where m = 1)."""
    return (1.0 - m) * a + m * b


def spatial_copy(a: torch.Tensor, b: torch.Tensor, mask_l: torch.Tensor) -> torch.Tensor:
    """B's 1 × 1 × C "pixels" inside ``mask_l`` [B or 1, 1, H_l, W_l] replace A's; a, b: [B, C, H_l, W_l]."""
    return _blend(a, b, mask_l)


def channel_copy(
    a: torch.Tensor, b: torch.Tensor, channels: Sequence[int], mask_l: torch.Tensor | None = None
) -> torch.Tensor:
    """The listed channels come from B (only inside ``mask_l`` if given), all others stay A's."""
    select = torch.zeros(1, a.shape[1], 1, 1, device=a.device, dtype=a.dtype)
    select[:, list(channels)] = 1.0
    return _blend(a, b, select if mask_l is None else select * mask_l)


def average(a: torch.Tensor, b: torch.Tensor, alpha: float, mask_l: torch.Tensor | None = None) -> torch.Tensor:
    """``α · A + (1 − α) · B`` (only inside ``mask_l`` if given; A outside). α = 1 returns A exactly."""
    mixed = alpha * a + (1.0 - alpha) * b
    return mixed if mask_l is None else _blend(a, mixed, mask_l)


@dataclass(frozen=True)
class ActivationOp:
    """Which Eq. 5 operation to apply: ``op`` in :data:`OPS`, ``channels`` (for "channel": indices or a spec like
    ``"0-63,128-255"``) and ``alpha`` (for "average": the weight of A)."""

    op: str = "spatial"
    channels: str | tuple[int, ...] | None = None
    alpha: float = setting(0.5, ALPHA, ALPHA_DOC)

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InputError(f"unknown activation operation '{self.op}'; choose one of {', '.join(OPS)}")
        if self.op == "channel" and self.channels is None:
            raise InputError("the channel operation needs channels, e.g. --channels 0-63,128-255")
        check_ranges(self)  # alpha, whatever the operation: a NaN is refused even where it would go unused


def combine(a: torch.Tensor, b: torch.Tensor, op: ActivationOp, mask_l: torch.Tensor | None) -> torch.Tensor:
    """Apply ``op`` to activations a (kept outside the mask), b (the source) [B, C, H_l, W_l]."""
    if op.op == "spatial":
        if mask_l is None:
            raise InputError("spatial copy needs a mask (--mask): it copies B's features inside it")
        return spatial_copy(a, b, mask_l)
    if op.op == "channel":
        return channel_copy(a, b, parse_index_ranges(op.channels, a.shape[1], "channels"), mask_l)
    return average(a, b, op.alpha, mask_l)


# ---------------------------------------------------------------------------------------------------------------
# Building the edit from two embeddings


@dataclass(frozen=True)
class ActivationEdit:
    """An Eq. 5 edit at one layer: ``edits`` is what ``generator.synthesis(..., edits=)`` takes."""

    layer: str
    tensor: torch.Tensor  # t [1, C_l, H_l, W_l]
    base: torch.Tensor  # A_l, the activation kept outside the mask
    source: torch.Tensor  # B_l
    mask_l: torch.Tensor | None  # [1, 1, H_l, W_l] (None: the whole tensor)

    @property
    def edits(self) -> dict[str, torch.Tensor]:
        return {self.layer: self.tensor}

    def change_stats(self) -> dict:
        """How much of the layer changed: fractions of elements inside / outside the mask, channels touched."""
        changed = self.tensor != self.base  # [1, C, H, W]
        stats = {"activation_changed_channels": int(changed.flatten(2).any(-1).sum())}
        if self.mask_l is None:
            stats["activation_changed_fraction"] = float(changed.float().mean())
            return stats
        inside = (self.mask_l > 0).expand_as(changed)
        for where, region in (("inside", inside), ("outside", ~inside)):
            fraction = float(changed[region].float().mean()) if region.any() else None
            stats[f"activation_changed_fraction_{where}_mask"] = fraction
        return stats


def _check_layer_mask(mask_l: torch.Tensor, layer: str) -> None:
    """A mask that selects no cell (or every cell) of the layer's grid after the nearest resize is a user error."""
    h, w = mask_l.shape[-2:]
    if not bool((mask_l >= 0.5).any()):
        raise InputError(
            f"the mask selects no cell of {layer}'s {h}x{w} grid (nearest-neighbour resize); "
            "draw a larger mask or pick a finer layer"
        )
    if bool((mask_l >= 0.5).all()):
        raise InputError(
            f"the mask covers every cell of {layer}'s {h}x{w} grid; leave part of it black, or drop --mask "
            "to edit the whole tensor with --op channel / average"
        )


def check_edit(
    generator: StyleGenerator, layer: str, op: ActivationOp, mask: torch.Tensor | None,
    table: Sequence[LayerInfo] | None = None,
) -> LayerInfo:
    """Validate an edit before any long work (embedding photos): the layer exists, the channels fit it, the mask
    is usable at its resolution. Returns the resolved layer's :class:`LayerInfo`.

    Raises:
        InputError: with a message naming what to change.
    """
    table = table or layer_table(generator)
    info = next(i for i in table if i.name == resolve_layer(generator, layer, table))
    if op.op == "channel":
        parse_index_ranges(op.channels, info.channels, f"channels of {info.name} ({info.channels})")
    if mask is not None:
        check_mask_content(mask, "edit")
        _check_layer_mask(resize_for_layer(mask, (info.height, info.width)), info.name)
    elif op.op == "spatial":
        raise InputError("spatial copy needs a mask (--mask) marking where B's features go")
    return info


@torch.no_grad()
def activation_at(generator: StyleGenerator, embedding: Embedding, layer: str) -> torch.Tensor:
    """The output [1, C_l, H_l, W_l] of ``layer`` when rendering ``embedding``."""
    ws, noise = embedding
    return generator.synthesis_trace(ws, noise, capture=[layer]).activations[layer]


def activation_edit(
    generator: StyleGenerator,
    base: Embedding,
    source: Embedding,
    layer: str,
    op: ActivationOp,
    mask: torch.Tensor | None = None,
) -> ActivationEdit:
    """Eq. 5's tensor ``t`` at ``layer`` from the renders of ``base`` (A) and ``source`` (B).

    Args:
        base, source: embeddings (ws [1, num_ws, w_dim], noise) of A and B.
        layer: a layer name (see :func:`resolve_layer`).
        mask: image-space [1, 1, H, W] in [0, 1], 1 where B's features go; resized to H_l × W_l by nearest
            neighbour. Required for "spatial", optional for "channel" and "average" (whole tensor).

    Raises:
        InputError: no mask for spatial copy, or the mask selects no cell (or every cell) of the layer's grid.
    """
    return make_edit(layer, activation_at(generator, base, layer), activation_at(generator, source, layer), op, mask)


def make_edit(
    layer: str, a: torch.Tensor, b: torch.Tensor, op: ActivationOp, mask: torch.Tensor | None = None
) -> ActivationEdit:
    """:func:`activation_edit` from activations already computed (e.g. captured while rendering A and B).

    Args:
        a, b: A_l and B_l [1, C_l, H_l, W_l]; mask: image-space [1, 1, H, W] or None.
    """
    mask_l = None
    if mask is not None:
        mask_l = layer_mask(mask, a)
        _check_layer_mask(mask_l, layer)
    return ActivationEdit(layer, combine(a, b, op, mask_l), a, b, mask_l)


# ---------------------------------------------------------------------------------------------------------------
# Attribute-level feature transfer (Sec. 8.5)


@dataclass(frozen=True)
class AttributeTransferSettings:
    """``I_att`` settings (Sec. 8.5, Eq. 5).

    * ``layer``: a layer name or an alias: ``fourth-conv`` (default, ``b16.conv1``, see :data:`DEFAULT_LAYER`),
      ``fourth-row`` (``b8.conv2``), ``fourth-block`` (``b32.conv2``);
    * ``op``: "spatial" (the paper's, default), "channel" (``channels`` from B) or "average" (``alpha`` · A +
      (1 − alpha) · B, alpha = 0.5 by default);
    * ``style_from``: "a" (the paper's choice: "the first image is chosen to provide the style") or "b": whose
      (w, n) drives the rest of the synthesis;
    * ``w_steps`` / ``noise_steps``: embedding budget for photos (Alg. 2 stages). The paper does not give one for
      this application; the preset's embedding budget, 100 + 200 by default (docs/algorithm.md#iterations);
      ``noise_space``, ``seed`` as in reconstruction.
    """

    layer: str = DEFAULT_LAYER
    op: str = "spatial"
    channels: str | None = None
    alpha: float = setting(0.5, ALPHA, ALPHA_DOC)
    style_from: str = "a"
    w_steps: int = w_steps_setting(100)
    noise_steps: int = noise_steps_setting(200)
    noise_space: str = noise_space_setting()
    seed: int = seed_setting()
    schedule: str = schedule_setting()
    STAGES_EMBED_PHOTOS: ClassVar[bool] = True  # its stages embed the two photos (apps.presets)

    def __post_init__(self) -> None:
        if self.style_from not in ("a", "b"):
            raise InputError(f"style must come from 'a' or 'b', got {self.style_from!r}")
        check_ranges(self)

    @property
    def activation_op(self) -> ActivationOp:
        return ActivationOp(self.op, self.channels, self.alpha)


def photo_embedding_recipe(photos: dict[str, torch.Tensor], settings: AttributeTransferSettings) -> Recipe:
    """Alg. 2 for each photo ([1, 3, H, W] in [-1, 1]) at the application's budget, one embedding per role
    (stages ``"A w_plus"``, ``"A noise"``, ...), each from the same seeded start."""
    stages: list = []
    for role, photo in photos.items():
        tag = role.upper()
        stages += [
            embedding_stage(photo, settings.w_steps, settings.schedule, name=f"{tag} w_plus", embedding=role),
            embedding_noise_stage(photo, settings.noise_steps, settings.schedule, noise_space=settings.noise_space,
                                  name=f"{tag} noise", embedding=role),
        ]
    return Recipe(tuple(stages), seed=settings.seed, application="transfer-attribute")


def attribute_transfer(generator: StyleGenerator, mask: torch.Tensor | None,
                       settings: AttributeTransferSettings = AttributeTransferSettings(), *, perceptual=None,
                       callback: Callback | None = None, **inputs) -> EditResult:
    """``I_att``: :func:`prepare_attribute_transfer` (``inputs``: its ``photos`` / ``embeddings``), then the engine."""
    return prepare_attribute_transfer(generator, mask, settings, **inputs).run(generator, perceptual, callback)


def prepare_attribute_transfer(
    generator: StyleGenerator,
    mask: torch.Tensor | None,
    settings: AttributeTransferSettings = AttributeTransferSettings(),
    *,
    photos: dict[str, torch.Tensor] | None = None,
    embeddings: dict[str, Embedding] | None = None,
) -> Plan:
    """``I_att``, ready to run: each of A and B is either a photo (embedded first, W+ then noise, in one recipe
    with an embedding per photo) or a given embedding; then :func:`transfer_attribute`.

    Args:
        photos: role ('a' / 'b') -> photo [1, 3, H, W]; embeddings: role -> (ws, noise). Each role appears in
            exactly one of them.

    Returns:
        a :class:`.plan.Plan` (its runs need the VGG16 loss when a photo is embedded); its result is the
        :class:`EditResult` of :func:`transfer_attribute`, with ``embeddings`` holding both roles' embeddings
        (``stopped`` when the embedding run was stopped: the edit then uses the embeddings reached so far).
    """
    photos, given = dict(photos or {}), dict(embeddings or {})
    if sorted([*photos, *given]) != ["a", "b"]:
        raise InputError("attribute transfer needs A and B, each as a photo or as an embedding")
    recipe = photo_embedding_recipe(photos, settings)

    def finish(run) -> EditResult:
        found = run.embeddings  # both roles (a photo the run was stopped before is its starting point)
        result = transfer_attribute(generator, found["a"], found["b"], mask, settings, photo_a=photos.get("a"),
                                    photo_b=photos.get("b"), history=run.history, stages=run.stages)
        return replace(result, embeddings={role: Embedding(*found[role]) for role in ("a", "b")},
                       recipe=recipe.summary(), stopped=run.stopped)

    return Plan(recipe, finish, {role: Embedding(*e) for role, e in given.items()} or None)


def masked_psnr(x: torch.Tensor, y: torch.Tensor, region: torch.Tensor) -> float | None:
    """PSNR (dB) of [1, 3, H, W] images over ``region`` [1, 1, H, W] (clamped to [-1, 1]); None if it is empty."""
    if not bool((region > 0).any()):
        return None
    return float(psnr(x.clamp(-1, 1), y.clamp(-1, 1), region)[0])


def transfer_attribute(
    generator: StyleGenerator,
    a: Embedding,
    b: Embedding,
    mask: torch.Tensor | None,
    settings: AttributeTransferSettings = AttributeTransferSettings(),
    *,
    photo_a: torch.Tensor | None = None,
    photo_b: torch.Tensor | None = None,
    history: list[StepInfo] | None = None,
    stages: list[StageOutcome] | None = None,
) -> EditResult:
    """``I_att``: copy B's features at one layer into A's (Eq. 5) and render with A's (or B's) style code.

    Args:
        a, b: embeddings of images A and B.
        mask: image-space [1, 1, H, W], 1 where B's attribute goes (binary; ``masks.resolve_mask``); required for
            "spatial", optional for "channel" / "average".
        photo_a, photo_b: the photos [1, 3, H, W] the embeddings came from, for the panel and the PSNR to A
            (None: the embeddings' renders stand in).
        history, stages: the embedding runs' logs, kept in the result for the curves.

    Returns:
        ``EditResult`` with ws/noise of the style image, ``edits = {layer: t}``, panel A | B | naive copy-paste |
        result, and metrics: the layer's shape and row, the fraction of the activation changed inside / outside the
        mask (0 outside for spatial copy, by construction), PSNR of the result vs A (its render, and its photo
        when given) outside the image-space mask and vs B's render inside it.
    """
    op = settings.activation_op
    layer = resolve_layer(generator, settings.layer)
    if mask is not None:
        check_mask_content(mask, "attribute")
    elif op.op == "spatial":
        raise InputError("spatial copy needs a mask (--mask) marking where B's attribute goes")
    ws, noise = a if settings.style_from == "a" else b
    with torch.no_grad():
        # One forward per input gives both its render and its activation at the layer.
        trace_a = generator.synthesis_trace(*a, capture=[layer])
        trace_b = generator.synthesis_trace(*b, capture=[layer])
        edit = make_edit(layer, trace_a.activations[layer], trace_b.activations[layer], op, mask)
        render_a, render_b = trace_a.image, trace_b.image
        result = generator.synthesis(ws, noise, edits=edit.edits)
    shown_a = render_a if photo_a is None else photo_a.to(render_a.device)
    shown_b = render_b if photo_b is None else photo_b.to(render_b.device)

    names = generator.layer_names()
    metrics: dict = {
        "layer": layer,
        "layer_alias": settings.layer if settings.layer != layer else None,
        "layer_shape": list(edit.tensor.shape[1:]),
        "layer_row": layer_rows(generator)[names.index(layer)],
        "op": op.op,
        "style_from": settings.style_from,
        **edit.change_stats(),
    }
    panel = [("A", shown_a[0]), ("B", shown_b[0])]
    if mask is not None:
        m = mask.to(result.device, result.dtype)
        metrics["psnr_outside_mask_vs_a_render_db"] = masked_psnr(result, render_a, 1.0 - m)
        metrics["psnr_inside_mask_vs_b_render_db"] = masked_psnr(result, render_b, m)
        if photo_a is not None:
            metrics["psnr_outside_mask_vs_a_photo_db"] = masked_psnr(result, shown_a, 1.0 - m)
        pasted_b = shown_b if op.op != "average" else op.alpha * shown_a + (1.0 - op.alpha) * shown_b
        panel.append(("naive copy-paste", copy_paste(pasted_b, shown_a, m)[0]))
    else:
        metrics["psnr_vs_a_render_db"] = masked_psnr(result, render_a, torch.ones_like(result[:, :1]))
    panel.append((f"{op.op} at {layer}", result[0]))
    return EditResult(
        ws=ws, noise=list(noise), panel=panel, metrics=metrics, history=list(history or []),
        stages=list(stages or []), edits=edit.edits, noise_space=noise_space_of(noise),
    )


__all__ = [
    "DEFAULT_LAYER",
    "LAYER_ALIASES",
    "OPS",
    "ActivationEdit",
    "ActivationOp",
    "AttributeTransferSettings",
    "Embedding",
    "LayerInfo",
    "activation_at",
    "activation_edit",
    "average",
    "channel_copy",
    "check_edit",
    "combine",
    "attribute_transfer",
    "layer_mask",
    "layer_rows",
    "layer_table",
    "make_edit",
    "masked_psnr",
    "photo_embedding_recipe",
    "prepare_attribute_transfer",
    "parse_index_ranges",
    "resolve_layer",
    "spatial_copy",
    "transfer_attribute",
]
