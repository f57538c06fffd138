"""Photos as the alignment code sees them: uint8 ``[H, W, 3]`` RGB arrays at their full, original resolution.

:func:`image2stylegan.io.load_image` crops and resizes for the generator; alignment and paste-back instead need the
untouched photo (EXIF orientation applied, converted to RGB), because landmarks, the alignment transform and the
pasted-back result all live in its pixel grid.

Coordinates throughout :mod:`image2stylegan.align` are ``(x, y)`` = (column, row), in *pixel-centre* convention:
the centre of pixel ``array[i, j]`` is at ``(x, y) = (j, i)``, so the image spans ``[-0.5, W - 0.5]``. Pillow's
transforms use *edge* coordinates (pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``); the conversion (+0.5) is
made explicitly wherever Pillow is called.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import InputError, notice
from ..io import _apply_exif_orientation, _open_decoded, _to_rgb_float

__all__ = ["as_rgb_uint8", "load_photo"]


def as_rgb_uint8(image: np.ndarray | Image.Image, name: str = "image") -> np.ndarray:
    """A photo as a C-contiguous uint8 ``[H, W, 3]`` RGB array.

    Accepts a Pillow image (any mode; transparency is dropped, not composited) or a uint8 numpy array
    ``[H, W]`` (grey), ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` (alpha dropped). Arrays of other dtypes are refused
    rather than guessed at (a float array could be in [0, 1], [0, 255] or [-1, 1]).

    Raises:
        InputError: an unsupported type, dtype or shape, or an empty image.
    """
    if isinstance(image, Image.Image):
        array = np.asarray(image.convert("RGB"))
    else:
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise InputError(f"{name}: expected a uint8 image array, got dtype {array.dtype}")
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        elif array.ndim == 3 and array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        elif array.ndim == 3 and array.shape[2] == 4:
            array = array[:, :, :3]
        elif not (array.ndim == 3 and array.shape[2] == 3):
            raise InputError(f"{name}: expected an [H, W], [H, W, 3] or [H, W, 4] image, got shape {list(array.shape)}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(f"{name}: the image is empty ({array.shape[1]}x{array.shape[0]})")
    return np.ascontiguousarray(array)


def load_photo(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a photo at full resolution as uint8 ``[H, W, 3]`` RGB, upright (EXIF orientation applied).

    Uses the same decoding as :func:`image2stylegan.io.load_image` (truncated files fail here; grey, palette, CMYK
    and 16-bit images are converted; transparency is composited onto white) but neither crops nor resizes. For an
    8-bit RGB file the array holds exactly the file's pixel values, so paste-back leaves everything outside the face
    byte-identical to it.

    Each change (orientation, transparency, bit depth) is issued as a one-line
    :class:`~image2stylegan.errors.Notice` warning.

    Raises:
        InputError: missing, unreadable or truncated file.
    """
    path = Path(path)
    img = _open_decoded(path)
    try:
        if getattr(img, "n_frames", 1) > 1:
            notice(f"{path.name}: has {img.n_frames} frames; using the first")
        mode = img.mode
        rgb = _to_rgb_float(_apply_exif_orientation(img, path.name), path.name)
    finally:
        img.close()
    if mode.startswith("I") or mode == "F":
        notice(f"{path.name}: {mode} pixels reduced to 8 bits per channel")
    return np.ascontiguousarray(np.rint(rgb * 255.0).astype(np.uint8))
