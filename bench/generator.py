"""Benchmark of the generators: seconds per W+ step (forward + backward), as the W+ stage runs them.

One step = render ``ws`` [1, num_ws, w_dim] (``requires_grad``) with the stored noise, ``loss = image.square().mean()``,
``loss.backward()``; the generator is frozen and in eval mode, as in an embedding. Measured for StyleGAN2 config-f
(channel_base 32768, channel_max 512, 8 mapping layers) at 256 and 1024 px with seeded random weights, and for the
bundled generator when its weights are fetched; on the CPU, and on CUDA when available. Prints and writes JSON.

With ``I2S_REFERENCE_REPO`` pointing to a checkout of NVlabs/stylegan2-ada-pytorch, the same run also times NVIDIA's
own ``training/networks.py`` on the same weights (their generator is built from the checkout, pickled the way their
training loop does and loaded by our converter) and reports ours / theirs. NVIDIA's compiled CUDA kernels are never
built: on a GPU their ops are kept on the pure-PyTorch reference path. Nothing from the checkout is copied here.

    .venv/bin/python bench/generator.py
    I2S_REFERENCE_REPO=/path/to/stylegan2-ada-pytorch .venv/bin/python bench/generator.py --threads 2
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import pickle
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from machine import machine_info  # bench/machine.py (scripts run from bench/)

from image2stylegan.errors import Image2StyleGANError
from image2stylegan.generators.checkpoints import load_checkpoint
from image2stylegan.generators.registry import load_generator
from image2stylegan.generators.stylegan2 import StyleGAN2, StyleGAN2Config
from image2stylegan.io import atomic_write_json

CONFIG_F = dict(z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512)


def one_step(render, ws: torch.Tensor) -> float:
    """Wall seconds of one W+ step."""
    w = ws.detach().clone().requires_grad_(True)
    if ws.device.type == "cuda":
        torch.cuda.synchronize(ws.device)
    start = time.perf_counter()
    render(w).square().mean().backward()
    if ws.device.type == "cuda":
        torch.cuda.synchronize(ws.device)
    return time.perf_counter() - start


def step_seconds(render, ws: torch.Tensor, reps: int) -> list[float]:
    """Wall seconds of ``reps`` W+ steps after one warm-up step (oneDNN / cuDNN set-up, allocator)."""
    one_step(render, ws)
    return [one_step(render, ws) for _ in range(reps)]


def near_mean_ws(g, device: torch.device) -> torch.Tensor:
    """A seeded W+ latent scattered around the mean one, [1, num_ws, w_dim], like an embedding under way."""
    noise = torch.randn(1, g.num_ws, g.w_dim, generator=torch.Generator().manual_seed(1))
    return g.mean_ws(1) + 0.7 * noise.to(device)


def random_stylegan2(resolution: int, seed: int) -> StyleGAN2:
    """Config-f with seeded random weights; biases, noise strengths and w_avg non-zero so every path runs."""
    g = StyleGAN2(StyleGAN2Config(resolution=resolution, **CONFIG_F))
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in g.state_dict().items():
            r = torch.randn(t.shape, generator=rng)
            if key.endswith("affine.bias"):
                r = 1 + 0.1 * r
            elif key.endswith(("bias", "strength")):
                r = 0.1 * r
            t.copy_(r)
    return g.requires_grad_(False).eval()


def import_reference(repo: Path):
    """NVIDIA's ``training.networks`` from a checkout, with their CUDA plugins disabled (reference ops only)."""
    sys.path.insert(0, str(repo))
    try:
        importlib.import_module("requests")
    except ImportError:  # dnnlib.util imports it for URL downloads, which the benchmark never does
        sys.modules["requests"] = types.ModuleType("requests")
    networks = importlib.import_module("training.networks")
    for op in ("bias_act", "upfirdn2d"):
        importlib.import_module(f"torch_utils.ops.{op}")._init = lambda: False
    return networks


def reference_pair(networks, resolution: int, seed: int, device: torch.device, tmp: Path):
    """NVIDIA's generator (seeded, non-zero biases / noise strengths / w_avg) and ours loaded from its pickle."""
    torch.manual_seed(seed)
    G = networks.Generator(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3, mapping_kwargs=dict(num_layers=8),
        synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=0, conv_clamp=None),
    )
    rng = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("bias", "noise_strength")):
                p.copy_((1.0 if name.endswith("affine.bias") else 0.0) + 0.1 * torch.randn(p.shape, generator=rng))
        G.mapping.w_avg.copy_(torch.randn(512, generator=rng))
    G = G.eval().requires_grad_(False)
    path = tmp / f"reference-{resolution}.pkl"
    with open(path, "wb") as f:
        pickle.dump({"G_ema": copy.deepcopy(G)}, f)  # as training_loop.py snapshots it
    ours = load_checkpoint(path, device=device)
    path.unlink()
    return G.to(device), ours


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--reps", type=int, default=3, help="timed steps per case (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--out", type=Path, default=Path("bench/results/generator.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    repo = os.environ.get("I2S_REFERENCE_REPO")
    networks = import_reference(Path(repo)) if repo else None

    results = []

    def record(device, name, ours_times, ref_times=None, note=None):
        row = {"device": device, "generator": name, "ours_s": statistics.median(ours_times), "ours_all_s": ours_times}
        if ref_times:
            row |= {"reference_s": statistics.median(ref_times), "reference_all_s": ref_times,
                    "ratio_ours_over_reference": statistics.median(ours_times) / statistics.median(ref_times)}
        if note:
            row["note"] = note
        results.append(row)
        ref = ""
        if ref_times:
            ref = f", NVIDIA reference {row['reference_s']:.3f} s, ratio {row['ratio_ours_over_reference']:.3f}"
        print(f"{device:5s} {name:32s} ours {row['ours_s']:.3f} s/step{ref}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for device in map(torch.device, devices):
            for res in args.resolutions:
                name = f"stylegan2-config-f-{res}"
                if networks is None:
                    g = random_stylegan2(res, seed=res).to(device)
                    ws = near_mean_ws(g, device)
                    record(str(device), name, step_seconds(g.synthesis, ws, args.reps))
                    continue
                G, g = reference_pair(networks, res, seed=res, device=device, tmp=Path(tmp))
                ws = near_mean_ws(g, device)
                theirs = lambda w: G.synthesis(w, noise_mode="const", force_fp32=True)  # noqa: E731
                one_step(g.synthesis, ws), one_step(theirs, ws)  # warm-up
                ours, ref = [], []
                for _ in range(args.reps):  # interleaved, so that load changes hit both alike
                    ours.append(one_step(g.synthesis, ws))
                    ref.append(one_step(theirs, ws))
                record(str(device), name, ours, ref)
                del G, g
            try:
                bundled = load_generator(device=device)
            except Image2StyleGANError as e:
                results.append({"device": str(device), "generator": "bundled", "skipped": str(e)})
                print(f"{device}: bundled generator skipped: {e}", flush=True)
                continue
            ws = near_mean_ws(bundled, device)
            record(str(device), bundled.name + " (bundled)", step_seconds(bundled.synthesis, ws, args.reps))

    report = {
        "what": "seconds per W+ step: forward + backward, batch 1, ws.requires_grad, loss = image.square().mean()",
        "machine": machine_info(),
        "reference_repo": repo,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    return report


if __name__ == "__main__":
    main()
