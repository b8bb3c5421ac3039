"""LoRA files → low-rank factors per layer, and layer names → our modules.

Formats read:
- kohya (most files users have): ``lora_unet_<layer>``, ``lora_te_<layer>`` (SDXL: ``lora_te1_``/``lora_te2_``), each
  with ``.lora_down.weight``, ``.lora_up.weight`` and optionally ``.alpha``; the layer is a module path with "." → "_",
  in diffusers naming (``down_blocks_0_attentions_0_…``) or LDM naming (``input_blocks_1_1_…``). LoCon files use the
  same keys on convolutions (down ``[r, in, kh, kw]``, up ``[out, r, 1, 1]``).
- diffusers/peft: ``unet.<module>.lora_A.weight`` / ``lora_B.weight`` (and ``text_encoder.``, ``text_encoder_2.``),
  alphas from the safetensors metadata diffusers writes; diffusers' older attention-processor names
  (``…attn1.processor.to_q_lora.down.weight``) are first converted with diffusers' own ``convert_*_to_peft``.

Layer names are resolved against the actual module tree (see :class:`ModuleIndex`), so a name either hits exactly one
weight of this model or is reported: nothing in a file is silently dropped.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from nodes.sd.state_dicts import ModelFileError


class LoraFileError(ModelFileError):
    """A LoRA file that cannot be used here (unreadable, unknown layout, or made for another model)."""


# kohya key prefix → component (the order matters: "lora_te1_" is not a "lora_te_" key, but be explicit).
KOHYA_COMPONENTS = {"lora_te1_": "text_encoder", "lora_te2_": "text_encoder_2", "lora_te_": "text_encoder",
                    "lora_unet_": "unet"}  # fmt: skip
DOTTED_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
# Key parts (between dots) of adapter types that are not a plain product up @ down: named so the error says what
# the file is.
UNSUPPORTED = {
    "hada_w1_a": "LoHa (LyCORIS)", "lokr_w1": "LoKr (LyCORIS)", "lora_mid": "LoCon with a Tucker core (lora_mid)",
    "dora_scale": "DoRA", "lora_magnitude_vector": "DoRA", "diff": "full-difference (LyCORIS diff)",
    "diff_b": "full-difference (LyCORIS diff)", "on_input": "IA3 (LyCORIS)",
}  # fmt: skip
_KOHYA_PARTS = {"lora_down.weight": "down", "lora_up.weight": "up", "alpha": "alpha"}
_PEFT_PARTS = {"lora_A.weight": "down", "lora_B.weight": "up", "alpha": "alpha"}


@dataclass(frozen=True)
class LowRank:
    """One layer's update ΔW = (alpha / rank) · up @ down (alpha absent: scale 1, as diffusers/peft assume)."""

    down: torch.Tensor  # [rank, in] or [rank, in, kh, kw]
    up: torch.Tensor  # [out, rank] or [out, rank, 1, 1]
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else self.alpha / self.rank

    @property
    def out_in(self) -> tuple[int, int]:
        return int(self.up.shape[0]), int(self.down[0].numel())

    def delta(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """ΔW in float32, shaped like the target weight (a 1×1 convolution takes a linear update and back)."""
        up = self.up.to(device, torch.float32).flatten(1)
        down = self.down.to(device, torch.float32).flatten(1)
        return (up @ down).mul_(self.scale).reshape(shape)


@dataclass
class LoraFile:
    """A parsed LoRA: component ("unet", "text_encoder", "text_encoder_2") → layer name → factors."""

    name: str
    naming: str  # "kohya" (underscored names) or "dotted" (module paths)
    components: dict[str, dict[str, LowRank]] = field(default_factory=dict)

    def layer_count(self) -> int:
        return sum(len(layers) for layers in self.components.values())


def _unsupported_kind(keys: list[str]) -> str | None:
    parts = {part for key in keys for part in key.split(".")}
    return next((kind for marker, kind in UNSUPPORTED.items() if marker in parts), None)


def _collect(
    grouped: Mapping[str, Mapping[str, dict[str, torch.Tensor]]], alphas: Mapping[str, Any], file: str
) -> dict[str, dict[str, LowRank]]:
    """{component: {layer: {"down", "up", "alpha"}}} → LowRank per layer, checking the pairs fit."""
    components: dict[str, dict[str, LowRank]] = {}
    for component, layers in grouped.items():
        for layer, parts in layers.items():
            if "down" not in parts or "up" not in parts:
                missing = "down" if "down" not in parts else "up"
                raise LoraFileError(f"{file}: layer {layer!r} has no {missing} matrix")
            down, up = parts["down"], parts["up"]
            if up.shape[1] != down.shape[0] or up[0, 0].numel() != 1:
                raise LoraFileError(
                    f"{file}: layer {layer!r}: up {tuple(up.shape)} and down {tuple(down.shape)} do not form a product"
                )
            alpha = parts.get("alpha")
            alpha_value = float(alpha) if alpha is not None else alphas.get(f"{component}:{layer}")
            components.setdefault(component, {})[layer] = LowRank(down, up, alpha_value)
    return components


def parse_kohya(state_dict: Mapping[str, torch.Tensor], file: str) -> LoraFile:
    grouped: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        prefix = next((p for p in KOHYA_COMPONENTS if key.startswith(p)), None)
        layer, _, part = key.partition(".")
        role = _KOHYA_PARTS.get(part)
        if prefix is None or role is None:
            unknown.append(key)
            continue
        component = KOHYA_COMPONENTS[prefix]
        grouped.setdefault(component, {}).setdefault(layer[len(prefix):], {})[role] = tensor
    if unknown:
        shown = ", ".join(unknown[:3])
        raise LoraFileError(f"{file}: {len(unknown)} keys that are not kohya LoRA weights (e.g. {shown})")
    return LoraFile(file, "kohya", _collect(grouped, {}, file))


def _peft_alphas(metadata: Mapping[str, str] | None, component: str, layers: list[str]) -> dict[str, float]:
    """Alphas diffusers writes into the safetensors header (``lora_adapter_metadata``: ``unet.lora_alpha``,
    ``unet.alpha_pattern``); peft's rule: a pattern matches a module path suffix."""
    raw = (metadata or {}).get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        return {}
    default = meta.get(f"{component}.lora_alpha")
    patterns = meta.get(f"{component}.alpha_pattern") or {}
    found: dict[str, float] = {}
    for layer in layers:
        value = next((v for p, v in patterns.items() if re.match(rf"(.*\.)?({p})$", layer)), default)
        if value is not None:
            found[f"{component}:{layer}"] = float(value)
    return found


def _old_diffusers_to_peft(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not any(m in key for key in state_dict for m in ("lora.down", "lora.up", "lora_linear_layer", "_lora.")):
        return state_dict
    from diffusers.utils.state_dict_utils import convert_all_state_dict_to_peft

    return convert_all_state_dict_to_peft(state_dict)


def parse_dotted(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None, file: str) -> LoraFile:
    by_component: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        key = key.removeprefix("base_model.model.")
        head, _, rest = key.partition(".")
        component, rest = (head, rest) if head in DOTTED_COMPONENTS else ("unet", key)
        by_component.setdefault(component, {})[rest] = tensor
    grouped: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    alphas: dict[str, float] = {}
    for component, tensors in by_component.items():
        unknown: list[str] = []
        for key, tensor in _old_diffusers_to_peft(tensors).items():
            part = next((p for p in _PEFT_PARTS if key.endswith("." + p)), None)
            if part is None:
                unknown.append(f"{component}.{key}")
                continue
            layer = key[: -len(part) - 1]
            grouped.setdefault(component, {}).setdefault(layer, {})[_PEFT_PARTS[part]] = tensor
        if unknown:
            raise LoraFileError(
                f"{file}: {len(unknown)} keys that are not LoRA weights (e.g. {', '.join(unknown[:3])}); expected "
                "kohya (lora_unet_…lora_down.weight) or diffusers/peft (unet.…lora_A.weight) names"
            )
        alphas.update(_peft_alphas(metadata, component, list(grouped.get(component, {}))))
    return LoraFile(file, "dotted", _collect(grouped, alphas, file))


def parse(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None, file: str) -> LoraFile:
    keys = list(state_dict)
    if not keys:
        raise LoraFileError(f"{file}: the file holds no tensors")
    unsupported = _unsupported_kind(keys)
    if unsupported:
        raise LoraFileError(f"{file}: a {unsupported} adapter; only plain LoRA/LoCon (up @ down) is supported")
    if any(key.startswith(tuple(KOHYA_COMPONENTS)) for key in keys):
        lora = parse_kohya(state_dict, file)
    elif any(key.endswith((".lora_A.weight", ".lora_B.weight", "lora.down.weight", "lora_linear_layer.down.weight"))
             for key in keys):
        lora = parse_dotted(state_dict, metadata, file)
    else:
        raise LoraFileError(
            f"{file}: not a LoRA (found keys like {', '.join(keys[:3])}); expected kohya or diffusers/peft LoRA names"
        )
    return lora


def _underscored(name: str) -> str:
    return name.replace(".", "_")


class ModuleIndex:
    """Layer names as LoRA files write them → module paths of one model (diffusers and, for a UNet, LDM names)."""

    _cache: weakref.WeakKeyDictionary[torch.nn.Module, ModuleIndex] = weakref.WeakKeyDictionary()

    def __init__(self, module: torch.nn.Module, aliases: Mapping[str, str], text_model_level: bool) -> None:
        self.shapes: dict[str, torch.Size] = {}
        for name, sub in module.named_modules():
            weight = getattr(sub, "weight", None)
            if name and isinstance(weight, torch.Tensor) and weight.dim() >= 2:
                self.shapes[name] = weight.shape
        names: dict[str, str] = {name: name for name in self.shapes}
        names.update({alias: target for alias, target in aliases.items() if target in self.shapes})
        if text_model_level:  # a flattened CLIPTextModel (transformers 5) lacks the "text_model." files write
            names.update({"text_model." + name: target for name, target in list(names.items())})
        self.dotted = names
        self.underscored: dict[str, str | None] = {}
        for name, target in names.items():
            key = _underscored(name)
            previous = self.underscored.get(key, target)
            self.underscored[key] = target if previous == target else None  # None: ambiguous, never guessed

    @classmethod
    def of(cls, module: torch.nn.Module, role: str) -> ModuleIndex:
        """The index of a "unet" (with LDM aliases) or a "text_encoder" module, built once per module."""
        found = cls._cache.get(module)
        if found is None:
            if role == "unet":
                found = cls(module, _ldm_aliases(module), text_model_level=False)
            else:
                found = cls(module, {}, text_model_level=not hasattr(module, "text_model"))
            cls._cache[module] = found
        return found

    def resolve(self, layer: str, naming: str) -> str | None:
        return self.underscored.get(layer) if naming == "kohya" else self.dotted.get(layer)


def _ldm_aliases(unet: torch.nn.Module) -> dict[str, str]:
    """LDM module paths (``input_blocks.1.1.…``) → diffusers paths, from the checkpoint converter's table."""
    from nodes.sd.ldm_layout import unet_to_ldm

    config = dict(getattr(unet, "config", {}))
    weights = {name: p for name, p in unet.named_parameters() if name.endswith(".weight")}
    try:
        converted = unet_to_ldm(weights, config, prefix="")
    except (ValueError, KeyError, TypeError):
        return {}
    return {ldm.removesuffix(".weight"): ours.removesuffix(".weight")
            for ours, ldm in zip(weights, converted, strict=True)}
