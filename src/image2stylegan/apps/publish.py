"""Output folders as sets: a run's files appear together or not at all, and never mix with another run's.

:func:`staged` gives a hidden staging folder inside the output folder; a run writes every file there, then
:func:`publish` moves them into place with ``metrics.json`` last, so a folder holding a ``metrics.json`` holds one
complete run and nothing else of ours: the previous set's files (listed in its ``metrics.json`` under ``"files"``)
are removed first, its ``metrics.json`` before anything else, so a folder caught half-way has no ``metrics.json``
and counts as unfinished. SIGINT and SIGTERM are held back while the files move (a rename each), and a staging
folder an error or an interrupt left behind is removed (by the ``with`` block, or by the next run).

:func:`check_outdir` refuses, before any work, an output folder that holds another run's files unless the user
said to overwrite them. :func:`provenance` is what ``metrics.json`` records about what made a run (command,
settings, inputs by sha256, generator weights, code version); :func:`matches` compares two records, which is how
a folder run decides that an image is already done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError
from ..io import fsync_directory

MANIFEST = "metrics.json"
STAGING_PREFIX = ".i2s-staging-"
KNOWN_OUTPUTS = frozenset({
    "result.png", "panel.png", "latent.npz", "metrics.json", "curves.png", "reconstruction.png", "comparison.png",
    "target.png", "alignment.json", "pasted.png", "aligned.png", "aligned_a.png", "aligned_b.png",
    "aligned_scribbled.png", "a_latent.npz", "b_latent.npz",
})
"""Every file name a command writes into its output folder (the previous set's own list wins when it has one)."""
PROVENANCE_KEYS = ("command", "settings", "inputs", "generator", "weights_sha256", "code_version")


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<version>+<sha256 of the package's source files, 12 hex digits>``: changes with any edit of the code."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


def provenance(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a ``metrics.json`` that says what made the run (JSON-normalised, for comparison)."""
    return json.loads(json.dumps({key: metrics.get(key) for key in PROVENANCE_KEYS}, sort_keys=True, default=str))


def matches(metrics: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Whether a finished run (its ``metrics.json``) was made exactly as ``expected`` says and was not stopped.
    Input files are compared by sha256 only (the same photo under another path is the same input)."""
    if metrics.get("stopped") is not False:
        return False
    return _by_content(provenance(metrics)) == _by_content(provenance(expected))


def _by_content(record: dict[str, Any]) -> dict[str, Any]:
    inputs = record.get("inputs") or {}
    record["inputs"] = {k: v.get("sha256") if isinstance(v, dict) else v for k, v in inputs.items()}
    return record


def read_run(folder: Path) -> dict[str, Any] | None:
    """The ``metrics.json`` of the run in ``folder``; ``{}`` when it is unreadable, None when there is none."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # deeply nested JSON recurses
        return {}
    return data if isinstance(data, dict) else {}


def run_files(folder: Path) -> list[str]:
    """The files of ours in ``folder``: the previous set's list, or the known output names found there."""
    run = read_run(folder) or {}
    listed = run.get("files")
    names = set(listed) if isinstance(listed, list) and all(isinstance(n, str) for n in listed) else set()
    names |= {p.name for p in folder.iterdir() if p.name in KNOWN_OUTPUTS} if folder.is_dir() else set()
    return sorted(n for n in names if "/" not in n and n not in ("", ".", ".."))


def check_outdir(folder: Path, *, overwrite: bool) -> None:
    """Refuse (before any work) an output folder that holds another run's files, unless ``overwrite``.

    Raises:
        InputError: naming the run found there and the option that replaces it.
    """
    remove_leftovers(folder)
    if overwrite or not folder.is_dir():
        return
    found = run_files(folder)
    if not found:
        return
    run = read_run(folder)
    what = f"an earlier `i2s {run['command']}` run" if run and isinstance(run.get("command"), str) else \
        f"files of an earlier run ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})"
    raise InputError(f"{folder} holds {what}; pass --overwrite to replace them, or choose another --outdir")


def remove_leftovers(folder: Path) -> None:
    """Delete staging folders that a killed run left in ``folder`` (they never replaced anything)."""
    if folder.is_dir():
        for p in folder.iterdir():
            if p.name.startswith(STAGING_PREFIX) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


@contextlib.contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """A hidden staging folder inside ``folder``; removed with whatever is left in it when the block ends
    (published files have moved out), also on errors and interrupts."""
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, folder: Path) -> list[str]:
    """Move every file of ``stage`` into ``folder`` as one set, replacing the previous set; returns the names.

    Order: the old ``metrics.json`` goes first (from then on the folder reads as unfinished), then the old set's
    files that the new set lacks, then the new files, the new ``metrics.json`` last. SIGINT and SIGTERM wait
    until the set is in place (where the platform can hold signals back)."""
    names = sorted(p.name for p in stage.iterdir() if p.is_file())
    with _signals_held():
        old = run_files(folder)
        (folder / MANIFEST).unlink(missing_ok=True)
        for name in old:
            if name not in names:
                (folder / name).unlink(missing_ok=True)
        for name in sorted(names, key=lambda n: n == MANIFEST):  # the manifest last
            os.replace(stage / name, folder / name)
        fsync_directory(folder)
    return names


@contextlib.contextmanager
def _signals_held(signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):  # Windows: renames are quick; nothing to hold back with
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(signals))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
