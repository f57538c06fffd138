"""The editor's workspace: the only folder the server reads from or writes to.

Every upload is checked (file size, pixel count, decompression bombs, readable image) and stored as a PNG under
``uploads/`` by its content hash, so the page never names a path the server opens. Every run gets its own folder under
``runs/``, written exactly as the CLI writes an output folder. Embeddings are cached under ``embeddings/`` by the
hash of the photo and the settings that made them, so editing the same photo again does not embed it again. The
workspace has a size cap: when it is exceeded, the oldest runs, embeddings and uploads are removed first (never the
ones in use).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..align.photo import load_photo
from ..errors import InputError, Notice
from ..io import atomic_save_png

__all__ = ["UploadLimits", "Workspace"]


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be: at most ``max_bytes`` on disk (the pixel count is limited as for the CLI:
    :func:`image2stylegan.io.max_pixels`)."""

    max_bytes: int = 30 * 2**20


class Workspace:
    """A folder of uploads, runs and cached embeddings with a size cap (``cap_bytes``)."""

    def __init__(self, root: str | os.PathLike[str], *, cap_bytes: int = 5 * 2**30,
                 limits: UploadLimits | None = None):
        self.root = Path(root).resolve()
        self.cap_bytes, self.limits = cap_bytes, limits or UploadLimits()
        self._lock = threading.Lock()
        self._in_use: set[Path] = set()
        try:
            for sub in ("uploads", "runs", "embeddings"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            probe = self.root / ".write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise InputError(f"cannot use {self.root} as the editor's workspace: {exc.strerror or exc}") from exc

    # -- uploads ------------------------------------------------------------------------------------------------
    def store_upload(self, source: str | os.PathLike[str]) -> Path:
        """Check the uploaded file ``source`` (a file the web framework received) and keep it as
        ``uploads/<sha256>.png`` (RGB). Raises InputError with a message for the page when it is refused."""
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise InputError("the upload could not be read") from exc
        if size > self.limits.max_bytes:
            raise InputError(f"the file is {size / 2**20:.1f} MB; the editor takes images up to "
                             f"{self.limits.max_bytes / 2**20:.0f} MB")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Notice)  # conversions are expected; the page shows the result
                pixels = load_photo(path)  # the CLI's reader: pixel limit before decoding, truncation, odd modes
        except InputError as exc:
            raise InputError(str(exc).replace(str(path), "the upload")) from None
        return self.store_image(pixels)

    def store_image(self, image: np.ndarray) -> Path:
        """Keep a uint8 ``[H, W, 3]`` image as ``uploads/<sha256>.png``; returns its path."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        digest = hashlib.sha256(image.tobytes() + repr(image.shape).encode()).hexdigest()[:32]
        out = self.root / "uploads" / f"{digest}.png"
        if not out.exists():
            atomic_save_png(out, image)
        os.utime(out)  # clean-up removes the least recently used first
        return out

    # -- runs and embeddings ------------------------------------------------------------------------------------
    def new_run(self, command: str) -> Path:
        """A new, empty folder ``runs/<time>-<command>-<n>`` for one run."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        with self._lock:
            for n in range(1, 10_000):
                folder = self.root / "runs" / f"{stamp}-{command}-{n}"
                if not folder.exists():
                    folder.mkdir(parents=True)
                    return folder
        raise InputError("too many runs started in one second")

    def embedding_folder(self, photo: Path, key: dict) -> Path:
        """Where the embedding of ``photo`` under the settings ``key`` is cached (may not exist yet)."""
        blob = json.dumps({"photo": photo.name, **key}, sort_keys=True).encode()
        return self.root / "embeddings" / hashlib.sha256(blob).hexdigest()[:32]

    def contains(self, path: Path) -> bool:
        """Whether ``path`` lies inside the workspace (what the server may hand out as a download)."""
        try:
            Path(path).resolve().relative_to(self.root)
            return True
        except ValueError:
            return False

    def hold(self, *paths: Path) -> None:
        """Keep ``paths`` through clean-ups (a run in progress, the photo being edited)."""
        with self._lock:
            self._in_use.update(Path(p).resolve() for p in paths)

    def release(self, *paths: Path) -> None:
        with self._lock:
            self._in_use.difference_update(Path(p).resolve() for p in paths)

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def clean_up(self) -> list[Path]:
        """Remove the oldest runs, embeddings and uploads until the workspace fits its cap; returns what went."""
        removed: list[Path] = []
        with self._lock:
            entries = [p for sub in ("runs", "embeddings", "uploads") for p in (self.root / sub).iterdir()]
            entries = [p for p in entries if p.resolve() not in self._in_use]
            entries.sort(key=lambda p: p.stat().st_mtime)
            total = self.size()
            for entry in entries:
                if total <= self.cap_bytes:
                    break
                freed = _size(entry)
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
                total -= freed
                removed.append(entry)
        return removed


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
