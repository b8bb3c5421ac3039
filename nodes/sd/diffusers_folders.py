"""Diffusers-format checkpoint folders (model_index.json, unet/, vae/, text_encoder/, tokenizer/, …)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nodes.sd import devices
from nodes.sd.families import FAMILIES, Family, TextEncoderSpec
from nodes.sd.model_manager import manager
from nodes.sd.state_dicts import ModelFileError
from nodes.values import ClipHandle, ModelHandle, TextEncoderSlot, VaeHandle


def _config(folder: Path, component: str) -> dict[str, Any]:
    path = folder / component / "config.json"
    if not path.is_file():
        raise ModelFileError(f"{folder.name}: diffusers folder without {component}/config.json")
    return json.loads(path.read_text(encoding="utf-8"))


def folder_family(folder: Path) -> Family:
    """Tell the family from the component configs (what the UNet takes, which encoders exist)."""
    unet = _config(folder, "unet")
    has_te1 = (folder / "text_encoder" / "config.json").is_file()
    has_te2 = (folder / "text_encoder_2" / "config.json").is_file()
    inpaint = int(unet.get("in_channels", 4)) == 9
    if unet.get("addition_embed_type") == "text_time":
        if has_te1 and has_te2:
            name = "sdxl_inpaint" if inpaint else "sdxl"
        elif has_te2:
            name = "sdxl_refiner"
        else:
            raise ModelFileError(f"{folder.name}: an SDXL UNet without its text encoders")
    elif has_te1:
        te = _config(folder, "text_encoder")
        open_clip = te.get("hidden_act") == "gelu"
        name = ("sd2_inpaint" if inpaint else "sd2") if open_clip else ("sd1_inpaint" if inpaint else "sd1")
    else:
        raise ModelFileError(f"{folder.name}: no text encoder found; not a Stable Diffusion pipeline folder")
    family = FAMILIES[name]
    scheduler = folder / "scheduler" / "scheduler_config.json"
    if scheduler.is_file():
        prediction = json.loads(scheduler.read_text(encoding="utf-8")).get("prediction_type", "epsilon")
        if prediction != family.prediction:
            from nodes.sd.families import with_prediction

            family = with_prediction(family, prediction)
    return family


def _identity(folder: Path, component: str) -> tuple[str, int]:
    files = sorted((folder / component).glob("*"))
    newest = max((f.stat().st_mtime_ns for f in files if f.is_file()), default=0)
    return (str((folder / component).resolve()), newest)


def _tokenizer(folder: Path, subfolder: str, spec: TextEncoderSpec) -> Any:
    from nodes.sd.tokenizers import clip_tokenizer

    if (folder / subfolder / "vocab.json").is_file() or (folder / subfolder / "tokenizer.json").is_file():
        from transformers import CLIPTokenizer

        return CLIPTokenizer.from_pretrained(str(folder), subfolder=subfolder, local_files_only=True)
    return clip_tokenizer(pad_with=spec.pad_with)


def load_diffusers_folder(folder: Path, name: str = "") -> tuple[ModelHandle, ClipHandle, VaeHandle]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    family = folder_family(folder)
    dtype = devices.default_dtype()
    vae_dtype = devices.vae_dtype(sdxl=family.is_sdxl)
    mm = manager()
    path = str(folder)

    def pretrained(cls: Any, subfolder: str, torch_dtype: Any) -> Any:
        try:
            return cls.from_pretrained(path, subfolder=subfolder, torch_dtype=torch_dtype, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{folder.name}/{subfolder}: cannot load ({str(exc).splitlines()[0]})") from None

    unet = mm.load((_identity(folder, "unet"), "unet", dtype), f"{folder.name} UNet",
                   lambda: pretrained(UNet2DConditionModel, "unet", dtype))
    vae = mm.load((_identity(folder, "vae"), "vae", vae_dtype), f"{folder.name} VAE",
                  lambda: pretrained(AutoencoderKL, "vae", vae_dtype))
    subfolders = ("text_encoder_2",) if family.name == "sdxl_refiner" else (
        ("text_encoder", "text_encoder_2") if family.is_sdxl else ("text_encoder",))
    tokenizer_folders = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2"}
    slots = []
    for spec, subfolder in zip(family.text_encoders, subfolders, strict=True):
        cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
        record = mm.load((_identity(folder, subfolder), subfolder, dtype), f"{folder.name} {subfolder}",
                         lambda cls=cls, subfolder=subfolder: pretrained(cls, subfolder, dtype))
        # Diffusers' SD2 text encoder already lacks the last block: its last layer is the default.
        default_layer = -1 if spec.layout == "open_clip" and not family.is_sdxl else spec.default_layer
        slots.append(TextEncoderSlot(record, _tokenizer(folder, tokenizer_folders[subfolder], spec), spec,
                                     default_layer))
    scaling = float(vae.module.config.scaling_factor)
    shift = float(getattr(vae.module.config, "shift_factor", None) or 0.0)
    source = name or folder.name
    return (
        ModelHandle(unet, family, family.prediction, latent_scale=scaling, latent_shift=shift, source=source),
        ClipHandle(tuple(slots), family, source=source),
        VaeHandle(vae, scaling, shift, int(vae.module.config.latent_channels), source=source),
    )
