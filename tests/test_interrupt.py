"""Ctrl-C during a run: every optimising command stops after the current step, saves the embedding reached so far
(``"stopped": true`` in metrics.json), prints one line and exits with status 130.

The signal is a real SIGINT sent to this process (``os.kill``) from inside the third optimisation step; the CLI's
handler turns it into a stop request that the engine sees at the end of that step.
"""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
from PIL import Image

from image2stylegan.cli.common import INTERRUPTED, cli
from image2stylegan.progress import StopControl

INTERRUPT_AT_STEP = 3


@pytest.fixture
def tiny_cli(tiny_app_cli, monkeypatch):
    """The tiny CLI (conftest.py), with a SIGINT sent to this process during the 3rd optimisation step."""
    import image2stylegan.embed as engine

    steps = []
    original = engine._step_info

    def step_info(*args, **kwargs):
        steps.append(1)
        if len(steps) == INTERRUPT_AT_STEP:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends
        return original(*args, **kwargs)

    monkeypatch.setattr(engine, "_step_info", step_info)
    return tiny_app_cli


def _photo(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
    return str(path)


BUDGET = ["--w-steps", "6", "--noise-steps", "6", "--quiet", "--device", "cpu"]


def _commands(tmp_path):
    a, b = _photo(tmp_path / "a.png", 0), _photo(tmp_path / "b.png", 1)
    scribbled = np.array(Image.open(a))
    scribbled[10:20, 10:20] = (255, 0, 0)
    Image.fromarray(scribbled).save(tmp_path / "scribbled.png")
    return {
        "reconstruct": ["reconstruct", a],
        "crossover": ["crossover", a, b, "--mask", "left-half"],
        "inpaint": ["inpaint", a, "--mask", "center"],
        "style-transfer": ["style-transfer", a, b, "--mask", "center", "--embed-steps", "4"],
        "scribble": ["scribble", a, str(tmp_path / "scribbled.png"), "--embed-w-steps", "4",
                     "--embed-noise-steps", "4"],
        "transfer-attribute": ["transfer-attribute", a, b, "--mask", "center", "--layer", "b16.conv1"],
    }


@pytest.mark.parametrize("command", ["reconstruct", "crossover", "inpaint", "style-transfer", "scribble",
                                     "transfer-attribute"])
def test_ctrl_c_saves_the_embedding_reached_so_far_and_exits_130(tiny_cli, tmp_path, command):
    outdir = tmp_path / "out"
    result = tiny_cli.invoke(cli, [*_commands(tmp_path)[command], "--outdir", str(outdir), *BUDGET])
    assert result.exit_code == INTERRUPTED, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and "SIGINT" in lines[0] and f"step {INTERRUPT_AT_STEP}/" in lines[0], result.output
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert metrics["stopped"] is True
    stages = metrics["stages"]
    assert sum(s["steps"] for s in stages.values()) == INTERRUPT_AT_STEP  # the step under way was finished
    assert list(stages.values())[-1].get("stopped") is True
    assert (outdir / "latent.npz").is_file()


def test_a_run_that_is_not_interrupted_is_not_marked_stopped(tiny_app_cli, tmp_path):
    a = _photo(tmp_path / "a.png", 0)
    result = tiny_app_cli.invoke(cli, ["inpaint", a, "--mask", "center", "--outdir", str(tmp_path / "o"), *BUDGET])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert metrics["stopped"] is False and metrics["recipe"]["application"] == "inpaint"
    assert [s["name"] for s in metrics["recipe"]["stages"]] == ["w_plus", "noise"]
    assert metrics["inputs"]["photo"]["sha256"] and metrics["inputs"]["mask"] == "center"


def test_stop_control_turns_the_first_signal_into_a_request_and_a_second_ctrl_c_into_an_abort():
    # Whatever handlers the test starts with (a job started in the background inherits SIGINT ignored) come back.
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    control = StopControl()
    with control.on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        assert control.requested and control.reason == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored
    assert control(type("Info", (), {"stage": "w_plus", "step": 2, "steps": 9})()) is True
    assert control.where == "w_plus step 2/9"
    fresh = StopControl()
    fresh.request("stop button")
    assert fresh.reason == "stop button" and fresh.requested


@pytest.mark.real_weights
def test_sigterm_from_outside_stops_a_real_run_and_publishes_a_complete_stopped_set(tmp_path):
    """What `timeout`, schedulers and Ray send: a real process, the bundled generator, SIGTERM after step 2."""
    import re
    import subprocess
    import sys
    import threading

    photo = _photo(tmp_path / "a.png", 0)
    outdir = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-c", "from image2stylegan.cli import main; main()", "reconstruct", photo, "--outdir",
         str(outdir), "--w-steps", "200", "--noise-steps", "10"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen, reached = [], threading.Event()

    def watch() -> None:  # tqdm redraws its bar on stderr after each step (with \r, so read characters)
        while chunk := process.stderr.read(1):
            seen.append(chunk)
            if not reached.is_set() and re.search(r"\b2/200\b", "".join(seen[-400:])):
                reached.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    assert reached.wait(timeout=300), "".join(seen)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == INTERRUPTED
    reader.join(timeout=30)
    stderr = "".join(seen)
    assert "interrupted (SIGTERM)" in stderr and "Traceback" not in stderr
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert metrics["stopped"] is True and 2 <= metrics["stages"]["w_plus"]["steps"] < 200
    assert sorted(p.name for p in outdir.iterdir()) == sorted(metrics["files"])  # the whole set, nothing else
