"""The list of built-in node modules; each exports NODES, a tuple of node classes."""

from __future__ import annotations

import importlib

NODE_MODULES: tuple[str, ...] = (
    "nodes.loaders.checkpoints",
    "nodes.conditioning.text",
    "nodes.latent.basics",
    "nodes.latent.inpaint",
    "nodes.sampling.ksampler",
    "nodes.sampling.refiner",
    "nodes.conditioning.sdxl",
    "nodes.image.load",
    "nodes.image.save",
    "nodes.image.transform",
    "nodes.image.masks",
    "nodes.conditioning.combine",
    "nodes.latent.scale",
    "nodes.sampling.custom",
    "nodes.upscale.nodes",
    "nodes.adapters.lora_nodes",
    "nodes.adapters.controlnet_nodes",
    "nodes.adapters.ip_adapter_nodes",
    "nodes.adapters.safety_nodes",
)


def all_node_classes() -> list[type]:
    classes: list[type] = []
    for module_name in NODE_MODULES:
        classes.extend(importlib.import_module(module_name).NODES)
    return classes
