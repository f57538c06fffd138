"""Write the golden outputs ``tests/golden/<case>.npz`` checked by ``tests/test_golden.py``.

Runs every case of ``cases.py`` (or the cases named on the command line) through the adapters of
``tests/test_golden.py`` -- the very calls the test makes -- on the CPU with one thread, and saves what they
record. Regenerate only when a change of results is intended, and say so in the commit message:

    .venv/bin/python tests/golden/make_golden.py [CASE ...]

The goldens in the repository were made from the code of the commit named in ``tests/test_golden.py``'s
docstring (the library was imported from a checkout of that commit through PYTHONPATH).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # `golden.cases` and `test_golden`, as pytest imports them

import test_golden
from golden import cases

import image2stylegan


def source_commit() -> str:
    """The commit of the image2stylegan code being run, with "+dirty" if its src/ has uncommitted changes."""
    src = Path(image2stylegan.__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=src, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def main(names: list[str]) -> None:
    torch.set_num_threads(1)  # as tests/conftest.py runs the tiny tests
    unknown = sorted(set(names) - set(cases.CASES))
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; known: {sorted(cases.CASES)}")
    info = {"commit": source_commit(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    print(f"image2stylegan from {Path(image2stylegan.__file__).parent} at {info['commit']}")
    for name in names or sorted(cases.CASES):
        start = time.perf_counter()
        path = test_golden.save_golden(name, test_golden.run_case(name), info)
        print(f"{name}: {path.stat().st_size / 1024:.1f} KiB, {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
