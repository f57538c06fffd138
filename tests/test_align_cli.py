"""``--align``, ``--paste-back``, ``i2s paste-back`` and ``i2s faces`` end to end with the real weights (tiny budgets).

The photo is scikit-image's public-domain astronaut, scaled down and pasted off-centre into a larger textured
canvas, so the face is small (about 80 px of FFHQ crop in a 900x600 photo) and far from the middle.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from image2stylegan.align import AlignTransform
from test_cli import _one_line_error, i2s

pytestmark = pytest.mark.real_weights

RECON = {"reconstruction.png", "comparison.png", "target.png", "latent.npz", "metrics.json", "curves.png"}
ALIGNED = {"aligned.png", "alignment.json", "pasted.png"}


@pytest.fixture(scope="module")
def canvas(tmp_path_factory):
    from skimage import data

    face = Image.fromarray(data.astronaut()).resize((240, 240), Image.Resampling.LANCZOS)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:600, 0:900]
    base = np.stack([xx * 255 // 900, yy * 255 // 600, np.full_like(xx, 90)], 2)
    photo = np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    photo[320:560, 600:840] = np.asarray(face)
    path = tmp_path_factory.mktemp("photo") / "small_face.png"
    Image.fromarray(photo).save(path)
    return path


@pytest.fixture(scope="module")
def aligned_run(canvas, tmp_path_factory):
    outdir = tmp_path_factory.mktemp("aligned") / "out"
    result = i2s("reconstruct", canvas, "--align", "--paste-back", "--outdir", outdir, "--w-steps", 2,
                 "--noise-steps", 1, "--quiet")
    return result, outdir


def _quad_box(transform: AlignTransform, margin: int = 3):
    q = np.asarray(transform.quad)
    x0, y0 = np.floor(q.min(0)).astype(int) - margin
    x1, y1 = np.ceil(q.max(0)).astype(int) + margin
    return x0, y0, x1, y1


def test_reconstruct_aligns_and_pastes_back_a_small_off_centre_face(aligned_run, canvas):
    result, outdir = aligned_run
    assert result.returncode == 0, result.stderr
    assert {p.name for p in outdir.iterdir()} == RECON | ALIGNED
    assert "aligned to 1024x1024" in result.stderr
    metrics = json.loads((outdir / "metrics.json").read_text())
    record = metrics["alignment"]
    assert record == json.loads((outdir / "alignment.json").read_text())
    assert record["face"] == 0 and record["photo"] == str(canvas.resolve()) and record["result"] == "reconstruction.png"
    transform = AlignTransform.from_dict(record["transform"])
    assert transform.photo_size == (900, 600) and transform.output_size == 1024
    # The aligned input is what the optimiser saw.
    assert np.array_equal(np.asarray(Image.open(outdir / "aligned.png")), np.asarray(Image.open(outdir / "target.png")))

    photo = np.asarray(Image.open(canvas))
    pasted = np.asarray(Image.open(outdir / "pasted.png"))
    assert pasted.shape == photo.shape
    x0, y0, x1, y1 = _quad_box(transform)
    assert 600 < x0 and x1 < 840 and 320 < y0 and y1 < 560  # the face square lies inside the pasted astronaut
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(pasted[outside], photo[outside])  # byte-identical away from the face
    assert (pasted[~outside] != photo[~outside]).any()  # and the reconstruction did go in


def test_paste_back_command_reproduces_pasted_png(aligned_run, canvas, tmp_path):
    _, outdir = aligned_run
    again = tmp_path / "again.png"
    result = i2s("paste-back", outdir, "--out", again)
    assert result.returncode == 0, result.stderr
    assert again.read_bytes() == (outdir / "pasted.png").read_bytes()
    # From the JSON file, with the photo and image named explicitly.
    explicit = tmp_path / "explicit.png"
    result = i2s("paste-back", outdir / "alignment.json", "--photo", canvas, "--image", outdir / "reconstruction.png",
                 "--out", explicit)
    assert result.returncode == 0, result.stderr
    assert explicit.read_bytes() == again.read_bytes()
    # A photo of another size is refused in one line.
    small = tmp_path / "small.png"
    Image.open(canvas).resize((450, 300)).save(small)
    assert "alignment was made on a 900x600 photo" in _one_line_error(
        i2s("paste-back", outdir, "--photo", small, "--out", tmp_path / "x.png"))
    # A result that is not the one the transform was saved with (the folder changed after the run) is refused.
    import shutil

    changed = tmp_path / "changed"
    shutil.copytree(outdir, changed)
    Image.open(changed / "reconstruction.png").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        changed / "reconstruction.png")
    assert "not the result this alignment was saved with" in _one_line_error(
        i2s("paste-back", changed, "--out", tmp_path / "y.png"))
    assert not (tmp_path / "y.png").exists()


def test_inpaint_pastes_the_filled_photo_back(canvas, tmp_path):
    """An aligned inpainting pastes filled.png (the photo with the hole filled), not the render, into the original;
    `i2s paste-back` finds the same file through alignment.json."""
    outdir = tmp_path / "out"
    result = i2s("inpaint", canvas, "--mask", "center", "--align", "--paste-back", "--outdir", outdir,
                 "--w-steps", 1, "--noise-steps", 1, "--quiet")
    assert result.returncode == 0, result.stderr
    written = {p.name for p in outdir.iterdir()}
    assert {"result.png", "filled.png", "pasted.png", "aligned.png", "alignment.json"} <= written
    metrics = json.loads((outdir / "metrics.json").read_text())
    assert metrics["alignment"]["result"] == "filled.png"
    again = tmp_path / "again.png"
    assert i2s("paste-back", outdir, "--out", again).returncode == 0
    assert again.read_bytes() == (outdir / "pasted.png").read_bytes()


def test_faces_lists_the_astronaut_and_refuses_a_blank_image(tmp_path):
    from skimage import data

    astronaut = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(astronaut)
    result = i2s("faces", astronaut)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1 face(s)") and "score 1.0000" in result.stdout and "eye L (205, 101)" in result.stdout
    listed = json.loads(i2s("faces", astronaut, "--json").stdout)
    assert len(listed) == 1 and listed[0]["index"] == 0 and set(listed[0]["landmarks"]) >= {"eye_left", "mouth_right"}

    blank = tmp_path / "blank.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(blank)
    assert "no face found in" in _one_line_error(i2s("faces", blank))


def test_paste_back_without_align_is_a_usage_error(canvas, tmp_path):
    for command in (["reconstruct", canvas], ["scribble", canvas, canvas], ["crossover", canvas, canvas, "--mask",
                                                                              "left-half"]):
        result = i2s(*command, "--paste-back", "--outdir", tmp_path / "o")
        assert result.returncode == 2 and "--paste-back needs --align" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_scribble_aligns_both_images_with_the_photos_face(canvas, tmp_path):
    scribbled = tmp_path / "scribbled.png"
    image = Image.open(canvas).convert("RGB")
    ImageDraw.Draw(image).line([(690, 396), (718, 396)], fill=(220, 30, 30), width=3)
    image.save(scribbled)
    outdir = tmp_path / "out"
    result = i2s("scribble", canvas, scribbled, "--align", "--paste-back", "--outdir", outdir, "--embed-w-steps", 1,
                 "--embed-noise-steps", 1, "--w-steps", 1, "--noise-steps", 1, "--quiet")
    assert result.returncode == 0, result.stderr
    record = json.loads((outdir / "alignment.json").read_text())
    assert record["role"] == "photo" and record["result"] == "result.png"
    assert record["others"]["scribbled"]["transform"] == record["transform"]
    assert {"aligned.png", "aligned_scribbled.png", "pasted.png", "result.png"} <= {p.name for p in outdir.iterdir()}
    assert Image.open(outdir / "pasted.png").size == (900, 600)
    # The strokes are the only difference between the two aligned inputs, so the edit mask is small.
    a = np.asarray(Image.open(outdir / "aligned.png")).astype(int)
    b = np.asarray(Image.open(outdir / "aligned_scribbled.png")).astype(int)
    changed = (np.abs(a - b) > 0.05 * 255).any(2).mean()
    assert 0 < changed < 0.1
