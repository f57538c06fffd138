"""NVIDIA TF StyleGAN (v1) ``Gs`` (``karras2019stylegan-*.pkl``, read by :func:`.tf_pickle.read_tf_generator`) ->
state dict and config of :class:`~.stylegan1.StyleGAN`, strictly.

Variables of ``training/networks_stylegan.py`` (``G_style`` / ``G_mapping`` / ``G_synthesis``) and where they go:
dense weights [in, out] -> ``mapping_net.fc{i}`` [out, in]; conv weights [kh, kw, in, out] -> ``layers.b{res}.
{const,conv,conv0,conv1}.weight`` [out, in, kh, kw]; StyleMod [w_dim, 2C] -> ``.style`` [2C, w_dim]; the noise
variables (already NCHW) -> ``.noise_const``; ``dlatent_avg`` -> ``w_avg``. Every TF variable is used or ignored for
a stated reason and every static kwarg is understood, else :class:`WeightsFormatError` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..errors import WeightsFormatError
from .base import checked_config
from .stylegan1 import StyleGAN, StyleGANConfig
from .tf_pickle import TFNetwork, VariableTable, check_kwargs, merged_static_kwargs, tf_generator_kind

__all__ = ["convert_tf_stylegan1", "stylegan1_config_from_kwargs"]

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
    return checked_config(StyleGANConfig, StyleGAN, values, what)  # every size, before anything is allocated


def convert_tf_stylegan1(gs: TFNetwork) -> tuple[dict[str, torch.Tensor], StyleGANConfig]:
    """NVIDIA TF StyleGAN (v1) ``Gs`` -> (state dict for ``StyleGAN(config)``, config). Strict: every TF variable
    is used with its expected shape or ignored for a stated reason, every static kwarg is understood; the target side
    is checked by the strict ``load_state_dict`` of :func:`.checkpoints.load_checkpoint`.

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

    # Every target tensor of StyleGAN(config) is enumerated above from the config; the strict load_state_dict of
    # checkpoints.load_checkpoint checks that against the module, without building a throwaway one here.
    return table.finish(), config
