"""The generation settings behind an output node, read from the API graph, for A1111-style `parameters` text.

Walks upstream from the output node to the nearest sampler, then from the sampler to its prompts, checkpoint
and clip-skip node. Our built-in names and ComfyUI's are both recognised. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphcore import a1111

SAMPLER_SEED_INPUT = {"KSampler": "seed", "KSamplerAdvanced": "noise_seed"}
TEXT_ENCODERS = frozenset({"CLIPEncode", "CLIPTextEncode"})
CHECKPOINT_LOADERS = frozenset({"LoadCheckpoint", "CheckpointLoaderSimple", "CheckpointLoader"})
CLIP_SKIP_NODES = frozenset({"CLIPSetLastLayer"})


def _link(value: Any) -> str | None:
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
        return str(value[0])
    return None


def _upstream(prompt: Mapping[str, Any], start: str | None, wanted: frozenset[str]) -> str | None:
    """The nearest node (breadth first) at or above `start` whose class_type is in `wanted`."""
    queue, seen = [start] if start else [], set()
    while queue:
        node_id = queue.pop(0)
        if node_id in seen or not isinstance(prompt.get(node_id), Mapping):
            continue
        seen.add(node_id)
        node = prompt[node_id]
        if node.get("class_type") in wanted:
            return node_id
        queue.extend(link for value in (node.get("inputs") or {}).values() if (link := _link(value)))
    return None


def _constant(node: Mapping[str, Any], name: str) -> Any:
    value = (node.get("inputs") or {}).get(name)
    return None if isinstance(value, (list, dict)) else value


def settings_from_prompt(prompt: Mapping[str, Any], output_node_id: str) -> dict[str, Any] | None:
    """The generation settings behind an output node of an API graph (None when no sampler feeds it): the
    nearest KSampler/KSamplerAdvanced upstream, its prompts, checkpoint and clip skip. Only constants are
    reported; a value fed by a link is left out."""
    sampler_id = _upstream(prompt, output_node_id, frozenset(SAMPLER_SEED_INPUT))
    if sampler_id is None:
        return None
    sampler = prompt[sampler_id]
    inputs = sampler.get("inputs") or {}
    settings: dict[str, Any] = {
        "seed": _constant(sampler, SAMPLER_SEED_INPUT[sampler["class_type"]]),
        **{name: _constant(sampler, name) for name in ("steps", "cfg", "sampler_name", "scheduler", "denoise")},
    }
    for field_name, input_name in (("prompt", "positive"), ("negative_prompt", "negative")):
        encoder_id = _upstream(prompt, _link(inputs.get(input_name)), TEXT_ENCODERS)
        if encoder_id is not None:
            text = _constant(prompt[encoder_id], "text")
            settings[field_name] = text if isinstance(text, str) else None
            if field_name == "prompt":
                clip_link = _link((prompt[encoder_id].get("inputs") or {}).get("clip"))
                clip_id = _upstream(prompt, clip_link, CLIP_SKIP_NODES)
                layer = _constant(prompt[clip_id], "stop_at_clip_layer") if clip_id else None
                if isinstance(layer, int) and layer < -1:
                    settings["clip_skip"] = -layer
    loader_id = _upstream(prompt, _link(inputs.get("model")), CHECKPOINT_LOADERS)
    if loader_id is not None:
        settings["model"] = _constant(prompt[loader_id], "ckpt_name")
    return {key: value for key, value in settings.items() if value is not None}


def parameters_text(prompt: Mapping[str, Any], output_node_id: str, width: int, height: int) -> str | None:
    """A1111 `parameters` for an image saved by `output_node_id` (None when no sampler made it)."""
    settings = settings_from_prompt(prompt, output_node_id)
    if settings is None:
        return None
    settings.update(width=width, height=height, extra={"Version": "diffgraph"})
    return a1111.format_parameters(settings)
