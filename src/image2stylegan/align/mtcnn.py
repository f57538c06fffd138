"""MTCNN face detector (Zhang et al., "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional
Networks", 2016) in plain PyTorch: three small networks and the detection cascade, giving boxes and 5 landmarks.

Weights are the P/R/O-Net state_dicts shipped in the wheel ``facenet-pytorch==2.6.0`` (artifact ``mtcnn`` of
:mod:`image2stylegan.weights`); they are read with ``torch.load(weights_only=True)`` and loaded strictly. The layer
names below are those of the state_dicts. The package itself is never imported.

Facts the cascade depends on (from the original model and its ports):

* Input normalisation ``(pixel - 127.5) * 0.0078125`` (i.e. / 128) on RGB values in [0, 255].
* The original Caffe nets were trained on *transposed* images (MATLAB is column-major). The converted conv kernels
  are already transposed back, so images go in the ordinary ``[N, C, H, W]`` layout, but the fully connected layers
  of R-Net and O-Net still expect their input flattened in ``(W, H, C)`` order: hence :func:`_flatten_transposed`.
* P-Net is fully convolutional: one output cell per 12x12 window, stride 2. Outputs are box offsets
  ``(dx0, dy0, dx1, dy1)`` relative to the window size and a 2-way softmax (index 1 = face).
* O-Net also outputs 10 landmark numbers: the five x's, then the five y's, relative to its (square) input box.
  The five points are, in order: the eye on the image's left (the subject's right eye), the eye on the image's right,
  the nose tip, the mouth corner on the image's left, the mouth corner on the image's right.
* Defaults: image pyramid with scale factor 0.709 starting at 12 / min_face_size (min face 20 px), score thresholds
  0.6 / 0.7 / 0.7, NMS at IoU 0.5 (per pyramid level) and 0.7 (all levels; after R-Net), and 0.7 on
  intersection-over-minimum after O-Net.

Coordinates: boxes are ``(left, top, right, bottom)`` in pixel *edge* coordinates (a box ``[l, r)`` covers pixel
columns ``floor(l) .. floor(r) - 1``), landmarks ``(x, y)`` in pixel-centre coordinates (see
:mod:`image2stylegan.align.photo`). The original MATLAB code mixes 1-based inclusive boxes with 0-based points; here
they are converted once (and box widths are ``right - left`` everywhere, where the original uses ``w - 1`` in one
step), so numbers agree with facenet-pytorch's to within a pixel (its boxes are 1-based). Deliberate differences
from facenet-pytorch: windows that stick out of the image are zero-padded (as in the original code), not clipped and
stretched, so landmarks of faces at the border stay in proportion; resampling is average pooling written with
cumulative sums, which works on any device (``adaptive_avg_pool2d`` refuses non-divisible sizes on Apple's MPS);
NMS is a plain greedy loop (no torchvision); and faces are ordered confident-first, then largest first
(:func:`order_faces`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import InputError, WeightsFormatError
from .photo import as_rgb_uint8

__all__ = [
    "LANDMARK_NAMES",
    "MTCNN",
    "Face",
    "ONet",
    "PNet",
    "RNet",
    "detect_faces",
    "load_mtcnn",
    "load_state_dict_strict",
    "nms",
    "order_faces",
    "select_face",
]

LANDMARK_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")  # "left" = the image's left
ARTIFACT = "mtcnn"
_NORM_MEAN, _NORM_SCALE = 127.5, 0.0078125


# --------------------------------------------------------------------------------------------------------------------
# Networks


def _flatten_transposed(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, W*H*C]`` in (W, H, C) order, the order the Caffe-trained dense layers expect."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class PNet(nn.Module):
    """Proposal net: fully convolutional, ``[N, 3, H, W]`` -> (offsets ``[N, 4, H', W']``, face prob ``[N, H', W']``).

    ``H' = ceil((H - 2) / 2) - 4`` (a 3x3 conv, a 2x2/2 ceil-mode max-pool, two 3x3 convs): one cell per 12x12 window
    at stride 2.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)  # face / not-face logits
        self.conv4_2 = nn.Conv2d(32, 4, 1)  # box offsets

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)[:, 1]


class RNet(nn.Module):
    """Refinement net: ``[N, 3, 24, 24]`` -> (offsets ``[N, 4]``, face prob ``[N]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)  # 576 = 3 * 3 * 64
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_flatten_transposed(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)[:, 1]


class ONet(nn.Module):
    """Output net: ``[N, 3, 48, 48]`` -> (offsets ``[N, 4]``, landmarks ``[N, 10]`` (5 x's, then 5 y's),
    face prob ``[N]``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)  # 1152 = 3 * 3 * 128
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_flatten_transposed(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)[:, 1]


def load_state_dict_strict(net: nn.Module, state: object, source: str) -> None:
    """Load ``state`` into ``net``, refusing anything but exactly the expected keys, shapes and float tensors.

    Raises:
        WeightsFormatError: naming the missing / unexpected keys or the first mismatching shape, and ``source``.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsFormatError(f"{source}: expected a state_dict of tensors, got {type(state).__name__}")
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        parts = ([f"missing keys {missing}"] if missing else []) + ([f"unexpected keys {extra}"] if extra else [])
        raise WeightsFormatError(f"{source}: not an MTCNN {type(net).__name__} state_dict: {'; '.join(parts)}")
    for key, ref in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape) or not got.is_floating_point():
            raise WeightsFormatError(
                f"{source}: {key} has shape {list(got.shape)} ({got.dtype}), expected {list(ref.shape)} (float)"
            )
    net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)


# --------------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        box: ``(left, top, right, bottom)``, pixel edge coordinates in the photo (may extend past its borders).
        score: O-Net face probability in (0.7, 1] with default thresholds.
        landmarks: float64 ``[5, 2]`` ``(x, y)`` pixel-centre coordinates, in :data:`LANDMARK_NAMES` order.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: ``{"box": [4 floats], "score": float, "landmarks": {name: [x, y]}}``."""
        return {
            "box": [round(float(v), 3) for v in self.box],
            "score": round(float(self.score), 6),
            "landmarks": {n: [round(float(c), 3) for c in p] for n, p in zip(LANDMARK_NAMES, self.landmarks)},
        }


# --------------------------------------------------------------------------------------------------------------------
# Cascade helpers (all boxes: float64 numpy [K, 4] as (l, t, r, b) in edge coordinates)


def _pool_axis(x: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    """Average-pool ``x`` along ``dim`` to ``size`` with adaptive-pooling bins (``floor(i*n/size)`` to
    ``ceil((i+1)*n/size)``, i.e. ``F.interpolate(mode="area")``), via cumulative sums so it runs on every device."""
    n = x.shape[dim]
    i = torch.arange(size, device=x.device)
    start = (i * n) // size
    end = ((i + 1) * n + size - 1) // size
    zero_shape = list(x.shape)
    zero_shape[dim] = 1
    csum = torch.cat([x.new_zeros(zero_shape), x.cumsum(dim)], dim)
    count_shape = [1] * x.ndim
    count_shape[dim] = size
    counts = (end - start).to(x.dtype).reshape(count_shape)
    return (csum.index_select(dim, end) - csum.index_select(dim, start)) / counts


def area_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, C, h, w]`` by area averaging (downscaling; upscaling repeats pixels).

    Inputs should be roughly zero-centred (as normalised images are) to keep float32 cumulative sums accurate.
    """
    return _pool_axis(_pool_axis(x, size[0], 2), size[1], 3)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, highest score first.

    Args:
        boxes: ``[K, 4]`` (l, t, r, b). scores: ``[K]``.
        threshold: a box is dropped when its overlap with an already kept box exceeds this.
        mode: ``"union"`` (intersection over union) or ``"min"`` (intersection over the smaller area; O-Net's final
            step, which removes a small box lying inside a bigger one).
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    order = np.argsort(-scores, kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        iw = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        ih = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = iw * ih
        denom = np.minimum(areas[i], areas[rest]) if mode == "min" else areas[i] + areas[rest] - inter
        overlap = np.divide(inter, denom, out=np.zeros_like(inter), where=denom > 0)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _np64(t: torch.Tensor) -> np.ndarray:
    """To float64 numpy *after* leaving the device: MPS has no float64."""
    return t.detach().cpu().numpy().astype(np.float64)


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply the nets' box regression: each edge moves by its offset times the box's width / height."""
    size = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]] * 2, axis=1)
    return boxes + offsets * size


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square of side max(width, height) about its centre (R-Net / O-Net take square crops)."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    left, top = boxes[:, 0] + (w - side) / 2, boxes[:, 1] + (h - side) / 2
    return np.stack([left, top, left + side, top + side], axis=1)


def _crops(image: torch.Tensor, boxes: np.ndarray, size: int) -> torch.Tensor:
    """Resample each box of the normalised ``[1, 3, H, W]`` image to ``[K, 3, size, size]``.

    The box covers pixels ``floor(l) .. floor(r) - 1`` (likewise rows); parts outside the image read as black
    (normalised ``-127.5 / 128``), as in the original MTCNN code.
    """
    _, _, height, width = image.shape
    black = (0.0 - _NORM_MEAN) * _NORM_SCALE
    out = []
    for left, top, right, bottom in np.floor(boxes).astype(np.int64):
        w, h = max(int(right - left), 1), max(int(bottom - top), 1)
        x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + w, width), min(top + h, height)
        if (x0, y0, x1, y1) == (left, top, left + w, top + h):
            patch = image[:, :, y0:y1, x0:x1]  # inside the image: a view, no copy
        else:
            patch = image.new_full((1, 3, h, w), black)
            if x1 > x0 and y1 > y0:
                patch[:, :, y0 - top : y1 - top, x0 - left : x1 - left] = image[:, :, y0:y1, x0:x1]
        out.append(area_resize(patch, (size, size)))
    return torch.cat(out, dim=0)


def _pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """Scales at which P-Net's 12 px window sees faces of ``min_face_size`` px and up, down to a 12 px image."""
    scale = 12.0 / min_face_size
    scales = []
    while min(height, width) * scale >= 12:
        scales.append(scale)
        scale *= factor
    return scales


# --------------------------------------------------------------------------------------------------------------------
# Detector


class MTCNN(nn.Module):
    """The three nets plus :meth:`detect`. Create with :func:`load_mtcnn` (or ``MTCNN()`` for random weights);
    move with ``.to(device)``: detection runs on the device of the parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()
        self.eval()
        self.requires_grad_(False)

    @torch.no_grad()
    def detect(
        self,
        image: np.ndarray | Image.Image,
        *,
        min_face_size: float = 20.0,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
    ) -> list[Face]:
        """All faces in ``image``: confident ones (score >= 0.9) largest first, then doubtful ones largest first.

        Args:
            image: uint8 ``[H, W, 3]`` RGB array or a Pillow image (see :func:`as_rgb_uint8`).
            min_face_size: smallest face side searched for, in pixels; larger is faster.
            thresholds: minimum face probability after P-Net, R-Net and O-Net.
            factor: ratio between successive pyramid scales (< 1).

        Returns:
            A possibly empty list of :class:`Face`, in :func:`order_faces` order (confident faces largest first).
        """
        if not 0.0 < factor < 1.0:
            raise InputError(f"pyramid factor must be in (0, 1), got {factor}")
        if min_face_size <= 0 or len(thresholds) != 3:
            raise InputError("min_face_size must be positive and thresholds must have 3 values")
        rgb = as_rgb_uint8(image)
        device = next(self.parameters()).device
        img = torch.tensor(rgb, device=device).permute(2, 0, 1)[None].float()  # a copy: Pillow arrays are read-only
        img = (img - _NORM_MEAN) * _NORM_SCALE  # [1, 3, H, W]
        height, width = rgb.shape[:2]

        boxes, scores = self._stage1(img, _pyramid_scales(height, width, min_face_size, factor), thresholds[0])
        if len(boxes):
            boxes, scores = self._stage2(img, boxes, thresholds[1])
        faces: list[Face] = []
        if len(boxes):
            boxes, scores, points = self._stage3(img, boxes, thresholds[2])
            faces = [Face(tuple(map(float, b)), float(s), p) for b, s, p in zip(boxes, scores, points)]
        return order_faces(faces)

    def _stage1(self, img: torch.Tensor, scales: list[float], threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """P-Net over the pyramid: candidate windows, regressed and squared."""
        _, _, height, width = img.shape
        all_boxes, all_scores = [], []
        for scale in scales:
            # int(x * s + 1): the level sizes of the reference implementations.
            level = area_resize(img, (int(height * scale + 1), int(width * scale + 1)))
            offsets, prob = self.pnet(level)
            rows, cols = torch.nonzero(prob[0] >= threshold, as_tuple=True)
            if rows.numel() == 0:
                continue
            score = _np64(prob[0, rows, cols])
            reg = _np64(offsets[0, :, rows, cols].T)
            cell = _np64(torch.stack([cols, rows], dim=1))  # (x, y) of each 12x12 window, stride 2
            # Window back in photo pixels. The MATLAB original has the 1-based inclusive box
            # [floor((2c + 1) / s), floor((2c + 12) / s)]; in 0-based edge coordinates that is:
            lt = np.floor((2 * cell + 1) / scale) - 1
            rb = np.floor((2 * cell + 12) / scale)
            boxes = np.concatenate([lt, rb], axis=1)
            keep = nms(boxes, score, 0.5)
            all_boxes.append(np.concatenate([boxes[keep], reg[keep]], axis=1))
            all_scores.append(score[keep])
        if not all_boxes:
            return np.zeros((0, 4)), np.zeros(0)
        cand, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        keep = nms(cand[:, :4], scores, 0.7)
        cand, scores = cand[keep], scores[keep]
        return _square(_regress(cand[:, :4], cand[:, 4:])), scores

    def _stage2(self, img: torch.Tensor, boxes: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """R-Net on 24x24 crops: filter, suppress, regress, square."""
        offsets, prob = self._batched(self.rnet, _crops(img, boxes, 24))
        score, reg = _np64(prob), _np64(offsets)
        ok = score > threshold
        boxes, score, reg = boxes[ok], score[ok], reg[ok]
        keep = nms(boxes, score, 0.7)
        return _square(_regress(boxes[keep], reg[keep])), score[keep]

    def _stage3(
        self, img: torch.Tensor, boxes: np.ndarray, threshold: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net on 48x48 crops: filter, landmarks (relative to the crop box), regress, suppress (min mode)."""
        offsets, marks, prob = self._batched(self.onet, _crops(img, boxes, 48))
        score, reg, marks = _np64(prob), _np64(offsets), _np64(marks)
        ok = score > threshold
        boxes, score, reg, marks = boxes[ok], score[ok], reg[ok], marks[ok]
        size = boxes[:, 2:] - boxes[:, :2]  # [K, 2] (w, h)
        points = boxes[:, None, :2] + np.stack([marks[:, :5], marks[:, 5:]], axis=2) * size[:, None, :]
        boxes = _regress(boxes, reg)
        keep = nms(boxes, score, 0.7, mode="min")
        return boxes[keep], score[keep], points[keep]

    @staticmethod
    def _batched(net: nn.Module, crops: torch.Tensor, batch: int = 512) -> tuple[torch.Tensor, ...]:
        """Run ``net`` in chunks so a cluttered photo's many candidates do not exhaust GPU memory."""
        outs = [net(crops[i : i + batch]) for i in range(0, len(crops), batch)]
        return tuple(torch.cat(parts, dim=0) for parts in zip(*outs))


CONFIDENT_SCORE = 0.9


def order_faces(faces: Sequence[Face], confident: float = CONFIDENT_SCORE) -> list[Face]:
    """Faces scoring at least ``confident`` first, each group largest box first (equal areas: higher score first).

    Plain largest-first (facenet-pytorch's ``select_largest``) lets a big false positive that barely passed O-Net's
    0.7 (a round collar, a patterned shirt) outrank the real, smaller face; 0.9 is facenet-pytorch's
    ``largest_over_threshold`` default. Real faces of usable size score above 0.99 in practice.
    """
    return sorted(faces, key=lambda f: (f.score < confident, -f.area, -f.score))


def load_mtcnn(
    weights_dir: str | os.PathLike[str] | None = None, device: str | torch.device | None = None
) -> MTCNN:
    """The detector with its pretrained weights, on ``device`` (default CPU).

    Args:
        weights_dir: a folder holding ``pnet.pt``, ``rnet.pt``, ``onet.pt``; default: the lookup order of
            :func:`image2stylegan.weights.find_file` (``$I2S_MTCNN_DIR``, then the cache).

    Raises:
        WeightsNotFoundError: a file is missing or fails its sha256 (one line naming ``i2s weights fetch``).
        WeightsFormatError: a file is not the expected state_dict (names the missing / unexpected keys).
    """
    from ..weights import find_file  # local import: only loading needs the registry

    model = MTCNN()
    for name in ("pnet", "rnet", "onet"):
        path = Path(find_file(ARTIFACT, f"{name}.pt", explicit=weights_dir))
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle / zip errors of every flavour: report them as a format problem
            raise WeightsFormatError(f"{path}: cannot read it as a torch state_dict ({exc})") from None
        load_state_dict_strict(getattr(model, name), state, str(path))
    return model.to(device if device is not None else "cpu")


def detect_faces(image: np.ndarray | Image.Image, detector: MTCNN | None = None, **options: object) -> list[Face]:
    """Faces in ``image`` (uint8 ``[H, W, 3]`` RGB or Pillow), largest first; ``detector`` defaults to
    :func:`load_mtcnn` on the CPU. ``options`` go to :meth:`MTCNN.detect`."""
    return (detector if detector is not None else load_mtcnn()).detect(image, **options)  # type: ignore[arg-type]


def select_face(faces: Sequence[Face], index: int = 0, *, name: str = "the photo") -> Face:
    """``faces[index]`` (0 = largest), or an :class:`InputError` saying that no face, or fewer faces, were found."""
    if not faces:
        raise InputError(f"no face found in {name}; pass a photo with a visible, roughly frontal face")
    if not 0 <= index < len(faces):
        raise InputError(
            f"face index {index} is out of range: {len(faces)} face(s) found in {name} "
            f"(0 = largest; 'i2s faces' lists them)"
        )
    return faces[index]

