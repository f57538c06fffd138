"""Applications from their JSON description: what ``metrics.json`` records, and what the browser editor and the
cluster runner send.

A description names the application, its settings and its inputs::

    {"command": "crossover",
     "settings": {"w_steps": 200, "noise_steps": 100, "feather": 0.03, ...},
     "inputs": {"a": {"file": "a.png", "sha256": "..."}, "b": {"file": "b.npz", "sha256": "..."},
                "mask": "left-half"}}

Every ``metrics.json`` holds these three keys (plus ``"recipe"``, the stages that ran), so :func:`rebuild` turns
the file of a finished run back into the :class:`~.plan.Plan` that made it: the inputs are read again and must
still have the recorded sha256, the settings must be the application's. A photo input is a file read as the
CLI reads one without ``--align`` (centre-cropped and resized); a ``.npz`` file is a saved embedding (its render
is the image, and where the application can start from it, it does); a mask is a preset name or a file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..generators.base import StyleGenerator
from ..io import load_image
from ..masks import resolve_mask
from .activations import AttributeTransferSettings, prepare_attribute_transfer
from .crossover import CrossoverSettings, prepare_crossover
from .inpaint import InpaintSettings, prepare_inpaint
from .outputs import file_sha256, input_record, load_embedding
from .plan import Plan
from .reconstruct import ReconstructionSettings, prepare_reconstruction
from .scribble import ScribbleSettings, prepare_scribble
from .style_transfer import StyleTransferSettings, prepare_style_transfer

__all__ = ["APPLICATIONS", "Application", "Inputs", "describe", "rebuild"]


@dataclass
class Inputs:
    """The inputs of one description, read for ``generator`` (each at most once)."""

    generator: StyleGenerator
    entries: Mapping[str, Any]
    base: Path

    def has(self, role: str) -> bool:
        return self.entries.get(role) not in (None, "")

    def path(self, role: str) -> Path:
        entry = self.entries.get(role)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("file"), str):
            raise InputError(f"input '{role}' must be a file recorded as {{'file': ..., 'sha256': ...}}")
        path = Path(entry["file"])
        path = path if path.is_absolute() else self.base / path
        expected = entry.get("sha256")
        if not path.is_file():
            raise InputError(f"input '{role}': {path} does not exist (any more)")
        if expected is not None and file_sha256(path) != expected:
            raise InputError(f"input '{role}': {path} has changed since the run (its sha256 differs); "
                             "the description cannot rebuild that run")
        return path

    def is_latent(self, role: str) -> bool:
        return self.has(role) and self.path(role).suffix.lower() == ".npz"

    def latent(self, role: str):
        """(ws, noise) of a saved embedding, or (None, None) when the role is absent."""
        return load_embedding(self.generator, self.path(role)) if self.has(role) else (None, None)

    def image(self, role: str) -> torch.Tensor:
        """[1, 3, S, S] on the generator's device: the photo, or the render of a saved embedding."""
        if self.is_latent(role):
            ws, noise = self.latent(role)
            with torch.no_grad():
                return self.generator.synthesis(ws, noise).clamp(-1, 1)
        return load_image(self.path(role), self.generator.resolution).to(self.generator.w_avg)

    def mask(self, role: str = "mask") -> torch.Tensor | None:
        if not self.has(role):
            return None
        entry = self.entries[role]
        spec = entry if isinstance(entry, str) else self.path(role)
        return resolve_mask(spec, self.generator.resolution).to(self.generator.w_avg)


Prepare = Callable[[StyleGenerator, Any, Inputs, Any, Any], Plan]


@dataclass(frozen=True)
class Application:
    """How a description of one application becomes a plan: its settings class and a function
    ``prepare(generator, settings, inputs, perceptual, lpips) -> Plan`` that reads the inputs as the CLI does."""

    settings: type
    prepare: Prepare


def _reconstruct(generator, settings, inputs: Inputs, perceptual, lpips) -> Plan:
    return prepare_reconstruction(generator, inputs.image("photo"), settings, lpips=lpips)


def _crossover(generator, settings, inputs: Inputs, perceptual, lpips) -> Plan:
    ws = inputs.latent("a")[0] if inputs.is_latent("a") else None  # the paper's w*: start from A's embedding
    return prepare_crossover(generator, inputs.image("a"), inputs.image("b"), inputs.mask(), settings, ws=ws)


def _inpaint(generator, settings, inputs: Inputs, perceptual, lpips) -> Plan:
    reference = inputs.image("reference") if inputs.has("reference") else None
    return prepare_inpaint(generator, inputs.image("photo"), inputs.mask(), settings, reference=reference, lpips=lpips)


def _style_transfer(generator, settings, inputs: Inputs, perceptual, lpips) -> Plan:
    ws, noise = inputs.latent("from")
    return prepare_style_transfer(generator, inputs.image("content"), inputs.image("style"), inputs.mask(),
                                  perceptual, settings, ws=ws, noise=noise)


def _scribble(generator, settings, inputs: Inputs, perceptual, lpips) -> Plan:
    ws, noise = inputs.latent("from")
    return prepare_scribble(generator, inputs.image("photo"), inputs.image("scribbled"), settings,
                            mask=inputs.mask(), ws=ws, noise=noise)


def _transfer_attribute(generator, settings, inputs: Inputs, perceptual, lpips) -> Plan:
    photos = {role: inputs.image(role) for role in ("a", "b") if not inputs.is_latent(role)}
    embeddings = {role: inputs.latent(role) for role in ("a", "b") if inputs.is_latent(role)}
    return prepare_attribute_transfer(generator, inputs.mask(), settings, photos=photos, embeddings=embeddings)


APPLICATIONS: dict[str, Application] = {
    "reconstruct": Application(ReconstructionSettings, _reconstruct),
    "crossover": Application(CrossoverSettings, _crossover),
    "inpaint": Application(InpaintSettings, _inpaint),
    "style-transfer": Application(StyleTransferSettings, _style_transfer),
    "scribble": Application(ScribbleSettings, _scribble),
    "transfer-attribute": Application(AttributeTransferSettings, _transfer_attribute),
}
"""The applications a description can name (the CLI's command names)."""


def describe(command: str, settings: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The description of a run: ``{"command", "settings", "inputs"}`` with files by path and sha256."""
    if command not in APPLICATIONS:
        raise InputError(f"unknown application {command!r}; one of {', '.join(APPLICATIONS)}")
    return {"command": command, "settings": dataclasses.asdict(settings), "inputs": input_record(inputs)}


def rebuild(
    description: Mapping[str, Any], generator: StyleGenerator, *, perceptual=None, lpips=None,
    base: str | os.PathLike[str] | None = None,
) -> Plan:
    """The plan a description (or a ``metrics.json``) stands for; ``base`` resolves relative input paths
    (default: the working directory). Run it with ``plan.run(generator, perceptual, callback)``.

    Raises:
        InputError: unknown application, settings it does not have, an input that is missing or changed, a run
            of aligned photos (their aligned inputs are not recorded as files yet), or a recorded recipe that these
            settings no longer build (a run of an older version, whose defaults differed).
    """
    command = description.get("command") if isinstance(description, Mapping) else None
    if command not in APPLICATIONS:
        raise InputError(f"the description names no application this version can run ({command!r}); "
                         f"one of {', '.join(APPLICATIONS)}")
    if isinstance(description.get("alignment"), Mapping):
        raise InputError("this run aligned its photos (--align); rebuilding aligned runs is not supported yet: "
                         "run again on the aligned PNGs written beside its outputs")
    app = APPLICATIONS[command]
    settings = _settings(app.settings, description.get("settings") or {})
    inputs = Inputs(generator, description.get("inputs") or {}, Path(base) if base is not None else Path.cwd())
    plan = app.prepare(generator, settings, inputs, perceptual, lpips)
    recorded = description.get("recipe")
    if recorded is not None and json.loads(json.dumps(plan.recipe.summary())) != recorded:
        raise InputError("the recorded recipe differs from the one its settings build now (a run of an older "
                         "version, whose schedules differed?): run the command again instead of rebuilding it")
    if plan.recipe.uses_lpips and lpips is None:
        raise InputError("the description stops a stage at an LPIPS target: rebuild it with the LPIPS metric")
    return plan


def _settings(cls: type, values: Mapping[str, Any]):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(f"{cls.__name__} has no setting {', '.join(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
