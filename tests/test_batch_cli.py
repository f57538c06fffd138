"""Folder runs of ``i2s reconstruct`` end to end with the real weights (1 W+ step + 1 noise step per image): a bad
file is reported and the run goes on, and a run killed with SIGKILL and started again ends byte-identical to an
uninterrupted one."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from test_batch import without_timing
from test_cli import _one_line_error, i2s

pytestmark = pytest.mark.real_weights

OUTPUTS = {"reconstruction.png", "comparison.png", "target.png", "latent.npz", "metrics.json", "curves.png"}
GOOD = ("face0", "face1", "face2")
BUDGET = ("--w-steps", "1", "--noise-steps", "1", "--quiet")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three small crops of the astronaut's face and one file that only claims to be a JPEG (it sorts first)."""
    from skimage import data

    astronaut = data.astronaut()
    folder = tmp_path_factory.mktemp("photos")
    for name, (left, top) in zip(GOOD, [(138, 19), (150, 30), (120, 10)]):
        Image.fromarray(astronaut[top : top + 176, left : left + 176]).resize((96, 96)).save(folder / f"{name}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory):
    """An uninterrupted run, batch size 1."""
    outdir = tmp_path_factory.mktemp("reference") / "out"
    return i2s("reconstruct", folder, "--outdir", outdir, "--batch-size", 1, *BUDGET), outdir


def _rows(outdir):
    with (outdir / "results.csv").open() as handle:
        return list(csv.DictReader(handle))


def _snapshot(outdir):
    """Every output's bytes (metrics.json without its wall-clock fields), by (image, file)."""
    out = {}
    for name in GOOD:
        for file in OUTPUTS:
            data = (outdir / name / file).read_bytes()
            out[name, file] = without_timing(json.loads(data)) if file == "metrics.json" else data
    return out


def test_a_bad_file_is_reported_and_the_run_goes_on(reference, folder):
    result, outdir = reference
    assert result.returncode == 0, result.stderr
    rows = _rows(outdir)
    assert [(r["output"], r["status"]) for r in rows] == [("broken", "error"), *((n, "ok") for n in GOOD)]
    assert "broken.jpg" in rows[0]["message"] and rows[0]["psnr_noise_db"] == ""
    for row in rows[1:]:
        assert float(row["psnr_w_plus_db"]) > 5 and float(row["psnr_noise_db"]) > 5 and float(row["lpips"]) > 0
    for name in GOOD:
        assert {p.name for p in (outdir / name).iterdir()} == OUTPUTS
    assert not (outdir / "broken").exists()
    assert "3 of 4 images reconstructed, 1 failed" in result.stdout


def test_killed_run_resumes_byte_identical(reference, folder, tmp_path):
    _, expected = reference
    outdir = tmp_path / "out"
    cmd = [sys.executable, "-c", "from image2stylegan.cli import main; main()", "reconstruct", str(folder),
           "--outdir", str(outdir), "--batch-size", "1", *BUDGET]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = outdir / GOOD[0] / "metrics.json"
    deadline = time.monotonic() + 600
    try:
        while not first.exists():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the first image never finished"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (outdir / GOOD[-1] / "metrics.json").exists(), "killed too late to test resuming"
    kept = first.read_bytes()

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "(1 already finished)" in result.stdout
    assert first.read_bytes() == kept
    assert _snapshot(outdir) == _snapshot(expected)
    assert not [p for p in outdir.rglob(".*.tmp")]
    drop = {"seconds"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in _rows(outdir)] == \
        [{k: v for k, v in r.items() if k not in drop} for r in _rows(expected)]


def test_batch_of_two_finishes_the_same_outputs(reference, folder, tmp_path):
    """Two of the images as one batch (a quoted glob): the same outputs as batch size 1, to rounding."""
    _, expected = reference
    outdir = tmp_path / "out"
    result = i2s("reconstruct", str(folder / "face[12].png"), "--outdir", outdir, "--batch-size", 2, *BUDGET)
    assert result.returncode == 0, result.stderr
    assert [(r["output"], r["status"]) for r in _rows(outdir)] == [("face1", "ok"), ("face2", "ok")]
    for name in GOOD[1:]:
        assert {p.name for p in (outdir / name).iterdir()} == OUTPUTS
    batch = json.loads((outdir / "face1" / "metrics.json").read_text())["batch"]
    assert batch["size"] == 2 and batch["members"] == ["face1", "face2"]
    # Batched arithmetic rounds differently, but each image is still its own optimisation.
    a = np.asarray(Image.open(outdir / "face1" / "reconstruction.png")).astype(float)
    b = np.asarray(Image.open(expected / "face1" / "reconstruction.png")).astype(float)
    assert np.abs(a - b).mean() < 1.0


def test_a_folder_of_bad_files_fails(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n nope")
    line = _one_line_error(i2s("reconstruct", tmp_path / "in", "--outdir", tmp_path / "out", *BUDGET))
    assert "none of the 1 input files" in line
    assert [r["status"] for r in _rows(tmp_path / "out")] == ["error"]
