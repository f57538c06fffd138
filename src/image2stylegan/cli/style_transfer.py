"""``i2s style-transfer`` (local style transfer, Alg. 6) and ``i2s scribble`` (local edits from scribbles, Alg. 5)."""

from __future__ import annotations

from pathlib import Path

import click

from ..apps.style_transfer import DEFAULT_STYLE_WEIGHT
from ..errors import InputError
from .common import NETWORK_HELP, NOISE_SPACE_HELP, cli, notice, open_generator, resolve_device
from .photos import (align_options, aligned_files, check_align_options, open_detector, outputs_for, read_like, read_mask,
                     read_photo)

DEVICES = click.Choice(["auto", "cpu", "cuda", "mps"])
FROM_HELP = "Reuse this latent.npz (e.g. from i2s reconstruct) as the {what}'s embedding instead of embedding it again."


def _perceptual(device):
    """The W+ stages' VGG16 perceptual loss (no LPIPS: these commands report their own metrics)."""
    from ..losses import PerceptualLoss

    return PerceptualLoss.from_file().to(device)


def _setup(device: str, outdir: Path, network: str | None):
    """(device, outdir, generator, weights sha256): the output folder is checked before anything slow."""
    from ..io import ensure_outdir

    dev = resolve_device(device)
    outdir = ensure_outdir(outdir)  # fail before minutes of work, not after
    generator, sha = open_generator(network, dev)
    return dev, outdir, generator, sha


def _load(path: Path, generator):
    from ..io import load_image

    image, notices = load_image(path, generator.resolution)
    for n in notices:
        notice(n)
    return image.to(generator.w_avg.device)


def _load_from(path: Path | None, generator):
    if path is None:
        return None, None
    from ..apps.outputs import load_embedding

    ws, noise, notices = load_embedding(generator, Path(path))
    for n in notices:
        notice(n)
    return ws, noise


def _stage_done(outcome) -> None:
    per_step = outcome.seconds / outcome.steps if outcome.steps else 0.0
    click.echo(f"{outcome.name} stage: PSNR {float(outcome.psnr[0]):.2f} dB (whole image, against the stage's target) after {outcome.steps} steps "
               f"({outcome.seconds:.0f} s, {per_step:.2f} s/step)")


def _db(value) -> str:
    return "identical" if value is None else f"{value:.2f} dB"


def _common_options(func):
    for option in reversed([
        click.option("--outdir", required=True, type=click.Path(path_type=Path), help="Output folder (created if missing)."),
        click.option("--w-steps", default=1000, show_default=True, type=click.IntRange(min=0),
                     help="Steps of the edit's W+ stage (Adam lr 0.01; the paper gives no count, digest §9 #12)."),
        click.option("--w-lr", default=0.01, show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Adam learning rate of the W+ stages (the paper's 0.01; larger moves the edit further "
                          "in fewer steps)."),
        click.option("--noise-steps", default=1000, show_default=True, type=click.IntRange(min=0),
                     help="Steps of the masked noise stage (Adam lr 5, MSE only)."),
        click.option("--feather", default=0.03, show_default=True, type=click.FloatRange(min=0),
                     help="M_blur: Gaussian sigma of the mask blur as a fraction of the image side (paper: 'suitable "
                          "size'; digest §9 #11 recommends 2-5 %)."),
        click.option("--noise-space", default="paper", show_default=True, type=click.Choice(["paper", "extended"]),
                     help=NOISE_SPACE_HELP),
        click.option("--init", default="mean", show_default=True, type=click.Choice(["mean", "uniform"]),
                     help="Initial W+ when embedding a photo: the mean latent (faces) or U[-1, 1] (other images)."),
        click.option("--device", default="auto", show_default=True, type=DEVICES),
        click.option("--seed", default=0, show_default=True, type=int, help="Seeds the initial noise (and uniform init)."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        click.option("--network", default=None, metavar="PATH|NAME", help=NETWORK_HELP),
    ]):
        func = option(func)
    return func


def _finish(outdir: Path, result, generator, sha, command: str, settings, inputs: dict, aligned: dict,
            paste_back: bool) -> dict:
    from ..apps.outputs import EDIT_OUTPUT_FILES, save_edit

    extra, before_metrics = outputs_for(outdir, aligned, paste_into="photo", paste_back=paste_back)
    metrics = save_edit(outdir, result, generator=generator, command=command, settings=settings,
                        weights_sha256=sha, inputs=inputs, extra=extra, before_metrics=before_metrics)
    click.echo(f"outputs in {outdir}/: {' '.join(EDIT_OUTPUT_FILES)}{aligned_files(aligned, paste_back)}")
    return metrics


# -- style-transfer ----------------------------------------------------------------------------------------------
@cli.command("style-transfer", short_help="Keep the content inside a mask, another image's style outside (Alg. 6).")
@click.argument("content", type=click.Path(path_type=Path))
@click.argument("style", type=click.Path(path_type=Path))
@click.option("--mask", "mask_spec", required=True,
              help="Region whose CONTENT is kept (e.g. the face): a preset (left-half, right-half, top-half, "
                   "bottom-half, center) or a PNG (white = keep). STYLE's style goes everywhere else.")
@click.option("--from", "from_latent", type=click.Path(path_type=Path), default=None, help=FROM_HELP.format(what="content"))
@click.option("--embed-steps", default=1000, show_default=True, type=click.IntRange(min=0),
              help="W+ steps embedding CONTENT first (Alg. 6 line 1; skipped with --from).")
@click.option("--style-weight", default=DEFAULT_STYLE_WEIGHT, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="lambda_s of the Gram (conv3_3) style term, with lambda_mse = lambda_p = 1. The paper's ratio "
                   "(0.05) is for its own Gram normalisation; this default gives the style term the content terms' "
                   "gradient size at the start (see the README).")
@align_options
@_common_options
def style_transfer(content, style, mask_spec, from_latent, embed_steps, style_weight, align, face, paste_back, outdir,
                   w_steps, w_lr, noise_steps, feather, noise_space, init, device, seed, quiet, network) -> None:
    """Local style transfer (Alg. 6): keep CONTENT inside --mask and give the rest the style (VGG16 conv3_3 Gram
    matrices) of STYLE, in one W+ stage over the sum of both objectives, then restore detail with the masked noise
    stage (CONTENT inside the blurred mask, the W+ result outside). Writes result.png, panel.png (content | style |
    naive copy-paste | result), latent.npz, metrics.json (PSNR inside the mask, style distance outside) and
    curves.png into OUTDIR. --align aligns CONTENT (STYLE is only a source of texture statistics and is
    centre-cropped as usual); a mask image the size of the original CONTENT photo is aligned with it."""
    from ..apps.style_transfer import StyleTransferSettings, local_style_transfer
    from ..progress import TqdmProgress

    settings = StyleTransferSettings(
        w_steps=w_steps, w_lr=w_lr, noise_steps=noise_steps, embed_steps=embed_steps, style_weight=style_weight,
        feather=feather, noise_space=noise_space, init=init, seed=seed,
    )
    check_align_options(align, face, paste_back)
    dev, outdir, generator, sha = _setup(device, outdir, network)
    loaded = read_photo(content, generator, align=align, face=face, detector=open_detector(align))
    content_image, style_image = loaded.image.to(dev), _load(style, generator)
    mask = read_mask(mask_spec, generator.resolution, loaded)
    ws, noise = _load_from(from_latent, generator)
    perceptual = _perceptual(dev)
    first = "reusing the content embedding from " + str(from_latent) if from_latent else f"{embed_steps} W+ steps on {content}"
    click.echo(f"style transfer on {dev}: {first}, {w_steps} W+ steps (content + style), {noise_steps} noise steps")
    with TqdmProgress(disable=quiet) as progress:
        result = local_style_transfer(generator, content_image, style_image, mask, perceptual, settings, ws=ws,
                                      noise=noise, callback=progress, on_stage_end=_stage_done)
    m = result.metrics
    click.echo(f"PSNR against CONTENT inside the mask {_db(m['psnr_inside_mask_db']['final'])} (start "
               f"{_db(m['psnr_inside_mask_db']['start'])}); style distance outside reduced by "
               f"{100 * m['style_distance_reduction']:.0f} %")
    _finish(outdir, result, generator, sha, "style-transfer", settings,
            {"content": str(content), "style": str(style), "mask": str(mask_spec), "from": str(from_latent or "")},
            {"photo": (loaded, "aligned.png")}, paste_back)


# -- scribble ----------------------------------------------------------------------------------------------------
def _parse_rows(value: str | None):
    if value is None:
        return None
    try:
        rows = tuple(int(v) for v in value.replace(" ", "").split(",") if v != "")
    except ValueError:
        raise InputError(f"--rows must be comma-separated W+ row numbers such as 0,1,2,3, got {value!r}") from None
    if not rows:
        raise InputError("--rows is empty")
    return rows


@cli.command("scribble", short_help="Turn rough colour scribbles into a photo-realistic edit (Alg. 5).")
@click.argument("photo", type=click.Path(path_type=Path))
@click.argument("scribbled", type=click.Path(path_type=Path))
@click.option("--mask", "mask_spec", default=None,
              help="Edited region (preset or PNG, white = edited). Default: the pixels where SCRIBBLED differs "
                   "from PHOTO by more than --threshold.")
@click.option("--from", "from_latent", type=click.Path(path_type=Path), default=None, help=FROM_HELP.format(what="photo"))
@click.option("--embed-w-steps", default=1000, show_default=True, type=click.IntRange(min=0),
              help="W+ steps embedding PHOTO first (skipped with --from).")
@click.option("--embed-noise-steps", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Noise steps embedding PHOTO first (skipped with --from).")
@click.option("--max-resolution", default=16, show_default=True, type=click.IntRange(min=1),
              help="Optimise the W+ rows of the layers running at this many px or fewer: the paper's 'first 4 to 6 "
                   "layers' of W+ (rows 0-6 of the bundled generator).")
@click.option("--rows", "rows_spec", default=None, help="Explicit W+ rows to optimise, e.g. 0,1,2,3 (overrides --max-resolution).")
@click.option("--threshold", default=0.05, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="A pixel is scribbled when a channel changed by more than this (on the 0-1 scale).")
@align_options
@_common_options
def scribble(photo, scribbled, mask_spec, from_latent, embed_w_steps, embed_noise_steps, max_resolution, rows_spec,
             threshold, align, face, paste_back, outdir, w_steps, w_lr, noise_steps, feather, noise_space, init, device,
             seed, quiet, network) -> None:
    """Local edits from scribbles (Alg. 5): starting from PHOTO's embedding, embed SCRIBBLED into the coarse W+
    rows only (MSE + perceptual, no masks: the strokes' colours are only a guide), then run the noise stage
    towards PHOTO outside the blurred scribble mask to restore its detail. Writes result.png, panel.png
    (original | scribbled | result), latent.npz, metrics.json (PSNR against PHOTO outside the edit) and curves.png
    into OUTDIR. Compare lossless files: JPEG noise alone can exceed --threshold. Only 7 coarse rows move, so at
    budgets of a few hundred steps the paper's --w-lr 0.01 barely shows the strokes; 0.05 does (the README gallery
    uses 100 steps at 0.05). With --align the face is found in PHOTO and SCRIBBLED is aligned with the same
    transform (it must be the same size), so their difference is still the strokes."""
    from ..apps.scribble import ScribbleSettings, scribble_edit
    from ..progress import TqdmProgress

    settings = ScribbleSettings(
        w_steps=w_steps, w_lr=w_lr, noise_steps=noise_steps, embed_w_steps=embed_w_steps, embed_noise_steps=embed_noise_steps,
        max_resolution=max_resolution, rows=_parse_rows(rows_spec), threshold=threshold, feather=feather,
        noise_space=noise_space, init=init, seed=seed,
    )
    check_align_options(align, face, paste_back)
    dev, outdir, generator, sha = _setup(device, outdir, network)
    loaded = read_photo(photo, generator, align=align, face=face, detector=open_detector(align))
    loaded_scribbled = read_like(scribbled, generator, loaded)
    photo_image, scribbled_image = loaded.image.to(dev), loaded_scribbled.image.to(dev)
    mask = None if mask_spec is None else read_mask(mask_spec, generator.resolution, loaded)
    ws, noise = _load_from(from_latent, generator)
    perceptual = _perceptual(dev)
    first = ("reusing the photo's embedding from " + str(from_latent) if from_latent
             else f"{embed_w_steps} W+ + {embed_noise_steps} noise steps on {photo}")
    click.echo(f"scribble edit on {dev}: {first}, {w_steps} W+ steps (coarse rows), {noise_steps} noise steps")
    with TqdmProgress(disable=quiet) as progress:
        result = scribble_edit(generator, photo_image, scribbled_image, perceptual, settings, mask=mask, ws=ws,
                               noise=noise, callback=progress, on_stage_end=_stage_done)
    m = result.metrics
    click.echo(f"W+ rows optimised: {','.join(map(str, m['rows']))}; PSNR against PHOTO outside the edit "
               f"{_db(m['psnr_outside_edit_db']['final'])} (after the W+ stage "
               f"{_db(m['psnr_outside_edit_db']['after_w_plus'])})")
    _finish(outdir, result, generator, sha, "scribble", settings,
            {"photo": str(photo), "scribbled": str(scribbled), "mask": str(mask_spec or ""), "from": str(from_latent or "")},
            {"photo": (loaded, "aligned.png"), "scribbled": (loaded_scribbled, "aligned_scribbled.png")}, paste_back)
