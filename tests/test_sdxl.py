"""SDXL base and refiner on tiny real-layout checkpoints: parity with diffusers' SDXL pipelines, and the
base → refiner handoff wired three ways (Refiner node, ComfyUI's two KSamplerAdvanced, one run)."""

from __future__ import annotations

import pytest
import torch

from graphcore.executor import Executor
from graphcore.inputs import Socket
from graphcore.node import Node, Result
from graphcore.registry import Registry
from nodes.catalog import all_node_classes
from nodes.samplers.model_sigmas import ModelSigmas

SIZE = 64
STEPS = 10
SEED = 7


class Capture(Node):
    """An output node that keeps what it receives (latents or images) for the test to compare."""

    output_node = True
    inputs = {"value": Socket("*")}
    seen: dict[str, object] = {}

    def run(self, ctx, value):
        Capture.seen[ctx.node_id] = value
        return Result((), {"captured": [ctx.node_id]})


@pytest.fixture
def sdxl_models(tiny_checkpoint, isolated_folders):
    base = tiny_checkpoint("sdxl")
    refiner = tiny_checkpoint("sdxl_refiner")
    base.link_into(isolated_folders.models_dir / "checkpoints", name="base")
    refiner.link_into(isolated_folders.models_dir / "checkpoints", name="refiner")
    return base, refiner


def executor() -> Executor:
    return Executor(Registry().add_all([*all_node_classes(), Capture]))


def encode_sdxl(node_id_prefix: str, clip_link, text: str) -> dict:
    return {f"{node_id_prefix}": {"class_type": "CLIPTextEncodeSDXL", "inputs": {
        "clip": clip_link, "width": SIZE, "height": SIZE, "crop_w": 0, "crop_h": 0,
        "target_width": SIZE, "target_height": SIZE, "text_g": text, "text_l": text}}}


def encode_refiner(node_id: str, clip_link, text: str, ascore: float) -> dict:
    return {node_id: {"class_type": "CLIPTextEncodeSDXLRefiner", "inputs": {
        "ascore": ascore, "width": SIZE, "height": SIZE, "text": text, "clip": clip_link}}}


def base_graph(sampler: dict) -> dict:
    graph = {
        "base": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "base.safetensors"}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        **encode_sdxl("pos", ["base", 1], "a red circle"),
        **encode_sdxl("neg", ["base", 1], ""),
        "sample": sampler,
        "latent": {"class_type": "Capture", "inputs": {"value": ["sample", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["base", 2]}},
        "image": {"class_type": "Capture", "inputs": {"value": ["decode", 0]}},
    }
    return graph


def ksampler(**extra) -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": ["base", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["empty", 0],
        "seed": SEED, "steps": STEPS, "cfg": 5.0, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
        **extra}}


def initial_latents(scheduler) -> torch.Tensor:
    """ComfyUI's start (seeded CPU noise · sqrt(1 + σ_max²)) expressed in diffusers' latents convention."""
    noise = torch.randn((1, 4, SIZE // 8, SIZE // 8), generator=torch.Generator().manual_seed(SEED))
    sigma_max = ModelSigmas.from_betas().sigma_max
    return noise * (1 + sigma_max**2) ** 0.5 / scheduler.init_noise_sigma


def euler_trailing(pipe):
    """ComfyUI's "simple" schedule is every 100th σ of the table from the top: diffusers' Euler with trailing
    spacing visits the same σ at integer timesteps, so no timestep rounding is needed."""
    from diffusers import EulerDiscreteScheduler

    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    return pipe


def test_sdxl_base_matches_diffusers_pipeline(sdxl_models):
    base, _ = sdxl_models
    result = executor().run(base_graph(ksampler()))
    assert result.ok, result.error
    ours = Capture.seen["image"]

    pipe = euler_trailing(base.pipeline())
    pipe.register_to_config(force_zeros_for_empty_prompt=False)  # ComfyUI encodes the empty negative prompt
    reference = pipe(
        "a red circle", negative_prompt="", num_inference_steps=STEPS, guidance_scale=5.0, height=SIZE, width=SIZE,
        latents=initial_latents(pipe.scheduler), output_type="pt",
    ).images.permute(0, 2, 3, 1)
    assert ours.shape == reference.shape == (1, SIZE, SIZE, 3)
    assert (ours - reference).abs().max().item() < 1e-4


def refiner_nodes() -> dict:
    return {
        "ref": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "refiner.safetensors"}},
        **encode_refiner("rpos", ["ref", 1], "a red circle", 6.0),
        **encode_refiner("rneg", ["ref", 1], "", 2.5),
    }


def test_base_plus_refiner_matches_diffusers_two_pipelines(sdxl_models):
    base, refiner = sdxl_models
    graph = base_graph(ksampler(end_at=0.8))
    graph.update(refiner_nodes())
    graph["refine"] = {"class_type": "Refiner", "inputs": {
        "model": ["ref", 0], "positive": ["rpos", 0], "negative": ["rneg", 0], "latent_image": ["sample", 0],
        "seed": SEED, "steps": STEPS, "switch_at": 0.8, "sampler_name": "euler", "scheduler": "simple", "cfg": 5.0}}
    graph["refined"] = {"class_type": "Capture", "inputs": {"value": ["refine", 0]}}
    result = executor().run(graph)
    assert result.ok, result.error
    ours_handoff = Capture.seen["latent"].samples * 0.13025
    ours_final = Capture.seen["refined"].samples * 0.13025

    base_pipe = euler_trailing(base.pipeline())
    base_pipe.register_to_config(force_zeros_for_empty_prompt=False)
    handoff = base_pipe(
        "a red circle", negative_prompt="", num_inference_steps=STEPS, guidance_scale=5.0, height=SIZE, width=SIZE,
        latents=initial_latents(base_pipe.scheduler), denoising_end=0.8, output_type="latent",
    ).images
    refiner_pipe = euler_trailing(refiner.pipeline())
    final = refiner_pipe(
        "a red circle", negative_prompt="", image=handoff, num_inference_steps=STEPS, denoising_start=0.8,
        guidance_scale=5.0, aesthetic_score=6.0, negative_aesthetic_score=2.5, output_type="latent",
    ).images
    assert (ours_handoff - handoff).abs().max().item() < 1e-4
    assert (ours_final - final).abs().max().item() < 1e-4
    assert (final - handoff).abs().max().item() > 1e-2  # the refiner did change the latent


def test_two_ksampler_advanced_equal_refiner_node(sdxl_models):
    """ComfyUI users wire base KSamplerAdvanced(0→8, leftover noise) → refiner KSamplerAdvanced(8→end, no
    noise); the Refiner node must give the same latent."""
    graph = base_graph({"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["base", 0], "add_noise": "enable", "noise_seed": SEED, "steps": STEPS, "cfg": 5.0,
        "sampler_name": "euler", "scheduler": "normal", "positive": ["pos", 0], "negative": ["neg", 0],
        "latent_image": ["empty", 0], "start_at_step": 0, "end_at_step": 8, "return_with_leftover_noise": "enable"}})
    graph.update(refiner_nodes())
    graph["adv_refine"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["ref", 0], "add_noise": "disable", "noise_seed": SEED, "steps": STEPS, "cfg": 5.0,
        "sampler_name": "euler", "scheduler": "normal", "positive": ["rpos", 0], "negative": ["rneg", 0],
        "latent_image": ["sample", 0], "start_at_step": 8, "end_at_step": 10000,
        "return_with_leftover_noise": "disable"}}
    graph["node_refine"] = {"class_type": "Refiner", "inputs": {
        "model": ["ref", 0], "positive": ["rpos", 0], "negative": ["rneg", 0], "latent_image": ["sample", 0],
        "seed": SEED, "steps": STEPS, "switch_at": 0.8, "sampler_name": "euler", "scheduler": "normal", "cfg": 5.0}}
    graph["a"] = {"class_type": "Capture", "inputs": {"value": ["adv_refine", 0]}}
    graph["b"] = {"class_type": "Capture", "inputs": {"value": ["node_refine", 0]}}
    result = executor().run(graph)
    assert result.ok, result.error
    assert torch.equal(Capture.seen["a"].samples, Capture.seen["b"].samples)


def test_base_end_at_equals_ksampler_advanced_slice(sdxl_models):
    """KSampler(end_at=0.8) is KSamplerAdvanced(0→8, leftover noise) under another name."""
    ex = executor()
    assert ex.run(base_graph(ksampler(end_at=0.8))).ok
    simple = Capture.seen["latent"].samples
    assert ex.run(base_graph({"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["base", 0], "add_noise": "enable", "noise_seed": SEED, "steps": STEPS, "cfg": 5.0,
        "sampler_name": "euler", "scheduler": "simple", "positive": ["pos", 0], "negative": ["neg", 0],
        "latent_image": ["empty", 0], "start_at_step": 0, "end_at_step": 8,
        "return_with_leftover_noise": "enable"}})).ok
    assert torch.equal(simple, Capture.seen["latent"].samples)
    # The handoff is the state of the full run after 8 steps: finishing it with the same model gives the
    # uninterrupted run's result.
    finish = base_graph(ksampler())
    finish["rest"] = {"class_type": "KSamplerAdvanced", "inputs": {
        "model": ["base", 0], "add_noise": "disable", "noise_seed": SEED, "steps": STEPS, "cfg": 5.0,
        "sampler_name": "euler", "scheduler": "simple", "positive": ["pos", 0], "negative": ["neg", 0],
        "latent_image": ["handoff", 0], "start_at_step": 8, "end_at_step": 10000,
        "return_with_leftover_noise": "disable"}}
    finish["handoff"] = ksampler(end_at=0.8)
    finish["finished"] = {"class_type": "Capture", "inputs": {"value": ["rest", 0]}}
    assert ex.run(finish).ok
    full = Capture.seen["latent"].samples
    assert not torch.equal(simple, full)
    assert (Capture.seen["finished"].samples - full).abs().max().item() < 1e-4


def test_sdxl_turbo_basics_cfg1_single_step(sdxl_models):
    """SDXL-Turbo settings: cfg 1 skips the negative pass; 1 step with sgm_uniform runs from σ_max to 0."""
    graph = base_graph(ksampler(cfg=1.0, steps=1, scheduler="sgm_uniform"))
    result = executor().run(graph)
    assert result.ok, result.error
    image = Capture.seen["image"]
    assert image.shape == (1, SIZE, SIZE, 3) and torch.isfinite(image).all()


def test_sdxl_encoders_refuse_the_wrong_clip(sdxl_models):
    graph = base_graph(ksampler())
    graph.update(refiner_nodes())
    graph["pos"] = encode_sdxl("pos", ["ref", 1], "x")["pos"]
    result = executor().run(graph)
    assert result.status == "error"
    assert "needs an SDXL base CLIP" in result.error.exception_message
