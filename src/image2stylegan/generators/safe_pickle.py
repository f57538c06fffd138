"""Read NVIDIA's network pickles without executing anything from the file.

A stylegan2-ada-pytorch / stylegan3 ``.pkl`` is a plain ``pickle.dump`` of a dict such as ``{'G', 'D', 'G_ema',
'augment_pipe', 'training_set_kwargs'}``. Each network is pickled by ``torch_utils.persistence``: its ``__reduce__``
returns ``(torch_utils.persistence._reconstruct_persistent_obj, (meta,))`` where ``meta`` is a dict ``{'type':
'class', 'version': 6, 'module_src': <the Python source of the module defining the class>, 'class_name': ...,
'state': <the module's __dict__>}``. NVIDIA's loader ``exec``s ``module_src``: loading one of their pickles runs
whatever code it carries. Tensors inside are pickled by torch's ``__reduce_ex__``: ``_rebuild_parameter`` /
``_rebuild_tensor_v2`` around storages, each storage being ``torch.storage._load_from_bytes(<legacy torch.save
stream>)``. numpy scalars (``numpy.core.multiarray.scalar`` + ``numpy.dtype``) hold gains such as ``act_gain``,
``dnnlib.util.EasyDict`` holds keyword arguments and ``collections.OrderedDict`` holds parameters and hooks.

:class:`RestrictedUnpickler` resolves globals only through an explicit allow-list of inert stand-ins:

* the persistent-object hook becomes :class:`PersistentObject`, which records the class name, the version and the
  state dict; of ``module_src`` only a sha256 and the line count are kept, the text is never compiled or run;
* tensors are rebuilt by our own checked functions; each storage stream goes through ``torch.load(...,
  weights_only=True)``, torch's own restricted loader;
* numpy scalars and dtypes are limited to numeric types, ``EasyDict`` becomes a plain ``dict`` subclass.

Any other global (``os.system``, ``builtins.eval``, a TensorFlow ``Network``, a class from ``torch_utils``) raises
:class:`WeightsFormatError` naming it, before anything from the file is called. Persistent ids (which plain pickles
never contain) are refused too. Other loaders reuse this class with their own stand-ins through ``extra_globals``
(see :func:`load_restricted_pickle`); :data:`NUMPY_ARRAY_GLOBALS` admits numeric numpy arrays.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import WeightsFormatError

__all__ = [
    "NUMPY_ARRAY_GLOBALS",
    "NVIDIA_PICKLE_GLOBALS",
    "EasyDict",
    "PersistentObject",
    "RestrictedUnpickler",
    "load_restricted_pickle",
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
    try:
        storage = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError / RuntimeError / ValueError on bad or unsafe streams
        raise WeightsFormatError(f"storage stream refused by torch's weights-only loader: {e}") from e
    if not isinstance(storage, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise WeightsFormatError(f"storage stream holds a {type(storage).__name__}, expected a storage")
    return storage


def _check_hooks(hooks: Any) -> None:
    if hooks is not None and not (isinstance(hooks, dict) and not hooks):
        raise WeightsFormatError("tensor pickled with backward hooks (they would be code); refusing")


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a tensor view of a storage, bounds checked by torch."""
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
    try:
        return torch.empty((0,), dtype=dtype).set_(storage, storage_offset, size, stride)
    except RuntimeError as e:  # out of bounds for the storage
        raise WeightsFormatError(f"malformed tensor record: {e}") from e


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


# (module, name) -> stand-in, for stylegan2-ada-pytorch and stylegan3 pickles.
NVIDIA_PICKLE_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("_codecs", "encode"): _codecs_encode,
}

# Numeric numpy arrays (TensorFlow-era pickles store weights this way); add to extra_globals where needed.
NUMPY_ARRAY_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("numpy", "ndarray"): np.ndarray,  # only ever passed as _reconstruct's subtype argument, never called
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


class RestrictedUnpickler(pickle.Unpickler):
    """A ``pickle.Unpickler`` whose globals come only from ``allowed`` ((module, name) -> stand-in).

    Nothing is imported: ``find_class`` looks the pair up and raises :class:`WeightsFormatError` for anything else,
    so a stream that names ``os.system`` (or any class or function from the file's own code) fails at that opcode,
    before a single call is made.
    """

    def __init__(self, file: BinaryIO, allowed: Mapping[tuple[str, str], Any], source: str = "pickle"):
        super().__init__(file)
        self._allowed = allowed
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            pass
        hint = ""
        if module.startswith("dnnlib.tflib"):
            hint = " (this is a TensorFlow-era NVIDIA pickle, not a PyTorch one)"
        raise WeightsFormatError(
            f"{self._source}: refusing to load: it references {module}.{name}, which is not on the allow-list of "
            f"tensor, container and persistent-object types this loader reads without running code{hint}"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsFormatError(f"{self._source}: unexpected persistent id {str(pid)[:80]!r} in a plain pickle")


def load_restricted_pickle(
    source: str | Path | BinaryIO,
    *,
    extra_globals: Mapping[tuple[str, str], Any] | None = None,
) -> Any:
    """Unpickle ``source`` (a path or a binary file object) through :class:`RestrictedUnpickler` with
    :data:`NVIDIA_PICKLE_GLOBALS` plus ``extra_globals``.

    Raises:
        WeightsFormatError: a refused global, a malformed record, or a stream that is not a complete pickle.
    """
    allowed = {**NVIDIA_PICKLE_GLOBALS, **(extra_globals or {})}
    if isinstance(source, (str, Path)):
        with open(source, "rb") as f:
            return _load(f, allowed, str(source))
    return _load(source, allowed, getattr(source, "name", "pickle"))


def _load(f: BinaryIO, allowed: Mapping, name: str) -> Any:
    try:
        return RestrictedUnpickler(f, allowed, source=name).load()
    except WeightsFormatError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        # TypeError / AttributeError: a stand-in called with the wrong arguments, or BUILD on an object without
        # instance state; both mean the stream does not have the structure we admit.
        raise WeightsFormatError(f"{name}: not a readable network pickle: {type(e).__name__}: {e}") from e
