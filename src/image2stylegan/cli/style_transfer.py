"""``i2s style-transfer`` (local style transfer, Alg. 6) and ``i2s scribble`` (local edits from scribbles, Alg. 5)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from ..apps.scribble import ScribbleSettings
from ..apps.style_transfer import DEFAULT_STYLE_WEIGHT, StyleTransferSettings
from ..apps.presets import settings_for
from .common import (FROM_HELP, budget_steps, cli, default, echo_budget, echo_stages, exit_if_stopped, from_option,
                     load_from, mask_option, method_option, perceptual_loss, run_options, running, setup)
from .photos import (align_options, aligned_files, check_align_options, open_detector, outputs_for, read_like, read_mask,
                     read_photo)


def _db(value) -> str:
    return "identical" if value is None else f"{value:.2f} dB"


def _num(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def _finish(outdir: Path, result, generator, sha, command: str, settings, inputs: dict, aligned: dict,
            paste_back: bool, callback, summary: str) -> None:
    """Report the stages and ``summary``, save every output, and exit 130 if the run was interrupted."""
    from ..apps.outputs import EDIT_OUTPUT_FILES, save

    echo_stages(result)
    click.echo(summary)
    extra, before_metrics = outputs_for(aligned, paste_into="photo", paste_back=paste_back)
    save(outdir, result, generator=generator, command=command, settings=settings, weights_sha256=sha, inputs=inputs,
         extra=extra, before_metrics=before_metrics)
    click.echo(f"outputs in {outdir}/: {' '.join(EDIT_OUTPUT_FILES)}{aligned_files(aligned, paste_back)}")
    exit_if_stopped(callback, outdir)


# -- style-transfer ----------------------------------------------------------------------------------------------
@cli.command("style-transfer", short_help="Keep the content inside a mask, another image's style outside (Alg. 6).")
@click.argument("content", type=click.Path(path_type=Path))
@click.argument("style", type=click.Path(path_type=Path))
@mask_option(help="Region whose CONTENT is kept (e.g. the face): a preset (left-half, right-half, top-half, "
                   "bottom-half, center) or a PNG (white = keep). STYLE's style goes everywhere else.")
@from_option(FROM_HELP.format(what="content"))
@click.option("--embed-steps", default=None, type=int,
              help=budget_steps("W+ steps embedding CONTENT first (Alg. 6 line 1; skipped with --from)."))
@click.option("--style-weight", default=DEFAULT_STYLE_WEIGHT, show_default=True, type=float,
              help="lambda_s of the Gram (conv3_3) style term, with lambda_mse = lambda_p = 1. The paper's ratio "
                   "(0.05) is for its own Gram normalisation; this default gives the style term the content terms' "
                   "gradient size at the start (docs/algorithm.md#style-weight).")
@click.option("--w-plus-noise", default=default(StyleTransferSettings, "w_plus_noise"), show_default=True,
              type=click.Choice(["fitted", "fresh"]),
              help="Noise maps the style W+ stage renders with: the content's fitted maps, or fresh seeded maps "
                   "(the paper's; always with --method paper).")
@method_option
@align_options
@run_options(StyleTransferSettings, w_lr=True, feather=True, init=True)
def style_transfer(content, style, mask_spec, from_latent, embed_steps, style_weight, w_plus_noise, method, align,
                   face, paste_back, outdir, quality, schedule, w_steps, w_lr, noise_steps, feather, noise_space, init,
                   device, seed, quiet, network) -> None:
    """Local style transfer (Alg. 6): keep CONTENT inside --mask and give the rest the style (VGG16 conv3_3 Gram
    matrices) of STYLE, in one W+ stage over the sum of both objectives, then restore detail with the masked noise
    stage (CONTENT inside the blurred mask, the W+ result outside). Writes result.png, panel.png (content | style |
    naive copy-paste | result), latent.npz, metrics.json (PSNR inside the mask, style distance outside) and
    curves.png into OUTDIR. --align aligns CONTENT (STYLE is only a source of texture statistics and is
    centre-cropped as usual); a mask image the size of the original CONTENT photo is aligned with it."""
    from ..apps.style_transfer import prepare_style_transfer

    settings = settings_for(
        StyleTransferSettings, quality, schedule=schedule, w_steps=w_steps, w_lr=w_lr, noise_steps=noise_steps,
        embed_steps=embed_steps, style_weight=style_weight, feather=feather, noise_space=noise_space, init=init,
        seed=seed, w_plus_noise=w_plus_noise, method=method,
    )
    check_align_options(align, face, paste_back)
    dev, outdir, generator, sha = setup(device, outdir, network)
    loaded = read_photo(content, generator, align=align, face=face, detector=open_detector(align))
    content_image, style_image = loaded.image.to(dev), read_photo(style, generator).image.to(dev)
    mask = read_mask(mask_spec, generator.resolution, loaded)
    ws, noise = load_from(from_latent, generator)
    perceptual = perceptual_loss(dev)
    first = ("reusing the content embedding from " + str(from_latent) if from_latent
             else f"{settings.embed_steps} W+ steps on {content}")
    click.echo(f"style transfer on {dev}: {first}, {settings.w_steps} W+ steps (content + style), "
               f"{settings.noise_steps} noise steps")
    plan = prepare_style_transfer(generator, content_image, style_image, mask, perceptual, settings, ws=ws, noise=noise)
    echo_budget(plan.recipe)
    with running(quiet) as callback:
        result = plan.run(generator, perceptual, callback)
    m = result.metrics
    summary = (f"PSNR against CONTENT inside the mask {_db(m['psnr_inside_mask_db']['final'])} (start "
               f"{_db(m['psnr_inside_mask_db']['start'])}); style distance outside {100 * m['style_distance_reduction_vs_content']:.0f} % "
               f"below CONTENT's own (result {_num(m['style_distance_outside']['final'])}, a copy-paste of STYLE "
               f"{_num(m['style_distance_outside_naive'])})")
    _finish(outdir, result, generator, sha, "style-transfer", settings,
            {"content": content, "style": style, "mask": mask_spec, "from": from_latent},
            {"photo": (loaded, "aligned.png")}, paste_back, callback, summary)


# -- scribble ----------------------------------------------------------------------------------------------------
@cli.command("scribble", short_help="Turn rough colour scribbles into a photo-realistic edit (Alg. 5).")
@click.argument("photo", type=click.Path(path_type=Path))
@click.argument("scribbled", type=click.Path(path_type=Path))
@mask_option(required=False,
             help="Edited region (preset or PNG, white = edited). Default: the pixels where SCRIBBLED differs "
                   "from PHOTO by more than --threshold.")
@from_option(FROM_HELP.format(what="photo"))
@click.option("--embed-w-steps", default=None, type=int,
              help=budget_steps("W+ steps embedding PHOTO first (skipped with --from)."))
@click.option("--embed-noise-steps", default=None, type=int,
              help=budget_steps("Noise steps embedding PHOTO first (skipped with --from)."))
@click.option("--max-resolution", default=None, type=int,
              help="Optimise the W+ rows of the layers running at this many px or fewer. Default: the method's, 32 "
                   "with --method improved (rows 0-9 of the bundled generator, plus the last two), 16 with --method "
                   "paper (the paper's 'first 4 to 6 layers' of W+, rows 0-6).")
@click.option("--rows", "rows_spec", default=None, help="Explicit W+ rows to optimise, e.g. 0,1,2,3 (overrides --max-resolution).")
@click.option("--threshold", default=default(ScribbleSettings, "threshold"), show_default=True, type=float,
              help="A pixel is scribbled when a channel changed by more than this (on the 0-1 scale).")
@method_option
@align_options
@run_options(ScribbleSettings, w_lr=True, feather=True, init=True)
def scribble(photo, scribbled, mask_spec, from_latent, embed_w_steps, embed_noise_steps, max_resolution, rows_spec,
             threshold, method, align, face, paste_back, outdir, quality, schedule, w_steps, w_lr, noise_steps,
             feather, noise_space, init, device, seed, quiet, network) -> None:
    """Local edits from scribbles (Alg. 5): starting from PHOTO's embedding, embed SCRIBBLED into the coarse W+
    rows only (MSE + perceptual, no masks: the strokes' colours are only a guide), then run the noise stage
    towards PHOTO outside the blurred scribble mask to restore its detail. Writes result.png, panel.png
    (original | scribbled | result), latent.npz, metrics.json (PSNR against PHOTO outside the edit) and curves.png
    into OUTDIR. Compare lossless files: JPEG noise alone can exceed --threshold. With --method paper only the 7
    coarse rows move and the strokes barely show at CPU budgets; the default --method improved also moves the rows
    up to 32 px and the colour rows, asks for the edit inside the dilated mask and for the photo outside it
    (docs/algorithm.md#edits-beyond-the-paper). With --align the face is found in PHOTO and SCRIBBLED is aligned with the same
    transform (it must be the same size), so their difference is still the strokes."""
    from ..apps.activations import parse_index_ranges
    from ..apps.scribble import prepare_scribble

    settings = settings_for(
        ScribbleSettings, quality, schedule=schedule, w_steps=w_steps, w_lr=w_lr, noise_steps=noise_steps,
        embed_w_steps=embed_w_steps, embed_noise_steps=embed_noise_steps, max_resolution=max_resolution,
        threshold=threshold, feather=feather, noise_space=noise_space, init=init, seed=seed, method=method,
    )
    check_align_options(align, face, paste_back)
    dev, outdir, generator, sha = setup(device, outdir, network)
    if rows_spec is not None:
        settings = replace(settings, rows=tuple(parse_index_ranges(rows_spec, generator.num_ws, "--rows")))
    loaded = read_photo(photo, generator, align=align, face=face, detector=open_detector(align))
    loaded_scribbled = read_like(scribbled, generator, loaded)
    photo_image, scribbled_image = loaded.image.to(dev), loaded_scribbled.image.to(dev)
    mask = None if mask_spec is None else read_mask(mask_spec, generator.resolution, loaded)
    ws, noise = load_from(from_latent, generator)
    perceptual = perceptual_loss(dev)
    first = ("reusing the photo's embedding from " + str(from_latent) if from_latent
             else f"{settings.embed_w_steps} W+ + {settings.embed_noise_steps} noise steps on {photo}")
    click.echo(f"scribble edit on {dev}: {first}, {settings.w_steps} W+ steps (coarse rows), "
               f"{settings.noise_steps} noise steps")
    plan = prepare_scribble(generator, photo_image, scribbled_image, settings, mask=mask, ws=ws, noise=noise)
    echo_budget(plan.recipe)
    with running(quiet) as callback:
        result = plan.run(generator, perceptual, callback)
    m = result.metrics
    progress = m["edit_progress"]["final"]
    summary = (f"W+ rows optimised: {','.join(map(str, m['rows']))}; PSNR against PHOTO outside the edit "
               f"{_db(m['psnr_outside_dilated_edit_db']['final'])} (after the W+ stage "
               f"{_db(m['psnr_outside_dilated_edit_db']['after_w_plus'])}); the edited pixels moved "
               f"{'-' if progress is None else f'{100 * progress:.0f} %'} of the way to the scribble's colours")
    _finish(outdir, result, generator, sha, "scribble", settings,
            {"photo": photo, "scribbled": scribbled, "mask": mask_spec, "from": from_latent},
            {"photo": (loaded, "aligned.png"), "scribbled": (loaded_scribbled, "aligned_scribbled.png")}, paste_back,
            callback, summary)
