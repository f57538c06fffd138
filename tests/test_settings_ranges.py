"""Every numeric setting has one valid range, enforced by its settings dataclass: the library, ``i2s`` and the JSON
descriptions (``apps.requests.rebuild``) refuse the same values with the same one-line message naming the option,
and ``i2s`` does so before writing anything. metrics.json is strict JSON (no bare NaN)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from image2stylegan.apps.activations import ActivationOp, AttributeTransferSettings
from image2stylegan.apps.crossover import CrossoverSettings
from image2stylegan.apps.demo import DemoBudget
from image2stylegan.apps.inpaint import InpaintSettings
from image2stylegan.apps.latent_ops import LatentEditSettings
from image2stylegan.apps.ranges import RANGE_KEY, field_option
from image2stylegan.apps.reconstruct import ReconstructionSettings
from image2stylegan.apps.requests import rebuild
from image2stylegan.apps.sample import parse_seeds, sample
from image2stylegan.apps.scribble import ScribbleSettings
from image2stylegan.apps.style_transfer import StyleTransferSettings
from image2stylegan.errors import InputError
from image2stylegan.io import atomic_write_json
from image2stylegan.latents import save_latent

INF = math.inf
STEPS = ("int", 0, 1_000_000)
SEED = ("int", 0, 2**32 - 1)
LR = ("float", 0, 1000, "open-low")
FEATHER = ("float", 0, 0.5)
WEIGHT = ("float", 0, 1e6)
ALPHA = ("float", 0, 1)
EDIT = {"w_steps": STEPS, "noise_steps": STEPS, "noise_lr": LR, "feather": FEATHER, "seed": SEED}

EXPECTED = {
    ReconstructionSettings: {"w_steps": STEPS, "noise_steps": STEPS, "seed": SEED, "w_lr": (*LR, "optional"),
                             "noise_lr": LR, "until_psnr": ("float", 0, 100, "open-low", "optional"),
                             "until_lpips": ("float", 0, 1, "optional")},
    CrossoverSettings: {**EDIT, "mse_weight": WEIGHT, "perceptual_weight": WEIGHT, "noise_second_weight": WEIGHT},
    InpaintSettings: {**EDIT, "mse_weight": WEIGHT, "perceptual_weight": WEIGHT, "max_resolution": ("int", 1, 4096),
                      "last_rows": ("int", 0, 64), "rows": ("rows", 0, 255), "known_weight": WEIGHT,
                      "hole_weight": WEIGHT, "dilate": ("float", 0, 0.5, "optional"), "start_steps": STEPS},
    ScribbleSettings: {**EDIT, "w_lr": LR, "embed_w_steps": STEPS, "embed_noise_steps": STEPS, "max_resolution": ("int", 1, 4096, "optional"),
                       "rows": ("rows", 0, 255), "mse_weight": WEIGHT, "perceptual_weight": WEIGHT,
                       "threshold": ("float", 0, 1, "open-low", "open-high"), "edit_weight": WEIGHT, "keep_weight": WEIGHT},
    StyleTransferSettings: {**EDIT, "w_lr": (*LR, "optional"), "embed_steps": STEPS, "style_weight": ("float", 0, 1e9, "open-low"),
                            "content_mse_weight": WEIGHT, "content_perceptual_weight": WEIGHT},
    AttributeTransferSettings: {"alpha": ALPHA, "w_steps": STEPS, "noise_steps": STEPS, "seed": SEED},
    ActivationOp: {"alpha": ALPHA},
    LatentEditSettings: {"amount": ("float", -10, 10, "optional"), "alpha": ALPHA},
    DemoBudget: {"w_steps": STEPS, "noise_steps": STEPS},
}
"""The valid range of every numeric setting (kind, low, high, flags): what docs/algorithm.md promises."""

OPTION_NAMES = {"w_steps": "--w-steps", "noise_steps": "--noise-steps", "w_lr": "--w-lr", "feather": "--feather",
                "seed": "--seed", "amount": "--amount", "alpha": "--alpha", "style_weight": "--style-weight",
                "max_resolution": "--max-resolution", "threshold": "--threshold", "rows": "--rows",
                "embed_steps": "--embed-steps", "start_steps": "--start-steps", "embed_w_steps": "--embed-w-steps",
                "embed_noise_steps": "--embed-noise-steps"}
"""Settings that ``i2s`` options set: the message must name the option exactly as typed."""


def _cases():
    for cls, fields in EXPECTED.items():
        for name, spec in fields.items():
            yield pytest.param(cls, name, spec, id=f"{cls.__name__}.{name}")


def _option(name: str) -> str:
    return OPTION_NAMES.get(name, "--" + name.replace("_", "-"))


def _refused(cls, name, value) -> str:
    with pytest.raises(InputError) as info:
        cls(**{name: value})
    message = str(info.value)
    assert message.startswith(f"{_option(name)} must be "), message
    assert "\n" not in message and ", got " in message, message
    return message


def _edges(spec):
    """(values just inside, values just outside) the range."""
    kind, low, high, *flags = spec
    if kind in ("int", "rows"):
        inside, outside = [low, high], [low - 1, high + 1]
    else:
        inside = [math.nextafter(low, INF) if "open-low" in flags else low,
                  math.nextafter(high, -INF) if "open-high" in flags else high]
        outside = [low if "open-low" in flags else math.nextafter(low, -INF),
                   high if "open-high" in flags else math.nextafter(high, INF)]
    if kind == "rows":
        return [(v,) for v in inside] + [(0, 5, high)], [(v,) for v in outside] + [(), (1, low - 1)]
    return inside, outside


def test_every_checked_setting_is_listed_here():
    declared = {(cls, f.name) for cls in EXPECTED for f in dataclasses.fields(cls) if RANGE_KEY in f.metadata}
    assert declared == {(cls, name) for cls, fields in EXPECTED.items() for name in fields}


@pytest.mark.parametrize("cls,name,spec", list(_cases()))
def test_each_setting_accepts_its_range_and_refuses_what_is_outside_it(cls, name, spec):
    kind, *_ = spec
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    assert field_option(field) == _option(name)
    inside, outside = _edges(spec)
    for value in inside:
        assert getattr(cls(**{name: value}), name) == value
    for value in outside:
        _refused(cls, name, value)
    for value in (math.nan, INF, -INF, np.float32("nan"), "0.5", torch.tensor(0.5)):
        _refused(cls, name, (value,) if kind == "rows" else value)
    _refused(cls, name, (True,) if kind == "rows" else True)
    if kind in ("int", "rows"):
        message = _refused(cls, name, (1.0,) if kind == "rows" else 1.0)
        assert "whole number" in message and message.endswith("got 1.0" if kind == "int" else "got [1.0]"), message
    if "optional" in spec or kind == "rows":
        assert getattr(cls(**{name: None}), name) is None
    else:
        _refused(cls, name, None)


def test_the_message_says_what_the_value_means_and_what_was_given():
    with pytest.raises(InputError) as info:
        CrossoverSettings(feather=3.0)
    assert str(info.value) == ("--feather must be a number between 0 and 0.5 (the mask blur's Gaussian sigma as a "
                               "fraction of the image side: 0.03 is 3 %, 0 keeps the mask hard), got 3")
    with pytest.raises(InputError, match=r"^--seed must be a whole number between 0 and 4294967295 .*, "
                                         r"got 99999999999999999999$"):
        ReconstructionSettings(seed=99999999999999999999)
    with pytest.raises(InputError, match=r"^--w-lr must be a number greater than 0 and at most 1000 .*, got nan$"):
        ScribbleSettings(w_lr=math.nan)
    with pytest.raises(InputError, match=r"^--noise-space must be one of paper, extended, got 'nonsense'$"):
        ReconstructionSettings(noise_space="nonsense")


def test_numbers_of_other_types_that_are_in_range_are_accepted():
    assert InpaintSettings(w_steps=np.int64(3), feather=np.float32(0.25), rows=(np.int64(1),)).w_steps == 3
    assert CrossoverSettings(noise_lr=5).noise_lr == 5  # an int where a float is expected (JSON writes 5)


def test_weights_that_switch_every_term_off_are_refused():
    for cls in (CrossoverSettings, InpaintSettings, ScribbleSettings):
        assert cls(mse_weight=0.0).perceptual_weight == 1.0
        with pytest.raises(InputError, match="^--mse-weight and --perceptual-weight cannot both be 0"):
            cls(mse_weight=0.0, perceptual_weight=0.0)
    with pytest.raises(InputError, match="^--content-mse-weight and --content-perceptual-weight cannot both be 0"):
        StyleTransferSettings(content_mse_weight=0, content_perceptual_weight=0.0)


def test_values_the_docs_and_tests_use_are_valid():
    StyleTransferSettings(style_weight=1e7, content_mse_weight=1e-9, content_perceptual_weight=1e-9, noise_lr=0.3)
    ScribbleSettings(w_lr=0.1, threshold=0.05, max_resolution=8, embed_w_steps=0, embed_noise_steps=0)
    InpaintSettings(feather=0.0, dilate=0.06, max_resolution=64, last_rows=2, rows=(0, 1, 7))
    LatentEditSettings(op="expression", amount=0.0)
    LatentEditSettings(op="morph", amount=-1.5, alpha=1.0)


def test_sample_seeds_and_truncation(tiny):
    for spec in ("99999999999999999999", "0-4294967296"):
        with pytest.raises(InputError, match="^--seeds must be a whole number between 0 and 4294967295"):
            parse_seeds(spec)
    with pytest.raises(InputError, match="^--seeds 0-10000 names 10001 faces; at most 10000"):
        parse_seeds("0-10000")
    assert parse_seeds("4294967295") == [2**32 - 1]
    assert sample(tiny, 2**32 - 1).ws.shape[0] == 1  # the top seed works with torch's generator
    for bad in (math.nan, 1.5, -0.1):
        with pytest.raises(InputError, match="^--truncation must be a number between 0 and 1"):
            sample(tiny, 0, bad)
    with pytest.raises(InputError, match="^--seeds must be"):
        sample(tiny, -1)


def test_a_json_description_with_an_out_of_range_setting_is_refused_with_the_same_message(tiny):
    with pytest.raises(InputError) as direct:
        CrossoverSettings(feather=3)
    description = {"command": "crossover", "settings": {"w_steps": 2, "feather": 3},
                   "inputs": {"a": {"file": "a.png"}, "b": {"file": "b.png"}, "mask": "left-half"}}
    with pytest.raises(InputError) as rebuilt:
        rebuild(description, tiny)
    assert str(rebuilt.value) == str(direct.value)
    with pytest.raises(InputError, match=r"^--w-steps must be a whole number .*, got 2\.5$"):
        rebuild({**description, "settings": {"w_steps": 2.5}}, tiny)
    with pytest.raises(InputError, match=r"^--rows must be a non-empty list of whole numbers"):
        rebuild({**description, "command": "inpaint", "settings": {"rows": [0, -1]}}, tiny)


# -- metrics.json ------------------------------------------------------------------------------------------------


def _strict(text: str):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_json_files_never_hold_bare_nan_or_infinity(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"psnr": math.nan, "loss": [1.0, INF, -INF], "n": np.float32("nan"),
                             "t": torch.tensor([0.5, math.nan]), "nested": {"x": (np.float64("inf"), 2)},
                             "fine": 0.25, "path": tmp_path})
    data = _strict(path.read_text())
    assert data == {"psnr": None, "loss": [1.0, None, None], "n": None, "t": [0.5, None], "nested": {"x": [None, 2]},
                    "fine": 0.25, "path": str(tmp_path)}


# -- the command line ----------------------------------------------------------------------------------------------


@pytest.fixture
def inputs(tmp_path, tiny):
    """Two photos, a scribbled copy and two latents for the tiny generator."""
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "scribbled.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / name)
    g = torch.Generator().manual_seed(1)
    for name in ("a.npz", "b.npz"):
        save_latent(tmp_path / name, tiny.mean_ws(1) + 0.3 * torch.randn(1, tiny.num_ws, tiny.w_dim, generator=g),
                    tiny.make_noise(1, generator=g), generator_name=tiny.name)
    return tmp_path


def _i2s(monkeypatch, capsys, *args) -> tuple[int, str]:
    """Run ``i2s`` as the console entry point does (main(): one 'error:' line, exit status 2)."""
    from image2stylegan.cli import main

    monkeypatch.setattr(sys, "argv", ["i2s", *map(str, args)])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def _commands(d: Path) -> dict[str, list]:
    return {
        "latent-edit": ["latent-edit", d / "a.npz", d / "b.npz"],
        "crossover": ["crossover", d / "a.png", d / "b.png", "--mask", "left-half", "--quiet"],
        "inpaint": ["inpaint", d / "a.png", "--mask", "center", "--quiet"],
        "style-transfer": ["style-transfer", d / "a.png", d / "b.png", "--mask", "center", "--quiet"],
        "scribble": ["scribble", d / "a.png", d / "scribbled.png", "--quiet"],
        "transfer-attribute": ["transfer-attribute", d / "a.png", "--from-b", d / "b.npz", "--mask", "center",
                               "--quiet"],
        "reconstruct": ["reconstruct", d / "a.png", "--quiet"],
        "sample": ["sample"],
        "demo": ["demo", "--quiet"],
    }


CLI_CASES = [
    ("latent-edit", ["--amount", "nan"], "--amount"),
    ("latent-edit", ["--amount", "inf"], "--amount"),
    ("latent-edit", ["--amount", "11"], "--amount"),
    ("latent-edit", ["--alpha", "nan"], "--alpha"),
    ("style-transfer", ["--w-lr", "nan"], "--w-lr"),
    ("scribble", ["--w-lr", "inf"], "--w-lr"),
    ("crossover", ["--seed", "99999999999999999999"], "--seed"),
    ("reconstruct", ["--seed", "-1"], "--seed"),
    ("reconstruct", ["--until-psnr", "0"], "--until-psnr"),
    ("reconstruct", ["--until-lpips", "1.5"], "--until-lpips"),
    ("crossover", ["--feather", "3"], "--feather"),
    ("inpaint", ["--feather", "nan"], "--feather"),
    ("inpaint", ["--w-steps", "1000001"], "--w-steps"),
    ("style-transfer", ["--style-weight", "0"], "--style-weight"),
    ("style-transfer", ["--embed-steps", "-1"], "--embed-steps"),
    ("scribble", ["--threshold", "1"], "--threshold"),
    ("scribble", ["--max-resolution", "0"], "--max-resolution"),
    ("scribble", ["--embed-noise-steps", "-3"], "--embed-noise-steps"),
    ("transfer-attribute", ["--alpha", "1.5"], "--alpha"),
    ("sample", ["--truncation", "nan"], "--truncation"),
    ("sample", ["--seeds", "99999999999999999999"], "--seeds"),
    ("demo", ["--w-steps", "2000000"], "--w-steps"),
]


@pytest.mark.parametrize("command,extra,option", CLI_CASES, ids=[f"{c} {' '.join(e)}" for c, e, _ in CLI_CASES])
def test_the_cli_refuses_impossible_settings_in_one_line_and_writes_nothing(tiny_app_cli, monkeypatch, capsys,
                                                                            inputs, command, extra, option):
    outdir = inputs / "out"
    code, err = _i2s(monkeypatch, capsys, *_commands(inputs)[command], *extra, "--outdir", outdir)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"error: {option} must be "), errors[0]
    assert not outdir.exists(), sorted(p.name for p in outdir.rglob("*"))


def test_the_cli_and_the_library_give_the_same_message(tiny_app_cli, monkeypatch, capsys, inputs):
    code, err = _i2s(monkeypatch, capsys, *_commands(inputs)["crossover"], "--feather", "3", "--outdir",
                     inputs / "out")
    with pytest.raises(InputError) as library:
        CrossoverSettings(feather=3)
    assert code == 2 and err.strip().splitlines()[-1] == f"error: {library.value}"


# -- docs ----------------------------------------------------------------------------------------------------------


def test_the_docs_table_is_generated_from_the_declarations():
    script = Path(__file__).resolve().parent.parent / "scripts" / "settings_table.py"
    spec = importlib.util.spec_from_file_location("settings_table", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.current(module.DOC.read_text(encoding="utf-8")) == module.table(), (
        "docs/algorithm.md#settings-and-their-valid-ranges is out of date: run python scripts/settings_table.py --write")
