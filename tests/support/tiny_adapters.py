"""Seeded tiny adapters in the real file layouts, fitting the tiny checkpoints of :mod:`support.tiny_models`.

* LoRA: a peft LoRA (random A and B) on a copy of the tiny UNet and text encoder(s), written as kohya
  (``lora_unet_…``/``lora_te_…``, SDXL ``lora_te1_/lora_te2_``, diffusers- or LDM-style block names, ``.alpha``,
  LoCon on the ResNet convolutions) or as diffusers/peft through diffusers' own ``save_lora_weights``.
* ControlNet: the LDM yaml (``control_stage_config``) to put beside the tiny ControlNet, and prefix-less / ``.pth``
  copies of its file.
* IP-Adapter: the official h94 layout (``image_proj.*`` base or plus resampler, ``ip_adapter.{1,3,…}.to_k_ip/to_v_ip``)
  for the tiny UNet's cross-attention layers, as .safetensors or nested .bin; a tiny CLIPVisionModelWithProjection
  as a transformers folder (with preprocessor_config.json) or a single file with its config .json beside.
* Safety checker: a tiny StableDiffusionSafetyChecker folder whose concept embeddings can be aimed at chosen images.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

UNET_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                     "conv1", "conv2", "time_emb_proj")  # fmt: skip
TEXT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
KOHYA_TEXT_PREFIXES = {"text_encoder": "lora_te_", "text_encoder_2": "lora_te2_"}
KOHYA_SDXL_TEXT_PREFIXES = {"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}
CLIP_VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2,
               "image_size": 32, "patch_size": 8, "projection_dim": 24, "hidden_act": "gelu",
               "layer_norm_eps": 1e-5}  # fmt: skip
RESAMPLER_WIDTH = 64  # the plus resampler's inner width: one 64-channel head, as diffusers' converter assumes
RESAMPLER_QUERIES = 16
RESAMPLER_DEPTH = 4


def _randomise_constants(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Constant-initialised tensors (norms, zero inits) made random, so swapped tensors change the numbers."""
    with torch.no_grad():
        for parameter in module.parameters():
            flat = parameter.view(-1)
            if flat.numel() and bool((flat == flat[0]).all()):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)


# ---------------------------------------------------------------------------------------------------- LoRA
@dataclass
class TinyLora:
    path: Path
    layers: dict[str, dict[str, torch.Tensor]]  # component → peft tensors ("<module>.lora_A.weight", "…lora_B…")
    rank: int
    alpha: float

    def delta(self, component: str, module: str) -> torch.Tensor:
        """ΔW = alpha/rank · B @ A of one module, shaped like its weight (hand-computed reference)."""
        a = self.layers[component][f"{module}.lora_A.weight"].float()
        b = self.layers[component][f"{module}.lora_B.weight"].float()
        product = b.flatten(1) @ a.flatten(1)
        shape = (b.shape[0], *a.shape[1:])
        return (self.alpha / self.rank) * product.reshape(shape)

    def modules(self, component: str) -> list[str]:
        return sorted({key.rsplit(".lora_", 1)[0] for key in self.layers.get(component, {})})


def peft_layers(module: torch.nn.Module, targets: tuple[str, ...], rank: int, alpha: float, seed: int) -> dict:
    """A peft LoRA on a copy of `module`, with random A and B: its adapter tensors (peft names)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    copied = copy.deepcopy(module)
    torch.manual_seed(seed)
    copied.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False))
    return {key: value.detach().clone().contiguous() for key, value in get_peft_model_state_dict(copied).items()}


def _ldm_module_names(modules: list[str], unet_config: Mapping[str, Any]) -> dict[str, str]:
    from nodes.sd.ldm_layout import unet_to_ldm

    keys = [f"{m}.weight" for m in modules]
    converted = unet_to_ldm(dict.fromkeys(keys, torch.zeros(1)), dict(unet_config), prefix="")
    return {key.removesuffix(".weight"): ldm.removesuffix(".weight") for key, ldm in zip(keys, converted, strict=True)}


def kohya_state_dict(lora_layers: Mapping[str, Mapping[str, torch.Tensor]], alpha: float, sdxl: bool,
                     unet_naming: str = "diffusers", unet_config: Mapping[str, Any] | None = None) -> dict:
    """peft adapter tensors per component → a kohya state dict (down/up/alpha per layer)."""
    text_prefixes = KOHYA_SDXL_TEXT_PREFIXES if sdxl else KOHYA_TEXT_PREFIXES
    out: dict[str, torch.Tensor] = {}
    for component, tensors in lora_layers.items():
        modules = sorted({key.rsplit(".lora_", 1)[0] for key in tensors})
        ldm = _ldm_module_names(modules, unet_config) if component == "unet" and unet_naming == "ldm" else {}
        for module in modules:
            if component == "unet":
                name = "lora_unet_" + ldm.get(module, module).replace(".", "_")
            else:
                path = module if module.startswith("text_model.") else f"text_model.{module}"
                name = text_prefixes[component] + path.replace(".", "_")
            out[f"{name}.lora_down.weight"] = tensors[f"{module}.lora_A.weight"]
            out[f"{name}.lora_up.weight"] = tensors[f"{module}.lora_B.weight"]
            out[f"{name}.alpha"] = torch.tensor(alpha)
    return out


def build_lora(checkpoint: Any, dest: Path, *, fmt: str = "kohya", unet_naming: str = "diffusers", text: bool = True,
               rank: int = 4, alpha: float = 2.0, seed: int = 0, name: str | None = None) -> TinyLora:
    """A LoRA for a tiny checkpoint (:class:`support.tiny_models.TinyCheckpoint`), kohya or diffusers/peft."""
    from safetensors.torch import save_file

    components = checkpoint.components
    layers = {"unet": peft_layers(components["unet"], UNET_LORA_TARGETS, rank, alpha, seed)}
    if text:
        for index, component in enumerate(("text_encoder", "text_encoder_2")):
            if components.get(component) is not None:
                layers[component] = peft_layers(components[component], TEXT_LORA_TARGETS, rank, alpha, seed + 1 + index)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / (name or f"tiny_lora_{checkpoint.family}_{fmt}_{unet_naming}.safetensors")
    if fmt == "kohya":
        sdxl = checkpoint.family.startswith("sdxl")
        state = kohya_state_dict(layers, alpha, sdxl, unet_naming, components["unet"].config)
        save_file(state, str(path))
    elif fmt == "peft":
        _save_diffusers_lora(checkpoint, layers, rank, alpha, path)
    else:
        raise ValueError(f"unknown LoRA format {fmt!r}")
    return TinyLora(path, layers, rank, alpha)


def _save_diffusers_lora(checkpoint: Any, layers: dict, rank: int, alpha: float, path: Path) -> None:
    """diffusers' own writer, with the adapter metadata (alpha) it stores in the safetensors header."""
    import diffusers
    from peft import LoraConfig

    pipeline_class = getattr(diffusers, checkpoint.spec.pipeline)
    metadata = {"unet_lora_adapter_metadata": LoraConfig(r=rank, lora_alpha=alpha,
                                                         target_modules=list(UNET_LORA_TARGETS)).to_dict()}
    kwargs = {"unet_lora_layers": layers["unet"]}
    for component in ("text_encoder", "text_encoder_2"):
        if component in layers:
            kwargs[f"{component}_lora_layers"] = layers[component]
            metadata[f"{component}_lora_adapter_metadata"] = LoraConfig(
                r=rank, lora_alpha=alpha, target_modules=list(TEXT_LORA_TARGETS)).to_dict()
    pipeline_class.save_lora_weights(str(path.parent), weight_name=path.name, **kwargs, **metadata)


# ---------------------------------------------------------------------------------------------------- ControlNet
def controlnet_yaml(checkpoint: Any) -> dict[str, Any]:
    """A cldm ``ControlLDM`` yaml for a ControlNet made from `checkpoint`'s UNet (its sizes and head count)."""
    config = copy.deepcopy(checkpoint.ldm_config)
    params = config["model"]["params"]
    unet = params.get("unet_config") or params["network_config"]  # LDM or SGM schema
    params["control_stage_config"] = {
        "target": "cldm.cldm.ControlNet",
        "params": {**unet["params"], "hint_channels": 3},
    }
    config["model"]["target"] = "cldm.cldm.ControlLDM"
    return config


def place_controlnet(controlnet: Any, checkpoint: Any, folder: Path, stem: str, *, prefix: bool = True,
                     fmt: str = "safetensors", with_yaml: bool = True) -> Path:
    """The tiny ControlNet's original-layout file in `folder` (with or without ``control_model.``, .safetensors or
    .pth) and, optionally, its yaml beside it."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k if prefix else k.removeprefix("control_model."): v.contiguous()
               for k, v in controlnet.single_file.items()}
    path = folder / f"{stem}.{fmt}"
    if fmt == "safetensors":
        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    if with_yaml:
        path.with_suffix(".yaml").write_text(yaml.safe_dump(controlnet_yaml(checkpoint), sort_keys=False))
    return path


def build_sdxl_controlnet(checkpoint: Any, dest: Path, seed: int = 0) -> Any:
    """A tiny SDXL ControlNet made from the tiny SDXL UNet: diffusers folder and original-layout single file."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from nodes.sd.ldm_layout import controlnet_to_ldm
    from support.tiny_models import TinyControlNet
    from support.tiny_specs import CONTROLNET_EMBEDDING_CHANNELS

    controlnet = ControlNetModel.from_unet(
        checkpoint.unet, conditioning_embedding_out_channels=CONTROLNET_EMBEDDING_CHANNELS).eval()
    _randomise_constants(controlnet, torch.Generator().manual_seed(seed + 1))
    single_file = controlnet_to_ldm(controlnet.state_dict(), controlnet.config)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {"diffusers": dest / "tiny_controlnet_sdxl", "safetensors": dest / "tiny_controlnet_sdxl.safetensors"}
    controlnet.save_pretrained(paths["diffusers"], safe_serialization=True)
    save_file({k: v.contiguous() for k, v in single_file.items()}, str(paths["safetensors"]))
    return TinyControlNet(paths, controlnet, single_file)


# ---------------------------------------------------------------------------------------------------- IP-Adapter
@dataclass
class TinyClipVision:
    folder: Path
    file: Path  # single .safetensors with <name>.json beside
    model: Any  # CLIPVisionModelWithProjection
    processor: Any  # CLIPImageProcessor


def build_clip_vision(dest: Path, seed: int = 0, **overrides: Any) -> TinyClipVision:
    """The tiny encoder (:data:`CLIP_VISION` sizes, `overrides` changing some) as a folder and as a single file."""
    from safetensors.torch import save_file
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    sizes = {**CLIP_VISION, **overrides}
    config = CLIPVisionConfig(**sizes)
    model = CLIPVisionModelWithProjection(config).eval()
    _randomise_constants(model, torch.Generator().manual_seed(seed))
    size = sizes["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    stem = "tiny_clip_vision" + "".join(f"_{k}{v}" for k, v in sorted(overrides.items()))
    folder = dest / stem
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    file = dest / f"{stem}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(file))
    file.with_suffix(".json").write_text(json.dumps(sizes))
    return TinyClipVision(folder, file, model, processor)


@dataclass
class TinyIPAdapter:
    path: Path
    tensors: dict[str, torch.Tensor] = field(repr=False)  # flat original-layout keys
    kind: str = "base"


def _cross_attention_shapes(unet: torch.nn.Module) -> list[tuple[int, int]]:
    """(inner width, context width) of each cross-attention layer, in diffusers' attn_processors order."""
    names = [k.removesuffix(".processor") for k in unet.attn_processors if not k.endswith("attn1.processor")]
    return [(unet.get_submodule(n).to_k.out_features, unet.get_submodule(n).to_k.in_features) for n in names]


def _resampler(embed: int, output: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The official IP-Adapter plus Resampler's tensors (PerceiverAttention + FeedForward per layer)."""

    def rand(*shape: int, scale: float = 0.1) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * scale

    width = RESAMPLER_WIDTH
    t = {"latents": rand(1, RESAMPLER_QUERIES, width, scale=width ** -0.5),
         "proj_in.weight": rand(width, embed), "proj_in.bias": rand(width),
         "proj_out.weight": rand(output, width), "proj_out.bias": rand(output),
         "norm_out.weight": 1 + rand(output), "norm_out.bias": rand(output)}  # fmt: skip
    for i in range(RESAMPLER_DEPTH):
        for norm in ("norm1", "norm2"):
            t[f"layers.{i}.0.{norm}.weight"], t[f"layers.{i}.0.{norm}.bias"] = 1 + rand(width), rand(width)
        t[f"layers.{i}.0.to_q.weight"] = rand(width, width)
        t[f"layers.{i}.0.to_kv.weight"] = rand(2 * width, width)
        t[f"layers.{i}.0.to_out.weight"] = rand(width, width)
        t[f"layers.{i}.1.0.weight"], t[f"layers.{i}.1.0.bias"] = 1 + rand(width), rand(width)
        t[f"layers.{i}.1.1.weight"] = rand(4 * width, width)
        t[f"layers.{i}.1.3.weight"] = rand(width, 4 * width)
    return t


def build_ip_adapter(unet: torch.nn.Module, dest: Path, *, kind: str = "base", fmt: str = "safetensors",
                     seed: int = 0, name: str | None = None) -> TinyIPAdapter:
    """An IP-Adapter for `unet` reading the tiny CLIP vision encoder (base: its projection, plus: its hidden states)."""
    generator = torch.Generator().manual_seed(seed)
    layers = _cross_attention_shapes(unet)
    context = layers[0][1]
    if kind == "base":
        embed = CLIP_VISION["projection_dim"]
        proj = {"proj.weight": torch.randn(4 * context, embed, generator=generator) * 0.2,
                "proj.bias": torch.randn(4 * context, generator=generator) * 0.1,
                "norm.weight": 1 + torch.randn(context, generator=generator) * 0.1,
                "norm.bias": torch.randn(context, generator=generator) * 0.1}  # fmt: skip
    elif kind == "plus":
        proj = _resampler(CLIP_VISION["hidden_size"], context, generator)
    else:
        raise ValueError(f"unknown IP-Adapter kind {kind!r}")
    ip = {}
    for index, (inner, ctx) in enumerate(layers):
        ip[f"{2 * index + 1}.to_k_ip.weight"] = torch.randn(inner, ctx, generator=generator) * 0.3
        ip[f"{2 * index + 1}.to_v_ip.weight"] = torch.randn(inner, ctx, generator=generator) * 0.3
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / (name or f"tiny_ip_adapter_{kind}.{fmt}")
    if fmt == "safetensors":
        from safetensors.torch import save_file

        flat = {**{f"image_proj.{k}": v for k, v in proj.items()}, **{f"ip_adapter.{k}": v for k, v in ip.items()}}
        save_file({k: v.contiguous() for k, v in flat.items()}, str(path))
    else:
        torch.save({"image_proj": proj, "ip_adapter": ip}, path)
    tensors = {**{f"image_proj.{k}": v for k, v in proj.items()}, **{f"ip_adapter.{k}": v for k, v in ip.items()}}
    return TinyIPAdapter(path, tensors, kind)


# ---------------------------------------------------------------------------------------------------- safety checker
@dataclass
class TinySafetyChecker:
    path: Path
    checker: Any  # StableDiffusionSafetyChecker
    processor: Any  # CLIPImageProcessor


def _discard_shared_direction(checker: Any, processor: Any) -> None:
    """A random tiny vision tower maps every picture to nearly the same vector (cosines > 0.9); project out the
    mean pooled output of a few noise pictures so that different pictures get different embeddings."""
    import numpy as np
    from PIL import Image

    pictures = [Image.fromarray(np.random.default_rng(100 + s).integers(0, 256, (40, 48, 3)).astype(np.uint8))
                for s in range(8)]
    with torch.no_grad():
        pooled = checker.vision_model(processor(pictures, return_tensors="pt").pixel_values)[1]
        mean = pooled.mean(0)
        keep = torch.eye(mean.numel()) - torch.outer(mean, mean) / mean.dot(mean)
        checker.visual_projection.weight.copy_(checker.visual_projection.weight @ keep)


def checker_embeddings(checker: Any, processor: Any, images: list) -> torch.Tensor:
    """Projected image embeddings [N, D] of PIL images, as the checker computes them."""
    if not images:
        return torch.zeros(0, checker.config.projection_dim)
    pixels = processor(images, return_tensors="pt").pixel_values
    with torch.no_grad():
        return checker.visual_projection(checker.vision_model(pixels)[1])


def build_safety_checker(dest: Path, *, seed: int = 0, flag: list | None = None, special: list | None = None,
                         borderline: list | None = None, layout: str = "folder") -> TinySafetyChecker:
    """A tiny checker. `flag`: PIL images made to hit concept k exactly (threshold 0.99: score +0.01); `special`:
    one PIL image that hits a special-care concept (threshold 0.99) and sits 0.005 under concept 16's threshold, so
    only the special-care adjustment (+0.01) flags it; `borderline`: images 0.02 under concept 8+k's threshold
    (flagged only when the sensitivity raises scores). Every other concept has threshold 1.0: nothing else flags."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    torch.manual_seed(seed)
    vision = {k: v for k, v in CLIP_VISION.items() if k != "projection_dim"}
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)
    checker = StableDiffusionSafetyChecker(config).eval()
    generator = torch.Generator().manual_seed(seed)
    _randomise_constants(checker, generator)
    size = CLIP_VISION["image_size"]
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    _discard_shared_direction(checker, processor)
    with torch.no_grad():
        checker.concept_embeds.copy_(torch.randn(17, 16, generator=generator))
        checker.special_care_embeds.copy_(torch.randn(3, 16, generator=generator))
        checker.concept_embeds_weights.fill_(1.0)
        checker.special_care_embeds_weights.fill_(1.0)
        for k, embedding in enumerate(checker_embeddings(checker, processor, flag or [])):
            checker.concept_embeds[k] = embedding
            checker.concept_embeds_weights[k] = 0.99
        for k, embedding in enumerate(checker_embeddings(checker, processor, special or [])):
            checker.special_care_embeds[k] = embedding
            checker.special_care_embeds_weights[k] = 0.99
            checker.concept_embeds[16] = embedding
            checker.concept_embeds_weights[16] = 1.005
        for k, embedding in enumerate(checker_embeddings(checker, processor, borderline or [])):
            checker.concept_embeds[8 + k] = embedding
            checker.concept_embeds_weights[8 + k] = 1.02
    path = dest / "tiny_checker"
    model_dir = path / "safety_checker" if layout == "pipeline" else path
    model_dir.mkdir(parents=True, exist_ok=True)
    checker.save_pretrained(model_dir, safe_serialization=True)
    processor.save_pretrained(path / "feature_extractor")
    if layout == "pipeline":
        (path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    return TinySafetyChecker(path, checker, processor)
