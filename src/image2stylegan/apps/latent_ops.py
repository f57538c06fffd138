"""Local + global edits: Image2StyleGAN's W+ arithmetic on saved embeddings, optionally combined with a local
activation edit (Eq. 5) in the same render. Nothing is optimised; every result is one forward pass.

The global operations (Image2StyleGAN, ICCV 2019; docs/algorithm.md#local-and-global-edits):

* morphing: ``w = λ w1 + (1 − λ) w2``;
* style mixing ("style transfer" by layer crossover): the listed W+ rows come from w2, the rest from w1;
* expression transfer: ``w = w1 + λ (w3 − w2)``, with w2 a neutral and w3 an expressive image of one person.

Image2StyleGAN++ adds "local edits along with global semantic edits" (abstract; the recipe is not given, see
docs/algorithm.md#local-plus-global). Here: render the globally edited code, and at one layer replace its activation
inside a mask by another
embedding's (Eq. 5, via :mod:`.activations`). Outside the mask the global edit is untouched (bit for bit at that
layer); later layers run on the edited code, so the pasted features are re-rendered in its style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..generators.base import StyleGenerator
from ..masks import check_mask_content
from ..embed import Embedding
from .activations import (
    ALPHA_DOC,
    ActivationOp,
    LayerInfo,
    layer_rows,
    layer_table,
    make_edit,
    masked_psnr,
    parse_index_ranges,
    resolve_layer,
)
from .outputs import EditResult, copy_paste, noise_space_of
from .ranges import ALPHA, AMOUNT, check_ranges, setting

OPS = ("morph", "mix", "expression")
NOISE_MODES = ("a", "b", "follow")

ROW_PRESETS = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, None)}
"""StyleGAN's division of the styles by the resolution of the layer they drive (Karras et al. 2019, Sec. 3.1):
coarse 4²-8² (pose, face shape, glasses), middle 16²-32² (features, hair style, eyes), fine 64² and up (colour
scheme, micro-structure). ``--rows fine`` is Image2StyleGAN's style transfer (its 9/9 split of 18 rows gives the
second half, from 64 px on, to the style image)."""

DEFAULT_AMOUNT = {"morph": 0.5, "expression": 1.0}
"""λ when none is given: the morph's midpoint; 1.0 for expression transfer (docs/algorithm.md#edit-amounts),
i.e. A gets exactly the difference between C and B."""


# ---------------------------------------------------------------------------------------------------------------
# The operations (pure functions of W+ codes [B, num_ws, w_dim])


def morph(w1: torch.Tensor, w2: torch.Tensor, amount: float) -> torch.Tensor:
    """``λ w1 + (1 − λ) w2``; λ = 1 returns w1 exactly, λ = 0 w2. Works on noise maps too."""
    return amount * w1 + (1.0 - amount) * w2


def mix_rows(w1: torch.Tensor, w2: torch.Tensor, rows: Sequence[int]) -> torch.Tensor:
    """A copy of w1 whose ``rows`` are w2's (style mixing / layer crossover)."""
    out = w1.clone()
    out[:, list(rows)] = w2[:, list(rows)]
    return out


def expression(w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor, amount: float) -> torch.Tensor:
    """``w1 + λ (w3 − w2)``: add the change from w2 to w3 (e.g. neutral -> smiling) to w1; λ = 0 returns w1."""
    return w1 + amount * (w3 - w2)


def resolve_rows(generator: StyleGenerator, spec: str | Sequence[int], table: Sequence[LayerInfo] | None = None
                 ) -> list[int]:
    """W+ rows from a preset of :data:`ROW_PRESETS` (by the resolution of the layer each row drives), a spec like
    ``"9-22"`` / ``"0,3,5-7"``, or a list of ints.

    Raises:
        InputError: malformed or out-of-range rows, or a preset on a generator whose rows are not mapped to layers.
    """
    if isinstance(spec, str) and spec in ROW_PRESETS:
        low, high = ROW_PRESETS[spec]
        rows = sorted(
            info.row for info in (table or layer_table(generator))
            if info.row is not None and info.height >= low and (high is None or info.height <= high)
        )
        if not rows:
            raise InputError(f"--rows {spec}: {generator.name} has no W+ row driving a layer of that resolution")
        return rows
    return parse_index_ranges(spec, generator.num_ws, "W+ rows")


def noise_rows(generator: StyleGenerator) -> list[int | None]:
    """The W+ row of the layer each noise input feeds (so style mixing can take the noise along with the style)."""
    names = generator.layer_names()
    rows = layer_rows(generator)
    return [rows[names.index(spec.layer)] for spec in generator.noise_inputs]


# ---------------------------------------------------------------------------------------------------------------
# The application


@dataclass(frozen=True)
class LatentEditSettings:
    """Settings of :func:`latent_edit`.

    * ``op``: "morph" (``amount`` · A + (1 − amount) · B), "mix" (``rows`` from B, the rest A's) or "expression"
      (A + ``amount`` · (C − B));
    * ``amount``: λ; None = :data:`DEFAULT_AMOUNT` (0.5 for morph, 1.0 for expression); unused by "mix";
    * ``rows``: for "mix": a preset (coarse, middle, fine; default "fine" = Image2StyleGAN's style transfer) or a
      spec like ``"9-22"``;
    * ``noise``: "a" (default: the edited image keeps A's noise, so its fine detail stays put), "b", or "follow"
      (treated like w: interpolated for morph, taken with the rows for mix; interpolating two N(0, 1) maps lowers
      their variance, softening detail mid-morph). Expression transfer always keeps A's noise;
    * ``layer`` (None: no local edit), ``activation_op`` / ``channels`` / ``alpha``: the optional local edit
      (Eq. 5, see :class:`ActivationOp`) applied to the globally edited render at that layer.
    """

    op: str = "morph"
    amount: float | None = setting(None, AMOUNT, "lambda of morph / expression transfer; unset = 0.5 for morph, "
                                   "1 for expression", optional=True)
    rows: str = "fine"
    noise: str = "a"
    layer: str | None = None
    activation_op: str = "spatial"
    channels: str | None = None
    alpha: float = setting(0.5, ALPHA, ALPHA_DOC)

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.op not in OPS:
            raise InputError(f"unknown latent operation '{self.op}'; choose one of {', '.join(OPS)}")
        if self.noise not in NOISE_MODES:
            raise InputError(f"unknown noise mode '{self.noise}'; choose one of {', '.join(NOISE_MODES)}")
        if self.op == "expression" and self.noise == "follow":
            raise InputError("expression transfer keeps A's noise; --noise follow applies to morph and mix only")

    @property
    def lam(self) -> float | None:
        return DEFAULT_AMOUNT.get(self.op) if self.amount is None else float(self.amount)


def global_edit(
    generator: StyleGenerator,
    a: Embedding,
    b: Embedding,
    c: Embedding | None,
    settings: LatentEditSettings,
) -> tuple[torch.Tensor, list[torch.Tensor], dict]:
    """The W+ operation alone: (ws [1, num_ws, w_dim], noise maps, metrics)."""
    (wa, na), (wb, nb) = a, b
    lam = settings.lam
    info: dict = {"op": settings.op, "amount": lam, "noise": settings.noise}
    noise = list(nb) if settings.noise == "b" else list(na)
    if settings.op == "morph":
        ws = morph(wa, wb, lam)
        if settings.noise == "follow":
            noise = [morph(x, y, lam) for x, y in zip(na, nb)]
    elif settings.op == "mix":
        rows = resolve_rows(generator, settings.rows)
        ws = mix_rows(wa, wb, rows)
        info["rows_from_b"] = rows
        if settings.noise == "follow":
            noise = [y if r in rows else x for x, y, r in zip(na, nb, noise_rows(generator))]
    else:
        if c is None:
            raise InputError("expression transfer needs three latents: A (to edit), B (neutral) and C (expressive)")
        ws = expression(wa, wb, c[0], lam)
    info["rows_changed"] = [int(r) for r in (ws != wa).flatten(2).any(-1)[0].nonzero().flatten()]
    info["w_distance_from_a"] = float((ws - wa).norm())
    info["w_distance_from_b"] = float((ws - wb).norm())
    return ws, noise, info


def latent_edit(
    generator: StyleGenerator,
    a: Embedding,
    b: Embedding,
    c: Embedding | None = None,
    settings: LatentEditSettings = LatentEditSettings(),
    *,
    mask: torch.Tensor | None = None,
    activation_source: Embedding | None = None,
) -> EditResult:
    """A global W+ edit of A (with B, and C for expression), optionally with a local Eq. 5 edit in the same render.

    Args:
        a, b, c: embeddings (ws [1, num_ws, w_dim], noise maps) of A, B and (expression transfer) C.
        mask: image-space [1, 1, H, W], 1 where the local edit pastes ``activation_source``'s features (needed for
            a spatial local edit; optional for channel / average).
        activation_source: whose activation is pasted at ``settings.layer`` (default B).

    Returns:
        ``EditResult`` with ws / noise = the edited code, ``edits`` = the local edit (if any), panel A | B | (C) |
        (source | global edit | naive copy-paste) | result, metrics: the rows changed, the distance of the edited
        code from A and B, and for a local edit the layer's change fractions and the PSNR of the result vs the
        global edit alone outside the mask.
    """
    ws, noise, metrics = global_edit(generator, a, b, c, settings)
    layer = None if settings.layer is None else resolve_layer(generator, settings.layer)
    source = b if activation_source is None else activation_source
    capture = [] if layer is None else [layer]
    with torch.no_grad():
        # One forward per image gives both its render and (for a local edit) its activation at the layer.
        traces = [generator.synthesis_trace(*e, capture=capture) for e in (a, b, c) if e is not None]
        renders = [t.image for t in traces]
        global_trace = generator.synthesis_trace(ws, noise, capture=capture)
        global_image = global_trace.image
    panel = list(zip(("A", "B", "C"), (r[0] for r in renders)))
    lam = metrics["amount"]
    # ASCII labels: the panel font may lack λ, · and −.
    label = {"morph": lambda: f"morph {lam:g}*A + {1 - lam:g}*B", "mix": lambda: f"mix: rows {settings.rows} from B",
             "expression": lambda: f"A + {lam:g}*(C - B)"}[settings.op]()
    edits: dict = {}
    result_image = global_image
    if layer is not None:
        op = ActivationOp(settings.activation_op, settings.channels, settings.alpha)
        if mask is not None:
            check_mask_content(mask, "local edit")
        elif op.op == "spatial":
            raise InputError("a spatial local edit needs --mask (where the source's features go)")
        with torch.no_grad():
            if activation_source is None:
                source_trace = traces[1]
            else:
                source_trace = generator.synthesis_trace(*source, capture=capture)
            source_image = source_trace.image
            edit = make_edit(layer, global_trace.activations[layer], source_trace.activations[layer], op, mask)
            edits = edit.edits
            result_image = generator.synthesis(ws, noise, edits=edits)
        metrics.update({"layer": layer, "layer_alias": settings.layer if settings.layer != layer else None,
                        "activation_op": op.op, **edit.change_stats()})
        if activation_source is not None:
            panel.append(("activation source", source_image[0]))
        panel.append((label, global_image[0]))
        if mask is not None:
            m = mask.to(result_image.device, result_image.dtype)
            metrics["psnr_outside_mask_vs_global_edit_db"] = masked_psnr(result_image, global_image, 1.0 - m)
            metrics["psnr_inside_mask_vs_source_db"] = masked_psnr(result_image, source_image, m)
            panel.append(("naive copy-paste", copy_paste(source_image, global_image, m)[0]))
        label = f"{label} + {op.op} at {layer}"
    panel.append((label, result_image[0]))
    return EditResult(ws=ws, noise=noise, panel=panel, metrics=metrics, edits=edits, noise_space=noise_space_of(noise))


__all__ = [
    "DEFAULT_AMOUNT",
    "NOISE_MODES",
    "OPS",
    "ROW_PRESETS",
    "LatentEditSettings",
    "expression",
    "global_edit",
    "latent_edit",
    "mix_rows",
    "morph",
    "noise_rows",
    "resolve_rows",
]
