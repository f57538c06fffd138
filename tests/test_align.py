"""Face detection (MTCNN), FFHQ alignment and paste-back.

Unit tests use random-initialised nets, synthetic photos and hand-measured landmarks; the ``real_weights`` ones run
the fetched MTCNN weights on scikit-image's public-domain astronaut photo (Eileen Collins, NASA).

Hand-measured in the 512 px astronaut photo (zoomed pixel grid, pixel-centre (x, y)): pupils (203, 101) and
(247, 102.5); mouth corners (205, 141) and (241, 142), midpoint (223, 141.5). (The middle of the open mouth, the
teeth, is lower, near (224, 145); the FFHQ recipe uses the corners' midpoint.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from image2stylegan.align import (
    MTCNN,
    AlignTransform,
    Face,
    align_face,
    align_photo,
    canonical_points,
    detect_faces,
    ffhq_quad,
    key_points,
    load_mtcnn,
    load_photo,
    order_faces,
    paste_back,
    paste_back_to_file,
    paste_mask,
    select_face,
)
from image2stylegan.align.mtcnn import ONet, PNet, RNet, area_resize, load_state_dict_strict, nms
from image2stylegan.errors import InputError, WeightsFormatError, WeightsNotFoundError
from image2stylegan.weights import ARTIFACTS

HAND_EYES = np.array([[203.0, 101.0], [247.0, 102.5]])
HAND_MOUTH = np.array([223.0, 141.5])
# 5 points in MTCNN order for weight-free tests (nose and mouth corners hand-measured too).
HAND_5 = np.array([[203.0, 101.0], [247.0, 102.5], [225.0, 129.0], [205.0, 141.0], [241.0, 142.0]])


@pytest.fixture(autouse=True)
def _one_thread():
    """MTCNN is hundreds of tiny ops: on a busy 2-core machine one thread ran detection ~10x faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, :3])


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse)


def _outside_and_core(transform: AlignTransform, shape: tuple[int, ...], **mask_options) -> tuple[np.ndarray, ...]:
    """Photo-sized boolean maps: weight 0 (must be untouched) and weight 1 (fully pasted)."""
    weights, (x0, y0, x1, y1) = paste_mask(transform, **mask_options)
    full = np.zeros(shape[:2], np.float32)
    full[y0:y1, x0:x1] = weights
    return full == 0, full >= 1


def _similarity_canvas(photo: np.ndarray, scale: float, degrees: float, offset, size, fill=128):
    """``photo`` scaled, rotated (clockwise on screen, y down) and placed with its centre at ``offset`` in a canvas.

    Returns the canvas and ``forward``: photo pixel-centre (x, y) [..., 2] -> canvas (x, y).
    """
    h, w = photo.shape[:2]
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    ang = np.deg2rad(degrees)
    lin = scale * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    off = np.asarray(offset, dtype=np.float64)
    inv = np.linalg.inv(lin)
    # Pillow: canvas edge (X, Y) -> photo edge; canvas centre = edge - 0.5, photo edge = centre + 0.5.
    t = inv @ (np.array([-0.5, -0.5]) - off) + centre + 0.5
    canvas = Image.fromarray(photo).transform(
        size, Image.Transform.AFFINE, (inv[0, 0], inv[0, 1], t[0], inv[1, 0], inv[1, 1], t[1]),
        Image.Resampling.BICUBIC, fillcolor=(fill,) * 3,
    )  # fmt: skip

    def forward(p):
        return (np.asarray(p, dtype=np.float64) - centre) @ lin.T + off

    return np.asarray(canvas), forward


# ---------------------------------------------------------------------------------------------------- registry


def test_registry_pins_mtcnn_weights():
    art = ARTIFACTS["mtcnn"]
    assert art.requirement == "facenet-pytorch==2.6.0" and art.env_var == "I2S_MTCNN_DIR"
    assert art.archive_sha256.startswith("ecb82b27")
    assert {m.basename for m in art.members} == {"pnet.pt", "rnet.pt", "onet.pt"}
    assert all(m.path.startswith("facenet_pytorch/data/") for m in art.members)


def test_missing_weights_say_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("I2S_HOME", str(tmp_path))
    monkeypatch.delenv("I2S_MTCNN_DIR", raising=False)
    with pytest.raises(WeightsNotFoundError) as err:
        load_mtcnn()
    message = str(err.value)
    assert "\n" not in message and "i2s weights fetch" in message and "pnet.pt" in message


# ---------------------------------------------------------------------------------------------------- networks


def test_nets_have_the_state_dict_layout_of_the_weight_files():
    # 13 / 16 / 21 tensors, as in facenet-pytorch's pnet.pt / rnet.pt / onet.pt.
    model = MTCNN()
    assert [len(getattr(model, n).state_dict()) for n in ("pnet", "rnet", "onet")] == [13, 16, 21]
    assert model.onet.state_dict()["dense5.weight"].shape == (256, 1152)


def test_net_output_shapes():
    torch.manual_seed(0)
    offsets, prob = PNet()(torch.randn(2, 3, 37, 50))
    # conv3 -> 35x48, ceil-mode pool -> 18x24, two conv3 -> 14x20
    assert offsets.shape == (2, 4, 14, 20) and prob.shape == (2, 14, 20)
    offsets, prob = RNet()(torch.randn(5, 3, 24, 24))
    assert offsets.shape == (5, 4) and prob.shape == (5,) and ((prob >= 0) & (prob <= 1)).all()
    offsets, marks, prob = ONet()(torch.randn(3, 3, 48, 48))
    assert offsets.shape == (3, 4) and marks.shape == (3, 10) and prob.shape == (3,)


@pytest.mark.parametrize("change", ["missing", "extra", "shape"])
def test_strict_loading_names_the_bad_key(change, tmp_path):
    state = PNet().state_dict()
    if change == "missing":
        del state["conv4_2.bias"]
        key = "conv4_2.bias"
    elif change == "extra":
        state["conv5.weight"] = torch.zeros(1)
        key = "conv5.weight"
    else:
        state["prelu2.weight"] = torch.zeros(17)
        key = "prelu2.weight"
    torch.save(state, tmp_path / "pnet.pt")  # through a real file, as the loader reads them
    loaded = torch.load(tmp_path / "pnet.pt", weights_only=True)
    with pytest.raises(WeightsFormatError, match=key.replace(".", r"\.")):
        load_state_dict_strict(PNet(), loaded, "pnet.pt")
    with pytest.raises(WeightsFormatError, match="state_dict"):
        load_state_dict_strict(PNet(), [1, 2], "pnet.pt")


def test_area_resize_matches_torch_area_interpolation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 61, 83, generator=g) * 2 - 1
    for size in [(61, 83), (30, 41), (13, 9), (7, 50), (1, 1)]:
        torch.testing.assert_close(area_resize(x, size), F.interpolate(x, size=size, mode="area"), atol=1e-5, rtol=0)


def test_nms_union_and_min():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [2, 2, 6, 6]], dtype=np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 81/119 > 0.5; box 3 lies inside box 0 but its IoU is only 0.16.
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [3, 2]  # box 3 lies inside both 0 and 1: overlap 1
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_cascade_shape_logic_with_random_weights():
    # Random nets output ~0.5 everywhere: thresholds 0 push many candidates through all three stages.
    torch.manual_seed(0)
    model = MTCNN()
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    faces = model.detect(image, min_face_size=24, thresholds=(0.0, 0.0, 0.0))
    assert faces and all(isinstance(f, Face) for f in faces)
    for f in faces:
        assert f.landmarks.shape == (5, 2) and np.isfinite(f.landmarks).all() and len(f.box) == 4
        assert f.box[2] > f.box[0] and f.box[3] > f.box[1]
        json.dumps(f.to_dict())
    assert faces == order_faces(faces)
    assert model.detect(image[:15, :15], min_face_size=20) == []  # smaller than the smallest face: no pyramid
    assert model.detect(Image.fromarray(image).convert("L"), thresholds=(0.99, 0.99, 0.99)) == []


def test_order_faces_confident_largest_first_and_select_face():
    lm = np.zeros((5, 2))
    small = Face((0, 0, 10, 10), 0.999, lm)
    big = Face((0, 0, 30, 30), 0.995, lm)
    doubtful_huge = Face((0, 0, 90, 90), 0.72, lm)
    assert order_faces([doubtful_huge, small, big]) == [big, small, doubtful_huge]
    assert select_face([big, small], 1) is small
    with pytest.raises(InputError, match="no face found"):
        select_face([])
    with pytest.raises(InputError, match="2 face"):
        select_face([big, small], 2)


# ---------------------------------------------------------------------------------------------------- FFHQ recipe


def test_quad_follows_the_recipe_and_accepts_dlib_points():
    # Upright symmetric face: eyes 40 px apart at y = 100, mouth corners 36 px below.
    five = np.array([[80.0, 100.0], [120.0, 100.0], [100.0, 118.0], [88.0, 136.0], [112.0, 136.0]])
    quad = ffhq_quad(five)
    # |x| = max(2 * 40, 1.8 * 36) = 80; centre = eye_avg + 0.1 * eye_to_mouth = (100, 103.6)
    np.testing.assert_allclose(quad, [[20, 23.6], [20, 183.6], [180, 183.6], [180, 23.6]], atol=1e-9)
    dlib = np.zeros((68, 2))
    dlib[36:42] = five[0] + np.array([[-3, 0], [-1, -1], [1, -1], [3, 0], [1, 1], [-1, 1]])
    dlib[42:48] = five[1] + np.array([[-3, 0], [-1, -1], [1, -1], [3, 0], [1, 1], [-1, 1]])
    dlib[48], dlib[54] = five[3], five[4]
    np.testing.assert_allclose(ffhq_quad(dlib), quad, atol=1e-9)
    with pytest.raises(InputError, match=r"\[5, 2\]"):
        key_points(np.zeros((6, 2)))


def test_transform_maps_and_serialises():
    tr = align_face(np.zeros((300, 400, 3), np.uint8), HAND_5, 64).transform
    restored = AlignTransform.from_json(json.dumps(json.loads(tr.to_json())))
    assert restored == tr
    pts = np.array([[3.0, 7.0], [200.0, 150.0]])
    np.testing.assert_allclose(tr.to_photo(tr.to_aligned(pts)), pts, atol=1e-9)
    # The recipe's centre lands in the middle of the output, at any output size.
    p = key_points(HAND_5)
    eye_avg = (p["eye_left"] + p["eye_right"]) / 2
    centre = eye_avg + 0.1 * ((p["mouth_left"] + p["mouth_right"]) / 2 - eye_avg)
    for size in (64, 1024):
        np.testing.assert_allclose(tr.to_aligned(centre, size), [size / 2 - 0.5] * 2, atol=1e-9)
    with pytest.raises(InputError):
        AlignTransform.from_dict({"kind": "something else"})
    with pytest.raises(InputError):
        AlignTransform.from_dict({**tr.to_dict(), "version": 99})


def _dot_photo(points: np.ndarray, shape=(400, 500), sigma=2.0) -> np.ndarray:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    img = np.full(shape, 30.0)
    for x, y in points:
        img += 200.0 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(np.rint(img), 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


def _centroid(image: np.ndarray, near: np.ndarray, radius: int) -> np.ndarray:
    x0, y0 = np.rint(near).astype(int)
    win = np.clip(image[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1, 0].astype(float) - 30, 0, None)
    ys, xs = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    return np.array([(win * xs).sum() / win.sum(), (win * ys).sum() / win.sum()])


@pytest.mark.parametrize(
    "case, scale, offset, output",
    [("plain", 1.0, (0, 0), 96), ("shrink", 4.0, (275, 353), 64), ("padding", 1.0, (60, -70), 96)],
)
def test_alignment_geometry_is_exact(case, scale, offset, output):
    """Bright dots at the landmarks (plus one off-face) land exactly where the transform says, on every path of
    the recipe: plain crop, integer shrink of a big face, and blur-padding of a face at the photo's border."""
    lm = (HAND_5 - [225, 120]) * scale + [225, 120] + offset
    extra = lm[0] + np.array([70.0, 60.0]) * scale  # a point off the landmarks, on the cheek
    shape = (400, 500) if case != "shrink" else (900, 1000)
    photo = _dot_photo(np.vstack([lm[[0, 1, 3, 4]], extra]), shape, sigma=2.0 * scale)
    aligned = align_face(photo, lm, output)
    if case == "padding":
        assert aligned.image[:3].min() > 0  # the quad leaves the photo at the top: padded, not black
    for p in np.vstack([lm[[0, 1, 3, 4]], extra]):
        expected = aligned.transform.to_aligned(p)
        found = _centroid(aligned.image, expected, radius=max(4, output // 16))
        assert np.abs(found - expected).max() < 0.1, (p, expected, found)


# ---------------------------------------------------------------------------------------------------- paste-back


def test_round_trip_without_detector(astronaut, tmp_path):
    """Align with hand-measured landmarks, paste the aligned image back: untouched outside, close inside."""
    aligned = align_face(astronaut, HAND_5, 256)
    merged = paste_back(astronaut, aligned.image, aligned.transform)
    outside, core = _outside_and_core(aligned.transform, astronaut.shape)
    assert outside.sum() > 0.7 * outside.size and (merged[outside] == astronaut[outside]).all()
    assert _psnr(merged[core], astronaut[core]) > 33.0
    # From saved files and metadata, atomically written.
    Image.fromarray(astronaut).save(tmp_path / "photo.png")
    Image.fromarray(aligned.image).save(tmp_path / "aligned.png")
    again = paste_back_to_file(tmp_path / "merged.png", tmp_path / "photo.png", tmp_path / "aligned.png",
                               json.loads(aligned.transform.to_json()))  # fmt: skip
    np.testing.assert_array_equal(again, merged)
    np.testing.assert_array_equal(load_photo(tmp_path / "merged.png"), merged)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned.png", "merged.png", "photo.png"]


def test_paste_back_options_and_errors(astronaut):
    aligned = align_face(astronaut, HAND_5, 64)
    tr = aligned.transform
    white = np.full((128, 128, 3), 255, np.uint8)  # any square size: the transform is scale-free
    # An all-zero extra mask pastes nothing; the default feathering ramps from 0 to 1.
    np.testing.assert_array_equal(paste_back(astronaut, white, tr, mask=np.zeros((32, 32))), astronaut)
    weights, _ = paste_mask(tr)
    assert weights.min() == 0 and weights.max() == 1 and 0 < ((weights > 0) & (weights < 1)).mean() < 0.5
    tensor = torch.ones(1, 3, 64, 64)  # [-1, 1] image tensors are accepted
    merged = paste_back(astronaut, tensor, tr, feather=0.0)
    outside, core = _outside_and_core(tr, astronaut.shape, feather=0.0)
    assert (merged[core] == 255).all() and (merged[outside] == astronaut[outside]).all()
    with pytest.raises(InputError, match="original photo"):
        paste_back(astronaut[:500], aligned.image, tr)
    with pytest.raises(InputError, match="square"):
        paste_back(astronaut, aligned.image[:60], tr)
    with pytest.raises(InputError):
        paste_mask(tr, erode=0.3, feather=0.3)


# ---------------------------------------------------------------------------------------------------- real weights


@pytest.fixture(scope="module")
def detector():
    return load_mtcnn()


@pytest.mark.real_weights
def test_astronaut_landmarks_and_canonical_alignment(astronaut, detector):
    faces = detect_faces(astronaut, detector)
    assert len(faces) == 1 and faces[0].score > 0.99
    lm = faces[0].landmarks
    assert np.abs(lm[:2] - HAND_EYES).max() < 3.0
    assert np.abs((lm[3] + lm[4]) / 2 - HAND_MOUTH).max() < 3.0

    aligned = align_face(astronaut, faces[0], 1024)
    tr = aligned.transform
    canon = canonical_points(tr)
    # The recipe's fixed layout for this face (2 |eye_to_eye| > 1.8 |eye_to_mouth|): eyes S/4 = 256 px apart,
    # centred on x = 511.5, about level; eye_avg + 0.1 * eye_to_mouth at the centre (511.5, 511.5).
    assert abs(np.hypot(*(canon["eye_right"] - canon["eye_left"])) - 256.0) < 1e-6
    eye_avg = (canon["eye_left"] + canon["eye_right"]) / 2
    np.testing.assert_allclose(eye_avg + 0.1 * (canon["mouth"] - eye_avg), [511.5, 511.5], atol=1e-6)
    np.testing.assert_allclose(canon["eye_left"], [383.6, 488.9], atol=0.5)
    np.testing.assert_allclose(canon["eye_right"], [639.6, 488.0], atol=0.5)
    np.testing.assert_allclose(canon["mouth"], [510.6, 718.9], atol=0.5)
    # The real eyes and mouth (hand-measured) land near those positions: < 15 px of 1024 (2.5 photo px).
    for name, point in (("eye_left", HAND_EYES[0]), ("eye_right", HAND_EYES[1]), ("mouth", HAND_MOUTH)):
        assert np.hypot(*(tr.to_aligned(point) - canon[name])) < 15.0, name
    # Detecting again in the aligned image, at the face's size in the photo (same conditions as the first
    # detection), finds them within 6 px of 1024.
    side = round(tr.scale * 1024)
    small = np.asarray(Image.fromarray(aligned.image).resize((side, side), Image.Resampling.LANCZOS))
    again = (detect_faces(small, detector)[0].landmarks + 0.5) * 1024 / side - 0.5
    found = {"eye_left": again[0], "eye_right": again[1], "mouth": (again[3] + again[4]) / 2}
    for name in canon:
        assert np.hypot(*(found[name] - canon[name])) < 6.0, (name, found[name], canon[name])

    # Unedited round trip: untouched outside the pasted square, close inside it (37.7 dB measured).
    merged = paste_back(astronaut, aligned.image, tr)
    outside, core = _outside_and_core(tr, astronaut.shape)
    assert (merged[outside] == astronaut[outside]).all()
    assert _psnr(merged[core], astronaut[core]) > 35.0


@pytest.mark.real_weights
def test_small_rotated_off_centre_face_is_tracked(astronaut, detector):
    reference = detect_faces(astronaut, detector)[0]
    canvas, forward = _similarity_canvas(astronaut, 0.45, 7.0, (640.0, 380.0), (1000, 700))
    faces = detect_faces(canvas, detector)
    face = faces[0]  # the real face; a doubtful (score ~0.7) box on the suit's collar ring ranks after it
    assert face.score > 0.99 and all(f.score < 0.9 for f in faces[1:])
    assert np.abs(face.landmarks - forward(reference.landmarks)).max() < 2.0

    aligned = align_face(canvas, face, 256)
    ref_tr = align_face(astronaut, reference, 256).transform
    np.testing.assert_allclose(aligned.transform.quad, forward(np.asarray(ref_tr.quad)), atol=3.0)
    assert abs(aligned.transform.angle_degrees - ref_tr.angle_degrees - 7.0) < 2.0
    assert abs(aligned.transform.scale / ref_tr.scale - 0.45) < 0.45 * 0.03

    merged = paste_back(canvas, aligned.image, aligned.transform)
    outside, core = _outside_and_core(aligned.transform, canvas.shape)
    assert (merged[outside] == canvas[outside]).all()
    assert _psnr(merged[core], canvas[core]) > 28.0


@pytest.mark.real_weights
def test_no_face_is_a_clear_error(detector):
    from skimage import data

    for photo in (np.full((240, 320, 3), 128, np.uint8), data.coffee()):
        assert detect_faces(photo, detector) == []
        with pytest.raises(InputError, match="no face found in coffee.png"):
            align_photo(photo, 64, detector=detector, name="coffee.png")


@pytest.mark.real_weights
def test_several_faces_largest_first_and_chosen_by_index(astronaut, detector):
    group = np.full((600, 900, 3), 200, np.uint8)
    group[40:552, 0:512] = astronaut
    group[100:400, 560:860] = np.asarray(Image.fromarray(astronaut).resize((300, 300), Image.Resampling.LANCZOS))
    faces = detect_faces(group, detector)
    assert len(faces) == 2 and faces[0].area > faces[1].area and min(f.score for f in faces) > 0.99
    assert faces[0].box[2] < 512 < faces[1].box[0]
    second = align_photo(group, 64, face_index=1, detector=detector).transform
    assert np.asarray(second.quad)[:, 0].min() > 512
    with pytest.raises(InputError, match="2 face"):
        select_face(faces, 2)
