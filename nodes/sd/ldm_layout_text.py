"""diffusers/transformers CLIP text encoders → their places in original single-file checkpoints.

Two layouts exist in Stable Diffusion files:

* the Hugging Face CLIP layout, kept as is under a prefix (SD1.x ``cond_stage_model.transformer.text_model.*``,
  SDXL ``conditioner.embedders.0.transformer.text_model.*``);
* the OpenCLIP layout (SD2.x ``cond_stage_model.model.*``, SDXL ``conditioner.embedders.1.model.*``, SDXL refiner
  ``conditioner.embedders.0.model.*``): fused ``in_proj`` attention weights (q, k, v stacked), ``resblocks``,
  ``ln_final``, a bare ``positional_embedding`` and ``text_projection`` stored transposed (``x @ P``).

Inverse of ``convert_ldm_clip_checkpoint`` / ``convert_open_clip_checkpoint`` (``diffusers.loaders.single_file_utils``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

StateDict = dict[str, torch.Tensor]

_CLIP_PARTS = ("embeddings.", "encoder.", "final_layer_norm.")
_NON_PERSISTENT = ("embeddings.position_ids",)

_OPEN_CLIP_TOP_LEVEL = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER_MODULES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "self_attn.out_proj": "attn.out_proj",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}
_QKV = ("q_proj", "k_proj", "v_proj")


def _text_model_keys(state_dict: Mapping[str, torch.Tensor], what: str) -> tuple[StateDict, torch.Tensor | None]:
    """Keys relative to the text transformer (``text_model.`` removed), and ``text_projection.weight`` if any.

    transformers ≥ 5.6 stores ``CLIPTextModel`` without the ``text_model.`` level; ``CLIPTextModelWithProjection``
    still has it. Both are accepted.
    """
    inner: StateDict = {}
    projection = None
    unknown = []
    for key, tensor in state_dict.items():
        if key == "text_projection.weight":
            projection = tensor
            continue
        relative = key.removeprefix("text_model.")
        if relative in _NON_PERSISTENT:
            continue
        if not relative.startswith(_CLIP_PARTS):
            unknown.append(key)
            continue
        inner[relative] = tensor
    if unknown:
        raise ValueError(f"{what}: not a CLIP text-encoder key: {', '.join(unknown[:8])}")
    return inner, projection


def clip_text_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """A ``CLIPTextModel`` state dict under ``<prefix>text_model.*``.

    ``prefix`` is the part before ``text_model.``: ``"cond_stage_model.transformer."`` (SD1.x) or
    ``"conditioner.embedders.0.transformer."`` (SDXL).
    """
    inner, projection = _text_model_keys(state_dict, "clip_text_to_ldm")
    if projection is not None:
        raise ValueError("clip_text_to_ldm: the CLIP layout has no text_projection; use open_clip_text_to_ldm")
    return {f"{prefix}text_model.{key}": tensor for key, tensor in inner.items()}


def open_clip_text_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    """A ``CLIPTextModel``/``CLIPTextModelWithProjection`` state dict in the OpenCLIP layout under ``prefix``.

    ``prefix``: ``"cond_stage_model.model."`` (SD2.x), ``"conditioner.embedders.1.model."`` (SDXL base) or
    ``"conditioner.embedders.0.model."`` (SDXL refiner). ``text_projection.weight`` (out × in) is written
    transposed as ``text_projection`` (in × out), as OpenCLIP multiplies ``x @ text_projection``.
    """
    inner, projection = _text_model_keys(state_dict, "open_clip_text_to_ldm")
    converted: StateDict = {}
    fused: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in inner.items():
        if key in _OPEN_CLIP_TOP_LEVEL:
            converted[prefix + _OPEN_CLIP_TOP_LEVEL[key]] = tensor
            continue
        layer, module_and_leaf = _split_layer_key(key)
        module, _, leaf = module_and_leaf.rpartition(".")
        block = f"{prefix}transformer.resblocks.{layer}"
        if module.startswith("self_attn.") and module.removeprefix("self_attn.") in _QKV:
            fused.setdefault((block, leaf), {})[module.removeprefix("self_attn.")] = tensor
        elif module in _OPEN_CLIP_LAYER_MODULES:
            converted[f"{block}.{_OPEN_CLIP_LAYER_MODULES[module]}.{leaf}"] = tensor
        else:
            raise ValueError(f"open_clip_text_to_ldm: no OpenCLIP name for {key}")
    for (block, leaf), parts in fused.items():
        if set(parts) != set(_QKV):
            raise ValueError(f"open_clip_text_to_ldm: {block} lacks {sorted(set(_QKV) - set(parts))} ({leaf})")
        converted[f"{block}.attn.in_proj_{leaf}"] = torch.cat([parts[name] for name in _QKV], dim=0)
    if projection is not None:
        converted[prefix + "text_projection"] = projection.T.contiguous()
    return converted


def _split_layer_key(key: str) -> tuple[int, str]:
    """``encoder.layers.7.mlp.fc1.weight`` → (7, ``mlp.fc1.weight``)."""
    parts = key.split(".")
    if parts[:2] != ["encoder", "layers"] or len(parts) < 5 or not parts[2].isdigit():
        raise ValueError(f"open_clip_text_to_ldm: unexpected text-encoder key {key}")
    return int(parts[2]), ".".join(parts[3:])
