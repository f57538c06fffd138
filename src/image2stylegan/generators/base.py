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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Union

import torch
from torch import nn

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
        return self._forward(self._check_ws(ws), self._check_noise(noise), (), edits or {}).image

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
