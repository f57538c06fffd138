"""Folder-run throughput of ``i2s reconstruct`` at a fixed step budget, batch size 1 against batch size B, and the
FFHQ alignment error on the astronaut photo.

Four crops of the public-domain astronaut photo are reconstructed through the same code as the CLI's folder run
(``apps.batch_run.run_folder``: load, embed, write every output and results.csv), once per batch size, each into a
fresh folder. Images per hour = images / wall seconds of the whole run (outputs included) * 3600; the embedding
alone is reported too.

Alignment error, measured as in tests/test_align.py: MTCNN's eyes and mouth on the 512 px photo are aligned to
1024 px; the aligned image is scaled back to the face's size in the photo and detected again; the distance of those
points from the recipe's canonical positions (in pixels of the 1024 px aligned image) is the error. The
hand-measured eye and mouth positions of the photo, mapped through the transform, give a second, detector-free
figure.

    .venv/bin/python bench/batch.py                      # 20 W+ + 10 noise steps, batch 1 vs 4, on the CPU
    .venv/bin/python bench/batch.py --device cuda --batch-sizes 1 4 8 --images 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info  # bench/machine.py (scripts run from bench/)
from PIL import Image

from image2stylegan.apps.batch_plan import plan
from image2stylegan.apps.batch_results import ResultsTable
from image2stylegan.apps.batch_run import FolderJob, run_folder
from image2stylegan.apps.reconstruct import STAGE_NAMES, ReconstructionSettings
from image2stylegan.cli import resolve_device
from image2stylegan.generators.registry import load_generator
from image2stylegan.io import atomic_write_json
from image2stylegan.losses import PerceptualLoss
from image2stylegan.metrics import LPIPS

# Hand-measured in the 512 px astronaut photo (tests/test_align.py): pupils and the mouth corners' midpoint.
HAND_EYES = np.array([[203.0, 101.0], [247.0, 102.5]])
HAND_MOUTH = np.array([223.0, 141.5])


def write_photos(folder: Path, count: int) -> None:
    """``count`` different 176 px crops around the astronaut's face, resized to 256 px."""
    from skimage import data

    astronaut = data.astronaut()
    for i in range(count):
        left, top = 120 + 10 * (i % 4), 10 + 8 * (i // 4) + 4 * (i % 3)
        crop = astronaut[top : top + 176, left : left + 176]
        Image.fromarray(crop).resize((256, 256), Image.Resampling.LANCZOS).save(folder / f"photo{i:02d}.png")


def throughput(job_args: dict, folder: Path, batch_size: int) -> dict:
    job = FolderJob(**job_args, batch_size=batch_size)
    items = plan([folder])
    embed_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        outdir = Path(tmp)
        table = ResultsTable(outdir, items, STAGE_NAMES)

        def on_step(info) -> None:
            embed_seconds.append(info.seconds)

        start = time.perf_counter()
        run_folder(job, items, outdir, table, step_callback=on_step)
        wall = time.perf_counter() - start
        rows = [table.rows[it.index] for it in items]
    psnr = [float(r["psnr_noise_db"]) for r in rows if r["status"] == "ok"]
    result = {
        "batch_size": batch_size,
        "images": len(items),
        "wall_seconds": round(wall, 1),
        "optimisation_step_seconds": round(sum(embed_seconds), 1),
        "images_per_hour": round(len(items) / wall * 3600, 1),
        "images_per_hour_optimisation_only": round(len(items) / sum(embed_seconds) * 3600, 1),
        "mean_final_psnr_db": round(statistics.mean(psnr), 3) if psnr else None,
    }
    print(f"batch {batch_size}: {wall:.0f} s for {len(items)} images = {result['images_per_hour']} images/hour "
          f"(optimisation steps alone {result['images_per_hour_optimisation_only']}/hour), "
          f"mean PSNR {result['mean_final_psnr_db']} dB", flush=True)
    return result


def alignment_error() -> dict:
    from skimage import data

    from image2stylegan.align import align_face, canonical_points, detect_faces, load_mtcnn

    photo = np.ascontiguousarray(data.astronaut()[:, :, :3])
    detector = load_mtcnn()
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # MTCNN's many tiny ops run faster on one thread
    try:
        face = detect_faces(photo, detector)[0]
        aligned = align_face(photo, face, 1024)
        tr = aligned.transform
        canon = canonical_points(tr)
        side = round(tr.scale * 1024)
        small = np.asarray(Image.fromarray(aligned.image).resize((side, side), Image.Resampling.LANCZOS))
        again = (detect_faces(small, detector)[0].landmarks + 0.5) * 1024 / side - 0.5
    finally:
        torch.set_num_threads(before)
    found = {"eye_left": again[0], "eye_right": again[1], "mouth": (again[3] + again[4]) / 2}
    redetected = {k: float(np.hypot(*(found[k] - canon[k]))) for k in canon}
    hand = {"eye_left": HAND_EYES[0], "eye_right": HAND_EYES[1], "mouth": HAND_MOUTH}
    by_hand = {k: float(np.hypot(*(tr.to_aligned(hand[k]) - canon[k]))) for k in canon}
    result = {
        "units": "pixels of the 1024 px aligned image",
        "redetected_vs_canonical": {k: round(v, 2) for k, v in redetected.items()},
        "redetected_mean": round(statistics.mean(redetected.values()), 2),
        "hand_measured_vs_canonical": {k: round(v, 2) for k, v in by_hand.items()},
        "hand_measured_mean": round(statistics.mean(by_hand.values()), 2),
        "photo_pixels_per_aligned_pixel": round(tr.scale, 4),
    }
    print(f"alignment error (1024 px): re-detected {result['redetected_mean']} px mean "
          f"({', '.join(f'{k} {v:.1f}' for k, v in redetected.items())}); hand-measured {result['hand_measured_mean']} "
          f"px mean (x {tr.scale:.3f} for photo pixels)", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--w-steps", type=int, default=20)
    parser.add_argument("--noise-steps", type=int, default=10)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument("--out", type=Path, default=Path("bench/results/batch.json"))
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    align = alignment_error()
    generator = load_generator(device=device)
    job_args = dict(
        generator=generator, perceptual=PerceptualLoss.from_file().to(device),
        lpips=LPIPS.from_file(input_size=256).to(device),
        settings=ReconstructionSettings(w_steps=args.w_steps, noise_steps=args.noise_steps),
        weights_sha256=None, device=str(device),
    )
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        write_photos(Path(tmp), args.images)
        for batch_size in args.batch_sizes:
            runs.append(throughput(job_args, Path(tmp), batch_size))
    report = {
        "machine": machine_info(device),
        "budget": {"w_steps": args.w_steps, "noise_steps": args.noise_steps, "images": args.images,
                   "resolution": generator.resolution},
        "throughput": runs,
        "alignment_error": align,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
