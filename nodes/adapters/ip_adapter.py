"""IP-Adapter files → image projection + per-layer image key/value weights, and image → prompt tokens.

Layout (the official h94 release): ``image_proj.*`` (base: ``proj`` + ``norm``, 4 tokens from the projected image
embedding; plus: a perceiver resampler with ``latents`` over the penultimate hidden states) and
``ip_adapter.{1,3,5,…}.to_k_ip/to_v_ip.weight``, one pair per cross-attention layer in the UNet's order. ``.bin``
files hold the same as nested dicts and load with ``torch.load(weights_only=True)`` only. The image projection is
built by diffusers' own converter (``_convert_ip_adapter_image_proj_to_diffusers``).

Negative (unconditional) image embeddings follow ComfyUI IPAdapter-plus: zeros for the base projection, the
hidden states of a black image for "plus" (diffusers uses zeros of the normalised pixels instead), unless a
negative image is given.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nodes.adapters.clip_vision import ClipVisionHandle, encode
from nodes.sd import devices
from nodes.sd.loading import file_identity
from nodes.sd.model_manager import LoadedModule, manager
from nodes.sd.state_dicts import ModelFileError, read_state_dict

CONTEXT_FAMILY = {768: "SD1.5", 1024: "SD2.x", 2048: "SDXL", 1280: "SDXL refiner"}
_LAYER_KEY = re.compile(r"(\d+)\.(to_k_ip|to_v_ip)\.weight$")
_UNSUPPORTED = {"perceiver_resampler.proj_in.weight": "FaceID Plus", "proj.3.weight": "full-face"}


@dataclass(frozen=True)
class IPAdapterHandle:
    """IPADAPTER: the loaded weights (image projection + image K/V per cross-attention layer)."""

    record: LoadedModule  # an IPAdapterWeights module
    kind: str  # "base" (projected image embedding → tokens) or "plus" (resampler over hidden states)
    context_dim: int  # width of the tokens it makes (= the UNet's cross-attention width)
    input_dim: int  # width of the CLIP vision output it reads
    layers: int
    source: str

    def cache_nbytes(self) -> dict[str, int]:
        return {}


class IPAdapterWeights(torch.nn.Module):
    def __init__(self, image_proj: torch.nn.Module, shapes: list[tuple[int, int]]) -> None:
        super().__init__()
        self.image_proj = image_proj
        self.to_k_ip = torch.nn.ModuleList(torch.nn.Linear(i, o, bias=False) for o, i in shapes)
        self.to_v_ip = torch.nn.ModuleList(torch.nn.Linear(i, o, bias=False) for o, i in shapes)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    flat: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, torch.Tensor):
            flat[f"{prefix}{key}"] = value
    return flat


def read_ip_adapter(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(image_proj tensors, ip_adapter tensors) with the section prefixes removed."""
    if path.suffix.lower() in (".safetensors", ".sft"):
        flat = read_state_dict(path)
    else:
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # refused pickles and broken archives alike
            raise ModelFileError(
                f"{path.name}: refused or unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                "only weights-only .bin files load"
            ) from None
        if not isinstance(data, Mapping):
            raise ModelFileError(f"{path.name}: expected a mapping of tensors, found {type(data).__name__}")
        flat = _flatten(data)
    proj = {k.removeprefix("image_proj."): v for k, v in flat.items() if k.startswith("image_proj.")}
    layers = {k.removeprefix("ip_adapter."): v for k, v in flat.items() if k.startswith("ip_adapter.")}
    other = [k for k in flat if not k.startswith(("image_proj.", "ip_adapter."))]
    if not proj or not layers or other:
        found = ", ".join((other or list(flat))[:3]) or "no tensors"
        raise ModelFileError(
            f"{path.name}: not an IP-Adapter (expected image_proj.* and ip_adapter.N.to_k_ip/to_v_ip; found {found})"
        )
    return proj, layers


def _layer_shapes(layers: Mapping[str, torch.Tensor], file: str) -> list[tuple[int, int]]:
    found: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in layers.items():
        match = _LAYER_KEY.match(key)
        if match is None:
            raise ModelFileError(f"{file}: unexpected IP-Adapter layer tensor ip_adapter.{key}")
        found.setdefault(int(match.group(1)), {})[match.group(2)] = tensor
    indices = sorted(found)
    if indices != list(range(1, 2 * len(indices), 2)) or any(len(pair) != 2 for pair in found.values()):
        raise ModelFileError(f"{file}: IP-Adapter layers must be ip_adapter.1, 3, 5, … each with to_k_ip and to_v_ip")
    shapes = []
    for index in indices:
        k, v = found[index]["to_k_ip"], found[index]["to_v_ip"]
        if k.shape != v.shape or k.dim() != 2:
            raise ModelFileError(f"{file}: ip_adapter.{index} has K {tuple(k.shape)} and V {tuple(v.shape)}")
        shapes.append((int(k.shape[0]), int(k.shape[1])))
    return shapes


def _image_projection(proj: dict[str, torch.Tensor], file: str) -> tuple[torch.nn.Module, str, int]:
    """(diffusers image projection with the file's weights, kind, width of the CLIP output it reads)."""
    from diffusers import UNet2DConditionModel

    unsupported = next((kind for marker, kind in _UNSUPPORTED.items() if marker in proj), None)
    if unsupported or ("norm.weight" in proj and "proj.weight" not in proj):
        raise ModelFileError(f"{file}: a {unsupported or 'FaceID'} IP-Adapter; only the base and plus formats are "
                             "supported")
    kind = "plus" if "latents" in proj else "base"
    try:  # diffusers' converter does not use the UNet instance when low_cpu_mem_usage is off
        module = UNet2DConditionModel._convert_ip_adapter_image_proj_to_diffusers(None, proj, low_cpu_mem_usage=False)
    except (KeyError, RuntimeError, IndexError) as exc:
        raise ModelFileError(f"{file}: the image projection is not in the {kind} IP-Adapter layout ({exc})") from None
    input_dim = int(proj["proj.weight"].shape[1] if kind == "base" else proj["proj_in.weight"].shape[1])
    return module, kind, input_dim


def load_ip_adapter(path: Path, name: str = "") -> IPAdapterHandle:
    dtype = devices.default_dtype()

    def build() -> torch.nn.Module:
        proj, layers = read_ip_adapter(path)
        image_proj, kind, input_dim = _image_projection(proj, path.name)
        shapes = _layer_shapes(layers, path.name)
        module = IPAdapterWeights(image_proj, shapes)
        for index, _ in enumerate(shapes):
            module.to_k_ip[index].weight.data = layers[f"{2 * index + 1}.to_k_ip.weight"].float()
            module.to_v_ip[index].weight.data = layers[f"{2 * index + 1}.to_v_ip.weight"].float()
        module.kind, module.input_dim = kind, input_dim
        return module.to(dtype)

    record = manager().load((file_identity(path), "ipadapter", dtype), f"{path.name} IP-Adapter", build)
    module = record.module
    context_dim = int(module.to_k_ip[0].in_features)
    return IPAdapterHandle(record, module.kind, context_dim, module.input_dim, len(module.to_k_ip), name or path.name)


def _check_encoder(adapter: IPAdapterHandle, clip_vision: ClipVisionHandle) -> None:
    width = clip_vision.projection_dim if adapter.kind == "base" else clip_vision.hidden_size
    what = "projected image embeddings" if adapter.kind == "base" else "hidden states"
    if width != adapter.input_dim:
        raise ValueError(
            f"IP-Adapter {adapter.source!r} reads {adapter.input_dim}-wide {what}; the CLIP vision encoder "
            f"{clip_vision.source!r} gives {width}-wide ones (SD1.5 adapters mostly need ViT-H/14)"
        )


_tokens: OrderedDict[tuple[int, ...], tuple[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
_tokens_lock = threading.Lock()


def image_tokens(
    adapter: IPAdapterHandle, clip_vision: ClipVisionHandle, image: torch.Tensor, negative: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond tokens, uncond tokens), each [1, images·tokens, context] on the CPU; several images are concatenated.

    Remembered for the same adapter, encoder and image tensors (e.g. when only the model upstream changed)."""
    sources = (adapter.record, clip_vision.record, image, negative)
    key = tuple(id(s) for s in sources)
    with _tokens_lock:
        found = _tokens.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], sources, strict=True)):
            return found[1]
    result = _image_tokens(adapter, clip_vision, image, negative)
    with _tokens_lock:
        _tokens[key] = (sources, result)
        while len(_tokens) > 8:
            _tokens.popitem(last=False)
    return result


def _image_tokens(
    adapter: IPAdapterHandle, clip_vision: ClipVisionHandle, image: torch.Tensor, negative: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    _check_encoder(adapter, clip_vision)
    plus = adapter.kind == "plus"
    embeds = encode(clip_vision, image, penultimate=plus)
    if negative is not None:
        negative_embeds = encode(clip_vision, negative, penultimate=plus)
    elif plus:
        black = torch.zeros(1, clip_vision.image_size, clip_vision.image_size, 3)
        negative_embeds = encode(clip_vision, black, penultimate=True)
    else:
        negative_embeds = torch.zeros_like(embeds)
    with manager().use(adapter.record) as (weights,), torch.no_grad():
        parameter = next(weights.parameters())

        def project(x: torch.Tensor) -> torch.Tensor:
            tokens = weights.image_proj(x.to(parameter.device, parameter.dtype))
            return tokens.reshape(1, -1, tokens.shape[-1]).float().cpu()

        return project(embeds), project(negative_embeds)
