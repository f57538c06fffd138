"""Every application of the browser editor, driven in a headless Chromium as a user would, with screenshots.

Starts the editor on the real weights (its own workspace under --work), uploads the demo photo, embeds it, then runs
each tab with a painted region at a small budget, and writes a screenshot of each page after its run into --outdir
(docs/editor/ by default, JPEG) and the times into --outdir/tour.json: from the upload to the first preview of the
embedding, and from Start to result for each application.

    .venv/bin/python scripts/editor_tour.py                        # the draft preset: ~30 minutes on 2 CPU cores
    .venv/bin/python scripts/editor_tour.py --steps 5              # every W+ and noise stage 5 steps: a smoke run

Needs Debian's /usr/bin/chromium (apt-get install chromium).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(work: Path):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from image2stylegan.editor.jobs import JobQueue
    from image2stylegan.editor.page import serve
    from image2stylegan.editor.runs import Editor
    from image2stylegan.editor.workspace import Workspace
    from image2stylegan.generators.registry import load_generator, weights_sha256
    from image2stylegan.losses import PerceptualLoss
    from image2stylegan.metrics import LPIPS

    generator = load_generator()
    editor = Editor(generator, PerceptualLoss.from_file(), LPIPS.from_file(input_size=256), weights_sha256(),
                    torch.device("cpu"), Workspace(work / "workspace"), JobQueue())
    port = free_port()
    app = serve(editor, port=port, block=False)
    return app, editor, f"http://127.0.0.1:{port}"


def image_box(page, canvas_id: str) -> dict:
    """Where the photo lies on the page inside an image editor's canvas (the canvas also holds the label and the
    tool bars, and a stroke that starts beside the photo paints nothing): the rows and columns of the canvas's
    screenshot that are mostly not the white page (the columns first, then the rows within them), in page coordinates."""
    canvas = page.locator(f"#{canvas_id} canvas").first
    canvas.scroll_into_view_if_needed()  # mouse coordinates are the viewport's
    box = canvas.bounding_box()
    shot = np.asarray(Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB"), dtype=np.int16)
    photo = np.abs(shot - 255).sum(-1) > 24
    cols = np.nonzero(photo.mean(0) > 0.5)[0]
    rows_ = np.nonzero(photo[:, cols].mean(1) > 0.5)[0] if len(cols) else cols
    if len(rows_) == 0:
        raise RuntimeError(f"no photo on the canvas #{canvas_id}")
    return {"x": box["x"] + cols.min(), "y": box["y"] + rows_.min(), "width": float(cols.max() - cols.min() + 1),
            "height": float(rows_.max() - rows_.min() + 1)}


def paint(page, canvas_id: str, strokes) -> None:
    """Strokes in fractions of the photo on the canvas: each a list of (x, y) points."""
    box = image_box(page, canvas_id)
    for points in strokes:
        (x0, y0), rest = points[0], points[1:]
        page.mouse.move(box["x"] + box["width"] * x0, box["y"] + box["height"] * y0)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(box["x"] + box["width"] * x, box["y"] + box["height"] * y, steps=6)
        page.mouse.up()


def rows(y0: float, y1: float, x0: float, x1: float, n: int):
    """Horizontal strokes filling a box (fractions of the canvas)."""
    return [[(x0, y), (x1, y)] for y in np.linspace(y0, y1, n)]


def set_steps(page, prefix: str, w: int, n: int) -> None:
    page.locator(f"#{prefix}-advanced").click(position={"x": 40, "y": 16})  # the section's header
    for field, value in (("w-steps", w), ("noise-steps", n)):
        box = page.locator(f"#{prefix}-{field} input")
        box.fill(str(value))
        box.press("Tab")
    page.locator(f"#{prefix}-budget", has_text=f"budget: {w} W+").wait_for()


def run(page, prefix: str, button: str) -> dict:
    """Press Start, time the first preview and the result; returns the times and the final status line."""
    started = time.perf_counter()
    page.locator(f"#{button}").click()
    line = page.locator(f"#{prefix}-status p", has_text=lambda_re("done|stopped|failed|Error"))
    page.locator(f"#{prefix}-preview img").or_(line).first.wait_for()
    first = time.perf_counter() - started
    line.wait_for()
    return {"first_preview_s": round(first, 1), "start_to_result_s": round(time.perf_counter() - started, 1),
            "status": line.inner_text()}


def lower_browser_priority() -> None:
    """Give the server the CPU first: without a GPU, Chromium draws the page's image editors in software and, at
    its default priority, took more than a core from the server during a run (14 min for a 7 min inpainting on 2
    cores). A user's browser draws on the GPU; the times here are the server's. Later pages' processes inherit it."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"chromium" in (entry / "cmdline").read_bytes():
                    os.setpriority(os.PRIO_PROCESS, int(entry.name), 19)
            except OSError:
                continue


def open_page(browser, url: str, photo: Path, timeout: int):
    """A new page with ``photo`` uploaded and in use (``page.uploaded``: when the upload began)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1900})
    lower_browser_priority()  # the page's renderer is a new process
    page.set_default_timeout(timeout * 1000)
    page.goto(url)
    page.uploaded = time.perf_counter()
    page.locator("#photo-upload input[type=file]").set_input_files(str(photo))
    page.locator("#use-upload").click()
    page.locator("#photo-status", has_text="ready").wait_for()
    return page


def shoot(page, prefix: str, path: Path, top: str = "[role=tablist]") -> None:
    """A screenshot from ``top`` (the tab bar) down to the run's downloads."""
    y0 = page.evaluate(f"document.querySelector('{top}').getBoundingClientRect().top + window.scrollY")
    y1 = page.evaluate(f"document.querySelector('#{prefix}-files').getBoundingClientRect().bottom + window.scrollY")
    page.screenshot(path=str(path), full_page=True, type="jpeg", quality=80,  # a tenth of a PNG's size
                    clip={"x": 0, "y": max(0, y0 - 8), "width": 1400, "height": y1 - max(0, y0 - 8) + 8})


def lambda_re(pattern: str):
    import re

    return re.compile(pattern)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=Path("docs/editor"))
    parser.add_argument("--work", type=Path, default=Path("out/editor-tour"))
    parser.add_argument("--steps", type=int, default=0,
                        help="W+ and noise steps of each edit and the embedding (0: the draft preset's)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds to wait for any one thing on the page")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from image2stylegan.apps.demo import write_demo_photo

    args.outdir.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    photo = write_demo_photo(args.work / "astronaut.png")
    style = args.work / "hubble.png"
    from skimage import data

    Image.fromarray(data.hubble_deep_field()).save(style)
    app, editor, url = start_server(args.work)
    k = args.steps
    times: dict[str, dict] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            lower_browser_priority()
            page = open_page(browser, url, photo, args.timeout)
            uploaded = page.uploaded
            if k:
                set_steps(page, "embed", k, k)
            times["embedding"] = run(page, "embed", "embed")
            times["embedding"]["upload_to_first_preview_s"] = round(
                times["embedding"]["first_preview_s"] + (time.perf_counter() - uploaded)
                - times["embedding"]["start_to_result_s"], 1)
            shoot(page, "embed", args.outdir / "embedding.jpg", top="body")
            page.close()

            tours = [
                ("Inpainting", "inpaint", "run-inpaint", "inpaint-canvas", rows(0.64, 0.80, 0.38, 0.62, 6), None),
                ("Scribble", "scribble", "run-scribble", "scribble-canvas",
                 [[(x, 0.22), (x + 0.03, 0.36)] for x in np.linspace(0.34, 0.64, 8)], None),
                ("Crossover", "crossover", "run-crossover", "crossover-canvas", rows(0.30, 0.55, 0.25, 0.75, 10),
                 None),
                ("Style transfer", "style", "run-style-transfer", "style-canvas", rows(0.18, 0.92, 0.26, 0.74, 24),
                 style),
                ("Attribute transfer", "attribute", "run-transfer-attribute", "attribute-canvas",
                 rows(0.40, 0.52, 0.28, 0.72, 5), None),
                ("Local + global", "global", "run-latent-edit", "global-canvas", rows(0.62, 0.80, 0.32, 0.68, 6),
                 None),
            ]
            for tab, prefix, button, canvas, strokes, upload in tours:
                # A fresh page per application, as a user opening the editor again would: the photo's embedding
                # comes from the cache. (Every image editor a page has shown keeps redrawing; in a headless
                # Chromium without a GPU six of them take a whole core from the server.)
                page = open_page(browser, url, photo, args.timeout)
                page.get_by_role("tab", name=tab).click()
                paint(page, canvas, strokes)
                if upload is not None:
                    page.locator(f"#{prefix}-style input[type=file]").set_input_files(str(upload))
                if k and prefix != "global":  # a local + global edit only renders (its photos are embedded)
                    set_steps(page, prefix, k, k)
                times[prefix] = run(page, prefix, button)
                shoot(page, prefix, args.outdir / f"{prefix}.jpg")
                page.close()
                print(prefix, times[prefix], flush=True)
                write_record(args.outdir, k, times)  # after each application: a long tour keeps what it measured
            browser.close()
    finally:
        editor.queue.close()
        app.close()
    print(json.dumps(write_record(args.outdir, k, times), indent=1))


def write_record(outdir: Path, steps: int, times: dict) -> dict:
    record = {"steps": steps or "draft preset", "machine": f"{platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads", "times": times}
    (outdir / "tour.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
