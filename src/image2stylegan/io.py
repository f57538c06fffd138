"""Reading images into tensors, and writing every output file atomically.

Image tensors follow the package convention: float32 ``[B, 3, H, W]`` in ``[-1, 1]``.

Every writer here goes through :func:`atomic_open`: bytes land in a temporary file
next to the destination, are fsynced, then ``os.replace``-d over it. A crash or an
exception mid-write therefore never leaves a truncated PNG / npz / json behind that a
later run might mistake for a finished result.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from image2stylegan.errors import InputError, notice

__all__ = [
    "atomic_open",
    "atomic_save_npz",
    "atomic_save_png",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "ensure_outdir",
    "load_image",
    "max_pixels",
    "save_image",
    "tensor_to_uint8",
]

PathLike = str | os.PathLike

# Exceptions Pillow raises for files it cannot parse or that end early. SyntaxError is
# what some plugins (PNG chunk parsing) raise for corrupt data; EOFError for short reads.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

_EXIF_ORIENTATION_TAG = 0x0112

# The largest picture any reader here decodes (load_image, load_mask, the --align photo reader), in pixels.
DEFAULT_MAX_PIXELS = 40_000_000
MAX_PIXELS_ENV = "I2S_MAX_PIXELS"
_PILLOW_BOMB_SIZE = re.compile(r"Image size \((\d+) pixels\)")

# Save formats chosen from the destination's extension (see save_image).
_SAVE_FORMATS = {".png": ("PNG", {}), ".jpg": ("JPEG", {"quality": 95}), ".jpeg": ("JPEG", {"quality": 95})}


# --------------------------------------------------------------------------- atomic writes


def _current_umask() -> int:
    """The process umask, read without changing it.

    ``os.umask`` can only be read by setting it, which races with other threads creating
    files, so read Linux's /proc instead and fall back to the common default elsewhere.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def fsync_directory(directory: Path) -> None:
    """Persist a rename in ``directory`` (best effort: not every OS lets you open a folder)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: PathLike) -> Iterator[IO[bytes]]:
    """Open a binary file that appears at ``path`` only if the ``with`` block succeeds.

    The temporary file lives in the destination directory so the final ``os.replace``
    is a same-filesystem rename (atomic on POSIX and Windows). On any exception the
    temporary file is deleted, ``path`` is left untouched, and the exception propagates.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write(path: PathLike, write_fn: Callable[[IO[bytes]], Any]) -> None:
    """Call ``write_fn(binary_file)`` and publish the result at ``path`` atomically."""
    with atomic_open(path) as handle:
        write_fn(handle)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(data))


def _json_default(obj: Any) -> Any:
    """Make numpy / torch scalars and arrays, and paths, JSON-serialisable."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _finite_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (numpy's and torch's included) replaced by None.

    Python's json writes those as bare ``NaN`` / ``Infinity``, which is not JSON: browsers, ``jq`` and most other
    readers refuse the whole file. A metric that cannot be computed (e.g. a PSNR over an empty region, a loss
    that diverged) is recorded as ``null``, meaning "no value", rather than failing the save of a finished run.
    """
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {key: _finite_json(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_json(value) for value in obj]
    if isinstance(obj, np.generic | np.ndarray | torch.Tensor):
        return _finite_json(_json_default(obj))
    return obj


def atomic_write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as strict JSON (sorted keys, indent 2, trailing newline) atomically.

    numpy scalars/arrays, torch tensors and paths are converted to plain Python values; NaN and infinities become
    ``null`` (see :func:`_finite_json`), so the file is valid JSON for every reader.
    """
    text = json.dumps(_finite_json(obj), sort_keys=True, indent=2, default=_json_default, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npz(path: PathLike, **arrays: Any) -> None:
    """Save ``arrays`` as an uncompressed ``.npz`` at exactly ``path`` (no suffix added)."""
    atomic_write(path, lambda handle: np.savez(handle, **arrays))


def _as_uint8_hwc(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """Accept a uint8 ``[H, W, 3]`` array/tensor or a float image tensor in [-1, 1]."""
    if isinstance(image, torch.Tensor):
        if image.dtype == torch.uint8:
            image = image.detach().cpu().numpy()
        else:
            return tensor_to_uint8(image)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {array.dtype} {list(array.shape)}")
    return array


def atomic_save_png(path: PathLike, image: np.ndarray | torch.Tensor) -> None:
    """Save a uint8 ``[H, W, 3]`` array (or an image tensor in [-1, 1]) as PNG atomically."""
    pil = Image.fromarray(_as_uint8_hwc(image))
    atomic_write(path, lambda handle: pil.save(handle, format="PNG"))


def ensure_outdir(path: PathLike) -> Path:
    """Create the output folder (parents too) and prove it is writable.

    Permission bits are not trusted (root ignores them, network mounts lie), so a real
    temporary file is created and removed.

    Raises:
        InputError: the folder cannot be created or written to.
    """
    out = Path(path).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".write-probe-") as probe:
            probe.write(b"ok")
    except FileExistsError:
        raise InputError(f"cannot write to output folder {out}: it exists and is not a folder") from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InputError(f"cannot write to output folder {out}: {reason}") from None
    return out


# --------------------------------------------------------------------------- reading images


def max_pixels() -> int:
    """The largest image, in pixels (width x height), that :func:`load_image`, :func:`~image2stylegan.masks.load_mask`
    and :func:`~image2stylegan.align.photo.load_photo` read: 40 megapixels unless the environment variable
    ``I2S_MAX_PIXELS`` gives another whole number (e.g. ``I2S_MAX_PIXELS=100000000`` for 100 megapixels). The size
    is checked from the file's header, before any pixel is decoded. Pillow's own decompression-bomb limit (about
    179 megapixels) still applies above that.

    Raises:
        InputError: ``I2S_MAX_PIXELS`` is set to something that is not a positive whole number.
    """
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"{MAX_PIXELS_ENV}={raw!r} is not a positive whole number of pixels (e.g. 40000000)")
    return value


def _megapixels(pixels: int) -> str:
    megapixels = pixels / 1e6
    return (f"{megapixels:,.0f}" if megapixels >= 100 else f"{megapixels:.3g}") + " megapixels"


def _too_large(path: Path, size: str, limit: int) -> InputError:
    return InputError(
        f"{path} is {size}, over the limit of {_megapixels(limit)}; downscale it, or raise the limit with {MAX_PIXELS_ENV}"
    )


def _open_decoded(path: Path) -> Image.Image:
    """Open and fully decode ``path`` so that truncation surfaces here, not later.

    The picture's size is read from the header first and checked against :func:`max_pixels`, so an oversized (or
    hostile) file is refused before memory is reserved for its pixels.
    """
    if not path.exists():
        raise InputError(f"image file {path} does not exist; check the path")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image file; pass a PNG or JPEG file")
    limit = max_pixels()
    with warnings.catch_warnings():
        # Our own limit (below) replaces Pillow's decompression-bomb warning; its hard error is reported as ours.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except UnidentifiedImageError:
            raise InputError(f"{path} is not an image Pillow can read; pass a PNG or JPEG file") from None
        except Image.DecompressionBombError as exc:
            # Pillow refuses twice Image.MAX_IMAGE_PIXELS (about 179 megapixels) in open(), before our own check.
            found = _PILLOW_BOMB_SIZE.search(str(exc))
            size = _megapixels(int(found.group(1))) if found else "too large"
            pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            if limit < pillow_limit:
                raise _too_large(path, size, limit) from None
            raise InputError(
                f"{path} is {size}, over Pillow's limit of {_megapixels(pillow_limit)}; downscale it"
            ) from None
        except _DECODE_ERRORS as exc:
            raise InputError(f"cannot open image {path}: {_one_line(exc)}") from None
        width, height = img.size
        if width < 1 or height < 1:
            img.close()
            raise InputError(f"{path} is an empty image ({width}x{height}); pass a PNG or JPEG file")
        if width * height > limit:
            img.close()
            raise _too_large(path, f"{width}x{height} ({_megapixels(width * height)})", limit)
        try:
            img.load()
        except _DECODE_ERRORS as exc:
            img.close()
            raise InputError(f"{path} is damaged or truncated ({_one_line(exc)}); re-export or re-download it") from None
        except MemoryError:
            img.close()
            raise InputError(f"{path}: not enough memory to decode its {width}x{height} pixels") from None
    return img


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (some decoders' messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _apply_exif_orientation(img: Image.Image, name: str) -> Image.Image:
    """Rotate/flip as the camera's EXIF orientation tag says, so the subject is upright (with a notice)."""
    try:
        orientation = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except _DECODE_ERRORS:
        notice(f"{name}: EXIF data is unreadable; using the pixels as stored")
        return img
    if orientation in (None, 1):
        return img
    rotated = ImageOps.exif_transpose(img)
    notice(f"{name}: applied EXIF orientation {orientation}")
    return rotated


def _composite_on_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend ``[H, W, C]`` colours in [0, 1] over white using ``[H, W]`` alpha in [0, 1].

    Generators know nothing of transparency; white matches how viewers show most
    cut-out product/portrait PNGs, where black would invent a dark background.
    """
    a = alpha[..., None]
    return color * a + (1.0 - a)


def _to_rgb_float(img: Image.Image, name: str) -> np.ndarray:
    """Convert any Pillow mode to float32 ``[H, W, 3]`` RGB in [0, 1].

    High-bit-depth modes are read directly from their integer/float buffers so no
    precision is lost to an 8-bit conversion; everything else goes through Pillow's own
    conversions (CMYK, YCbCr, palettes, 1-bit, ...). Transparency is composited on white (with a notice).
    """
    mode = img.mode
    if mode.startswith("I;16"):
        # I;16 / I;16B / I;16L: Pillow's asarray honours the byte order.
        gray = np.asarray(img).astype(np.float32) / 65535.0
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "I":
        # Pillow opens 16-bit PNGs as 'I' on some versions: the values are still 0..65535.
        gray = np.clip(np.asarray(img).astype(np.float32) / 65535.0, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.asarray(img).astype(np.float32)
        if not np.isfinite(gray).all():
            raise InputError(f"{name} contains NaN or infinite pixels; re-export it as PNG or JPEG")
        if gray.min() < 0.0 or gray.max() > 1.0:
            notice(f"{name}: float pixels outside [0, 1] were clipped")
        gray = np.clip(gray, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)

    has_alpha = "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info
    try:
        converted = img.convert("RGBA" if has_alpha else "RGB")
    except (ValueError, OSError) as exc:
        raise InputError(f"{name}: cannot convert colour mode {mode} to RGB ({exc}); re-export as RGB") from None
    pixels = np.asarray(converted).astype(np.float32) / 255.0
    if not has_alpha:
        return pixels
    alpha = pixels[..., 3]
    if (alpha < 1.0).any():
        notice(f"{name}: has transparency; composited onto white")
    return _composite_on_white(pixels[..., :3], alpha)


def _resize_channels(rgb: np.ndarray, size: int) -> np.ndarray:
    """Lanczos-resize float ``[H, W, 3]`` to ``[size, size, 3]`` without 8-bit rounding.

    Each channel goes through Pillow's 32-bit float ('F') mode, which keeps 16-bit
    sources' precision. Lanczos rings slightly past the input range, hence the clip.
    """
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(rgb[..., c])).resize((size, size), Image.Resampling.LANCZOS))
        for c in range(3)
    ]
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0)


def load_image(path: PathLike, size: int) -> torch.Tensor:
    """Load an image file as a ``[1, 3, size, size]`` float32 tensor in [-1, 1].

    Steps: decode fully (truncated files fail here), apply EXIF orientation, convert to RGB
    (grayscale, palette, CMYK, 16-bit and float grayscale; alpha composited onto white),
    centre-crop to the largest square, Lanczos-resize to ``size``.

    Args:
        path: image file.
        size: output side length in pixels (the generator's resolution).

    Each change made to the picture (crop, resize, orientation, transparency) is issued as a one-line
    :class:`~image2stylegan.errors.Notice` warning (:func:`image2stylegan.errors.notice`).

    Raises:
        InputError: the file is missing, not an image, larger than :func:`max_pixels` (40 megapixels unless
            ``I2S_MAX_PIXELS`` says otherwise; checked from the header, before decoding), truncated or in an unusable
            mode.
    """
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    path = Path(path)
    name = path.name

    img = _open_decoded(path)
    try:
        if getattr(img, "n_frames", 1) > 1:
            notice(f"{name}: has {img.n_frames} frames; using the first")
        rgb = _to_rgb_float(_apply_exif_orientation(img, name), name)
    finally:
        img.close()  # multi-frame formats keep the file handle open after load()

    height, width = rgb.shape[:2]
    side = min(height, width)
    if height != width:
        top, left = (height - side) // 2, (width - side) // 2
        rgb = rgb[top : top + side, left : left + side]
        notice(f"{name}: {width}x{height} is not square; centre-cropped to {side}x{side}")
    if side != size:
        rgb = _resize_channels(rgb, size)
        notice(f"{name}: resized from {side}x{side} to {size}x{size}")

    tensor = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)
    return (tensor * 2.0 - 1.0).unsqueeze(0).contiguous()


# --------------------------------------------------------------------------- writing images


def tensor_to_uint8(img: torch.Tensor) -> np.ndarray:
    """Quantise an image tensor ``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1] to uint8 ``[H, W, 3]``.

    ``round((x + 1) * 127.5)`` clamped to [0, 255]: the exact inverse of
    :func:`load_image`'s ``v / 255 * 2 - 1`` for 8-bit ``v``, so save -> load -> save is
    bit-exact. NaNs (a diverged optimisation) become black rather than undefined bytes.
    """
    if img.ndim == 4:
        if img.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {img.shape[0]}")
        img = img[0]
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"expected an image tensor [3, H, W] or [1, 3, H, W], got {list(img.shape)}")
    scaled = (img.detach().to("cpu", torch.float32) + 1.0) * 127.5
    scaled = torch.nan_to_num(scaled, nan=0.0).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def save_image(path: PathLike, tensor: torch.Tensor) -> None:
    """Save an image tensor (``[3, H, W]`` or ``[1, 3, H, W]`` in [-1, 1]) atomically.

    The format follows the extension: ``.png`` (lossless; use it for anything that will be
    re-loaded) or ``.jpg``/``.jpeg`` (quality 95).

    Raises:
        InputError: the extension is not one of the above.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _SAVE_FORMATS:
        raise InputError(f"cannot save {path}: unsupported image extension '{path.suffix}'; use .png or .jpg")
    fmt, options = _SAVE_FORMATS[suffix]
    pil = Image.fromarray(tensor_to_uint8(tensor))
    atomic_write(path, lambda handle: pil.save(handle, format=fmt, **options))
