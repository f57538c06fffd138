"""Bring your own checkpoint: read any supported file, convert it once, load the result fast.

Formats, told apart by their first bytes (:func:`sniff_format`), none of them able to run code:

=====================  ==========================================================================================
``converted``          ours: one ``.safetensors`` file whose header metadata holds the generator kind and its JSON
                       config (written by :func:`convert_checkpoint` / :func:`save_converted`).
``nvidia-pickle``      stylegan2-ada-pytorch / stylegan3-repository ``.pkl`` (``G_ema``): read by
                       :mod:`.safe_pickle`'s restricted unpickler, converted by :func:`convert_stylegan2_ada`.
``torch``              rosinality ``.pt`` (``g_ema``, ``latent_avg``), zip or legacy ``torch.save`` format: read with
                       ``torch.load(weights_only=True)``, converted by :func:`convert_rosinality`.
``nvidia-tf-pickle``   NVIDIA's TensorFlow pickles, StyleGAN (v1) and StyleGAN2: read by :mod:`.tf_pickle` (the
                       same restricted unpickler), converted by :mod:`.tf_stylegan1` / :mod:`.tf_stylegan2`.
=====================  ==========================================================================================

StyleGAN2 checkpoints become :class:`StyleGAN2`, StyleGAN v1 ones :class:`~.stylegan1.StyleGAN` (the converted format
also holds the bundled :class:`~.mobilestylegan.MobileStyleGAN`, as :mod:`.registry` caches it). The mean latent
comes from the checkpoint when it has one (``mapping.w_avg``, ``latent_avg``, ``dlatent_avg``), otherwise it is
computed from the mapping network (:func:`.base.compute_w_avg`, 10,000 seeded z) and saved with the conversion.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ..errors import WeightsFormatError, WeightsNotFoundError
from ..io import atomic_write_bytes
from .base import StyleGenerator, check_config, check_settings, compute_w_avg, expected_state
from .convert_stylegan2 import convert_rosinality, convert_stylegan2_ada
from .mobilestylegan import MobileStyleGAN, MobileStyleGANConfig
from .safe_pickle import ADA_PICKLE, check_legacy_torch_sizes, load_restricted_pickle, torch_load_refusal
from .stylegan1 import StyleGAN, StyleGANConfig
from .stylegan2 import StyleGAN2, StyleGAN2Config
from .tf_pickle import is_tf_network_pickle, read_tf_generator, tf_generator_kind
from .tf_stylegan1 import convert_tf_stylegan1
from .tf_stylegan2 import convert_tf_stylegan2

CONVERTED_FORMAT = "image2stylegan/generator"
CONVERTED_VERSION = "1"  # bump when the converted layout changes

# rosinality's training checkpoints hold the generator, the discriminator, both optimisers and the run's arguments.
_ROSINALITY_KEYS = {"g_ema", "latent_avg", "g", "d", "g_optim", "d_optim", "args", "ada_aug_p"}
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # pickle of torch's legacy magic number
# A converted file's JSON header lists each tensor (~100 bytes each) and the config: ~30 KB for a 1024 px StyleGAN2.
MAX_SAFETENSORS_HEADER = 16 << 20
# How safetensors names the dtypes our generators hold (everything is float32 today).
_SAFETENSORS_DTYPES = {
    torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64", torch.int64: "I64",
    torch.int32: "I32", torch.uint8: "U8", torch.bool: "BOOL",
}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read and converted, not yet instantiated."""

    tensors: dict[str, torch.Tensor]  # state dict for the generator; ``w_avg`` only if the file has one
    config: Any  # StyleGAN2Config, or StyleGANConfig for StyleGAN (v1) checkpoints
    source_format: str  # one of the formats of :func:`sniff_format`


# Generator kind (recorded in converted files) -> (module class, config class).
_KINDS: dict[str, tuple[type[StyleGenerator], type]] = {
    "stylegan2": (StyleGAN2, StyleGAN2Config),
    "stylegan1": (StyleGAN, StyleGANConfig),
    "mobilestylegan": (MobileStyleGAN, MobileStyleGANConfig),  # the bundled generator's cache (registry.py)
}


def _kind_of(config: Any) -> str:
    for kind, (_, config_cls) in _KINDS.items():
        if isinstance(config, config_cls):
            return kind
    raise TypeError(f"no generator kind for {type(config).__name__}")


def sniff_format(path: str | Path) -> str:
    """The format of a checkpoint file: ``'converted'``, ``'torch'``, ``'nvidia-pickle'`` or ``'nvidia-tf-pickle'``.

    Raises:
        WeightsNotFoundError: the file does not exist.
        WeightsFormatError: none of the above.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = path.stat().st_size
    except FileNotFoundError as e:
        raise WeightsNotFoundError(f"checkpoint not found: {path}") from e
    except IsADirectoryError as e:
        raise WeightsFormatError(f"{path} is a directory, expected a checkpoint file") from e
    except OSError as e:  # permissions, a device that fails
        raise WeightsNotFoundError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if head[:4] == b"PK\x03\x04" or head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch"
    if len(head) > 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        return "converted"
    if head[:1] == b"\x80":
        # A TF pickle's first global is dnnlib.tflib.network.Network; this only routes, the loaders are strict.
        return "nvidia-tf-pickle" if b"dnnlib.tflib" in head and is_tf_network_pickle(path) else "nvidia-pickle"
    raise WeightsFormatError(
        f"{path}: not a checkpoint format we read (NVIDIA .pkl, rosinality .pt, or a converted .safetensors)"
    )


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read and convert a checkpoint of any supported format (see the module docstring); nothing is executed.

    Raises:
        WeightsNotFoundError: the file does not exist.
        WeightsFormatError: unknown format, refused content, or a structure the converters do not understand.
    """
    path = Path(path)
    fmt = sniff_format(path)
    if fmt == "converted":
        tensors, config = _read_converted(path)
    elif fmt == "torch":
        tensors, config = _read_rosinality(path)
    elif fmt == "nvidia-pickle":
        data = load_restricted_pickle(path, ADA_PICKLE)
        if not isinstance(data, dict) or "G_ema" not in data:
            keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
            raise WeightsFormatError(f"{path}: an NVIDIA pickle without 'G_ema' (found {keys})")
        # G, D, augment_pipe and training_set_kwargs are training state; only the EMA generator is used.
        tensors, config = _with_path(path, convert_stylegan2_ada, data["G_ema"])
    else:
        tensors, config = _read_tf_pickle(path)
    return Checkpoint(tensors, config, fmt)


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> StyleGenerator:
    """Load a checkpoint of any supported format as a frozen (``requires_grad=False``), eval-mode generator.

    Args:
        path: an NVIDIA ``.pkl`` (PyTorch or TensorFlow), a rosinality ``.pt`` or a converted ``.safetensors``.
        device: where to put it.

    Returns:
        A :class:`StyleGAN2`, or a :class:`~.stylegan1.StyleGAN` for StyleGAN (v1) checkpoints.

    Raises:
        WeightsNotFoundError, WeightsFormatError: see :func:`read_checkpoint`.
    """
    generator = _instantiate(read_checkpoint(path), path)
    return generator.requires_grad_(False).eval().to(device)


def save_converted(
    generator: StyleGenerator, out_path: str | Path, *, source_format: str = "", source_sha256: str = ""
) -> Path:
    """Write ``generator`` in our format: one safetensors file, the generator kind and its config as JSON in the
    header metadata. The write is atomic (a temporary file renamed into place). Returns the path written."""
    out_path = Path(out_path)
    metadata = {
        "format": CONVERTED_FORMAT,
        "version": CONVERTED_VERSION,
        "generator": _kind_of(generator.config),
        "config": json.dumps(generator.config.to_dict(), sort_keys=True),
        "source_format": source_format,
        "source_sha256": source_sha256,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_path, save(state, metadata=metadata))
    return out_path


def convert_checkpoint(in_path: str | Path, out_path: str | Path) -> Path:
    """Convert any supported checkpoint to our format once (``i2s convert IN OUT``); returns ``out_path``.

    The mean latent is stored too (computed from the mapping network when the source has none), so loading the
    result is a single safetensors read. The source's sha256 is recorded in the metadata.
    """
    checkpoint = read_checkpoint(in_path)
    generator = _instantiate(checkpoint, in_path)
    sha = checkpoint_sha256(in_path)
    return save_converted(generator, out_path, source_format=checkpoint.source_format, source_sha256=sha)


def checkpoint_sha256(path: str | Path) -> str:
    """The sha256 identifying a checkpoint's weights (for latent files): a converted file's recorded source
    sha256 when it has one, else the file's own sha256."""
    path = Path(path)
    if sniff_format(path) == "converted":
        _check_header_size(path)
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                recorded = (f.metadata() or {}).get("source_sha256")
        except (SafetensorError, OSError) as e:
            raise WeightsFormatError(f"{path}: unreadable converted checkpoint: {e}") from e
        if recorded:
            return recorded
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


# -- internals ------------------------------------------------------------------------------------------------------
def _instantiate(checkpoint: Checkpoint, path: str | Path) -> StyleGenerator:
    generator_cls = _KINDS[_kind_of(checkpoint.config)][0]
    _with_path(Path(path), check_config, checkpoint.config, generator_cls)  # every size, before any allocation
    generator = generator_cls(checkpoint.config)
    tensors = dict(checkpoint.tensors)
    has_avg = "w_avg" in tensors
    tensors.setdefault("w_avg", torch.zeros(generator.w_dim))
    try:
        generator.load_state_dict(tensors, strict=True)
    except RuntimeError as e:  # missing / unexpected keys or shapes: the converters should have caught it
        raise WeightsFormatError(f"{path}: tensors do not fit the generator: {e}") from e
    if not has_avg:
        generator.w_avg.copy_(compute_w_avg(generator))
    return generator


def _with_path(path: Path, fn, *args):
    try:
        return fn(*args)
    except WeightsFormatError as e:
        raise WeightsFormatError(f"{path}: {e}") from e


def _read_tf_pickle(path: Path) -> tuple[dict[str, torch.Tensor], Any]:
    gs = read_tf_generator(path)
    convert = convert_tf_stylegan1 if tf_generator_kind(gs) == "stylegan1" else convert_tf_stylegan2
    return _with_path(path, convert, gs)


def _check_header_size(path: Path) -> None:
    with open(path, "rb") as f:
        declared = int.from_bytes(f.read(8), "little")
    if declared > MAX_SAFETENSORS_HEADER:
        raise WeightsFormatError(
            f"{path}: its safetensors header declares {declared:,} bytes, over the limit of {MAX_SAFETENSORS_HEADER:,}; "
            "not a file written by `i2s convert`"
        )


def _read_converted(path: Path) -> tuple[dict[str, torch.Tensor], Any]:
    """Metadata, then the config's sizes (:func:`.base.check_config`), then every tensor's name, shape and dtype from
    the header against the generator the config describes; only then is any tensor data read."""
    _check_header_size(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != CONVERTED_FORMAT:
                raise WeightsFormatError(f"{path}: a safetensors file, but not one written by `i2s convert`")
            if meta.get("version") != CONVERTED_VERSION:
                raise WeightsFormatError(
                    f"{path}: converted with format version {meta.get('version')}, this version reads "
                    f"{CONVERTED_VERSION}; convert the original checkpoint again"
                )
            if meta.get("generator") not in _KINDS:
                raise WeightsFormatError(f"{path}: unknown generator kind {meta.get('generator')!r}")
            generator_cls, config_cls = _KINDS[meta["generator"]]
            try:
                settings = json.loads(meta.get("config", ""))
            except (ValueError, RecursionError):
                raise WeightsFormatError(f"{path}: the generator config in its header is not valid JSON") from None
            if not isinstance(settings, dict):
                raise WeightsFormatError(f"{path}: the generator config in its header is not a JSON object")
            _with_path(path, check_settings, settings)
            try:
                config = config_cls.from_dict(settings)
            except (ValueError, TypeError) as e:
                raise WeightsFormatError(f"{path}: unsupported generator settings: {_one_line(e)}") from None
            _with_path(path, check_config, config, generator_cls)
            expected = expected_state(config, generator_cls)
            _check_header_tensors(path, f, expected)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise WeightsFormatError(f"{path}: unreadable converted checkpoint: {_one_line(e)}") from None
    return tensors, config


def _check_header_tensors(path: Path, f: Any, expected: dict[str, torch.Tensor]) -> None:
    """Names, shapes and dtypes the safetensors header declares against the generator's (meta) state dict."""
    keys = set(f.keys())
    if keys != set(expected):
        missing, extra = sorted(set(expected) - keys), sorted(keys - set(expected))
        raise WeightsFormatError(f"{path}: tensors do not match the config: missing {missing[:5]}, extra {extra[:5]}")
    for key in sorted(keys):
        declared = f.get_slice(key)
        shape, dtype = list(declared.get_shape()), declared.get_dtype()
        want = expected[key]
        if shape != list(want.shape) or dtype != _SAFETENSORS_DTYPES.get(want.dtype):
            raise WeightsFormatError(
                f"{path}: tensor {key} is {dtype} {shape}, the config needs {_SAFETENSORS_DTYPES.get(want.dtype)} "
                f"{list(want.shape)}"
            )


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _check_torch_sizes(path: Path) -> None:
    """The sizes a torch file declares, checked before ``torch.load`` reserves memory for them: a zip file's entries
    must lie within the file and expand at most to twice its size (torch writes them uncompressed); a legacy file's
    storages must fit in the bytes that follow its pickles (:func:`.safe_pickle.check_legacy_torch_sizes`)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            f.seek(0)
            check_legacy_torch_sizes(f, size, str(path))
            return
        try:
            with zipfile.ZipFile(f) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, EOFError, ValueError) as e:
            raise WeightsFormatError(f"{path}: truncated or corrupt torch file ({_one_line(e)})") from None
    for info in infos:
        stored_mismatch = info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
        if stored_mismatch or info.header_offset + info.compress_size > size:
            raise WeightsFormatError(f"{path}: truncated or corrupt torch file (entry {info.filename!r} does not fit)")
    declared, allowed = sum(info.file_size for info in infos), max(2 * size, 64 << 20)
    if declared > allowed:
        raise WeightsFormatError(
            f"{path}: its entries declare {declared:,} bytes uncompressed, over {allowed:,} for a file of {size:,} "
            "bytes; not a torch checkpoint we read"
        )


def _read_rosinality(path: Path) -> tuple[dict[str, torch.Tensor], StyleGAN2Config]:
    _check_torch_sizes(path)
    try:
        # Training checkpoints also store the run's argparse.Namespace: admit that one plain class as well.
        with torch.serialization.safe_globals([argparse.Namespace]):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError / RuntimeError for unsafe or corrupt files
        raise WeightsFormatError(f"{path}: {torch_load_refusal(e)}") from None
    if not isinstance(data, dict) or "g_ema" not in data:
        keys = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise WeightsFormatError(
            f"{path}: a torch file without 'g_ema' (found {keys}); expected a rosinality checkpoint"
        )
    unknown = set(data) - _ROSINALITY_KEYS
    if unknown:
        raise WeightsFormatError(f"{path}: unexpected entries {sorted(map(str, unknown))} next to 'g_ema'")
    if not isinstance(data["g_ema"], dict):
        raise WeightsFormatError(f"{path}: 'g_ema' is a {type(data['g_ema']).__name__}, expected a state dict")
    return _with_path(path, convert_rosinality, data["g_ema"], data.get("latent_avg"))
