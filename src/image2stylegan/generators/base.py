"""The small interface every style-based generator implements, so that losses, optimisation stages and
applications never depend on one architecture.

A generator G(w, n) exposes:

* ``num_ws`` W+ rows of ``w_dim`` each (one style vector per style input, coarse to fine) and ``w_avg``, the mean
  latent used to initialise embeddings;
* explicit per-layer noise maps: :meth:`noise_shapes` gives their shapes, :meth:`make_noise` samples unit-scale
  N(0, 1) maps, and ``synthesis(ws, noise)`` takes them as an argument (``None`` = the generator's stored maps);
* named activation tensors: :meth:`synthesis_trace` returns any of them (``capture=``), and both synthesis methods
  accept ``edits=`` to replace a layer's output during the forward. Nothing is done with hooks or mutated state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn

from ..errors import InputError, WeightsFormatError

# An activation edit: a replacement tensor, or a function of the original activation returning its replacement.
Edit = Union[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]

NOISE_SPACES = ("paper", "extended")


@dataclass(frozen=True)
class NoiseInput:
    """One noise input of the synthesis network.

    ``channels`` is the channel count of the activation the noise is added to; the paper's noise space uses one
    channel broadcast over all of them, the extended space (beyond the paper) one map per channel.
    """

    layer: str  # name of the layer whose output receives the noise
    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class SynthesisTrace:
    """Result of :meth:`StyleGenerator.synthesis_trace`: the image and the captured activations, by layer name."""

    image: torch.Tensor  # [B, 3, H, W] in [-1, 1]
    activations: Mapping[str, torch.Tensor]


class StyleGenerator(nn.Module):
    """Base class of the generators. Subclasses set the attributes below and implement the abstract methods."""

    name: str  # registry name, saved in latent files
    num_ws: int  # W+ rows
    w_dim: int
    z_dim: int
    resolution: int
    extended_noise_layers: tuple[str, ...] = ()  # layers whose noise gets per-channel maps in the extended space
    w_avg: torch.Tensor  # buffer [w_dim]: the mean latent (average of the mapping network over many z)

    mapping_net: nn.Module  # z [B, z_dim] -> w [B, w_dim]

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, z_dim] -> w [B, w_dim]."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [B, {self.z_dim}], got {list(z.shape)}")
        return self.mapping_net(z)

    # -- to implement -------------------------------------------------------------------------------------------

    @property
    def noise_inputs(self) -> tuple[NoiseInput, ...]:
        """The noise inputs in synthesis order."""
        raise NotImplementedError

    def layer_rows(self) -> list[int | None]:
        """The W+ row driving each layer of :meth:`layer_names` (None for a layer no style modulates)."""
        raise NotImplementedError

    def layer_resolutions(self) -> list[int]:
        """Output side length in pixels of each layer of :meth:`layer_names`."""
        raise NotImplementedError

    def noise_strengths(self) -> list[float]:
        """Strength s_i of each noise input in synthesis order: the synthesis adds s_i * n_i to that layer."""
        raise NotImplementedError

    def layer_names(self) -> tuple[str, ...]:
        """Names accepted by ``capture=`` and ``edits=``, in synthesis order."""
        raise NotImplementedError

    def _forward(
        self,
        ws: torch.Tensor,
        noise: Sequence[torch.Tensor] | None,
        capture: Sequence[str],
        edits: Mapping[str, Edit],
    ) -> SynthesisTrace:
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.w_avg.device

    def noise_shapes(self, space: str = "paper") -> list[tuple[int, int, int]]:
        """(C, H, W) of each noise map in synthesis order; C = 1 in the paper's space."""
        _check_space(space)
        return [
            (n.channels if space == "extended" and n.layer in self.extended_noise_layers else 1, n.height, n.width)
            for n in self.noise_inputs
        ]

    def make_noise(
        self, batch: int = 1, space: str = "paper", generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """Fresh unit-scale N(0, 1) noise maps, one per noise input, each [batch, C, H, W]."""
        return [
            torch.randn((batch, *shape), generator=generator, device=self.device, dtype=self.w_avg.dtype)
            for shape in self.noise_shapes(space)
        ]

    def rows_up_to(self, max_resolution: int) -> list[int]:
        """The W+ rows driving layers whose output is at most ``max_resolution`` px, sorted.

        The paper's per-row recipes are stated by resolution (inpainting: the rows up to 64 px; scribbles: the
        first rows, up to 16 px), which carries over to generators with other row layouts.
        """
        rows = {r for r, res in zip(self.layer_rows(), self.layer_resolutions()) if r is not None and res <= max_resolution}
        return sorted(rows)

    def mean_ws(self, batch: int = 1) -> torch.Tensor:
        """W+ filled with the mean latent: [batch, num_ws, w_dim]."""
        return self.w_avg.expand(batch, self.num_ws, self.w_dim).clone()

    def synthesis(
        self,
        ws: torch.Tensor,
        noise: Sequence[torch.Tensor] | None = None,
        *,
        edits: Mapping[str, Edit] | None = None,
    ) -> torch.Tensor:
        """Render W+ latents.

        Args:
            ws: [B, num_ws, w_dim] W+ latents, coarse to fine.
            noise: one map per noise input, each [B or 1, 1 or C, H, W], unit scale (the layer's noise strength is
                applied inside); ``None`` uses the generator's stored maps.
            edits: layer name -> replacement tensor or function of the activation (see :meth:`layer_names`).

        Returns:
            [B, 3, resolution, resolution] image in [-1, 1] (not clamped).
        """
        ws, noise = self._check_ws(ws), self._check_noise(noise)
        if self._compiled_image is not None and not edits and torch.is_grad_enabled():
            try:
                return self._compiled_image(ws, noise)
            except Exception as exc:
                if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
                    first = (str(exc).strip().splitlines() or [""])[0][:300]
                    raise InputError(f"--compile: torch.compile cannot compile the generator here ({type(exc).__name__}: "
                                     f"{first}); run without --compile") from exc
                raise
        return self._forward(ws, noise, (), edits or {}).image

    # Set by compile_synthesis: torch.compile of a plain render (no edits, no captures). None renders eagerly.
    _compiled_image: Callable | None = None

    def compile_synthesis(self, enabled: bool = True) -> StyleGenerator:
        """Route the optimisation loops' renders through ``torch.compile``; returns ``self``.

        Only :meth:`synthesis` with gradients enabled and no ``edits`` is compiled: that is every step of a W+ or
        noise stage, where the time goes. Renders under ``torch.no_grad`` (previews, a stage's final image), edits
        and captures stay eager, so they cost no compilation of their own. Compiling takes about a minute per stage
        kind (W+, noise) on 2 CPU cores before the first step, and then a W+ step costs about 40 % less (measured in
        ``bench/step_profile.py``): it pays off in long runs and in folder runs, which compile once per process.
        Results match the eager render to float rounding, not bit for bit.
        """
        self._compiled_image = torch.compile(self._plain_image) if enabled else None
        return self

    @property
    def compiled(self) -> bool:
        """Whether :meth:`compile_synthesis` is on (``metrics.json``'s machine line says so: it changes timings)."""
        return self._compiled_image is not None

    def _plain_image(self, ws: torch.Tensor, noise: Sequence[torch.Tensor] | None) -> torch.Tensor:
        return self._forward(ws, noise, (), {}).image

    def synthesis_trace(
        self,
        ws: torch.Tensor,
        noise: Sequence[torch.Tensor] | None = None,
        *,
        capture: Sequence[str],
        edits: Mapping[str, Edit] | None = None,
    ) -> SynthesisTrace:
        """Like :meth:`synthesis`, also returning the (post-edit) activations of the layers named in ``capture``."""
        unknown = set(capture) - set(self.layer_names())
        if unknown:
            raise KeyError(f"unknown layer(s) {sorted(unknown)}; this generator has {list(self.layer_names())}")
        return self._forward(self._check_ws(ws), self._check_noise(noise), tuple(capture), edits or {})

    def _check_ws(self, ws: torch.Tensor) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [B, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        return ws

    def _check_noise(self, noise: Sequence[torch.Tensor] | None) -> Sequence[torch.Tensor] | None:
        if noise is None:
            return None
        inputs = self.noise_inputs
        if len(noise) != len(inputs):
            raise ValueError(f"expected {len(inputs)} noise maps, got {len(noise)}")
        for i, (n, spec) in enumerate(zip(noise, inputs)):
            if n.ndim != 4 or n.shape[1] not in (1, spec.channels) or n.shape[2:] != (spec.height, spec.width):
                raise ValueError(
                    f"noise map {i} ({spec.layer}) must be [B, 1 or {spec.channels}, {spec.height}, {spec.width}], "
                    f"got {list(n.shape)}"
                )
        return noise


W_AVG_SAMPLES = 10_000  # as NVIDIA's projector (stylegan2-ada-pytorch projector.py, w_avg_samples)
W_AVG_SEED = 0


@torch.no_grad()
def compute_w_avg(generator: StyleGenerator, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> torch.Tensor:
    """Mean of the mapping network over ``samples`` seeded draws of z ~ N(0, I): [w_dim]. Used for checkpoints that
    do not store their mean latent."""
    rng = torch.Generator().manual_seed(seed)
    total = torch.zeros(generator.w_dim, dtype=torch.float64)
    for start in range(0, samples, 1000):
        z = torch.randn(min(1000, samples - start), generator.z_dim, generator=rng)
        # Accumulate in float64 on the CPU (MPS has no float64).
        total += generator.mapping(z.to(generator.w_avg.device)).cpu().double().sum(0)
    return (total / samples).float()


class ActivationTap:
    """What a forward calls on each named activation: applies its edit (if any) and records it if captured.

    ``tap(name, x)`` returns the (possibly replaced) activation; ``tap.captured`` holds the captured ones by name.
    """

    def __init__(self, capture: Sequence[str], edits: Mapping[str, Edit]):
        self.capture, self.edits = capture, edits
        self.captured: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self.edits:
            x = apply_edit(name, x, self.edits)
        if name in self.capture:
            self.captured[name] = x
        return x


def apply_edit(name: str, x: torch.Tensor, edits: Mapping[str, Edit]) -> torch.Tensor:
    """Replace activation ``x`` of layer ``name`` if an edit is given for it (shape must be preserved)."""
    edit = edits.get(name)
    if edit is None:
        return x
    out = edit(x) if callable(edit) else edit
    if out.shape[1:] != x.shape[1:]:
        raise ValueError(f"edit for {name} must keep the shape {list(x.shape)}, got {list(out.shape)}")
    return out


def _check_space(space: str) -> None:
    if space not in NOISE_SPACES:
        raise ValueError(f"noise space must be one of {NOISE_SPACES}, got {space!r}")


# -- sanity limits of a generator's settings ------------------------------------------------------------------------
# Settings come from files (a converted checkpoint's JSON config, the keyword arguments recorded in a pickle), so
# each is checked against these before a module is built: a few bytes of config must not ask for tens of GB.
MAX_RESOLUTION = 4096  # output side in px
MAX_WIDTH = 8192  # z_dim, w_dim, hidden mapping widths, channel counts
MAX_CHANNEL_BASE = 1 << 20  # StyleGAN2's channel_base / StyleGAN's fmap_base (config-f: 32768 / 8192)
MAX_MAPPING_LAYERS = 32
MAX_IMAGE_CHANNELS = 4
MAX_FILTER_TAPS = 16
MAX_PARAMETERS = 500_000_000  # parameters and buffers together (2 GB of float32); FFHQ-1024 StyleGAN2 has 33 M

# Field name -> (smallest, largest) for the integer settings of the config classes; None allowed where marked.
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "resolution": (4, MAX_RESOLUTION),
    "z_dim": (1, MAX_WIDTH),
    "w_dim": (1, MAX_WIDTH),
    "mapping_layers": (1, MAX_MAPPING_LAYERS),
    "mapping_features": (1, MAX_WIDTH),
    "mapping_fmaps": (1, MAX_WIDTH),
    "channel_base": (1, MAX_CHANNEL_BASE),
    "channel_max": (1, MAX_WIDTH),
    "fmap_base": (1, MAX_CHANNEL_BASE),
    "fmap_max": (1, MAX_WIDTH),
    "base_channels": (1, MAX_WIDTH),
    "img_channels": (1, MAX_IMAGE_CHANNELS),
    "image_channels": (1, MAX_IMAGE_CHANNELS),
    "truncation_cutoff": (0, 4 * MAX_RESOLUTION.bit_length()),
}
_OPTIONAL = {"mapping_features", "conv_clamp"}
_PER_ITEM = {"channels": (1, MAX_WIDTH)}  # tuples of channel counts (MobileStyleGAN's blocks)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_resolution(value: Any) -> int:
    """``value`` as a resolution: a power of two from 4 to :data:`MAX_RESOLUTION`.

    Raises:
        WeightsFormatError: anything else (the message names the setting and the allowed range).
    """
    if not _is_int(value) or not 4 <= value <= MAX_RESOLUTION or value & (value - 1):
        raise WeightsFormatError(
            f"unsupported generator settings: resolution = {_show(value)}, expected a power of two from 4 to "
            f"{MAX_RESOLUTION}"
        )
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_settings(settings: Mapping[str, Any]) -> None:
    """Check the size-like entries of a generator's settings as read from a file (a dict of config fields, before a
    config class sees them), so that a wrong type or an absurd value gets a message naming it: the limits of
    :func:`check_config`. Entries it does not know are left to the config class.

    Raises:
        WeightsFormatError: one line naming the setting and the limit.
    """
    for name, value in settings.items():
        _check_field(str(name), value)


def _check_field(name: str, value: Any) -> None:
    if value is None and name in _OPTIONAL:
        return
    if name == "resolution":
        check_resolution(value)
    elif name in _INT_BOUNDS:
        low, high = _INT_BOUNDS[name]
        if not _is_int(value) or not low <= value <= high:
            raise WeightsFormatError(
                f"unsupported generator settings: {name} = {_show(value)}, expected a whole number from {low} to {high}"
            )
    elif name in _PER_ITEM:
        low, high = _PER_ITEM[name]
        items = tuple(value) if isinstance(value, tuple | list) else (value,)
        limit = MAX_RESOLUTION.bit_length() - 4  # each block doubles 8 px ... up to MAX_RESOLUTION
        if not items or len(items) > limit or not all(_is_int(v) and low <= v <= high for v in items):
            raise WeightsFormatError(
                f"unsupported generator settings: {name} = {_show(value)}, expected 1 to {limit} whole numbers "
                f"from {low} to {high}"
            )
    elif name == "blur_filter":
        if not isinstance(value, tuple | list) or len(value) > MAX_FILTER_TAPS:
            raise WeightsFormatError(
                f"unsupported generator settings: blur_filter = {_show(value)}, expected at most {MAX_FILTER_TAPS} taps"
            )
    elif isinstance(value, float) and not math.isfinite(value):
        raise WeightsFormatError(f"unsupported generator settings: {name} = {value!r}, expected a finite number")


def checked_config(config_cls: type, generator_cls: type[nn.Module], settings: Mapping[str, Any], what: str):
    """``config_cls(**settings)`` for settings read from a file, every value and size checked
    (:func:`check_settings`, :func:`check_config`) before anything is allocated for the model.

    Raises:
        WeightsFormatError: ``"<what>: unsupported generator settings: ..."`` in one line.
    """
    try:
        check_settings(settings)
        config = config_cls(**settings)
        check_config(config, generator_cls)
    except (TypeError, ValueError) as exc:
        raise WeightsFormatError(f"{what}: unsupported generator settings: {' '.join(str(exc).split())}") from None
    except WeightsFormatError as exc:
        raise WeightsFormatError(f"{what}: {exc}") from None
    return config


def check_config(config: Any, generator_cls: type[nn.Module]) -> None:
    """Check a generator config read from a file before anything is allocated for it.

    Every size-like setting must be an integer within the limits above (resolution a power of two from 4 to
    :data:`MAX_RESOLUTION`, widths up to :data:`MAX_WIDTH`, at most :data:`MAX_MAPPING_LAYERS` mapping layers, ...),
    every real-valued one finite, and the module it describes, built with its parameters on PyTorch's ``meta``
    device (shapes only, no memory), must have at most :data:`MAX_PARAMETERS` parameters and buffers.

    Raises:
        WeightsFormatError: one line naming the setting (or the parameter count) and the limit.
    """
    if not dataclasses.is_dataclass(config):
        raise WeightsFormatError(f"unsupported generator settings: {type(config).__name__} is not a config")
    check_settings({f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
    try:
        state = expected_state(config, generator_cls)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError, RuntimeError) as e:
        raise WeightsFormatError(f"unsupported generator settings: {' '.join(str(e).split())}") from None
    count = sum(t.numel() for t in state.values())
    if count > MAX_PARAMETERS:
        raise WeightsFormatError(
            f"unsupported generator settings: they describe {count:,} parameters, over the limit of "
            f"{MAX_PARAMETERS:,}"
        )


# Factories whose size comes from their arguments: under _ShapesOnly they make meta tensors (shape and dtype, no
# memory). Small constants made from data (torch.tensor: FIR taps) stay real, so the arithmetic constructors do
# on them runs on the CPU: arithmetic on meta tensors would pull in torch._dynamo (seconds of imports).
_SIZED_FACTORIES = {
    torch.empty, torch.empty_strided, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
    torch.arange, torch.linspace, torch.eye,
}


class _ShapesOnly(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in _SIZED_FACTORIES and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def expected_state(config: Any, generator_cls: type[nn.Module]) -> dict[str, torch.Tensor]:
    """The state dict ``generator_cls(config)`` would have, its parameters and buffers as ``meta`` tensors (shapes
    and dtypes, no memory). Call :func:`check_config` first: a config's sizes are not checked here."""
    with _ShapesOnly():
        return generator_cls(config).state_dict()
