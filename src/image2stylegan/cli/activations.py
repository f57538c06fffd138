"""``i2s layers``, ``i2s transfer-attribute`` (I_att, Eq. 5) and ``i2s latent-edit`` (local + global edits)."""

from __future__ import annotations

from pathlib import Path

import click

from ..apps.activations import DEFAULT_LAYER, LAYER_ALIASES, OPS, AttributeTransferSettings
from ..apps.latent_ops import NOISE_MODES, ROW_PRESETS
from ..apps.latent_ops import OPS as LATENT_OPS
from ..errors import InputError
from .common import (cli, device_option, overwrite_option, echo_budget, echo_stages, exit_if_stopped, load_from, network_option, notice,
                     open_generator, perceptual_loss, resolve_device, run_options, running, setup)
from .photos import align_options, aligned_files, check_align_options, open_detector, outputs_for, read_photo
LAYER_HELP = (
    "Layer whose activation is edited: a name from `i2s layers`, or a reading of the paper's 'fourth layer': "
    "fourth-conv (the 4th conv layer as StyleGAN2 counts them: b16.conv1), fourth-row (StyleGAN's 8x8/Conv1, "
    "layers counted like W+ rows: b8.conv2) or fourth-block (the 4th block's output: b32.conv2). Default "
    "fourth-conv: of the three, the only one that blended B's attribute in without a seam on the generated face "
    "pairs we compared (8x8 barely transfers it, 32x32 leaves a seam)."
)
MASK_SPEC = "a preset (left-half, right-half, top-half, bottom-half, center) or a PNG (white = selected)"
MASK_HELP = f"Where B's features go: {MASK_SPEC}."
OP_HELP = (
    "spatial: B's feature vectors replace A's inside the mask (the paper's choice); channel: the --channels come "
    "from B (inside the mask if one is given); average: --alpha*A + (1-alpha)*B (inside the mask if given)."
)
CHANNELS_HELP = "For --op channel: channel indices/ranges taken from B, e.g. 0-63,128-255."
ALPHA_HELP = "For --op average: the weight of A (1 = A unchanged)."


def _load_mask(spec: str | None, size: int):
    from ..masks import resolve_mask

    if spec is None:
        return None
    return resolve_mask(spec, size)


def _check_layer(generator, layer: str, op: str, channels: str | None, alpha: float, mask) -> None:
    """Resolve and validate the activation edit before any long work (a notice says what an alias means)."""
    from ..apps.activations import ActivationOp, check_edit

    info = check_edit(generator, layer, ActivationOp(op, channels, alpha), mask)
    if info.name != layer:
        notice(f"--layer {layer} is {info.name} on {generator.name} ({info.channels}x{info.height}x{info.width})")


# -- layers ------------------------------------------------------------------------------------------------------
@cli.command()
@device_option("cpu")
@network_option
def layers(device, network) -> None:
    """List the generator's layers (the bundled one, or --network): the names --layer accepts, their activation
    shapes [C, H, W], the W+ row whose style drives each, and which layer each reading of the paper's "fourth
    layer" means."""
    from ..apps.activations import layer_table, resolve_layer

    generator, _ = open_generator(network, resolve_device(device))
    table = layer_table(generator)
    aliases: dict[str, list[str]] = {}
    for alias in LAYER_ALIASES:
        try:
            aliases.setdefault(resolve_layer(generator, alias, table), []).append(alias)
        except InputError:
            pass
    noisy = {spec.layer for spec in generator.noise_inputs}
    click.echo(f"{generator.name}: {len(table)} layers, {generator.num_ws} W+ rows of {generator.w_dim}, "
               f"{generator.resolution} px images")
    click.echo(f"{'layer':<13} {'[C, H, W]':<17} {'W+ row':>6}  {'noise':<5}  alias")
    for info in table:
        shape = f"[{info.channels}, {info.height}, {info.width}]"
        row = "-" if info.row is None else str(info.row)
        names = ", ".join(a + (" (default)" if a == DEFAULT_LAYER else "") for a in aliases.get(info.name, []))
        click.echo(f"{info.name:<13} {shape:<17} {row:>6}  {'yes' if info.name in noisy else '':<5}  {names}")
    for alias, meaning in LAYER_ALIASES.items():
        click.echo(f"{alias}: {meaning}")


# -- transfer-attribute ------------------------------------------------------------------------------------------
@cli.command("transfer-attribute", short_help="Copy a region of B's activation tensor into A's at one layer (Eq. 5).")
@click.argument("photos", nargs=-1, metavar="[A] [B]", type=click.Path(path_type=Path))
@click.option("--from-a", type=click.Path(path_type=Path),
              help="Reuse A's embedding (a latent.npz) instead of a photo.")
@click.option("--from-b", type=click.Path(path_type=Path),
              help="Reuse B's embedding (a latent.npz) instead of a photo.")
@click.option("--mask", default=None, help=MASK_HELP + " Required for --op spatial.")
@click.option("--layer", default=DEFAULT_LAYER, show_default=True, help=LAYER_HELP)
@click.option("--op", default="spatial", show_default=True, type=click.Choice(OPS), help=OP_HELP)
@click.option("--channels", default=None, help=CHANNELS_HELP)
@click.option("--alpha", default=0.5, show_default=True, type=float, help=ALPHA_HELP)
@click.option("--style-from", default="a", show_default=True, type=click.Choice(["a", "b"]),
              help="Whose (w, n) drives the rest of the synthesis; the paper uses the first image (a).")
@align_options
@run_options(AttributeTransferSettings)
def transfer_attribute(photos, from_a, from_b, mask, layer, op, channels, alpha, style_from, align, face, paste_back,
                       outdir, quality, schedule, w_steps, noise_steps, noise_space, device, seed, quiet,
                       network) -> None:
    """Attribute-level feature transfer (I_att, Eq. 5): copy B's activation at one layer into A's inside --mask
    and render the rest with A's style code. A and B are photos (embedded W+ then noise, like `i2s reconstruct`,
    and saved as a_latent.npz / b_latent.npz for reuse) or --from-a / --from-b latents. Writes result.png,
    panel.png (A | B | naive copy-paste | result), latent.npz (A's code; the activation edit is not in it),
    metrics.json and curves.png into OUTDIR. With --align both photos are aligned (--face picks the face in each)
    and --paste-back pastes the result into the photo whose style drives it (--style-from; `i2s paste-back
    OUTDIR --role b` pastes it into the other)."""
    from ..apps.activations import prepare_attribute_transfer
    from ..apps.outputs import save
    from ..apps.presets import settings_for
    from ..latents import save_latent

    settings = settings_for(
        AttributeTransferSettings, quality, layer=layer, op=op, channels=channels, alpha=alpha, style_from=style_from,
        schedule=schedule, w_steps=w_steps, noise_steps=noise_steps, noise_space=noise_space, seed=seed,
    )
    needed = [role for role, src in (("a", from_a), ("b", from_b)) if src is None]
    if len(photos) != len(needed):
        wanted = " and ".join(f"photo {r.upper()}" for r in needed) or "no photo"
        raise InputError(f"expected {wanted} (--from-a / --from-b replace a photo), got {len(photos)} path(s)")
    check_align_options(align, face, paste_back, photos=len(photos))
    dev, outdir, generator, sha = setup(device, outdir, network)
    mask_t = _load_mask(mask, generator.resolution)
    _check_layer(generator, layer, op, channels, alpha, mask_t)
    if mask_t is not None:
        mask_t = mask_t.to(dev)
    given = {role: load_from(path, generator) for role, path in (("a", from_a), ("b", from_b)) if path is not None}
    detector, aligned, targets = open_detector(align), {}, {}
    for role, photo in zip(needed, photos):
        loaded = read_photo(photo, generator, align=align, face=face, detector=detector)
        aligned[role], targets[role] = (loaded, f"aligned_{role}.png"), loaded.image.to(dev)
    if targets:
        click.echo(f"embedding {' and '.join(r.upper() for r in targets)} on {dev} ({settings.w_steps} W+ steps, "
                   f"{settings.noise_steps} noise steps each)")
    plan = prepare_attribute_transfer(generator, mask_t, settings, photos=targets, embeddings=given)
    echo_budget(plan.recipe)
    with running(quiet) as callback:
        result = plan.run(generator, perceptual_loss(dev) if targets else None, callback)
    echo_stages(result)
    def latent_writer(role: str):
        ws, noise = result.embeddings[role]
        return lambda path: save_latent(path, ws.cpu(), [n.cpu() for n in noise], generator_name=generator.name,
                                        weights_sha256=sha, extra={"noise_space": noise_space})

    extra, before_metrics = outputs_for(aligned, paste_into=style_from, paste_back=paste_back)
    inputs = {"a": from_a or dict(zip(needed, photos)).get("a"), "b": from_b or dict(zip(needed, photos)).get("b"),
              "mask": mask}
    save(outdir, result, generator=generator, command="transfer-attribute", settings=settings,
         weights_sha256=sha, inputs=inputs, extra=extra, before_metrics=before_metrics,
         extra_files={f"{role}_latent.npz": latent_writer(role) for role in targets})
    _echo_metrics(result.metrics)
    latents = " ".join(f"{r}_latent.npz" for r in needed)
    click.echo(f"outputs in {outdir}/: result.png panel.png latent.npz metrics.json curves.png {latents}".rstrip()
               + aligned_files(aligned, paste_back))
    exit_if_stopped(callback, outdir)


def _echo_metrics(metrics: dict) -> None:
    keys = [k for k in metrics if k.startswith(("activation_changed", "psnr_"))]
    parts = []
    for k in keys:
        v = metrics[k]
        parts.append(f"{k} {'n/a' if v is None else (f'{v:.4g}' if isinstance(v, float) else v)}")
    if parts:
        click.echo("; ".join(parts))


# -- latent-edit -------------------------------------------------------------------------------------------------
@cli.command("latent-edit")
@click.argument("latents", nargs=-1, required=True, metavar="A.npz B.npz [C.npz]", type=click.Path(path_type=Path))
@click.option("--op", default="morph", show_default=True, type=click.Choice(LATENT_OPS),
              help="morph: amount*A + (1-amount)*B; mix: --rows from B, the rest from A (style mixing); "
                   "expression: A + amount*(C - B), B neutral and C expressive.")
@click.option("--amount", default=None, type=float,
              help="λ. Default 0.5 for morph (midpoint), 1.0 for expression (docs/algorithm.md#edit-amounts); "
                   "unused by mix.")
@click.option("--rows", default="fine", show_default=True,
              help=f"For --op mix: W+ rows from B: {', '.join(ROW_PRESETS)} (StyleGAN's split by the resolution "
                   "each row drives: 4-8, 16-32, 64+ px; fine = Image2StyleGAN's style transfer) or e.g. 9-22.")
@click.option("--noise", default="a", show_default=True, type=click.Choice(NOISE_MODES),
              help="Noise maps of the result: A's, B's, or 'follow' (interpolated for morph, taken with the rows "
                   "for mix).")
@click.option("--layer", default=None,
              help=f"Local edit (Eq. 5) at this layer (default {DEFAULT_LAYER} when --mask is given); "
                   + LAYER_HELP.split(": ", 1)[1])
@click.option("--mask", default=None, help=f"Local edit: where the --from-activation features go: {MASK_SPEC}.")
@click.option("--from-activation", "activation_from", default=None,
              help="Local edit: whose activation is pasted: a, b, c (the latents above) or a latent.npz (default b).")
@click.option("--activation-op", default="spatial", show_default=True, type=click.Choice(OPS), help=OP_HELP)
@click.option("--channels", default=None, help=CHANNELS_HELP)
@click.option("--alpha", default=0.5, show_default=True, type=float, help=ALPHA_HELP)
@click.option("--outdir", required=True, type=click.Path(path_type=Path), help="Output folder (created if missing).")
@device_option()
@overwrite_option
@network_option
def latent_edit(latents, op, amount, rows, noise, layer, mask, activation_from, activation_op, channels, alpha,
                outdir, device, network) -> None:
    """Local + global edits on saved embeddings (no optimisation, one render): Image2StyleGAN's W+ arithmetic
    (morph, style mixing by rows, expression transfer), optionally with a local activation edit (Eq. 5) in the
    same render. Writes result.png, panel.png (inputs | global edit | naive copy-paste | result), latent.npz (the
    edited code; a local edit is not in it), metrics.json and curves.png (empty: nothing is optimised) into OUTDIR."""
    from ..apps.latent_ops import LatentEditSettings
    from ..apps.latent_ops import latent_edit as run
    from ..apps.outputs import save

    want = 3 if op == "expression" else 2
    if len(latents) != want:
        raise InputError(f"--op {op} takes {want} latents ({'A B C' if want == 3 else 'A B'}), got {len(latents)}")
    local = layer is not None or mask is not None or activation_from is not None
    if not local and (activation_op != "spatial" or channels is not None):
        raise InputError("--activation-op / --channels describe a local edit; add --layer (and --mask)")
    settings = LatentEditSettings(
        op=op, amount=amount, rows=rows, noise=noise, layer=(layer or DEFAULT_LAYER) if local else None,
        activation_op=activation_op, channels=channels, alpha=alpha,
    )
    dev, outdir, generator, sha = setup(device, outdir, network)
    loaded = [load_from(path, generator) for path in latents]
    inputs = dict(zip("abc", map(str, latents)))
    source = None
    mask_t = None
    if local:
        mask_t = _load_mask(mask, generator.resolution)
        _check_layer(generator, settings.layer, activation_op, channels, alpha, mask_t)
        mask_t = None if mask_t is None else mask_t.to(dev)
        pick = (activation_from or "b").lower()
        if pick in ("a", "b", "c"):
            if "abc".index(pick) >= len(loaded):
                raise InputError(f"--from-activation {pick}: no latent C was given")
            source = loaded["abc".index(pick)] if pick != "b" else None
        else:
            source = load_from(Path(activation_from), generator)
        inputs.update({"mask": mask, "activation_source": activation_from or "b"})
    result = run(generator, loaded[0], loaded[1], loaded[2] if want == 3 else None, settings, mask=mask_t,
                 activation_source=source)
    save(outdir, result, generator=generator, command="latent-edit", settings=settings, weights_sha256=sha,
         inputs=inputs)
    m = result.metrics
    click.echo(f"{op}: rows changed {m['rows_changed'] or 'none'}, |w - w_A| = {m['w_distance_from_a']:.3g}")
    _echo_metrics(m)
    click.echo(f"outputs in {outdir}/: result.png panel.png latent.npz metrics.json curves.png")
