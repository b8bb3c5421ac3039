"""ControlNet files and folders → a shared diffusers ``ControlNetModel`` behind a light CONTROL_NET handle.

Single files in lllyasviel's layout (``control_model.*`` or the same keys without the prefix; .safetensors or a
weights-only .pth) are converted with diffusers' ``convert_controlnet_checkpoint``. The config comes from the
file's shapes; the two things shapes cannot tell — the attention head layout and SDXL's time-embedding width —
follow the real models' rule (SD1: 8 heads; SD2/SDXL: 64 channels per head; SDXL: 256) when the first level is
320 channels wide, and otherwise come from an LDM/SGM ``.yaml`` beside the file (``num_heads`` /
``num_head_channels`` of ``control_stage_config``, ``unet_config`` or ``network_config``; SGM size embedders'
``outdim``). diffusers folders load with ``from_pretrained``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes.sd import devices, ldm_configs
from nodes.sd.loading import build_module, file_identity
from nodes.sd.model_manager import LoadedModule, manager
from nodes.sd.state_dicts import ModelFileError, read_state_dict

PREFIX = "control_model."
STANDARD_WIDTH = 320  # the first level of every real SD1/SD2/SDXL UNet
SDXL_TIME_EMBED = 256
# Context width → family, for messages and for the compatibility check when applied.
CONTEXT_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl_refiner"}
_ADD_EMBEDDING = {f"label_emb.0.{i}.{leaf}": f"add_embedding.linear_{n}.{leaf}"
                  for i, n in ((0, 1), (2, 2)) for leaf in ("weight", "bias")}


@dataclass(frozen=True)
class ControlNetHandle:
    """CONTROL_NET: a loaded ControlNet and what it needs from the model it controls."""

    record: LoadedModule
    context_dim: int  # cross-attention width of the text conditioning it reads
    size_conditioning: bool  # SDXL-style (text_embeds + time_ids)
    source: str

    def cache_nbytes(self) -> dict[str, int]:
        return {}  # the model manager owns the module


def _count(keys: list[str], pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for key in keys if (m := regex.match(key))})


def _hint_channels(sd: Mapping[str, torch.Tensor]) -> list[int]:
    convs = sorted(int(m.group(1)) for k in sd if (m := re.match(r"input_hint_block\.(\d+)\.weight$", k)))
    outs = [int(sd[f"input_hint_block.{i}.weight"].shape[0]) for i in convs]
    # conv_in, then pairs (same width, then stride-2 to the next width), then conv_out to the model width.
    return [outs[0]] + [outs[2 + 2 * j] for j in range((len(outs) - 2) // 2)]


def config_from_shapes(sd: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The ControlNetModel config read off the tensors (keys without ``control_model.``), heads not included."""
    keys = list(sd)
    levels = _count(keys, r"input_blocks\.(\d+)\.0\.op\.weight$") + 1
    zero_convs = _count(keys, r"zero_convs\.(\d+)\.0\.weight$")
    layers = zero_convs // levels - 1
    if layers < 1 or levels * (layers + 1) != zero_convs:
        raise ModelFileError(f"{zero_convs} zero convolutions do not make {levels} levels of equal depth")
    widths, kinds, depths = [], [], []
    for level in range(levels):
        first = 1 + level * (layers + 1)
        widths.append(int(sd[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0]))
        depth = _count(keys, rf"input_blocks\.{first}\.1\.transformer_blocks\.(\d+)\.")
        kinds.append("CrossAttnDownBlock2D" if depth else "DownBlock2D")
        depths.append(max(depth, 1))
    to_k = next(v for k, v in sd.items() if k.endswith("attn2.to_k.weight"))
    proj_in = next(v for k, v in sd.items() if k.endswith(".proj_in.weight"))
    config: dict[str, Any] = {
        "in_channels": int(sd["input_blocks.0.0.weight"].shape[1]),
        "conditioning_channels": int(sd["input_hint_block.0.weight"].shape[1]),
        "conditioning_embedding_out_channels": _hint_channels(sd),
        "block_out_channels": widths,
        "down_block_types": kinds,
        "layers_per_block": layers,
        "transformer_layers_per_block": depths,
        "cross_attention_dim": int(to_k.shape[1]),
        "use_linear_projection": proj_in.dim() == 2,
    }
    if "label_emb.0.0.weight" in sd:
        config.update(addition_embed_type="text_time", addition_time_embed_dim=SDXL_TIME_EMBED,
                      projection_class_embeddings_input_dim=int(sd["label_emb.0.0.weight"].shape[1]))
    return config


def _heads_from_yaml(ldm: Mapping[str, Any], widths: list[int]) -> int | list[int]:
    params = ldm["model"].get("params", {}) or {}
    for section in ("control_stage_config", "unet_config", "network_config"):
        entry = (params.get(section) or {}).get("params") or {}
        if "num_heads" in entry and entry["num_heads"] not in (None, -1):
            return int(entry["num_heads"])
        if entry.get("num_head_channels") not in (None, -1):
            return [w // int(entry["num_head_channels"]) for w in widths]
    raise ModelFileError("the yaml beside it names no num_heads / num_head_channels")


def _time_embed_from_yaml(ldm: Mapping[str, Any]) -> int | None:
    """SGM yamls give SDXL's size-embedding width as the ``outdim`` of their ConcatTimestepEmbedderND entries."""
    params = ldm["model"].get("params", {}) or {}
    embedders = ((params.get("conditioner_config") or {}).get("params") or {}).get("emb_models") or []
    return next((int(e["params"]["outdim"]) for e in embedders
                 if str(e.get("target", "")).endswith("ConcatTimestepEmbedderND")), None)


def complete_config(sd: Mapping[str, torch.Tensor], path: Path) -> dict[str, Any]:
    config = config_from_shapes(sd)
    widths = config["block_out_channels"]
    ldm = ldm_configs.yaml_beside(path)
    if ldm is not None:
        config["attention_head_dim"] = _heads_from_yaml(ldm, widths)
        if "addition_time_embed_dim" in config:
            config["addition_time_embed_dim"] = _time_embed_from_yaml(ldm) or SDXL_TIME_EMBED
    elif widths[0] == STANDARD_WIDTH:
        config["attention_head_dim"] = [w // 64 for w in widths] if config["use_linear_projection"] else 8
    else:
        raise ModelFileError(
            f"{path.name}: a ControlNet of non-standard size (first level {widths[0]} channels, not 320): put its "
            f"LDM .yaml config beside it as {path.with_suffix('.yaml').name} (with num_heads or num_head_channels)"
        )
    return config


def _converted(sd: dict[str, torch.Tensor], config: dict[str, Any], file: str) -> dict[str, torch.Tensor]:
    """diffusers' conversion, checked: every tensor of the file ends up somewhere, none is invented."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    converted = convert_controlnet_checkpoint(sd, config)
    present = {k: v for k, v in converted.items() if v is not None}
    # diffusers' table has no SDXL size-conditioning MLP (label_emb → add_embedding): add it.
    for ldm, ours in _ADD_EMBEDDING.items():
        if ldm in sd:
            present.setdefault(ours, sd[ldm])
    used = {id(v) for v in present.values()}
    unused = [k for k, v in sd.items() if id(v) not in used]
    if unused:
        raise ModelFileError(
            f"{file}: {len(unused)} tensors of the file have no place in the ControlNet (e.g. {', '.join(unused[:3])})"
        )
    return present


def _strip_prefix(sd: dict[str, torch.Tensor], file: str) -> dict[str, torch.Tensor]:
    if any(k.startswith(PREFIX) for k in sd):
        sd = {k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)}
    if "input_hint_block.0.weight" not in sd or "input_blocks.0.0.weight" not in sd:
        found = ", ".join(list(sd)[:3]) or "no tensors"
        if any(k.startswith(("controlnet_cond_embedding.", "lora_", "model.diffusion_model.")) for k in sd):
            found += " (a diffusers-named, LoRA or full checkpoint file)"
        raise ModelFileError(
            f"{file}: not a ControlNet in the original layout (expected control_model.input_hint_block.*; "
            f"found {found}). diffusers ControlNets are folders with config.json."
        )
    return sd


def _factory_from_file(path: Path, dtype: torch.dtype):
    from diffusers import ControlNetModel

    def build() -> torch.nn.Module:
        sd = _strip_prefix(read_state_dict(path), path.name)
        try:
            config = complete_config(sd, path)
        except (KeyError, StopIteration, IndexError) as exc:
            raise ModelFileError(f"{path.name}: incomplete ControlNet (no {exc})") from None
        weights = _converted(sd, config, path.name)
        return build_module(lambda: ControlNetModel.from_config(config), weights, "ControlNet", path.name, dtype)

    return build


def _factory_from_folder(path: Path, dtype: torch.dtype):
    from diffusers import ControlNetModel

    def build() -> torch.nn.Module:
        try:
            return ControlNetModel.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path.name}: not a loadable diffusers ControlNet folder ({exc})") from None

    return build


def load_controlnet(path: Path, name: str = "") -> ControlNetHandle:
    dtype = devices.default_dtype()
    if path.is_dir():
        identity = file_identity(path / "config.json")
        factory = _factory_from_folder(path, dtype)
    else:
        identity = file_identity(path)
        factory = _factory_from_file(path, dtype)
    record = manager().load((identity, "controlnet", dtype), f"{path.name} ControlNet", factory)
    config = record.module.config
    return ControlNetHandle(
        record, int(config.cross_attention_dim), config.addition_embed_type == "text_time", name or path.name
    )
