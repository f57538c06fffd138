"""Photos as the applications take them: read (optionally detect and FFHQ-align a face), remember the alignment,
and paste a result back into the original photo.

Every command that takes a photo goes through :func:`load_photo_input`, so ``--align`` means the same everywhere:
the photo is read at full resolution, MTCNN finds its faces, face ``face`` (0 = the largest confident one) is
aligned to the generator's resolution with the FFHQ recipe, and the :class:`~image2stylegan.align.AlignTransform`
is kept so the result can be warped back later. Without ``--align`` the photo is centre-cropped and resized as
:func:`image2stylegan.io.load_image` always did.

What is saved beside an aligned run's outputs (:func:`alignment_record`, :func:`write_alignment`): the aligned input
as a PNG and ``alignment.json``, the same object that goes under ``"alignment"`` in ``metrics.json``::

    {"role": "photo", "photo": "/abs/photo.jpg", "face": 0, "aligned": "aligned.png", "transform": {...},
     "result": "reconstruction.png", "others": {"scribbled": {...same keys...}}}

The top level is the photo a result is pasted into; ``others`` holds any other aligned input (crossover's second
photo, scribble's scribbled copy), so ``i2s paste-back --role`` can paste into those instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..align import AlignTransform, align_face, detect_faces, load_photo, paste_back_to_file, select_face
from ..errors import InputError, notice, notices_to
from ..io import atomic_save_png, atomic_write_json, load_image
from .outputs import file_sha256

__all__ = [
    "ALIGNMENT_FILE",
    "PhotoInput",
    "align_mask_file",
    "alignment_outputs",
    "alignment_record",
    "load_photo_input",
    "paste_result",
    "read_alignment",
    "uint8_to_tensor",
    "write_alignment",
]

ALIGNMENT_FILE = "alignment.json"
ALIGNMENT_FORMAT = "image2stylegan-alignment"
ALIGNMENT_VERSION = 1
PASTED_FILE = "pasted.png"


@dataclass(frozen=True, eq=False)
class PhotoInput:
    """A photo ready for the generator. What was done to it (crop, resize, which face was aligned) was issued as
    :class:`~image2stylegan.errors.Notice` warnings while it was read.

    Attributes:
        path: the file it was read from.
        image: ``[1, 3, S, S]`` float32 in [-1, 1] on the CPU.
        transform: the alignment (``None`` without ``--align``).
        face: index of the aligned face among the detected ones (``None`` without ``--align``).
        aligned: the aligned uint8 ``[S, S, 3]`` image (``None`` without ``--align``).
        photo: the full-resolution uint8 photo it was aligned from, kept for paste-back (``None`` without).
    """

    path: Path
    image: torch.Tensor
    transform: AlignTransform | None = None
    face: int | None = None
    aligned: np.ndarray | None = field(default=None, repr=False)
    photo: np.ndarray | None = field(default=None, repr=False)


def uint8_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> ``[1, 3, H, W]`` float32 in [-1, 1], the same arithmetic as
    :func:`image2stylegan.io.load_image` (``v / 255 * 2 - 1`` in float32), so an aligned image saved as PNG and
    loaded again gives exactly this tensor."""
    rgb = np.ascontiguousarray(image, dtype=np.uint8).astype(np.float32) / 255.0
    return (torch.from_numpy(rgb).permute(2, 0, 1) * 2.0 - 1.0).unsqueeze(0).contiguous()


@contextmanager
def single_thread():
    """MTCNN is hundreds of tiny ops: on a busy 2-core CPU one thread detected ~10x faster than two (the align
    tests measured it). The previous setting is restored for the generator."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def load_photo_input(
    path: str | os.PathLike[str], size: int, *, align: bool = False, face: int = 0, detector: Any = None
) -> PhotoInput:
    """Read ``path`` for a generator of resolution ``size``; with ``align``, detect faces and FFHQ-align face
    ``face`` (0 = the largest confident face). Notices (crop, resize, the face aligned) are issued as warnings.

    Raises:
        InputError: unreadable file; with ``align``: no face, or ``face`` out of range (the message says how many
            faces were found and points to ``i2s faces``).
        WeightsNotFoundError: ``align`` without the MTCNN weights.
    """
    path = Path(path)
    if not align:
        return PhotoInput(path, load_image(path, size))
    photo = load_photo(path)
    with single_thread():
        faces = detect_faces(photo, detector)
    chosen = select_face(faces, face, name=path.name)
    aligned = align_face(photo, chosen, size)
    tr = aligned.transform
    others = f" of {len(faces)}" if len(faces) > 1 else ""
    side = tr.scale * size  # the aligned square's side in photo pixels
    notice(
        f"{path.name}: face {face}{others} (score {chosen.score:.3f}) aligned to {size}x{size} from a {side:.0f} px "
        f"square of the {photo.shape[1]}x{photo.shape[0]} photo, rotated {tr.angle_degrees:+.1f} deg"
        + (f"; upscaled {size / side:.1f}x, so the target is soft" if side < size / 2 else "")
    )
    return PhotoInput(path, uint8_to_tensor(aligned.image), tr, face, aligned.image, photo)


def align_like(path: str | os.PathLike[str], reference: PhotoInput) -> PhotoInput:
    """Read ``path`` and align it with ``reference``'s transform (no detection), e.g. a scribbled copy of the photo,
    whose strokes could move the landmarks: both must share one transform for their difference to be the strokes.

    Raises:
        InputError: ``path`` has another size than the reference photo.
    """
    path = Path(path)
    tr = reference.transform
    if tr is None:
        raise ValueError("align_like needs an aligned reference")
    photo = load_photo(path)
    height, width = photo.shape[:2]
    if (width, height) != tuple(tr.photo_size):
        raise InputError(
            f"{path.name} is {width}x{height} but {reference.path.name} is {tr.photo_size[0]}x{tr.photo_size[1]}; "
            "with --align both must be the same photo's size (they share the face's alignment)"
        )
    aligned = align_face(photo, np.asarray(tr.landmarks), tr.output_size)
    notice(f"{path.name}: aligned with the face found in {reference.path.name}")
    return PhotoInput(path, uint8_to_tensor(aligned.image), aligned.transform, reference.face, aligned.image, photo)


def align_mask_file(path: str | os.PathLike[str], reference: PhotoInput) -> torch.Tensor | None:
    """A mask image drawn on the *original* photo, aligned with ``reference``'s transform: binary
    ``[1, 1, S, S]``, with a notice; ``None`` when the file's size is not the photo's (then it is taken to be drawn
    on the aligned image, as masks are without ``--align``). Outside the photo the aligned mask is 0."""
    from ..io import _apply_exif_orientation, _open_decoded
    from ..masks import _to_gray

    tr = reference.transform
    path = Path(path)
    if tr is None or not path.is_file():
        return None
    held: list[str] = []  # said only when the file is used here; otherwise load_mask reads it and says them
    with notices_to(held.append):
        img = _open_decoded(path)
        try:
            gray = _to_gray(_apply_exif_orientation(img, path.name), path.name)
        finally:
            img.close()
    if (gray.shape[1], gray.shape[0]) != tuple(tr.photo_size):
        return None
    for message in held:
        notice(message)
    rgb = np.repeat(np.rint(gray * 255.0).astype(np.uint8)[:, :, None], 3, axis=2)
    aligned = align_face(rgb, np.asarray(tr.landmarks), tr.output_size, enable_padding=False)
    mask = torch.from_numpy(aligned.image[:, :, 0].astype(np.float32) / 255.0 >= 0.5).float()[None, None]
    notice(f"{path.name}: has the photo's size, so it was aligned with the photo's face")
    return mask


# -- metadata ----------------------------------------------------------------------------------------------------
def _entry(photo: PhotoInput, aligned_name: str) -> dict[str, Any]:
    return {"photo": str(photo.path.resolve()), "face": photo.face, "aligned": aligned_name,
            "transform": photo.transform.to_dict()}


def alignment_record(
    photos: dict[str, tuple[PhotoInput, str]], *, paste_into: str, result: str
) -> dict[str, Any] | None:
    """The ``"alignment"`` metadata of a run (module docstring): ``photos`` maps a role ('photo', 'a', 'b',
    'content', 'scribbled') to (input, file name of its aligned PNG); inputs without a transform are left out.
    ``paste_into`` names the role a result goes back into by default (the first aligned role if it was not
    aligned). ``None`` when nothing was aligned."""
    aligned = {role: (p, name) for role, (p, name) in photos.items() if p is not None and p.transform is not None}
    if not aligned:
        return None
    main = paste_into if paste_into in aligned else next(iter(aligned))
    record = {"format": ALIGNMENT_FORMAT, "version": ALIGNMENT_VERSION, "role": main,
              **_entry(*aligned[main]), "result": result}
    record["others"] = {role: _entry(p, name) for role, (p, name) in aligned.items() if role != main}
    return record


def write_alignment(outdir: Path, record: dict[str, Any], photos: dict[str, tuple[PhotoInput, str]]) -> None:
    """Write each aligned input's PNG and ``alignment.json`` into ``outdir`` (atomically)."""
    for photo, name in photos.values():
        if photo is not None and photo.aligned is not None:
            atomic_save_png(outdir / name, photo.aligned)
    atomic_write_json(outdir / ALIGNMENT_FILE, record)


def read_alignment(source: str | os.PathLike[str]) -> tuple[dict[str, Any], Path]:
    """(record, folder its relative file names refer to) from an output folder or an ``alignment.json``, or
    from a ``metrics.json`` holding an ``"alignment"`` key.

    Raises:
        InputError: nothing readable there, or the run was not aligned.
    """
    source = Path(source)
    path = source / ALIGNMENT_FILE if source.is_dir() else source
    if source.is_dir() and not path.is_file() and (source / "metrics.json").is_file():
        path = source / "metrics.json"
    if not path.is_file():
        raise InputError(f"{source}: no {ALIGNMENT_FILE} there; was the run made with --align?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # deeply nested JSON recurses
        raise InputError(f"{path}: cannot read it as JSON ({exc})") from None
    if isinstance(data, dict) and "alignment" in data and data.get("format") != ALIGNMENT_FORMAT:
        data = data["alignment"]
    if not isinstance(data, dict) or data.get("format") != ALIGNMENT_FORMAT or "transform" not in data:
        raise InputError(f"{path} holds no alignment (was the run made with --align?)")
    if int(data.get("version", 0)) > ALIGNMENT_VERSION:
        raise InputError(f"{path}: alignment format version {data['version']} is newer than this program's")
    return data, path.parent


def pick_role(record: dict[str, Any], role: str | None) -> dict[str, Any]:
    """The entry of ``role`` (default: the one the run pastes into)."""
    if role is None or role == record.get("role"):
        return record
    others = record.get("others") or {}
    if role not in others:
        known = ", ".join([record.get("role", "?"), *others])
        raise InputError(f"no aligned photo with role {role!r} in this run (it has: {known})")
    return others[role]


def alignment_outputs(
    photos: dict[str, tuple[PhotoInput | None, str]], *, paste_into: str, result: str,
    paste_back: bool = False,
) -> tuple[dict[str, Any], Callable[[torch.Tensor, Path], None] | None]:
    """What an aligned run adds to its outputs: (``{"alignment": record}`` for metrics.json, a hook for
    :func:`.outputs.save`'s ``before_metrics`` that writes the aligned PNGs, ``alignment.json`` and,
    with ``paste_back``, ``pasted.png``). ``({}, None)`` when no photo was aligned."""
    record = alignment_record(photos, paste_into=paste_into, result=result)
    if record is None:
        return {}, None
    target = photos[record["role"]][0]

    def write(image: torch.Tensor, folder: Path) -> None:
        """Into ``folder`` (the run's staging folder, where the result is already written)."""
        result_file = folder / record["result"]
        if result_file.is_file():  # which result this transform belongs to (checked by `i2s paste-back`)
            record["result_sha256"] = file_sha256(result_file)
        write_alignment(folder, record, photos)
        if paste_back:  # the file the record names (inpainting's filled photo, say), as `i2s paste-back` reads it
            paste_result(folder / PASTED_FILE, result_file if result_file.is_file() else image[0], target)

    return {"alignment": record}, write


def paste_result(
    out_path: Path, result: np.ndarray | torch.Tensor | str | os.PathLike[str], photo: PhotoInput
) -> np.ndarray:
    """Warp ``result`` (the generator-sized image) back into ``photo``'s original at full resolution and write it
    atomically to ``out_path``; pixels away from the face keep the photo's bytes."""
    if photo.transform is None:
        raise ValueError("paste_result needs an aligned photo")
    original = photo.photo if photo.photo is not None else photo.path
    if isinstance(result, torch.Tensor):
        from ..io import tensor_to_uint8

        result = tensor_to_uint8(result)
    return paste_back_to_file(out_path, original, result, photo.transform)
