"""Do the edits deliver? Scribble, inpainting and local style transfer, each against its naive baseline, on the demo
photo and on generated faces, for the paper's recipe and ours ('improved'), at the quick budget.

Every face is first embedded once at the 'draft' preset, as ``i2s reconstruct --quality draft`` would (cached in
``--cache``), and every edit starts from that embedding, as ``--from latent.npz`` does; inpainting starts from the
mean latent, as Alg. 4 says. The masks, the hole and the scribble are drawn here in the FFHQ frame (eyes near
y = 480 px, mouth near y = 735 px of 1024), so one set fits the demo photo and the generated faces alike.

    .venv/bin/python bench/edits.py                                   # every application, face and method
    .venv/bin/python bench/edits.py --apps scribble --faces seed-1 --methods improved --set w_lr=0.03

Writes ``--out`` (JSON: every run's metrics, seconds and machine) and one PNG panel per run beside it; ``--table``
prints the Markdown table of a JSON written before. Numbers depend on the CPU (the JSON records it).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from machine import bundled_models, common_options, machine_info  # bench/machine.py (scripts run from bench/)
from PIL import Image, ImageDraw

from image2stylegan.apps.demo import write_demo_photo
from image2stylegan.apps.inpaint import InpaintSettings, prepare_inpaint
from image2stylegan.apps.outputs import render
from image2stylegan.apps.presets import settings_for
from image2stylegan.apps.reconstruct import ReconstructionSettings, reconstruct
from image2stylegan.apps.sample import sample
from image2stylegan.apps.scribble import ScribbleSettings, prepare_scribble
from image2stylegan.apps.style_transfer import StyleTransferSettings, prepare_style_transfer
from image2stylegan.io import atomic_save_png, atomic_write_json, load_image, tensor_to_uint8
from image2stylegan.metrics import LPIPS

APPS = ("scribble", "inpaint", "style-transfer")
FACES = ("astronaut", "seed-1", "seed-2", "seed-3")
METHODS = ("paper", "improved")
QUALITY = "draft"  # the quick budget: every application finishes within 10 minutes on 2 CPU cores
SIZE = 1024


def draw_mask(draw) -> torch.Tensor:
    image = Image.new("L", (SIZE, SIZE), 0)
    draw(ImageDraw.Draw(image))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]


def scribbled(photo: torch.Tensor) -> torch.Tensor:
    """Dark strokes of hair over the forehead (bangs) and red on the lips, painted on the photo."""
    image = Image.fromarray(tensor_to_uint8(photo[0]))
    draw = ImageDraw.Draw(image)
    for x in range(330, 700, 45):
        draw.line((x, 240, x + 25, 400), fill=(60, 40, 30), width=34)
    draw.ellipse((420, 705, 590, 770), fill=(190, 30, 50))
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]


HOLE = lambda d: d.rectangle((360, 640, 660, 840), fill=255)  # noqa: E731 - the mouth and chin
FACE = lambda d: d.ellipse((250, 200, 780, 960), fill=255)  # noqa: E731 - the face and hair, kept in style transfer


def faces(generator, perceptual, cache: Path, names) -> dict[str, dict]:
    """{name: {"photo", "ws", "noise", "native"}}: each face and its draft embedding (computed once, cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in names:
        path = cache / f"{name}.pt"
        if not path.exists():
            if name == "astronaut":
                photo, native = load_image(write_demo_photo(cache / "astronaut.png"), SIZE), 176
            else:
                s = sample(generator, int(name.split("-")[1]))
                with torch.no_grad():
                    photo, native = generator.synthesis(s.ws, s.noise).clamp(-1, 1), SIZE
            started = time.perf_counter()
            result = reconstruct(generator, photo, perceptual, settings_for(ReconstructionSettings, QUALITY))
            torch.save({"photo": photo, "ws": result.ws, "noise": result.noise, "native": native,
                        "seconds": time.perf_counter() - started}, path)
        out[name] = torch.load(path)
    return out


def style_image() -> torch.Tensor:
    from skimage import data  # the demo extra

    image = Image.fromarray(data.hubble_deep_field()).resize((SIZE, SIZE), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]


def plan_for(app: str, generator, perceptual, lpips, face: dict, method: str, overrides: dict):
    """The application's plan at the quick budget, from the face's embedding."""
    start = {"ws": face["ws"], "noise": face["noise"]}
    if app == "scribble":
        settings = settings_for(ScribbleSettings, QUALITY, method=method, **overrides)
        return prepare_scribble(generator, face["photo"], scribbled(face["photo"]), settings, **start)
    if app == "inpaint":
        settings = settings_for(InpaintSettings, QUALITY, method=method, **overrides)
        return prepare_inpaint(generator, face["photo"], draw_mask(HOLE), settings, reference=face["photo"],
                               lpips=lpips)
    settings = settings_for(StyleTransferSettings, QUALITY, method=method, **overrides)
    return prepare_style_transfer(generator, face["photo"], style_image(), draw_mask(FACE), perceptual, settings,
                                  **start)


def headline(app: str, m: dict) -> dict:
    """The numbers the issue's targets are stated in."""
    if app == "scribble":
        return {"edit_progress": m["edit_progress"]["final"], "psnr_outside_dilated_db":
                m["psnr_outside_dilated_edit_db"]["final"], "progress_after_w_plus": m["edit_progress"]["after_w_plus"]}
    if app == "inpaint":
        r = m["reference"]
        return {"hole_db": r["psnr_hole_db"], "filled_hole_db": r["filled_psnr_hole_db"],
                "fill_db": r["naive_fill_psnr_hole_db"], "telea_db": r["telea_psnr_hole_db"],
                "lpips_box": r["lpips_hole_box"], "filled_lpips_box": r["filled_lpips_hole_box"],
                "fill_lpips_box": r["naive_fill_lpips_hole_box"], "telea_lpips_box": r["telea_lpips_hole_box"],
                "known_db": m["psnr_known_db"]}
    return {"gram_reduction": m["style_distance_reduction_vs_content"],
            "psnr_inside_db": m["psnr_inside_mask_db"]["final"],
            "gram_final": m["style_distance_outside"]["final"], "gram_copy_paste": m["style_distance_outside_naive"],
            "gram_content": m["style_distance_outside_content"]}


def parse_overrides(items) -> dict:
    out = {}
    for item in items or ():
        key, _, value = item.partition("=")
        out[key] = json.loads(value) if value[:1] in "0123456789-[{tfn" else value
    return out


def table(report: dict) -> str:
    lines = []
    for app in APPS:
        runs = [r for r in report["runs"] if r["app"] == app]
        if not runs:
            continue
        keys = list(runs[0]["headline"])
        lines += [f"\n{app}\n", "| face | method | " + " | ".join(keys) + " | seconds |",
                  "|" + "---|" * (len(keys) + 3)]
        for r in runs:
            cells = ["-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in r["headline"].values()]
            lines.append(f"| {r['face']} | {r['method']}{r['tag']} | " + " | ".join(cells) + f" | {r['seconds']:.0f} |")
    return "\n".join(lines)


def describe(app: str, h: dict) -> str:
    """One cell: the run's numbers in the issue's terms."""
    if app == "scribble":
        return f"{100 * h['edit_progress']:.0f} % to the scribble; {h['psnr_outside_dilated_db']:.1f} dB outside"
    if app == "inpaint":
        if "filled_hole_db" in h:  # the filled photo (render blended into the known pixels), then the render
            return (f"filled: hole {h['filled_hole_db']:.1f} dB (flat {h['fill_db']:.1f}, Telea {h['telea_db']:.1f}); "
                    f"LPIPS {h['filled_lpips_box']:.3f} ({h['fill_lpips_box']:.3f}, {h['telea_lpips_box']:.3f}); "
                    f"render: hole {h['hole_db']:.1f} dB, LPIPS {h['lpips_box']:.3f}, known {h['known_db']:.1f} dB")
        return (f"hole {h['hole_db']:.1f} dB (flat {h['fill_db']:.1f}, Telea {h['telea_db']:.1f}); LPIPS "
                f"{h['lpips_box']:.3f} ({h['fill_lpips_box']:.3f}, {h['telea_lpips_box']:.3f}); known {h['known_db']:.1f} dB")
    return f"Gram {100 * h['gram_reduction']:.0f} % below the content's; {h['psnr_inside_db']:.1f} dB inside"


def summary(report: dict) -> str:
    """The Markdown table of untagged runs: per application and face, the paper's recipe beside ours."""
    lines = ["| application | face | `--method paper` | `--method improved` (default) | seconds (improved) |",
             "|---|---|---|---|---|"]
    for app in APPS:
        for face in FACES:
            runs = {r["method"]: r for r in report["runs"] if r["app"] == app and r["face"] == face and not r["tag"]}
            if not runs:
                continue
            cells = [describe(app, runs[m]["headline"]) if m in runs else "not run" for m in METHODS]
            seconds = f"{runs['improved']['seconds']:.0f}" if "improved" in runs else "-"
            lines.append(f"| {app} | {face} | {cells[0]} | {cells[1]} | {seconds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_options(parser, "bench/results/edits.json")
    parser.add_argument("--apps", default=",".join(APPS))
    parser.add_argument("--faces", default=",".join(FACES))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="a settings override (repeatable)")
    parser.add_argument("--cache", type=Path, default=Path("out/bench-edits"), help="the faces' draft embeddings")
    parser.add_argument("--append", action="store_true", help="add to the runs already in --out")
    parser.add_argument("--tag", default="", help="a label for these runs (e.g. the code change being tried)")
    parser.add_argument("--save-results", action="store_true", help="also write each result at full size")
    parser.add_argument("--table", action="store_true", help="print the tables of --out and stop")
    parser.add_argument("--summary", action="store_true", help="print the paper-vs-improved table of --out and stop")
    args = parser.parse_args()
    if args.table or args.summary:
        report = json.loads(args.out.read_text())
        print(table(report) if args.table else summary(report))
        return
    device, generator, perceptual = bundled_models(args.device)
    lpips = LPIPS.from_file(input_size=256).to(device)
    overrides = parse_overrides(args.set)
    tag = "".join(" " + part for part in (args.tag, ",".join(args.set or [])) if part)
    report = json.loads(args.out.read_text()) if args.append and args.out.exists() else {"runs": []}
    report["machine"] = machine_info(device)
    chosen = faces(generator, perceptual, args.cache, args.faces.split(","))
    for name, face in chosen.items():
        face = {k: v.to(device) if isinstance(v, torch.Tensor) else [n.to(device) for n in v] if isinstance(v, list)
                else v for k, v in face.items()}
        for app in args.apps.split(","):
            for method in args.methods.split(","):
                started = time.perf_counter()
                plan = plan_for(app, generator, perceptual, lpips, face, method, overrides)
                result = plan.run(generator, perceptual, None)
                seconds = time.perf_counter() - started
                run = {"app": app, "face": name, "native": face["native"], "method": method, "tag": tag,
                       "overrides": overrides, "seconds": seconds, "headline": headline(app, result.metrics),
                       "metrics": result.metrics}
                report["runs"].append(run)
                print(json.dumps({k: run[k] for k in ("app", "face", "method", "tag", "seconds", "headline")}),
                      flush=True)
                panel = torch.cat([image for _, image in result.panel], dim=-1)
                stem = f"{app}_{name}_{method}{tag.replace(' ', '_').replace(',', '_').replace('=', '')}"
                atomic_save_png(args.out.with_name(f"{stem}.png"), tensor_to_uint8(
                    torch.nn.functional.interpolate(panel[None].clamp(-1, 1), scale_factor=0.25, mode="area")[0]))
                if args.save_results:  # the full-size result, to study a change (a blend, a crop) without a rerun
                    atomic_save_png(args.out.with_name(f"{stem}_result.png"), tensor_to_uint8(
                        render(generator, result)[0].clamp(-1, 1)))
                atomic_write_json(args.out, report)
    print(table(report))


if __name__ == "__main__":
    main()
