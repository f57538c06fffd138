"""Time to quality: PSNR and LPIPS against steps and wall-clock seconds, old defaults vs new, on several faces.

For each benchmark face (the demo photo, a public-domain photo aligned like FFHQ, and generated faces with their
exact latents) and each recipe variant, run the reconstruction recipe once and record every step's PSNR and time,
and LPIPS at a few checkpoints. Writes JSON and a PNG of the curves, and prints per face and variant the PSNR and
LPIPS after the W+ stage, the seconds to 20 dB in the W+ stage and to 30 and 33 dB overall.

    .venv/bin/python bench/convergence.py                                  # every face, old vs new defaults
    .venv/bin/python bench/convergence.py --faces seed-1 --variants new --w-steps 100 --noise-steps 0

Numbers depend on the CPU: state them with the machine (the JSON records it).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from machine import bundled_models, common_options, machine_info  # bench/machine.py (scripts run from bench/)

from image2stylegan.apps.demo import ASTRONAUT_FACE_BOX, write_demo_photo
from image2stylegan.apps.presets import DEFAULT_QUALITY, PRESETS, settings_for
from image2stylegan.apps.reconstruct import ReconstructionSettings, reconstruction_recipe
from image2stylegan.apps.sample import sample
from image2stylegan.embed import embed
from image2stylegan.io import atomic_save_png, atomic_write_json, load_image
from image2stylegan.metrics import LPIPS
from image2stylegan.recipe import NoiseStage, Recipe, WPlusStage, image_term

GENERATED_SEEDS = (1, 2, 3)
LPIPS_EVERY = 25
THRESHOLDS = {"w_plus": (20.0,), "overall": (30.0, 33.0)}


def variants(target: torch.Tensor, w_steps: int, noise_steps: int) -> dict[str, Recipe]:
    """'old': the defaults before the fast schedule (W+ at a constant Adam rate 0.01 under MSE + perceptual 1 : 1;
    the noise stage strength-scaled with its cosine but no warm-up); 'new': today's defaults (the 'good' preset's
    schedule). Both at the same step budget and without stopping targets, so whole curves are compared."""
    new = replace(settings_for(ReconstructionSettings, DEFAULT_QUALITY, w_steps=w_steps, noise_steps=noise_steps),
                  until_psnr=None, until_lpips=None)
    old = Recipe((WPlusStage((image_term(target),), steps=w_steps, lr=0.01, name="w_plus"),
                  NoiseStage(target, steps=noise_steps, name="noise")), application="reconstruct")
    return {"old": old, "new": reconstruction_recipe(target, new)}


def benchmark_faces(generator, workdir: Path) -> dict[str, dict]:
    """{name: {"target": [1, 3, R, R], "native": side in pixels of the face in its source}}."""
    size = generator.resolution
    faces = {}
    demo = write_demo_photo(workdir / "astronaut.png")
    faces["astronaut (demo)"] = {"target": load_image(demo, size),
                                 "native": ASTRONAUT_FACE_BOX[2] - ASTRONAUT_FACE_BOX[0]}
    try:
        faces["grace-hopper"] = _hopper(workdir, size)
    except Exception as exc:  # noqa: BLE001 - the bench still runs without the MTCNN weights or matplotlib's data
        print(f"skipping grace-hopper: {exc}")
    for seed in GENERATED_SEEDS:
        s = sample(generator, seed)
        with torch.no_grad():
            image = generator.synthesis(s.ws, s.noise).clamp(-1, 1).cpu()
        faces[f"seed-{seed}"] = {"target": image, "native": size}
    return faces


def _hopper(workdir: Path, size: int) -> dict:
    """Grace Hopper's portrait (US Navy, public domain; shipped with matplotlib), FFHQ-aligned."""
    import matplotlib.cbook

    from image2stylegan.align.ffhq import align_photo
    from image2stylegan.align.photo import load_photo

    photo = load_photo(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    aligned = align_photo(photo, size)
    path = workdir / "grace-hopper.png"
    atomic_save_png(path, aligned.image)
    quad = np.asarray(aligned.transform.quad)
    native = float(np.linalg.norm(quad[3] - quad[0]))
    return {"target": load_image(path, size), "native": round(native)}


def run_one(generator, perceptual, lpips, target, recipe) -> dict:
    """One reconstruction: per-step PSNR and seconds since the stage began; LPIPS every LPIPS_EVERY steps.

    Each stage's clock starts at 0 (:func:`_joined` chains the stages)."""
    curves: dict[str, dict[str, list]] = {}

    def on_step(info) -> None:
        c = curves.setdefault(info.stage, {"step": [], "seconds": [], "psnr": [], "lpips": []})
        c["step"].append(info.step)
        c["seconds"].append((c["seconds"][-1] if c["seconds"] else 0.0) + info.seconds)
        c["psnr"].append(info.psnr)
        if info.step % LPIPS_EVERY == 0 or info.step == info.steps:
            with torch.no_grad():
                value = float(lpips(info.image.clamp(-1, 1), target)[0])
            c["lpips"].append([info.step, value])

    embed(generator, recipe, perceptual=perceptual, callback=on_step)
    return curves


def summarise(curves: dict) -> dict:
    w = curves.get("w_plus", {"psnr": [float("nan")], "lpips": [], "seconds": [0.0], "step": [0]})
    out = {"w_plus_psnr": w["psnr"][-1], "w_plus_lpips": w["lpips"][-1][1] if w["lpips"] else None,
           "w_plus_seconds": w["seconds"][-1]}
    for checkpoint in (100, 300):
        if len(w["psnr"]) >= checkpoint:
            out[f"w_plus_psnr@{checkpoint}"] = w["psnr"][checkpoint - 1]
            out[f"w_plus_lpips@{checkpoint}"] = dict(map(tuple, w["lpips"])).get(checkpoint)
    out["w_plus_seconds_to_20db"] = _first(w, 20.0)
    out["w_plus_steps_to_20db"] = _first(w, 20.0, "step")
    both = _joined(curves)
    for db in THRESHOLDS["overall"]:
        out[f"seconds_to_{db:.0f}db"] = _first(both, db)
        out[f"steps_to_{db:.0f}db"] = _first(both, db, "step")
    if both["psnr"]:
        out["final_psnr"] = both["psnr"][-1]
        last = curves["noise"]["lpips"] if "noise" in curves else curves["w_plus"]["lpips"]
        out["final_lpips"] = last[-1][1] if last else None
        out["total_seconds"] = both["seconds"][-1]
    return out


def _joined(curves: dict) -> dict:
    """The stages' curves end to end (W+ first: a report read back from JSON has its keys sorted)."""
    psnr, seconds, offset = [], [], 0.0
    for name in sorted(curves, key=lambda stage: stage != "w_plus"):
        c = curves[name]
        psnr += c["psnr"]
        seconds += [offset + s for s in c["seconds"]]
        offset = seconds[-1] if seconds else 0.0
    return {"psnr": psnr, "seconds": seconds, "step": list(range(1, len(psnr) + 1))}


def _first(curve: dict, db: float, unit: str = "seconds") -> float | None:
    """The seconds (or the step) at which ``curve`` first reaches ``db``; None if it never does."""
    for p, s in zip(curve["psnr"], curve[unit]):
        if p >= db:
            return round(s, 1)
    return None


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faces = list(results)
    fig, axes = plt.subplots(1, len(faces), figsize=(4 * len(faces), 3.4), squeeze=False)
    for ax, face in zip(axes[0], faces):
        for name, run in results[face]["runs"].items():
            both = _joined(run["curves"])
            ax.plot(both["seconds"], both["psnr"], label=name)
        ax.set_title(f"{face} ({results[face]['native']} px)", fontsize=9)
        ax.set_xlabel("seconds (this machine)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PSNR (dB)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--w-steps", type=int, default=PRESETS[DEFAULT_QUALITY].embed_w_steps)
    parser.add_argument("--noise-steps", type=int, default=PRESETS[DEFAULT_QUALITY].embed_noise_steps)
    parser.add_argument("--faces", default="all", help="comma-separated face names, or 'all'")
    parser.add_argument("--variants", default="old,new", help="comma-separated: old, new")
    parser.add_argument("--table", type=Path, default=None, metavar="JSON",
                        help="print the README table of an earlier report instead of running (seconds from "
                             "--step-seconds)")
    parser.add_argument("--step-seconds", default="measured",
                        help="for --table: 'measured' (the report's own clock) or the W+ and noise step seconds of "
                             "a quiet machine, e.g. 1.39,1.0")
    parser.add_argument("--compile", action="store_true",
                        help="compile the generator's synthesis (as i2s --compile): faster long runs; the first W+ "
                             "and the first noise step then include the compile time")
    common_options(parser, "bench/results/convergence.json")
    args = parser.parse_args(argv)
    if args.table is not None:
        steps = None if args.step_seconds == "measured" else tuple(map(float, args.step_seconds.split(",")))
        print(table(json.loads(args.table.read_text()), steps))
        return {}

    device, generator, perceptual = bundled_models(args.device)
    if args.compile:
        generator.compile_synthesis()
    lpips = LPIPS.from_file(input_size=256).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        faces = benchmark_faces(generator, Path(tmp))
    if args.faces != "all":
        faces = {k: v for k, v in faces.items() if k in args.faces.split(",")}
    chosen = args.variants.split(",")
    results: dict = {}
    began = time.perf_counter()
    for face, info in faces.items():
        target = info["target"].to(device)
        results[face] = {"native": info["native"], "runs": {}}
        recipes = variants(target, args.w_steps, args.noise_steps)
        for name in chosen:
            curves = run_one(generator, perceptual, lpips, target, recipes[name])
            summary = summarise(curves)
            results[face]["runs"][name] = {"summary": summary, "curves": curves}
            print(f"{face:18s} {name:6s} " + " ".join(f"{k}={_fmt(v)}" for k, v in summary.items()), flush=True)
    report = {"machine": machine_info(device), "compiled": args.compile,
              "budget": {"w_steps": args.w_steps, "noise_steps": args.noise_steps},
              "variants": {k: r.summary() for k, r in variants(torch.zeros(1, 3, 8, 8), args.w_steps,
                                                                 args.noise_steps).items() if k in chosen},
              "faces": results,
              "seconds": time.perf_counter() - began}
    atomic_write_json(args.out, report)
    plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return report


def table(report: dict, step_seconds: tuple[float, float] | None = None) -> str:
    """The README's Markdown table from a report: per face and variant the W+ stage's PSNR / LPIPS after its
    budget, the step (and the seconds) at which the run first reached 20 dB in W+ and 30 / 33 dB overall, and the
    final PSNR / LPIPS. The seconds are the report's own clock, or with ``step_seconds`` (W+, noise) the steps at
    those seconds each (a quiet machine's, from bench/step_profile.py)."""
    budget = report["budget"]

    def at(step: float | None, clock: list[float]) -> str:
        if step is None:
            return "–"
        w = min(step, budget["w_steps"])
        if step_seconds is None:
            seconds = clock[int(step) - 1]
        else:
            seconds = w * step_seconds[0] + max(0, step - budget["w_steps"]) * step_seconds[1]
        label = f"{step:.0f}" if step <= budget["w_steps"] else f"{budget['w_steps']} + {step - budget['w_steps']:.0f}"
        return f"{label} ({seconds:.0f} s)"

    lines = ["| face (native px) | schedule | W+ PSNR / LPIPS | W+ to 20 dB | to 30 dB | to 33 dB | final PSNR / LPIPS |",
             "|---|---|---|---|---|---|---|"]
    for face, entry in report["faces"].items():
        for name, run in sorted(entry["runs"].items(), key=lambda item: item[0] != "old"):  # old first
            s, clock = _summary_steps(run), _joined(run["curves"])["seconds"]
            lines.append(f"| {face} ({entry['native']}) | {name} | {s['w_psnr']:.2f} dB / {s['w_lpips']:.3f} | "
                         f"{at(s['w20'], clock)} | {at(s['o30'], clock)} | {at(s['o33'], clock)} | "
                         f"{s['psnr']:.2f} dB / {s['lpips']:.3f} |")
    return "\n".join(lines)


def _summary_steps(run: dict) -> dict:
    curves = run["curves"]
    w, both = curves["w_plus"], _joined(curves)
    last = curves["noise"]["lpips"] if "noise" in curves else w["lpips"]
    return {"w_psnr": w["psnr"][-1], "w_lpips": w["lpips"][-1][1], "w20": _first(w, 20.0, "step"),
            "o30": _first(both, 30.0, "step"), "o33": _first(both, 33.0, "step"), "psnr": both["psnr"][-1],
            "lpips": last[-1][1]}


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) and not math.isnan(v) and abs(v) < 1 else (
        f"{v:.2f}" if isinstance(v, float) else str(v))


if __name__ == "__main__":
    main()
