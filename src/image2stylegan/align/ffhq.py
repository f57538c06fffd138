"""FFHQ alignment: crop a photo the way NVIDIA cropped the FFHQ training faces, and remember how.

The recipe is ``recreate_aligned_images`` of NVlabs/ffhq-dataset (``download_ffhq.py``), re-written here:

1. From the landmarks: ``eye_avg`` (midpoint of the eye centres), ``eye_to_eye`` (left -> right eye),
   ``eye_to_mouth`` (``eye_avg`` -> midpoint of the mouth corners).
2. Oriented square ("quad"): ``x = eye_to_eye - rot90(eye_to_mouth)`` (``flipud(v) * [-1, 1]``), normalised, then
   scaled to ``max(2.0 * |eye_to_eye|, 1.8 * |eye_to_mouth|)``; ``y = rot90(x)``; centre
   ``c = eye_avg + 0.1 * eye_to_mouth``; corners ``c - x - y`` (top-left), ``c - x + y`` (bottom-left),
   ``c + x + y`` (bottom-right), ``c + x - y`` (top-right). Side ``qsize = 2 |x|``.
3. Shrink the photo by an integer factor when ``qsize`` is over 4x the output size (speed, anti-aliasing).
4. Crop to the quad's bounding box plus a border of ``max(rint(0.1 qsize), 3)``.
5. If the quad still leaves the image by more than ``border - 4`` px: reflection-pad by at least ``rint(0.3 qsize)``,
   blur the padding towards a Gaussian (sigma ``0.02 qsize``) and fade it to the median colour, so the generator
   sees plausible background instead of mirrored faces or black.
6. Resample the quad to a ``transform_size`` square (bilinear), then Lanczos down to the output size
   (the recipe: 4096 -> 1024; here ``transform_size`` defaults to 4x the output size).

Landmarks: the recipe is defined on dlib's 68 points (eye centre = mean of the 6 points of each eye, mouth corners =
points 48 and 54). MTCNN gives 5 points: its eye points (roughly the pupils) are used directly as the eye centres,
and its two mouth corners stand in for points 48 and 54. The centre of dlib's eye contour and MTCNN's eye point are
not the same definition, nor are the two models' mouth corners, so an MTCNN-aligned crop can be shifted or scaled
slightly against a dlib-aligned one of the same photo (not measured here: dlib is not a dependency). Both landmark
layouts are accepted by :func:`ffhq_quad`, so dlib points can be passed in when available.

Two small departures, both so that the stored transform is *exact* (paste-back relies on it): geometry is carried
in pixel-edge coordinates from the start (the recipe adds the +0.5 only at the end, after dividing by the shrink
factor), and the shrink scales the quad by the actual size ratio of the resized image per axis (the recipe divides
by the integer factor although the resized size was rounded).

Canonical positions. The whole map photo -> aligned image is a similarity that sends the quad onto the output
square, so ``c`` lands at the centre ``(S/2 - 0.5, S/2 - 0.5)`` (pixel-centre coordinates). For an upright,
symmetric face whose eye distance ``d`` dominates (``2 d >= 1.8 m``, ``m`` = eye-to-mouth distance, i.e. ``m/d <=
1.11``, true of most frontal faces), the eyes land ``S/4`` apart, level, at
``x = S/2 - 0.5 -+ S/8`` and ``y = S/2 - 0.5 - 0.1 * (S/4) * (m/d)``, the mouth midpoint at
``(S/2 - 0.5, S/2 - 0.5 + 0.9 * (S/4) * (m/d))``. For S = 1024 and m/d = 1: eyes (383.5, 485.9) and (639.5, 485.9),
mouth (511.5, 741.9). :meth:`AlignTransform.to_aligned` gives the exact positions for a given face.

Coordinates are ``(x, y)`` in pixel-centre convention throughout (see :mod:`image2stylegan.align.photo`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from ..errors import InputError
from .photo import as_rgb_uint8

__all__ = [
    "AlignTransform",
    "AlignedFace",
    "align_face",
    "align_photo",
    "canonical_points",
    "ffhq_quad",
    "key_points",
]

TRANSFORM_VERSION = 1


# --------------------------------------------------------------------------------------------------------------------
# Landmarks -> quad


def key_points(landmarks: np.ndarray | Sequence[Sequence[float]] | Any) -> dict[str, np.ndarray]:
    """The four points the recipe uses, from 5 MTCNN points, 68 dlib points, or a :class:`~.mtcnn.Face`.

    Returns:
        ``{"eye_left", "eye_right", "mouth_left", "mouth_right"}`` -> float64 ``[2]`` ``(x, y)``; "left" is the
        image's left.

    Raises:
        InputError: neither a ``[5, 2]`` nor a ``[68, 2]`` array of finite numbers.
    """
    lm = np.asarray(getattr(landmarks, "landmarks", landmarks), dtype=np.float64)
    if lm.ndim != 2 or lm.shape[1] != 2 or lm.shape[0] not in (5, 68) or not np.isfinite(lm).all():
        raise InputError(f"landmarks must be a finite [5, 2] (MTCNN) or [68, 2] (dlib) array, got {list(lm.shape)}")
    if lm.shape[0] == 68:  # dlib / iBUG-300W layout, as the FFHQ recipe
        return {"eye_left": lm[36:42].mean(0), "eye_right": lm[42:48].mean(0),
                "mouth_left": lm[48], "mouth_right": lm[54]}  # fmt: skip
    return {"eye_left": lm[0], "eye_right": lm[1], "mouth_left": lm[3], "mouth_right": lm[4]}


def ffhq_quad(landmarks: np.ndarray | Any) -> np.ndarray:
    """The recipe's oriented square: float64 ``[4, 2]`` corners (top-left, bottom-left, bottom-right, top-right),
    pixel-centre ``(x, y)`` photo coordinates. ``landmarks`` as for :func:`key_points`."""
    p = key_points(landmarks)
    eye_avg = (p["eye_left"] + p["eye_right"]) * 0.5
    eye_to_eye = p["eye_right"] - p["eye_left"]
    eye_to_mouth = (p["mouth_left"] + p["mouth_right"]) * 0.5 - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if not norm > 1e-6:
        raise InputError("degenerate landmarks: the eyes and mouth coincide")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


# --------------------------------------------------------------------------------------------------------------------
# The transform


@dataclass(frozen=True)
class AlignTransform:
    """The map between a photo and its aligned square, enough to redo or invert the alignment from saved metadata.

    The quad's corners are the outer corners of the aligned square, so (pixel-centre coordinates) aligned pixel
    ``(a, b)`` of an image of side ``S`` shows photo point
    ``quad[0] + (a + 0.5) / S * (quad[3] - quad[0]) + (b + 0.5) / S * (quad[1] - quad[0])``. The map is a
    similarity (rotation, uniform scale, shift) and holds for any side ``S``, e.g. a 256 px render of a 1024 px
    alignment.

    Attributes:
        quad: corners (top-left, bottom-left, bottom-right, top-right) in photo pixel-centre ``(x, y)``.
        photo_size: ``(width, height)`` of the photo.
        output_size: side of the aligned image it produced.
        landmarks: the points it was computed from (photo coordinates), 5 (MTCNN order) or 68 (dlib).
        version: format version of :meth:`to_dict`.
    """

    quad: tuple[tuple[float, float], ...]
    photo_size: tuple[int, int]
    output_size: int
    landmarks: tuple[tuple[float, float], ...] = ()
    version: int = TRANSFORM_VERSION

    def __post_init__(self) -> None:
        q = np.asarray(self.quad, dtype=np.float64)
        if q.shape != (4, 2) or not np.isfinite(q).all():
            raise InputError(f"alignment quad must be 4 finite (x, y) corners, got {q.shape}")
        (ax, ay), (bx, by) = q[3] - q[0], q[1] - q[0]
        if abs(ax * by - ay * bx) < 1e-9:
            raise InputError("alignment quad is degenerate (zero area)")
        if self.output_size <= 0 or min(self.photo_size) <= 0:
            raise InputError("alignment transform needs a positive output size and photo size")

    # -- matrices (3x3, homogeneous, acting on column vectors (x, y, 1)) -----------------------------------------
    def aligned_to_photo_matrix(self, size: int | None = None) -> np.ndarray:
        """Aligned pixel-centre coords (image of side ``size``, default ``output_size``) -> photo pixel-centre."""
        s = float(size or self.output_size)
        q = np.asarray(self.quad, dtype=np.float64)
        ex, ey = (q[3] - q[0]) / s, (q[1] - q[0]) / s  # photo displacement per aligned pixel along a and b
        origin = q[0] + 0.5 * (ex + ey)  # photo position of aligned pixel (0, 0)'s centre
        return np.array([[ex[0], ey[0], origin[0]], [ex[1], ey[1], origin[1]], [0.0, 0.0, 1.0]])

    def photo_to_aligned_matrix(self, size: int | None = None) -> np.ndarray:
        """Inverse of :meth:`aligned_to_photo_matrix`."""
        return np.linalg.inv(self.aligned_to_photo_matrix(size))

    def to_photo(self, points: np.ndarray, size: int | None = None) -> np.ndarray:
        """``[..., 2]`` aligned ``(x, y)`` -> photo ``(x, y)``."""
        return _apply(self.aligned_to_photo_matrix(size), points)

    def to_aligned(self, points: np.ndarray, size: int | None = None) -> np.ndarray:
        """``[..., 2]`` photo ``(x, y)`` -> aligned ``(x, y)``."""
        return _apply(self.photo_to_aligned_matrix(size), points)

    @property
    def scale(self) -> float:
        """Photo pixels per aligned pixel (at ``output_size``)."""
        q = np.asarray(self.quad)
        return float(np.hypot(*(q[3] - q[0]))) / self.output_size

    @property
    def angle_degrees(self) -> float:
        """Rotation of the face in the photo: angle of the quad's top edge, clockwise positive (y points down)."""
        q = np.asarray(self.quad)
        return math.degrees(math.atan2(q[3, 1] - q[0, 1], q[3, 0] - q[0, 0]))

    # -- serialisation ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (plain lists and numbers); :meth:`from_dict` restores an equal transform."""
        return {
            "kind": "ffhq-quad",
            "version": self.version,
            "coordinates": "pixel centres, (x, y); quad = top-left, bottom-left, bottom-right, top-right",
            "quad": [[float(x), float(y)] for x, y in self.quad],
            "photo_size": [int(self.photo_size[0]), int(self.photo_size[1])],
            "output_size": int(self.output_size),
            "landmarks": [[float(x), float(y)] for x, y in self.landmarks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlignTransform:
        """Inverse of :meth:`to_dict`.

        Raises:
            InputError: not an alignment transform, or a newer format version.
        """
        try:
            if data.get("kind") != "ffhq-quad":
                raise InputError(f"not an FFHQ alignment transform (kind {data.get('kind')!r})")
            version = int(data.get("version", 0))
            if version > TRANSFORM_VERSION:
                raise InputError(f"alignment transform version {version} is newer than this library's")
            return cls(
                quad=tuple((float(x), float(y)) for x, y in data["quad"]),
                photo_size=(int(data["photo_size"][0]), int(data["photo_size"][1])),
                output_size=int(data["output_size"]),
                landmarks=tuple((float(x), float(y)) for x, y in data.get("landmarks", [])),
                version=version,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"malformed alignment transform: {exc!r}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AlignTransform:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # deeply nested JSON recurses
            raise InputError(f"alignment transform is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InputError("alignment transform must be a JSON object")
        return cls.from_dict(data)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def canonical_points(transform: AlignTransform, size: int | None = None) -> dict[str, np.ndarray]:
    """Where the recipe puts this face's eye centres and mouth midpoint in the aligned image (pixel-centre
    ``(x, y)``, image of side ``size``): ``{"eye_left", "eye_right", "mouth"}``."""
    p = key_points(np.asarray(transform.landmarks))
    mouth = (p["mouth_left"] + p["mouth_right"]) / 2
    return {k: transform.to_aligned(v, size) for k, v in
            (("eye_left", p["eye_left"]), ("eye_right", p["eye_right"]), ("mouth", mouth))}  # fmt: skip


# --------------------------------------------------------------------------------------------------------------------
# Alignment


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """An aligned face: ``image`` uint8 ``[S, S, 3]`` and the ``transform`` back to the photo."""

    image: np.ndarray
    transform: AlignTransform


def _blur_pad(img: np.ndarray, pad: tuple[int, int, int, int], qsize: float) -> np.ndarray:
    """Reflection-pad uint8 ``img`` by ``pad`` = (left, top, right, bottom) and fade the padding, as the recipe:
    towards a Gaussian blur (sigma ``0.02 qsize``; fully blurred in the padding, fading out over a third of a pad
    width inside the photo) and towards the median colour (from nothing at the photo's edge to fully at the outer
    edge). Returns uint8.

    Pillow's ``GaussianBlur`` (a box-filter approximation, edge-extended) replaces scipy's exact filter: scipy is
    not a dependency, and the blurred band only needs to look like out-of-focus background.
    """
    left, top, right, bottom = pad
    padded = np.pad(img, ((top, bottom), (left, right), (0, 0)), mode="reflect").astype(np.float32)
    h, w, _ = padded.shape
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    # The recipe's ramp: 0 on the photo's border, 1 at the outer edge of the padding, negative inside the photo.
    with np.errstate(divide="ignore", invalid="ignore"):
        fx = np.minimum(xs / max(left, 1), (w - 1 - xs) / max(right, 1))
        fy = np.minimum(ys / max(top, 1), (h - 1 - ys) / max(bottom, 1))
    mask = np.maximum(1.0 - fx, 1.0 - fy)[:, :, None]
    blurred = np.asarray(
        Image.fromarray(padded.astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius=qsize * 0.02))
    ).astype(np.float32)
    padded += (blurred - padded) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    padded += (np.median(padded, axis=(0, 1)) - padded) * np.clip(mask, 0.0, 1.0)
    return np.clip(np.rint(padded), 0, 255).astype(np.uint8)


def align_face(
    photo: np.ndarray | Image.Image,
    landmarks: np.ndarray | Any,
    output_size: int = 1024,
    *,
    transform_size: int | None = None,
    enable_padding: bool = True,
) -> AlignedFace:
    """FFHQ-align one face of ``photo``.

    Args:
        photo: uint8 ``[H, W, 3]`` RGB (or Pillow), the full-resolution photo.
        landmarks: ``[5, 2]`` MTCNN points, ``[68, 2]`` dlib points, or a :class:`~.mtcnn.Face`; photo coordinates.
        output_size: side of the aligned image (the generator's resolution).
        transform_size: side of the intermediate bilinear resampling (default ``4 * output_size``, the recipe's
            4096 for 1024); Lanczos then brings it to ``output_size``.
        enable_padding: blur-pad where the quad leaves the photo (the recipe's default); else that area is black.

    Returns:
        :class:`AlignedFace` with the uint8 ``[output_size, output_size, 3]`` image and its transform.
    """
    rgb = as_rgb_uint8(photo, "photo")
    if not isinstance(output_size, int) or output_size <= 0:
        raise InputError(f"output_size must be a positive int, got {output_size!r}")
    transform_size = int(transform_size or 4 * output_size)
    quad = ffhq_quad(landmarks)
    kp = np.asarray(getattr(landmarks, "landmarks", landmarks), dtype=np.float64)
    height, width = rgb.shape[:2]
    transform = AlignTransform(
        quad=tuple(map(tuple, quad.tolist())), photo_size=(width, height), output_size=output_size,
        landmarks=tuple(map(tuple, kp.tolist())),
    )  # fmt: skip

    img = Image.fromarray(rgb)
    edge = quad + 0.5  # Pillow's edge coordinates from here on
    qsize = float(np.hypot(*(quad[3] - quad[0])))

    # Shrink: integer factor as the recipe; quad scaled by the real size ratio so the geometry stays exact.
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (max(int(np.rint(width / shrink)), 1), max(int(np.rint(height / shrink)), 1))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        ratio = np.array([rsize[0] / width, rsize[1] / height])
        edge = edge * ratio
        qsize *= float(ratio.mean())

    # Crop to the quad's bounding box plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (
        max(int(np.floor(edge[:, 0].min())) - border, 0), max(int(np.floor(edge[:, 1].min())) - border, 0),
        min(int(np.ceil(edge[:, 0].max())) + border, img.size[0]),
        min(int(np.ceil(edge[:, 1].max())) + border, img.size[1]),
    )  # fmt: skip
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        edge = edge - crop[:2]

    # Pad where the quad (plus border) still leaves the image.
    lo, hi = np.floor(edge.min(0)).astype(int), np.ceil(edge.max(0)).astype(int)
    pad = (max(-lo[0] + border, 0), max(-lo[1] + border, 0),
           max(hi[0] - img.size[0] + border, 0), max(hi[1] - img.size[1] + border, 0))  # fmt: skip
    if enable_padding and max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3))) for p in pad)
        img = Image.fromarray(_blur_pad(np.asarray(img), pad, qsize))
        edge = edge + pad[:2]

    out = img.transform(
        (transform_size, transform_size), Image.Transform.QUAD, tuple(edge.flatten()), Image.Resampling.BILINEAR
    )
    if output_size != transform_size:
        out = out.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return AlignedFace(np.ascontiguousarray(np.asarray(out)), transform)


def align_photo(
    photo: np.ndarray | Image.Image,
    output_size: int = 1024,
    *,
    face_index: int = 0,
    detector: Any = None,
    name: str = "the photo",
    **align_options: Any,
) -> AlignedFace:
    """Detect faces with MTCNN, take face ``face_index`` (0 = largest) and FFHQ-align it.

    Raises:
        InputError: no face, or ``face_index`` out of range (the message gives the number of faces found).
        WeightsNotFoundError: the MTCNN weights are not fetched.
    """
    from .mtcnn import detect_faces, select_face

    rgb = as_rgb_uint8(photo, name)
    face = select_face(detect_faces(rgb, detector), face_index, name=name)
    return align_face(rgb, face, output_size, **align_options)
