"""Writers of tiny TensorFlow network pickles with the structure of NVIDIA's official files (test helper).

Structure, from NVIDIA's code: ``misc.save_pkl`` dumps the tuple ``(G, D, Gs)`` with ``pickle.HIGHEST_PROTOCOL`` (4
under the Python 3.6 they used); each ``dnnlib.tflib.network.Network`` pickles through ``object.__reduce_ex__`` as
NEWOBJ of that class + BUILD with the ``__getstate__`` dict (version, name, static_kwargs, components,
build_module_src, build_func_name, variables); the variables are numpy 1.x arrays (``numpy.core.multiarray.
_reconstruct``, ``numpy.ndarray``, ``numpy.dtype``) and numpy scalars for 0-d variables (``numpy.core.multiarray.
scalar``, what ``tf.Session.run`` returns for them). Variable names and shapes follow ``training/networks_stylegan.py``
(v1) and ``training/networks_stylegan2.py`` (v2), listed in the order their template graphs create them.
"""

from __future__ import annotations

import copyreg
import io
import math
import pickle

import numpy as np

# -- writing pickles the way NVIDIA's code did ------------------------------------------------------------------
RECONSTRUCT = np.empty(0).__reduce__()[0]
SCALAR = np.float32(0).__reduce__()[0]
MARKER_SRC = "open({path!r}, 'w').write('pwned')  # would run if anyone exec'd build_module_src\n"


class FakeNetwork:
    """Test-only object that pickles exactly like ``dnnlib.tflib.network.Network`` (NEWOBJ + BUILD of the
    ``__getstate__`` dict); the pickler below spells its class as NVIDIA's."""

    def __init__(self, name, func, kwargs, variables, components=None, src="# network module source\n", version=3):
        self.state = {
            "version": version,
            "name": name,
            "static_kwargs": dict(kwargs),
            "components": dict(components or {}),
            "build_module_src": src,
            "build_func_name": func,
            "variables": list(variables.items()),
        }

    def __reduce_ex__(self, protocol):
        return copyreg.__newobj__, (type(self),), self.state


class OfficialPickler(pickle._Pickler):
    """Pure-Python pickler that writes the numpy 1.x / dnnlib global names of the official files."""

    SPELLING = {
        id(FakeNetwork): ("dnnlib.tflib.network", "Network"),
        id(RECONSTRUCT): ("numpy.core.multiarray", "_reconstruct"),
        id(SCALAR): ("numpy.core.multiarray", "scalar"),
    }

    def save_global(self, obj, name=None):
        spelled = self.SPELLING.get(id(obj))
        if spelled is None:
            return super().save_global(obj, name)
        if self.proto >= 4:
            self.save(spelled[0])
            self.save(spelled[1])
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{spelled[0]}\n{spelled[1]}\n".encode("ascii"))
        self.memoize(obj)


def dump_official(obj) -> bytes:
    buf = io.BytesIO()
    OfficialPickler(buf, protocol=4).dump(obj)
    return buf.getvalue()


# -- a tiny StyleGAN v1 with NVIDIA's variable names -------------------------------------------------------------
def v1_kwargs(resolution=32, **extra):
    """Static kwargs as NVIDIA's training loop passes them (num_channels, resolution, label_size) plus tiny sizes."""
    return dict(num_channels=3, resolution=resolution, label_size=0, latent_size=16, dlatent_size=16, mapping_layers=2,
                mapping_fmaps=16, fmap_base=64, fmap_max=8, **extra)  # fmt: skip


def nf(kwargs, stage):
    return min(int(kwargs.get("fmap_base", 8192) / 2.0**stage), kwargs.get("fmap_max", 512))


def v1_variables(kwargs, seed, zeros=False):
    """(Gs own, mapping, synthesis) variables in TF creation order, with TF-like scales (wscale: N(0, 1/lrmul))."""
    rng = np.random.default_rng(seed)

    def randn(*shape, std=1.0):
        return np.zeros(shape, np.float32) if zeros else (std * rng.standard_normal(shape)).astype(np.float32)

    res_log2 = int(math.log2(kwargs["resolution"]))
    z, w = kwargs.get("latent_size", 512), kwargs.get("dlatent_size", 512)
    layers, fmaps, lrmul = kwargs.get("mapping_layers", 8), kwargs.get("mapping_fmaps", 512), 0.01
    own = {"lod": np.float32(0.0), "dlatent_avg": randn(w, std=0.5)}
    mapping, dims = {}, [z] + [fmaps] * (layers - 1) + [w]
    for i in range(layers):
        mapping[f"Dense{i}/weight"] = randn(dims[i], dims[i + 1], std=1 / lrmul)
        mapping[f"Dense{i}/bias"] = randn(dims[i + 1], std=0.1 / lrmul)
    syn = {"lod": np.float32(0.0)}
    for i in range(2 * res_log2 - 2):
        r = 2 ** (i // 2 + 2)
        syn[f"noise{i}"] = randn(1, 1, r, r)

    def layer(scope, cin, cout):
        if cin is not None:
            syn[f"{scope}/weight"] = randn(3, 3, cin, cout)
        syn[f"{scope}/Noise/weight"] = randn(cout, std=0.3)
        syn[f"{scope}/bias"] = randn(cout, std=0.1)
        syn[f"{scope}/StyleMod/weight"] = randn(w, 2 * cout)
        syn[f"{scope}/StyleMod/bias"] = randn(2 * cout, std=0.1)

    def torgb(res):
        syn[f"ToRGB_lod{res_log2 - res}/weight"] = randn(1, 1, nf(kwargs, res - 1), kwargs["num_channels"])
        syn[f"ToRGB_lod{res_log2 - res}/bias"] = randn(kwargs["num_channels"], std=0.1)

    syn["4x4/Const/const"] = randn(1, nf(kwargs, 1), 4, 4)
    layer("4x4/Const", None, nf(kwargs, 1))
    layer("4x4/Conv", nf(kwargs, 1), nf(kwargs, 1))
    torgb(2)
    for res in range(3, res_log2 + 1):
        layer(f"{2**res}x{2**res}/Conv0_up", nf(kwargs, res - 2), nf(kwargs, res - 1))
        layer(f"{2**res}x{2**res}/Conv1", nf(kwargs, res - 1), nf(kwargs, res - 1))
        torgb(res)
    return own, mapping, syn


def v1_gs(kwargs, own, mapping, syn, src="# networks_stylegan.py\n", name="Gs"):
    num_layers = 2 * int(math.log2(kwargs["resolution"])) - 2
    comps = {
        "synthesis": FakeNetwork("G_synthesis", "G_synthesis", kwargs, syn, src=src),
        "mapping": FakeNetwork("G_mapping", "G_mapping", {**kwargs, "dlatent_broadcast": num_layers}, mapping, src=src),
    }
    return FakeNetwork(name, "G_style", kwargs, own, comps, src=src)


def write_v1_pickle(path, kwargs, seed=0, src="# networks_stylegan.py\n", mutate=None):
    """Write (G, D, Gs) like NVIDIA's file; returns Gs's (own, mapping, synthesis) variables. ``mutate`` edits them
    (and the kwargs) before writing, for the strictness tests."""
    own, mapping, syn = v1_variables(kwargs, seed)
    if mutate:
        mutate(own, mapping, syn, kwargs)
    G = v1_gs(kwargs, *v1_variables(kwargs, seed + 100), name="G")  # training weights: must not be the ones loaded
    D = FakeNetwork("D", "D_basic", kwargs, {"lod": np.float32(0.0), "4x4/Dense1/weight": np.ones((4, 1), np.float32)})
    path.write_bytes(dump_official((G, D, v1_gs(kwargs, own, mapping, syn, src=src))))
    return own, mapping, syn


# -- StyleGAN2 (TF) -> stylegan2-ada-pytorch naming -----------------------------------------------------------
def v2_gs(kwargs, seed=0, extra=None):
    """A TF StyleGAN2 Gs (``G_main``) with networks_stylegan2.py's names and shapes for ``kwargs['architecture']``
    (default 'skip'), version-4 states; returns (Gs, own, mapping, synthesis variables)."""
    rng = np.random.default_rng(seed)
    arch = kwargs.get("architecture", "skip")

    def randn(*shape, std=1.0):
        return (std * rng.standard_normal(shape)).astype(np.float32)

    res_log2, w = int(math.log2(kwargs["resolution"])), kwargs["dlatent_size"]
    own = {"lod": np.float32(0.0), "dlatent_avg": randn(w)}
    mapping, dims = {}, [kwargs["latent_size"]] + [kwargs["mapping_fmaps"]] * (kwargs["mapping_layers"] - 1) + [w]
    for i in range(kwargs["mapping_layers"]):
        mapping[f"Dense{i}/weight"] = randn(dims[i], dims[i + 1], std=100.0)  # N(0, 1/lrmul) as TF initialises
        mapping[f"Dense{i}/bias"] = randn(dims[i + 1], std=10.0)
    syn = {f"noise{i}": randn(1, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2)) for i in range(2 * res_log2 - 3)}

    def layer(scope, cin, cout, k=3, noise=True):
        syn[f"{scope}/weight"] = randn(k, k, cin, cout)
        syn[f"{scope}/mod_weight"] = randn(w, cin)
        syn[f"{scope}/mod_bias"] = randn(cin, std=0.2)
        if noise:
            syn[f"{scope}/noise_strength"] = np.float32(0.3 * rng.standard_normal())
        syn[f"{scope}/bias"] = randn(cout, std=0.2)

    syn["4x4/Const/const"] = randn(1, nf(kwargs, 1), 4, 4)
    layer("4x4/Conv", nf(kwargs, 1), nf(kwargs, 1))
    if arch == "skip":
        layer("4x4/ToRGB", nf(kwargs, 1), 3, k=1, noise=False)
    for r in range(3, res_log2 + 1):
        layer(f"{2**r}x{2**r}/Conv0_up", nf(kwargs, r - 2), nf(kwargs, r - 1))
        layer(f"{2**r}x{2**r}/Conv1", nf(kwargs, r - 1), nf(kwargs, r - 1))
        if arch == "resnet":
            syn[f"{2**r}x{2**r}/Skip/weight"] = randn(1, 1, nf(kwargs, r - 2), nf(kwargs, r - 1))
        if arch == "skip" or r == res_log2:
            layer(f"{2**r}x{2**r}/ToRGB", nf(kwargs, r - 1), 3, k=1, noise=False)
    syn.update(extra or {})
    comps = {
        "synthesis": FakeNetwork("G_synthesis", "G_synthesis_stylegan2", kwargs, syn, version=4),
        "mapping": FakeNetwork(
            "G_mapping", "G_mapping", {**kwargs, "dlatent_broadcast": 2 * res_log2 - 2}, mapping, version=4
        ),
    }
    return FakeNetwork("Gs", "G_main", kwargs, own, comps, version=4), own, mapping, syn
