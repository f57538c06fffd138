"""``--align``, ``--face`` and ``--paste-back``: the options of every command that takes a photo, and their glue.

The work itself is in :mod:`image2stylegan.apps.photos`; here are the option definitions (one wording for every
command), their validation (usage errors, exit status 2, before anything slow), reading photos and masks (their
notices are warnings the command shows as ``note:`` lines), and the files an aligned run adds to its outputs.
"""

from __future__ import annotations

from pathlib import Path

import click

ALIGN_HELP = (
    "Detect the faces (MTCNN) and FFHQ-align one to the generator's resolution instead of centre-cropping the photo. "
    "The aligned input is saved as a PNG and the transform in alignment.json and metrics.json, so the result can be "
    "pasted back (--paste-back, or later `i2s paste-back`)."
)
FACE_HELP = "With --align: which face, 0 = the largest confident one (`i2s faces PHOTO` lists them)."
PASTE_HELP = (
    "With --align: warp the result back into the original photo at its full resolution, feathered, and write "
    "pasted.png beside the outputs; pixels away from the face keep the photo's bytes."
)


def align_options(func):
    """``--align``, ``--face N`` and ``--paste-back`` (listed in this order in --help)."""
    for option in reversed([
        click.option("--align", is_flag=True, help=ALIGN_HELP),
        click.option("--face", default=0, show_default=True, type=click.IntRange(min=0), help=FACE_HELP),
        click.option("--paste-back", "paste_back", is_flag=True, help=PASTE_HELP),
    ]):
        func = option(func)
    return func


def check_align_options(align: bool, face: int, paste_back: bool, *, photos: int = 1) -> None:
    """Usage errors for combinations that cannot work (``photos``: how many photos the command got)."""
    if paste_back and not align:
        raise click.UsageError("--paste-back needs --align: only an aligned face can be warped back into its photo")
    if face != 0 and not align:
        raise click.UsageError("--face chooses the face to align; add --align")
    if align and photos == 0:
        raise click.UsageError("--align needs a photo: every input here is a saved embedding (--from ...)")


def open_detector(align: bool):
    """The MTCNN face detector (CPU) when ``align``, else None; missing weights are a one-line error."""
    if not align:
        return None
    from ..align import load_mtcnn

    return load_mtcnn()


def read_photo(path: Path, generator, *, align: bool = False, face: int = 0, detector=None):
    """A :class:`~image2stylegan.apps.photos.PhotoInput` for ``generator``."""
    from ..apps.photos import load_photo_input

    return load_photo_input(path, generator.resolution, align=align, face=face, detector=detector)


def read_like(path: Path, generator, reference):
    """Read ``path`` as ``reference`` was read: aligned with its transform (no detection of its own), or plainly."""
    from ..apps.photos import align_like, load_photo_input

    if reference.transform is not None:
        return align_like(path, reference)
    return load_photo_input(path, generator.resolution)


def read_mask(spec: str, size: int, reference=None):
    """A mask preset or file as a binary ``[1, 1, S, S]``; with an aligned ``reference``, a mask image of the
    original photo's size is aligned with the photo (other images are taken as drawn on the aligned image)."""
    from ..masks import resolve_mask

    if reference is not None and reference.transform is not None:
        from ..apps.photos import align_mask_file

        aligned = align_mask_file(spec, reference)
        if aligned is not None:
            return aligned
    return resolve_mask(spec, size)


def outputs_for(photos: dict, *, paste_into: str, result: str = "result.png", paste_back: bool = False):
    """(extra metrics, before_metrics hook) for outputs.save: aligned PNGs, alignment.json and pasted.png."""
    from ..apps.photos import alignment_outputs

    return alignment_outputs(photos, paste_into=paste_into, result=result, paste_back=paste_back)


def aligned_files(photos: dict, paste_back: bool) -> str:
    """The extra file names an aligned run writes, for the closing 'outputs in ...' line."""
    names = [name for photo, name in photos.values() if photo is not None and photo.transform is not None]
    if not names:
        return ""
    return " " + " ".join([*names, "alignment.json", *(["pasted.png"] if paste_back else [])])
