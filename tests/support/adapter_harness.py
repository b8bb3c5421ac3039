"""Running adapter workflows in tests: the node registry with the adapter nodes, an output node that keeps values,
a text-to-image graph builder, and the diffusers reference run on diffgraph's schedule."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from graphcore.inputs import Socket, String
from graphcore.node import Node, Result


def adapter_node_classes() -> list[type]:
    """The built-in catalog plus the adapter nodes (not yet wired into nodes.catalog) and the Grab output node."""
    from nodes.adapters import controlnet_nodes, ip_adapter_nodes, lora_nodes, safety_nodes
    from nodes.catalog import all_node_classes

    return [*all_node_classes(), *lora_nodes.NODES, *controlnet_nodes.NODES, *ip_adapter_nodes.NODES,
            *safety_nodes.NODES, Grab]


def registry() -> Any:
    from graphcore.registry import Registry

    return Registry().add_all(adapter_node_classes())


class Grab(Node):
    """Test output node: keeps the value it receives under its tag."""

    category = "testing"
    output_node = True
    inputs = {"value": Socket("*"), "tag": String("out")}
    values: ClassVar[dict[str, Any]] = {}

    def run(self, ctx, value, tag="out"):
        Grab.values[tag] = value
        return Result((), {"tag": [tag]})


def txt2img(ckpt_name: str, *, prompt: str = "a red circle", negative: str = "", seed: int = 5, steps: int = 4,
            cfg: float = 7.0, size: int = 64, tag: str = "out") -> dict[str, dict]:
    """An API-format text-to-image graph (euler, "simple" schedule) ending in Grab; node ids name their role."""
    return {
        "ckpt": {"class_type": "LoadCheckpoint", "inputs": {"ckpt_name": ckpt_name}},
        "pos": {"class_type": "CLIPEncode", "inputs": {"text": prompt, "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPEncode", "inputs": {"text": negative, "clip": ["ckpt", 1]}},
        "latent": {"class_type": "EmptyLatent", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "sampler": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": cfg, "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0,
            "model": ["ckpt", 0], "positive": ["pos", 0], "negative": ["neg", 0], "latent_image": ["latent", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}},
        "out": {"class_type": "Grab", "inputs": {"value": ["decode", 0], "tag": tag}},
    }


def run_graph(executor: Any, graph: Mapping[str, Any]) -> Any:
    result = executor.run(copy.deepcopy(dict(graph)))
    if not result.ok:
        error = result.error
        raise AssertionError(f"{error.node_type} #{error.node_id}: {error.exception_message}" if error
                             else result.status)
    return result


def reference_image(pipe: Any, *, prompt: str = "a red circle", negative: str = "", seed: int = 5, steps: int = 4,
                    cfg: float = 7.0, size: int = 64, **call: Any) -> torch.Tensor:
    """A diffusers pipeline run on diffgraph's schedule: euler on the "simple" σ (integer timesteps: "trailing"
    spacing) from ComfyUI's initial latent noise·sqrt(1 + σ_max²). IMAGE layout [B, H, W, C]."""
    from diffusers import EulerDiscreteScheduler

    from nodes.samplers.noise import prepare_noise

    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
    pipe.scheduler.set_timesteps(steps)
    expected = [999 - i * (1000 // steps) for i in range(steps)]
    assert pipe.scheduler.timesteps.tolist() == expected, "the reference must visit the simple schedule's timesteps"
    sigma_max = float(pipe.scheduler.sigmas[0])
    noise = prepare_noise(torch.zeros(1, 4, size // 8, size // 8), seed)
    latents = noise * (1 + sigma_max**2) ** 0.5 / float(pipe.scheduler.init_noise_sigma)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        images = pipe(prompt, negative_prompt=negative, num_inference_steps=steps, guidance_scale=cfg, latents=latents,
                      output_type="pt", height=size, width=size, **call).images
    return images.permute(0, 2, 3, 1).float()
