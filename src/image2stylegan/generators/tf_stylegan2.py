"""NVIDIA TF StyleGAN2 ``Gs`` (``stylegan2-*.pkl``, read by :func:`.tf_pickle.read_tf_generator`) -> tensors in
stylegan2-ada-pytorch's parameter naming (``training/networks.py``), strictly.

Variables of ``training/networks_stylegan2.py`` (``G_main`` / ``G_mapping`` / ``G_synthesis_stylegan2``) and where
they go (W = w_dim, I / O = in / out channels, C = image channels):

    ================================  ==========================  ============================================
    TF variable                       ADA-named target            transform
    ================================  ==========================  ============================================
    dlatent_avg [W]                   mapping.w_avg               as is
    lod []                            (ignored)                   must be 0; G_synthesis_stylegan2 has no lod
    mapping/Dense{i}/weight [in,out]  mapping.fc{i}.weight        transpose -> [out, in]
    mapping/Dense{i}/bias             mapping.fc{i}.bias          as is
    synthesis/4x4/Const/const         synthesis.b4.const          [1, O, 4, 4] -> [O, 4, 4]
    synthesis/{r}x{r}/{L}/weight      synthesis.b{r}.{l}.weight   [k, k, I, O] -> [O, I, k, k]; Conv0_up also
                                                                  flipped spatially ([::-1, ::-1]): ADA's
                                                                  transposed conv uses the rotated kernel
    .../{L}/mod_weight [W, I]         ....{l}.affine.weight       transpose -> [I, W]
    .../{L}/mod_bias [I]              ....{l}.affine.bias         + 1 (TF adds the 1 at run time)
    .../{L}/noise_strength []         ....{l}.noise_strength      as is
    .../{L}/bias [O]                  ....{l}.bias                as is
    synthesis/noise{i} [1, 1, r, r]   ....{l}.noise_const         [0, 0] -> [r, r]; i = 0 for b4.conv1, then
                                                                  2 log2(r) - 5 (conv0) / 2 log2(r) - 4 (conv1)
    synthesis/{r}x{r}/ToRGB/*         synthesis.b{r}.torgb.*      as the convs (1x1, no noise)
    synthesis/{r}x{r}/Skip/weight     synthesis.b{r}.skip.weight  flipped + transposed ('resnet' only)
    ================================  ==========================  ============================================

with {L} -> {l}: ``4x4/Conv`` -> ``b4.conv1``, ``Conv0_up`` -> ``conv0``, ``Conv1`` -> ``conv1``. ToRGB exists at
every resolution for ``architecture='skip'`` (config-f) and at the last one for 'orig'. NVIDIA's ``legacy.py``
converts to the same names; ADA's ``channel_base`` is TF's ``fmap_base * 2``.

Our :class:`~.stylegan2.StyleGAN2` keeps ADA's tensors and meanings under three renamed prefixes
(``mapping.fc{i}`` -> ``mapping_net.fc{i}``, ``mapping.w_avg`` -> ``w_avg``, ``synthesis.b{res}`` -> ``b{res}``), so
:func:`convert_tf_stylegan2` is this table followed by that renaming.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..errors import WeightsFormatError
from .base import checked_config
from .stylegan2 import FIR_TAPS, StyleGAN2, StyleGAN2Config
from .tf_pickle import TFNetwork, VariableTable, check_kwargs, merged_static_kwargs, tf_generator_kind

__all__ = ["ada_to_stylegan2_key", "convert_tf_stylegan2", "convert_tf_stylegan2_to_ada", "tf_stylegan2_hparams"]

_V2_REQUIRED = {
    "label_size": 0,
    "normalize_latents": True,
    "dtype": "float32",
    "fmap_decay": 1.0,  # ADA's channel formula is min(channel_base // res, channel_max)
    "fmap_min": 1,
    "mapping_func": "G_mapping",
    "synthesis_func": "G_synthesis_stylegan2",
    "is_training": False,
    "is_validation": False,
}
# Run-time or training-only settings: they do not change the function of the weights at inference.
_V2_IGNORED = {
    "randomize_noise", "fused_modconv", "structure", "dlatent_avg_beta", "style_mixing_prob", "truncation_psi_val",
    "truncation_cutoff_val", "return_dlatents", "is_template_graph", "force_clean_graph",
    "truncation_psi", "truncation_cutoff",
}
_V2_HPARAMS = {  # TF static kwarg -> (ADA-style hyper-parameter, TF default)
    "latent_size": ("z_dim", 512),
    "dlatent_size": ("w_dim", 512),
    "resolution": ("img_resolution", 1024),
    "num_channels": ("img_channels", 3),
    "mapping_layers": ("mapping_layers", 8),
    "mapping_fmaps": ("mapping_fmaps", 512),
    "mapping_lrmul": ("mapping_lr_multiplier", 0.01),
    "mapping_nonlinearity": ("mapping_activation", "lrelu"),
    "fmap_base": ("fmap_base", 16 << 10),
    "fmap_max": ("channel_max", 512),
    "architecture": ("architecture", "skip"),
    "nonlinearity": ("activation", "lrelu"),
    "resample_kernel": ("resample_filter", [1, 3, 3, 1]),
}


def tf_stylegan2_hparams(gs: TFNetwork) -> dict[str, Any]:
    """Hyper-parameters of a TF StyleGAN2 ``Gs`` in ADA's terms (``channel_base`` = 2 ``fmap_base``), plus
    ``channels`` {res: channels} and ``num_ws``, with run-time truncation defaults ``truncation_psi`` (G_main: 0.5)
    and ``truncation_cutoff`` (None = every row)."""
    what = f"TF StyleGAN2 pickle ({gs.name})"
    kwargs = merged_static_kwargs(gs, what)
    check_kwargs(kwargs, _V2_REQUIRED, _V2_IGNORED, set(_V2_HPARAMS), what)
    hp = {ours: kwargs.get(tf, default) for tf, (ours, default) in _V2_HPARAMS.items()}
    if hp["architecture"] not in ("skip", "orig", "resnet"):
        raise WeightsFormatError(f"{what}: unknown architecture {hp['architecture']!r}")
    if hp["activation"] != "lrelu" or hp["mapping_activation"] != "lrelu":
        raise WeightsFormatError(f"{what}: only leaky-ReLU networks are supported")
    res = hp["img_resolution"]
    if not isinstance(hp["fmap_base"], int) or isinstance(hp["fmap_base"], bool):
        raise WeightsFormatError(f"{what}: fmap_base = {hp['fmap_base']!r} is not a whole number")
    hp["resample_filter"] = list(hp["resample_filter"] or [1])
    hp["channel_base"] = hp.pop("fmap_base") * 2
    _config(hp, what)  # every size checked before any is used
    resolutions = [2**r for r in range(2, int(math.log2(res)) + 1)]
    hp["channels"] = {r: min(hp["channel_base"] // r, hp["channel_max"]) for r in resolutions}
    hp["num_ws"] = 2 * int(math.log2(res)) - 2
    hp["truncation_psi"] = kwargs.get("truncation_psi", 0.5)
    hp["truncation_cutoff"] = kwargs.get("truncation_cutoff")
    return hp


def convert_tf_stylegan2_to_ada(gs: TFNetwork) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """TF StyleGAN2 ``Gs`` -> (tensors named as stylegan2-ada-pytorch's ``Generator`` state dict, without its
    ``resample_filter`` buffers, which are not learned; hyper-parameters from :func:`tf_stylegan2_hparams`).

    Every TF variable is used or ignored with a reason and has its expected shape, else WeightsFormatError names it.
    """
    what = f"TF StyleGAN2 pickle ({gs.name})"
    if tf_generator_kind(gs) != "stylegan2":
        raise WeightsFormatError(f"{what}: this is a StyleGAN (v1) generator; use convert_tf_stylegan1")
    hp = tf_stylegan2_hparams(gs)
    broadcast = gs.components["mapping"].static_kwargs.get("dlatent_broadcast")
    if broadcast not in (None, hp["num_ws"]):
        raise WeightsFormatError(f"{what}: mapping broadcasts to {broadcast} W+ rows, synthesis has {hp['num_ws']}")
    networks = {"": gs, "mapping/": gs.components["mapping"], "synthesis/": gs.components["synthesis"]}
    table = VariableTable(networks, what)
    lod = table.ignore("lod", "progressive-growing level, unused by G_synthesis_stylegan2")
    if lod.shape != () or float(lod) != 0.0:
        raise WeightsFormatError(f"{what}: lod = {lod!r}; only lod 0 is supported")
    w_dim, channels, img_channels = hp["w_dim"], hp["channels"], hp["img_channels"]

    def put(target: str, source: str, shape: tuple[int, ...], fn=lambda a: a) -> None:
        value = fn(table.take(source, shape))
        table.put(target, value)

    put("mapping.w_avg", "dlatent_avg", (w_dim,))
    dims = [hp["z_dim"]] + [hp["mapping_fmaps"]] * (hp["mapping_layers"] - 1) + [w_dim]
    for i in range(hp["mapping_layers"]):
        put(f"mapping.fc{i}.weight", f"mapping/Dense{i}/weight", (dims[i], dims[i + 1]), np.transpose)
        put(f"mapping.fc{i}.bias", f"mapping/Dense{i}/bias", (dims[i + 1],))

    def conv(dst: str, src: str, cin: int, cout: int, k: int, noise: int | None, flip: bool = False) -> None:
        oihw = (lambda a: a[::-1, ::-1].transpose(3, 2, 0, 1)) if flip else (lambda a: a.transpose(3, 2, 0, 1))
        put(f"{dst}.weight", f"{src}/weight", (k, k, cin, cout), oihw)
        put(f"{dst}.bias", f"{src}/bias", (cout,))
        put(f"{dst}.affine.weight", f"{src}/mod_weight", (w_dim, cin), np.transpose)
        put(f"{dst}.affine.bias", f"{src}/mod_bias", (cin,), lambda a: a + 1.0)
        if noise is not None:
            res = 2 ** ((noise + 5) // 2)
            put(f"{dst}.noise_strength", f"{src}/noise_strength", ())
            put(f"{dst}.noise_const", f"synthesis/noise{noise}", (1, 1, res, res), lambda a: a[0, 0])

    s, last = "synthesis/", max(channels)
    put("synthesis.b4.const", f"{s}4x4/Const/const", (1, channels[4], 4, 4), lambda a: a[0])
    conv("synthesis.b4.conv1", f"{s}4x4/Conv", channels[4], channels[4], 3, noise=0)
    for res, ch in channels.items():
        scope, dst = f"{s}{res}x{res}", f"synthesis.b{res}"
        if res > 4:
            log2 = int(math.log2(res))
            conv(f"{dst}.conv0", f"{scope}/Conv0_up", channels[res // 2], ch, 3, noise=2 * log2 - 5, flip=True)
            conv(f"{dst}.conv1", f"{scope}/Conv1", ch, ch, 3, noise=2 * log2 - 4)
            if hp["architecture"] == "resnet":
                shape = (1, 1, channels[res // 2], ch)
                put(f"{dst}.skip.weight", f"{scope}/Skip/weight", shape, lambda a: a[::-1, ::-1].transpose(3, 2, 0, 1))
        if hp["architecture"] == "skip" or res == last:
            conv(f"{dst}.torgb", f"{scope}/ToRGB", ch, img_channels, 1, noise=None)
    # The targets are enumerated above from the hyper-parameters; finish() checks the source side (every TF variable
    # used or ignored), the strict load_state_dict of checkpoints.load_checkpoint the target side.
    return table.finish(), hp


def ada_to_stylegan2_key(key: str) -> str:
    """stylegan2-ada-pytorch state-dict key -> :class:`StyleGAN2`'s (see the module docstring)."""
    if key == "mapping.w_avg":
        return "w_avg"
    if key.startswith("mapping."):
        return "mapping_net." + key[len("mapping.") :]
    if key.startswith("synthesis."):
        return key[len("synthesis.") :]
    raise WeightsFormatError(f"unexpected ADA tensor name {key!r}")


def _config(hp: dict[str, Any], what: str) -> StyleGAN2Config:
    """The StyleGAN2Config of the hyper-parameters, every size checked (:func:`.base.check_config`)."""
    settings = {
        "resolution": hp["img_resolution"], "z_dim": hp["z_dim"], "w_dim": hp["w_dim"],
        "mapping_layers": hp["mapping_layers"], "mapping_features": hp["mapping_fmaps"],
        "mapping_lr_multiplier": hp["mapping_lr_multiplier"], "channel_base": hp["channel_base"],
        "channel_max": hp["channel_max"], "img_channels": hp["img_channels"], "architecture": hp["architecture"],
    }
    return checked_config(StyleGAN2Config, StyleGAN2, settings, what)


def convert_tf_stylegan2(gs: TFNetwork) -> tuple[dict[str, torch.Tensor], StyleGAN2Config]:
    """NVIDIA TF StyleGAN2 ``Gs`` -> (state dict for ``StyleGAN2(config)``, config); strict on the source side (the
    target side is checked by the strict ``load_state_dict`` of :func:`.checkpoints.load_checkpoint`).

    ``w_avg`` is TF's ``dlatent_avg``; the stored noise maps become the model's ``noise_const`` (unit scale, as TF
    multiplies them by ``noise_strength`` at run time).
    """
    what = f"TF StyleGAN2 pickle ({gs.name})"
    ada, hp = convert_tf_stylegan2_to_ada(gs)
    if [float(t) for t in hp["resample_filter"]] != list(FIR_TAPS):
        raise WeightsFormatError(f"{what}: resample_kernel {hp['resample_filter']} is not supported (only {FIR_TAPS})")
    config = _config(hp, what)
    # The target side (every tensor of StyleGAN2(config), shapes) is checked by checkpoints.load_checkpoint's strict
    # load_state_dict when the module is built.
    return {ada_to_stylegan2_key(k): v for k, v in ada.items()}, config

