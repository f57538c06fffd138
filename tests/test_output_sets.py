"""Output folders hold one run's files, published together with metrics.json last: nothing stale, nothing
half-written, nothing mixed (apps/publish.py and the commands that use it)."""

from __future__ import annotations

import csv
import hashlib
import json

import numpy as np
import pytest
from PIL import Image

from image2stylegan.apps.publish import (STAGING_PREFIX, check_outdir, code_version, matches, provenance, publish,
                                         staged)
from image2stylegan.cli.common import cli
from image2stylegan.errors import InputError


def test_publish_replaces_the_previous_set_as_a_whole_and_keeps_foreign_files(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"command": "old", "files": ["a.png", "b.png", "metrics.json"]}))
    for name in ("a.png", "b.png", "notes.txt"):
        (tmp_path / name).write_text("old")
    with staged(tmp_path) as stage:
        for name in ("a.png", "c.png"):
            (stage / name).write_text("new")
        (stage / "metrics.json").write_text(json.dumps({"command": "new", "files": ["a.png", "c.png", "metrics.json"]}))
        assert publish(stage, tmp_path) == ["a.png", "c.png", "metrics.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "c.png", "metrics.json", "notes.txt"]
    assert (tmp_path / "a.png").read_text() == "new" and (tmp_path / "notes.txt").read_text() == "old"


def test_a_failed_run_publishes_nothing_and_leaves_no_staging_folder(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"command": "old", "files": ["metrics.json"]}))
    with pytest.raises(KeyboardInterrupt), staged(tmp_path) as stage:
        (stage / "result.png").write_text("half")
        raise KeyboardInterrupt  # Ctrl-C (or SIGTERM, which the CLI turns into the same unwinding) mid-save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    assert json.loads((tmp_path / "metrics.json").read_text())["command"] == "old"


def test_check_outdir_refuses_another_runs_files_unless_told_and_clears_leftovers(tmp_path):
    check_outdir(tmp_path / "new", overwrite=False)  # nothing there yet
    (tmp_path / f"{STAGING_PREFIX}killed").mkdir()  # what a SIGKILL during a save leaves
    (tmp_path / "holiday.jpg").write_text("the user's own file")
    check_outdir(tmp_path, overwrite=False)
    assert not (tmp_path / f"{STAGING_PREFIX}killed").exists()
    (tmp_path / "latent.npz").write_text("x")  # a run's file, even without its metrics.json
    with pytest.raises(InputError, match="--overwrite"):
        check_outdir(tmp_path, overwrite=False)
    (tmp_path / "metrics.json").write_text(json.dumps({"command": "crossover"}))
    with pytest.raises(InputError, match="earlier `i2s crossover` run"):
        check_outdir(tmp_path, overwrite=False)
    check_outdir(tmp_path, overwrite=True)


def test_provenance_matches_by_content_and_never_for_a_stopped_run():
    record = {"command": "reconstruct", "settings": {"w_steps": 2}, "inputs": {"photo": {"file": "a.png", "sha256": "1"}},
              "generator": "g", "weights_sha256": "w", "code_version": code_version(), "stopped": False}
    moved = {**record, "inputs": {"photo": {"file": "elsewhere/a.png", "sha256": "1"}}}
    assert matches(record, moved) and provenance(record)["code_version"].startswith("0.")
    assert not matches(record, {**record, "settings": {"w_steps": 3}})
    assert not matches(record, {**record, "inputs": {"photo": {"file": "a.png", "sha256": "2"}}})
    assert not matches(record, {**record, "code_version": "0.0.0+other"})
    assert not matches({**record, "stopped": True}, record)


def _photo(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return str(path)


BUDGET = ["--w-steps", "2", "--noise-steps", "1", "--quiet", "--device", "cpu"]


def test_a_command_refuses_a_folder_with_another_run_and_replaces_it_as_a_set_when_told(tiny_app_cli, tmp_path):
    a, b = _photo(tmp_path / "a.png", 0), _photo(tmp_path / "b.png", 1)
    out = tmp_path / "out"
    first = tiny_app_cli.invoke(cli, ["transfer-attribute", a, b, "--mask", "center", "--layer", "b16.conv1",
                                      "--outdir", str(out), *BUDGET])
    assert first.exit_code == 0, first.output
    assert {"a_latent.npz", "b_latent.npz"} <= {p.name for p in out.iterdir()}
    refused = tiny_app_cli.invoke(cli, ["crossover", a, b, "--mask", "left-half", "--outdir", str(out), *BUDGET])
    assert refused.exit_code != 0 and "earlier `i2s transfer-attribute` run" in str(refused.exception)
    assert json.loads((out / "metrics.json").read_text())["command"] == "transfer-attribute"  # untouched
    again = tiny_app_cli.invoke(cli, ["crossover", a, b, "--mask", "left-half", "--outdir", str(out), *BUDGET,
                                      "--overwrite"])
    assert again.exit_code == 0, again.output
    metrics = json.loads((out / "metrics.json").read_text())
    # Only the crossover's files: the attribute transfer's latents went with the set they belonged to.
    assert sorted(p.name for p in out.iterdir() if p.name not in ("a.png", "b.png")) == metrics["files"]
    assert "a_latent.npz" not in metrics["files"] and metrics["code_version"] == code_version()


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return {r["output"]: r for r in csv.DictReader(f)}


def test_a_folder_run_redoes_images_made_differently_and_can_refuse_them(tiny_app_cli, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        _photo(photos / f"p{i}.png", i)
    out = tmp_path / "out"

    def run(*extra):
        return tiny_app_cli.invoke(cli, ["reconstruct", str(photos), "--outdir", str(out), *BUDGET, *extra])

    assert run().exit_code == 0
    written = {name: (out / name / "metrics.json").stat().st_mtime_ns for name in ("p0", "p1")}

    same = run()  # the same command: nothing to do
    assert same.exit_code == 0 and "already reconstructed" in same.output

    _photo(photos / "p1.png", 7)  # another photo under the same name
    changed = run()
    assert changed.exit_code == 0, changed.output
    assert (out / "p0" / "metrics.json").stat().st_mtime_ns == written["p0"]  # still valid: kept
    assert (out / "p1" / "metrics.json").stat().st_mtime_ns != written["p1"]  # stale: redone
    sha = json.loads((out / "p1" / "metrics.json").read_text())["inputs"]["photo"]["sha256"]
    assert sha == hashlib.sha256((photos / "p1.png").read_bytes()).hexdigest()

    refused = run("--noise-steps", "2", "--refuse-stale")  # other settings, and told not to redo
    rows = _rows(out)
    assert isinstance(refused.exception, InputError)  # none reconstructed: exit status 2 through main()
    assert {r["status"] for r in rows.values()} == {"error"}
    assert "other settings" in rows["p0"]["message"]
    assert json.loads((out / "p0" / "metrics.json").read_text())["settings"]["noise_steps"] == 1  # left alone
    redone = run("--noise-steps", "2")
    assert redone.exit_code == 0 and {r["status"] for r in _rows(out).values()} == {"ok"}
    assert json.loads((out / "p0" / "metrics.json").read_text())["settings"]["noise_steps"] == 2
