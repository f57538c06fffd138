"""Benchmark of the reconstruction pipeline on the demo photo.

Prints and writes JSON: seconds per step of each stage (median over the steps after the first few, which include
one-off warm-up), PSNR after each stage at fixed step budgets for both noise spaces (one shared W+ stage), and the
peak memory of the process (and of the GPU when there is one).

    .venv/bin/python bench/reconstruct.py                       # the demo budget
    .venv/bin/python bench/reconstruct.py --w-steps 50 --noise-steps 50 --device cuda
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import bundled_models, common_options, machine_info  # bench/machine.py (scripts run from bench/)

from image2stylegan.apps.demo import DemoBudget, write_demo_photo
from image2stylegan.apps.reconstruct import ReconstructionSettings, demo_recipe
from image2stylegan.embed import embed
from image2stylegan.io import atomic_write_json, load_image

WARMUP_STEPS = 3


def main(argv: list[str] | None = None) -> dict:
    budget = DemoBudget()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--w-steps", type=int, default=budget.w_steps)
    parser.add_argument("--noise-steps", type=int, default=budget.noise_steps)
    common_options(parser, "bench/results/reconstruct.json")
    args = parser.parse_args(argv)

    device, generator, perceptual = bundled_models(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        target = load_image(write_demo_photo(Path(tmp) / "astronaut_face.png"), generator.resolution)
    target = target.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    step_seconds: dict[str, list[float]] = {}
    psnr_after: dict[str, float] = {}

    def on_step(info) -> None:
        step_seconds.setdefault(info.stage, []).append(info.seconds)

    start = time.perf_counter()
    recipe = demo_recipe(target, ReconstructionSettings(w_steps=args.w_steps, noise_steps=args.noise_steps,
                                                        until_psnr=None))  # as i2s demo: whole stages
    result = embed(generator, recipe, perceptual=perceptual, callback=on_step)
    total = time.perf_counter() - start
    for outcome in result.stages:
        psnr_after[outcome.name] = float(outcome.psnr[0])
        print(f"{outcome.name}: {psnr_after[outcome.name]:.2f} dB after {outcome.steps} steps", flush=True)

    def median(xs: list[float]) -> float | None:
        xs = xs[WARMUP_STEPS:] or xs
        return statistics.median(xs) if xs else None

    report = {
        "machine": machine_info(device),
        "resolution": generator.resolution,
        "budget": {"w_steps": args.w_steps, "noise_steps": args.noise_steps},
        "seconds_per_step": {stage: median(xs) for stage, xs in step_seconds.items()},
        "psnr_db": psnr_after,
        "noise_gain_db": {k: v - psnr_after["w_plus"] for k, v in psnr_after.items() if k != "w_plus"},
        "total_seconds": total,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
    }
    atomic_write_json(args.out, report)
    for key in ("seconds_per_step", "psnr_db", "noise_gain_db"):
        print(f"{key}: " + ", ".join(f"{k} {v:.3f}" for k, v in report[key].items()))
    print(f"total {total:.0f} s, peak RSS {report['peak_rss_mib']:.0f} MiB; wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
