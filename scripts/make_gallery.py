"""Render every application of the paper from real inputs through the ``i2s`` CLI, for the README gallery.

Inputs: NASA's public-domain astronaut portrait (scikit-image), faces sampled from the bundled generator (``i2s
sample``, exact latents, nothing to embed), the Hubble Deep Field (NASA/ESA, public domain, shipped with
scikit-image) as the style image, and masks and a scribble drawn here with Pillow.

The astronaut is embedded once (``i2s reconstruct``) and every edit starts from that embedding (``--from``), as a
user would. Each command's panel is shrunk into ``docs/gallery/<name>.jpg``; ``docs/gallery/results.json`` holds
each command line, its headline metrics and its wall-clock seconds (what the README's gallery table quotes).

Every command runs at its quick budget (``--quality draft``). Usage: ``make gallery`` (about 50 minutes on 2 CPU
cores), or ``python scripts/make_gallery.py --check`` to check the pipeline with a few steps per stage.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from image2stylegan.apps.demo import write_demo_photo
from image2stylegan.io import atomic_save_png, atomic_write_bytes, atomic_write_json, load_image, tensor_to_uint8

SIZE = 1024
TILE = 256  # gallery panels are shrunk to this many px per tile
FACE_A, FACE_B, FACE_GLASSES = 1, 3, 11  # i2s sample seeds: a woman, a man, a woman with glasses

# Budgets: the gallery runs every application at its quick budget (``--quality draft``: the photo's embedding
# 50 + 50 steps, an edit 100 + 100, each command within 10 minutes on 2 CPU cores); --check runs 3 + 2 steps per
# stage to check the pipeline only.
BUDGETS = {
    "quick": ["--quality", "draft"],
    "check": ["--w-steps", "3", "--noise-steps", "2"],
}


def i2s() -> list[str]:
    """The ``i2s`` entry point of this interpreter's environment."""
    script = Path(sys.executable).with_name("i2s")
    return [str(script)] if script.exists() else [sys.executable, "-m", "image2stylegan.cli"]


def make_inputs(folder: Path) -> dict[str, Path]:
    """Write the photo, the faces, the masks, the scribble and the style image into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    crop = write_demo_photo(folder / "astronaut-crop.png")
    # Resize once, exactly as the CLI would, so the scribbled copy differs from the photo only where drawn.
    photo = load_image(crop, SIZE)
    photo_u8 = tensor_to_uint8(photo[0])
    paths = {"photo": folder / "astronaut.png"}
    atomic_save_png(paths["photo"], photo_u8)

    run([*i2s(), "sample", "--seeds", f"{FACE_A},{FACE_B},{FACE_GLASSES}", "--outdir", str(folder / "faces")])
    for key, seed in (("face_a", FACE_A), ("face_b", FACE_B), ("face_glasses", FACE_GLASSES)):
        paths[key] = folder / "faces" / f"seed{seed:04d}.npz"

    # Masks in the 1024 px frame of the astronaut crop: eyes near y = 480, mouth near (500, 735).
    def mask(name: str, draw) -> None:
        image = Image.new("L", (SIZE, SIZE), 0)
        draw(ImageDraw.Draw(image))
        paths[name] = folder / f"{name}.png"
        atomic_save_png(paths[name], np.asarray(image.convert("RGB")))

    mask("hole", lambda d: d.rectangle((360, 640, 660, 840), fill=255))  # the mouth and chin
    mask("face", lambda d: d.ellipse((250, 200, 780, 960), fill=255))  # the face and hair, kept in style transfer
    mask("eyes", lambda d: d.rectangle((250, 380, 780, 580), fill=255))  # where the glasses go

    # Scribble: dark strokes of hair over the forehead (bangs) and red on the lips.
    scribbled = Image.fromarray(photo_u8)
    draw = ImageDraw.Draw(scribbled)
    for x in range(330, 700, 45):
        draw.line((x, 240, x + 25, 400), fill=(60, 40, 30), width=34)
    draw.ellipse((420, 705, 590, 770), fill=(190, 30, 50))
    paths["scribbled"] = folder / "astronaut-scribbled.png"
    atomic_save_png(paths["scribbled"], np.asarray(scribbled))

    # A second scene on a generated face: dark, thick eyebrows and a dark fringe of beard on the chin.
    face = Image.open(folder / "faces" / f"seed{FACE_B:04d}.png").convert("RGB")
    paths["face_b_png"] = folder / "faces" / f"seed{FACE_B:04d}.png"
    draw = ImageDraw.Draw(face)
    for box in ((330, 420, 470, 455), (555, 420, 695, 455)):
        draw.rounded_rectangle(box, radius=16, fill=(45, 35, 30))
    draw.chord((360, 700, 665, 910), 0, 180, fill=(50, 40, 35))
    paths["face_b_scribbled"] = folder / "face-b-scribbled.png"
    atomic_save_png(paths["face_b_scribbled"], np.asarray(face))
    paths["face_a_png"] = folder / "faces" / f"seed{FACE_A:04d}.png"

    from skimage import data  # the demo extra

    style = Image.fromarray(data.hubble_deep_field()).resize((SIZE, SIZE), Image.LANCZOS)
    paths["style"] = folder / "hubble.png"
    atomic_save_png(paths["style"], np.asarray(style.filter(ImageFilter.SMOOTH)))
    return paths


def run(command: list[str]) -> float:
    """Run one CLI command (failing loudly) and return its wall-clock seconds."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - start


def shrink(panel: Path, out: Path) -> None:
    """The panel at TILE px per tile as a JPEG (the README needs no 1024 px tiles)."""
    image = Image.open(panel).convert("RGB")
    scale = TILE / (image.height * 0.92)  # the panel's tiles are nearly as tall as the panel (labels sit on top)
    image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88, optimize=True)
    atomic_write_bytes(out, buffer.getvalue())


def base(name: str) -> str:
    """The application of a gallery entry ('scribble-face' is a second scene of 'scribble')."""
    return name.removesuffix("-face")


def headline(name: str, metrics: dict) -> dict:
    """The numbers that say whether each recipe did its job (the README table quotes them)."""
    return metrics["stages"] if base(name) == "reconstruct" else metrics["metrics"]


def summary(name: str, entry: dict) -> str:
    """One line of the gallery table: the metrics that show the recipe working, beside its naive baseline."""
    m = entry["metrics"]
    name = base(name)

    def db(x):
        return "n/a" if x is None else f"{x:.1f} dB"

    if name == "reconstruct":
        last = [stage for stage in m if stage != "w_plus"][-1] if len(m) > 1 else "w_plus"  # keys come sorted
        return f"PSNR {db(m['w_plus']['psnr_db'])} after W+, {db(m[last]['psnr_db'])} after noise; LPIPS {m[last]['lpips']:.3f}"
    if name == "crossover":
        return f"PSNR vs A inside the mask {db(m['psnr_a_inside_db'])}, vs B outside {db(m['psnr_b_outside_db'])}"
    if name == "inpaint":
        ref = m.get("reference", {})
        return (f"in the hole vs the original: filled photo PSNR {db(ref.get('filled_psnr_hole_db'))}, LPIPS around "
                f"it {ref.get('filled_lpips_hole_box', float('nan')):.3f}; render PSNR {db(ref.get('psnr_hole_db'))} (flat fill "
                f"{db(ref.get('naive_fill_psnr_hole_db'))}, OpenCV Telea {db(ref.get('telea_psnr_hole_db'))}), LPIPS "
                f"around it {ref.get('lpips_hole_box', float('nan')):.3f} (flat {ref.get('naive_fill_lpips_hole_box', float('nan')):.3f}, "
                f"Telea {ref.get('telea_lpips_hole_box', float('nan')):.3f}); known region {db(m['psnr_known_db'])}")
    if name == "style-transfer":
        return (f"Gram distance outside the mask {100 * m['style_distance_reduction_vs_content']:.0f} % below the "
                f"content's own; PSNR vs the content inside {db(m['psnr_inside_mask_db']['final'])}")
    if name == "scribble":
        return (f"the edited pixels moved {100 * (m['edit_progress']['final'] or 0):.0f} % of the way to the scribble's "
                f"colours; PSNR vs the photo outside the dilated edit {db(m['psnr_outside_dilated_edit_db']['final'])}")
    if name == "transfer-attribute":
        return (f"PSNR vs A's render outside the mask {db(m['psnr_outside_mask_vs_a_render_db'])}; activations outside "
                f"the mask changed: {m['activation_changed_fraction_outside_mask']:.0%}")
    if name == "latent-edit":
        return (f"PSNR vs the global edit outside the mask {db(m['psnr_outside_mask_vs_global_edit_db'])}; activations "
                f"outside the mask changed: {m['activation_changed_fraction_outside_mask']:.0%}")
    return ""


def write_table(gallery: Path, results: dict) -> None:
    """docs/gallery/README.md: every panel with its command, headline metric and time."""
    lines = ["# Gallery", "", "Made by `make gallery` (`scripts/make_gallery.py`) on "
             f"{results['machine']['platform']}, torch {results['machine']['torch']}, "
             f"{results['machine']['cpu_threads']} threads. Seconds are wall-clock per command, weights loading included.", ""]
    order = ["reconstruct", "crossover", "inpaint", "inpaint-face", "style-transfer", "style-transfer-face", "scribble",
             "scribble-face", "transfer-attribute", "latent-edit"]
    for name, entry in sorted(results["applications"].items(), key=lambda kv: order.index(kv[0])):
        lines += [f"## {entry['caption']}", "", f"![{name}]({name}.jpg)", "", f"`{entry['command']}`", "",
                  f"{summary(name, entry)}; {entry['seconds']:.0f} s.", ""]
    atomic_write_bytes(gallery / "README.md", "\n".join(lines).encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outdir", type=Path, default=Path("docs/gallery"), help="Where the JPEGs and results.json go.")
    parser.add_argument("--work", type=Path, default=Path("out/gallery"), help="Full-size outputs of every command.")
    parser.add_argument("--check", action="store_true", help="A few steps per stage: checks the pipeline only.")
    parser.add_argument("--only", default=None,
                        help="Comma-separated applications to run again, keeping the others' results (their outputs "
                             "in --work are reused, e.g. the reconstruction every edit starts from).")
    args = parser.parse_args()
    budget = BUDGETS["check" if args.check else "quick"]
    work, gallery = args.work, args.outdir
    gallery.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(work / "inputs")
    p = {k: str(v) for k, v in inputs.items()}

    recon = work / "reconstruct"
    latent = str(recon / "latent.npz")
    jobs: list[tuple[str, str, list[str], Path, str]] = [
        ("reconstruct", "Reconstruction (Alg. 2): W+ stage, then the noise stage",
         ["reconstruct", p["photo"], *budget], recon, "comparison.png"),
        ("crossover", "Crossover (Alg. 3): the astronaut's left half, a generated face's right half",
         ["crossover", "--from-a", latent, "--from-b", p["face_a"], "--mask", "left-half", *budget],
         work / "crossover", "panel.png"),
        ("inpaint", "Inpainting (Alg. 4): mouth and chin removed, filled by the generator",
         ["inpaint", p["photo"], "--mask", p["hole"], "--reference", p["photo"], *budget], work / "inpaint",
         "panel.png"),
        ("inpaint-face", "Inpainting (Alg. 4) of a generated face's mouth and chin",
         ["inpaint", p["face_b_png"], "--mask", p["hole"], "--reference", p["face_b_png"], *budget],
         work / "inpaint-face", "panel.png"),
        ("style-transfer", "Local style transfer (Alg. 6): face kept, the Hubble Deep Field's style around it",
         ["style-transfer", p["photo"], p["style"], "--from", latent, "--mask", p["face"], *budget],
         work / "style-transfer", "panel.png"),
        ("style-transfer-face", "Local style transfer (Alg. 6) around a generated face",
         ["style-transfer", p["face_a_png"], p["style"], "--from", p["face_a"], "--mask", p["face"], *budget],
         work / "style-transfer-face", "panel.png"),
        ("scribble", "Scribble edit (Alg. 5): bangs and red lips drawn roughly, made photo-real",
         ["scribble", p["photo"], p["scribbled"], "--from", latent, *budget], work / "scribble", "panel.png"),
        ("scribble-face", "Scribble edit (Alg. 5): thick dark eyebrows and a beard drawn on a generated face",
         ["scribble", p["face_b_png"], p["face_b_scribbled"], "--from", p["face_b"], *budget],
         work / "scribble-face", "panel.png"),
        ("transfer-attribute", "Attribute transfer (Eq. 5): a generated face's glasses at b16.conv1",
         ["transfer-attribute", "--from-a", latent, "--from-b", p["face_glasses"], "--mask", p["eyes"]],
         work / "transfer-attribute", "panel.png"),
        ("latent-edit", "Local + global edit: morph to a generated face (λ = 0.5) with the glasses pasted at b16.conv1",
         ["latent-edit", latent, p["face_b"], "--op", "morph", "--amount", "0.5", "--noise", "b", "--layer", "b16.conv1",
          "--mask", p["eyes"], "--from-activation", p["face_glasses"]],
         work / "latent-edit", "panel.png"),
    ]
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu_threads": torch.get_num_threads(), "platform": platform.platform()},
               "check": args.check, "applications": {}}
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {job[0] for job in jobs}
        if unknown:
            parser.error(f"--only: unknown application(s) {sorted(unknown)}")
        results["applications"] = json.loads((gallery / "results.json").read_text())["applications"]
        jobs = [job for job in jobs if job[0] in wanted]
    for name, caption, command, outdir, panel in jobs:
        quiet = [] if name == "latent-edit" else ["--quiet"]  # latent-edit optimises nothing: no progress bars
        seconds = run([*i2s(), *command, "--outdir", str(outdir), *quiet])
        metrics = json.loads((outdir / "metrics.json").read_text())
        shrink(outdir / panel, gallery / f"{name}.jpg")
        results["applications"][name] = {
            "caption": caption, "command": "i2s " + " ".join(command), "seconds": round(seconds, 1),
            "stages": metrics.get("stages"), "metrics": headline(name, metrics),
        }
        atomic_write_json(gallery / "results.json", results)  # after each job: a stopped run keeps what it did
        write_table(gallery, results)
    write_table(gallery, results)
    print(f"gallery in {gallery}/ ({len(results['applications'])} panels); full-size outputs in {work}/")


if __name__ == "__main__":
    main()
