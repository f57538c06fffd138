"""apps.photos without the detector: reading photos for the generator, sharing one alignment between a photo and
its edited copy or mask, the alignment metadata and its round trip through alignment.json, and paste-back.

Alignments here come from hand-measured landmarks of scikit-image's astronaut (see tests/test_align.py), so no
weights are needed.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.align import align_face
from image2stylegan.apps.photos import (
    ALIGNMENT_FILE,
    PhotoInput,
    align_like,
    align_mask_file,
    alignment_outputs,
    alignment_record,
    load_photo_input,
    pick_role,
    read_alignment,
    uint8_to_tensor,
)
from image2stylegan.errors import InputError, Notice
from image2stylegan.io import load_image

HAND_5 = np.array([[203.0, 101.0], [247.0, 102.5], [225.0, 129.0], [205.0, 141.0], [241.0, 142.0]])
SIZE = 64


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def aligned(astronaut):
    """The astronaut aligned from the hand-measured landmarks, as load_photo_input(align=True) would return it."""
    photo = np.asarray(Image.open(astronaut))
    face = align_face(photo, HAND_5, SIZE)
    return PhotoInput(astronaut, uint8_to_tensor(face.image), face.transform, 0, face.image, photo)


def test_without_align_it_is_load_image(astronaut):
    with pytest.warns(Notice, match="resized from 512x512 to 64x64") as record:
        photo = load_photo_input(astronaut, SIZE)
    with pytest.warns(Notice) as expected_record:
        expected = load_image(astronaut, SIZE)
    assert torch.equal(photo.image, expected) and photo.transform is None
    assert [str(w.message) for w in record] == [str(w.message) for w in expected_record]


def test_aligned_pixels_become_the_tensor_load_image_gives_for_the_saved_png(aligned, tmp_path):
    Image.fromarray(aligned.aligned).save(tmp_path / "aligned.png")
    again = load_image(tmp_path / "aligned.png", SIZE)
    assert torch.equal(aligned.image, again)


def test_an_edited_copy_shares_the_photos_alignment(aligned, tmp_path):
    edited = np.asarray(Image.open(aligned.path)).copy()
    edited[135:140, 210:236] = (255, 0, 0)  # a stroke on the chin
    Image.fromarray(edited).save(tmp_path / "edited.png")
    copy = align_like(tmp_path / "edited.png", aligned)
    assert copy.transform == aligned.transform
    changed = (np.abs(copy.aligned.astype(int) - aligned.aligned.astype(int)) > 12).any(2)
    assert 0 < changed.mean() < 0.05
    Image.fromarray(edited[:500]).save(tmp_path / "cropped.png")
    with pytest.raises(InputError, match="same photo's size"):
        align_like(tmp_path / "cropped.png", aligned)


def test_mask_drawn_on_the_photo_is_aligned_with_it(aligned, tmp_path):
    mask = np.zeros((512, 512), np.uint8)
    mask[90:115, 190:260] = 255  # the eyes' band
    Image.fromarray(mask).save(tmp_path / "eyes.png")
    with pytest.warns(Notice) as record:
        aligned_mask = align_mask_file(tmp_path / "eyes.png", aligned)
    assert aligned_mask is not None
    assert aligned_mask.shape == (1, 1, SIZE, SIZE) and "aligned with the photo" in str(record[-1].message)
    rows = aligned_mask[0, 0].nonzero()[:, 0].float()
    eye_row = aligned.transform.to_aligned(HAND_5[:2], SIZE)[:, 1].mean()
    assert abs(rows.mean().item() - eye_row) < 3  # the band lands on the aligned eyes
    Image.fromarray(mask[:256, :256]).save(tmp_path / "other.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Notice)  # nothing said: load_mask reads it next and says what it does
        assert align_mask_file(tmp_path / "other.png", aligned) is None  # another size: drawn on the aligned image


def test_alignment_metadata_round_trip_and_paste_back(aligned, tmp_path):
    plain = PhotoInput(aligned.path, aligned.image)
    photos = {"a": (plain, "aligned_a.png"), "b": (aligned, "aligned_b.png")}
    assert alignment_record({"a": (plain, "x.png")}, paste_into="a", result="result.png") is None
    record = alignment_record(photos, paste_into="a", result="result.png")
    assert record["role"] == "b" and record["face"] == 0 and record["others"] == {}  # 'a' was not aligned

    extra, write = alignment_outputs(photos, paste_into="b", result="result.png", paste_back=True)
    assert extra["alignment"]["transform"] == aligned.transform.to_dict()
    result = torch.zeros(1, 3, SIZE, SIZE)  # a flat grey "edit"
    write(result, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"aligned_b.png", ALIGNMENT_FILE, "pasted.png"}
    pasted = np.asarray(Image.open(tmp_path / "pasted.png"))
    photo = np.asarray(Image.open(aligned.path))
    assert pasted.shape == photo.shape
    quad = np.asarray(aligned.transform.quad)
    (x0, y0), (x1, y1) = np.floor(quad.min(0)).astype(int) - 2, np.ceil(quad.max(0)).astype(int) + 2
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(pasted[outside], photo[outside])
    assert (pasted[100:140, 200:250] != photo[100:140, 200:250]).any()

    loaded, folder = read_alignment(tmp_path)
    assert loaded == json.loads(json.dumps(extra["alignment"])) and folder == tmp_path
    (tmp_path / "metrics.json").write_text(json.dumps({"alignment": loaded}))
    assert read_alignment(tmp_path / "metrics.json")[0] == loaded
    assert pick_role(loaded, None) is loaded and pick_role(loaded, "b") is loaded
    with pytest.raises(InputError, match="role 'a'"):
        pick_role(loaded, "a")
    (tmp_path / "other").mkdir()
    with pytest.raises(InputError, match="--align"):
        read_alignment(tmp_path / "other")
