"""Tests for run pictures (image2stylegan.report)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.report import plot_curves, side_by_side


def _history() -> list[dict]:
    rng = np.random.default_rng(3)
    history = []
    for step in range(30):
        loss = 1.0 / (step + 1) + rng.uniform(0, 0.01)
        history.append({"stage": "w_plus", "step": step, "loss": loss, "psnr": 15 + step * 0.2,
                        "terms": {"mse": loss * 0.6, "perceptual": loss * 0.4}})
    for step in range(20):
        loss = 0.03 / (step + 1)
        history.append({"stage": "noise", "step": step, "loss": loss, "psnr": 21 + step * 0.3,
                        "terms": {"mse": loss}})
    return history


def test_side_by_side_shape_and_white_gaps():
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 32, 32, generator=gen) * 2 - 1 for _ in range(3)]
    sheet = side_by_side(images, ["target", "after W+", "after noise"], tile=64)
    gap = max(4, 64 // 32)
    label_height = 2 * max(10, 64 // 20)
    assert sheet.dtype == np.uint8
    assert sheet.shape == (2 * gap + 64 + label_height, gap + 3 * (64 + gap), 3)
    assert (sheet[:, :gap] == 255).all() and (sheet[:gap] == 255).all()
    label_strip = sheet[gap + 64 :]
    assert (label_strip < 128).any()  # some dark text was drawn


def test_side_by_side_accepts_batched_and_odd_sizes():
    sheet = side_by_side([torch.zeros(1, 3, 20, 10), torch.ones(3, 16, 16)], ["a very long label " * 5, "b"], tile=48)
    assert sheet.shape[2] == 3 and sheet.shape[1] == max(4, 48 // 32) + 2 * (48 + max(4, 48 // 32))


def test_side_by_side_rejects_mismatched_labels():
    with pytest.raises(ValueError):
        side_by_side([torch.zeros(3, 8, 8)], ["a", "b"])


def test_plot_curves_writes_png(tmp_path):
    path = tmp_path / "curves.png"
    plot_curves(_history(), path)
    assert path.stat().st_size > 1000
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 100 and img.height > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_plot_curves_tolerates_nan_inf_and_empty(tmp_path):
    history = [{"stage": "w_plus", "step": 0, "loss": math.nan, "psnr": math.inf},
               {"stage": "w_plus", "step": 1, "loss": 0.0, "psnr": 20.0}]
    plot_curves(history, tmp_path / "odd.png")
    plot_curves([], tmp_path / "empty.png")
    assert (tmp_path / "odd.png").stat().st_size > 0 and (tmp_path / "empty.png").stat().st_size > 0


def test_report_import_does_not_load_pyplot():
    # pyplot import picks a global backend and keeps figures alive; report must avoid it.
    code = "import sys, image2stylegan.report; print('matplotlib.pyplot' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
