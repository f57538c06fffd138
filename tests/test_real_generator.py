"""The bundled generator with its real weights: parity with OpenVINO, strict conversion, a short embedding.

These use the weights `make test` fetched (never downloading) and fail with the fetch command if they are missing.
"""

import copy

import numpy as np
import pytest
import torch

from image2stylegan import weights
from image2stylegan.apps.reconstruct import ReconstructionSettings, reconstruction_recipe
from image2stylegan.embed import embed
from image2stylegan.generators.convert_ir import ConversionError, convert_mobilestylegan_ir
from image2stylegan.ir import read_ir

pytestmark = pytest.mark.real_weights


@pytest.fixture(scope="module")
def ir_files():
    return {f: weights.find_file("mobilestylegan-ffhq", f) for f in ("MappingNetwork.xml", "SynthesisNetwork.xml")}


@pytest.fixture(scope="module")
def graphs(ir_files):
    return read_ir(ir_files["MappingNetwork.xml"]), read_ir(ir_files["SynthesisNetwork.xml"])


def test_matches_openvino_cpu_f32_inference_of_the_same_ir(real_generator, ir_files):
    ov = pytest.importorskip("openvino", reason="openvino is a test dependency: make test installs it")
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"}
    mapping = core.compile_model(core.read_model(str(ir_files["MappingNetwork.xml"])), "CPU", config)
    synthesis = core.compile_model(core.read_model(str(ir_files["SynthesisNetwork.xml"])), "CPU", config)
    for seed in (0, 1):
        z = np.random.RandomState(seed).randn(1, 512).astype(np.float32)
        w_ref = mapping(z)[0]
        image_ref = synthesis(w_ref)[0]
        with torch.no_grad():
            w = real_generator.mapping(torch.from_numpy(z))
            # Same style in all 23 rows and the IR's own noise (noise=None) = what the IR computes.
            image = real_generator.synthesis(torch.from_numpy(w_ref)[:, None].repeat(1, real_generator.num_ws, 1))
        assert np.abs(w.numpy() - w_ref).max() <= 1e-4
        assert np.abs(image.numpy() - image_ref).max() <= 1e-4


def test_noise_strengths_are_recovered_so_the_stored_maps_are_unit_scale(real_generator, graphs):
    strengths = real_generator.noise_strengths()
    assert len(strengths) == 15 and min(strengths) > 0
    # As listed in docs/algorithm.md#bundled-noise-strengths: 4 px .0049, 128 px .2512, 256 px 7.9e-5 (conv2).
    assert strengths[0] == pytest.approx(0.0049, rel=0.02)
    assert strengths[9] == pytest.approx(0.2513, rel=0.01)
    assert strengths[12] == pytest.approx(7.9e-5, rel=0.02)
    layers = [real_generator.conv1] + [c for b in real_generator.blocks.values() for c in (b.conv1, b.conv2)]
    for layer in layers:
        assert layer.act.noise_const.std(correction=0).item() == pytest.approx(1.0, abs=1e-4)


def test_converter_is_strict(graphs):
    mapping, synthesis = graphs
    _, config = convert_mobilestylegan_ir(mapping, synthesis)
    assert config.channels == (512, 512, 512, 512, 256, 128, 64) and config.num_ws == 23

    broken = copy.deepcopy(synthesis)
    prelu = broken.of_type("PReLU")[3]
    broken.consts[prelu.inputs[1]] = np.array([0.3], dtype=np.float32)  # a slope we do not implement
    with pytest.raises(ConversionError, match="leaky-ReLU slope"):
        convert_mobilestylegan_ir(mapping, broken)

    extra = copy.deepcopy(synthesis)
    extra.consts["999999"] = np.ones((4, 4), dtype=np.float32)  # a float tensor nothing explains
    extra.layers["999999"] = type(next(iter(extra.layers.values())))("999999", "mystery", "Const", {}, (), ((4, 4),))
    with pytest.raises(ConversionError, match="not understood"):
        convert_mobilestylegan_ir(mapping, extra)


def test_short_embedding_of_a_generated_face_gains_in_both_stages(real_generator, real_perceptual):
    G = real_generator
    rng = torch.Generator().manual_seed(5)
    with torch.no_grad():
        w = G.w_avg + 0.7 * (G.mapping(torch.randn(1, G.z_dim, generator=rng)) - G.w_avg)  # truncation 0.7
        target = G.synthesis(w[:, None].repeat(1, G.num_ws, 1), G.make_noise(1, generator=rng)).clamp(-1, 1)
    history = []
    recipe = reconstruction_recipe(target, ReconstructionSettings(w_steps=12, noise_steps=20))
    result = embed(G, recipe, perceptual=real_perceptual, callback=history.append)
    w_plus, noise = result.stages
    assert w_plus.image.shape == (1, 3, 1024, 1024) and torch.isfinite(noise.image).all()
    assert w_plus.psnr.item() > history[0].psnr + 1.0  # the W+ stage improves on the mean face
    # and the noise stage adds dB on top (12.5 -> 19.0 -> 22.2 dB when written; a better W+ stage leaves it less)
    assert noise.psnr.item() > w_plus.psnr.item() + 2.0


def test_noise_stage_from_an_edited_embedding_never_loses_psnr_in_its_first_steps(real_generator):
    """The default noise stage (strength-scaled lr 5, warm-up, cosine) started from an edited embedding: a
    generated face's exact (w, n) with its coarse rows moved, restored towards the unedited image."""
    from image2stylegan.apps.reconstruct import STAGE_NAMES
    from image2stylegan.apps.sample import sample
    from image2stylegan.recipe import Recipe

    G = real_generator
    face = sample(G, 3)
    with torch.no_grad():
        target = G.synthesis(face.ws, face.noise).clamp(-1, 1)
    edited = face.ws.clone()
    edited[:, :7] += 0.3 * torch.randn(1, 7, G.w_dim, generator=torch.Generator().manual_seed(0))
    stage = ReconstructionSettings(noise_steps=40, until_psnr=None).noise_stage(target, STAGE_NAMES[1])
    history = []
    embed(G, Recipe((stage,)), start=(edited, face.noise), callback=lambda info: history.append(info.psnr) or
          len(history) >= 21)  # the start (step 1 renders it) and 20 steps after it
    assert len(history) == 21
    assert min(history[1:]) > history[0], history
