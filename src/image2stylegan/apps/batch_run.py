"""Reconstructing many photos: one output folder per image, ``results.csv``, batches, resuming after a kill.

:func:`run_folder` walks the fixed chunks of :mod:`.batch_plan`. For each chunk with an unfinished image it reads
(and with ``align``, aligns) every member, embeds the readable ones together as one batch ``[B, 3, S, S]`` through
the engine, and writes the outputs of the members that were not finished yet (:func:`write_reconstruction`, every
file atomically, ``metrics.json`` last), updating ``results.csv`` after each image. A member that cannot be read is
an ``error`` row and the run goes on.

Every image starts from the initialisation ``i2s reconstruct PHOTO --seed S`` gives a single photo (the mean W+ and
the seed's noise maps, repeated over the batch), whatever its position and the batch size. Batch size 1 therefore
reproduces the single-photo command exactly; larger batches differ only by the batched arithmetic's rounding, and
since a chunk is always recomputed whole, a resumed run writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..embed import Callback, Embedding, initial_noise, initial_ws
from ..errors import InputError, notices_to
from ..generators.base import StyleGenerator
from ..io import ensure_outdir
from .batch_plan import BatchItem, chunks, remove_stale_temporaries
from .batch_results import ResultsTable
from .photos import ALIGNMENT_FILE, PASTED_FILE, PhotoInput, alignment_outputs, load_photo_input
from .outputs import input_record, plain, save
from .publish import code_version, matches, read_run
from .reconstruct import (OUTPUT_FILES, SAVE_NAMES, ReconstructionSettings, reconstruct, reconstruction_recipe,
                          reconstruction_result)

__all__ = ["FolderJob", "run_folder", "seeded_start", "write_reconstruction"]


@dataclass(frozen=True)
class FolderJob:
    """What every image of a folder run shares."""

    generator: StyleGenerator
    perceptual: Any
    lpips: Any
    settings: ReconstructionSettings
    weights_sha256: str | None
    device: str
    batch_size: int = 1
    align: bool = False
    face: int = 0
    paste_back: bool = False
    detector: Any = None
    refuse_stale: bool = False  # a finished image made differently is an error row instead of being redone

    def layout(self) -> dict[str, Any]:
        """What a folder run's settings add to an image's provenance (recorded under ``"batch"``)."""
        return {"batch_size": self.batch_size, "align": self.align, "face": self.face, "paste_back": self.paste_back}


def expected_record(job: FolderJob, item: BatchItem) -> dict[str, Any]:
    """What an image's ``metrics.json`` must say for this job to count it as done (see :func:`.publish.matches`):
    the command, settings, the photo's sha256, the generator and its weights, the code version."""
    return {"command": "reconstruct", "settings": plain(job.settings),
            "inputs": input_record({"photo": item.path}) if item.path.is_file() else {},
            "generator": job.generator.name, "weights_sha256": job.weights_sha256, "code_version": code_version()}


def finished_run(job: FolderJob, item: BatchItem, outdir: Path) -> tuple[dict[str, Any] | None, bool]:
    """(the image's metrics when it is done exactly as ``job`` would do it, whether a different run is there)."""
    run = read_run(outdir / item.name)
    if run is None:
        return None, False
    same = matches(run, expected_record(job, item)) and {k: (run.get("batch") or {}).get(k) for k in job.layout()} == job.layout()
    return (run if same else None), not same


def seeded_start(generator: StyleGenerator, batch: int, settings: ReconstructionSettings):
    """(ws, noise) for ``batch`` images, each the single-image initialisation of ``settings.seed``."""
    ws = initial_ws(generator, 1, settings.init, settings.seed).repeat(batch, 1, 1)
    noise = [n.repeat(batch, 1, 1, 1) for n in initial_noise(generator, 1, settings.seed)]
    return ws, noise


def write_reconstruction(
    outdir: Path,
    job: FolderJob,
    target: torch.Tensor,
    result,
    index: int,
    photo: PhotoInput,
    batch_info: dict[str, Any] | None = None,
) -> dict:
    """Write image ``index`` of a (batched) result into ``outdir``: the reconstruction's files (:func:`.outputs.save`),
    plus with an aligned photo
    ``aligned.png``, ``alignment.json`` and (``job.paste_back``) ``pasted.png``; ``metrics.json`` last."""
    remove_stale_temporaries(outdir, [*OUTPUT_FILES, "aligned.png", ALIGNMENT_FILE, PASTED_FILE])
    extra, before_metrics = alignment_outputs({"photo": (photo, "aligned.png")}, paste_into="photo",
                                              result="reconstruction.png", paste_back=job.paste_back)
    if batch_info is not None:
        extra["batch"] = batch_info

    recipe = reconstruction_recipe(target, job.settings)
    edit = reconstruction_result(result, target, job.lpips, recipe, index=index, noise_space=job.settings.noise_space)
    return save(
        outdir, edit, generator=job.generator, command="reconstruct", settings=job.settings,
        weights_sha256=job.weights_sha256, inputs={"photo": photo.path}, extra={"source": str(photo.path), **extra},
        before_metrics=before_metrics, extra_images={"target.png": target[index]}, device=job.device, **SAVE_NAMES,
    )


def _load(job: FolderJob, item: BatchItem) -> PhotoInput:
    return load_photo_input(item.path, job.generator.resolution, align=job.align, face=job.face,
                            detector=job.detector)


def run_folder(
    job: FolderJob,
    items: list[BatchItem],
    outdir: Path,
    table: ResultsTable,
    *,
    step_callback: Callback | None = None,
    on_image: Callable[[BatchItem, str, str], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> ResultsTable:
    """Process every unfinished item of ``items`` (see the module docstring) and return the updated table.

    ``table`` must already hold the finished rows (:meth:`ResultsTable.load_finished`). ``on_image(item,
    status, message)`` is called as each image is written or fails. ``log`` gets one-line notes: the
    :class:`~image2stylegan.errors.Notice` warnings of reading each image that could be read (in place of the
    warnings), and images finished earlier that cannot be read now; without ``log``, notices stay warnings.
    """
    say = log or (lambda message: None)
    device = job.generator.w_avg.device
    for chunk in chunks(items, job.batch_size):
        todo = set()
        for it in chunk:
            done, different = finished_run(job, it, outdir)
            if done is not None:
                continue
            if different and job.refuse_stale:
                message = (f"{outdir / it.name} holds a result made with other settings, inputs or code; "
                           "rerun without --refuse-stale to redo it")
                table.error(it, message)
                table.write()
                if on_image is not None:
                    on_image(it, "error", message)
                continue
            todo.add(it.index)
        if not todo:
            continue
        loaded: list[tuple[BatchItem, PhotoInput]] = []
        for it in chunk:
            held: list[str] = []  # this image's notices, said once it is read
            try:
                with notices_to(held.append) if log is not None else nullcontext():
                    photo = _load(job, it)
            except InputError as exc:
                if it.index in todo:
                    table.error(it, str(exc))
                    table.write()
                    if on_image is not None:
                        on_image(it, "error", str(exc))
                else:  # finished earlier but unreadable now: the chunk's batch cannot be rebuilt as it was
                    say(f"{it.path} was processed before but cannot be read now ({exc}); the rest of its batch "
                        "may differ slightly from an uninterrupted run")
                continue
            for message in held:
                say(message)
            loaded.append((it, photo))
        if not any(it.index in todo for it, _ in loaded):
            continue
        target = torch.cat([photo.image for _, photo in loaded]).to(device)
        ws, noise = seeded_start(job.generator, len(loaded), job.settings)
        started = time.perf_counter()
        result = reconstruct(job.generator, target, job.perceptual, job.settings, step_callback,
                             start=Embedding(ws, noise), lpips=job.lpips)
        if result.stopped:  # interrupted: nothing of this chunk is written, so a rerun redoes it whole
            table.flush()  # the rows a throttled write held back
            return table
        seconds = time.perf_counter() - started
        for index, (it, photo) in enumerate(loaded):
            if it.index not in todo:
                continue
            folder = ensure_outdir(outdir / it.name)
            info = {"size": len(loaded), "index": index, "members": [i.name for i, _ in loaded],
                    "seconds_per_image": seconds / len(loaded), **job.layout()}
            metrics = write_reconstruction(folder, job, target, result, index, photo, info)
            table.ok(it, metrics)
            table.write()
            if on_image is not None:
                final = list(metrics["stages"].values())[-1] if metrics["stages"] else {}
                on_image(it, "ok", f"PSNR {final.get('psnr_db', float('nan')):.2f} dB")
    table.flush()
    return table
