"""NVIDIA's TensorFlow network pickles (StyleGAN ``karras2019stylegan-*.pkl``, StyleGAN2 ``stylegan2-*.pkl``), read
without TensorFlow and without executing anything from the file.

Format (NVlabs ``dnnlib/tflib/network.py``, ``Network.__getstate__``; files written by ``misc.save_pkl`` with
``pickle.HIGHEST_PROTOCOL``): the file is the tuple ``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects,
each pickled as the class plus a state dict

    version           2 or 3 (stylegan repo), 4 (stylegan2 repo)
    name              'Gs', 'G_synthesis', 'G_mapping', ...
    static_kwargs     dict of the build function's keyword arguments (resolution, fmap_base, ...)
    components        dict of sub-networks (Gs: 'mapping', 'synthesis')
    build_module_src  the Python source of the module defining the network
    build_func_name   'G_style' / 'G_main', 'G_synthesis' / 'G_synthesis_stylegan2', 'G_mapping', ...
    variables         list of (local variable name, numpy array or numpy scalar)

NVIDIA's loader ``exec``s ``build_module_src`` to rebuild the graph. We never do: the file is read by the package's
one restricted unpickler (:mod:`.safe_pickle`, policy ``TF_NETWORK_PICKLE``), which maps the Network class to an
inert :class:`~.safe_pickle.RecordedState` that only stores that dict (the source stays an unused string, never
compiled) and admits numeric numpy arrays and scalars besides; any other global (``os.system``, ``builtins.exec``,
a class with a ``__reduce__``) is refused before it is called. The recorded states become :class:`TFNetwork`
records here; the strict converters are :mod:`.tf_stylegan1` (StyleGAN v1, targets :class:`~.stylegan1.StyleGAN`)
and :mod:`.tf_stylegan2` (targets :class:`~.stylegan2.StyleGAN2`), which share :class:`VariableTable`.
"""

from __future__ import annotations

import os
import pickletools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import WeightsFormatError
from .safe_pickle import TF_NETWORK_PICKLE, RecordedState, load_restricted_pickle

__all__ = [
    "TFNetwork",
    "VariableTable",
    "check_kwargs",
    "is_tf_network_pickle",
    "merged_static_kwargs",
    "read_tf_generator",
    "read_tf_pickle",
    "tf_generator_kind",
]

_STATE_KEYS = {"version", "name", "static_kwargs", "components", "build_module_src", "build_func_name", "variables"}
_REQUIRED_STATE_KEYS = _STATE_KEYS - {"components"}  # version-2 pickles may lack components (NVIDIA defaults to {})
_VERSIONS = (2, 3, 4)


@dataclass(frozen=True)
class TFNetwork:
    """The recorded state of one ``dnnlib.tflib.network.Network`` (inert data only).

    ``build_module_src`` is kept as text for inspection; nothing in this package executes or compiles it.
    """

    version: int
    name: str
    static_kwargs: Mapping[str, Any]
    components: Mapping[str, TFNetwork]
    build_func_name: str
    variables: Mapping[str, np.ndarray]  # local name -> array (numpy scalars become 0-d arrays), in file order
    build_module_src: str = field(repr=False, default="")


def read_tf_pickle(source: str | os.PathLike[str] | BinaryIO) -> Any:
    """Unpickle a TF network pickle safely; every Network in it becomes a :class:`TFNetwork`.

    Args:
        source: a path or a binary file object.

    Returns:
        The file's top-level object (the tuple ``(G, D, Gs)`` for NVIDIA's files) with networks as TFNetwork.

    Raises:
        WeightsNotFoundError: the path cannot be opened.
        WeightsFormatError: a forbidden global (possible booby trap), a malformed Network state, non-numeric
            arrays, or a file that is not a pickle at all.
    """
    raw = load_restricted_pickle(source, TF_NETWORK_PICKLE)
    try:
        return _freeze(raw, "<root>")
    except WeightsFormatError as exc:
        raise WeightsFormatError(f"{_label(source)}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError for a Network state that contains itself
        reason = f"{type(exc).__name__}: {exc}"
        raise WeightsFormatError(f"{_label(source)}: not a readable {TF_NETWORK_PICKLE.name} ({reason})") from None


def _label(source: str | os.PathLike[str] | BinaryIO) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<stream>")


def is_tf_network_pickle(source: str | os.PathLike[str] | BinaryIO) -> bool:
    """Whether a file is a pickle whose first global is ``dnnlib.tflib.network.Network`` (NVIDIA's TF pickles).

    A format sniffer for checkpoint loaders: it only disassembles the first opcodes (``pickletools.genops``, which
    builds nothing) of the first 64 KiB; a file position is restored.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            head = f.read(1 << 16)
    else:
        pos = source.tell()
        head = source.read(1 << 16)
        source.seek(pos)
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(head):
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings.append(arg)
            elif op.name == "STACK_GLOBAL":
                return strings[-2:] == ["dnnlib.tflib.network", "Network"]
            elif op.name == "GLOBAL":  # protocols 0-3: "module name" in one argument
                return arg == "dnnlib.tflib.network Network"
    except Exception:  # noqa: BLE001 - truncated head or not a pickle
        return False
    return False


def read_tf_generator(source: str | os.PathLike[str] | BinaryIO) -> TFNetwork:
    """The generator ``Gs`` (moving-average weights, with ``mapping`` and ``synthesis`` components) of a TF pickle.

    Accepts NVIDIA's ``(G, D, Gs)`` tuple or a pickle of ``Gs`` alone.
    """
    top = read_tf_pickle(source)
    if isinstance(top, tuple) and len(top) == 3 and all(isinstance(n, TFNetwork) for n in top):
        gs = top[2]
    elif isinstance(top, TFNetwork):
        gs = top
    else:
        raise WeightsFormatError(f"{source}: expected the tuple (G, D, Gs) of networks, found {type(top).__name__}")
    missing = {"mapping", "synthesis"} - set(gs.components)
    if missing:
        raise WeightsFormatError(f"{source}: network {gs.name!r} lacks component(s) {sorted(missing)}: not a generator")
    return gs


def tf_generator_kind(gs: TFNetwork) -> str:
    """'stylegan1' or 'stylegan2', from the build functions recorded in the pickle (not from its source)."""
    kinds = {("G_style", "G_synthesis"): "stylegan1", ("G_main", "G_synthesis_stylegan2"): "stylegan2"}
    key = (gs.build_func_name, gs.components["synthesis"].build_func_name)
    if key not in kinds:
        raise WeightsFormatError(f"unsupported TF generator: build functions {key}; supported: {sorted(kinds)}")
    return kinds[key]


def _freeze(obj: Any, where: str) -> Any:
    """Replace stubs by TFNetwork (recursively through tuples, lists and dicts) and validate their states."""
    if isinstance(obj, RecordedState):
        return _network(obj.state, where)
    if isinstance(obj, tuple):
        return tuple(_freeze(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, list):
        return [_freeze(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        return {k: _freeze(v, f"{where}[{k!r}]") for k, v in obj.items()}
    return obj


def _network(state: Any, where: str) -> TFNetwork:
    def bad(msg: str) -> WeightsFormatError:
        return WeightsFormatError(f"Network at {where}: {msg}")

    if not isinstance(state, dict):
        raise bad(f"state is {type(state).__name__}, expected a dict")
    keys = set(state)
    if keys - _STATE_KEYS or _REQUIRED_STATE_KEYS - keys:
        raise bad(f"state keys {sorted(keys)} differ from NVIDIA's {sorted(_STATE_KEYS)}")
    if state["version"] not in _VERSIONS:
        raise bad(f"unsupported Network pickle version {state['version']!r} (known: {_VERSIONS})")
    for key in ("name", "build_func_name", "build_module_src"):
        if not isinstance(state[key], str):
            raise bad(f"{key} is {type(state[key]).__name__}, expected str")
    if not isinstance(state["static_kwargs"], dict) or not isinstance(state.get("components", {}), dict):
        raise bad("static_kwargs and components must be dicts")
    components = {}
    for name, comp in state.get("components", {}).items():
        if not isinstance(comp, RecordedState):
            raise bad(f"component {name!r} is {type(comp).__name__}, expected a Network")
        components[name] = _network(comp.state, f"{where}.{name}")
    variables: dict[str, np.ndarray] = {}
    if not isinstance(state["variables"], (list, tuple)):
        raise bad("variables must be a list of (name, array) pairs")
    for item in state["variables"]:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
            raise bad(f"malformed variable entry {type(item).__name__}")
        name, value = item
        if isinstance(value, np.generic):
            value = np.asarray(value)  # tf.Session.run returns numpy scalars for 0-d variables (lod, noise_strength)
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            raise bad(f"variable {name!r} is not a numeric numpy array ({type(value).__name__})")
        if name in variables:
            raise bad(f"variable {name!r} appears twice")
        variables[name] = value
    return TFNetwork(
        version=state["version"],
        name=state["name"],
        static_kwargs=dict(state["static_kwargs"]),
        components=components,
        build_func_name=state["build_func_name"],
        variables=variables,
        build_module_src=state["build_module_src"],
    )


# -- shared converter machinery ----------------------------------------------------------------------------------
class VariableTable:
    """Strict bookkeeping for one converter: every source variable is taken or explicitly ignored (with a reason),
    every target tensor is filled once, and shapes are checked; :meth:`finish` raises on anything left over."""

    def __init__(self, networks: Mapping[str, TFNetwork], what: str):
        # Keys "prefix/name": "" for Gs itself, "mapping/" and "synthesis/" for the components.
        self.what = what
        self.source: dict[str, np.ndarray] = {}
        for prefix, net in networks.items():
            self.source.update({f"{prefix}{k}": v for k, v in net.variables.items()})
        self.used: set[str] = set()
        self.ignored: dict[str, str] = {}
        self.out: dict[str, torch.Tensor] = {}

    def take(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.source:
            raise WeightsFormatError(f"{self.what}: missing TF variable {name!r} (expected shape {list(shape)})")
        value = self.source[name]
        if value.shape != shape:
            raise WeightsFormatError(
                f"{self.what}: TF variable {name!r} has shape {list(value.shape)}, expected {list(shape)}"
            )
        if not np.all(np.isfinite(value)):
            raise WeightsFormatError(f"{self.what}: TF variable {name!r} holds NaN or infinite values")
        self.used.add(name)
        return value.astype(np.float32, copy=False)

    def put(self, target: str, value: np.ndarray) -> None:
        if target in self.out:
            raise WeightsFormatError(f"{self.what}: target tensor {target!r} filled twice")
        # np.array, not np.ascontiguousarray: the latter turns 0-d arrays (noise_strength) into 1-d ones.
        self.out[target] = torch.from_numpy(np.array(value, dtype=np.float32, order="C"))

    def ignore(self, name: str, reason: str) -> np.ndarray:
        if name not in self.source:
            raise WeightsFormatError(f"{self.what}: missing TF variable {name!r}")
        self.ignored[name] = reason
        return self.source[name]

    def finish(self) -> dict[str, torch.Tensor]:
        """The converted tensors, once every source variable is accounted for."""
        left = sorted(set(self.source) - self.used - set(self.ignored))
        if left:
            raise WeightsFormatError(f"{self.what}: {len(left)} TF variable(s) not understood: {left[:6]}")
        return self.out


def merged_static_kwargs(gs: TFNetwork, what: str) -> dict[str, Any]:
    """The static kwargs of Gs and its two components as one dict. NVIDIA passes one kwargs set to all three (each
    build function ignores what it does not know); a key with two different values is refused."""
    merged: dict[str, Any] = {}
    for net in (gs, gs.components["mapping"], gs.components["synthesis"]):
        for key, value in net.static_kwargs.items():
            if key == "dlatent_broadcast":
                continue  # the mapping's own (= number of W+ rows), checked by the converters
            if key in merged and merged[key] != value:
                raise WeightsFormatError(
                    f"{what}: static kwarg {key!r} differs between networks: {merged[key]!r} vs {value!r}"
                )
            merged[key] = value
    return merged


def check_kwargs(
    kwargs: Mapping[str, Any], required: Mapping[str, Any], ignored: set[str], config_keys: set[str], what: str
) -> None:
    """Refuse unknown static kwargs and values that change the math. ``required``: key -> the only value we
    implement (NVIDIA's default); ``ignored``: run-time or training-only settings; ``config_keys``: read into the
    config by the caller."""
    unknown = sorted(set(kwargs) - set(required) - ignored - config_keys)
    if unknown:
        raise WeightsFormatError(f"{what}: unknown static kwargs {unknown}; refusing to guess what they change")
    for key, value in required.items():
        if key in kwargs and kwargs[key] != value:
            raise WeightsFormatError(f"{what}: {key}={kwargs[key]!r} is not supported (only {value!r})")
