"""The browser editor's page (Gradio): photo, embedding, one tab per application, live previews, Stop, compare,
download.

The page only turns what the user painted and chose into images and settings and hands them to :class:`.runs.Editor`;
every run goes through the library and lands in the workspace as the CLI would write it. Handlers that watch a job
are generators: they yield a new preview and status line whenever the job changes, and when the page goes away
(the tab is closed, or Gradio cancels the event) the ``finally`` of :func:`_watch` stops the job.
"""

# No `from __future__ import annotations`: Gradio injects gr.Request and gr.Progress by the parameters' real types.
import dataclasses
import inspect
import threading
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from ..apps.activations import layer_table
from ..apps.latent_ops import ROW_PRESETS, LatentEditSettings
from ..apps.presets import PRESETS
from ..apps.requests import APPLICATIONS
from ..masks import PRESETS as MASK_PRESETS
from ..errors import Image2StyleGANError as I2SError
from ..errors import InputError
from .controls import (ADVANCED, advanced_names, advanced_values, budget_text, composite, embedding_overrides,
                       face_at, faces_overlay, painted_mask)
from .runs import RESULT_FILE, Editor, Photo

__all__ = ["build_page"]

OUTPUT_FILES = ("result.png", "filled.png", "reconstruction.png", "pasted.png", "latent.npz", "metrics.json",
                "panel.png")
WATCH_SECONDS = 2.0  # a watcher wakes at least this often, so a page that went away is noticed


class Sessions:
    """Each browser session's current job, so its Stop button reaches it."""

    def __init__(self) -> None:
        self._jobs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def set(self, session: str, job) -> None:
        with self._lock:
            self._jobs[session] = job

    def stop(self, session: str) -> str:
        with self._lock:
            job = self._jobs.get(session)
        if job is None or job.snapshot().finished:
            return "nothing is running"
        job.stop("stopped by the user")
        return "stopping after the current step…"


def _outputs(folder: Path | None) -> list[str]:
    if folder is None:
        return []
    return [str(folder / name) for name in OUTPUT_FILES if (folder / name).is_file()]


def build_page(editor: Editor, *, default_quality: str = "draft"):
    """The Gradio Blocks of the editor (call ``.queue().launch(...)`` on it)."""
    size = editor.generator.resolution
    sessions = Sessions()
    layers = [f"{info.name} ({info.height} px, {info.channels} channels)" for info in layer_table(editor.generator)
              if info.name.endswith(("conv1", "conv2"))]
    default_layer = next((x for x in layers if x.startswith("b16.conv1")), layers[0])  # the paper's "fourth layer"

    def error_text(exc: Exception) -> str:
        return f"**Error:** {exc}"

    # -- photo ---------------------------------------------------------------------------------------------------
    def load(upload, align, face_choice, seed, source):
        try:
            if source == "sample":
                photo = editor.sample_photo(int(seed))
            elif source == "demo":
                from ..apps.demo import write_demo_photo

                demo = editor.workspace.root / "uploads" / "demo-astronaut.png"
                if not demo.is_file():
                    write_demo_photo(demo)
                photo = editor.open_photo(demo, align=False)
            elif upload is None:
                raise InputError("upload a photo first (or pick the demo photo or a sampled face)")
            else:
                face = int(str(face_choice).split()[0]) if face_choice not in (None, "") else 0
                photo = editor.open_photo(upload, align=bool(align), face=face)
        except I2SError as exc:
            return (None, error_text(exc)) + (gr.update(),) * len(canvases)
        notes = "".join(f"; {note}" for note in photo.notes)  # what was done to it: crop, resize, face aligned
        path = str(photo.image)
        return (photo, f"Photo {photo.image.name[:12]}: ready{notes}") + tuple(
            gr.update(value={"background": path, "layers": [], "composite": path}) for _ in canvases)

    def list_faces(upload, align):
        """The faces --align can pick, as the dropdown's choices and numbered boxes on the photo (click one)."""
        hidden = gr.update(value=None, visible=False)
        if upload is None or not align:
            return gr.update(choices=[], value=None), gr.update(), hidden, []
        try:
            stored = editor.workspace.store_upload(upload)
            faces = editor.faces(stored)
            overlay, scale = faces_overlay(np.asarray(Image.open(stored).convert("RGB")), [f.box for f in faces])
        except I2SError as exc:
            return gr.update(choices=[], value=None), error_text(exc), hidden, []
        choices = [f"{i} (score {f.score:.2f}, box {int(f.box[2] - f.box[0])} px)" for i, f in enumerate(faces)]
        boxes = [([float(v) * scale for v in f.box], choice) for f, choice in zip(faces, choices)]
        line = (f"{len(faces)} faces found: click one on the photo (or pick it in the list)" if len(faces) > 1 else
                "1 face found" if faces else "no face found: turn off alignment")
        return (gr.update(choices=choices, value=choices[0] if choices else None), line,
                gr.update(value=overlay, visible=bool(faces)), boxes)

    def pick_face(faces, evt: gr.SelectData):
        """The face whose box holds the clicked point (the nearest box centre when none does)."""
        if not faces or evt.index is None:
            return gr.update()
        return gr.update(value=faces[face_at(evt.index[0], evt.index[1], [box for box, _ in faces])][1])

    # -- jobs ------------------------------------------------------------------------------------------------------
    def _watch(job, progress, done):
        """Yield (preview, status, slider, files) as the job changes; stop the job if the page goes away."""
        version = -1
        try:
            while True:
                snap = job.wait(version, timeout=WATCH_SECONDS)
                if snap.version == version:
                    continue
                version = snap.version
                if snap.total:
                    progress((snap.step, snap.total), desc=snap.line())
                if snap.finished:
                    yield done(snap)
                    return
                yield snap.preview, snap.line(), gr.update(), gr.update()
        finally:
            if not job.snapshot().finished:
                job.stop("the page was closed")

    def finished(job, photo_path, result_name):
        def done(snap):
            folder = job.result
            if folder is None:
                return snap.preview, snap.line(), gr.update(), gr.update()
            result = Path(folder) / result_name
            slider = (photo_path, str(result)) if result.is_file() else gr.update()
            return str(result) if result.is_file() else snap.preview, snap.line(), slider, _outputs(Path(folder))
        return done

    def embed(session, photo: Photo | None, quality, w_steps, noise_steps, until_psnr, until_lpips,
              progress=gr.Progress()):
        if photo is None:
            yield None, error_text("load a photo first"), gr.update(), gr.update()
            return
        try:
            overrides = embedding_overrides(w_steps, noise_steps, until_psnr, until_lpips)
            cached = editor.cached_embedding(photo, quality, **overrides)
        except I2SError as exc:
            yield None, error_text(exc), gr.update(), gr.update()
            return
        if cached is not None:
            yield (str(cached / "reconstruction.png"), "done: embedding taken from the cache (this photo was embedded "
                   "before with these settings)", (str(photo.image), str(cached / "reconstruction.png")),
                   _outputs(cached))
            return
        try:
            job = editor.embed(photo, quality, **overrides)
        except I2SError as exc:
            yield None, error_text(exc), gr.update(), gr.update()
            return
        sessions.set(session, job)
        yield from _watch(job, progress, finished(job, str(photo.image), "reconstruction.png"))

    def run_edit(command, session, photo, quality, images, settings, paste_back, progress):
        if photo is None:
            yield None, error_text("load a photo first"), gr.update(), gr.update()
            return
        try:
            if command == "latent-edit":
                job, _ = editor.latent_edit(quality, images["photos"], settings, mask=images.get("mask"),
                                            **images["embedding"])
            else:
                job, _ = editor.edit(command, quality, images, settings=settings,
                                     paste_back=photo if paste_back else None)
        except I2SError as exc:
            yield None, error_text(exc), gr.update(), gr.update()
            return
        sessions.set(session, job)
        yield from _watch(job, progress,
                          finished(job, str(photo.image), RESULT_FILE.get(command, "result.png")))

    def needs(mask, what):
        if mask is None:
            raise InputError(f"paint {what} first")
        return mask

    def guarded(command, build, n_inputs, advanced=()):
        """A run handler for ``command`` taking (photo, quality, paste_back, then ``n_inputs`` controls, then the
        ``advanced`` settings' fields); ``build(photo, quality, *controls)`` returns (images, settings) or raises
        InputError. An advanced field left empty keeps the preset's value."""
        def handler(session, photo, quality, paste_back, *args):
            controls, progress = args[:n_inputs], args[-1]  # Gradio appends the progress tracker
            try:
                images, settings = build(photo, quality, *controls) if photo is not None else ({}, {})
                if isinstance(settings, dict):
                    settings.update(advanced_values(advanced, args[n_inputs:n_inputs + len(advanced)]))
            except I2SError as exc:
                yield None, error_text(exc), gr.update(), gr.update()
                return
            yield from run_edit(command, session, photo, quality, images, settings, paste_back, progress)

        # Gradio passes the inputs positionally and injects a progress tracker where a parameter defaults to one.
        positional = [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in
                      ("session", "photo", "quality", "paste_back",
                       *(f"control_{i}" for i in range(n_inputs + len(advanced))))]
        handler.__signature__ = inspect.Signature([
            *positional,
            inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()),
        ])
        return handler

    def inpaint_inputs(photo, quality, canvas):
        hole = needs(painted_mask(canvas, size), "the hole")
        return {"photo": photo.image, "mask": hole}, {}

    def scribble_inputs(photo, quality, canvas):
        strokes = needs(painted_mask(canvas, size), "a scribble")
        images = {"photo": photo.image, "scribbled": composite(canvas, size), "mask": strokes,
                  "from": editor.latest_embedding(photo)}
        return images, {}

    def other_photo(upload, seed) -> Photo:
        """Photo B or C: the upload if there is one, else the sampled face ``seed`` (with its exact latent)."""
        return editor.open_photo(upload) if upload is not None else editor.sample_photo(int(seed))

    def global_inputs(photo, quality, op, amount, rows, noise, upload_b, seed_b, upload_c, seed_c, canvas, layer,
                      *embedding_fields):
        region = painted_mask(canvas, size)
        photos = {"a": photo, "b": other_photo(upload_b, seed_b)}
        if op == "expression":
            photos["c"] = other_photo(upload_c, seed_c)
        settings = LatentEditSettings(op=op, amount=float(amount), rows=str(rows or "fine"), noise=noise,
                                      layer=str(layer).split()[0] if region is not None else None)
        embedding = embedding_overrides(*embedding_fields)
        return {"photos": photos, "mask": region, "embedding": embedding}, settings

    def crossover_inputs(photo, quality, canvas, preset, upload_b, seed_b):
        region = painted_mask(canvas, size)
        mask = region if region is not None else (preset or None)
        if mask is None:
            raise InputError("paint the region to take from A, or pick a preset")
        return {"a": photo.image, "b": other_photo(upload_b, seed_b).image, "mask": mask}, {}

    def style_inputs(photo, quality, canvas, style_upload):
        kept = needs(painted_mask(canvas, size), "the region to keep")
        if style_upload is None:
            raise InputError("upload a style image")
        style = editor.open_photo(style_upload).image
        return {"content": photo.image, "style": style, "mask": kept, "from": editor.latest_embedding(photo)}, {}

    def attribute_inputs(photo, quality, canvas, upload_b, seed_b, layer, op):
        region = needs(painted_mask(canvas, size), "the region of A")
        b = other_photo(upload_b, seed_b)  # a sampled face brings its exact latent: no embedding to wait for
        return ({"a": editor.latest_embedding(photo) or photo.image, "b": editor.latest_embedding(b) or b.image,
                 "mask": region},
                {"layer": str(layer).split()[0], "op": op})

    # -- layout ----------------------------------------------------------------------------------------------------
    canvases: list = []
    with gr.Blocks(title="image2stylegan editor", analytics_enabled=False) as page:
        photo_state = gr.State(None)
        session = gr.State(lambda: uuid.uuid4().hex)  # a fresh id per page load: its Stop reaches its own job
        gr.Markdown("# image2stylegan editor\nUpload a face photo, embed it, then edit it with the applications of "
                    "Image2StyleGAN++. Every run is written to the workspace as the CLI writes it.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.Image(type="filepath", sources=["upload"], label="Photo", elem_id="photo-upload")
                with gr.Row():
                    align = gr.Checkbox(label="Align the face (FFHQ)", value=False, elem_id="align")
                    face = gr.Dropdown(label="Face", choices=[], elem_id="face")
                faces_view = gr.Image(label="Faces: click the one to edit", interactive=False, visible=False,
                                      elem_id="faces-view", height=360)
                face_boxes = gr.State([])
                with gr.Row():
                    use_upload = gr.Button("Use this photo", elem_id="use-upload")
                    use_demo = gr.Button("Demo photo", elem_id="use-demo")
                with gr.Row():
                    seed = gr.Number(label="Sample seed", value=1, precision=0, elem_id="seed")
                    use_sample = gr.Button("Sampled face", elem_id="use-sample")
                photo_status = gr.Markdown("", elem_id="photo-status")
            with gr.Column(scale=1):
                quality = gr.Radio(list(PRESETS), value=default_quality, label="Quality preset",
                                   info="draft: minutes on a CPU; good: the default of the CLI; paper: hours",
                                   elem_id="quality")
                paste_back = gr.Checkbox(label="Paste results back into the photo (aligned photos)", value=True)
                with gr.Accordion("Embedding: advanced", open=False, elem_id="embed-advanced"):
                    e_w = gr.Number(label="W+ steps (0 = preset)", value=0, precision=0, elem_id="embed-w-steps")
                    e_n = gr.Number(label="noise steps (0 = preset)", value=0, precision=0,
                                    elem_id="embed-noise-steps")
                    e_psnr = gr.Number(label="stop a stage at PSNR, dB (0 = preset; 100 = never early)", value=0,
                                       elem_id="embed-until-psnr")
                    e_lpips = gr.Number(label="stop a stage at LPIPS (0 = none)", value=0,
                                        elem_id="embed-until-lpips")
                e_budget = gr.Markdown(budget_text("reconstruct", default_quality, 0, 0), elem_id="embed-budget")
                with gr.Row():
                    embed_btn = gr.Button("Embed", variant="primary", elem_id="embed")
                    stop_btn = gr.Button("Stop", variant="stop", elem_id="stop")
                stop_status = gr.Markdown("", elem_id="stop-status")

        def run_button(command):
            return gr.Button(f"Run {command}", variant="primary", elem_id=f"run-{command}")

        def outputs_row(prefix):
            with gr.Row():
                preview = gr.Image(label="Preview", interactive=False, elem_id=f"{prefix}-preview", height=320)
                compare = gr.ImageSlider(label="Input | result", interactive=False, elem_id=f"{prefix}-compare",
                                         height=320)
            status = gr.Markdown("", elem_id=f"{prefix}-status")
            files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id=f"{prefix}-files")
            return [preview, status, compare, files]

        def canvas(label, elem_id, brush=None):
            editor_box = gr.ImageEditor(label=label, type="numpy", image_mode="RGBA", format="png",
                                        sources=[], transforms=[], layers=False, elem_id=elem_id,
                                        canvas_size=(size, size), height=520,
                                        brush=brush or gr.Brush(colors=["#ffffff"], default_size=40,
                                                                color_mode="fixed"))
            canvases.append(editor_box)
            return editor_box

        def steps_controls(prefix, command):
            """The "Advanced" section: the steps, then each of the application's tunable settings in ADVANCED
            (empty = the preset's value); returns the fields, in the order of :func:`advanced_names`."""
            fields = {f.name: f for f in dataclasses.fields(APPLICATIONS[command].settings)}
            controls = []
            with gr.Accordion("Advanced", open=False, elem_id=f"{prefix}-advanced"):
                with gr.Row():
                    w = gr.Number(label="W+ steps (0 = preset)", value=0, precision=0, elem_id=f"{prefix}-w-steps")
                    n = gr.Number(label="noise steps (0 = preset)", value=0, precision=0,
                                  elem_id=f"{prefix}-noise-steps")
                controls += [w, n]
                with gr.Row():
                    for name in advanced_names(command)[2:]:
                        label, choices = ADVANCED[name]
                        default = fields[name].default
                        shown = "the schedule's" if default is None else default
                        label = f"{label} (empty: {shown})"
                        if choices:
                            controls.append(gr.Dropdown(["preset", *choices], value="preset", label=label,
                                                        elem_id=f"{prefix}-{name}"))
                        else:  # a text field: a Number field sends 0 when left empty, and 0 is a real feather
                            controls.append(gr.Textbox(value="", label=label, placeholder="preset",
                                                       elem_id=f"{prefix}-{name}"))
            budget = gr.Markdown(budget_text(command, default_quality, 0, 0), elem_id=f"{prefix}-budget")
            for control in (quality, w, n):
                control.change(lambda q, a, b: budget_text(command, q, a, b), [quality, w, n], budget)
            return controls

        with gr.Tab("Embedding"):
            embed_out = outputs_row("embed")
        tabs = {}
        with gr.Tab("Inpainting"):
            gr.Markdown("Paint the hole (white); the W+ stage sees only the rest.")
            tabs["inpaint"] = ([canvas("Hole", "inpaint-canvas"), *steps_controls("inpaint", "inpaint")], run_button("inpaint"),
                              outputs_row("inpaint"))
        with gr.Tab("Scribble"):
            gr.Markdown("Paint colours on the face; the edit follows the strokes. Embed the photo first.")
            brush = gr.Brush(default_size=20, colors=["#3c281e", "#be1e32", "#f0c8a0", "#2050c0"],
                             color_mode="defaults")
            tabs["scribble"] = ([canvas("Scribble", "scribble-canvas", brush), *steps_controls("scribble", "scribble")],
                                run_button("scribble"), outputs_row("scribble"))
        with gr.Tab("Crossover"):
            gr.Markdown("Paint the region taken from this photo (A); the rest comes from B.")
            c_canvas = canvas("Region of A", "crossover-canvas")
            c_preset = gr.Dropdown(["", *MASK_PRESETS], value="", label="or a preset region")
            with gr.Row():
                c_b = gr.Image(type="filepath", sources=["upload"], label="Photo B", height=240)
                c_seed = gr.Number(label="or sampled face seed", value=2, precision=0)
            tabs["crossover"] = ([c_canvas, c_preset, c_b, c_seed, *steps_controls("crossover", "crossover")],
                                 run_button("crossover"), outputs_row("crossover"))
        with gr.Tab("Style transfer"):
            gr.Markdown("Paint the region to keep; the style image's Gram statistics go everywhere else.")
            s_canvas = canvas("Kept region", "style-canvas")
            s_style = gr.Image(type="filepath", sources=["upload"], label="Style image", elem_id="style-style",
                               height=320)
            tabs["style-transfer"] = ([s_canvas, s_style, *steps_controls("style", "style-transfer")], run_button("style-transfer"),
                                      outputs_row("style"))
        with gr.Tab("Attribute transfer"):
            gr.Markdown("Paint the region of B to carry into A at one layer (Eq. 5).")
            a_canvas = canvas("Region", "attribute-canvas")
            with gr.Row():
                a_b = gr.Image(type="filepath", sources=["upload"], label="Photo B", height=240)
                a_seed = gr.Number(label="or sampled face seed", value=2, precision=0)
            a_layer = gr.Dropdown(layers, value=default_layer, label="Layer")
            a_op = gr.Radio(["spatial", "channel", "average"], value="spatial", label="Operation")
            tabs["transfer-attribute"] = ([a_canvas, a_b, a_seed, a_layer, a_op,
                                           *steps_controls("attribute", "transfer-attribute")],
                                          run_button("transfer-attribute"),
                                          outputs_row("attribute"))

        with gr.Tab("Local + global"):
            gr.Markdown("Global edits of this photo (A) in W+, with B (and C), in one render: morph, style mixing "
                        "by rows, expression transfer (A + λ·(C − B), B neutral, C with the expression). Paint a "
                        "region to also paste B's features there at one layer (a local edit, Eq. 5). A photo not "
                        "embedded yet is embedded first; sampled faces need no embedding. Moving λ runs again.")
            with gr.Row():
                g_op = gr.Radio(["morph", "mix", "expression"], value="morph", label="Operation", elem_id="global-op")
                g_amount = gr.Slider(-1.0, 2.0, value=0.5, step=0.05, elem_id="global-amount",
                                     label="λ: morph λ·A + (1 − λ)·B; expression A + λ·(C − B)")
            with gr.Row():
                g_rows = gr.Dropdown(list(ROW_PRESETS), value="fine", allow_custom_value=True, elem_id="global-rows",
                                     label="mix: W+ rows from B (coarse, middle, fine, or e.g. 9-17)")
                g_noise = gr.Radio(["a", "b", "follow"], value="a", label="Noise maps of the result")
            with gr.Row():
                g_b = gr.Image(type="filepath", sources=["upload"], label="Photo B", elem_id="global-b",
                               height=240)
                g_b_seed = gr.Number(label="or sampled face seed (B)", value=2, precision=0)
                g_c = gr.Image(type="filepath", sources=["upload"], label="Photo C (expression)",
                               elem_id="global-c", height=240)
                g_c_seed = gr.Number(label="or sampled face seed (C)", value=3, precision=0)
            g_canvas = canvas("Local edit: where B's features go (optional)", "global-canvas")
            g_layer = gr.Dropdown(layers, value=default_layer, label="Local edit layer")
            tabs["latent-edit"] = ([g_op, g_amount, g_rows, g_noise, g_b, g_b_seed, g_c, g_c_seed, g_canvas, g_layer,
                                    e_w, e_n, e_psnr, e_lpips],
                                   run_button("latent-edit"), outputs_row("global"))

        # -- events --------------------------------------------------------------------------------------------------
        load_outputs = [photo_state, photo_status, *canvases]
        for button, source in ((use_upload, "upload"), (use_demo, "demo"), (use_sample, "sample")):
            button.click(lambda u, a, f, s, source=source: load(u, a, f, s, source), [upload, align, face, seed],
                         load_outputs)
        for trigger in (align.change, upload.change):
            trigger(list_faces, [upload, align], [face, photo_status, faces_view, face_boxes])
        faces_view.select(pick_face, face_boxes, face)
        embedding_fields = [e_w, e_n, e_psnr, e_lpips]
        for control in (quality, *embedding_fields):
            control.change(lambda q, *fields: budget_text("reconstruct", q, *fields), [quality, *embedding_fields],
                           e_budget)
        embed_btn.click(embed, [session, photo_state, quality, *embedding_fields], embed_out, concurrency_limit=None)
        stop_btn.click(sessions.stop, session, stop_status)
        builders = {"inpaint": inpaint_inputs, "scribble": scribble_inputs, "crossover": crossover_inputs,
                    "style-transfer": style_inputs, "transfer-attribute": attribute_inputs,
                    "latent-edit": global_inputs}
        for command, (inputs, button, outputs) in tabs.items():
            advanced = advanced_names(command) if command in APPLICATIONS else ()
            handler = guarded(command, builders[command], len(inputs) - len(advanced), advanced)
            button.click(handler, [session, photo_state, quality, paste_back, *inputs], outputs, concurrency_limit=None)
        # The morph slider: letting go of it renders again (quick once the photos are embedded).
        g_amount.release(guarded("latent-edit", global_inputs, len(tabs["latent-edit"][0])),
                         [session, photo_state, quality, paste_back, *tabs["latent-edit"][0]], tabs["latent-edit"][2],
                         concurrency_limit=None)
    return page


def serve(editor: Editor, *, host: str = "127.0.0.1", port: int = 7860, default_quality: str = "draft",
          block: bool = True):
    """Launch the page; returns the Gradio app (``block=False`` for tests: the server runs in a thread)."""
    page = build_page(editor, default_quality=default_quality)
    page.queue(default_concurrency_limit=None)
    page.launch(server_name=host, server_port=port, allowed_paths=[str(editor.workspace.root)],
                prevent_thread_lock=not block, show_error=True, quiet=not block)
    return page
