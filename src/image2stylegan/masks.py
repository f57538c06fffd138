"""Spatial masks for Image2StyleGAN++'s applications: presets, mask files, blurring, dilation, scribble masks.

Convention: a mask is a float32 tensor ``[B, 1, H, W]`` (usually ``B = 1``) in [0, 1], where 1 marks the region a
loss term or an edit applies to. Files and presets give *binary* masks; :func:`feather` and :func:`blend_mask` turn
them into the soft masks the paper blends with (Sec. 8.1-8.4; their sizes are our choice, see
docs/algorithm.md#feather-width and docs/algorithm.md#blend-mask-size):

* ``M_blur``  = :func:`feather` ``(M)``: "convolution of the binary mask with a Gaussian filter of suitable size"
  (crossover, local style transfer, scribble edits);
* ``M_blur+`` = :func:`blend_mask` ``(M)``: "the slightly larger blurred mask used for blending" (inpainting);
* activation-tensor edits (Eq. 5) downsample the hard mask by nearest neighbour: :func:`resize_for_layer`.

Soft masks are exact where the math is: a pixel whose whole blur footprint is 1 (or 0) is exactly 1 (or 0), and
every soft mask made here passes through :func:`snap_unit_interval` (values within 1e-6 of 0 or 1 become exactly 0
or 1). So ``1 − M`` is exactly 0 wherever ``M`` is 1, whatever the CPU, thread count or convolution kernel.

Every function works on whatever device and floating dtype the mask lives on; nothing here prints. Functions that
make user-visible changes issue one-line :class:`~image2stylegan.errors.Notice` warnings about them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from .errors import InputError, notice
from .io import _apply_exif_orientation, _open_decoded
from .losses import SNAP_TOLERANCE, resize_mask, snap_unit_interval

__all__ = [
    "PRESETS",
    "SNAP_TOLERANCE",
    "blend_mask",
    "check_mask_content",
    "difference_mask",
    "dilate",
    "feather",
    "gaussian_blur_mask",
    "load_mask",
    "preset_mask",
    "resize_for_layer",
    "resolve_mask",
    "snap_unit_interval",
]

PRESETS: tuple[str, ...] = ("left-half", "right-half", "top-half", "bottom-half", "center")
"""Names accepted by :func:`preset_mask`. Left/right and top/bottom pairs are exact complements (the "two-face"
crossover of Fig. 1d uses left/right); "center" is a centred square of half the side (an inpainting hole)."""

DEFAULT_FEATHER_FRACTION = 0.03
"""Gaussian σ of ``M_blur`` as a fraction of the image side: 3 %, σ ≈ 31 px at 1024². The paper only says "a
Gaussian filter of suitable size"; why 3 %, and that it is not tuned: docs/algorithm.md#feather-width."""

_THRESHOLD = 0.5
"""Binarisation level for mask files; also what :func:`check_mask_content` counts as "selected"."""

_GREY_NOTICE_FRACTION = 0.01
"""Mention thresholding only when this share of a file's pixels is clearly grey: anti-aliased or JPEG edges alone
stay below it, a pre-blurred mask does not."""

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------------------------------
# Validation helpers


def _check_size(size: int) -> None:
    # A programming error rather than user input, matching io.load_image.
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")


def _as_float_mask(mask: Tensor, what: str = "mask") -> Tensor:
    """Validate a ``[B, 1, H, W]`` mask and return it as floats (bool / uint8 masks are common)."""
    if not isinstance(mask, Tensor) or mask.dim() != 4 or mask.shape[1] != 1:
        shape = list(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise InputError(f"{what} must be a [B, 1, H, W] tensor, got {shape}")
    return mask if mask.is_floating_point() else mask.float()


def _check_fraction(value: float, setting: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{setting} must be a finite number >= 0 (a fraction of the image side), got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------------------------------
# Presets and files


def preset_mask(name: str, size: int, *, device: torch.device | str | None = None) -> Tensor:
    """A named binary mask ``[1, 1, size, size]`` (see :data:`PRESETS`).

    Halves split at ``size // 2``; "right-half" / "bottom-half" are defined as ``1 −`` their partner, so each pair
    sums to exactly 1 even for odd sizes. "center" is the centred square of side ``size // 2``.

    Raises:
        InputError: ``name`` is not a preset.
    """
    _check_size(size)
    if name not in PRESETS:
        raise InputError(f"unknown mask preset '{name}'; choose one of {', '.join(PRESETS)} or pass a mask file")
    mask = torch.zeros(1, 1, size, size, device=device)
    half = size // 2
    if name in ("left-half", "right-half"):
        mask[..., :half] = 1.0
    elif name in ("top-half", "bottom-half"):
        mask[..., :half, :] = 1.0
    else:
        start = (size - half) // 2
        mask[..., start : start + half, start : start + half] = 1.0
    if name in ("right-half", "bottom-half"):
        mask = 1.0 - mask
    return mask


def _to_gray(img: Image.Image, name: str) -> np.ndarray:
    """Reduce any Pillow mode to float32 ``[H, W]`` in [0, 1].

    Alpha wins when it varies: a region painted on a transparent layer is selected by its opacity, whatever its
    colour. A constant alpha (typically all-opaque) carries no shape, so luminance is used instead. 16-bit and float
    grayscale are read from their own buffers, as in :func:`image2stylegan.io.load_image`.
    """
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        # 'I' is how some Pillow versions open 16-bit PNGs; values are still 0..65535.
        return np.clip(np.asarray(img).astype(np.float32) / 65535.0, 0.0, 1.0)
    if mode == "F":
        gray = np.asarray(img).astype(np.float32)
        if not np.isfinite(gray).all():
            raise InputError(f"mask {name} contains NaN or infinite pixels; re-export it as a PNG")
        return np.clip(gray, 0.0, 1.0)

    bands = img.getbands()
    if "A" in bands or "a" in bands or "transparency" in img.info:
        try:
            rgba = img.convert("RGBA")
        except (ValueError, OSError) as exc:
            raise InputError(f"mask {name}: cannot convert colour mode {mode} ({exc}); re-export it as a PNG") from None
        alpha = np.asarray(rgba.getchannel("A"))
        if alpha.min() != alpha.max():
            notice(f"{name}: using its alpha channel as the mask (opaque = selected)")
            return alpha.astype(np.float32) / 255.0
        img = rgba.convert("RGB")
    try:
        # Via RGB so that every mode Pillow can show (CMYK, YCbCr, palettes, '1') reaches 'L' the same way.
        gray = img.convert("RGB").convert("L") if img.mode not in ("1", "L") else img.convert("L")
    except (ValueError, OSError) as exc:
        raise InputError(f"mask {name}: cannot convert colour mode {mode} ({exc}); re-export it as a PNG") from None
    return np.asarray(gray).astype(np.float32) / 255.0


def load_mask(path: PathLike, size: int) -> Tensor:
    """Load a mask file as a binary float32 ``[1, 1, size, size]`` tensor (1 where the file is white / opaque).

    Any format and mode Pillow reads: 1-bit, 8/16-bit and float grayscale, palette, RGB (luminance), RGBA/LA (alpha
    if it varies, else luminance). Geometry follows :func:`image2stylegan.io.load_image` exactly (EXIF orientation,
    centre crop to the largest square), so a mask drawn over a photo stays aligned with that photo. The grey levels
    are resized with antialiased bilinear interpolation *before* thresholding at 0.5, which keeps the boundary where
    the drawing put it instead of snapping it to the nearest source pixel. A pixel the resize puts exactly on 0.5
    (half covered) is selected; the comparison allows :data:`SNAP_TOLERANCE` of rounding, so that decision does not
    depend on the CPU's summation order.

    Each change made (orientation, crop, resize, alpha, grey values) is issued as a one-line
    :class:`~image2stylegan.errors.Notice` warning.

    Raises:
        InputError: the file is missing, not an image, truncated, or in an unusable mode.
    """
    _check_size(size)
    path = Path(path)
    name = path.name
    try:
        img = _open_decoded(path)
    except InputError as exc:
        raise InputError(f"mask: {exc}") from None
    try:
        if getattr(img, "n_frames", 1) > 1:
            notice(f"{name}: has {img.n_frames} frames; using the first")
        gray = _to_gray(_apply_exif_orientation(img, name), name)
    finally:
        img.close()

    height, width = gray.shape
    side = min(height, width)
    if height != width:
        top, left = (height - side) // 2, (width - side) // 2
        gray = gray[top : top + side, left : left + side]
        notice(f"{name}: {width}x{height} is not square; centre-cropped to {side}x{side}")

    grey_share = float(((gray > 0.1) & (gray < 0.9)).mean())
    if grey_share >= _GREY_NOTICE_FRACTION:
        notice(f"{name}: {grey_share:.0%} of pixels are grey; thresholded at 0.5 to a black/white mask")

    mask = torch.from_numpy(np.ascontiguousarray(gray)).view(1, 1, side, side)
    if side != size:
        mask = F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        notice(f"{name}: resized from {side}x{side} to {size}x{size}")
    return (mask >= _THRESHOLD - SNAP_TOLERANCE).float()


def resolve_mask(spec: str | PathLike, size: int) -> Tensor:
    """Turn a user's mask setting into a binary ``[1, 1, size, size]`` mask: a :data:`PRESETS` name or a file path
    (read by :func:`load_mask`, with its notices).

    Raises:
        InputError: ``spec`` is neither a preset nor an existing file, or the file is unusable.
    """
    if isinstance(spec, str) and spec in PRESETS:
        return preset_mask(spec, size)
    path = Path(spec).expanduser()
    if not path.exists():
        raise InputError(
            f"mask '{spec}' is neither a preset ({', '.join(PRESETS)}) nor an existing file; pass one of those"
        )
    return load_mask(path, size)


# --------------------------------------------------------------------------------------------------------------------
# Soft masks


def _gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Normalised 1-D Gaussian taps over ``[-r, r]`` with ``r = ceil(3σ)`` (99.7 % of the mass)."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    taps = torch.exp(-0.5 * (x / sigma) ** 2)
    return (taps / taps.sum()).to(dtype)


def gaussian_blur_mask(mask: Tensor, sigma: float) -> Tensor:
    """Blur a mask ``[B, 1, H, W]`` with a separable Gaussian of standard deviation ``sigma`` pixels.

    Borders are padded by replication: a region touching the image edge (a half-image preset) continues past it
    instead of fading towards an imaginary zero, and an all-ones mask stays all ones. Replication also works for
    kernels wider than the image, where reflection would not. The kernel sums to one, so outputs are convex
    combinations of inputs. Float rounding is removed by design, not left to the summation order of the
    convolution: a pixel whose whole ``(2r + 1)²`` footprint (``r = ceil(3σ)``) is 1 is set to exactly 1, one whose
    footprint is 0 to exactly 0, and the result goes through :func:`snap_unit_interval`. ``sigma == 0`` returns a
    snapped copy.

    Raises:
        InputError: ``sigma`` is negative or not finite.
    """
    mask = _as_float_mask(mask)
    if not math.isfinite(sigma) or sigma < 0:
        raise InputError(f"mask blur sigma must be a finite number of pixels >= 0, got {sigma!r}")
    if sigma == 0:
        return snap_unit_interval(mask)
    taps = _gaussian_kernel(sigma, mask.device, mask.dtype)
    radius = taps.numel() // 2
    padded = F.pad(mask, (radius, radius, radius, radius), mode="replicate")
    blurred = F.conv2d(padded, taps.view(1, 1, 1, -1))  # along W
    blurred = F.conv2d(blurred, taps.view(1, 1, -1, 1))  # along H
    # The float32 taps do not sum to exactly 1 and the convolution's summation order depends on the machine, so
    # the interior of a mask comes out as 0.99999994 on some CPUs. Where every input under the kernel is 1 (0), the
    # exact answer is 1 (0): find those pixels with a max filter over the kernel's square footprint (zero fill
    # outside the image matches replicate padding, whose values are already inside the footprint).
    batch = mask.shape[0]
    off = dilate(torch.cat([(mask < 1), (mask > 0)]).to(mask.dtype), radius, shape="square") == 0
    all_ones, all_zeros = off[:batch], off[batch:]
    return snap_unit_interval(blurred.masked_fill(all_ones, 1.0).masked_fill(all_zeros, 0.0))


def feather(mask: Tensor, fraction: float = DEFAULT_FEATHER_FRACTION) -> Tensor:
    """The paper's ``M_blur``: :func:`gaussian_blur_mask` with ``σ = fraction × side``.

    ``side`` is the larger of H and W (masks are square in practice). The default 0.03 is explained at
    :data:`DEFAULT_FEATHER_FRACTION`; ``fraction = 0`` leaves the mask hard. Exactly 1 far inside the region and
    exactly 0 far outside it (see :func:`gaussian_blur_mask`).
    """
    mask = _as_float_mask(mask)
    fraction = _check_fraction(fraction, "mask feather fraction")
    return gaussian_blur_mask(mask, fraction * max(mask.shape[-2:]))


def _shift(x: Tensor, offset: int, dim: int) -> Tensor:
    """``y[i] = x[i + offset]`` along ``dim``, zero where ``i + offset`` falls outside.

    Zero is the neutral element of a max over masks (values >= 0), i.e. nothing outside the image is selected.
    """
    n = x.shape[dim]
    if offset == 0:
        return x
    if abs(offset) >= n:
        return torch.zeros_like(x)
    fill_shape = list(x.shape)
    fill_shape[dim] = abs(offset)
    fill = x.new_zeros(fill_shape)
    if offset > 0:
        return torch.cat([x.narrow(dim, offset, n - offset), fill], dim)
    return torch.cat([fill, x.narrow(dim, 0, n + offset)], dim)


class _WindowMax:
    """Centred sliding-window maxima of any odd width along one dim, each in one ``torch.maximum`` call.

    A sparse table: ``levels[k][i] = max(x[i : i + 2^k])``. A window ``[i − a, i + a]`` is the union of two
    overlapping power-of-two windows, so a disk dilation needs O(log r) table levels plus O(r) cheap row queries
    instead of O(r²) comparisons per pixel with plain max-pooling. ``x`` is zero-padded by the largest half-width
    on both sides first, so every window query stays inside the table (and nothing outside the image counts).
    """

    def __init__(self, x: Tensor, dim: int, max_half_width: int) -> None:
        self.dim, self.pad, self.length = dim, max_half_width, x.shape[dim]
        fill_shape = list(x.shape)
        fill_shape[dim] = max_half_width
        fill = x.new_zeros(fill_shape)
        self.levels = [torch.cat([fill, x, fill], dim)]
        while 2 ** len(self.levels) <= 2 * max_half_width + 1:
            prev, step = self.levels[-1], 2 ** (len(self.levels) - 1)
            self.levels.append(torch.maximum(prev, _shift(prev, step, dim)))

    def __call__(self, half_width: int) -> Tensor:
        width = 2 * half_width + 1
        k = width.bit_length() - 1  # largest power of two <= width: two such windows cover the whole window
        table, start = self.levels[k], self.pad - half_width
        left = table.narrow(self.dim, start, self.length)
        right = table.narrow(self.dim, start + width - 2**k, self.length)
        return torch.maximum(left, right)


def dilate(mask: Tensor, pixels: int, shape: Literal["disk", "square"] = "disk") -> Tensor:
    """Grow a mask ``[B, 1, H, W]`` by ``pixels`` with a max filter over a disk (default) or a square.

    On a binary mask this is binary dilation: a single pixel becomes the disk ``dx² + dy² <= pixels²`` or the
    ``(2·pixels + 1)²`` square. Soft masks get grey-scale dilation (values stay in [0, 1]). Nothing wraps around the
    image border. The disk keeps the blend margin the same in every direction; the square is √2 wider at corners.

    Raises:
        InputError: ``pixels`` is not an int >= 0 or ``shape`` is unknown.
    """
    mask = _as_float_mask(mask)
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 0:
        raise InputError(f"mask dilation must be a whole number of pixels >= 0, got {pixels!r}")
    if shape not in ("disk", "square"):
        raise InputError(f"unknown dilation shape '{shape}'; use 'disk' or 'square'")
    if pixels == 0:
        return mask.clone()
    rows = _WindowMax(mask, dim=-1, max_half_width=pixels)
    if shape == "square":
        return _WindowMax(rows(pixels), dim=-2, max_half_width=pixels)(pixels)
    # Disk = union over row offsets dy of horizontal windows of half-width floor(sqrt(r² − dy²)) moved by ±dy.
    out = rows(pixels)
    for dy in range(1, min(pixels, mask.shape[-2] - 1) + 1):
        band = rows(math.isqrt(pixels * pixels - dy * dy))
        out = torch.maximum(out, torch.maximum(_shift(band, dy, -2), _shift(band, -dy, -2)))
    return out


def blend_mask(
    mask: Tensor,
    dilate_fraction: float | None = None,
    feather_fraction: float = DEFAULT_FEATHER_FRACTION,
) -> Tensor:
    """The paper's ``M_blur+``, "the slightly larger blurred mask used for blending" (inpainting, Alg. 4).

    The mask is dilated by ``dilate_fraction × side`` (disk), feathered with ``σ = feather_fraction × side``, and
    finally never allowed below the input mask. Why "larger": in the noise stage and the final composite, the hole
    must come entirely from the generator's prediction. A mask that is only blurred is 0.5 on the hole's edge, so
    the defective pixels would leak in. Dilating by 2σ (the default, ``dilate_fraction = 2 × feather_fraction``)
    puts ≥ 0.977 on a straight edge, and the final maximum makes it exactly 1 everywhere inside a binary hole
    (a jump of at most a few percent, invisible after blending). The result is snapped
    (:func:`snap_unit_interval`) like every soft mask.

    Args:
        mask: ``[B, 1, H, W]`` region to blend in (the inpainting hole), usually binary.
        dilate_fraction: growth as a fraction of the side; None = ``2 × feather_fraction``.
        feather_fraction: Gaussian σ as a fraction of the side.
    """
    mask = _as_float_mask(mask)
    feather_fraction = _check_fraction(feather_fraction, "blend-mask feather fraction")
    if dilate_fraction is None:
        dilate_fraction = 2.0 * feather_fraction
    dilate_fraction = _check_fraction(dilate_fraction, "blend-mask dilation fraction")
    side = max(mask.shape[-2:])
    grown = dilate(mask, round(dilate_fraction * side))
    return snap_unit_interval(torch.maximum(feather(grown, feather_fraction), mask))


# --------------------------------------------------------------------------------------------------------------------
# Masks derived from images, validation, resizing


def difference_mask(original: Tensor, edited: Tensor, threshold: float = 0.05) -> Tensor:
    """Binary mask ``[B, 1, H, W]`` of the pixels a user changed, e.g. by drawing scribbles (Sec. 8.3).

    A pixel is selected when any channel differs by more than ``threshold`` on the [0, 1] scale (0.05 ≈ 13 of 255
    grey levels). The images are ``[B, 3, H, W]`` in [-1, 1], hence the halving. Compare lossless copies: JPEG noise
    alone can exceed small thresholds.

    Raises:
        InputError: shapes differ or are not ``[B, 3, H, W]``, or ``threshold`` is outside (0, 1).
    """
    if original.dim() != 4 or original.shape[1] != 3 or original.shape != edited.shape:
        raise InputError(
            f"scribble images must both be [B, 3, H, W] of the same size, got {list(original.shape)} and "
            f"{list(edited.shape)}"
        )
    if not 0.0 < threshold < 1.0:
        raise InputError(f"scribble difference threshold must be in (0, 1) on the [0, 1] pixel scale, got {threshold}")
    change = (edited - original).abs().amax(dim=1, keepdim=True) * 0.5
    return (change > threshold).to(original.dtype if original.is_floating_point() else torch.float32)


def check_mask_content(mask: Tensor, what: str, allow_empty: bool = False, allow_full: bool = False) -> None:
    """Reject a mask whose content makes the requested operation meaningless.

    A pixel counts as selected when its value is >= 0.5, so soft masks are judged by the region they mainly cover.
    Typical calls: crossover checks both ``M`` and ``1 − M`` are non-empty; inpainting checks the hole is non-empty
    and not the whole image.

    Args:
        mask: ``[B, 1, H, W]``; every image of the batch is checked.
        what: the mask's role as the user knows it ("inpainting hole", "crossover"), first word of the message.
        allow_empty / allow_full: accept a mask that selects nothing / everything.

    Raises:
        InputError: ``<what> mask is empty: ...`` or ``<what> mask covers the whole image: ...``.
    """
    mask = _as_float_mask(mask, f"{what} mask")
    selected = (mask >= _THRESHOLD).flatten(1)
    for index, row in enumerate(selected):
        where = f" (batch item {index})" if selected.shape[0] > 1 else ""
        if not allow_empty and not bool(row.any()):
            raise InputError(
                f"{what} mask is empty{where}: nothing is selected; paint the region white (or opaque) in the mask "
                "file, or choose another preset"
            )
        if not allow_full and bool(row.all()):
            raise InputError(
                f"{what} mask covers the whole image{where}: nothing is left outside it; leave part of the mask "
                "black (or transparent)"
            )


def resize_for_layer(mask: Tensor, size: int | Sequence[int], mode: Literal["nearest", "area"] = "nearest") -> Tensor:
    """Resample a mask ``[B, 1, H, W]`` to an activation tensor's ``H_l × W_l`` (``size``: int or (h, w)).

    ``"nearest"`` is Eq. 5's nearest-neighbour downsampling: a hard mask stays hard, so each "high-dimensional
    pixel" is copied whole or not at all. It samples each output cell at its centre (PyTorch's ``nearest-exact``;
    plain ``nearest`` takes the cell's top-left corner and shifts centred masks up-left). ``"area"`` gives soft
    coverage fractions, via :func:`image2stylegan.losses.resize_mask` (the same resampling the masked losses use),
    snapped like every soft mask: a cell covered only by ones is exactly 1.
    """
    mask = _as_float_mask(mask)
    if mode == "area":
        return resize_mask(mask, size)
    if mode != "nearest":
        raise InputError(f"unknown mask resize mode '{mode}'; use 'nearest' or 'area'")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if (h, w) == tuple(mask.shape[-2:]):
        return mask
    return F.interpolate(mask, size=(h, w), mode="nearest-exact")
