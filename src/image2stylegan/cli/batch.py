"""The folder run of ``i2s reconstruct`` (several photos, a folder or a glob): plan, resume, progress, summary.

Exit status: 0 when at least one image is reconstructed (now or by an earlier run of the same command; failures
are rows of results.csv and a line on stderr), 2 with one error line when none is, as for every other error.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import click
import torch

from ..errors import InputError
from .common import INTERRUPTED, compile_requested, open_generator, perceptual_and_lpips, resolve_device
from .photos import open_detector


@dataclass(frozen=True)
class ClusterOptions:
    """``--engine ray``'s options."""

    address: str | None
    workers: int
    gpus_per_worker: float
    threads_per_worker: int


def run_batch(specs, outdir: Path, settings, *, batch_size: int, align: bool, face: int, paste_back: bool,
              device: str, quiet: bool, network: str | None, refuse_stale: bool = False,
              cluster: ClusterOptions | None = None) -> None:
    from ..apps.batch_plan import plan, remove_stale_temporaries
    from ..apps.batch_results import RESULTS_FILE, ResultsTable
    from ..apps.batch_run import FolderJob, finished_run, run_folder
    from ..io import ensure_outdir
    from ..apps.presets import budget_line
    from ..apps.reconstruct import STAGE_NAMES, reconstruction_recipe
    from ..progress import FolderProgress, StopControl, fan_out

    if cluster is not None:
        from ..cluster.ray_folder import require_ray

        require_ray()  # before anything is read or loaded: one line saying what to install
    items = plan(specs)
    dev = resolve_device(device)
    outdir = ensure_outdir(outdir)
    remove_stale_temporaries(outdir, [RESULTS_FILE])
    table = ResultsTable(outdir, items, STAGE_NAMES)
    generator, sha = open_generator(network, dev, compile=compile_requested())
    job = FolderJob(generator, None, None, settings, sha, str(dev), batch_size=batch_size, align=align, face=face,
                    paste_back=paste_back, refuse_stale=refuse_stale)
    # Done means made exactly as this run would make it (settings, input sha256, weights, code); others are redone.
    done = table.load_finished(lambda item: finished_run(job, item, outdir)[0])
    table.write()
    if done == len(items):
        click.echo(f"all {len(items)} images in {outdir}/ are already reconstructed; summary in {outdir}/{RESULTS_FILE}")
        return

    resumed = f" ({done} already finished)" if done else ""
    if cluster is not None:
        _run_on_ray(cluster, job, items, outdir, table, device=device, network=network, quiet=quiet, done=done,
                    resumed=resumed)
        return
    perceptual, lpips = perceptual_and_lpips(dev)
    job = replace(job, perceptual=perceptual, lpips=lpips, detector=open_detector(align))
    click.echo(f"reconstructing {len(items) - done} of {len(items)} images{resumed} on {dev} in batches of "
               f"{batch_size}: {settings.w_steps} W+ steps, {settings.noise_steps} noise steps, "
               f"{settings.noise_space} noise space")
    click.echo(budget_line(reconstruction_recipe(torch.zeros(1, 3, 1, 1), settings)).replace("budget:", "budget per image:"))
    with FolderProgress(len(items), done, disable=quiet) as progress:
        def on_image(item, status, message) -> None:
            progress.advance(failed=status != "ok")
            if status == "ok":
                progress.write(f"{item.path}: {message} -> {outdir / item.name}/")
            else:
                progress.write(f"{item.path}: skipped: {message}", err=True)

        control = StopControl()
        with control.on_signals():
            run_folder(job, items, outdir, table, step_callback=fan_out([progress, control]), on_image=on_image,
                       log=lambda m: progress.write(f"note: {m}", err=True))
    if control.requested:
        click.echo(f"interrupted ({control.reason}); finished images are kept in {outdir}/: run the same command "
                   "again to finish the rest", err=True)
        sys.exit(INTERRUPTED)
    _summary(table, items, outdir)


def _summary(table, items, outdir: Path) -> None:
    from ..apps.batch_results import RESULTS_FILE

    counts = table.counts()
    failed = f", {counts['error']} failed (see {outdir}/{RESULTS_FILE})" if counts["error"] else ""
    click.echo(f"{counts['ok']} of {len(items)} images reconstructed{failed}; summary in {outdir}/{RESULTS_FILE}")
    if counts["ok"] == 0:
        raise InputError(f"none of the {len(items)} input files could be reconstructed; reasons in {outdir}/{RESULTS_FILE}")


def _run_on_ray(cluster: ClusterOptions, job, items, outdir: Path, table, *, device: str, network: str | None,
                quiet: bool, done: int, resumed: str) -> None:
    """The folder run's chunks on Ray (:mod:`image2stylegan.cluster`); the driver keeps results.csv and the bar."""
    from ..apps.batch_run import finished_run
    from ..apps.presets import budget_line
    from ..apps.reconstruct import reconstruction_recipe
    from ..cluster.ray_folder import RUN_LOG, ClusterSpec, run_folder_on_ray
    from ..io import atomic_write_json
    from ..progress import FolderProgress

    spec = ClusterSpec(job.settings, str(outdir), network=network, device=device, cwd=os.getcwd(),
                       batch_size=job.batch_size, align=job.align, face=job.face, paste_back=job.paste_back,
                       refuse_stale=job.refuse_stale, threads=cluster.threads_per_worker,
                       gpus=cluster.gpus_per_worker, compile=compile_requested(),
                       env={k: v for k, v in os.environ.items() if k.startswith("I2S_")})
    where = cluster.address or "a local Ray cluster"
    click.echo(f"reconstructing {len(items) - done} of {len(items)} images{resumed} on {where} with "
               f"{cluster.workers} worker(s) in batches of {job.batch_size}: {job.settings.w_steps} W+ steps, "
               f"{job.settings.noise_steps} noise steps")
    click.echo(budget_line(reconstruction_recipe(torch.zeros(1, 3, 1, 1), job.settings)).replace(
        "budget:", "budget per image:"))
    with FolderProgress(len(items), done, disable=quiet) as progress:
        def on_chunk(chunk, rows, notes) -> None:
            for message in notes:
                progress.write(f"note: {message}", err=True)
            for item in chunk:
                row = rows.get(item.index)
                if row is None:
                    continue
                progress.advance(failed=row["status"] == "error")
                if row["status"] == "ok":
                    progress.write(f"{item.path}: PSNR {row.get('psnr_noise_db', '?')} dB -> {outdir / item.name}/")
                else:
                    progress.write(f"{item.path}: skipped: {row['message']}", err=True)

        try:
            stats = run_folder_on_ray(spec, items, table, address=cluster.address, workers=cluster.workers,
                                      unfinished=lambda item: finished_run(job, item, outdir)[0] is None,
                                      on_chunk=on_chunk)
            atomic_write_json(outdir / RUN_LOG, {"address": cluster.address, "threads_per_worker": spec.threads,
                                                 "gpus_per_worker": spec.gpus, **stats})
        except KeyboardInterrupt:
            click.echo(f"interrupted; finished images are kept in {outdir}/: run the same command again to finish "
                       "the rest", err=True)
            sys.exit(INTERRUPTED)
    _summary(table, items, outdir)
