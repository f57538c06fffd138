"""Notices: the library issues them as ``Notice`` warnings; the CLI prints each one, repeats included, as exactly one
``note: <message>`` line on stderr, and a folder run prints the notes of each image it reads."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from image2stylegan.cli.common import cli
from image2stylegan.errors import Notice, notice, notices_to
from image2stylegan.latents import save_latent

BUDGET = ["--w-steps", "1", "--noise-steps", "1", "--quiet", "--device", "cpu"]


def test_notice_is_a_user_warning_attributed_to_its_caller():
    assert issubclass(Notice, UserWarning)
    with pytest.warns(Notice, match="^photo.png: resized$") as record:
        notice("photo.png: resized")
    assert record[0].filename == __file__


def test_notices_to_hands_over_every_notice_and_leaves_other_warnings_alone():
    said = []
    before = warnings.showwarning
    with pytest.warns(RuntimeWarning, match="something else"):
        with notices_to(said.append):
            for _ in range(3):
                notice("same text, same place")  # Python's default filter would show it once
            warnings.warn("something else", RuntimeWarning)
    assert said == ["same text, same place"] * 3
    assert warnings.showwarning is before
    with pytest.warns(Notice):  # after the block, notices are warnings again
        notice("back to a warning")


# -- the CLI (tiny generator, random VGG) ------------------------------------------------------------------------
@pytest.fixture
def tiny_cli(tiny_app_cli):
    return tiny_app_cli


def _photo(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return str(path)


def _notes(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("note: ")]


def _no_warning_format(output: str) -> None:
    """Nothing of Python's own warning display: no category, no file and line."""
    assert "Notice" not in output and "UserWarning" not in output and ".py:" not in output, output


def test_a_resized_photo_is_one_note_line_each_time(tiny_cli, tmp_path):
    photo = _photo(tmp_path / "wide.png", 40, 36)  # tiny is 32 px: cropped, then resized
    expected = ["note: wide.png: 40x36 is not square; centre-cropped to 36x36",
                "note: wide.png: resized from 36x36 to 32x32"]
    for run in range(2):  # the same notice from the same place is shown again by a second command
        result = tiny_cli.invoke(cli, ["reconstruct", photo, "--outdir", str(tmp_path / f"out{run}"), *BUDGET])
        assert result.exit_code == 0, result.output
        assert _notes(result.stderr) == expected, result.output
        assert not _notes(result.stdout)
        _no_warning_format(result.output)


def test_render_notes_come_from_the_cli_and_the_library(tiny_cli, tiny, tmp_path):
    latent = tmp_path / "w.npz"
    save_latent(latent, tiny.mean_ws(1), [])  # no generator name, no noise maps
    result = tiny_cli.invoke(cli, ["render", str(latent), "--out", str(tmp_path / "w.png"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    notes = _notes(result.stderr)
    assert len(notes) == 2, result.output
    assert "names no generator" in notes[0] and notes[1].endswith("rendering them with zero noise")
    _no_warning_format(result.output)


def test_a_folder_run_prints_one_note_per_photo(tiny_cli, tmp_path):
    # The same file name in two folders: identical notices from the same line of code, both shown.
    first, second = _photo(tmp_path / "a" / "p.png", 40, 40, 0), _photo(tmp_path / "b" / "p.png", 40, 40, 1)
    outdir = tmp_path / "out"
    result = tiny_cli.invoke(cli, ["reconstruct", first, second, "--outdir", str(outdir), *BUDGET])
    assert result.exit_code == 0, result.output
    assert _notes(result.stderr) == ["note: p.png: resized from 40x40 to 32x32"] * 2, result.output
    _no_warning_format(result.output)
    assert "2 of 2 images reconstructed" in result.stdout
    assert len([d for d in outdir.iterdir() if d.is_dir()]) == 2


def test_run_folder_hands_each_images_notices_to_log(tiny, tiny_perceptual, tmp_path):
    from image2stylegan.apps.batch_plan import plan
    from image2stylegan.apps.batch_results import ResultsTable
    from image2stylegan.apps.batch_run import FolderJob, run_folder
    from image2stylegan.apps.reconstruct import STAGE_NAMES, ReconstructionSettings

    _photo(tmp_path / "in" / "p0.png", 40, 40, 0)
    _photo(tmp_path / "in" / "p1.png", 32, 32, 1)  # the generator's size: nothing to say
    (tmp_path / "in" / "p2.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    items = plan([tmp_path / "in"])
    job = FolderJob(tiny, tiny_perceptual, None, ReconstructionSettings(w_steps=1, noise_steps=1), "sha", "cpu")
    outdir = tmp_path / "out"
    outdir.mkdir()
    table = ResultsTable(outdir, items, STAGE_NAMES)
    said = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)  # with a log, no notice escapes as a warning
        run_folder(job, items, outdir, table, log=said.append)
    assert said == ["p0.png: resized from 40x40 to 32x32"]
    assert [table.status(it) for it in items] == ["ok", "ok", "error"]
