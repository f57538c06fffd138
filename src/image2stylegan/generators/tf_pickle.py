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

NVIDIA's loader ``exec``s ``build_module_src`` to rebuild the graph. We never do: :class:`_SafeUnpickler` maps the
Network class to an inert stub that only stores that dict (the source stays an unused string, never compiled), and
admits numpy's array/scalar reconstruction globals besides; any other global (``os.system``, ``builtins.exec``, a
class with a ``__reduce__``) is refused before it is called. The arrays then go through a strict converter:
:func:`convert_tf_stylegan1` here (targets :class:`~.stylegan1.StyleGAN`); StyleGAN2 in :mod:`.tf_stylegan2`.
"""

from __future__ import annotations

import os
import pickle
import pickletools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch

from ..errors import WeightsFormatError, WeightsNotFoundError
from .base import StyleGenerator
from .stylegan1 import StyleGAN, StyleGANConfig

# numpy's reconstruction functions, taken from numpy's own reduce so the same objects serve numpy 1 and 2.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.float32(0).__reduce__()[0]

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


class _NetworkStub:
    """Stands in for ``dnnlib.tflib.network.Network`` while unpickling: ``__setstate__`` keeps the dict, nothing
    else. NEWOBJ creates it with ``__new__``; a REDUCE call with arguments fails in ``__init__``."""

    def __init__(self) -> None:
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("dnnlib.tflib.network", "Network"): _NetworkStub,
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only the globals above; everything else is refused before anything is imported or called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise WeightsFormatError(
                f"refusing to load {module}.{name}: a TensorFlow network pickle may only hold "
                "dnnlib.tflib.network.Network states and numpy arrays (nothing in the file is executed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsFormatError("refusing a pickle with persistent ids: not a TensorFlow network pickle")


def read_tf_pickle(source: str | os.PathLike[str] | BinaryIO) -> Any:
    """Unpickle a TF network pickle safely; every Network in it becomes a :class:`TFNetwork`.

    Args:
        source: a path or a binary file object.

    Returns:
        The file's top-level object (the tuple ``(G, D, Gs)`` for NVIDIA's files) with networks as TFNetwork.

    Raises:
        WeightsFormatError: a forbidden global (possible booby trap), a malformed Network state, non-numeric
            arrays, or a file that is not a pickle at all.
    """
    label = str(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "<stream>")
    if isinstance(source, (str, os.PathLike)):
        try:
            f = open(source, "rb", buffering=1 << 20)
        except OSError as exc:
            raise WeightsNotFoundError(f"cannot read {label}: {exc.strerror or exc}") from None
    else:
        f = source
    try:
        raw = _SafeUnpickler(f, encoding="latin1").load()
        return _freeze(raw, "<root>")
    except WeightsFormatError as exc:
        raise WeightsFormatError(f"{label}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any unpickling failure (or a cyclic state) means "not a file we read"
        reason = f"{type(exc).__name__}: {exc}"
        raise WeightsFormatError(f"{label}: not a readable TensorFlow network pickle ({reason})") from None
    finally:
        if f is not source:
            f.close()


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
    if isinstance(obj, _NetworkStub):
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
        if not isinstance(comp, _NetworkStub):
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


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """``module.load_state_dict(state, strict=True)``, raising WeightsFormatError that names the first missing,
    unexpected or mis-shaped tensors (the target side of a converter's strictness)."""
    expected = module.state_dict()
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise WeightsFormatError(f"{what}: target tensors missing {missing[:6]}, unexpected {extra[:6]}")
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            want = list(expected[key].shape)
            raise WeightsFormatError(f"{what}: {key} has shape {list(value.shape)}, expected {want}")
    module.load_state_dict(state, strict=True)


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


# -- StyleGAN v1 -------------------------------------------------------------------------------------------------
_V1_REQUIRED = {
    "label_size": 0,  # conditional models need a label embedding we do not implement
    "use_wscale": True,
    "normalize_latents": True,
    "mapping_nonlinearity": "lrelu",
    "nonlinearity": "lrelu",
    "use_styles": True,
    "const_input_layer": True,
    "use_noise": True,
    "use_pixel_norm": False,
    "use_instance_norm": True,
    "dtype": "float32",
    "is_training": False,
    "is_validation": False,
}
# Run-time or training-only: randomize_noise (we take noise as an argument), structure ('fixed' / 'linear' /
# 'recursive' / 'auto' compute the same image at lod 0), the moving-average and mixing settings of training,
# validation-time truncation and graph-cosmetics flags.
_V1_IGNORED = {
    "randomize_noise", "structure", "dlatent_avg_beta", "style_mixing_prob", "truncation_psi_val",
    "truncation_cutoff_val", "force_clean_graph", "is_template_graph",
}
# static kwarg -> StyleGANConfig field
_V1_CONFIG = {
    "resolution": "resolution", "latent_size": "z_dim", "dlatent_size": "w_dim", "mapping_layers": "mapping_layers",
    "mapping_fmaps": "mapping_fmaps", "mapping_lrmul": "mapping_lr_mul", "fmap_base": "fmap_base",
    "fmap_decay": "fmap_decay", "fmap_max": "fmap_max", "num_channels": "image_channels",
    "blur_filter": "blur_filter", "fused_scale": "fused_scale", "truncation_psi": "truncation_psi",
    "truncation_cutoff": "truncation_cutoff",
}


def stylegan1_config_from_kwargs(kwargs: Mapping[str, Any], what: str = "StyleGAN") -> StyleGANConfig:
    """StyleGANConfig from TF static kwargs; absent keys take the TF functions' defaults (= the config's)."""
    check_kwargs(kwargs, _V1_REQUIRED, _V1_IGNORED, set(_V1_CONFIG), what)
    values = {_V1_CONFIG[k]: v for k, v in kwargs.items() if k in _V1_CONFIG}
    if "blur_filter" in values:
        values["blur_filter"] = tuple(values["blur_filter"] or ())  # None = no filtering
    # In G_style a None psi, or a None / non-positive cutoff, disables truncation (psi 1), unlike StyleGAN2 where a
    # None cutoff means every row.
    cutoff = values.get("truncation_cutoff", StyleGANConfig.truncation_cutoff)
    if values.get("truncation_psi", 0.7) is None or cutoff is None or cutoff <= 0:
        values["truncation_psi"], values["truncation_cutoff"] = 1.0, StyleGANConfig.truncation_cutoff
    try:
        return StyleGANConfig(**values)
    except (TypeError, ValueError) as exc:
        raise WeightsFormatError(f"{what}: unsupported settings: {exc}") from None


def convert_tf_stylegan1(gs: TFNetwork) -> tuple[dict[str, torch.Tensor], StyleGANConfig]:
    """NVIDIA TF StyleGAN (v1) ``Gs`` -> (state dict for ``StyleGAN(config)``, config). Strict: every TF variable
    is used with its expected shape or ignored for a stated reason, every static kwarg is understood; the target side
    is checked by :func:`load_state_strict` when the module is built (:func:`load_tf_generator` does both).

    TF layouts: dense weights [in, out] -> [out, in]; conv weights [kh, kw, in, out] -> [out, in, kh, kw]; StyleMod
    [w_dim, 2C] -> [2C, w_dim] (rows: scale then shift, as TF's reshape to [-1, 2, C]); noise variables are already
    NCHW [1, 1, r, r]. Equalised-lr scales are not folded (our modules apply them at run time as TF does).

    Ignored, with their reasons: ``lod`` (must be 0: a mid-growing snapshot would blend resolutions) and the
    lower-resolution ``ToRGB_lod{k > 0}`` (progressive-growing outputs that do not contribute at lod 0).
    """
    what = f"TF StyleGAN pickle ({gs.name})"
    if tf_generator_kind(gs) != "stylegan1":
        raise WeightsFormatError(f"{what}: this is a StyleGAN2 generator; use convert_tf_stylegan2")
    config = stylegan1_config_from_kwargs(merged_static_kwargs(gs, what), what)
    broadcast = gs.components["mapping"].static_kwargs.get("dlatent_broadcast")
    if broadcast not in (None, config.num_ws):
        raise WeightsFormatError(f"{what}: mapping broadcasts to {broadcast} W+ rows, synthesis has {config.num_ws}")
    networks = {"": gs, "mapping/": gs.components["mapping"], "synthesis/": gs.components["synthesis"]}
    table = VariableTable(networks, what)

    for prefix in ("", "synthesis/"):
        lod = table.ignore(f"{prefix}lod", "progressive-growing level; only lod 0 (full resolution) is rendered")
        if lod.shape != () or float(lod) != 0.0:
            raise WeightsFormatError(f"{what}: {prefix}lod = {lod!r}; only fully grown networks (lod 0) are supported")
    table.put("w_avg", table.take("dlatent_avg", (config.w_dim,)))

    dims = [config.z_dim] + [config.mapping_fmaps] * (config.mapping_layers - 1) + [config.w_dim]
    for i in range(config.mapping_layers):
        table.put(f"mapping_net.fc{i}.weight", table.take(f"mapping/Dense{i}/weight", (dims[i], dims[i + 1])).T)
        table.put(f"mapping_net.fc{i}.bias", table.take(f"mapping/Dense{i}/bias", (dims[i + 1],)))

    s = "synthesis/"
    table.put("const", table.take(f"{s}4x4/Const/const", (1, config.channels(4), 4, 4)))
    layer_idx = 0
    for res in config.resolutions:
        scopes = (("const", "Const"), ("conv", "Conv")) if res == 4 else (("conv0", "Conv0_up"), ("conv1", "Conv1"))
        out_ch = config.channels(res)
        for j, (ours, theirs) in enumerate(scopes):
            src, dst = f"{s}{res}x{res}/{theirs}", f"layers.b{res}.{ours}"
            if theirs != "Const":
                in_ch = config.channels(res // 2) if j == 0 and res > 4 else out_ch
                table.put(f"{dst}.weight", table.take(f"{src}/weight", (3, 3, in_ch, out_ch)).transpose(3, 2, 0, 1))
            table.put(f"{dst}.noise_weight", table.take(f"{src}/Noise/weight", (out_ch,)))
            table.put(f"{dst}.bias", table.take(f"{src}/bias", (out_ch,)))
            table.put(f"{dst}.style.weight", table.take(f"{src}/StyleMod/weight", (config.w_dim, 2 * out_ch)).T)
            table.put(f"{dst}.style.bias", table.take(f"{src}/StyleMod/bias", (2 * out_ch,)))
            table.put(f"{dst}.noise_const", table.take(f"{s}noise{layer_idx}", (1, 1, res, res)))
            layer_idx += 1
    rgb_in = config.channels(config.resolution)
    rgb_weight = table.take(f"{s}ToRGB_lod0/weight", (1, 1, rgb_in, config.image_channels))
    table.put("torgb.weight", rgb_weight.transpose(3, 2, 0, 1))
    table.put("torgb.bias", table.take(f"{s}ToRGB_lod0/bias", (config.image_channels,)))
    for name in list(table.source):
        if name.startswith(f"{s}ToRGB_lod") and name not in table.used:
            table.ignore(name, "lower-resolution ToRGB of progressive growing; unused at lod 0")

    # Every target tensor of StyleGAN(config) is enumerated above from the config; load_state_strict checks that
    # against the module when it is built (load_tf_stylegan1), without building a throwaway one here.
    return table.finish(), config


def load_tf_stylegan1(source: str | os.PathLike[str] | BinaryIO, device: str | torch.device = "cpu") -> StyleGAN:
    """Read a TF StyleGAN (v1) pickle into a frozen, eval-mode :class:`StyleGAN` (``w_avg`` = TF ``dlatent_avg``)."""
    return load_tf_generator(source, device, kind="stylegan1")  # type: ignore[return-value]


def load_tf_generator(
    source: str | os.PathLike[str] | BinaryIO, device: str | torch.device = "cpu", *, kind: str | None = None
) -> StyleGenerator:
    """Any NVIDIA TF generator pickle (StyleGAN v1 or StyleGAN2, told apart by the recorded build functions) as a
    frozen, eval-mode :class:`StyleGAN` or :class:`~.stylegan2.StyleGAN2`; ``kind`` ('stylegan1' / 'stylegan2')
    refuses the other one. ``w_avg`` is TF's ``dlatent_avg``; the stored noise maps are the default noise."""
    gs = read_tf_generator(source)
    found = tf_generator_kind(gs)
    if kind is not None and found != kind:
        raise WeightsFormatError(f"{source}: a {found} pickle, expected {kind}")
    generator: StyleGenerator
    if found == "stylegan1":
        state, config = convert_tf_stylegan1(gs)
        generator = StyleGAN(config)
    else:
        from .stylegan2 import StyleGAN2  # imported here: tf_stylegan2 imports this module
        from .tf_stylegan2 import convert_tf_stylegan2

        state, config2 = convert_tf_stylegan2(gs)
        generator = StyleGAN2(config2)
    load_state_strict(generator, state, f"{source}")
    return generator.requires_grad_(False).eval().to(device)


__all__ = [
    "load_state_strict",
    "is_tf_network_pickle",
    "load_tf_generator",
    "TFNetwork",
    "VariableTable",
    "check_kwargs",
    "convert_tf_stylegan1",
    "load_tf_stylegan1",
    "merged_static_kwargs",
    "read_tf_generator",
    "read_tf_pickle",
    "stylegan1_config_from_kwargs",
    "tf_generator_kind",
]
