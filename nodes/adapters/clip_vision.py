"""CLIP vision encoders (CLIPVisionModelWithProjection) for IP-Adapter: loading and image → embeddings.

A folder (``config.json`` + weights, optionally ``preprocessor_config.json``) loads with ``from_pretrained``. A single
file holds the transformers keys (``vision_model.*``, ``visual_projection.weight``); its config is read from a
``<name>.json`` beside it, or from the shapes for the real encoders (ViT-B/L, ViT-H, ViT-bigG: the head count and
activation of each width are known). Preprocessing follows CLIP (and ComfyUI): shortest side to the encoder's size
(bicubic, antialiased), center crop, 8-bit quantisation as a PIL round trip would do, then the mean/std.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nodes.sd import devices
from nodes.sd.loading import build_module, file_identity
from nodes.sd.model_manager import LoadedModule, manager
from nodes.sd.state_dicts import ModelFileError, read_state_dict

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# hidden width → (attention heads, activation) of the released CLIP vision towers.
KNOWN_WIDTHS: dict[int, tuple[int, str]] = {
    768: (12, "quick_gelu"),  # ViT-B (OpenAI)
    1024: (16, "quick_gelu"),  # ViT-L/14 (OpenAI)
    1280: (16, "gelu"),  # ViT-H/14 (LAION OpenCLIP)
    1664: (16, "gelu"),  # ViT-bigG/14 (LAION OpenCLIP)
}


@dataclass(frozen=True)
class ClipVisionHandle:
    """CLIP_VISION: a loaded vision encoder and its preprocessing."""

    record: LoadedModule
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str

    @property
    def hidden_size(self) -> int:
        return int(self.record.module.config.hidden_size)

    @property
    def projection_dim(self) -> int:
        return int(self.record.module.config.projection_dim)

    def cache_nbytes(self) -> dict[str, int]:
        return {}


def config_from_shapes(sd: Mapping[str, torch.Tensor], file: str) -> dict[str, Any]:
    patch = sd["vision_model.embeddings.patch_embedding.weight"]
    positions = int(sd["vision_model.embeddings.position_embedding.weight"].shape[0])
    hidden = int(patch.shape[0])
    if hidden not in KNOWN_WIDTHS:
        raise ModelFileError(
            f"{file}: a CLIP vision encoder of width {hidden} (not a released ViT-B/L/H/bigG): put its "
            f"transformers config beside it as {Path(file).with_suffix('.json').name}, or use a folder"
        )
    heads, act = KNOWN_WIDTHS[hidden]
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k))}
    return {
        "hidden_size": hidden,
        "intermediate_size": int(sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        "num_hidden_layers": max(layers) + 1,
        "num_attention_heads": heads,
        "patch_size": int(patch.shape[-1]),
        "image_size": int(round((positions - 1) ** 0.5)) * int(patch.shape[-1]),
        "projection_dim": int(sd["visual_projection.weight"].shape[0]),
        "hidden_act": act,
        "layer_norm_eps": 1e-5,
    }


def _from_file(path: Path, dtype: torch.dtype):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    def build() -> torch.nn.Module:
        sd = read_state_dict(path)
        if "vision_model.embeddings.patch_embedding.weight" not in sd or "visual_projection.weight" not in sd:
            raise ModelFileError(
                f"{path.name}: not a CLIP vision encoder with projection (expected vision_model.* and "
                f"visual_projection.weight; found {', '.join(list(sd)[:3])})"
            )
        beside = path.with_suffix(".json")
        config = json.loads(beside.read_text()) if beside.is_file() else config_from_shapes(sd, path.name)
        config = config.get("vision_config", config)
        return build_module(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**config)), sd,
                            "CLIP vision encoder", path.name, dtype)

    return build


def _from_folder(path: Path, dtype: torch.dtype):
    from transformers import CLIPVisionModelWithProjection

    def build() -> torch.nn.Module:
        try:
            return CLIPVisionModelWithProjection.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path.name}: not a loadable CLIP vision folder ({exc})") from None

    return build


def _preprocessing(path: Path, image_size: int) -> tuple[int, tuple, tuple]:
    config_file = path / "preprocessor_config.json" if path.is_dir() else path.with_suffix(".preprocessor.json")
    if not config_file.is_file():
        return image_size, OPENAI_MEAN, OPENAI_STD
    data = json.loads(config_file.read_text())
    crop = data.get("crop_size", image_size)
    size = int(crop.get("height", image_size) if isinstance(crop, dict) else crop)
    return size, tuple(data.get("image_mean", OPENAI_MEAN)), tuple(data.get("image_std", OPENAI_STD))


def load_clip_vision(path: Path, name: str = "") -> ClipVisionHandle:
    dtype = devices.default_dtype()
    if path.is_dir():
        identity, factory = file_identity(path / "config.json"), _from_folder(path, dtype)
    else:
        identity, factory = file_identity(path), _from_file(path, dtype)
    record = manager().load((identity, "clip_vision", dtype), f"{path.name} CLIP vision", factory)
    size, mean, std = _preprocessing(path, int(record.module.config.image_size))
    return ClipVisionHandle(record, size, mean, std, name or path.name)


def preprocess(images: torch.Tensor, handle: ClipVisionHandle) -> torch.Tensor:
    """IMAGE [B, H, W, C] in 0..1 → normalised pixel values [B, 3, S, S]."""
    size = handle.image_size
    pixels = images[..., :3].movedim(-1, 1).float()
    h, w = pixels.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        pixels = F.interpolate(pixels, size=(round(h * scale), round(w * scale)), mode="bicubic", antialias=True)
        top, left = (pixels.shape[-2] - size) // 2, (pixels.shape[-1] - size) // 2
        pixels = pixels[..., top:top + size, left:left + size]
    pixels = (pixels.clamp(0, 1) * 255).round() / 255
    mean = torch.tensor(handle.mean).view(1, 3, 1, 1)
    std = torch.tensor(handle.std).view(1, 3, 1, 1)
    return (pixels - mean) / std


def encode(handle: ClipVisionHandle, images: torch.Tensor, penultimate: bool) -> torch.Tensor:
    """Projected image embeddings [B, D], or (penultimate) the second-to-last hidden states [B, tokens, width]."""
    pixels = preprocess(images, handle)
    with manager().use(handle.record) as (model,), torch.no_grad():
        parameter = next(model.parameters())
        out = model(pixel_values=pixels.to(parameter.device, parameter.dtype), output_hidden_states=penultimate)
    result = out.hidden_states[-2] if penultimate else out.image_embeds
    return result.float().cpu()
