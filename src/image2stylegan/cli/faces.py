"""``i2s faces`` (list the faces --align can choose from) and ``i2s paste-back`` (redo a paste-back from saved files)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import InputError
from .common import cli


@cli.command(short_help="List the faces in a photo, in the order --face counts them.")
@click.argument("photo", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the faces as JSON instead of a table.")
def faces(photo, as_json) -> None:
    """Detect the faces in PHOTO (MTCNN) and list them: index (the --face number), box (left, top, right,
    bottom, pixels), score, and the five landmarks (eyes, nose, mouth corners; pixel-centre x, y). Faces scoring
    at least 0.9 come first, largest first; doubtful detections follow, marked '?'. No face is an error."""
    from ..align import LANDMARK_NAMES, detect_faces, load_mtcnn, load_photo
    from ..align.mtcnn import CONFIDENT_SCORE
    from ..apps.photos import single_thread

    image = load_photo(photo)
    detector = load_mtcnn()
    with single_thread():
        found = detect_faces(image, detector)
    if not found:
        raise InputError(f"no face found in {photo} ({image.shape[1]}x{image.shape[0]}); "
                         "--align needs a visible, roughly frontal face")
    if as_json:
        click.echo(json.dumps([{"index": i, **f.to_dict()} for i, f in enumerate(found)], indent=2))
        return
    click.echo(f"{len(found)} face(s) in {photo} ({image.shape[1]}x{image.shape[0]}); --face N picks one, 0 by default")
    short = {"eye_left": "eye L", "eye_right": "eye R", "nose": "nose", "mouth_left": "mouth L", "mouth_right": "mouth R"}
    for i, f in enumerate(found):
        left, top, right, bottom = f.box
        mark = " " if f.score >= CONFIDENT_SCORE else "?"
        points = "  ".join(f"{short.get(n, n)} ({x:.0f}, {y:.0f})" for n, (x, y) in zip(LANDMARK_NAMES, f.landmarks))
        click.echo(f"{i:>3}{mark} box ({left:.0f}, {top:.0f}, {right:.0f}, {bottom:.0f}) {right - left:.0f}x"
                   f"{bottom - top:.0f}  score {f.score:.4f}  {points}")


@cli.command("paste-back", short_help="Warp a result back into the original photo, from a run's saved files.")
@click.argument("source", metavar="OUTDIR|ALIGNMENT_JSON", type=click.Path(path_type=Path))
@click.option("--photo", type=click.Path(path_type=Path),
              help="The original photo (default: the path recorded in alignment.json). It must have the size it "
                   "had when it was aligned.")
@click.option("--image", type=click.Path(path_type=Path),
              help="The aligned image to paste (default: the run's result, e.g. reconstruction.png or result.png); "
                   "any square size, e.g. an edited copy.")
@click.option("--role", default=None,
              help="Which aligned photo to paste into when the run aligned several (crossover: a or b; "
                   "transfer-attribute: a or b). Default: the one the run pastes into.")
@click.option("--out", required=True, type=click.Path(path_type=Path), help="File to write (.png, .jpg).")
def paste_back(source, photo, image, role, out) -> None:
    """Paste an aligned result back into its original photo at full resolution, with the transform saved by
    an --align run (OUTDIR/alignment.json, or the "alignment" key of its metrics.json). The pixels away from
    the face keep the photo's bytes."""
    from ..align import AlignTransform, paste_back_to_file
    from ..apps.outputs import file_sha256
    from ..apps.photos import pick_role, read_alignment
    from ..io import ensure_outdir

    record, folder = read_alignment(source)
    entry = pick_role(record, role)
    transform = AlignTransform.from_dict(entry["transform"])
    photo = Path(photo) if photo is not None else Path(entry["photo"])
    if not photo.is_file():
        raise InputError(f"the original photo {photo} is not there; pass it with --photo")
    default_image = image is None
    image = Path(image) if image is not None else folder / record.get("result", "result.png")
    if not image.is_file():
        raise InputError(f"{image} is not there; pass the aligned image with --image")
    expected = record.get("result_sha256")
    if default_image and expected is not None and file_sha256(image) != expected:
        raise InputError(f"{image} is not the result this alignment was saved with (its sha256 differs): the folder "
                         "was changed after the run; pass the aligned image with --image to paste it anyway")
    parent = out.parent if str(out.parent) else Path(".")
    ensure_outdir(parent)
    pasted = paste_back_to_file(out, photo, image, transform)
    click.echo(f"wrote {out} ({pasted.shape[1]}x{pasted.shape[0]}): {image.name} pasted into {photo}")
