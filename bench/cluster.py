"""Folder-run throughput on Ray against the local engine, and what Ray costs per run and per image.

The same folder of face photos (crops of the public-domain astronaut photo, as bench/batch.py) is reconstructed by
``i2s reconstruct DIR --outdir OUT`` at a fixed budget, each run a fresh ``i2s`` process into a fresh folder:

* local: the local engine with every thread of the machine;
* ray-N: ``--engine ray --workers N`` on a local Ray cluster started for the run (each worker one thread, and
  ``--threads-per-worker`` more where asked).

Reported per run: wall seconds (process start to exit), images per hour, and for Ray runs the driver's own
measurements from ``results.csv`` and the log: Ray's start-up (``ray.init`` of a local cluster) and the seconds per
image inside the workers; the overhead per image is (wall - start-up) / images - the workers' seconds per image /
workers. Writes bench/results/cluster.json.

    .venv/bin/python bench/cluster.py                               # 4 images, 10 + 10 steps, local vs 1 and 2 workers
    .venv/bin/python bench/cluster.py --images 8 --steps 20 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from batch import write_photos  # bench/batch.py (scripts run from bench/)
from machine import machine_info

from image2stylegan.io import atomic_write_json


def run(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def worker_seconds(out: Path) -> list[float]:
    with open(out / "results.csv", newline="") as f:
        return [float(row["seconds"]) for row in csv.DictReader(f) if row["status"] == "ok"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="W+ and noise steps per image")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cluster.json")
    args = parser.parse_args()
    i2s = str(Path(sys.executable).parent / "i2s")
    budget = ["--w-steps", str(args.steps), "--noise-steps", str(args.steps), "--device", args.device, "--quiet"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        write_photos(photos, args.images)
        seconds = run([i2s, "reconstruct", str(photos), "--outdir", f"{tmp}/local", *budget], env)
        per_image = worker_seconds(Path(tmp) / "local")
        runs.append({"engine": "local", "workers": 1, "threads": os.cpu_count(), "wall_seconds": round(seconds, 1),
                     "images_per_hour": round(args.images / seconds * 3600, 1),
                     "seconds_per_image_inside": round(sum(per_image) / len(per_image), 1)})
        print(runs[-1], flush=True)
        for workers in args.workers:
            out = Path(tmp) / f"ray-{workers}"
            seconds = run([i2s, "reconstruct", str(photos), "--outdir", str(out), *budget, "--engine", "ray",
                           "--workers", str(workers), "--threads-per-worker", str(args.threads_per_worker)], env)
            per_image = worker_seconds(out)
            inside = sum(per_image) / len(per_image)
            log = json.loads((out / "cluster-run.json").read_text())
            overhead = (seconds - log["startup_seconds"]) / args.images - inside / workers
            runs.append({"engine": "ray", "workers": workers, "threads": args.threads_per_worker * workers,
                         "wall_seconds": round(seconds, 1), "images_per_hour": round(args.images / seconds * 3600, 1),
                         "seconds_per_image_inside": round(inside, 1),
                         "ray_startup_seconds": round(log["startup_seconds"], 1),
                         "overhead_seconds_per_image": round(overhead, 1)})
            print(runs[-1], flush=True)
    record = {"machine": machine_info(), "images": args.images, "steps": args.steps, "device": args.device,
              "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, record)
    print(f"{'engine':<8} {'workers':>7} {'threads':>7} {'wall s':>8} {'img/h':>8} {'s/img inside':>12} "
          f"{'Ray start s':>11} {'overhead s/img':>14}")
    for r in runs:
        print(f"{r['engine']:<8} {r['workers']:>7} {r['threads']:>7} {r['wall_seconds']:>8} "
              f"{r['images_per_hour']:>8} {r['seconds_per_image_inside']:>12} "
              f"{r.get('ray_startup_seconds', '-'):>11} {r.get('overhead_seconds_per_image', '-'):>14}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
