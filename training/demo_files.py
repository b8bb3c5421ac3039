"""Load the committed demo files back: the checkpoint through diffgraph's own loader, the ControlNet and the
LoRA through diffusers (as a user's files would be), into diffusers pipelines for evaluation."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from training.export import CHECKPOINT, CONTROLNET, DEFAULT_OUT, LORA


def load_modules(folder: Path = DEFAULT_OUT) -> tuple[Any, Any, Any]:
    """(vae, text_encoder, unet) as diffgraph's LoadCheckpoint path builds them from demo.safetensors + yaml."""
    from nodes.sd.loading import load_checkpoint

    model, clip, vae = load_checkpoint(folder / CHECKPOINT)
    return vae.vae.module, clip.encoders[0].module.module, model.unet.module


def load_controlnet(unet: Any, folder: Path = DEFAULT_OUT) -> Any:
    """The original-layout ControlNet file, converted by diffusers with a config derived from the UNet's."""
    from diffusers import ControlNetModel

    config = dict(ControlNetModel.from_unet(unet, load_weights_from_unet=False).config)
    with tempfile.TemporaryDirectory() as config_dir:
        (Path(config_dir) / "config.json").write_text(json.dumps(config))
        return ControlNetModel.from_single_file(folder / CONTROLNET, config=config_dir, local_files_only=True).eval()


def load_lora(pipe: Any, folder: Path = DEFAULT_OUT, adapter: str = "style") -> int:
    """Load the kohya LoRA with diffusers' `load_lora_weights`; returns how many modules it patched."""
    pipe.load_lora_weights(str(folder), weight_name=LORA, adapter_name=adapter)
    patched = 0
    for component in (pipe.unet, pipe.text_encoder):
        patched += sum(1 for _, m in component.named_modules() if adapter in getattr(m, "lora_A", {}))
    return patched
