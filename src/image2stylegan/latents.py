"""The ``latent.npz`` file: an embedding (W+ code and noise maps) plus where it came from.

Layout (every entry a plain numpy array, so ``np.load(path, allow_pickle=False)`` reads it):

* ``w``: float32 ``[1, num_ws, w_dim]``, the W+ code. Same key and shape as NVIDIA's
  projector output (``projected_w.npz``), so those files load here unchanged.
* ``noise_00``, ``noise_01``, ...: float32 ``[1, C, H, W]`` noise maps in synthesis order
  (optional; missing trailing maps are rendered with zero noise, see :func:`complete_noise`).
* ``generator``, ``weights_sha256``: 0-d unicode arrays naming the generator the code
  belongs to (optional).
* ``format_version``: 0-d int array, currently 1.
* anything passed as ``extra`` (e.g. ``noise_space``): 0-d arrays of str/int/float/bool.
"""

from __future__ import annotations

import math
import os
import re
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from image2stylegan.errors import InputError, notice
from image2stylegan.io import atomic_save_npz

__all__ = ["FORMAT_VERSION", "LatentFile", "complete_noise", "load_latent", "save_latent"]

FORMAT_VERSION = 1

_NOISE_KEY = re.compile(r"noise_(\d+)")
_RESERVED = ("w", "generator", "weights_sha256", "format_version")
_EDIT_PREFIX = "edit:"  # activation edits: "edit:<layer name>" holds the replacement tensor [1, C, H, W]

PathLike = str | os.PathLike


@dataclass(frozen=True)
class LatentFile:
    """Contents of a ``latent.npz``.

    Attributes:
        w: float32 ``[1, num_ws, w_dim]``.
        noise: float32 ``[1, C, H, W]`` maps in synthesis order; may be empty or cover
            only the first layers.
        generator_name: generator the code was fitted with, if recorded.
        weights_sha256: SHA-256 of that generator's weights file, if recorded.
        meta: every other entry (``format_version``, ``noise_space``, ...) as Python values;
            non-scalar extras stay numpy arrays.
        edits: activation edits to apply when rendering (layer name -> replacement tensor), as written by the
            activation-tensor applications; empty for plain embeddings.
    """

    w: torch.Tensor
    noise: list[torch.Tensor] = field(default_factory=list)
    generator_name: str | None = None
    weights_sha256: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    edits: dict[str, torch.Tensor] = field(default_factory=dict)


def _to_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _scalar_array(key: str, value: Any) -> np.ndarray:
    """Store a metadata value as a 0-d array that needs no pickling."""
    if isinstance(value, str):
        return np.array(value, dtype=np.str_)
    array = np.asarray(value)
    if array.dtype == object:
        raise ValueError(f"metadata {key!r} must be a str, number or bool, got {type(value).__name__}")
    return array


def save_latent(
    path: PathLike,
    w: torch.Tensor | np.ndarray,
    noise: Sequence[torch.Tensor | np.ndarray] = (),
    *,
    generator_name: str | None = None,
    weights_sha256: str | None = None,
    extra: Mapping[str, Any] | None = None,
    edits: Mapping[str, torch.Tensor | np.ndarray] | None = None,
) -> None:
    """Write a ``latent.npz`` atomically.

    Args:
        path: destination file (written exactly there; no suffix is added).
        w: W+ code ``[1, num_ws, w_dim]`` (``[num_ws, w_dim]`` is given a batch dim).
        noise: noise maps ``[1, C, H, W]`` in synthesis order (may be empty).
        generator_name: generator the code belongs to.
        weights_sha256: SHA-256 of that generator's weights.
        extra: more 0-d metadata, e.g. ``{"noise_space": "per_layer"}``; keys must not
            clash with ``w``, ``noise_NN``, ``generator``, ``weights_sha256``, ``format_version``.
        edits: activation edits (layer name -> replacement tensor ``[1, C, H, W]``) that a render must apply.

    Raises:
        ValueError: shapes or metadata are malformed (a programming error, not user input).
    """
    w_np = _to_numpy(w).astype(np.float32)
    if w_np.ndim == 2:
        w_np = w_np[None]
    if w_np.ndim != 3 or w_np.shape[0] != 1:
        raise ValueError(f"w must be [1, num_ws, w_dim], got {list(w_np.shape)}")

    arrays: dict[str, np.ndarray] = {"w": w_np, "format_version": np.array(FORMAT_VERSION, dtype=np.int64)}
    for index, noise_map in enumerate(noise):
        noise_np = _to_numpy(noise_map).astype(np.float32)
        if noise_np.ndim != 4 or noise_np.shape[0] != 1:
            raise ValueError(f"noise map {index} must be [1, C, H, W], got {list(noise_np.shape)}")
        arrays[f"noise_{index:02d}"] = noise_np
    if generator_name is not None:
        arrays["generator"] = _scalar_array("generator", str(generator_name))
    if weights_sha256 is not None:
        arrays["weights_sha256"] = _scalar_array("weights_sha256", str(weights_sha256))
    for key, value in (extra or {}).items():
        if key in _RESERVED or _NOISE_KEY.fullmatch(key):
            raise ValueError(f"extra metadata key {key!r} clashes with a reserved latent.npz entry")
        arrays[key] = _scalar_array(key, value)
    for layer, tensor in (edits or {}).items():
        arrays[_EDIT_PREFIX + layer] = _to_numpy(tensor).astype(np.float32)
    atomic_save_npz(path, **arrays)


def _python_value(array: np.ndarray) -> Any:
    """0-d arrays become ``str``/``int``/``float``/``bool``; others stay arrays."""
    return array.item() if array.ndim == 0 else array


# What a latent file may declare, checked from the archive's directory and each array's .npy header before any
# array is read: the largest real one (1024 px, per-channel noise and activation edits) is a few hundred MB.
MAX_ARRAY_BYTES = 512 << 20  # one array (1024 px per-channel noise or activation edits: 128 MiB)
MAX_TOTAL_BYTES = 2 << 30  # every array together
MAX_ENTRIES = 1024

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with entries, an empty zip (what np.load tells apart)
# What reading a damaged archive member can raise: a bad CRC or header (BadZipFile), a short read (EOFError,
# numpy's ValueError), a corrupt deflate stream (zlib.error), an unsupported compression (NotImplementedError) or
# an encrypted entry (RuntimeError).
_MEMBER_ERRORS = (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error, NotImplementedError, RuntimeError)


def _bytes(n: int) -> str:
    """A byte count for messages: 512 MiB, 4 TiB, ..."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _read_header(path: Path, key: str, member: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """The (shape, fortran_order, dtype) an archive member's .npy header declares."""
    try:
        version = np.lib.format.read_magic(member)
    except ValueError:
        raise InputError(f"{path}: entry '{key}' is not a numpy array; expected only arrays in a latent.npz") from None
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member)
    # Version 3.0 (utf-8 field names) has no public reader; latents never need it.
    raise InputError(f"{path}: entry '{key}' is a .npy of format version {version[0]}.{version[1]}, not read here")


def _read_member(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, budget: list[int]) -> np.ndarray:
    """One array, its declared size checked against the limits before memory is reserved for it."""
    with archive.open(info) as member:
        shape, fortran_order, dtype = _read_header(path, key, member)
        if dtype.hasobject:
            raise InputError(f"{path}: '{key}' holds Python objects (pickled), which are not loaded for safety")
        if any(d < 0 for d in shape):
            raise InputError(f"{path}: '{key}' declares the impossible shape {list(shape)}; the file is corrupt")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise InputError(
                f"{path}: '{key}' declares a {dtype} array of shape {list(shape)} ({_bytes(nbytes)}), over the limit of "
                f"{_bytes(MAX_ARRAY_BYTES)} per array; not a latent this tool writes"
            )
        budget[0] -= nbytes
        if budget[0] < 0:
            raise InputError(
                f"{path}: its arrays declare more than {_bytes(MAX_TOTAL_BYTES)} together; not a latent this tool writes"
            )
        if member.tell() + nbytes > info.file_size:
            raise InputError(f"{path} is truncated or corrupt: '{key}' holds fewer bytes than its header declares")
        array = np.empty(math.prod(shape), dtype=dtype)
        if nbytes:
            buffer, got = array.view(np.uint8), 0
            while got < nbytes and (count := member.readinto(buffer[got:])):
                got += count
            if got != nbytes:
                raise InputError(f"{path} is truncated or corrupt: '{key}' ends early; re-export it")
    if fortran_order:
        return array.reshape(shape[::-1]).transpose()
    return array.reshape(shape)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array in the archive, or InputError naming the file.

    The archive's directory (entry count, declared sizes) and each array's .npy header (dtype, shape) are checked
    before anything is read (:data:`MAX_ARRAY_BYTES`, :data:`MAX_TOTAL_BYTES`, :data:`MAX_ENTRIES`), so a small file
    cannot ask for a huge allocation; object (pickled) arrays are refused from their header.
    """
    if not path.exists():
        raise InputError(f"latent file {path} does not exist; check the path")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a latent file; pass a latent.npz")
    not_npz = f"{path} is not a .npz archive; expected a latent.npz from i2s or NVIDIA's projected_w.npz"
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_NPY_MAGIC))
            if head.startswith(_NPY_MAGIC):
                raise InputError(f"{path} is a single .npy array, not a .npz archive; save it with np.savez(path, w=...)")
            if not head.startswith(_ZIP_MAGICS):
                raise InputError(not_npz)
            handle.seek(0)
            try:
                archive = zipfile.ZipFile(handle)
            except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
                raise InputError(f"{path} is truncated or corrupt (not a complete .npz archive: {exc}); re-export it") \
                    from None
            with archive:
                return _read_members(path, archive)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _read_members(path: Path, archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise InputError(f"{path} has {len(infos)} entries, more than the {MAX_ENTRIES} a latent file may have")
    declared = sum(info.file_size for info in infos)
    if declared > MAX_TOTAL_BYTES + len(infos) * 4096:  # each entry's .npy header is well under 4 KiB
        raise InputError(
            f"{path}: its entries declare {_bytes(declared)} uncompressed, over the limit of {_bytes(MAX_TOTAL_BYTES)}; "
            "not a latent this tool writes"
        )
    arrays: dict[str, np.ndarray] = {}
    budget = [MAX_TOTAL_BYTES]
    for info in infos:
        key = info.filename.removesuffix(".npy")  # as np.load names them
        if key in arrays:
            raise InputError(f"{path} holds two entries named '{key}'; the file is corrupt")
        try:
            arrays[key] = _read_member(path, archive, info, key, budget)
        except InputError:
            raise
        except _MEMBER_ERRORS as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise InputError(f"{path} is truncated or corrupt: cannot read '{key}' ({reason}); re-export it") from None
    return arrays


def _check_float(path: Path, key: str, array: np.ndarray) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{path}: '{key}' has dtype {array.dtype}, expected floating point")
    if not np.isfinite(array).all():
        raise InputError(f"{path}: '{key}' contains NaN or infinite values; re-run the embedding")


def _load_w(path: Path, arrays: Mapping[str, np.ndarray]) -> torch.Tensor:
    if "w" not in arrays:
        found = ", ".join(sorted(arrays)) or "nothing"
        raise InputError(f"{path} has no 'w' array (found: {found}); expected a W+ code [1, num_ws, w_dim]")
    w = arrays["w"]
    _check_float(path, "w", w)
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[0] != 1:
        raise InputError(f"{path}: 'w' has shape {list(arrays['w'].shape)}, expected [1, num_ws, w_dim] or [num_ws, w_dim]")
    return torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))


def _load_noise(path: Path, arrays: Mapping[str, np.ndarray]) -> list[torch.Tensor]:
    indexed = {int(m.group(1)): key for key in arrays if (m := _NOISE_KEY.fullmatch(key))}
    missing = sorted(set(range(len(indexed))) - set(indexed))
    if missing:
        raise InputError(
            f"{path}: noise maps must be numbered noise_00, noise_01, ... without gaps, "
            f"but noise_{missing[0]:02d} is missing; re-save the latent"
        )
    noise = []
    for index in range(len(indexed)):
        key = indexed[index]
        array = arrays[key]
        _check_float(path, key, array)
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[0] != 1:
            raise InputError(f"{path}: '{key}' has shape {list(arrays[key].shape)}, expected [1, C, H, W]")
        noise.append(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)))
    return noise


def _optional_str(path: Path, arrays: Mapping[str, np.ndarray], key: str) -> str | None:
    if key not in arrays:
        return None
    value = _python_value(arrays[key])
    if not isinstance(value, str):
        raise InputError(f"{path}: '{key}' should be a text entry, got {arrays[key].dtype} {list(arrays[key].shape)}")
    return value


def load_latent(path: PathLike) -> LatentFile:
    """Read a ``latent.npz`` (ours, or NVIDIA's ``projected_w.npz`` with just ``w``).

    Never unpickles. ``w`` may be ``[1, num_ws, w_dim]`` or ``[num_ws, w_dim]``; noise maps
    may be absent or cover only the first layers (see :func:`complete_noise`).

    Sizes are checked before memory is reserved: the archive's declared sizes and each array's .npy header (dtype,
    shape) must stay within :data:`MAX_ARRAY_BYTES` per array, :data:`MAX_TOTAL_BYTES` in all and
    :data:`MAX_ENTRIES` entries; object (pickled) arrays are refused from their header.

    Raises:
        InputError: missing, unreadable, truncated or corrupt file, an array over the size limits, an object array,
            no ``w``, wrong shapes or dtypes, non-finite values, gaps in the noise numbering, or a newer
            ``format_version``.
    """
    path = Path(path)
    arrays = _read_arrays(path)
    w = _load_w(path, arrays)
    noise = _load_noise(path, arrays)

    edits = {}
    for key, array in arrays.items():
        if key.startswith(_EDIT_PREFIX):
            _check_float(path, key, array)
            edits[key[len(_EDIT_PREFIX):]] = torch.from_numpy(array.astype(np.float32))
    meta = {key: _python_value(array) for key, array in arrays.items()
            if key != "w" and not _NOISE_KEY.fullmatch(key) and not key.startswith(_EDIT_PREFIX)}
    version = meta.get("format_version", FORMAT_VERSION)  # files from other tools carry none
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise InputError(f"{path}: 'format_version' is {version!r}, expected an integer") from None
    if version > FORMAT_VERSION:
        raise InputError(
            f"{path} uses latent format version {version}, newer than this tool's {FORMAT_VERSION}; upgrade image2stylegan"
        )
    return LatentFile(
        w=w,
        noise=noise,
        generator_name=_optional_str(path, arrays, "generator"),
        weights_sha256=_optional_str(path, arrays, "weights_sha256"),
        meta=meta,
        edits=edits,
    )


def _layer_range(first: int, last: int) -> str:
    return f"layer {first}" if first == last else f"layers {first}..{last}"


def complete_noise(
    noise_list: Sequence[torch.Tensor],
    expected_shapes: Sequence[Sequence[int]],
    *,
    source: str = "latent.npz",
) -> list[torch.Tensor]:
    """Check stored noise maps against a generator's noise layers; zero-fill the rest.

    Args:
        noise_list: maps ``[1, C, H, W]`` for the first ``k`` layers (``k`` may be 0).
        expected_shapes: one ``(1, C, H, W)`` per generator noise layer, in synthesis
            order. A stored map may have ``C`` channels or 1 (one map broadcast over
            all channels, as StyleGAN2 does); its height and width must match.
        source: file name used in notices and errors.

    Returns:
        One map per expected layer: missing ones are zeros of the expected shape, on the
        device/dtype of the stored maps, and a :class:`~image2stylegan.errors.Notice` says which.

    Raises:
        InputError: more maps than layers, or a map whose shape does not fit its layer
            (typically a latent made with a different generator).
    """
    if len(noise_list) > len(expected_shapes):
        raise InputError(
            f"{source} has {len(noise_list)} noise maps but the generator has {len(expected_shapes)} noise layers; "
            "was it made with a different generator?"
        )
    completed: list[torch.Tensor] = []
    for index, (noise_map, expected) in enumerate(zip(noise_list, expected_shapes)):
        expected = tuple(int(d) for d in expected)
        shape = tuple(noise_map.shape)
        fits = (
            len(shape) == 4
            and shape[0] == 1
            and shape[1] in {1, expected[1]}
            and shape[2:] == expected[2:]
        )
        if not fits:
            raise InputError(
                f"{source}: noise map {index:02d} has shape {list(shape)} but the generator's layer {index} "
                f"expects {list(expected)} (1 or {expected[1]} channels); was it made with a different generator?"
            )
        completed.append(noise_map)

    first_missing = len(completed)
    if first_missing < len(expected_shapes):
        like = noise_list[0] if noise_list else torch.empty(0)
        for expected in expected_shapes[first_missing:]:
            completed.append(torch.zeros(tuple(int(d) for d in expected), dtype=like.dtype, device=like.device))
        span = _layer_range(first_missing, len(expected_shapes) - 1)
        notice(f"{source} has no noise maps for {span}; rendering them with zero noise")
    return completed
