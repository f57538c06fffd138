"""Where a W+ step's time goes: generator forward, VGG16 at 256 px, the loss, the backward pass, Adam, and the
per-step PSNR bookkeeping, timed separately (medians after warm-up steps) for the bundled 1024 px generator. The
loss is the 'fast' schedule's embedding loss (pixel MSE + the normalised perceptual term, VGG down to relu5_3), or
with ``--loss paper`` the paper's (MSE + its perceptual term, VGG down to relu3_3).
Also times a noise step, and with ``--compile`` the same W+ and noise steps as ``--compile`` runs them
(``StyleGenerator.compile_synthesis``): the first step of each (compiling), the steps after it, and how far the
compiled render and W+ gradient lie from the eager ones.

    .venv/bin/python bench/step_profile.py                      # prints and writes bench/results/step_profile.json
    .venv/bin/python bench/step_profile.py --device cuda --compile
    .venv/bin/python bench/step_profile.py --loss paper
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import bundled_models, common_options, machine_info  # bench/machine.py (scripts run from bench/)

from image2stylegan.embed import initial_noise
from image2stylegan.io import atomic_write_json
from image2stylegan.losses import NORMALIZED_PERCEPTUAL_LAYERS, masked_mse, masked_perceptual, normalized_perceptual
from image2stylegan.metrics import psnr

PARTS = ("generator forward", "VGG16 forward", "loss", "backward (generator + VGG)", "Adam", "PSNR bookkeeping")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_w_step(generator, perceptual, target, noise, steps: int, warmup: int, loss_kind: str = "fast"
                ) -> dict[str, float]:
    """Median seconds of each part of a W+ step (MSE + a perceptual term, Adam), over ``steps`` after ``warmup``."""
    device = target.device
    layers = NORMALIZED_PERCEPTUAL_LAYERS if loss_kind == "fast" else perceptual.layers
    term = normalized_perceptual if loss_kind == "fast" else masked_perceptual
    with torch.no_grad():
        features = perceptual.vgg(target, layers)
    ws = generator.mean_ws(1).clone().requires_grad_(True)
    optimizer = torch.optim.Adam([ws], lr=0.01)
    times: dict[str, list[float]] = {p: [] for p in PARTS}
    for step in range(warmup + steps):
        marks = [time.perf_counter()]

        def mark() -> None:
            _sync(device)
            marks.append(time.perf_counter())

        image = generator.synthesis(ws, noise)
        mark()
        own = perceptual.vgg(image, layers)
        mark()
        loss = masked_mse(image, target) + term(own, features)
        mark()
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        mark()
        optimizer.step()
        mark()
        with torch.no_grad():
            psnr(image.detach().clamp(-1, 1), target).mean().item()
        mark()
        if step >= warmup:
            for part, a, b in zip(PARTS, marks, marks[1:]):
                times[part].append(b - a)
    return {p: statistics.median(v) for p, v in times.items()}


def time_noise_step(generator, target, noise, steps: int, warmup: int) -> float:
    ws = generator.mean_ws(1)
    maps = [n.clone().requires_grad_(True) for n in noise]
    optimizer = torch.optim.Adam(maps, lr=0.1)
    seconds = []
    for step in range(warmup + steps):
        began = time.perf_counter()
        loss = masked_mse(generator.synthesis(ws, maps), target).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(target.device)
        if step >= warmup:
            seconds.append(time.perf_counter() - began)
    return statistics.median(seconds)


def _render_and_grad(generator, target, noise) -> tuple[torch.Tensor, torch.Tensor]:
    ws = generator.mean_ws(1).clone().requires_grad_(True)
    image = generator.synthesis(ws, noise)
    masked_mse(image, target).sum().backward()
    return image.detach(), ws.grad


def compiled_steps(generator, perceptual, target, noise, steps: int, warmup: int, loss_kind: str = "fast"
                   ) -> dict:
    """The W+ and noise steps again as ``--compile`` runs them: seconds of the first step of each (it compiles),
    the median steps after it, and the compiled render's and W+ gradient's distance from the eager ones."""
    eager_image, eager_grad = _render_and_grad(generator, target, noise)
    generator.compile_synthesis()
    report: dict = {}
    try:
        began = time.perf_counter()
        image, grad = _render_and_grad(generator, target, noise)
        report["compiled_first_w_step_seconds"] = time.perf_counter() - began
        report["compiled_image_max_abs_difference"] = float((image - eager_image).abs().max())
        report["compiled_w_grad_relative_difference"] = float((grad - eager_grad).norm() / eager_grad.norm())
        parts = time_w_step(generator, perceptual, target, noise, steps, warmup, loss_kind)
        report["compiled_w_step_seconds"] = sum(parts.values())
        report["compiled_w_step_parts"] = parts
        report["compiled_first_noise_step_seconds"] = time_noise_step(generator, target, noise, 1, 0)
        report["compiled_noise_step_seconds"] = time_noise_step(generator, target, noise, steps, warmup)
    except Exception as exc:  # noqa: BLE001 - a backend that cannot compile here is a result too
        report["compiled_error"] = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        generator.compile_synthesis(False)
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the W+ and noise steps as --compile runs them")
    parser.add_argument("--loss", choices=["fast", "paper"], default="fast",
                        help="the W+ loss timed: the fast schedule's embedding loss or the paper's")
    common_options(parser, "bench/results/step_profile.json")
    args = parser.parse_args(argv)

    device, generator, perceptual = bundled_models(args.device)
    noise = initial_noise(generator, 1, 0)
    with torch.no_grad():
        target = generator.synthesis(generator.mean_ws(1) + 0.3, noise).clamp(-1, 1)
    parts = time_w_step(generator, perceptual, target, noise, args.steps, args.warmup, args.loss)
    total = sum(parts.values())
    report = {"machine": machine_info(device), "resolution": generator.resolution, "loss": args.loss,
              "w_step_seconds": total, "w_step_parts": parts,
              "w_step_share": {p: v / total for p, v in parts.items()},
              "noise_step_seconds": time_noise_step(generator, target, noise, args.steps, args.warmup)}
    if args.compile:
        report.update(compiled_steps(generator, perceptual, target, noise, args.steps, args.warmup, args.loss))
    atomic_write_json(args.out, report)
    for part, seconds in parts.items():
        print(f"{part:28s} {seconds:7.3f} s  {100 * seconds / total:5.1f} %")
    print(f"{'W+ step':28s} {total:7.3f} s; noise step {report['noise_step_seconds']:.3f} s")
    if "compiled_noise_step_seconds" in report:
        print(f"--compile: W+ step {report['compiled_w_step_seconds']:.3f} s (first, compiling: "
              f"{report['compiled_first_w_step_seconds']:.0f} s), noise step {report['compiled_noise_step_seconds']:.3f} s "
              f"(first: {report['compiled_first_noise_step_seconds']:.0f} s); W+ gradient off by "
              f"{report['compiled_w_grad_relative_difference']:.1e} (relative)")
    elif "compiled_error" in report:
        print(f"torch.compile failed: {report['compiled_error']}")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
