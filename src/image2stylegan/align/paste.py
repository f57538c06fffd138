"""Paste-back ("un-align"): put an edited aligned face back into the original photo at its original resolution.

The aligned image is warped into the photo with the inverse of the alignment's similarity transform
(:class:`~image2stylegan.align.ffhq.AlignTransform`) and blended through a feathered mask: the aligned square's
interior, eroded by ``erode`` and ramped up over ``feather`` (both as fractions of the square's side), so no seam
shows where the generator's background meets the photo's. Pixels where the mask is exactly 0 (everything outside the
eroded square, and anything the optional extra ``mask`` excludes) keep the photo's bytes unchanged.

The warp is bilinear onto a grid up to 4x finer than the photo's, then Lanczos down onto the photo grid, so a face
that is smaller in the photo than in the aligned image (the usual case) is neither aliased nor blurred twice. All
resampling runs on float channels (Pillow mode ``F``) and is rounded to uint8 once, after blending.

Coordinates: pixel-centre ``(x, y)``, as everywhere in :mod:`image2stylegan.align`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import InputError, Notice
from ..io import atomic_write, tensor_to_uint8
from .ffhq import AlignTransform
from .photo import as_rgb_uint8, load_photo

__all__ = ["paste_back", "paste_back_to_file", "paste_mask"]

_SAVE_FORMATS = {".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95})}


def _region(transform: AlignTransform) -> tuple[int, int, int, int]:
    """Photo pixel box ``(x0, y0, x1, y1)`` (half-open, clipped to the photo) holding every pixel the quad touches."""
    q = np.asarray(transform.quad)
    width, height = transform.photo_size
    x0, y0 = np.floor(q.min(0) - 1).astype(int)
    x1, y1 = np.ceil(q.max(0) + 2).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def _square_coords(transform: AlignTransform, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """For each photo pixel of ``box``: its position in the aligned square as fractions ``(u, v)`` of the side,
    0 at the square's left / top outer edge, 1 at the right / bottom one. float64 ``[h, w]`` each."""
    x0, y0, x1, y1 = box
    xs, ys = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
    a = transform.to_aligned(np.stack([xs, ys], axis=-1), size=1)  # centre coords in a square of side 1
    return a[..., 0] + 0.5, a[..., 1] + 0.5


def _supersampling(transform: AlignTransform, side: int) -> int:
    """Integer factor k (1..4) for the warp's intermediate grid: about one aligned pixel per grid cell when the face
    is smaller in the photo than in the aligned image, so the bilinear step interpolates instead of skipping pixels."""
    q = np.asarray(transform.quad)
    quad_side = max(float(np.hypot(*(q[3] - q[0]))), 1e-6)
    return int(min(max(np.ceil(side / quad_side), 1), 4))


def _warp_channels(channels: np.ndarray, transform: AlignTransform, box: tuple[int, int, int, int]) -> np.ndarray:
    """Warp float32 ``[S, S, C]`` aligned channels onto the photo pixels of ``box`` -> float32 ``[h, w, C]``.

    Bilinear onto a grid k times finer than the photo's (:func:`_supersampling`), then Lanczos down by k onto the
    photo grid exactly (an integer factor keeps the grids aligned). Against a bilinear warp straight onto the photo
    grid this gains ~3.7 dB in the unedited round trip of the astronaut test photo (34.0 -> 37.7 dB).

    Pillow's AFFINE maps output *edge* coordinates to input edge coordinates: fine-grid edge position ``(X, Y)``
    is photo centre ``(x0 + X / k - 0.5, y0 + Y / k - 0.5)``, which the inverse similarity takes to aligned centre
    coordinates, + 0.5 for edges.
    """
    x0, y0, x1, y1 = box
    side = channels.shape[0]
    k = _supersampling(transform, side)
    inv = transform.photo_to_aligned_matrix(side)
    lin, shift = inv[:2, :2], inv[:2, 2]
    offset = lin @ np.array([x0 - 0.5, y0 - 0.5]) + shift + 0.5
    data = (lin[0, 0] / k, lin[0, 1] / k, offset[0], lin[1, 0] / k, lin[1, 1] / k, offset[1])
    out = []
    for c in range(channels.shape[2]):
        fine = Image.fromarray(np.ascontiguousarray(channels[:, :, c])).transform(
            ((x1 - x0) * k, (y1 - y0) * k), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR
        )
        if k > 1:
            fine = fine.resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
        out.append(np.asarray(fine))
    return np.stack(out, axis=2)


def paste_mask(
    transform: AlignTransform, *, erode: float = 0.02, feather: float = 0.08, mask: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The blending weights of :func:`paste_back`, on the photo pixels near the face.

    Args:
        transform: the alignment.
        erode: fraction of the aligned square's side cut off each edge before the ramp starts.
        feather: width of the smooth (smoothstep) ramp from 0 to 1, as a fraction of the side; 0 = hard edge.
        mask: optional extra weights in aligned coordinates, float ``[S', S']`` in [0, 1] (any square size),
            multiplied in (e.g. to paste back only the edited region).

    Returns:
        ``(weights, box)``: float32 ``[y1 - y0, x1 - x0]`` in [0, 1] for the photo pixels of ``box`` =
        ``(x0, y0, x1, y1)`` (half-open, inside the photo); every photo pixel outside ``box`` has weight 0.
    """
    if not (0 <= erode < 0.5 and 0 <= feather and erode + feather <= 0.5):
        raise InputError(f"need 0 <= erode < 0.5, feather >= 0 and erode + feather <= 0.5 (got {erode}, {feather})")
    box = _region(transform)
    if box[2] <= box[0] or box[3] <= box[1]:
        return np.zeros((max(box[3] - box[1], 0), max(box[2] - box[0], 0)), np.float32), box
    u, v = _square_coords(transform, box)
    dist = np.minimum(np.minimum(u, 1.0 - u), np.minimum(v, 1.0 - v))  # to the square's nearest edge; < 0 outside
    if feather > 0:
        t = np.clip((dist - erode) / feather, 0.0, 1.0)
        weights = t * t * (3.0 - 2.0 * t)  # smoothstep: no visible kink where the ramp starts or ends
    else:
        weights = (dist > erode).astype(np.float64)
    if mask is not None:
        m = np.asarray(mask, dtype=np.float32)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise InputError(f"paste-back mask must be a square [S, S] array, got {list(m.shape)}")
        warped = _warp_channels(np.clip(m, 0, 1)[:, :, None], transform, box)[..., 0]
        weights = weights * np.clip(warped, 0.0, 1.0)
    return weights.astype(np.float32), box


def paste_back(
    photo: np.ndarray | Image.Image,
    aligned: np.ndarray | Image.Image | torch.Tensor,
    transform: AlignTransform,
    *,
    erode: float = 0.02,
    feather: float = 0.08,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Warp ``aligned`` back into ``photo`` with a feathered mask.

    Args:
        photo: the original photo, uint8 ``[H, W, 3]`` (or Pillow), the size recorded in ``transform``.
        aligned: the (edited) aligned face: uint8 ``[S, S, 3]``, Pillow, or an image tensor in [-1, 1]
            (``[3, S, S]`` / ``[1, 3, S, S]``). Any square size: the transform is scale-free.
        transform: from :func:`~image2stylegan.align.ffhq.align_face` (or ``AlignTransform.from_dict`` of saved
            metadata).
        erode, feather, mask: see :func:`paste_mask`.

    Returns:
        A new uint8 ``[H, W, 3]`` photo; pixels with mask weight 0 are byte-identical to ``photo``.

    Raises:
        InputError: the photo's size differs from the transform's, or ``aligned`` is not square.
    """
    base = as_rgb_uint8(photo, "photo")
    face = tensor_to_uint8(aligned) if isinstance(aligned, torch.Tensor) else as_rgb_uint8(aligned, "aligned image")
    height, width = base.shape[:2]
    if (width, height) != tuple(transform.photo_size):
        raise InputError(
            f"the photo is {width}x{height} but the alignment was made on a "
            f"{transform.photo_size[0]}x{transform.photo_size[1]} photo; pass the original photo"
        )
    if face.shape[0] != face.shape[1]:
        raise InputError(f"the aligned image must be square, got {face.shape[1]}x{face.shape[0]}")
    weights, (x0, y0, x1, y1) = paste_mask(transform, erode=erode, feather=feather, mask=mask)
    result = base.copy()
    inside = weights > 0
    if not inside.any():
        return result
    warped = _warp_channels(face.astype(np.float32), transform, (x0, y0, x1, y1))
    region = base[y0:y1, x0:x1].astype(np.float32)
    w = weights[:, :, None]
    blended = np.clip(np.rint(region + (warped - region) * w), 0, 255).astype(np.uint8)
    result[y0:y1, x0:x1][inside] = blended[inside]
    return result


def paste_back_to_file(
    out_path: str | os.PathLike[str],
    photo: str | os.PathLike[str] | np.ndarray,
    aligned: np.ndarray | Image.Image | torch.Tensor | str | os.PathLike[str],
    transform: AlignTransform | dict[str, Any],
    **options: Any,
) -> np.ndarray:
    """:func:`paste_back` from files or arrays, written atomically to ``out_path`` (``.png``, ``.jpg``, ``.jpeg``).

    ``photo`` / ``aligned`` may be paths (the photo is read with :func:`~.photo.load_photo`, EXIF orientation
    applied, as when it was aligned); ``transform`` may be the dict stored in an output's metadata.
    Returns the pasted photo.
    """
    out_path = Path(out_path)
    fmt = _SAVE_FORMATS.get(out_path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot save {out_path}: unsupported image extension {out_path.suffix!r}; use .png or .jpg")
    if not isinstance(transform, AlignTransform):
        transform = AlignTransform.from_dict(transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)  # what reading them changes was said when the photo was aligned
        if isinstance(photo, str | os.PathLike):
            photo = load_photo(photo)
        if isinstance(aligned, str | os.PathLike):
            aligned = load_photo(aligned)
    result = paste_back(photo, aligned, transform, **options)
    pil = Image.fromarray(result)
    atomic_write(out_path, lambda handle: pil.save(handle, format=fmt[0], **fmt[1]))
    return result
