"""Planning a folder run: which files, which output folder each gets, which batches, and what is already done.

Everything here is deterministic in the input list alone, which is what makes a killed run resumable with the same
bytes as an uninterrupted one:

* inputs are sorted (by their path as text) and de-duplicated;
* each gets an output folder named after its stem, disambiguated by its extension and then by a counter when stems
  collide (``a.jpg``, ``a.png`` -> ``a-jpg``, ``a-png``), in that sorted order;
* batches are fixed chunks of ``B`` consecutive inputs in that order, never re-packed around finished or failed
  ones: a chunk is recomputed whole (so each image starts from the same initial noise, which the engine draws per
  position in the batch) and only its missing outputs are written;
* an image is finished when its ``metrics.json`` exists; every output is written atomically and ``metrics.json``
  last, so that file's presence means the folder is complete.
"""

from __future__ import annotations

import glob
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import InputError, notice

__all__ = [
    "FINISHED_MARKER",
    "BatchItem",
    "chunks",
    "expand_inputs",
    "is_batch_request",
    "is_finished",
    "output_names",
    "plan",
    "remove_stale_temporaries",
]

FINISHED_MARKER = "metrics.json"
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class BatchItem:
    """One input of a folder run: its position in the sorted list, the file, and its output folder's name."""

    index: int
    path: Path
    name: str


def _image_extensions() -> set[str]:
    """Extensions Pillow can open (lower case, with the dot)."""
    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def is_batch_request(specs: Sequence[str | os.PathLike[str]]) -> bool:
    """More than one path, a folder, or a pattern that is not itself an existing file: one output folder per image
    and a results.csv. A single existing file keeps the single-photo layout (outputs straight into --outdir)."""
    if len(specs) != 1:
        return True
    spec = Path(specs[0])
    return spec.is_dir() or (not spec.exists() and bool(_GLOB_CHARS & set(str(spec))))


def expand_inputs(specs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files to process, sorted.

    Each spec is a file (taken whatever its extension, so a damaged or mislabelled file is reported, not
    skipped), a folder (its files with an image extension Pillow knows, not recursive; hidden files ignored;
    others skipped with a notice) or a glob pattern (quote it so the shell leaves it alone; ``**`` recurses).

    Raises:
        InputError: a spec matches nothing, or nothing at all is left.
    """
    extensions = _image_extensions()
    found: dict[str, Path] = {}
    for spec in specs:
        spec_path = Path(spec).expanduser()
        if spec_path.is_dir():
            entries = sorted(p for p in spec_path.iterdir() if p.is_file() and not p.name.startswith("."))
            skipped = [p.name for p in entries if p.suffix.lower() not in extensions]
            if skipped:
                shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
                notice(f"{spec_path}: skipped {len(skipped)} file(s) without an image extension: {shown}")
            matches = [p for p in entries if p.suffix.lower() in extensions]
        elif spec_path.exists():
            matches = [spec_path]
        elif _GLOB_CHARS & set(str(spec)):
            matches = [Path(m) for m in glob.glob(os.path.expanduser(str(spec)), recursive=True)]
            matches = [p for p in matches if p.is_file()]
            if not matches:
                raise InputError(f"no file matches {spec}")
        else:
            raise InputError(f"{spec} does not exist; pass a photo, a folder or a quoted glob such as 'photos/*.jpg'")
        for path in matches:
            found.setdefault(str(path.resolve()), path)
    if not found:
        raise InputError(f"no image files in {', '.join(map(str, specs))}")
    return sorted(found.values(), key=lambda p: str(p))


def output_names(paths: Sequence[Path]) -> list[str]:
    """One output folder name per path (in the given order): the stem; on a clash, stem-extension; on a further
    clash (the same name in two folders), a counter in the given order: ``a``, ``a-2``, ..."""
    def clean(name: str) -> str:
        return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name).lstrip(".") or "image"

    stems = [clean(p.stem) for p in paths]
    counts = Counter(stems)
    names = [s if counts[s] == 1 else f"{s}-{clean(p.suffix[1:]) if p.suffix else 'noext'}" for s, p in zip(stems, paths)]
    out: list[str] = []
    taken: set[str] = set()
    for name in names:
        candidate, k = name, 1
        while candidate in taken:  # the same name in two folders, or a real stem that looks like a counter
            k += 1
            candidate = f"{name}-{k}"
        taken.add(candidate)
        out.append(candidate)
    return out


def plan(specs: Sequence[str | os.PathLike[str]]) -> list[BatchItem]:
    """The items for ``specs`` in processing order (see :func:`expand_inputs`)."""
    paths = expand_inputs(specs)
    return [BatchItem(i, p, n) for i, (p, n) in enumerate(zip(paths, output_names(paths)))]


def chunks(items: Sequence[BatchItem], batch_size: int) -> list[list[BatchItem]]:
    """Fixed consecutive chunks of ``batch_size`` (the last may be shorter), whatever is already finished."""
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {batch_size}")
    return [list(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]


def is_finished(folder: Path) -> bool:
    return (folder / FINISHED_MARKER).is_file()


def remove_stale_temporaries(folder: Path, names: Iterable[str] | None = None) -> int:
    """Delete the temporary files a killed writer left in ``folder`` (``io.atomic_open`` names them
    ``.<name>.<random>.tmp``; they never replaced anything, so nothing is lost). Only those of ``names`` when given.
    Returns how many were removed."""
    if not folder.is_dir():
        return 0
    wanted = None if names is None else {f".{n}." for n in names}
    removed = 0
    for p in folder.iterdir():
        if p.name.startswith(".") and p.name.endswith(".tmp") and p.is_file():
            if wanted is None or any(p.name.startswith(w) for w in wanted):
                p.unlink(missing_ok=True)
                removed += 1
    return removed
