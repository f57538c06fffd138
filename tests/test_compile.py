"""--compile: the generator's optimisation renders through torch.compile, everything else eager.

One real compilation of the tiny generator (about half a minute on 2 cores) checks that the compiled render and its
gradients match the eager ones to float rounding; the routing and the error are checked with a stand-in for the
compiled function, which costs nothing.
"""

from __future__ import annotations

import json

import pytest
import torch

from image2stylegan.errors import InputError
from image2stylegan.generators.tiny import random_embedding, tiny_generator


def _loss_and_grads(generator, ws, noise):
    ws = ws.clone().requires_grad_(True)
    noise = [n.clone().requires_grad_(True) for n in noise]
    image = generator.synthesis(ws, noise)
    (image.square().mean() + image[:, 0].mean()).backward()
    return image.detach(), ws.grad, [n.grad for n in noise]


def test_compiled_render_and_gradients_match_the_eager_ones():
    eager = tiny_generator(seed=3, resolution=16)
    compiled = tiny_generator(seed=3, resolution=16).compile_synthesis()
    ws, noise = random_embedding(eager, seed=5)
    ws, noise = ws.expand(2, -1, -1).contiguous(), [n.expand(2, -1, -1, -1).contiguous() for n in noise]
    image_e, ws_grad_e, noise_grads_e = _loss_and_grads(eager, ws, noise)
    image_c, ws_grad_c, noise_grads_c = _loss_and_grads(compiled, ws, noise)
    # Fused kernels sum in another order: equal to float rounding, not bit for bit (by design, not by luck).
    torch.testing.assert_close(image_c, image_e, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ws_grad_c, ws_grad_e, rtol=1e-3, atol=1e-6)
    for got, want in zip(noise_grads_c, noise_grads_e):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-6)
    assert ws_grad_e.abs().sum() > 0  # the comparison is of real gradients


class _Spy:
    """Stands in for the compiled function: counts its calls and renders eagerly."""

    def __init__(self, generator):
        self.generator, self.calls = generator, 0

    def __call__(self, ws, noise):
        self.calls += 1
        return self.generator._plain_image(ws, noise)


def test_only_renders_with_gradients_and_no_edits_are_compiled(tiny):
    tiny.compile_synthesis()
    assert tiny._compiled_image is not None
    spy = tiny._compiled_image = _Spy(tiny)
    ws = tiny.mean_ws(1).requires_grad_(True)
    tiny.synthesis(ws, tiny.make_noise(1))
    assert spy.calls == 1
    with torch.no_grad():  # previews and a stage's final render: no compilation of their own
        tiny.synthesis(ws, tiny.make_noise(1))
    layer = tiny.layer_names()[1]
    tiny.synthesis(ws, tiny.make_noise(1), edits={layer: lambda x: 2 * x})
    tiny.synthesis_trace(ws, tiny.make_noise(1), capture=[layer])
    assert spy.calls == 1
    assert tiny.compile_synthesis(False)._compiled_image is None


def test_a_compiler_failure_is_one_line_naming_the_option(tiny):
    class BackendCompilerFailed(Exception):
        pass

    BackendCompilerFailed.__module__ = "torch._dynamo.exc"  # as torch raises it when no C++ compiler works

    def fail(ws, noise):
        raise BackendCompilerFailed("backend='inductor' raised:\nInvalidCxxCompiler: No working C++ compiler found")

    tiny.compile_synthesis()._compiled_image = fail
    with pytest.raises(InputError, match=r"^--compile: torch.compile cannot compile the generator here "
                                         r"\(BackendCompilerFailed: backend='inductor' raised:\); run without --compile$"):
        tiny.synthesis(tiny.mean_ws(1).requires_grad_(True), tiny.make_noise(1))


def test_other_errors_of_a_compiled_render_are_not_reworded(tiny):
    def fail(ws, noise):
        raise RuntimeError("out of memory")

    tiny.compile_synthesis()._compiled_image = fail
    with pytest.raises(RuntimeError, match="out of memory"):
        tiny.synthesis(tiny.mean_ws(1).requires_grad_(True), tiny.make_noise(1))


def test_the_cli_flag_reaches_the_generator(tiny_app_cli, tiny, tmp_path, monkeypatch):
    from image2stylegan.cli import cli
    from image2stylegan.io import save_image

    photo = tmp_path / "face.png"
    with torch.no_grad():
        save_image(photo, tiny.synthesis(tiny.mean_ws(1), tiny.make_noise(1))[0].clamp(-1, 1))
    spies = []

    def compile_with_spy(self, enabled=True):
        self._compiled_image = _Spy(self) if enabled else None
        spies.append(self._compiled_image)
        return self

    monkeypatch.setattr(type(tiny), "compile_synthesis", compile_with_spy)
    budget = ["--w-steps", "2", "--noise-steps", "2", "--quiet"]
    result = tiny_app_cli.invoke(cli, ["reconstruct", str(photo), "--outdir", str(tmp_path / "a"), *budget, "--compile"])
    assert result.exit_code == 0, result.output
    assert spies[-1].calls == 4  # every W+ and noise step, and nothing else
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["machine"].endswith(", torch.compile")
    result = tiny_app_cli.invoke(cli, ["reconstruct", str(photo), "--outdir", str(tmp_path / "b"), *budget])
    assert result.exit_code == 0, result.output
    assert spies[-1] is None
