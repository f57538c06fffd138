"""The browser editor without the browser: its job queue, its workspace and the runs it builds (tiny generator).

The page itself is tested in a real Chromium (tests/test_editor_browser.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.apps.requests import rebuild
from image2stylegan.editor.jobs import JobQueue, preview_array
from image2stylegan.editor.runs import Editor
from image2stylegan.editor.workspace import UploadLimits, Workspace
from image2stylegan.embed import StepInfo
from image2stylegan.errors import InputError
from image2stylegan.latents import load_latent


def _steps(callback, n: int, gate: threading.Event | None = None, image=None) -> int:
    """A stand-in for the engine: reports ``n`` steps (waiting on ``gate`` after the first), stops when asked."""
    for step in range(1, n + 1):
        if callback(StepInfo("w_plus", step, n, 0.0, 20.0, {}, 0.0, image=image)):
            return step
        if gate is not None and step == 1:
            gate.wait()
    return n


def test_jobs_run_one_at_a_time_in_order_and_show_their_place_in_the_queue():
    queue = JobQueue(preview_every=1, preview_size=8)
    gate = threading.Event()
    first = queue.submit("first", lambda cb: _steps(cb, 3, gate), total=3)
    first.wait(after=-1)
    while first.snapshot().state != "running":
        first.wait(after=first.snapshot().version)
    second = queue.submit("second", lambda cb: _steps(cb, 2), total=2)
    third = queue.submit("third", lambda cb: _steps(cb, 2), total=2)
    assert (second.snapshot().state, second.snapshot().position) == ("queued", 1)
    assert third.snapshot().position == 2
    assert third.snapshot().line() == "queued: position 2"
    second.stop()  # a queued job is dropped, and the one behind it moves up
    assert second.snapshot().state == "cancelled"
    assert third.snapshot().position == 1
    gate.set()
    for job in (first, third):
        snap = job.wait(after=-1)
        while not snap.finished:
            snap = job.wait(after=snap.version)
    assert (first.result, first.snapshot().state, first.snapshot().step) == (3, "done", 3)
    assert third.snapshot().state == "done"
    queue.close()


def test_stop_ends_a_running_job_after_its_step_and_keeps_what_it_reached():
    queue = JobQueue(preview_every=1, preview_size=8)
    gate = threading.Event()
    job = queue.submit("long", lambda cb: _steps(cb, 1000, gate, image=torch.zeros(1, 3, 16, 16)), total=1000)
    snap = job.wait(after=-1)
    while snap.step < 1:
        snap = job.wait(after=snap.version)
    job.stop()
    gate.set()
    while not snap.finished:
        snap = job.wait(after=snap.version)
    assert snap.state == "stopped" and snap.message == "stopped by the user"
    assert job.result == 2  # the step after the request reported it, then the engine stopped
    assert snap.preview.shape == (8, 8, 3) and snap.preview.dtype == np.uint8
    assert snap.previews >= 1
    queue.close()


def test_a_stage_that_ends_at_its_target_says_so_in_the_status_line():
    seen, submitted = [], threading.Event()

    def work(callback):
        submitted.wait()  # `job` below is bound
        callback(StepInfo("w_plus", 1, 100, 0.0, 20.0, {}, 0.0))
        callback(StepInfo("w_plus", 2, 100, 0.0, 33.5, {}, 0.0, target_reached=True))
        seen.append(job.snapshot())
        for step in (1, 2):
            callback(StepInfo("noise", step, 2, 0.0, 34.0, {}, 0.0))

    queue = JobQueue()
    job = queue.submit("reconstruct", work, total=102)
    submitted.set()
    snap = job.wait(after=-1)
    while not snap.finished:
        snap = job.wait(after=snap.version)
    assert snap.state == "done" and snap.step == 4
    assert "reached the target: w_plus at step 2/100" in snap.line()
    # The time left counts the 2 noise steps still to run, not the 98 W+ steps the target made unnecessary.
    (midway,) = seen
    assert midway.seconds_left == pytest.approx(midway.seconds * 2 / 2)
    queue.close()


def test_a_failing_job_shows_its_error_and_the_queue_goes_on():
    queue = JobQueue()

    def fail(cb):
        raise InputError("the mask is empty")

    bad = queue.submit("bad", fail)
    good = queue.submit("good", lambda cb: "ok")
    for job in (bad, good):
        snap = job.wait(after=-1)
        while not snap.finished:
            snap = job.wait(after=snap.version)
    assert bad.snapshot().line() == "failed: the mask is empty"
    assert good.result == "ok"
    queue.close()


def test_preview_is_a_uint8_thumbnail_of_the_render():
    image = torch.ones(1, 3, 64, 64)
    image[:, :, :, :32] = -1
    out = preview_array(image, 16)
    assert out.shape == (16, 16, 3)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, -1].tolist() == [255, 255, 255]


# -- workspace ------------------------------------------------------------------------------------------------------
def _png(path: Path, size=(40, 30), mode="RGB") -> Path:
    Image.new(mode, size, 128).save(path)
    return path


def test_uploads_are_checked_and_stored_by_content(tmp_path):
    space = Workspace(tmp_path / "ws", limits=UploadLimits(max_bytes=2000))
    stored = space.store_upload(_png(tmp_path / "a.png"))
    assert stored.parent == space.root / "uploads" and stored.suffix == ".png"
    assert space.store_upload(_png(tmp_path / "b.png")) == stored  # same pixels, same file
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InputError, match="the upload is not an image"):
        space.store_upload(tmp_path / "text.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="damaged or truncated|cannot open"):
        space.store_upload(tmp_path / "cut.png")
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(big)
    with pytest.raises(InputError, match="the editor takes images up to"):
        space.store_upload(big)
    assert "cut" not in str(list((space.root / "uploads").iterdir()))


def test_an_upload_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("I2S_MAX_PIXELS", "1000")
    space = Workspace(tmp_path / "ws")
    with pytest.raises(InputError, match="the upload is 40x30"):
        space.store_upload(_png(tmp_path / "a.png"))


def test_clean_up_removes_the_oldest_first_and_never_what_is_in_use(tmp_path):
    import os

    space = Workspace(tmp_path / "ws", cap_bytes=2500)
    runs = []
    for i in range(4):
        folder = space.new_run("inpaint")
        (folder / "result.bin").write_bytes(b"x" * 1000)
        os.utime(folder, (1000 + i, 1000 + i))
        runs.append(folder)
    space.hold(runs[0])
    removed = space.clean_up()
    assert removed == [runs[1], runs[2]]
    assert runs[0].exists() and runs[3].exists() and space.size() <= 2500


def test_the_workspace_refuses_an_unwritable_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot use .* as the editor's workspace"):
        Workspace(blocker / "ws")


def test_contains_only_answers_for_paths_inside_the_workspace(tmp_path):
    space = Workspace(tmp_path / "ws")
    assert space.contains(space.root / "runs" / "x")
    assert not space.contains(space.root / ".." / "elsewhere")
    assert not space.contains(Path("/etc/passwd"))


# -- runs -----------------------------------------------------------------------------------------------------------
@pytest.fixture
def editor(tmp_path, tiny, tiny_perceptual):
    lpips = lambda x, y: (x - y).abs().mean(dim=(1, 2, 3))  # noqa: E731 - an L1 stand-in
    queue = JobQueue(preview_every=1, preview_size=16)
    yield Editor(tiny, tiny_perceptual, lpips, "0" * 64, torch.device("cpu"), Workspace(tmp_path / "ws"), queue)
    queue.close()


def _finish(job):
    snap = job.wait(after=-1)
    while not snap.finished:
        snap = job.wait(after=snap.version)
    return snap


def test_an_editor_run_writes_what_the_cli_writes_and_rebuilds_from_its_record(editor, tiny):
    photo = editor.sample_photo(3)
    hole = np.zeros((32, 32), np.uint8)
    hole[10:20, 8:24] = 255
    job, folder = editor.edit("inpaint", "draft", {"photo": photo.image, "mask": hole},
                              settings={"w_steps": 3, "noise_steps": 2})
    snap = _finish(job)
    assert snap.state == "done", snap.message
    assert (snap.step, snap.total) == (5, 5) and snap.previews >= 2
    names = set(json.loads((folder / "metrics.json").read_text())["files"])
    assert {"result.png", "filled.png", "panel.png", "latent.npz", "metrics.json", "curves.png"} <= names
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["command"] == "inpaint" and metrics["settings"]["w_steps"] == 3
    assert metrics["inputs"]["mask"]["file"] == "inputs/mask.png"
    plan = rebuild(metrics, tiny, base=folder)  # the record names files in the run folder, unchanged
    assert plan.recipe.total_steps == 5
    assert np.asarray(load_latent(folder / "latent.npz").w).shape == (1, tiny.num_ws, tiny.w_dim)


def test_embeddings_are_cached_and_a_stopped_one_is_not(editor):
    photo = editor.sample_photo(1)
    assert editor.cached_embedding(photo, "draft", w_steps=2, noise_steps=1) is None
    snap = _finish(editor.embed(photo, "draft", w_steps=2, noise_steps=1))
    assert snap.state == "done", snap.message
    folder = editor.cached_embedding(photo, "draft", w_steps=2, noise_steps=1)
    assert folder is not None and (folder / "reconstruction.png").is_file() and (folder / "latent.npz").is_file()
    assert editor.cached_embedding(photo, "draft", w_steps=3, noise_steps=1) is None  # other settings
    assert editor.latest_embedding(photo) == folder / "latent.npz"  # where the edits of this photo start
    job = editor.embed(photo, "draft", w_steps=50, noise_steps=1)
    job.stop()
    snap = _finish(job)
    assert snap.state in ("stopped", "cancelled")
    assert editor.cached_embedding(photo, "draft", w_steps=50, noise_steps=1) is None
    assert editor.latest_embedding(photo) == folder / "latent.npz"  # a stopped run does not replace it


def test_an_edit_with_nothing_painted_is_refused_before_it_is_queued(editor):
    photo = editor.sample_photo(1)
    with pytest.raises(InputError):
        editor.edit("inpaint", "draft", {"photo": photo.image, "mask": np.zeros((32, 32), np.uint8)})
    with pytest.raises(InputError, match="the editor runs"):
        editor.edit("render", "draft", {})


def test_a_sampled_face_brings_its_exact_latent_as_its_embedding(editor, tiny):
    photo = editor.sample_photo(4)
    latent = editor.latest_embedding(photo)
    assert latent is not None and "sampled face 4" in photo.notes[-1]
    data = load_latent(latent)
    with torch.no_grad():
        image = tiny.synthesis(data.w, data.noise).clamp(-1, 1)
    pixels = np.asarray(Image.open(photo.image), dtype=np.int16)
    rendered = ((image[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.int16)
    assert np.abs(pixels - rendered).max() <= 1  # the photo is that latent's render (8-bit rounding apart)
    assert editor.sample_photo(4).image == photo.image  # the same seed, the same stored face


def test_a_local_and_global_edit_embeds_what_is_not_embedded_then_writes_the_clis_files(editor, tmp_path):
    from image2stylegan.apps.latent_ops import LatentEditSettings

    a = editor.sample_photo(1)  # exact latent: nothing to embed
    b_file = tmp_path / "b.png"
    Image.open(editor.sample_photo(2).image).save(b_file)
    b = editor.open_photo(b_file)
    editor.embedded.pop(b.image)  # as an upload of the same pixels would be: not embedded yet
    region = np.zeros((32, 32), np.uint8)
    region[8:24, 8:24] = 255
    settings = LatentEditSettings(op="morph", amount=0.25, layer="b16.conv1")
    with pytest.raises(InputError, match="expression transfer needs photo C"):
        editor.latent_edit("draft", {"a": a, "b": b}, LatentEditSettings(op="expression"))
    with pytest.raises(InputError, match="paint the region"):
        editor.latent_edit("draft", {"a": a, "b": b}, settings)
    job, folder = editor.latent_edit("draft", {"a": a, "b": b}, settings, mask=region, w_steps=2, noise_steps=1)
    snap = _finish(job)
    assert snap.state == "done", snap.message
    assert snap.total == 3 and snap.step == 3  # B's embedding: 2 W+ + 1 noise step; the edit itself is one render
    assert editor.latest_embedding(b) is not None  # B is embedded (and cached) for the next edit
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["command"] == "latent-edit" and metrics["settings"]["amount"] == 0.25
    assert {k: v["file"] for k, v in metrics["inputs"].items()} == {
        "a": "inputs/a.npz", "b": "inputs/b.npz", "mask": "inputs/mask.png"}
    assert metrics["metrics"]["layer"] == "b16.conv1" and {"result.png", "panel.png", "latent.npz"} <= set(metrics["files"])


# -- the page's pure helpers (the page itself runs in tests/test_editor_browser.py) ---------------------------------
def test_the_painted_layers_become_the_mask_at_the_generators_size():
    from image2stylegan.editor.controls import composite, painted_mask

    assert painted_mask(None, 32) is None
    layer = np.zeros((64, 64, 4), np.uint8)
    assert painted_mask({"layers": [layer]}, 32) is None  # nothing painted
    layer[10:20, 30:50] = (255, 255, 255, 255)
    mask = painted_mask({"layers": [layer]}, 32)
    assert mask.shape == (32, 32) and mask.dtype == np.uint8
    assert mask[7, 20] == 255 and mask[0, 0] == 0 and set(np.unique(mask)) == {0, 255}
    canvas = np.zeros((64, 64, 4), np.uint8)
    canvas[..., 3] = 255
    canvas[:, :32, 0] = 200
    out = composite({"composite": canvas}, 32)
    assert out.shape == (32, 32, 3) and out[5, 5].tolist() == [200, 0, 0] and out[5, 30].tolist() == [0, 0, 0]


def test_the_budget_line_is_the_presets_with_the_pages_overrides():
    from image2stylegan.apps.presets import PRESETS
    from image2stylegan.editor.controls import budget_text

    draft = PRESETS["draft"]
    assert budget_text("inpaint", "draft", 0, 0) == (
        f"budget: {draft.mean_start_w_steps} W+ + {draft.edit_noise_steps} noise steps (draft)")
    assert budget_text("scribble", "good", 3, None) == "budget: 3 W+ + 200 noise steps (good)"
    assert budget_text("inpaint", "draft", -5, 0).startswith("budget: ")  # out of range: said, not raised


def test_the_embedding_fields_set_its_steps_and_stopping_target_as_the_cli_options_do():
    from image2stylegan.apps.presets import PRESETS
    from image2stylegan.editor.controls import budget_text, embedding_overrides

    assert embedding_overrides(0, None, "", 0) == {"w_steps": None, "noise_steps": None, "until_psnr": None,
                                                   "until_lpips": None}  # all left to the preset
    assert embedding_overrides(7.0, 3, " 35.5 ", 0.2) == {"w_steps": 7, "noise_steps": 3, "until_psnr": 35.5,
                                                          "until_lpips": 0.2}
    with pytest.raises(InputError, match="until psnr: 'high' is not a number"):
        embedding_overrides(0, 0, "high", 0)
    good = PRESETS["good"]
    assert budget_text("reconstruct", "good", 0, 0, 0, 0) == (
        f"budget: {good.embed_w_steps} W+ + {good.embed_noise_steps} noise steps (good); a stage ends early at "
        f"PSNR >= {good.until_psnr:g} dB")
    assert budget_text("reconstruct", "draft", 10, 0, 30, 0.25).endswith(
        "a stage ends early at PSNR >= 30 dB and LPIPS <= 0.25")
    assert "ends early" not in budget_text("reconstruct", "paper", 0, 0, 0, 0)  # the paper's budget runs to its end
    assert budget_text("reconstruct", "good", 0, 0, 150, 0).startswith("budget: ")  # out of range: said, not raised
    assert "150" in budget_text("reconstruct", "good", 0, 0, 150, 0)


def test_an_embedding_with_a_stopping_target_ends_its_stages_early_and_records_when(editor):
    photo = editor.sample_photo(2)
    overrides = {"w_steps": 20, "noise_steps": 20, "until_psnr": 1.0}  # every image of a face beats 1 dB
    snap = _finish(editor.embed(photo, "draft", **overrides))
    assert snap.state == "done", snap.message
    folder = editor.cached_embedding(photo, "draft", **overrides)
    assert folder is not None
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["settings"]["until_psnr"] == 1.0
    for stage in metrics["stages"].values():
        assert stage["steps"] == 1 and stage["reached_target"]["step"] == 1
    assert editor.cached_embedding(photo, "draft", w_steps=20, noise_steps=20) is None  # another target, another run


def test_a_click_picks_the_smallest_face_box_holding_it_else_the_nearest():
    from image2stylegan.editor.controls import face_at, faces_overlay

    boxes = [(0, 0, 100, 100), (40, 40, 60, 60), (200, 0, 260, 60)]
    assert face_at(50, 50, boxes) == 1  # inside both: the small face, drawn over the large one
    assert face_at(10, 90, boxes) == 0
    assert face_at(190, 30, boxes) == 2  # beside every box: the nearest centre
    overlay, scale = faces_overlay(np.zeros((1000, 2000, 3), np.uint8), boxes, longest=500)
    assert overlay.shape == (250, 500, 3) and scale == 0.25
    assert overlay[0:25, 0:25].any()  # the box and its number are drawn


def test_the_advanced_fields_override_only_what_was_filled_in():
    from image2stylegan.editor.controls import advanced_names, advanced_values

    names = advanced_names("scribble")
    assert names == ["w_steps", "noise_steps", "w_lr", "noise_lr", "feather", "noise_space", "seed"]
    assert advanced_names("transfer-attribute") == ["w_steps", "noise_steps", "noise_space", "seed"]
    assert advanced_values(names, [0, 0, "", " ", "", "preset", ""]) == {}  # all left to the preset
    assert advanced_values(names, [5.0, 0, "0.02", "", "0", "extended", "3"]) == {
        "w_steps": 5, "w_lr": 0.02, "feather": 0.0, "noise_space": "extended", "seed": 3}  # 0 is a real feather
    with pytest.raises(InputError, match="noise learning rate: 'fast' is not a number"):
        advanced_values(names, [0, 0, "", "fast", "", "preset", ""])
