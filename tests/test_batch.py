"""Folder runs without weights: input expansion, output names, fixed chunks, results.csv, and resuming a killed run
(on the tiny seeded generator) with byte-identical outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.apps.batch_plan import (
    BatchItem,
    chunks,
    expand_inputs,
    is_batch_request,
    is_finished,
    output_names,
    plan,
    remove_stale_temporaries,
)
from image2stylegan.apps.batch_results import RESULTS_FILE, ResultsTable
from image2stylegan.apps.batch_run import FolderJob, run_folder, seeded_start
from image2stylegan.apps.reconstruct import OUTPUT_FILES, STAGE_NAMES, ReconstructionSettings, reconstruct
from image2stylegan.errors import InputError, Notice
from image2stylegan.io import load_image

TIMING = {"written_at", "total_seconds", "seconds", "seconds_per_step", "seconds_per_image"}


def _write_images(folder, names, size=24, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / name)


def without_timing(obj):
    """metrics.json minus the wall-clock fields, for comparing two runs."""
    if isinstance(obj, dict):
        return {k: without_timing(v) for k, v in obj.items() if k not in TIMING}
    if isinstance(obj, list):
        return [without_timing(v) for v in obj]
    return obj


# -- planning ----------------------------------------------------------------------------------------------------
def test_expand_inputs_folder_glob_and_files(tmp_path):
    _write_images(tmp_path / "in", ["b.png", "a.jpg", "c.PNG"])
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / ".hidden.png").write_bytes(b"x")
    (tmp_path / "in" / "sub").mkdir()
    with pytest.warns(Notice) as record:
        files = expand_inputs([tmp_path / "in"])
    assert [p.name for p in files] == ["a.jpg", "b.png", "c.PNG"]
    assert len(record) == 1 and "notes.txt" in str(record[0].message)

    files = expand_inputs([str(tmp_path / "in" / "*.png"), tmp_path / "in" / "b.png"])  # de-duplicated
    assert [p.name for p in files] == ["b.png"]
    files = expand_inputs([tmp_path / "in" / "notes.txt"])  # an explicit file is taken whatever its name
    assert [p.name for p in files] == ["notes.txt"]
    with pytest.raises(InputError, match="no file matches"):
        expand_inputs([str(tmp_path / "in" / "*.gif")])
    with pytest.raises(InputError, match="does not exist"):
        expand_inputs([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image files"):
        expand_inputs([tmp_path / "empty"])


def test_batch_request_detection(tmp_path):
    _write_images(tmp_path, ["a.png", "b.png"])
    assert not is_batch_request([tmp_path / "a.png"])
    assert is_batch_request([tmp_path / "a.png", tmp_path / "b.png"])
    assert is_batch_request([tmp_path])
    assert is_batch_request([str(tmp_path / "*.png")])


def test_output_names_disambiguate_equal_stems(tmp_path):
    paths = [tmp_path / "x" / "a.jpg", tmp_path / "x" / "a.png", tmp_path / "y" / "a.png", tmp_path / "a-png.gif",
             tmp_path / "we ird.png"]
    assert output_names(paths) == ["a-jpg", "a-png", "a-png-2", "a-png-3", "we_ird"]
    assert output_names([tmp_path / "b.png"]) == ["b"]


def test_chunks_are_fixed_whatever_is_finished():
    items = [BatchItem(i, None, str(i)) for i in range(5)]
    assert [[it.index for it in c] for c in chunks(items, 2)] == [[0, 1], [2, 3], [4]]
    assert [[it.index for it in c] for c in chunks(items, 8)] == [[0, 1, 2, 3, 4]]
    with pytest.raises(InputError):
        chunks(items, 0)


def test_stale_temporaries_are_removed_selectively(tmp_path):
    (tmp_path / ".metrics.json.abc123.tmp").write_text("half")
    (tmp_path / ".other.tmp").write_text("not ours")
    (tmp_path / "metrics.json").write_text("{}")
    assert remove_stale_temporaries(tmp_path, ["metrics.json"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp", "metrics.json"]


def test_results_table_rows_and_rebuild_from_metrics(tmp_path):
    _write_images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    items = plan([tmp_path / "in"])
    table = ResultsTable(tmp_path, items, ["w_plus", "noise"])
    (tmp_path / "a").mkdir()
    metrics = {"stages": {"w_plus": {"psnr_db": 20.0, "ssim": 0.5}, "noise": {"psnr_db": 30.0, "ssim": 0.9,
                                                                              "lpips": 0.1}},
               "batch": {"seconds_per_image": 12.34}}
    (tmp_path / "a" / "metrics.json").write_text(json.dumps(metrics))
    assert table.load_finished() == 1
    table.error(items[1], "b.png is damaged")
    rows = list(csv.DictReader(table.write().open()))
    assert [r["status"] for r in rows] == ["ok", "error", "pending"]
    assert rows[0]["psnr_w_plus_db"] == "20.0000" and rows[0]["psnr_noise_db"] == "30.0000"
    assert rows[0]["ssim"] == "0.9000" and rows[0]["lpips"] == "0.1000" and rows[0]["seconds"] == "12.3"
    assert rows[1]["message"] == "b.png is damaged"
    assert table.counts() == {"ok": 1, "error": 1, "pending": 1}


def test_results_table_rewrites_take_a_bounded_share_of_the_run(tmp_path, monkeypatch):
    """A rewrite that took d seconds is followed by none for d / WRITE_SHARE seconds (a stand-in clock: the rows of
    a huge run would make each rewrite slow); held-back rows are written by the next write after that, or flush."""
    from image2stylegan.apps import batch_results

    _write_images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    items = plan([tmp_path / "in"])
    table = ResultsTable(tmp_path, items, ["w_plus", "noise"])
    clock = {"now": 100.0}

    def monotonic() -> float:
        clock["now"] += 0.5  # every reading of the clock: each write spans two readings, 0.5 s apart
        return clock["now"]

    def statuses() -> list[str]:
        return [r["status"] for r in csv.DictReader((tmp_path / RESULTS_FILE).open())]

    monkeypatch.setattr(batch_results.time, "monotonic", monotonic)
    assert table.write() is not None  # the first write is never held; it took 0.5 s, so the next waits 10 s
    table.error(items[0], "a.png is damaged")
    assert table.write() is None and statuses() == ["pending"] * 3
    clock["now"] += 10.0
    table.error(items[1], "b.png is damaged")
    assert table.write() is not None and statuses() == ["error", "error", "pending"]
    table.error(items[2], "c.png is damaged")
    assert table.write() is None and table.flush() is not None and statuses() == ["error"] * 3
    assert table.flush() is None  # nothing held back: nothing to write


# -- running (tiny generator) ------------------------------------------------------------------------------------
class Killed(Exception):
    """Stands in for SIGKILL: raised from the per-image callback, after that image's files are complete."""


@pytest.fixture
def folder(tmp_path):
    _write_images(tmp_path / "in", ["p0.png", "p1.png", "p3.png", "p4.png"])
    (tmp_path / "in" / "p2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # sorts into the middle of chunk 1
    return tmp_path / "in"


def _job(tiny, tiny_perceptual, batch_size):
    settings = ReconstructionSettings(w_steps=3, noise_steps=2, seed=7)
    return FolderJob(tiny, tiny_perceptual, None, settings, "sha", "cpu", batch_size=batch_size)


def _run(job, folder, outdir, kill_after=None):
    items = plan([folder])
    outdir.mkdir(parents=True, exist_ok=True)
    table = ResultsTable(outdir, items, STAGE_NAMES)
    table.load_finished()
    written = []

    def on_image(item, status, message):
        written.append((item.name, status))
        if kill_after is not None and len([w for w in written if w[1] == "ok"]) == kill_after:
            raise Killed

    try:
        run_folder(job, items, outdir, table, on_image=on_image)
    except Killed:
        pass
    return items, table, written


def _snapshot(outdir, items):
    out = {}
    for it in items:
        folder = outdir / it.name
        if not is_finished(folder):
            continue
        for name in OUTPUT_FILES:
            data = (folder / name).read_bytes()
            out[(it.name, name)] = without_timing(json.loads(data)) if name == "metrics.json" else data
    return out


@pytest.mark.parametrize("batch_size", [1, 2])
def test_killed_run_resumes_to_the_same_bytes(tiny, tiny_perceptual, folder, tmp_path, batch_size):
    job = _job(tiny, tiny_perceptual, batch_size)
    items, table, _ = _run(job, folder, tmp_path / "full")
    assert [table.status(it) for it in items] == ["ok", "ok", "error", "ok", "ok"]
    reference = _snapshot(tmp_path / "full", items)
    assert len(reference) == 4 * len(OUTPUT_FILES)

    # Killed after the first image: with batch 2 that is inside chunk [p0, p1], which the restart must recompute
    # whole (writing only p1) for p1's bytes to match.
    _, _, written = _run(job, folder, tmp_path / "resumed", kill_after=1)
    assert written == [("p0", "ok")]
    first = (tmp_path / "resumed" / "p0" / "latent.npz").stat().st_mtime_ns
    _, table, written = _run(job, folder, tmp_path / "resumed")
    assert ("p0", "ok") not in written and ("p2", "error") in written
    assert (tmp_path / "resumed" / "p0" / "latent.npz").stat().st_mtime_ns == first  # finished work kept as is
    assert _snapshot(tmp_path / "resumed", items) == reference
    rows = list(csv.DictReader((tmp_path / "resumed" / RESULTS_FILE).open()))
    full_rows = list(csv.DictReader((tmp_path / "full" / RESULTS_FILE).open()))
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in full_rows]
    assert "damaged" in rows[2]["message"] or "truncated" in rows[2]["message"] or "p2.png" in rows[2]["message"]

    # A third run has nothing left to embed.
    _, _, written = _run(job, folder, tmp_path / "resumed")
    assert written == [("p2", "error")]


def test_batch_of_one_reproduces_the_single_photo_embedding(tiny, tiny_perceptual, folder, tmp_path):
    job = _job(tiny, tiny_perceptual, 1)
    items, _, _ = _run(job, folder, tmp_path / "out")
    target = load_image(folder / "p0.png", tiny.resolution)
    single = reconstruct(tiny, target, tiny_perceptual, job.settings)
    saved = np.load(tmp_path / "out" / "p0" / "latent.npz")
    assert np.array_equal(saved["w"], single.ws.numpy())


def test_every_image_starts_like_a_single_photo(tiny):
    settings = ReconstructionSettings(seed=3)
    ws, noise = seeded_start(tiny, 3, settings)
    one_ws, one_noise = seeded_start(tiny, 1, settings)
    assert torch.equal(ws, one_ws.repeat(3, 1, 1))
    assert all(torch.equal(n, m.repeat(3, 1, 1, 1)) for n, m in zip(noise, one_noise))
