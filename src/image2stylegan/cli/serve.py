"""``i2s serve``: the browser editor (:mod:`image2stylegan.editor`)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from .common import (cli, compile_option, compile_requested, device_option, network_option, open_generator,
                     perceptual_and_lpips, resolve_device)


@cli.command(short_help="The browser editor: paint masks and scribbles, watch runs, download results.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but 127.0.0.1 / localhost shares the editor with the network "
                   "(no login: anyone who reaches it can run jobs and download results).")
@click.option("--port", default=7860, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workspace", default="out/editor", show_default=True, type=click.Path(path_type=Path),
              help="The only folder the editor reads and writes: uploads, runs (as the CLI writes them), cached "
                   "embeddings.")
@click.option("--workspace-cap-gb", default=5.0, show_default=True, type=click.FloatRange(0.01, 10_000),
              help="Size cap of the workspace; the oldest runs, embeddings and uploads are removed beyond it.")
@click.option("--max-upload-mb", default=30, show_default=True, type=click.IntRange(1, 10_000),
              help="Largest upload accepted (the pixel limit is the CLI's: I2S_MAX_PIXELS, 40 megapixels).")
@click.option("--quality", "default_quality", default=None, type=click.Choice(["draft", "good", "paper"]),
              help="The preset selected when the page opens. Default: draft on a CPU, good on a GPU.")
@device_option()
@compile_option
@network_option
def serve(host, port, workspace, workspace_cap_gb, max_upload_mb, default_quality, device, network) -> None:
    """Start the browser editor and print its address.

    Usage: i2s serve [--host 127.0.0.1] [--port 7860] [--workspace out/editor].

    One job runs at a time on the device; others wait in a queue with their position shown. Closing the tab or
    pressing Stop stops a run after its current step and keeps what it reached.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home from an offline tool
    from ..editor.jobs import JobQueue
    from ..editor.page import serve as launch
    from ..editor.runs import Editor
    from ..editor.workspace import UploadLimits, Workspace

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who can reach this address can use the editor, run jobs "
                   "on this machine and download what is in its workspace", err=True)
    dev = resolve_device(device)
    space = Workspace(workspace, cap_bytes=int(workspace_cap_gb * 2**30),
                      limits=UploadLimits(max_bytes=max_upload_mb * 2**20))
    generator, sha = open_generator(network, dev, compile=compile_requested())
    perceptual, lpips = perceptual_and_lpips(dev)
    editor = Editor(generator, perceptual, lpips, sha, dev, space, JobQueue())
    quality = default_quality or ("draft" if dev.type == "cpu" else "good")
    click.echo(f"image2stylegan editor on {dev}, workspace {space.root}")
    click.echo(f"open http://{'localhost' if host in ('127.0.0.1', '::1') else host}:{port} in a browser "
               "(Ctrl-C stops the server)")
    launch(editor, host=host, port=port, default_quality=quality)
