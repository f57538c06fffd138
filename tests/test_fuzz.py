"""Fuzz-style tests of every reader of user files: corrupt and hostile files end in the package's own one-line error.

Readers: images (:func:`~image2stylegan.io.load_image`, :func:`~image2stylegan.masks.resolve_mask`,
:func:`~image2stylegan.align.photo.load_photo`), latents (:func:`~image2stylegan.latents.load_latent`), checkpoints
(:func:`~image2stylegan.generators.checkpoints.load_checkpoint` on stylegan2-ada pickles, NVIDIA's TensorFlow pickles,
rosinality ``.pt`` in torch's zip and legacy formats, our converted safetensors) and the VGG16 weights
(:func:`~image2stylegan.vgg.load_vgg16_state`).

For each, files are generated from a small valid one (truncated at several points, random bytes, a wrong magic
number, empty, a byte flipped here and there) and written to be hostile (absurd declared sizes, object arrays, pickles
whose ``__reduce__`` would create a marker file, zip entries that declare more than they hold). Every case must end in
an :class:`~image2stylegan.errors.Image2StyleGANError` with a one-line message, never another exception, never the
payload; a flipped byte that leaves a readable file may also load. :func:`test_every_case_under_a_memory_limit` runs
all of them again in one child process under an address-space limit (sizes are checked before memory is reserved),
and the ``i2s`` tests run a few through the command line: exit status 2, exactly one ``error:`` line, no traceback,
no file in the output folder.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from nvidia_modules import nvidia_stand_ins
import torch
from PIL import Image
from test_stylegan2 import _nvidia_g_ema, _rosinality_state, random_state, tiny_config
from tf_pickles import dump_official, v1_gs, v1_kwargs, v1_variables, v2_gs

from image2stylegan.errors import Image2StyleGANError

MEMORY_LIMIT = 4 << 30  # address space of the child processes: far below what any refused file declares
MARKER = "pwned"  # the file every payload would create, in the case's folder
HERE = Path(__file__).resolve().parent


# -- readers ------------------------------------------------------------------------------------------------------
def _read_image(path: Path):
    from image2stylegan.io import load_image

    return load_image(path, 16)


def _read_mask(path: Path):
    from image2stylegan.masks import resolve_mask

    return resolve_mask(str(path), 16)


def _read_photo(path: Path):
    from image2stylegan.align.photo import load_photo

    return load_photo(path)


def _read_latent(path: Path):
    from image2stylegan.latents import load_latent

    return load_latent(path)


def _read_checkpoint(path: Path):
    from image2stylegan.generators.checkpoints import load_checkpoint

    return load_checkpoint(path)


def _read_vgg(path: Path):
    from image2stylegan.vgg import load_vgg16_state

    return load_vgg16_state(path)


READERS: dict[str, Callable[[Path], object]] = {
    "image": _read_image, "mask": _read_mask, "photo": _read_photo, "latent": _read_latent,
    "checkpoint": _read_checkpoint, "vgg": _read_vgg,
}


@dataclass(frozen=True)
class Case:
    reader: str  # a key of READERS
    name: str
    build: Callable[[Path], Path]  # folder -> the file (or folder) to read
    may_load: bool = False  # a damaged file that can still be valid (a flipped byte, the last byte cut)

    @property
    def id(self) -> str:
        return f"{self.reader}: {self.name}"


def _marker(folder: Path) -> Path:
    return folder / MARKER


class _Reduces:
    """Pickles as ``func(*args)``: the classic payload."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _touch(folder: Path) -> _Reduces:
    return _Reduces(os.system, f"touch {_marker(folder)}")


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# -- generic damage of a valid file -------------------------------------------------------------------------------
def _damaged(reader: str, seed_name: str, suffix: str, make: Callable[[Path], bytes], flips: int = 3) -> list[Case]:
    """Cases made from a valid file (bytes from ``make(folder)``): truncations, random bytes, wrong magic, flips."""

    def cut(fraction: float) -> Callable[[Path], Path]:
        def build(folder: Path) -> Path:
            data = make(folder)
            return _write(folder, f"cut{suffix}", data[: int(len(data) * fraction)])
        return build

    def last_byte_cut(folder: Path) -> Path:
        data = make(folder)
        return _write(folder, f"cut{suffix}", data[:-1])

    def random_bytes(folder: Path) -> Path:
        return _write(folder, f"random{suffix}", random.Random(len(seed_name)).randbytes(len(make(folder))))

    def wrong_magic(folder: Path) -> Path:
        return _write(folder, f"magic{suffix}", b"NOTMAGIC" + make(folder)[8:])

    def flip(k: int) -> Callable[[Path], Path]:
        def build(folder: Path) -> Path:
            data = bytearray(make(folder))
            rng = random.Random(f"{seed_name}:{k}")
            for _ in range(1 + k):
                position = rng.randrange(8, len(data))
                data[position] ^= 1 << rng.randrange(8)
            return _write(folder, f"flipped{suffix}", bytes(data))
        return build

    cases = [Case(reader, f"{seed_name}, empty", cut(0.0))]
    cases += [Case(reader, f"{seed_name}, truncated at {f:.0%}", cut(f)) for f in (0.02, 0.25, 0.5, 0.9)]
    cases += [
        Case(reader, f"{seed_name}, last byte cut", last_byte_cut, may_load=True),
        Case(reader, f"{seed_name}, random bytes", random_bytes),
        Case(reader, f"{seed_name}, wrong magic", wrong_magic),
    ]
    cases += [Case(reader, f"{seed_name}, {k + 1} bit(s) flipped", flip(k), may_load=True) for k in range(flips)]
    return cases


# -- images -------------------------------------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_declaring(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in a few hundred bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def _valid_png(folder: Path) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _valid_jpeg(folder: Path) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def _jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(_valid_jpeg(Path()))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _text_chunk_bomb(folder: Path) -> Path:
    """A PNG whose zTXt chunk inflates to 20 MB (Pillow stops at its 1 MB text-chunk limit)."""
    compressor = zlib.compressobj(9)
    bomb = compressor.compress(b"\0" * (20 << 20)) + compressor.flush()
    png = _valid_png(folder)
    return _write(folder, "text-bomb.png", png[:33] + _png_chunk(b"zTXt", b"Comment\0\0" + bomb) + png[33:])


def _image_hostile(reader: str) -> list[Case]:
    return [
        Case(reader, "PNG declaring 10000x10000 (100 MP)", lambda d: _write(d, "huge.png", _png_declaring(10**4, 10**4))),
        Case(reader, "PNG declaring 20000x20000 (over Pillow's own limit)",
             lambda d: _write(d, "huge.png", _png_declaring(20000, 20000))),
        Case(reader, "JPEG declaring 60000x60000", lambda d: _write(d, "huge.jpg", _jpeg_declaring(60000, 60000))),
        Case(reader, "PNG declaring 0x16", lambda d: _write(d, "empty.png", _png_declaring(0, 16))),
        Case(reader, "a folder", lambda d: d),
        Case(reader, "a missing file", lambda d: d / "missing.png"),
        Case(reader, "text file named .png", lambda d: _write(d, "notes.png", b"hello\n")),
    ]


IMAGE_CASES = (
    _damaged("image", "PNG", ".png", _valid_png)
    + _damaged("image", "JPEG", ".jpg", _valid_jpeg)
    + _image_hostile("image")
    + [Case("image", "PNG with a zTXt chunk inflating to 20 MB", _text_chunk_bomb)]
    + _image_hostile("mask")
    + _damaged("mask", "PNG", ".png", _valid_png, flips=0)
    + _image_hostile("photo")
    + _damaged("photo", "JPEG", ".jpg", _valid_jpeg, flips=0)
)


# -- latents ------------------------------------------------------------------------------------------------------
def _valid_latent(folder: Path) -> bytes:
    from image2stylegan.latents import save_latent

    g = torch.Generator().manual_seed(0)
    path = folder / ".seed.npz"
    save_latent(path, torch.randn(1, 4, 8, generator=g), [torch.randn(1, 1, 4, 4, generator=g)], generator_name="x")
    data = path.read_bytes()
    path.unlink()
    return data


def _npy(shape, descr: str = "<f4", body: bytes = b"", fortran: bool = False) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": fortran, "shape": tuple(shape)})
    return header.getvalue() + body


def _npz(folder: Path, name: str, entries: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    path = folder / name
    with zipfile.ZipFile(path, "w", compression) as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return path


def _object_array_payload(folder: Path) -> Path:
    payload = np.empty(1, dtype=object)
    payload[0] = _touch(folder)
    buffer = io.BytesIO()
    np.save(buffer, payload, allow_pickle=True)
    return _npz(folder, "pickled.npz", {"w.npy": _npy((1, 4, 8), body=b"\0" * 128), "generator.npy": buffer.getvalue()})


def _declared_size_patched(folder: Path) -> Path:
    """An npz whose zip directory says its entry inflates to almost 4 GiB."""
    path = _npz(folder, "declares.npz", {"w.npy": _npy((1, 4, 8), body=b"\0" * 128)})
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFFE)  # uncompressed size
    data[22:26] = struct.pack("<I", 0xFFFFFFFE)  # and in the local header
    path.write_bytes(bytes(data))
    return path


def _deflated_bomb(folder: Path) -> Path:
    """A deflated entry whose header declares 1 GiB of float32 zeros; 1 MiB of zeros follow (a few KB compressed)."""
    return _npz(folder, "bomb.npz", {"w.npy": _npy((1, 1 << 15, 1 << 13), body=b"\0" * (1 << 20))},
                zipfile.ZIP_DEFLATED)


def _nested_zip(folder: Path) -> Path:
    inner = _deflated_bomb(folder).read_bytes()
    return _npz(folder, "nested.npz", {"w.npy": inner, "inner.npz": inner})


def _many_entries(folder: Path) -> Path:
    entries = {f"noise_{i:04d}.npy": _npy((1, 1, 1, 1), body=b"\0" * 4) for i in range(1100)}
    return _npz(folder, "many.npz", {"w.npy": _npy((1, 4, 8), body=b"\0" * 128), **entries})


def _string_edit(folder: Path) -> Path:
    path = folder / "edit.npz"
    np.savez(path, w=np.zeros((1, 4, 8), np.float32), **{"edit:b8.conv1": np.array(["x"] * 4)})
    return path


def _single_npy(folder: Path) -> Path:
    path = folder / "w.npy"
    np.save(path, np.zeros((1, 4, 8), np.float32))
    return path


LATENT_CASES = _damaged("latent", "latent.npz", ".npz", _valid_latent) + [
    Case("latent", "'w' declaring 4 TiB of float32",
         lambda d: _npz(d, "huge.npz", {"w.npy": _npy((1, 1 << 20, 1 << 20))})),
    Case("latent", "object array whose pickle runs a command", _object_array_payload),
    Case("latent", "'w' with a negative dimension", lambda d: _npz(d, "neg.npz", {"w.npy": _npy((1, -5, 8))})),
    Case("latent", "'w' of dtype <U1000000000 (4 GB)",
         lambda d: _npz(d, "text.npz", {"w.npy": _npy((), descr="<U1000000000")})),
    Case("latent", "'w' shorter than its header declares",
         lambda d: _npz(d, "short.npz", {"w.npy": _npy((1, 18, 512), body=b"\0" * 100)})),
    Case("latent", "entry that is not a .npy", lambda d: _npz(d, "text.npz", {"w.npy": b"hello, not an array"})),
    Case("latent", "zip directory declaring 4 GiB", _declared_size_patched),
    Case("latent", "deflated entry declaring 1 GiB", _deflated_bomb),
    Case("latent", "nested zip bombs as entries", _nested_zip),
    Case("latent", "1101 entries", _many_entries),
    Case("latent", "duplicate entry names",
         lambda d: _npz(d, "dup.npz", {"w.npy": _npy((1, 4, 8), body=b"\0" * 128)} | {"w": b""})),
    Case("latent", "activation edit of strings", _string_edit),
    Case("latent", "a single .npy", _single_npy),
    Case("latent", "an empty zip", lambda d: _npz(d, "empty.npz", {})),
    Case("latent", "a folder", lambda d: d),
]


# -- checkpoints: stylegan2-ada-pytorch pickles -------------------------------------------------------------------


def _ada_pickle(edit: Callable | None = None) -> bytes:
    cfg = tiny_config()
    with nvidia_stand_ins() as ns:
        g_ema = _nvidia_g_ema(ns, random_state(cfg), cfg)
        if edit is not None:
            edit(g_ema)
        return pickle.dumps({"G_ema": g_ema, "training_set_kwargs": ns.EasyDict(resolution=cfg.resolution)})


def _legacy_stream_declaring(numel: int) -> bytes:
    """A legacy torch.save stream of one float storage whose record declares ``numel`` elements (holds 3)."""
    buffer = io.BytesIO()
    torch.save(torch.ones(3), buffer, _use_new_zipfile_serialization=False)
    data = bytearray(buffer.getvalue())
    record = data.index(b"cpu") + len(b"cpu") + 2  # after the location string and its BINPUT
    assert data[record : record + 2] == b"K\x03", "unexpected legacy layout"
    data[record : record + 2] = b"J" + struct.pack("<i", numel)
    return bytes(data)


def _ada_huge_resolution(g_ema) -> None:
    g_ema.img_resolution = 1 << 20


def _ada_huge_channels(g_ema) -> None:
    g_ema._init_kwargs["synthesis_kwargs"]["channel_base"] = 1 << 40
    g_ema._init_kwargs["synthesis_kwargs"]["channel_max"] = 1 << 30


def _tensor_past_its_storage(folder: Path) -> Path:
    storage = torch.ones(4).storage()  # a TypedStorage pickles as torch.storage._load_from_bytes(legacy stream)
    view = _Reduces(torch._utils._rebuild_tensor_v2, storage, 0, (1 << 20, 1 << 20), (1 << 20, 1), False,
                    OrderedDict())
    return _write(folder, "view.pkl", pickle.dumps({"G_ema": view}))


ADA_CASES = _damaged("checkpoint", "ADA pickle", ".pkl", lambda d: _ada_pickle()) + [
    Case("checkpoint", "ADA pickle: G_ema runs a command", lambda d: _write(d, "evil.pkl", pickle.dumps(
        {"G_ema": _touch(d)}))),
    Case("checkpoint", "ADA pickle: img_resolution 2**20",
         lambda d: _write(d, "res.pkl", _ada_pickle(_ada_huge_resolution))),
    Case("checkpoint", "ADA pickle: channel_base 2**40, channel_max 2**30",
         lambda d: _write(d, "wide.pkl", _ada_pickle(_ada_huge_channels))),
    Case("checkpoint", "ADA pickle: a bytes item declaring 16 TiB",
         lambda d: _write(d, "long.pkl", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 44) + b"abc")),
    Case("checkpoint", "ADA pickle: storage stream declaring 8 GiB", lambda d: _write(d, "storage.pkl", pickle.dumps(
        {"G_ema": _Reduces(torch.storage._load_from_bytes, _legacy_stream_declaring(2**31 - 1))}))),
    Case("checkpoint", "ADA pickle: storage stream that runs a command", lambda d: _write(d, "inner.pkl", pickle.dumps(
        {"G_ema": _Reduces(torch.storage._load_from_bytes, _torch_bytes(_touch(d), legacy=True))}))),
    Case("checkpoint", "ADA pickle: tensor view far past its storage", _tensor_past_its_storage),
]


# -- checkpoints: NVIDIA's TensorFlow pickles ---------------------------------------------------------------------
def _tf_v1(folder: Path, edit: Callable | None = None) -> bytes:
    """A 16 px TF StyleGAN pickle; ``edit(kwargs, synthesis variables)`` changes what is written, not the shapes."""
    kwargs = v1_kwargs(16)
    own, mapping, syn = v1_variables(kwargs, 0)
    if edit is not None:
        kwargs = dict(kwargs)
        edit(kwargs, syn)
    gs = v1_gs(kwargs, own, mapping, syn)
    return dump_official((gs, gs, gs))


def _tf_v2(settings: dict) -> bytes:
    gs = v2_gs(v1_kwargs(16), seed=2)[0]
    for network in (gs, *gs.state["components"].values()):
        network.state["static_kwargs"].update(settings)
    return dump_official((gs, gs, gs))


def _tf_trap(folder: Path) -> Path:
    def edit(kwargs, syn):
        syn["4x4/Const/bias"] = _touch(folder)

    return _write(folder, "trap.pkl", _tf_v1(folder, edit))


TF_CASES = _damaged("checkpoint", "TF StyleGAN pickle", ".pkl", _tf_v1) + [
    Case("checkpoint", "TF StyleGAN pickle: a variable runs a command", _tf_trap),
    Case("checkpoint", "TF StyleGAN pickle: resolution 2**20",
         lambda d: _write(d, "res.pkl", _tf_v1(d, lambda kwargs, syn: kwargs.update(resolution=1 << 20)))),
    Case("checkpoint", "TF StyleGAN pickle: fmap_max 10**6, fmap_base 10**12",
         lambda d: _write(d, "wide.pkl", _tf_v1(d, lambda kwargs, syn: kwargs.update(fmap_max=10**6,
                                                                                     fmap_base=10**12)))),
    Case("checkpoint", "TF StyleGAN pickle: 10**6 mapping layers",
         lambda d: _write(d, "deep.pkl", _tf_v1(d, lambda kwargs, syn: kwargs.update(mapping_layers=10**6)))),
    Case("checkpoint", "TF StyleGAN2 pickle: dlatent_size 10**9",
         lambda d: _write(d, "w.pkl", _tf_v2({"dlatent_size": 10**9, "latent_size": 10**9}))),
    Case("checkpoint", "TF StyleGAN2 pickle: resolution 2**30",
         lambda d: _write(d, "res.pkl", _tf_v2({"resolution": 1 << 30}))),
    Case("checkpoint", "TF StyleGAN2 pickle: fmap_base 'many'",
         lambda d: _write(d, "text.pkl", _tf_v2({"fmap_base": "many"}))),
]


# -- checkpoints: rosinality .pt -----------------------------------------------------------------------------------
def _torch_bytes(obj, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def _rosinality(legacy: bool, mapping_layers: int | None = None) -> bytes:
    cfg = tiny_config(z_dim=16)
    state = _rosinality_state(random_state(cfg), cfg)
    if mapping_layers:  # extra style layers: w_dim x w_dim each
        for i in range(cfg.mapping_layers + 1, mapping_layers + 1):
            state[f"style.{i}.weight"], state[f"style.{i}.bias"] = torch.zeros(16, 16), torch.zeros(16)
    return _torch_bytes({"g_ema": state, "latent_avg": torch.zeros(16)}, legacy)


def _zip_entry_declaring_4gib(folder: Path) -> Path:
    data = bytearray(_rosinality(legacy=False))
    central = data.rindex(b"PK\x01\x02")
    data[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFFE)
    return _write(folder, "declares.pt", bytes(data))


def _legacy_pt_declaring(folder: Path) -> Path:
    """A legacy .pt whose one storage declares 8 GiB (the stream of _legacy_stream_declaring as {'g_ema': ...})."""
    stream = _legacy_stream_declaring(2**31 - 1)
    return _write(folder, "huge-legacy.pt", stream)


ROSINALITY_CASES = (
    _damaged("checkpoint", "rosinality .pt (zip)", ".pt", lambda d: _rosinality(legacy=False))
    + _damaged("checkpoint", "rosinality .pt (legacy)", ".pt", lambda d: _rosinality(legacy=True))
    + [
        Case("checkpoint", "rosinality .pt (zip): latent_avg runs a command",
             lambda d: _write(d, "evil.pt", _torch_bytes({"g_ema": {}, "latent_avg": _touch(d)}))),
        Case("checkpoint", "rosinality .pt (legacy): g_ema runs a command",
             lambda d: _write(d, "evil.pt", _torch_bytes({"g_ema": _touch(d)}, legacy=True))),
        Case("checkpoint", "rosinality .pt (legacy): a storage declaring 8 GiB", _legacy_pt_declaring),
        Case("checkpoint", "rosinality .pt (zip): an entry declaring 4 GiB", _zip_entry_declaring_4gib),
        Case("checkpoint", "rosinality .pt: 40 mapping layers",
             lambda d: _write(d, "deep.pt", _rosinality(legacy=False, mapping_layers=40))),
    ]
)


# -- checkpoints: our converted safetensors ------------------------------------------------------------------------
def _converted(folder: Path) -> bytes:
    from image2stylegan.generators.checkpoints import save_converted
    from image2stylegan.generators.tiny import tiny_generator

    path = save_converted(tiny_generator(seed=0, resolution=32), folder / ".seed.safetensors")
    data = path.read_bytes()
    path.unlink()
    return data


def _stylegan2_header(config: str | dict, tensors: dict[str, torch.Tensor] | None = None,
                      kind: str = "stylegan2") -> bytes:
    from safetensors.torch import save

    from image2stylegan.generators.checkpoints import CONVERTED_FORMAT, CONVERTED_VERSION

    text = config if isinstance(config, str) else json.dumps(config)
    metadata = {"format": CONVERTED_FORMAT, "version": CONVERTED_VERSION, "generator": kind, "config": text}
    return save(tensors or {"w_avg": torch.zeros(16)}, metadata=metadata)


def _sg2(**settings) -> dict:
    return {**tiny_config().to_dict(), **settings}


def _wrong_shape(folder: Path) -> Path:
    from safetensors.torch import load

    tensors = load(_converted(folder))
    tensors["w_avg"] = torch.zeros(1 << 20)  # 4 MiB where the config says 16 floats
    from image2stylegan.generators.tiny import tiny_config as mobile_config

    return _write(folder, "shape.safetensors",
                  _stylegan2_header(mobile_config(32).to_dict(), tensors, kind="mobilestylegan"))


def _wrong_dtype(folder: Path) -> Path:
    from safetensors.torch import load

    from image2stylegan.generators.tiny import tiny_config as mobile_config

    tensors = {k: v.half() for k, v in load(_converted(folder)).items()}
    return _write(folder, "dtype.safetensors",
                  _stylegan2_header(mobile_config(32).to_dict(), tensors, kind="mobilestylegan"))


def _header_declaring(length: int, pad_to: int = 0) -> bytes:
    return struct.pack("<Q", length) + b"{" + b" " * max(pad_to - 9, 0)


CONVERTED_CASES = _damaged("checkpoint", "converted .safetensors", ".safetensors", _converted) + [
    Case("checkpoint", "converted: resolution 2**20",
         lambda d: _write(d, "c.safetensors", _stylegan2_header(_sg2(resolution=1 << 20)))),
    Case("checkpoint", "converted: 7.3e9 parameters (channel_base 2**20, channel_max 8192, 4096 px)",
         lambda d: _write(d, "c.safetensors", _stylegan2_header(
             _sg2(resolution=4096, channel_base=1 << 20, channel_max=8192)))),
    Case("checkpoint", "converted: w_dim 10**9", lambda d: _write(d, "c.safetensors", _stylegan2_header(
        _sg2(w_dim=10**9)))),
    Case("checkpoint", "converted: 10**6 mapping layers",
         lambda d: _write(d, "c.safetensors", _stylegan2_header(_sg2(mapping_layers=10**6)))),
    Case("checkpoint", "converted: MobileStyleGAN with 10**5 blocks",
         lambda d: _write(d, "c.safetensors", _stylegan2_header(
             {"channels": [8] * 10**5}, kind="mobilestylegan"))),
    Case("checkpoint", "converted: NaN learning-rate multiplier",
         lambda d: _write(d, "c.safetensors", _stylegan2_header(_sg2(mapping_lr_multiplier=float("nan"))))),
    Case("checkpoint", "converted: resolution '1024' (a string)",
         lambda d: _write(d, "c.safetensors", _stylegan2_header(_sg2(resolution="1024")))),
    Case("checkpoint", "converted: config not JSON",
         lambda d: _write(d, "c.safetensors", _stylegan2_header("{resolution: 1024"))),
    Case("checkpoint", "converted: config nested 100000 deep",
         lambda d: _write(d, "c.safetensors", _stylegan2_header("[" * 100000 + "]" * 100000))),
    Case("checkpoint", "converted: config a JSON list",
         lambda d: _write(d, "c.safetensors", _stylegan2_header("[1, 2]"))),
    Case("checkpoint", "converted: unknown config key",
         lambda d: _write(d, "c.safetensors", _stylegan2_header(_sg2(fused=True)))),
    Case("checkpoint", "converted: a tensor larger than its config says", _wrong_shape),
    Case("checkpoint", "converted: float16 tensors", _wrong_dtype),
    Case("checkpoint", "converted: header declaring 1 TiB", lambda d: _write(d, "c.safetensors",
                                                                          _header_declaring(1 << 40))),
    Case("checkpoint", "converted: header of 17 MiB", lambda d: _write(d, "c.safetensors",
                                                                    _header_declaring(17 << 20, (17 << 20) + 8))),
]


# -- the VGG16 weights --------------------------------------------------------------------------------------------
class _HugeArray:
    """Pickles as a numpy array declaring 2**40 float32 elements, with 16 bytes of data."""

    def __reduce__(self):
        reconstruct, args = np.empty(0).__reduce__()[:2]
        return reconstruct, args, (1, (1 << 20, 1 << 20), np.dtype("float32"), False, b"\0" * 16)


def _vgg(kernel) -> bytes:
    return pickle.dumps({"VGG16_0": {"Conv_0": {"bias": np.zeros(64, np.float32), "kernel": kernel}}}, protocol=3)


VGG_CASES = _damaged("vgg", "VGG16 pickle", ".ckpt", lambda d: _vgg(np.zeros((3, 3, 3, 64), np.float32)), flips=0) + [
    Case("vgg", "a kernel that runs a command", lambda d: _write(d, "evil.ckpt", _vgg(_touch(d)))),
    Case("vgg", "an array declaring 2**40 elements", lambda d: _write(d, "huge.ckpt", _vgg(_HugeArray()))),
    Case("vgg", "an object array", lambda d: _write(d, "object.ckpt", _vgg(np.array([None, 1], dtype=object)))),
]

CASES = IMAGE_CASES + LATENT_CASES + ADA_CASES + TF_CASES + ROSINALITY_CASES + CONVERTED_CASES + VGG_CASES


# -- running a case -----------------------------------------------------------------------------------------------
def run_case(case: Case, path: Path) -> tuple[str, str]:
    """("error", message) for our one-line error, ("loaded", "") when it loads; anything else propagates."""
    import warnings

    from image2stylegan.errors import Notice

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Notice)
        try:
            READERS[case.reader](path)
        except Image2StyleGANError as e:
            return "error", str(e)
    return "loaded", ""


def _check_outcome(case: Case, outcome: str, message: str, folder: Path) -> None:
    assert not _marker(folder).exists(), f"{case.id}: the payload ran"
    if outcome == "loaded":
        assert case.may_load, f"{case.id}: loaded without an error"
        return
    assert message and "\n" not in message, f"{case.id}: not one line: {message!r}"
    assert "weights_only=False" not in message and "Traceback" not in message, f"{case.id}: {message}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reader_refuses_in_one_line(case, tmp_path):
    path = case.build(tmp_path)
    outcome, message = run_case(case, path)
    _check_outcome(case, outcome, message, tmp_path)


EXPECTED = {  # what the message says for a few cases (the rest: any one line of ours)
    "image: PNG declaring 10000x10000 (100 MP)": "10000x10000 (100 megapixels), over the limit of 40 megapixels",
    "image: PNG declaring 20000x20000 (over Pillow's own limit)": "400 megapixels, over the limit of 40 megapixels",
    "mask: JPEG declaring 60000x60000": "3,600 megapixels, over the limit of 40 megapixels",
    "latent: 'w' declaring 4 TiB of float32": "declares a float32 array of shape [1, 1048576, 1048576] (4 TiB)",
    "latent: object array whose pickle runs a command": "holds Python objects (pickled), which are not loaded",
    "latent: latent.npz, truncated at 50%": "is truncated or corrupt",
    "latent: zip directory declaring 4 GiB": "over the limit of 2 GiB",
    "checkpoint: rosinality .pt (zip): latent_avg runs a command": "it contains code or Python objects we do not load",
    "checkpoint: rosinality .pt (legacy): a storage declaring 8 GiB": "declares 8,589,934,596 bytes of tensor data",
    "checkpoint: converted: resolution 2**20": "resolution = 1048576, expected a power of two from 4 to 4096",
    "checkpoint: converted: 7.3e9 parameters (channel_base 2**20, channel_max 8192, 4096 px)":
        "7,295,222,710 parameters, over the limit of 500,000,000",
    "checkpoint: ADA pickle: img_resolution 2**20": "resolution = 1048576",
    "checkpoint: ADA pickle: tensor view far past its storage": "view.pkl: malformed tensor record: a view of size",
    "checkpoint: converted: header of 17 MiB": "header declares 17,825,792 bytes, over the limit of 16,777,216",
    "checkpoint: converted: resolution '1024' (a string)": "resolution = '1024', expected a power of two",
    "vgg: an object array": "object.ckpt: numpy dtype 'O8' is not numeric",
    "checkpoint: TF StyleGAN2 pickle: dlatent_size 10**9": "expected a whole number from 1 to 8192",
}


@pytest.mark.parametrize("case_id", sorted(EXPECTED))
def test_messages_name_the_problem(case_id, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    outcome, message = run_case(case, case.build(tmp_path))
    assert outcome == "error" and EXPECTED[case_id] in message, message


# -- under a memory limit, in child processes -----------------------------------------------------------------------
def _limit_memory() -> None:  # preexec_fn of the child processes
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]))
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


_CHILD = """
import json, sys, traceback
from pathlib import Path
import test_fuzz
cases = {c.id: c for c in test_fuzz.CASES}
results = []
for case_id, path in json.load(open(sys.argv[1])):
    try:
        outcome, message = test_fuzz.run_case(cases[case_id], Path(path))
    except BaseException as e:
        outcome, message = "crashed", "".join(traceback.format_exception_only(type(e), e)).strip()
    results.append([case_id, outcome, message])
json.dump(results, open(sys.argv[2], "w"))
"""


def test_every_case_under_a_memory_limit(tmp_path):
    """All cases again in one child process whose address space is limited to 4 GiB: every refusal happens before
    memory is reserved for what the file declares (a reader that allocated first would fail with MemoryError)."""
    jobs = []
    for index, case in enumerate(CASES):
        folder = tmp_path / f"{index:03d}"
        folder.mkdir()
        jobs.append((case.id, str(case.build(folder)), folder))
    (tmp_path / "jobs.json").write_text(json.dumps([job[:2] for job in jobs]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "jobs.json"), str(tmp_path / "out.json")],
                          capture_output=True, text=True, env=_child_env(), preexec_fn=_limit_memory, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "out.json").read_text())
    by_id = {case.id: case for case in CASES}
    assert [r[0] for r in results] == [job[0] for job in jobs]
    for (case_id, outcome, message), (_, _, folder) in zip(results, jobs):
        assert outcome != "crashed", f"{case_id}: {message}"
        _check_outcome(by_id[case_id], outcome, message, folder)


# -- through the command line ---------------------------------------------------------------------------------------
def _i2s(*args: str | os.PathLike, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", "from image2stylegan.cli import main; main()", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=_child_env(), preexec_fn=_limit_memory,
                          cwd=cwd, timeout=300)


def _assert_cli_refused(proc: subprocess.CompletedProcess, out: Path, *expected: str) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert all(text in errors[0] for text in expected), errors[0]
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()], sorted(out.rglob("*"))


def _tiny_network(folder: Path) -> Path:
    from image2stylegan.generators.checkpoints import save_converted
    from image2stylegan.generators.tiny import tiny_generator

    return save_converted(tiny_generator(seed=0, resolution=32), folder / "tiny.safetensors")


CLI_CASES = {  # name -> (case id, command builder (path, out folder, work folder) -> args, expected texts)
    "render a latent declaring 4 TiB": (
        "latent: 'w' declaring 4 TiB of float32",
        lambda p, out, d: ["render", p, "--out", out / "x.png"], ("(4 TiB)", "over the limit of 512 MiB")),
    "render an object-array payload": (
        "latent: object array whose pickle runs a command",
        lambda p, out, d: ["render", p, "--out", out / "x.png"], ("not loaded for safety",)),
    "render with --network of 7.3e9 parameters": (
        "checkpoint: converted: 7.3e9 parameters (channel_base 2**20, channel_max 8192, 4096 px)",
        lambda p, out, d: ["render", _single_latent(d), "--out", out / "x.png", "--network", p],
        ("over the limit of 500,000,000",)),
    "convert a legacy .pt declaring 8 GiB": (
        "checkpoint: rosinality .pt (legacy): a storage declaring 8 GiB",
        lambda p, out, d: ["convert", p, out / "x.safetensors"], ("8,589,934,596 bytes",)),
    "convert an ADA pickle that runs a command": (
        "checkpoint: ADA pickle: G_ema runs a command",
        lambda p, out, d: ["convert", p, out / "x.safetensors"], ("refusing to load",)),
    "convert a .pt that runs a command": (
        "checkpoint: rosinality .pt (zip): latent_avg runs a command",
        lambda p, out, d: ["convert", p, out / "x.safetensors"], ("contains code or Python objects",)),
    "convert a safetensors with resolution 2**20": (
        "checkpoint: converted: resolution 2**20",
        lambda p, out, d: ["convert", p, out / "x.safetensors"], ("resolution = 1048576",)),
    "reconstruct a PNG declaring 100 MP (tiny --network)": (
        "image: PNG declaring 10000x10000 (100 MP)",
        lambda p, out, d: ["reconstruct", p, "--outdir", out, "--network", _tiny_network(d), "--w-steps", "1",
                           "--noise-steps", "0"], ("over the limit of 40 megapixels",)),
}


def _single_latent(folder: Path) -> Path:
    from image2stylegan.generators.tiny import tiny_generator
    from image2stylegan.latents import save_latent

    g = tiny_generator(seed=0, resolution=32)
    save_latent(folder / "ok.npz", g.mean_ws(1))
    return folder / "ok.npz"


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_cli_refuses_in_one_line_under_a_memory_limit(name, tmp_path):
    case_id, command, expected = CLI_CASES[name]
    case = next(c for c in CASES if c.id == case_id)
    work = tmp_path / "work"
    work.mkdir()
    path, out = case.build(work), tmp_path / "out"
    proc = _i2s(*command(path, out, work), cwd=tmp_path)
    _assert_cli_refused(proc, out, *expected)
    assert not _marker(work).exists()


@pytest.mark.real_weights
def test_cli_reconstruct_refuses_a_huge_png_with_the_bundled_generator(tmp_path):
    path = _write(tmp_path, "huge.png", _png_declaring(10**4, 10**4))
    proc = _i2s("reconstruct", path, "--outdir", tmp_path / "out", "--w-steps", "1", "--noise-steps", "0",
                cwd=tmp_path)
    _assert_cli_refused(proc, tmp_path / "out", "huge.png is 10000x10000 (100 megapixels)")
