"""What the editor's buttons do, without the page: read and align a photo, embed it (cached), run an application.

Every run goes through the library as the CLI's does: the application's settings come from a quality preset with
the page's overrides (:func:`~image2stylegan.apps.presets.settings_for`), the inputs are written as files into the
run's folder (``inputs/``), the application is rebuilt from its JSON description
(:func:`~image2stylegan.apps.requests.rebuild`), the engine runs it in the job queue with the job's callback, and
the outputs are written as the CLI writes them (:func:`~image2stylegan.apps.outputs.save`): same files, same names,
``metrics.json`` last. Nothing here optimises anything itself.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..apps.batch_run import FolderJob, write_reconstruction
from ..apps.latent_ops import LatentEditSettings, latent_edit
from ..apps.outputs import load_embedding, save
from ..apps.photos import PhotoInput, alignment_outputs, load_photo_input, single_thread
from ..apps.presets import settings_for
from ..apps.reconstruct import ReconstructionSettings, reconstruct, reconstruction_recipe
from ..apps.requests import APPLICATIONS, describe, rebuild
from ..apps.sample import sample
from ..errors import InputError, Notice
from ..io import atomic_save_png, tensor_to_uint8
from ..latents import save_latent
from .jobs import Job, JobQueue
from .workspace import Workspace

__all__ = ["EDIT_COMMANDS", "Editor", "Photo", "RESULT_FILE"]

EDIT_COMMANDS = ("inpaint", "scribble", "crossover", "style-transfer", "transfer-attribute")
RESULT_FILE = {"reconstruct": "reconstruction.png", "inpaint": "filled.png"}  # the file a page shows; else result.png


@dataclass
class Photo:
    """A photo ready to edit: ``image`` is the generator-sized PNG the applications read (aligned with ``align``),
    ``source`` the stored upload, ``loaded`` what the CLI's reader made of it (its transform, for paste-back)."""

    source: Path
    image: Path
    loaded: PhotoInput
    notes: list[str] = field(default_factory=list)

    @property
    def aligned(self) -> bool:
        return self.loaded.transform is not None


@dataclass
class Editor:
    """Everything the page's handlers share: the generator, the losses, the workspace and the job queue."""

    generator: Any
    perceptual: Any
    lpips: Any
    weights_sha256: str | None
    device: torch.device
    workspace: Workspace
    queue: JobQueue
    detector: Any = None  # MTCNN, opened on the first aligned photo
    embedded: dict[Path, Path] = field(default_factory=dict)  # photo PNG -> its latest finished embedding folder

    # -- photos -------------------------------------------------------------------------------------------------
    def open_photo(self, upload: str | Path, *, align: bool = False, face: int = 0) -> Photo:
        """Check and store an upload, then read it as ``i2s ... PHOTO [--align --face N]`` does."""
        source = self.workspace.store_upload(upload) if not self.workspace.contains(Path(upload)) else Path(upload)
        return self._read(source, align=align, face=face)

    def sample_photo(self, seed: int) -> Photo:
        """A generated face (seed ``seed``) as a photo, with its exact latent as its embedding (as ``i2s sample``
        writes it): the applications that start from an embedding need not embed it."""
        with torch.no_grad():
            s = sample(self.generator, seed)
            image = self.generator.synthesis(s.ws, s.noise).clamp(-1, 1)
        photo = self._read(self.workspace.store_image(tensor_to_uint8(image[0])))
        folder = self.workspace.embedding_folder(photo.image, {"sample": seed, "truncation": s.truncation,
                                                               "weights": self.weights_sha256,
                                                               "generator": self.generator.name})
        if not (folder / "latent.npz").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            save_latent(folder / "latent.npz", s.ws.cpu(), [n.cpu() for n in s.noise],
                        generator_name=self.generator.name, weights_sha256=self.weights_sha256,
                        extra={"noise_space": "paper", "command": "sample", "seed": seed,
                               "truncation": s.truncation})
        self.embedded[photo.image] = folder
        photo.notes.append(f"sampled face {seed}: its exact latent is its embedding")
        return photo

    def faces(self, upload: Path) -> list[Any]:
        """The faces ``--align`` would see in a stored upload (largest confident first)."""
        from ..align.mtcnn import detect_faces
        from ..align.photo import load_photo

        with single_thread():
            return detect_faces(load_photo(upload), self._detector())

    def _read(self, source: Path, *, align: bool = False, face: int = 0) -> Photo:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Notice)
            loaded = load_photo_input(source, self.generator.resolution, align=align, face=face,
                                      detector=self._detector() if align else None)
        pixels = loaded.aligned if loaded.aligned is not None else tensor_to_uint8(loaded.image[0])
        image = self.workspace.store_image(pixels)
        notes = [str(w.message).replace(source.name, "the photo") for w in caught if issubclass(w.category, Notice)]
        return Photo(source, image, loaded, notes)

    def _detector(self):
        if self.detector is None:
            from ..align import load_mtcnn

            self.detector = load_mtcnn()
        return self.detector

    # -- embedding ------------------------------------------------------------------------------------------------
    def embedding(self, photo: Photo, quality: str, **overrides: Any) -> tuple[Path, ReconstructionSettings]:
        """Where ``photo``'s embedding under these settings is cached, and the settings."""
        settings = settings_for(ReconstructionSettings, quality, **overrides)
        key = {"settings": dataclasses.asdict(settings), "weights": self.weights_sha256,
               "generator": self.generator.name}
        return self.workspace.embedding_folder(photo.image, key), settings

    def cached_embedding(self, photo: Photo, quality: str, **overrides: Any) -> Path | None:
        """The finished (not stopped) embedding of ``photo`` under these settings, if one is cached."""
        folder, _ = self.embedding(photo, quality, **overrides)
        metrics = _read_json(folder / "metrics.json")
        if metrics is None or metrics.get("stopped"):
            return None
        self.embedded[photo.image] = folder
        return folder

    def latest_embedding(self, photo: Photo) -> Path | None:
        """The ``latent.npz`` of ``photo``'s latest finished embedding (any settings), if it is still on disk: the
        start of scribble, style transfer and attribute transfer, as ``--from`` is on the command line."""
        folder = self.embedded.get(photo.image)
        latent = folder / "latent.npz" if folder is not None else None
        return latent if latent is not None and latent.is_file() else None

    def embed(self, photo: Photo, quality: str, **overrides: Any) -> Job:
        """Queue the embedding of ``photo`` (reconstruction, Alg. 2) into its cache folder."""
        total, work = self._embedding_work(photo, quality, **overrides)

        def run(callback) -> Path:
            try:
                return work(callback)[0]
            finally:
                self.workspace.clean_up()

        return self.queue.submit(f"embed {photo.image.name}", run, total)

    def _embedding_work(self, photo: Photo, quality: str, **overrides: Any):
        """(steps, ``work(callback) -> (folder, finished)``) embedding ``photo`` into its cache folder."""
        folder, settings = self.embedding(photo, quality, **overrides)
        folder.mkdir(parents=True, exist_ok=True)
        target = photo.loaded.image.to(self.device)
        total = reconstruction_recipe(target, settings).total_steps
        self.workspace.hold(folder, photo.image, photo.source)

        def work(callback) -> tuple[Path, bool]:
            try:
                result = reconstruct(self.generator, target, self.perceptual, settings, callback, lpips=self.lpips)
                job = FolderJob(self.generator, self.perceptual, self.lpips, settings, self.weights_sha256,
                                str(self.device))
                loaded = dataclasses.replace(photo.loaded, path=photo.image)
                write_reconstruction(folder, job, target, result, 0, loaded)
                if not result.stopped:
                    self.embedded[photo.image] = folder
                return folder, not result.stopped
            finally:
                self.workspace.release(folder)

        return total, work

    # -- applications ---------------------------------------------------------------------------------------------
    def edit(self, command: str, quality: str, images: dict[str, np.ndarray | Path], *,
             settings: dict[str, Any] | None = None, paste_back: Photo | None = None) -> tuple[Job, Path]:
        """Queue application ``command`` on ``images`` (role -> uint8 [S, S, 3|1] array, or a file: a photo PNG or
        an embedding's ``latent.npz``) with the preset ``quality`` and the page's ``settings``; returns the job and
        the run's folder. ``paste_back``: the aligned photo whose original the result is pasted into."""
        if command not in EDIT_COMMANDS:
            raise InputError(f"the editor runs {', '.join(EDIT_COMMANDS)}; not {command!r}")
        app = APPLICATIONS[command]
        values = settings_for(app.settings, quality, **{k: v for k, v in (settings or {}).items() if v is not None})
        folder = self.workspace.new_run(command)
        inputs = _write_inputs(folder / "inputs", images)
        description = {**describe(command, values, {}), "inputs": _relative_record(inputs, folder)}
        # Rebuilding reads the inputs back from the files just written: the run is what its metrics.json records.
        plan = rebuild(description, self.generator, perceptual=self.perceptual, lpips=self.lpips, base=folder)
        self.workspace.hold(folder)
        extra, before_metrics = {}, None
        if paste_back is not None and paste_back.aligned:
            extra, before_metrics = alignment_outputs(
                {"photo": (paste_back.loaded, "aligned.png")}, paste_into="photo",
                result=RESULT_FILE.get(command, "result.png"), paste_back=True)

        def work(callback) -> Path:
            try:
                result = plan.run(self.generator, self.perceptual, callback)
                save(folder, result, generator=self.generator, command=command, settings=values,
                     weights_sha256=self.weights_sha256, inputs=description["inputs"], extra=extra,
                     before_metrics=before_metrics, device=str(self.device))
                return folder
            finally:
                self.workspace.release(folder)
                self.workspace.clean_up()

        return self.queue.submit(f"{command} {folder.name}", work, plan.recipe.total_steps), folder


    def latent_edit(self, quality: str, photos: dict[str, Photo], settings: LatentEditSettings, *,
                    mask: np.ndarray | None = None, **overrides: Any) -> tuple[Job, Path]:
        """Queue a local + global edit (``i2s latent-edit``) of the photos ``a``, ``b`` (and ``c`` for expression
        transfer): each photo's latest embedding is used, and a photo not embedded yet is embedded first with the
        preset ``quality`` and the embedding's ``overrides`` in the same job. ``mask``: uint8 [S, S], where B's features are pasted at
        ``settings.layer`` (the optional local edit). Returns the job and the run's folder."""
        if settings.op == "expression" and "c" not in photos:
            raise InputError("expression transfer needs photo C (B neutral, C with the expression)")
        roles = ("a", "b", "c") if settings.op == "expression" else ("a", "b")
        if settings.layer is not None and mask is None and settings.activation_op == "spatial":
            raise InputError("paint the region where B's features go, or leave the layer empty")
        folder = self.workspace.new_run("latent-edit")
        self.workspace.hold(folder)
        latents = {role: self.latest_embedding(photos[role]) or self._cached_latent(photos[role], quality, overrides)
                   for role in roles}
        pending = {role: self._embedding_work(photos[role], quality, **overrides) for role in roles
                   if latents[role] is None}

        def work(callback) -> Path | None:
            try:
                for role, (_, embed) in pending.items():
                    embedding, finished = embed(callback)
                    if not finished:  # stopped while embedding: nothing to edit yet
                        return None
                    latents[role] = embedding / "latent.npz"
                inputs = _write_inputs(folder / "inputs", {**latents, "mask": mask})
                embeddings = [load_embedding(self.generator, Path(inputs[role])) for role in roles]
                mask_t = None if mask is None else torch.from_numpy(mask > 127).float()[None, None].to(self.device)
                result = latent_edit(self.generator, *embeddings[:2], embeddings[2] if len(roles) == 3 else None,
                                     settings, mask=mask_t)
                save(folder, result, generator=self.generator, command="latent-edit", settings=settings,
                     weights_sha256=self.weights_sha256, inputs=_relative_record(inputs, folder),
                     device=str(self.device))
                return folder
            finally:
                self.workspace.release(folder)
                self.workspace.clean_up()

        total = sum(steps for steps, _ in pending.values())
        return self.queue.submit(f"latent-edit {folder.name}", work, total), folder

    def _cached_latent(self, photo: Photo, quality: str, overrides: dict[str, Any]) -> Path | None:
        folder = self.cached_embedding(photo, quality, **overrides)
        return folder / "latent.npz" if folder is not None else None


def _write_inputs(folder: Path, images: dict[str, np.ndarray | Path | str]) -> dict[str, Path | str]:
    """Each image as ``folder/<role>.png`` (a mask as a grey PNG), files copied by content; strings (mask
    presets) pass through."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path | str] = {}
    for role, value in images.items():
        if value is None:
            continue
        if isinstance(value, str) and not Path(value).suffix:
            out[role] = value  # a preset name ('left-half', 'center', ...)
            continue
        if isinstance(value, (str, Path)):
            path = Path(value)
            target = folder / f"{role}{path.suffix.lower()}"
            target.write_bytes(path.read_bytes())
            out[role] = target
            continue
        array = np.asarray(value, dtype=np.uint8)
        if array.ndim == 2:
            array = array[..., None]
        if array.shape[2] == 1:  # a mask: white = the region
            array = np.repeat(array, 3, axis=2)
        target = folder / f"{role}.png"
        atomic_save_png(target, np.ascontiguousarray(array[..., :3]))
        out[role] = target
    return out


def _relative_record(inputs: dict[str, Path | str], base: Path) -> dict[str, Any]:
    from ..apps.outputs import input_record

    record = input_record(inputs)
    for entry in record.values():
        if isinstance(entry, dict) and "file" in entry:
            entry["file"] = str(Path(entry["file"]).relative_to(base))
    return record


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None

