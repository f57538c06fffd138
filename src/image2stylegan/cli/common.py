"""What every ``i2s`` command shares: the click group, one set of options (device, budget, noise space, seed,
progress, network) with defaults taken from the settings dataclasses, device resolution, notices, reading inputs,
and running an application so that Ctrl-C or SIGTERM stops it cleanly with its outputs saved.

Notices: the library issues them as :class:`~image2stylegan.errors.Notice` warnings; while a command runs,
:func:`showing_notices` (installed by the ``cli`` group, and by :func:`image2stylegan.cli.main`) prints each one,
repeats included, as one ``note: <message>`` line on stderr. Other warnings are shown as Python always does."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import click

from .. import __version__, errors
from ..runtime import open_generator, perceptual_and_lpips, perceptual_loss, resolve_device  # noqa: F401 - the commands' imports

NOISE_SPACE_HELP = (
    "'paper': one single-channel map per noise input, as the paper. 'extended' (beyond the paper): per-channel "
    "maps at the two finest blocks, enough freedom for a 1024 px image."
)
NETWORK_HELP = (
    "Generator to run on: a checkpoint you own (stylegan2-ada-pytorch/stylegan3 .pkl, NVIDIA's TensorFlow .pkl of "
    "StyleGAN or StyleGAN2, rosinality .pt, or a folder/file written by `i2s convert`), or a registered name. "
    "Nothing in a checkpoint is executed. Default: the bundled mobilestylegan-ffhq."
)
DEVICES = click.Choice(["auto", "cpu", "cuda", "mps"])
FROM_HELP = "Reuse this latent.npz (e.g. from i2s reconstruct) as the {what}'s embedding instead of embedding it again."
INTERRUPTED = 130  # the shell's status for a run ended by SIGINT


def notice(message: str) -> None:
    """A note from the CLI itself: issued like the library's (:func:`image2stylegan.errors.notice`), so it is shown
    the same way."""
    errors.notice(message)


def _echo_note(message: str) -> None:
    click.echo(f"note: {message}", err=True)


def showing_notices() -> AbstractContextManager[None]:
    """Within the block, each :class:`~image2stylegan.errors.Notice` is one ``note: <message>`` line on stderr
    (no file, line or category), every one of them, repeats included; other warnings are untouched."""
    return errors.notices_to(_echo_note)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="i2s")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Image2StyleGAN++: embed images into a pretrained style-based generator and edit them."""
    ctx.with_resource(showing_notices())  # until the command returns (also under click's CliRunner)


# -- options -----------------------------------------------------------------------------------------------------


def default(settings_class, name: str):
    """The default of field ``name`` of a settings dataclass: the one place a default is written."""
    return next(f.default for f in dataclasses.fields(settings_class) if f.name == name)


def mask_option(help: str, *, required: bool = True):
    """``--mask PRESET|PNG`` (the value reaches the command as ``mask_spec``)."""
    return click.option("--mask", "mask_spec", required=required, default=None, help=help)


def from_option(help: str):
    """``--from LATENT.npz`` (as ``from_latent``): reuse a saved embedding."""
    return click.option("--from", "from_latent", type=click.Path(path_type=Path), default=None, help=help)


def network_option(func):
    """``--network PATH|NAME`` for every command that runs a generator."""
    return click.option("--network", default=None, metavar="PATH|NAME", help=NETWORK_HELP)(func)


def device_option(default_device: str = "auto"):
    return click.option("--device", default=default_device, show_default=True, type=DEVICES,
                        help="Where to compute: auto picks CUDA, then Apple's MPS, then the CPU.")


def _apply(func, options):
    for option in reversed(options):  # applied bottom-up, so they list in this order in --help
        func = option(func)
    return func


def quality_option(func):
    """``--quality draft|good|paper``: the whole run's step budgets, schedule and stopping target in one word."""
    from ..apps.presets import DEFAULT_QUALITY, PRESETS

    lines = "; ".join(f"{name}: {preset.summary}" for name, preset in PRESETS.items())
    return click.option("--quality", default=DEFAULT_QUALITY, show_default=True, type=click.Choice(list(PRESETS)),
                        help=f"Budget of the whole run ({lines}). Step options given explicitly override it.")(func)


def schedule_option(func):
    from ..apps.settings import SCHEDULES

    return click.option("--schedule", default=None, type=click.Choice(SCHEDULES),
                        help="Learning-rate schedule: 'fast' (warm-up, cosine decay, pixel-weighted embedding; "
                             "docs/algorithm.md#schedules) or 'paper' (the paper's constant Adam rates). "
                             "Default: the --quality preset's.")(func)


def method_option(func):
    """``--method improved|paper``: an edit's recipe with our measured fixes, or the paper's as written."""
    from ..apps.settings import METHODS

    return click.option("--method", default=METHODS[0], show_default=True, type=click.Choice(METHODS),
                        help="'improved': the recipe with our measured fixes (docs/algorithm.md#edits-beyond-the-"
                             "paper); 'paper': the paper's algorithm as written.")(func)


def budget_steps(what: str) -> str:
    return f"{what} Default: the --quality preset's."


def run_options(settings_class, *, w_lr: bool = False, feather: bool = False, init: bool = False):
    """The options every optimising command shares: --outdir, --quality, --schedule, --w-steps, [--w-lr,]
    --noise-steps, [--feather,] --noise-space, [--init,] --device, --seed, --quiet, --overwrite, --compile,
    --network. Step counts and the schedule default to None: the command fills them from the --quality preset
    (:func:`apps.presets.settings_for`)."""
    from ..masks import DEFAULT_FEATHER_FRACTION

    options = [
        click.option("--outdir", required=True, type=click.Path(path_type=Path),
                     help="Output folder (created if missing)."),
        quality_option,
        schedule_option,
        click.option("--w-steps", default=None, type=int,
                     help=budget_steps("Steps of the W+ stage (Adam).")),
    ]
    if w_lr:
        options.append(click.option(
            "--w-lr", default=default(settings_class, "w_lr"), show_default=True,
            type=click.FloatRange(min=0, min_open=True),
            help="Adam learning rate of the edit's own W+ stage (the paper's 0.01; larger moves the edit further in "
                 "fewer steps). The photo's embedding runs at the --schedule's rate."))
    options.append(click.option("--noise-steps", default=None, type=int,
                                help=budget_steps("Steps of the noise stage (Adam lr 5, MSE only).")))
    if feather:
        options.append(click.option(
            "--feather", default=DEFAULT_FEATHER_FRACTION, show_default=True, type=click.FloatRange(min=0),
            help="M_blur: Gaussian sigma of the mask blur as a fraction of the image side (0 = hard mask)."))
    options.append(click.option("--noise-space", default=default(settings_class, "noise_space"), show_default=True,
                                type=click.Choice(["paper", "extended"]), help=NOISE_SPACE_HELP))
    if init:
        options.append(click.option(
            "--init", default=default(settings_class, "init"), show_default=True,
            type=click.Choice(["mean", "uniform"]),
            help="Initial W+ when embedding a photo: the mean latent (faces) or U[-1, 1] (other images)."))
    options += [
        device_option(),
        click.option("--seed", default=default(settings_class, "seed"), show_default=True, type=int,
                     help="Seeds the initial noise n_ini (and the uniform init)."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
        overwrite_option,
        compile_option,
        network_option,
    ]
    return lambda func: _apply(func, options)


# -- inputs ------------------------------------------------------------------------------------------------------


def overwrite_option(func):
    """``--overwrite``: replace the outputs of an earlier run in --outdir (as a whole). Kept on the click context
    (read by :func:`setup`), so commands do not pass it around."""

    def remember(ctx: click.Context, param, value: bool) -> bool:
        ctx.ensure_object(dict)["overwrite"] = value
        return value

    return click.option("--overwrite", is_flag=True, expose_value=False, callback=remember,
                        help="Replace the outputs of an earlier run in --outdir (all of them, as one set).")(func)


def compile_option(func):
    """``--compile``: torch.compile the generator's optimisation renders. Kept on the click context like
    --overwrite (read by :func:`setup` and the folder runs), so commands do not pass it around."""

    def remember(ctx: click.Context, param, value: bool) -> bool:
        ctx.ensure_object(dict)["compile"] = value
        return value

    return click.option("--compile", is_flag=True, expose_value=False, callback=remember,
                        help="Compile the generator with torch.compile: about a minute per stage kind before the "
                             "first step, then ~40% faster W+ steps on a CPU. Pays off from a few hundred steps "
                             "(--quality paper, folders); results match to float rounding.")(func)


def compile_requested() -> bool:
    """Whether this command was given --compile."""
    context = click.get_current_context(silent=True)
    return bool(context and (context.obj or {}).get("compile"))


def setup(device: str, outdir: Path, network: str | None):
    """(device, outdir, generator, weights sha256). The output folder is checked before anything slow: it must be
    writable and hold no other run's files (unless --overwrite)."""
    from ..apps.publish import check_outdir
    from ..io import ensure_outdir

    dev = resolve_device(device)
    outdir = ensure_outdir(outdir)  # fail before minutes of work, not after
    context = click.get_current_context(silent=True)
    check_outdir(outdir, overwrite=bool(context and (context.obj or {}).get("overwrite")))
    generator, sha = open_generator(network, dev, compile=compile_requested())
    return dev, outdir, generator, sha


def load_from(path: Path | None, generator):
    """(ws, noise) of a ``--from`` latent.npz for ``generator``, or (None, None)."""
    if path is None:
        return None, None
    from ..apps.outputs import load_embedding

    return load_embedding(generator, Path(path))


# -- running -----------------------------------------------------------------------------------------------------


def echo_budget(recipe) -> None:
    """The run's whole step budget, before it starts (``budget: 300 steps (w_plus 100, noise 200); ...``)."""
    from ..apps.presets import budget_line

    click.echo(budget_line(recipe))


def stage_line(outcome) -> str:
    per_step = outcome.seconds / outcome.steps if outcome.steps else 0.0
    stopped = " (stopped)" if outcome.stopped else ""
    if outcome.reached and all(r is not None for r in outcome.reached):
        stopped = f" (reached its target at step {max(r['step'] for r in outcome.reached)})"
    return (f"{outcome.name} stage: PSNR {float(outcome.psnr[0]):.2f} dB against its target after {outcome.steps} "
            f"steps{stopped} ({outcome.seconds:.0f} s, {per_step:.2f} s/step)")


def echo_stages(result) -> None:
    """One line per stage that ran (a run's result: an EditResult or an EmbeddingResult)."""
    for outcome in result.stages:
        click.echo(stage_line(outcome))


@contextmanager
def running(quiet: bool) -> Iterator[Callable]:
    """The step callback of a command's run: progress bars, plus a stop on Ctrl-C / SIGTERM. After the block,
    :func:`exit_if_stopped` (once the outputs are saved) reports an interrupted run and exits with status 130."""
    from ..progress import StopControl, TqdmProgress, fan_out

    control = StopControl()
    with TqdmProgress(disable=quiet) as progress, control.on_signals():
        callback = fan_out([progress, control])
        callback.control = control
        yield callback


def exit_if_stopped(callback, outdir: Path | str) -> None:
    """After the outputs are saved: one line and exit status 130 when the run was stopped by a signal."""
    control = callback.control
    if control.requested:
        where = f" at {control.where}" if control.where else ""
        click.echo(f"interrupted ({control.reason}){where}: the embedding reached so far is saved in {outdir}/ "
                   "(metrics.json: \"stopped\": true)", err=True)
        sys.exit(INTERRUPTED)
