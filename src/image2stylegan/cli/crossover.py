"""``i2s crossover`` (Alg. 3, the "two-face" of Fig. 1d) and ``i2s inpaint`` (Alg. 4)."""

from __future__ import annotations

from pathlib import Path

import click

from ..apps.crossover import CrossoverSettings
from ..apps.inpaint import InpaintSettings
from ..apps.presets import settings_for
from .common import (cli, echo_budget, echo_stages, exit_if_stopped, from_option, load_from, mask_option,
                     method_option, perceptual_and_lpips, run_options, running, setup)
from .photos import (align_options, aligned_files, check_align_options, open_detector, outputs_for, read_like, read_mask,
                     read_photo)

def _load_input(generator, photo, latent, *, align=False, face=0, detector=None):
    """An input image [1, 3, H, W] on the generator's device: the photo (FFHQ-aligned with ``align``), or the
    render of a saved embedding.

    Returns (image, ws or None, source description, PhotoInput or None)."""
    import torch

    if latent is not None:
        ws, noise = load_from(latent, generator)
        with torch.no_grad():
            image = generator.synthesis(ws, noise).clamp(-1, 1)
        return image, ws, f"render of {latent}", None
    loaded = read_photo(photo, generator, align=align, face=face, detector=detector)
    return loaded.image.to(generator.w_avg.device), None, str(photo), loaded


# -- crossover ---------------------------------------------------------------------------------------------------
@cli.command(short_help="Blend a region of photo A into photo B (the paper's two-face, Alg. 3).")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@mask_option(help="Region taken from A: left-half, right-half, top-half, bottom-half, or a mask image "
                  "(white = A).")
@click.option("--from-a", "from_a", type=click.Path(path_type=Path),
              help="Use this latent.npz instead of photo A: A is its render and the W+ stage starts from its W+ "
                   "(the paper's w*). Without it the W+ stage starts from the mean latent.")
@click.option("--from-b", "from_b", type=click.Path(path_type=Path),
              help="Use this latent.npz instead of photo B (B is its render).")
@align_options
@run_options(CrossoverSettings, feather=True)
def crossover(images, mask_spec, from_a, from_b, align, face, paste_back, outdir, quality, schedule, w_steps,
              noise_steps, feather, noise_space, device, seed, quiet, network) -> None:
    """Image crossover (Alg. 3): the masked region of A over B, blended by the generator.

    Usage: i2s crossover A B --mask left-half --outdir DIR (A or B may be replaced by --from-a / --from-b).

    One W+ stage fits A inside the blurred mask M_blur and B outside it (MSE + perceptual, summed), then the noise
    stage matches A inside M_blur and B outside. Budget: the --quality preset's edit steps (the paper gives no
    count for crossover), Adam lr 0.01 / 5, mask blur sigma 3 % of the side. Writes result.png, panel.png
    (A | B | naive copy-paste | result), latent.npz, metrics.json (PSNR vs A inside the mask, vs B outside) and
    curves.png into OUTDIR. With --align both photos are aligned (--face picks the face in each); --paste-back
    pastes the result into B, whose surroundings it keeps (`i2s paste-back OUTDIR --role a` pastes it into A).
    """
    from ..apps.crossover import prepare_crossover
    from ..apps.outputs import save
    from ..masks import check_mask_content, resolve_mask

    wanted = (from_a is None) + (from_b is None)
    if len(images) != wanted:
        raise click.UsageError(
            f"crossover needs images A and B: give {wanted} photo(s) as arguments "
            f"({'A ' if from_a is None else ''}{'B' if from_b is None else ''}) besides --from-a/--from-b, "
            f"got {len(images)}"
        )
    check_align_options(align, face, paste_back, photos=len(images))
    photos = iter(images)
    photo_a = None if from_a is not None else next(photos)
    photo_b = None if from_b is not None else next(photos)
    settings = settings_for(CrossoverSettings, quality, schedule=schedule, w_steps=w_steps, noise_steps=noise_steps,
                            feather=feather, noise_space=noise_space, seed=seed)
    dev, outdir, generator, sha = setup(device, outdir, network)
    mask = resolve_mask(mask_spec, generator.resolution)
    check_mask_content(mask, "crossover")
    detector = open_detector(align)
    image_a, ws_a, source_a, input_a = _load_input(generator, photo_a, from_a, align=align, face=face, detector=detector)
    image_b, _, source_b, input_b = _load_input(generator, photo_b, from_b, align=align, face=face, detector=detector)
    aligned = {"a": (input_a, "aligned_a.png"), "b": (input_b, "aligned_b.png")}
    extra, before_metrics = outputs_for(aligned, paste_into="b", paste_back=paste_back)
    perceptual, _ = perceptual_and_lpips(dev)
    click.echo(f"crossover on {dev}: {settings.w_steps} W+ steps, {settings.noise_steps} noise steps, mask {mask_spec}")
    plan = prepare_crossover(generator, image_a, image_b, mask.to(dev), settings, ws=ws_a)
    echo_budget(plan.recipe)
    with running(quiet) as callback:
        result = plan.run(generator, perceptual, callback)
    echo_stages(result)
    save(outdir, result, generator=generator, command="crossover", settings=settings, weights_sha256=sha,
         inputs={"a": from_a or photo_a, "b": from_b or photo_b, "mask": mask_spec}, extra=extra,
         before_metrics=before_metrics)
    m = result.metrics
    click.echo(f"result: PSNR {m['psnr_a_inside_db']:.2f} dB vs A inside the mask, {m['psnr_b_outside_db']:.2f} dB "
               "vs B outside")
    click.echo(f"outputs in {outdir}/: result.png panel.png latent.npz metrics.json curves.png"
               f"{aligned_files(aligned, paste_back)}")
    exit_if_stopped(callback, outdir)


# -- inpaint -----------------------------------------------------------------------------------------------------
@cli.command(short_help="Fill a hole from the known pixels (Alg. 4).")
@click.argument("photo", required=False, type=click.Path(path_type=Path))
@mask_option(help="The hole (white = missing): a mask image, or 'center' (a centred square of half the "
                  "side).")
@click.option("--reference", type=click.Path(path_type=Path),
              help="The intact original, for PSNR inside the hole and LPIPS (never used by the algorithm).")
@from_option(help="Use the render of this latent.npz instead of PHOTO (its hole pixels are then "
                  "ignored).")
@click.option("--start-steps", default=None, type=int,
              help="With --method improved: W+ steps that first embed the photo with its hole filled by OpenCV's "
                   "Telea inpainting, the start of the masked W+ stage. Default 0: the mean latent, as the paper.")
@method_option
@align_options
@run_options(InpaintSettings, feather=True)
def inpaint(photo, mask_spec, reference, from_latent, start_steps, method, align, face, paste_back, outdir, quality,
            schedule, w_steps, noise_steps, feather, noise_space, device, seed, quiet, network) -> None:
    """Inpainting (Alg. 4): fill the hole in PHOTO from the known pixels alone.

    Usage: i2s inpaint PHOTO --mask HOLE.png|center --outdir DIR [--reference ORIGINAL].

    The W+ stage sees only the known pixels and moves only the W+ rows whose layers are at most 64 px plus the
    last two (the paper's rows 1-9, 17, 18; the rest stay at the mean latent); the noise stage then matches the
    known region outside a dilated, blurred hole and keeps the W+ prediction inside it (weight 10:1, the paper's
    1e-4 : 1e-5). With --method improved (the default) the perceptual term compares with the known pixels
    composited over the current render, so the flat fill never reaches VGG, and the noise stage fits every known
    pixel (and --start-steps N first embeds the
    photo with its hole filled by OpenCV's Telea inpainting). result.png is the generator's output
    (what latent.npz renders); filled.png is the photo with the render's hole blended in (Poisson image editing:
    known pixels kept, no seam). Budget: the --quality preset's edit noise steps; the W+ stage, which starts at the
    mean latent, also gets the time other edits spend embedding their photo (draft 200, good 400, paper 1000 steps;
    the paper: 200 steps of gradient descent), Adam. Writes result.png, filled.png, panel.png (defective input | naive fill | result
    | filled [| Telea fill | reference]), latent.npz, metrics.json (PSNR on the known region; with --reference, PSNR
    in the hole and LPIPS around it for the result and the filled photo, each beside the flat fill's and OpenCV's
    Telea inpainting's) and curves.png into OUTDIR. With --align, a hole image the size of the original photo is
    aligned with it (others are taken as drawn on the aligned image) and --reference must be the photo's size;
    --paste-back pastes filled.png into the original photo.
    """
    from ..apps.inpaint import prepare_inpaint
    from ..apps.outputs import save
    from ..masks import check_mask_content

    if (photo is None) == (from_latent is None):
        raise click.UsageError("inpaint needs exactly one of PHOTO or --from LATENT")
    check_align_options(align, face, paste_back, photos=int(photo is not None))
    settings = settings_for(InpaintSettings, quality, schedule=schedule, w_steps=w_steps, noise_steps=noise_steps,
                            feather=feather, noise_space=noise_space, seed=seed, method=method,
                            start_steps=start_steps)
    dev, outdir, generator, sha = setup(device, outdir, network)
    detector = open_detector(align)
    image, _, source, loaded = _load_input(generator, photo, from_latent, align=align, face=face, detector=detector)
    hole = read_mask(mask_spec, generator.resolution, loaded)
    check_mask_content(hole, "inpainting hole")
    ref = None
    if reference is not None:
        ref = (read_like(reference, generator, loaded) if loaded is not None
               else read_photo(reference, generator)).image.to(dev)
    aligned = {"photo": (loaded, "aligned.png")}
    # --paste-back puts the filled photo (known pixels kept) back into the original, not the render.
    extra, before_metrics = outputs_for(aligned, paste_into="photo", result="filled.png", paste_back=paste_back)
    perceptual, lpips = perceptual_and_lpips(dev)
    click.echo(f"inpainting on {dev}: {settings.w_steps} W+ steps, {settings.noise_steps} noise steps, hole "
               f"{mask_spec} ({float(hole.mean()):.0%} of the image)")
    plan = prepare_inpaint(generator, image, hole.to(dev), settings, reference=ref, lpips=lpips)
    echo_budget(plan.recipe)
    with running(quiet) as callback:
        result = plan.run(generator, perceptual, callback)
    echo_stages(result)
    save(outdir, result, generator=generator, command="inpaint", settings=settings, weights_sha256=sha,
         inputs={"photo": from_latent or photo, "mask": mask_spec, "reference": reference}, extra=extra,
         before_metrics=before_metrics)
    m = result.metrics
    line = f"result: PSNR {m['psnr_known_db']:.2f} dB on the known region"
    if "reference" in m:
        r = m["reference"]
        line += (f", {r['psnr_hole_db']:.2f} dB in the hole vs the reference ({r['filled_psnr_hole_db']:.2f} dB "
                 f"filled; flat fill {r['naive_fill_psnr_hole_db']:.2f} dB, Telea {r['telea_psnr_hole_db']:.2f} dB)")
    click.echo(line)
    click.echo(f"outputs in {outdir}/: result.png filled.png panel.png latent.npz metrics.json curves.png"
               f"{aligned_files(aligned, paste_back)}")
    exit_if_stopped(callback, outdir)
