"""The terms of Image2StyleGAN++'s masked embedding objective (Eq. 1); the engine (:mod:`image2stylegan.embed`) sums
them as each recipe stage says (:class:`image2stylegan.recipe.TargetTerm`).

    L = λ_s · L_style(M_s, G(w, n), y)
      + λ_mse1 / N · ‖M_m ⊙ (G(w, n) − x)‖²
      + λ_mse2 / N · ‖(1 − M_m) ⊙ (G(w, n) − y)‖²
      + λ_p · L_percept(M_p, G(w, n), x)                                                             (Eq. 1)

Conventions shared by every function here:

* images are float [B, 3, H, W] in [-1, 1] (the generator's range); masks are float [B or 1, 1, H, W] in [0, 1],
  1 where the term applies; arguments come as (synthesized, target, ...);
* each loss returns a per-image tensor [B]; callers sum over the batch, so one image's gradient does not depend on
  how many other images share the batch;
* a term is normalised by the number of scalars N of the *whole* image or feature map, never by the mask area.
  An all-ones mask therefore reproduces the unmasked loss exactly, and a masked-out pixel contributes exactly zero
  (value and gradient) to the pixel terms.

On the λ's: the paper's 1e-5 weights were tuned for a pixel range it does not state. Adam's update is invariant to
a constant rescaling of the loss (up to its ε), so only the *ratios* matter for Adam: the defaults λ_mse1 = λ_p = 1
reproduce the paper's 1e-5 : 1e-5. Absolute scale matters only for plain gradient descent and when gradients
approach Adam's ε (docs/algorithm.md#loss-scale).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError
from .vgg import VGG16Features

__all__ = [
    "I2SPP_PERCEPTUAL_LAYERS",
    "I2S_PERCEPTUAL_LAYERS",
    "NORMALIZED_PERCEPTUAL_LAYERS",
    "STYLE_LAYER",
    "PerceptualLoss",
    "gram_distance",
    "gram_matrix",
    "masked_mse",
    "masked_perceptual",
    "masked_style_loss",
    "normalized_perceptual",
    "unit_normalize",
    "resize_mask",
    "snap_unit_interval",
]

I2SPP_PERCEPTUAL_LAYERS: tuple[str, ...] = ("relu1_1", "relu1_2", "relu2_2", "relu3_3")
"""The I2S++ perceptual layers "conv1_1, conv1_2, conv2_2, conv3_3", taken after their ReLU
(docs/algorithm.md#vgg-taps)."""

I2S_PERCEPTUAL_LAYERS: tuple[str, ...] = ("relu1_1", "relu1_2", "relu3_2", "relu4_2")
"""The predecessor Image2StyleGAN's layers (conv1_1, conv1_2, conv3_2, conv4_2), post-ReLU; for ablations."""

STYLE_LAYER = "relu3_3"
"""The style loss layer, the paper's "conv3_3", post-ReLU."""

FeatureDict = Mapping[str, Tensor]


# --------------------------------------------------------------------------------------------------------------------
# Validation helpers


def _check_images(synth: Tensor, target: Tensor) -> None:
    if synth.dim() != 4 or target.dim() != 4 or synth.shape[1:] != target.shape[1:]:
        raise InputError(
            f"expected [B, C, H, W] tensors of equal C, H, W; got {list(synth.shape)} and {list(target.shape)}"
        )
    if target.shape[0] not in (1, synth.shape[0]):
        raise InputError(f"target batch {target.shape[0]} must be 1 or match the synthesized batch {synth.shape[0]}")


def _check_mask(mask: Tensor, like: Tensor, *, same_size: bool = True) -> Tensor:
    """Validate a [B or 1, 1, H, W] mask against ``like`` [B, C, H, W]; return it in ``like``'s dtype/device."""
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, like.shape[0]):
        raise InputError(f"mask must be [1 or {like.shape[0]}, 1, H, W], got {list(mask.shape)}")
    if same_size and mask.shape[-2:] != like.shape[-2:]:
        raise InputError(f"mask size {list(mask.shape[-2:])} differs from image size {list(like.shape[-2:])}")
    return mask.to(device=like.device, dtype=like.dtype)


# --------------------------------------------------------------------------------------------------------------------
# Pixel term


def masked_mse(synth: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Masked squared error of Eq. 1: ``sum(M ⊙ (synth − target)²) / N`` with N = C·H·W.

    Measured on the [-1, 1] pixel scale.

    Args:
        synth: [B, C, H, W] synthesized images.
        target: [B or 1, C, H, W] target images.
        mask: [B or 1, 1, H, W] weights in [0, 1] (broadcast over channels); None means all ones.

    Returns:
        [B] per-image loss. Masked-out pixels receive exactly zero gradient.
    """
    _check_images(synth, target)
    sq = (synth - target).square()
    if mask is not None:
        sq = sq * _check_mask(mask, synth)
    # mean over C, H, W is sum / N with the full-image N, whatever the mask.
    return sq.mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------------------------------------------------
# Feature terms


SNAP_TOLERANCE = 1e-6
"""Mask values within this distance of 0 or 1 are made exactly 0 or 1 by :func:`snap_unit_interval`."""


def snap_unit_interval(mask: Tensor, tolerance: float = SNAP_TOLERANCE) -> Tensor:
    """Clamp a soft mask to [0, 1] and make values within ``tolerance`` of 0 or 1 exactly 0 or 1 (a new tensor).

    Where the math says a mask is exactly 0 or 1 (a blurred mask far from an edge, an area average of ones), float
    arithmetic gives values such as 0.99999994 or 6e-8, and which one depends on the CPU, the thread count and the
    kernel's summation order. Every soft mask this package makes passes through here, so that "exactly 1" (and
    ``1 − M`` exactly 0, a masked-out pixel with exactly zero weight and gradient) holds by construction on every
    machine. The change is at most ``tolerance``, far below anything visible or measurable in a loss.
    """
    out = mask.clamp(0.0, 1.0)
    return out.masked_fill(out <= tolerance, 0.0).masked_fill(out >= 1.0 - tolerance, 1.0)


def resize_mask(mask: Tensor, size: int | Sequence[int]) -> Tensor:
    """Resample a mask [B, 1, H, W] to ``size`` (an int or (h, w)), keeping its values in [0, 1].

    Shrinking uses area averaging, so a feature cell gets the fraction of its footprint that is masked in (the
    paper "downsamples M_p to match the resolutions of the corresponding VGG-16 layers"); growing is bilinear.
    Both are convex combinations of input values, hence stay in [0, 1]; the result is passed through
    :func:`snap_unit_interval`, so cells covered only by ones (zeros) are exactly 1 (0) whatever the rounding of
    the average. A mask already at ``size`` is returned as it is.
    """
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise InputError(f"mask must be [B, 1, H, W], got {list(mask.shape)}")
    if not mask.is_floating_point():
        mask = mask.float()  # interpolation needs floats; bool/uint8 masks are common
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if tuple(mask.shape[-2:]) == (h, w):
        return mask
    if h <= mask.shape[-2] and w <= mask.shape[-1]:
        return snap_unit_interval(F.interpolate(mask, size=(h, w), mode="area"))
    return snap_unit_interval(F.interpolate(mask, size=(h, w), mode="bilinear", align_corners=False))


def masked_perceptual(
    feats_synth: FeatureDict,
    feats_target: FeatureDict,
    mask: Tensor | None = None,
    layer_weights: Mapping[str, float] | None = None,
) -> Tensor:
    """Masked perceptual loss: ``Σ_j λ_j · sum(M_j ⊙ (F_j(synth) − F_j(target))²) / N_j``.

    Args:
        feats_synth: ``{layer: [B, C_j, H_j, W_j]}``; every layer present here is used.
        feats_target: the same layers, batch B or 1 (e.g. precomputed once by :meth:`PerceptualLoss.precompute`).
        mask: [B or 1, 1, H, W] at any resolution; resized to each layer's H_j x W_j with :func:`resize_mask`.
        layer_weights: λ_j per layer name (missing layers weigh 1).

    Returns:
        [B]. N_j = C_j·H_j·W_j, the size of the whole feature map. Unlike :func:`masked_mse`, masked-out pixels can
        still receive gradient here, through the receptive fields of features whose cells are partly masked in.
    """
    return _feature_distance(feats_synth, feats_target, mask, layer_weights or {}, None, "masked_perceptual")


def _feature_distance(feats_synth: FeatureDict, feats_target: FeatureDict, mask: Tensor | None,
                      weights: Mapping[str, float], transform, caller: str) -> Tensor:
    """``Σ_j λ_j · sum(M_j ⊙ (t(F_j(synth)) − t(F_j(target)))²) / N_j`` over the layers of ``feats_synth``, t the
    ``transform`` (None: identity): the body of both perceptual terms."""
    if not feats_synth:
        raise InputError(f"no feature maps given to {caller}")
    total: Tensor | None = None
    for name, fs in feats_synth.items():
        if name not in feats_target:
            raise InputError(f"target features lack layer {name!r}")
        ft = feats_target[name]
        _check_images(fs, ft)
        sq = (fs - ft).square() if transform is None else (transform(fs) - transform(ft)).square()
        if mask is not None:
            sq = sq * resize_mask(_check_mask(mask, fs, same_size=False), fs.shape[-2:])
        term = weights.get(name, 1.0) * sq.mean(dim=(1, 2, 3))
        total = term if total is None else total + term
    assert total is not None
    return total


NORMALIZED_PERCEPTUAL_LAYERS: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
"""The layers of :func:`normalized_perceptual`: LPIPS's five VGG16 taps, down to the semantic relu5_3."""


def unit_normalize(features: Tensor) -> Tensor:
    """Scale each spatial position's channel vector [B, C, H, W] to unit L2 norm (LPIPS's normalisation).

    ``rsqrt(Σ f² + 1e-20)`` equals ``f / (‖f‖ + 1e-10)`` to float precision but, unlike ``sqrt``, has a finite
    gradient at an all-zero position (common after the deep ReLUs).
    """
    return features * torch.rsqrt(features.square().sum(dim=1, keepdim=True) + 1e-20)


def normalized_perceptual(feats_synth: FeatureDict, feats_target: FeatureDict, mask: Tensor | None = None) -> Tensor:
    """Unit-normalised feature distance (the 'fast' schedule's perceptual term; beyond the paper):
    ``Σ_j sum(M_j ⊙ ‖f̂_j(synth) − f̂_j(target)‖²) / (C_j·H_j·W_j)``, f̂ the channel vector at each position scaled to
    unit length (:func:`unit_normalize`).

    The form of LPIPS with every channel weighted equally instead of LPIPS's learned weights. Normalising makes each
    layer's term lie in [0, 4/C_j] whatever the scale of its activations, so the deep layers (relu4_3, relu5_3: what
    is where) count as much as the shallow ones (edges, colours), and the term's scale does not depend on the image.
    The paper's :func:`masked_perceptual` on raw conv1–conv3 activations is dominated by the shallow layers'
    magnitudes and limits the usable learning rate (docs/algorithm.md#perceptual-term-of-the-fast-schedule).

    Args:
        feats_synth: ``{layer: [B, C_j, H_j, W_j]}``; every layer present here is used.
        feats_target: the same layers, batch B or 1, raw (not normalised).
        mask: [B or 1, 1, H, W] at any resolution, resized to each layer with :func:`resize_mask`.

    Returns:
        [B].
    """
    return _feature_distance(feats_synth, feats_target, mask, {}, unit_normalize, "normalized_perceptual")


def gram_matrix(features: Tensor, mask: Tensor | None = None, *, area_normalized: bool = False) -> Tensor:
    """Gatys et al.'s Gram matrix of (masked) features: ``G = F Fᵀ / (C·H·W)``, F = (M ⊙ features) as [B, C, H·W].

    The paper leaves the normalisation and the way the mask enters open. Here the features are multiplied by the
    mask (resized to the feature map) and divided by the full C·H·W, in line with Eq. 1's other terms
    (docs/algorithm.md#gram-matrix).

    Caveat: with full-map normalisation a mask covering a fraction a of the map scales G by about a, so Grams of
    regions of *different* areas are not directly comparable. ``area_normalized=True`` divides by C·sum(M) instead
    (the Gram of the region's own statistics), which suits transferring a whole image's style into a small region.

    Args:
        features: [B, C, H, W].
        mask: [B or 1, 1, h, w] in [0, 1], any resolution; None means all ones.
        area_normalized: divide by C·sum(M_resized) instead of C·H·W.

    Returns:
        [B, C, C].
    """
    if features.dim() != 4:
        raise InputError(f"expected features [B, C, H, W], got {list(features.shape)}")
    b, c, h, w = features.shape
    denom: Tensor | float = c * h * w
    if mask is not None:
        m = resize_mask(_check_mask(mask, features, same_size=False), (h, w))
        features = features * m
        if area_normalized:
            # clamp: an empty mask gives an all-zero Gram instead of 0/0.
            denom = (c * m.sum(dim=(1, 2, 3))).clamp_min(1e-8).view(-1, 1, 1)
    flat = features.reshape(b, c, h * w)
    return flat @ flat.transpose(1, 2) / denom


def gram_distance(gram_synth: Tensor, gram_target: Tensor) -> Tensor:
    """Mean squared difference of Gram matrices [B, C, C] (target batch B or 1) -> [B]."""
    return (gram_synth - gram_target).square().mean(dim=(1, 2))


def masked_style_loss(
    feats_synth: FeatureDict,
    feats_target: FeatureDict,
    mask_synth: Tensor | None = None,
    mask_target: Tensor | None = None,
    *,
    layer: str = STYLE_LAYER,
    area_normalized: bool = False,
) -> Tensor:
    """Style term of Eq. 1: mean squared difference of the Gram matrices of one layer (default the paper's conv3_3).

    Args:
        feats_synth: ``{layer: [B, C, H, W]}`` of the synthesized images (other keys ignored).
        feats_target: ``{layer: [B or 1, C, H, W]}`` of the style image y.
        mask_synth: M_s, the region of the synthesized image whose style is matched; None means everywhere.
        mask_target: region of y the style is taken from; None means all of y.
        layer: feature layer name.
        area_normalized: see :func:`gram_matrix`.

    Returns:
        [B] ``mean_{c,c'} (G_synth − G_target)²``.
    """
    for feats, which in ((feats_synth, "synthesized"), (feats_target, "target")):
        if layer not in feats:
            raise InputError(f"{which} features lack the style layer {layer!r}")
    g_synth = gram_matrix(feats_synth[layer], mask_synth, area_normalized=area_normalized)
    g_target = gram_matrix(feats_target[layer], mask_target, area_normalized=area_normalized)
    return gram_distance(g_synth, g_target)


# --------------------------------------------------------------------------------------------------------------------
# Modules


class PerceptualLoss(nn.Module):
    """Masked VGG16 perceptual loss (:func:`masked_perceptual`) with a fixed layer list.

    The embedding loop compares thousands of synthesized images with one target, so the target's features can be
    computed once with :meth:`precompute` and passed to :meth:`forward` in place of the target image.

    Args:
        vgg: a (frozen) :class:`VGG16Features`, typically ``VGG16Features.from_file()``.
        layers: feature layers; default the I2S++ set (conv1_1, conv1_2, conv2_2, conv3_3, post-ReLU).
        layer_weights: λ_j per layer (default 1 each).
    """

    def __init__(
        self,
        vgg: VGG16Features,
        layers: Sequence[str] = I2SPP_PERCEPTUAL_LAYERS,
        layer_weights: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.vgg = vgg
        self.layers = tuple(layers)
        if not self.layers:
            raise InputError("PerceptualLoss needs at least one layer")
        for name in self.layers:
            vgg.layer_index(name)  # fail at construction, not on the first forward
        self.layer_weights = dict(layer_weights or {})
        if unknown := set(self.layer_weights) - set(self.layers):
            raise InputError(f"layer_weights name layers not in use: {sorted(unknown)}")

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str] | None = None, *, input_size: int | None = 256, **kwargs: Any
    ) -> PerceptualLoss:
        """Build on ImageNet VGG16 weights (``path`` None: looked up with ``find_file``); kwargs go to __init__."""
        return cls(VGG16Features.from_file(path, input_size=input_size), **kwargs)

    def features(self, images: Tensor) -> dict[str, Tensor]:
        """``{layer: [B, C_j, H_j, W_j]}`` of images [B, 3, H, W] in [-1, 1], differentiable w.r.t. the images."""
        return self.vgg(images, self.layers)

    @torch.no_grad()
    def precompute(self, target: Tensor) -> dict[str, Tensor]:
        """Target features to reuse across iterations (no autograd graph kept)."""
        return self.features(target)

    def forward(self, synth: Tensor, target: Tensor | FeatureDict, mask: Tensor | None = None) -> Tensor:
        """Perceptual loss [B] of synth [B, 3, H, W] against a target image [B or 1, 3, H, W] or its
        :meth:`precompute`-d features; mask [B or 1, 1, h, w] at any resolution."""
        target_feats = self.precompute(target) if isinstance(target, Tensor) else target
        return masked_perceptual(self.features(synth), target_feats, mask, self.layer_weights)
