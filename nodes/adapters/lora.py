"""LoRA as a patch: a file is read once, bound to one model's layers, merged for a run and undone exactly.

`applied()` replaces each touched weight's storage with W + strength·ΔW (computed in float32) and on exit puts the
original tensor object back, so the shared module is bit-for-bit what it was; nested patches (stacked LoRAs) undo
in reverse order. Binding checks every layer of the file against the model: a layer that does not exist or has
another shape is an error naming the file, never a silent skip.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes.adapters.lora_keys import LoraFile, LoraFileError, LowRank, ModuleIndex, parse
from nodes.sd.families import BASE_ARCHITECTURE, FAMILIES
from nodes.sd.loading import file_identity
from nodes.sd.state_dicts import read_state_dict
from nodes.values import ClipHandle, ModelHandle

# Which component of a LoRA file each text-encoder slot of a family reads.
TEXT_ENCODER_COMPONENTS: dict[str, tuple[str, ...]] = {
    "sdxl": ("text_encoder", "text_encoder_2"),
    "sdxl_refiner": ("text_encoder_2",),
}
DEFAULT_TEXT_ENCODER_COMPONENTS = ("text_encoder",)
# Cross-attention context width of the real models → family (for "this LoRA is for …" messages).
CONTEXT_WIDTH_FAMILY = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl_refiner"}
_CACHE_SIZE = 4  # parsed files (CPU tensors); handles in the output cache keep their own references

_files: OrderedDict[tuple[str, int, int], LoraFile] = OrderedDict()
_files_lock = threading.Lock()


def _metadata(path: Path) -> dict[str, str] | None:
    if path.suffix.lower() not in (".safetensors", ".sft"):
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device="cpu") as handle:
        return handle.metadata()


def read_lora(path: Path) -> LoraFile:
    """The parsed LoRA in `path`, read once per file version (path, mtime, size)."""
    identity = file_identity(path)
    with _files_lock:
        if identity in _files:
            _files.move_to_end(identity)
            return _files[identity]
    lora = parse(read_state_dict(path), _metadata(path), path.name)
    with _files_lock:
        _files[identity] = lora
        while len(_files) > _CACHE_SIZE:
            _files.popitem(last=False)
    return lora


Layers = tuple[tuple[str, LowRank], ...]  # (module path, factors)


class LoraPatch:
    """Adds strength·ΔW to the bound layers of a UNet or text encoder while a run uses it."""

    def __init__(self, name: str, strength: float, targets: Mapping[tuple[str, int], Layers]) -> None:
        self.name = name
        self.strength = float(strength)
        self.targets = dict(targets)

    def __repr__(self) -> str:
        layers = sum(len(v) for v in self.targets.values())
        return f"LoraPatch({self.name!r}, strength={self.strength}, layers={layers})"

    @contextmanager
    def applied(self, module: torch.nn.Module, context: Mapping[str, Any]) -> Iterator[None]:
        layers = self.targets.get((context.get("role", "unet"), int(context.get("index", 0))), ())
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        try:
            with torch.no_grad():
                for path, factors in layers:
                    weight = module.get_submodule(path).weight
                    original = weight.data
                    saved.append((weight, original))
                    delta = factors.delta(original.shape, original.device).mul_(self.strength)
                    weight.data = (original.to(torch.float32) + delta).to(original.dtype)
            yield
        finally:
            for weight, original in reversed(saved):
                weight.data = original


@dataclass
class _Binding:
    layers: list[tuple[str, LowRank]]
    missing: list[str]
    wrong_shape: list[str]


def _bind(lora: LoraFile, component: str, module: torch.nn.Module, role: str) -> _Binding:
    index = ModuleIndex.of(module, role)
    binding = _Binding([], [], [])
    for layer, factors in lora.components.get(component, {}).items():
        target = index.resolve(layer, lora.naming)
        if target is None:
            binding.missing.append(f"{component}:{layer}")
            continue
        shape = index.shapes[target]
        if (int(shape[0]), math.prod(shape[1:])) != factors.out_in:
            binding.wrong_shape.append(f"{component}:{layer} ({factors.out_in} vs {tuple(shape)})")
            continue
        binding.layers.append((target, factors))
    return binding


def _guess_family(lora: LoraFile) -> str | None:
    if "text_encoder_2" in lora.components and "text_encoder" in lora.components:
        return "sdxl"
    for layer, factors in lora.components.get("unet", {}).items():
        if layer.endswith(("attn2_to_k", "attn2.to_k")):
            return CONTEXT_WIDTH_FAMILY.get(int(factors.down.shape[1]))
    return None


def _mismatch(lora: LoraFile, model: ModelHandle, missing: list[str], wrong: list[str]) -> LoraFileError:
    family = model.family
    parts = []
    if missing:
        parts.append(f"{len(missing)} layers this model does not have (e.g. {', '.join(missing[:3])})")
    if wrong:
        parts.append(f"{len(wrong)} layers of another size (e.g. {'; '.join(wrong[:2])})")
    guess = _guess_family(lora)
    hint = ""
    if guess and guess != BASE_ARCHITECTURE.get(family.name, family.name):
        hint = f" It looks like a LoRA for {FAMILIES[guess].title}."
    return LoraFileError(
        f"{lora.name}: this LoRA does not fit the {family.title} model {model.source!r}: {'; '.join(parts)}.{hint}"
    )


def text_encoder_components(family: Any) -> tuple[str, ...]:
    return TEXT_ENCODER_COMPONENTS.get(BASE_ARCHITECTURE.get(family.name, family.name),
                                       DEFAULT_TEXT_ENCODER_COMPONENTS)


def apply_lora(
    lora: LoraFile, model: ModelHandle, clip: ClipHandle | None, strength_model: float, strength_clip: float
) -> tuple[ModelHandle, ClipHandle | None]:
    """New handles carrying the LoRA as a patch (the modules are not touched here). `clip` None: UNet only."""
    missing: list[str] = []
    wrong: list[str] = []
    unet = _bind(lora, "unet", model.unet.module, "unet")
    missing += unet.missing
    wrong += unet.wrong_shape
    text_targets: dict[tuple[str, int], Layers] = {}
    if clip is not None:
        components = text_encoder_components(clip.family)
        for slot_index, component in enumerate(components[: len(clip.encoders)]):
            bound = _bind(lora, component, clip.encoders[slot_index].module.module, "text_encoder")
            missing += bound.missing
            wrong += bound.wrong_shape
            if bound.layers:
                text_targets[("text_encoder", slot_index)] = tuple(bound.layers)
        for component in lora.components:
            if component != "unet" and component not in components:
                missing += [f"{component}:{layer}" for layer in lora.components[component]]
    if missing or wrong:
        raise _mismatch(lora, model, missing, wrong)
    if not unet.layers and not text_targets:
        what = "UNet layers" if clip is None else "layers"
        raise LoraFileError(f"{lora.name}: the file has no {what} to apply")
    if unet.layers and strength_model != 0:
        model = model.with_patch(LoraPatch(lora.name, strength_model, {("unet", 0): tuple(unet.layers)}))
    if clip is not None and text_targets and strength_clip != 0:
        clip = clip.with_patch(LoraPatch(lora.name, strength_clip, text_targets))
    return model, clip
