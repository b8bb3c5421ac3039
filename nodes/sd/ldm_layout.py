"""diffusers → original ("LDM"/"SGM" single-file) key layout for Stable Diffusion checkpoints.

The inverse of ``diffusers.loaders.single_file_utils`` (``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``,
``convert_controlnet_checkpoint``, ``convert_ldm_clip_checkpoint``, ``convert_open_clip_checkpoint``): a state dict
written by these functions converts back through diffusers' own functions to the same tensors, key for key.

Every converter renames keys by *module prefix*: a table maps each diffusers module path (``down_blocks.1.resnets.0``)
to its original path (``input_blocks.4.0``), built from the model config; the rest of the key is kept, except inside
ResNet blocks and VAE attention, whose leaf names differ. A key that no table entry covers raises ``ValueError``: a
converter never drops or invents a tensor.

Public functions return complete single-file keys (``prefix`` defaults to the standard checkpoint prefix; pass
``prefix=""`` for bare keys). Text encoders live in :mod:`nodes.sd.ldm_layout_text`; whole checkpoints are assembled
by :func:`pipeline_to_single_file`; the ``.yaml`` to put beside a non-standard one by
:func:`nodes.sd.ldm_layout_yaml.ldm_yaml_config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from nodes.sd.ldm_layout_text import clip_text_to_ldm, open_clip_text_to_ldm
from nodes.sd.ldm_layout_yaml import FAMILY_LAYOUT_NAMES, ldm_yaml_config

__all__ = [
    "FAMILY_LAYOUT_NAMES", "LDM_CONTROLNET_PREFIX", "LDM_UNET_PREFIX", "LDM_VAE_PREFIX", "SINGLE_FILE_LAYOUTS",
    "clip_text_to_ldm", "controlnet_to_ldm", "ldm_yaml_config", "open_clip_text_to_ldm", "pipeline_to_single_file",
    "unet_to_ldm", "vae_to_ldm",
]  # fmt: skip

StateDict = dict[str, torch.Tensor]

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
LDM_CONTROLNET_PREFIX = "control_model."

# ResNet leaf names: diffusers ResnetBlock2D → openaimodel.ResBlock (UNet, ControlNet) / model.ResnetBlock (VAE).
_UNET_RESNET_LEAVES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET_LEAVES = {"conv_shortcut": "nin_shortcut"}
# VAE mid-block attention: diffusers Attention (linear q/k/v/out) → model.AttnBlock (1×1 convolutions).
_VAE_ATTENTION_LEAVES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_ATTENTION_CONVS = ("q", "k", "v", "proj_out")


@dataclass(frozen=True)
class _Rename:
    """Where one diffusers module goes, and how the leaf names below it change."""

    target: str
    leaves: Mapping[str, str] | None = None
    linear_to_conv: tuple[str, ...] = ()


_PrefixTable = dict[str, _Rename]


def _rename_state_dict(
    state_dict: Mapping[str, torch.Tensor], table: _PrefixTable, what: str, prefix: str
) -> StateDict:
    """Apply a prefix table to every key; the longest matching module path wins."""
    converted: StateDict = {}
    unmapped: list[str] = []
    for key, tensor in state_dict.items():
        parts = key.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            rename = table.get(".".join(parts[:cut]))
            if rename is not None:
                new_key, tensor = _rename_leaf(rename, parts[cut:], tensor)
                converted[prefix + new_key] = tensor
                break
        else:
            unmapped.append(key)
    if unmapped:
        shown = ", ".join(unmapped[:8]) + (f" … ({len(unmapped)} in all)" if len(unmapped) > 8 else "")
        raise ValueError(f"{what}: no original-layout name for {shown}")
    return converted


def _rename_leaf(rename: _Rename, rest: list[str], tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    leaf = ".".join(rest)
    for old, new in (rename.leaves or {}).items():
        if leaf == old or leaf.startswith(old + "."):
            leaf = new + leaf[len(old) :]
            if leaf.split(".")[0] in rename.linear_to_conv and tensor.ndim == 2:
                tensor = tensor[:, :, None, None]
            break
    return f"{rename.target}.{leaf}", tensor


def _layers_per_block(config: Mapping[str, Any]) -> int:
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError(f"layers_per_block must be one number for the original layout, got {layers!r}")
    return layers


def _encoder_half_table(config: Mapping[str, Any]) -> _PrefixTable:
    """Modules a UNet and a ControlNet share: embeddings, conv_in, the down path and the middle block."""
    resnet = _UNET_RESNET_LEAVES
    table: _PrefixTable = {
        "time_embedding.linear_1": _Rename("time_embed.0"),
        "time_embedding.linear_2": _Rename("time_embed.2"),
        "conv_in": _Rename("input_blocks.0.0"),
        # SDXL's text_time embedding and SD2-upscaler/unCLIP class projections share LDM's `label_emb.0`.
        "add_embedding.linear_1": _Rename("label_emb.0.0"),
        "add_embedding.linear_2": _Rename("label_emb.0.2"),
        "class_embedding.linear_1": _Rename("label_emb.0.0"),
        "class_embedding.linear_2": _Rename("label_emb.0.2"),
        "class_embedding": _Rename("label_emb"),
        "mid_block.resnets.0": _Rename("middle_block.0", resnet),
        "mid_block.attentions.0": _Rename("middle_block.1"),
        "mid_block.resnets.1": _Rename("middle_block.2", resnet),
    }
    layers = _layers_per_block(config)
    for block in range(len(config["down_block_types"])):
        first = 1 + block * (layers + 1)
        for layer in range(layers):
            table[f"down_blocks.{block}.resnets.{layer}"] = _Rename(f"input_blocks.{first + layer}.0", resnet)
            table[f"down_blocks.{block}.attentions.{layer}"] = _Rename(f"input_blocks.{first + layer}.1")
        table[f"down_blocks.{block}.downsamplers.0.conv"] = _Rename(f"input_blocks.{first + layers}.0.op")
    return table


def _unet_table(config: Mapping[str, Any]) -> _PrefixTable:
    table = _encoder_half_table(config)
    table["conv_norm_out"] = _Rename("out.0")
    table["conv_out"] = _Rename("out.2")
    layers = _layers_per_block(config)
    for block, block_type in enumerate(config["up_block_types"]):
        first = block * (layers + 1)
        for layer in range(layers + 1):
            resnet = _Rename(f"output_blocks.{first + layer}.0", _UNET_RESNET_LEAVES)
            table[f"up_blocks.{block}.resnets.{layer}"] = resnet
            table[f"up_blocks.{block}.attentions.{layer}"] = _Rename(f"output_blocks.{first + layer}.1")
        # The upsampler follows the last layer's ResBlock (and its transformer, when the block has one).
        slot = 2 if "CrossAttn" in block_type else 1
        table[f"up_blocks.{block}.upsamplers.0.conv"] = _Rename(f"output_blocks.{first + layers}.{slot}.conv")
    return table


def unet_to_ldm(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], prefix: str = LDM_UNET_PREFIX
) -> StateDict:
    """A diffusers ``UNet2DConditionModel`` state dict in the original ``openaimodel.UNetModel`` layout.

    Covers SD1.x, SD2.x (linear transformer projections), SDXL base/refiner (``add_embedding`` → ``label_emb``)
    and inpainting UNets (9 input channels: only a tensor shape changes). ``config`` is the UNet's config.
    """
    return _rename_state_dict(state_dict, _unet_table(config), "unet_to_ldm", prefix)


def controlnet_to_ldm(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any], prefix: str = LDM_CONTROLNET_PREFIX
) -> StateDict:
    """A diffusers ``ControlNetModel`` state dict in lllyasviel's ``control_model.*`` layout.

    The hint encoder's convolutions sit at the even indices of ``input_hint_block`` (SiLUs in between);
    ``controlnet_down_blocks.N`` are ``zero_convs.N.0`` and ``controlnet_mid_block`` is ``middle_block_out.0``.
    """
    table = _encoder_half_table(config)
    hint_blocks = 2 * (len(config["conditioning_embedding_out_channels"]) - 1)
    table["controlnet_cond_embedding.conv_in"] = _Rename("input_hint_block.0")
    for index in range(hint_blocks):
        table[f"controlnet_cond_embedding.blocks.{index}"] = _Rename(f"input_hint_block.{2 * (index + 1)}")
    table["controlnet_cond_embedding.conv_out"] = _Rename(f"input_hint_block.{2 * (hint_blocks + 1)}")
    zero_convs = 1 + len(config["down_block_types"]) * (_layers_per_block(config) + 1) - 1
    for index in range(zero_convs):
        table[f"controlnet_down_blocks.{index}"] = _Rename(f"zero_convs.{index}.0")
    table["controlnet_mid_block"] = _Rename("middle_block_out.0")
    return _rename_state_dict(state_dict, table, "controlnet_to_ldm", prefix)


def _vae_table(levels: int, layers: int) -> _PrefixTable:
    table: _PrefixTable = {
        "quant_conv": _Rename("quant_conv"),
        "post_quant_conv": _Rename("post_quant_conv"),
    }
    for part in ("encoder", "decoder"):
        table[f"{part}.conv_in"] = _Rename(f"{part}.conv_in")
        table[f"{part}.conv_out"] = _Rename(f"{part}.conv_out")
        table[f"{part}.conv_norm_out"] = _Rename(f"{part}.norm_out")
        for index in range(2):
            table[f"{part}.mid_block.resnets.{index}"] = _Rename(f"{part}.mid.block_{index + 1}", _VAE_RESNET_LEAVES)
        table[f"{part}.mid_block.attentions.0"] = _Rename(
            f"{part}.mid.attn_1", _VAE_ATTENTION_LEAVES, linear_to_conv=_VAE_ATTENTION_CONVS
        )
    for level in range(levels):
        for index in range(layers):
            table[f"encoder.down_blocks.{level}.resnets.{index}"] = _Rename(
                f"encoder.down.{level}.block.{index}", _VAE_RESNET_LEAVES
            )
        table[f"encoder.down_blocks.{level}.downsamplers.0.conv"] = _Rename(f"encoder.down.{level}.downsample.conv")
        # The original decoder numbers its levels from the lowest resolution up, diffusers from the top down.
        original = levels - 1 - level
        for index in range(layers + 1):
            table[f"decoder.up_blocks.{level}.resnets.{index}"] = _Rename(
                f"decoder.up.{original}.block.{index}", _VAE_RESNET_LEAVES
            )
        table[f"decoder.up_blocks.{level}.upsamplers.0.conv"] = _Rename(f"decoder.up.{original}.upsample.conv")
    return table


def _count_indices(state_dict: Mapping[str, torch.Tensor], head: str, position: int) -> int:
    """1 + the largest integer found at ``position`` of the keys starting with ``head``."""
    found = [int(key.split(".")[position]) for key in state_dict if key.startswith(head)]
    return 1 + max(found, default=-1)


def vae_to_ldm(state_dict: Mapping[str, torch.Tensor], prefix: str = LDM_VAE_PREFIX) -> StateDict:
    """A diffusers ``AutoencoderKL`` state dict in the original ``AutoencoderKL`` (``encoder.down.N.block.M``) layout.

    The number of levels and ResNets per level is read from the keys. The mid-block attention's linear
    q/k/v/out weights become the original 1×1 convolution weights.
    """
    levels = _count_indices(state_dict, "decoder.up_blocks.", 2)
    layers = _count_indices(state_dict, "encoder.down_blocks.0.resnets.", 4)
    return _rename_state_dict(state_dict, _vae_table(levels, layers), "vae_to_ldm", prefix)


# --- whole checkpoints --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SingleFileLayout:
    """Where each text encoder of a family goes in a single-file checkpoint: (component, layout, prefix)."""

    text_encoders: tuple[tuple[str, str, str], ...]


_TEXT_CONVERTERS = {"clip": clip_text_to_ldm, "open_clip": open_clip_text_to_ldm}

SINGLE_FILE_LAYOUTS: dict[str, SingleFileLayout] = {
    "sd1": SingleFileLayout((("text_encoder", "clip", "cond_stage_model.transformer."),)),
    "sd2": SingleFileLayout((("text_encoder", "open_clip", "cond_stage_model.model."),)),
    "sdxl": SingleFileLayout(
        (
            ("text_encoder", "clip", "conditioner.embedders.0.transformer."),
            ("text_encoder_2", "open_clip", "conditioner.embedders.1.model."),
        )
    ),
    "sdxl_refiner": SingleFileLayout((("text_encoder_2", "open_clip", "conditioner.embedders.0.model."),)),
}


def _state_dict_of(component: Any) -> Mapping[str, torch.Tensor]:
    return component.state_dict() if hasattr(component, "state_dict") else component


def pipeline_to_single_file(components: Mapping[str, Any], family: str) -> StateDict:
    """One original-layout checkpoint from a pipeline's parts.

    ``components`` maps pipeline names to modules: ``unet`` (a ``UNet2DConditionModel``: its config is needed),
    ``vae`` and the family's text encoders (modules or state dicts). ``family`` is any name in
    :data:`FAMILY_LAYOUT_NAMES`. For SD2, pass the *full* OpenCLIP tower as ``text_encoder`` if you have it: real
    SD2 files carry all 24 OpenCLIP blocks and ``text_projection``, while diffusers' SD2 text encoder keeps 23.
    """
    layout_name = FAMILY_LAYOUT_NAMES.get(family)
    if layout_name is None:
        raise ValueError(f"pipeline_to_single_file: unknown family {family!r}; known: {sorted(FAMILY_LAYOUT_NAMES)}")
    layout = SINGLE_FILE_LAYOUTS[layout_name]
    needed = ["unet", "vae"] + [name for name, _, _ in layout.text_encoders]
    missing = [name for name in needed if components.get(name) is None]
    if missing:
        raise ValueError(f"pipeline_to_single_file: family {family!r} needs components {missing}")
    unet = components["unet"]
    checkpoint = unet_to_ldm(unet.state_dict(), unet.config)
    checkpoint.update(vae_to_ldm(_state_dict_of(components["vae"])))
    for name, kind, prefix in layout.text_encoders:
        checkpoint.update(_TEXT_CONVERTERS[kind](_state_dict_of(components[name]), prefix))
    return checkpoint
