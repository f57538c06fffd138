"""Golden outputs of every application on the tiny generator: the library must keep producing them.

What is frozen: for each case of ``tests/golden/cases.py`` (reconstruction in both noise spaces and with the
uniform init, the demo's two noise spaces from one W+ stage, crossover, inpainting, local style transfer and
scribble edits with and without a starting embedding, attribute transfer / activation edits, and the latent
operations with and without a local activation edit), ``tests/golden/<case>.npz`` holds the final W+ code, every
noise map, the final rendered image, each stage's rendered image, the panel tiles and activation edits, and (as
the JSON string ``metrics_json``) the application's metrics, each stage's PSNR and the per-step loss log. The
inputs are seeded and built by ``cases.py`` for both the generator script and this test; the budgets are tiny
(4 W+ steps and 3 noise steps per stage) so the whole file runs in seconds on one core.

Generated from commit 12e113a (the 'fast' schedule is the default: photo embeddings, crossover and inpainting weigh
the pixel MSE 30x at peak rate 0.03 with warm-up and cosine, edit stages warm up, noise stages warm up), on the CPU with one thread
(``tests/conftest.py`` runs this test with one thread too); the inpainting, scribble and style-transfer cases again
after 726951c (``method='improved'`` is their default: inpainting's composite perceptual target and noise stage
over every known pixel; scribble's dilated blend mask, edit and keep terms, rows to 32 px and colour rows; style
transfer's rate 0.05); the cases with a photo's embedding stage (reconstruction, the demo, attribute transfer
from photos, scribble and style transfer that embed first) again when that stage moved to the normalised
perceptual term at rate 0.1, and when it moved to warm-up, hold and cosine at 0.08; the cases whose photo
embedding ends with a strength-scaled noise stage (reconstruct_paper, reconstruct_extended, the demo, attribute
transfer from photos, scribble that embeds first) when that stage moved to reference strength 0.08 with the
finest blocks' maps at twice the rate; attribute transfer from photos again when its photo A became photo 4
(photo 1's embedding is chaotic at that budget, see ``cases.py``); the cases whose photo embedding ends with a noise
stage (the five above and reconstruct_uniform) when that stage began to hold its full rate before the cosine. The goldens before came from 6709640 and were reproduced bit for bit by later commits and
with 2 or 4 threads (only some logged loss values moved, by < 2e-7 relative).

Tolerances: tensors ``assert_close(rtol=0)`` with an absolute tolerance per kind (``KIND_ATOL``: about 4x what
another CPU's rounding moves them by); metrics a relative tolerance of 1e-4 (with a 1e-12 absolute floor for metrics
that are exactly 0; timings are not compared). ``test_the_goldens_hold_under_another_cpus_rounding`` runs the
comparison again with ATen's kernels (and on x86 oneDNN's and MKL's) told to use other instruction sets, which round
differently, as another machine would: a golden only this CPU reproduces fails where it is made.

The API calls live in the adapters below (one per application): when the API changes, port the adapters, not
the goldens. Regenerate the goldens only when a change of results is intended, and say so in the commit message:

    .venv/bin/python tests/golden/make_golden.py                      # every case
    .venv/bin/python tests/golden/make_golden.py inpaint_reference    # or only the cases named

``make_golden.py`` runs these same adapters, so goldens and test see identical calls and inputs by construction.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import platform
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from golden import cases

GOLDEN_DIR = Path(__file__).parent / "golden"
TENSOR_ATOL = 1e-4  # the kinds KIND_ATOL leaves out: activation tensors of edits
# Other instruction sets, emulating other CPUs on this one (the variables are ignored where a library is absent).
OTHER_CPUS = {
    "ATen without SIMD": {"ATEN_CPU_CAPABILITY": "default"},
    "SSE4.1 everywhere": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_CBWR": "SSE4_2"},
}
# Another CPU (other SIMD widths, so other summation orders) moves the results by rounding, and optimisation
# amplifies it where it can: Adam's step is about lr * sign(gradient) wherever the gradient is far above its eps, so
# an element whose gradient nearly cancels moves by up to the rate's size when it rounds the other way. Measured
# between this suite's goldens and runs with ATen without SIMD, with AVX2, and with oneDNN and MKL at SSE4.1
# (OTHER_CPUS): noise maps 0.011 (the extended space's finest maps, at twice the rate), images 4.3e-4, W+ 2.6e-4
# (a style transfer's embedding), activations 1.9e-5; every metric within 1e-4 relative. The tolerances give each
# kind about 4x its measured spread and stay far below what a change of the algorithm moves (an 8-bit grey level of
# an image is 7.8e-3; the per-step loss log, compared at 1e-4 relative, moves at once).
KIND_ATOL = {"noise": 0.05, "image": 2e-3, "panel": 2e-3, "stage": 2e-3, "ws": 1e-3}
METRIC_RTOL = 1e-4
METRIC_ATOL = 1e-12
"""Absolute floor under the relative tolerance, for metrics that are exactly 0 in a golden (the fraction of a
layer changed outside the mask, the first noise step's MSE to the image it starts from): float round-off there is
~1e-14 (an MSE of 1e-7 pixel differences), while the smallest nonzero metrics (random-VGG Gram distances) are ~1e-9."""
TIMING_KEYS = {"seconds", "seconds_per_step", "total_seconds"}

Outcome = dict[str, Any]
"""What an adapter returns: ``{"tensors": {name: tensor}, "metrics": JSON-able dict}``."""


# ===============================================================================================================
# Adapters: one per application. Each takes the generator G, the perceptual loss P and the case's arguments
# (``cases.build(name)`` minus "app") and returns an Outcome built with the helpers after them. Only these call
# the application API (each imports what it calls, so one unported adapter fails only its own cases); port them
# when the API changes.


def run_reconstruct(G, P, *, target, settings) -> Outcome:
    """``apps.reconstruct.reconstruct(G, target, P, ReconstructionSettings(**settings))``; metrics: its
    ``stage_metrics`` (PSNR / SSIM per stage)."""
    from image2stylegan.apps.reconstruct import ReconstructionSettings, reconstruct, stage_metrics

    result = reconstruct(G, target, P, ReconstructionSettings(**settings))
    out = new_outcome()
    add_embedding(out, "", result.ws, result.noise, result.image, result.stages, result.history)
    out["metrics"]["stage_metrics"] = stage_metrics(result, target, None)
    return out


def run_demo(G, P, *, target, w_steps, noise_steps, seed) -> Outcome:
    """The demo's recipe (``apps.reconstruct.demo_recipe``: one W+ stage, then the noise stage in each noise space
    from its result) run by ``embed``; one result per space (``reconstruction_result(..., embedding=space)``),
    prefixed "paper." / "extended."."""
    from image2stylegan.apps.reconstruct import ReconstructionSettings, demo_recipe, reconstruction_result
    from image2stylegan.embed import embed

    recipe = demo_recipe(target, ReconstructionSettings(w_steps=w_steps, noise_steps=noise_steps, seed=seed))
    run = embed(G, recipe, perceptual=P)
    out = new_outcome()
    for space in ("paper", "extended"):
        result = reconstruction_result(run, target, None, recipe, embedding=space, noise_space=space)
        add_embedding(out, f"{space}.", result.ws, result.noise, result.stages[-1].image, result.stages,
                      result.history)
    return out


def run_crossover(G, P, *, image_a, image_b, mask, start, settings) -> Outcome:
    """``apps.crossover.crossover(G, image_a, image_b, mask, P, CrossoverSettings(**settings), ws=start)``."""
    from image2stylegan.apps.crossover import CrossoverSettings, crossover

    return edit_outcome(G, crossover(G, image_a, image_b, mask, P, CrossoverSettings(**settings), ws=start))


def run_inpaint(G, P, *, image, hole, reference, settings) -> Outcome:
    """``apps.inpaint.inpaint(G, image, hole, P, InpaintSettings(**settings), reference=reference)``."""
    from image2stylegan.apps.inpaint import InpaintSettings, inpaint

    result = inpaint(G, image, hole, P, InpaintSettings(**settings), reference=reference)
    # The filled photo is the render rounded to 8 bits and then blended: a render that moved by 1e-7 can round the
    # other way on another CPU, so it is not frozen here (test_inpaint checks what it must do) and the goldens
    # hold the rest unchanged.
    metrics = {k: v for k, v in result.metrics.items() if not k.startswith("filled")}
    if "reference" in metrics:
        metrics["reference"] = {k: v for k, v in metrics["reference"].items() if not k.startswith("filled")}
    panel = [(label, tile) for label, tile in result.panel if not label.startswith("filled")]
    return edit_outcome(G, dataclasses.replace(result, metrics=metrics, panel=panel))


def run_style_transfer(G, P, *, content, style, mask, start, settings) -> Outcome:
    """``apps.style_transfer.local_style_transfer(G, content, style, mask, P, StyleTransferSettings(**settings),
    ws=, noise=)`` with (ws, noise) = ``start`` (None: the app embeds the content first)."""
    from image2stylegan.apps.style_transfer import StyleTransferSettings, local_style_transfer

    ws, noise = start if start is not None else (None, None)
    return edit_outcome(G, local_style_transfer(G, content, style, mask, P, StyleTransferSettings(**settings),
                                                ws=ws, noise=noise))


def run_scribble(G, P, *, photo, scribbled, mask, start, settings) -> Outcome:
    """``apps.scribble.scribble_edit(G, photo, scribbled, P, ScribbleSettings(**settings), mask=mask, ws=, noise=)``
    with (ws, noise) = ``start`` (None: the app embeds the photo first)."""
    from image2stylegan.apps.scribble import ScribbleSettings, scribble_edit

    ws, noise = start if start is not None else (None, None)
    return edit_outcome(G, scribble_edit(G, photo, scribbled, P, ScribbleSettings(**settings), mask=mask,
                                         ws=ws, noise=noise))


def run_attribute(G, P, *, a, b, mask, settings) -> Outcome:
    """``apps.activations.transfer_attribute(G, a, b, mask, AttributeTransferSettings(**settings))`` on two
    embeddings (ws, noise)."""
    from image2stylegan.apps.activations import AttributeTransferSettings, transfer_attribute

    return edit_outcome(G, transfer_attribute(G, a, b, mask, AttributeTransferSettings(**settings)))


def run_attribute_photos(G, P, *, photo_a, photo_b, mask, settings) -> Outcome:
    """What ``i2s transfer-attribute A.png B.png`` does: ``apps.activations.attribute_transfer(G, mask, s,
    photos={"a": photo_a, "b": photo_b}, perceptual=P)`` (s = ``AttributeTransferSettings(**settings)``): one recipe
    embedding both photos (stages "A w_plus", "A noise", "B w_plus", "B noise"), then the edit. The two embeddings
    are recorded too (prefixes "a." / "b.")."""
    from image2stylegan.apps.activations import AttributeTransferSettings, attribute_transfer

    s = AttributeTransferSettings(**settings)
    result = attribute_transfer(G, mask, s, photos={"a": photo_a, "b": photo_b}, perceptual=P)
    out = new_outcome()
    for role in ("a", "b"):
        tag = role.upper()
        stages = [st for st in result.stages if st.name.startswith(tag + " ")]
        history = [h for h in result.history if h.stage.startswith(tag + " ")]
        ws, noise = result.embeddings[role]
        stripped = [dataclasses.replace(st, name=st.name[2:]) for st in stages]
        add_embedding(out, f"{role}.", ws, noise, stages[-1].image, stripped, _renamed(history))
    return edit_outcome(G, result, out)


def _renamed(history):
    """The step log with the role prefix ("A ") taken off the stage names, as one photo's own run logs them."""
    return [type("Step", (), {"stage": h.stage[2:], "step": h.step, "steps": h.steps, "loss": h.loss, "psnr": h.psnr,
                              "terms": h.terms}) for h in history]


def run_activation_edit(G, P, *, a, b, mask, layer, op) -> Outcome:
    """``apps.activations.activation_edit(G, a, b, layer, ActivationOp(**op), mask)``; the image is A rendered
    with the edit, metrics its ``change_stats()``."""
    from image2stylegan.apps.activations import ActivationOp, activation_edit

    edit = activation_edit(G, a, b, layer, ActivationOp(**op), mask)
    with torch.no_grad():
        image = G.synthesis(*a, edits=edit.edits)
    out = new_outcome()
    out["tensors"].update({"image": image, f"edit.{edit.layer}": edit.tensor})
    out["metrics"].update(layer=edit.layer, change_stats=edit.change_stats())
    return out


def run_latent(G, P, *, a, b, c, mask, source, settings) -> Outcome:
    """``apps.latent_ops.latent_edit(G, a, b, c, LatentEditSettings(**settings), mask=mask,
    activation_source=source)``."""
    from image2stylegan.apps.latent_ops import LatentEditSettings, latent_edit

    return edit_outcome(G, latent_edit(G, a, b, c, LatentEditSettings(**settings), mask=mask,
                                       activation_source=source))


ADAPTERS = {
    "reconstruct": run_reconstruct,
    "demo": run_demo,
    "crossover": run_crossover,
    "inpaint": run_inpaint,
    "style_transfer": run_style_transfer,
    "scribble": run_scribble,
    "attribute": run_attribute,
    "attribute_photos": run_attribute_photos,
    "activation_edit": run_activation_edit,
    "latent": run_latent,
}


# -- what the adapters record ------------------------------------------------------------------------------------
def new_outcome() -> Outcome:
    return {"tensors": {}, "metrics": {}}


def add_embedding(out: Outcome, prefix: str, ws, noise, image, stages=(), history=()) -> None:
    """Record an embedding: ws, each noise map, the final image, each stage's image, name, steps and PSNR, and the
    per-step log (stage, step, loss, PSNR, terms; no timings)."""
    t = out["tensors"]
    t[prefix + "ws"] = ws
    t.update({f"{prefix}noise.{i}": n for i, n in enumerate(noise)})
    if image is not None:
        t[prefix + "image"] = image
    t.update({f"{prefix}stage.{i}": s.image for i, s in enumerate(stages)})
    out["metrics"][prefix + "stages"] = [{"name": s.name, "steps": s.steps, "psnr": s.psnr.tolist()} for s in stages]
    out["metrics"][prefix + "history"] = [
        {"stage": h.stage, "step": h.step, "steps": h.steps, "loss": h.loss, "psnr": h.psnr, "terms": h.terms}
        for h in history
    ]


def edit_outcome(G, result, out: Outcome | None = None) -> Outcome:
    """Record an application's ``EditResult``: its embedding, the image rendered from (ws, noise, edits), the
    activation edits, the panel tiles and labels, the noise space and the application's metrics."""
    out = out or new_outcome()
    with torch.no_grad():
        image = G.synthesis(result.ws, result.noise, edits=result.edits or None)
    add_embedding(out, "", result.ws, result.noise, image, result.stages, result.history)
    out["tensors"].update({f"edit.{layer}": e for layer, e in result.edits.items()})
    out["tensors"].update({f"panel.{i}": tile for i, (_, tile) in enumerate(result.panel)})
    out["metrics"].update(app=result.metrics, panel_labels=[label for label, _ in result.panel],
                          noise_space=result.noise_space)
    return out


def run_case(name: str) -> Outcome:
    """Run one case on a fresh tiny generator and the shared-by-construction inputs."""
    args = cases.build(name)
    return ADAPTERS[args.pop("app")](cases.generator(), _perceptual(), **args)


_PERCEPTUAL = []


def _perceptual():
    """One perceptual loss for every case (building the random VGG16 takes most of a second; it holds no state)."""
    if not _PERCEPTUAL:
        _PERCEPTUAL.append(cases.perceptual())
    return _PERCEPTUAL[0]


# -- golden files ------------------------------------------------------------------------------------------------
def golden_path(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.npz"


def plain(value):
    """JSON-able metrics: tensors -> lists, tuples -> lists, and timings dropped (they never compare)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def save_golden(name: str, outcome: Outcome, info: dict) -> Path:
    """Write ``<name>.npz``: each distinct tensor once (a tensor identical to an earlier one, e.g. the final image
    and the last stage's, is stored as an alias of it in ``aliases_json``), the metrics and ``info_json``."""
    arrays, aliases = {}, {}
    for key, value in outcome["tensors"].items():
        value = value.detach().cpu().float()
        same = next((k for k, v in arrays.items() if v.shape == value.shape and torch.equal(v, value)), None)
        if same is None:
            arrays[key] = value
        else:
            aliases[key] = same
    entries = {k: v.numpy() for k, v in arrays.items()}
    entries["metrics_json"] = np.array(json.dumps(plain(outcome["metrics"]), sort_keys=True))
    entries["aliases_json"] = np.array(json.dumps(aliases, sort_keys=True))
    entries["info_json"] = np.array(json.dumps(info, sort_keys=True))
    path = golden_path(name)
    # What np.savez_compressed writes, minus its timestamps: unchanged results give a byte-identical file.
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in entries.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            archive.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buffer.getvalue(),
                             compress_type=zipfile.ZIP_DEFLATED)
    return path


def load_golden(name: str) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """(tensors by name, metrics, info: the commit, torch version and threads the golden was made with)."""
    path = golden_path(name)
    if not path.exists():
        pytest.fail(f"no golden file {path}; see this file's docstring for how they are made")
    with np.load(path, allow_pickle=False) as data:
        tensors = {k: torch.from_numpy(data[k]) for k in data.files if not k.endswith("_json")}
        tensors.update({k: tensors[v] for k, v in json.loads(str(data["aliases_json"])).items()})
        return tensors, json.loads(str(data["metrics_json"])), json.loads(str(data["info_json"]))


# -- comparison --------------------------------------------------------------------------------------------------
def compare_metrics(actual, expected, where: str = "metrics") -> list[str]:
    """Differences between two JSON-like trees; floats within a relative tolerance of METRIC_RTOL."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected a dict, got {actual!r}"]
        keys_a = {k for k in actual if k not in TIMING_KEYS}
        keys_e = {k for k in expected if k not in TIMING_KEYS}
        problems = []
        if keys_a != keys_e:
            problems.append(f"{where}: keys {sorted(keys_a ^ keys_e)} in only one of actual / golden")
        for k in sorted(keys_a & keys_e):
            problems += compare_metrics(actual[k], expected[k], f"{where}.{k}")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        return [p for i, (a, e) in enumerate(zip(actual, expected)) for p in compare_metrics(a, e, f"{where}[{i}]")]
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        if math.isnan(expected) and math.isnan(actual):
            return []
        if math.isinf(expected) or math.isinf(actual):
            return [] if actual == expected else [f"{where}: expected {expected!r}, got {actual!r}"]
        if abs(actual - expected) <= max(METRIC_RTOL * abs(expected), METRIC_ATOL):
            return []
        return [f"{where}: expected {expected!r}, got {actual!r} (relative tolerance {METRIC_RTOL})"]
    if type(actual) is not type(expected) or actual != expected:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    return []


def tensor_atol(key: str) -> float:
    """The tolerance of a golden tensor by its kind (the key's last name that is not an index: ``noise.3`` is a
    noise map, ``paper.image`` an image)."""
    parts = key.split(".")
    kind = parts[-2] if parts[-1].isdigit() and len(parts) > 1 else parts[-1]
    return KIND_ATOL.get(kind, TENSOR_ATOL)


@pytest.mark.parametrize("name", sorted(cases.CASES))
def test_application_matches_its_golden_output(name):
    expected_tensors, expected_metrics, _ = load_golden(name)
    outcome = run_case(name)
    actual_tensors = {k: v.detach().cpu().float() for k, v in outcome["tensors"].items()}
    assert sorted(actual_tensors) == sorted(expected_tensors), "the case records different tensors than its golden"
    for key, expected in expected_tensors.items():
        torch.testing.assert_close(actual_tensors[key], expected, rtol=0, atol=tensor_atol(key),
                                   msg=lambda m, key=key: f"{name}: {key}: {m}")
    actual_metrics = json.loads(json.dumps(plain(outcome["metrics"])))
    problems = compare_metrics(actual_metrics, expected_metrics)
    assert not problems, f"{name}: metrics differ from the golden:\n" + "\n".join(problems[:20])


@pytest.mark.parametrize("cpu", sorted(OTHER_CPUS))
def test_the_goldens_hold_under_another_cpus_rounding(cpu):
    """Every golden case again in a fresh process whose kernels round as another CPU's would (``OTHER_CPUS``)."""
    emulated = dict(OTHER_CPUS[cpu])
    if platform.machine().lower() not in ("x86_64", "amd64"):  # oneDNN's and MKL's x86 instruction sets
        emulated = {k: v for k, v in emulated.items() if k == "ATEN_CPU_CAPABILITY"}
    test = f"{Path(__file__).name}::test_application_matches_its_golden_output"
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0", test],
                         cwd=Path(__file__).parent, env={**os.environ, **emulated}, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, f"{cpu} ({emulated}):\n{run.stdout[-4000:]}{run.stderr[-2000:]}"
