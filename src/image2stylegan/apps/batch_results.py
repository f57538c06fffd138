"""``results.csv``: one row per input of a folder run, rewritten atomically as images finish.

Each rewrite costs time in proportion to the number of rows, so over tens of thousands of images rewriting after
every image would cost O(N²). The table is rewritten after an image unless the last rewrite was too recent: writing
may take at most :data:`WRITE_SHARE` of the run's time, and the run's end writes whatever is left (``flush``).

Rows of finished images are rebuilt from their ``metrics.json`` (the source of truth), so a restarted run writes
the same summary as an uninterrupted one and never depends on a CSV a killed run may have left behind. Images not
reached yet are ``pending``; a file that cannot be read, or in which no face is found with ``--align``, is
``error`` with the one-line reason.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..io import atomic_write_bytes
from .batch_plan import FINISHED_MARKER, BatchItem

__all__ = ["RESULTS_FILE", "ResultsTable"]

RESULTS_FILE = "results.csv"
WRITE_SHARE = 0.05
"""At most this share of a run's time goes to rewriting results.csv (a small table is rewritten after every image;
one of 100,000 rows, about 0.25 s a write on 2 CPU cores, at most every 5 s)."""


class ResultsTable:
    """The summary of a folder run; ``stage_names`` give the per-stage PSNR columns (e.g. w_plus, noise).
    ``file``: the CSV's name in ``outdir``; None keeps the table in memory (a cluster worker's share of a run,
    whose driver writes the file)."""

    def __init__(self, outdir: Path, items: Sequence[BatchItem], stage_names: Sequence[str],
                 file: str | None = RESULTS_FILE):
        self.outdir = outdir
        self.file = file
        self.items = list(items)
        self.stage_names = list(stage_names)
        self.columns = ["file", "output", "status", "message", *(f"psnr_{s}_db" for s in stage_names),
                        "ssim", "lpips", "seconds"]
        self.rows: dict[int, dict[str, Any]] = {
            it.index: {"file": str(it.path), "output": it.name, "status": "pending", "message": ""} for it in items
        }
        self._next_write = float("-inf")  # time.monotonic() before which a rewrite waits
        self._unwritten = False

    # -- rows ----------------------------------------------------------------------------------------------------
    def load_finished(self, finished: Callable[[BatchItem], dict[str, Any] | None] | None = None) -> int:
        """Fill the rows of every finished image; returns how many. ``finished(item)`` gives an image's metrics
        when it is done (a folder run: made exactly as this run would make it); by default any readable
        metrics.json counts."""
        done = 0
        for it in self.items:
            metrics = finished(it) if finished is not None else _read(self.outdir / it.name / FINISHED_MARKER)
            if metrics:  # unreadable or made differently: unfinished, so it is recomputed and rewritten
                self.ok(it, metrics)
                done += 1
        return done

    def ok(self, item: BatchItem, metrics: dict[str, Any]) -> None:
        row = {"file": str(item.path), "output": item.name, "status": "ok", "message": ""}
        stages = metrics.get("stages") or {}
        for name, m in stages.items():
            row[f"psnr_{name}_db"] = _fmt(m.get("psnr_db"))
        # By the run's stage order: metrics.json is written with sorted keys, so its own order is alphabetical.
        final = next((stages[s] for s in reversed(self.stage_names) if s in stages), None)
        if final is not None:
            row["ssim"], row["lpips"] = _fmt(final.get("ssim")), _fmt(final.get("lpips"))
        row["seconds"] = _fmt((metrics.get("batch") or {}).get("seconds_per_image", metrics.get("total_seconds")), 1)
        self.rows[item.index] = row

    def error(self, item: BatchItem, message: str) -> None:
        self.rows[item.index] = {"file": str(item.path), "output": item.name, "status": "error", "message": message}

    def status(self, item: BatchItem) -> str:
        return self.rows[item.index]["status"]

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "error": 0, "pending": 0}
        for row in self.rows.values():
            out[row["status"]] += 1
        return out

    # -- file ----------------------------------------------------------------------------------------------------
    def write(self, *, force: bool = False) -> Path | None:
        """Rewrite results.csv atomically (rows in input order), unless the last rewrite was less than its own
        duration / :data:`WRITE_SHARE` ago and ``force`` is False; then the rows wait for the next write or
        :meth:`flush`. Returns the path when written; nothing for an in-memory table."""
        if self.file is None:
            return None
        began = time.monotonic()
        if not force and began < self._next_write:
            self._unwritten = True
            return None
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for it in self.items:
            writer.writerow(self.rows[it.index])
        path = self.outdir / self.file
        atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
        ended = time.monotonic()
        self._next_write = ended + (ended - began) / WRITE_SHARE
        self._unwritten = False
        return path

    def flush(self) -> Path | None:
        """Write the rows a throttled :meth:`write` held back (the end of a run, or its interruption)."""
        return self.write(force=True) if self._unwritten else None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return ""


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # deeply nested JSON recurses
        return None
    return data if isinstance(data, dict) else None
