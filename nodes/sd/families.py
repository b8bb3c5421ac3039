"""Model families as data: what each needs for loading, text encoding, latents and sampling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "data" / "configs"


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder of a family: its layout in single files and how its output is taken."""

    layout: str  # "clip" (OpenAI CLIP / HF names) or "open_clip" (resblocks, in_proj)
    prefix: str  # key prefix in single-file checkpoints
    default_layer: int  # hidden-state index used by default: -1 last, -2 penultimate
    final_norm: bool  # apply the final layer norm to the chosen hidden state
    pad_with: str  # tokenizer padding token: "<|endoftext|>" or "!"
    with_projection: bool = False  # CLIPTextModelWithProjection (SDXL bigG: pooled text_embeds)
    drop_unused_last_layer: bool = False  # file carries a last block no output reads (SD2)


CLIP_L = TextEncoderSpec("clip", "cond_stage_model.transformer.", -1, True, "<|endoftext|>")
OPEN_CLIP_H = TextEncoderSpec("open_clip", "cond_stage_model.model.", -2, True, "!")
SDXL_CLIP_L = TextEncoderSpec("clip", "conditioner.embedders.0.transformer.", -2, False, "<|endoftext|>")
SDXL_CLIP_G = TextEncoderSpec("open_clip", "conditioner.embedders.1.model.", -2, False, "!", with_projection=True)
REFINER_CLIP_G = TextEncoderSpec("open_clip", "conditioner.embedders.0.model.", -2, False, "!", with_projection=True)


@dataclass(frozen=True)
class Family:
    name: str
    title: str
    config_dir: str  # nodes/data/configs/<config_dir>
    text_encoders: tuple[TextEncoderSpec, ...]
    scaling_factor: float
    prediction: str = "epsilon"
    in_channels: int = 4
    size_conditioning: str = ""  # "" | "sdxl" (6 time ids) | "refiner" (5 with aesthetic score)
    default_size: int = 512
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    num_timesteps: int = 1000

    @property
    def is_inpaint(self) -> bool:
        return self.in_channels == 9

    @property
    def config_path(self) -> Path:
        return CONFIG_ROOT / self.config_dir

    @property
    def is_sdxl(self) -> bool:
        return bool(self.size_conditioning)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd1", "Stable Diffusion 1.x", "sd15", (CLIP_L,), 0.18215),
        Family("sd1_inpaint", "Stable Diffusion 1.x inpainting", "sd15_inpaint", (CLIP_L,), 0.18215, in_channels=9),
        Family("sd2", "Stable Diffusion 2.x (512, ε)", "sd2_base", (OPEN_CLIP_H,), 0.18215),
        Family("sd2_v", "Stable Diffusion 2.x (768, v)", "sd2_v", (OPEN_CLIP_H,), 0.18215, "v_prediction",
               default_size=768),
        Family("sd2_inpaint", "Stable Diffusion 2.x inpainting", "sd2_inpaint", (OPEN_CLIP_H,), 0.18215,
               in_channels=9),
        Family("sdxl", "SDXL base", "sdxl_base", (SDXL_CLIP_L, SDXL_CLIP_G), 0.13025, size_conditioning="sdxl",
               default_size=1024),
        Family("sdxl_refiner", "SDXL refiner", "sdxl_refiner", (REFINER_CLIP_G,), 0.13025,
               size_conditioning="refiner", default_size=1024),
        Family("sdxl_inpaint", "SDXL inpainting", "sdxl_inpaint", (SDXL_CLIP_L, SDXL_CLIP_G), 0.13025,
               in_channels=9, size_conditioning="sdxl", default_size=1024),
    )
}

# The family a v-prediction or inpainting variant belongs to, for LoRA/ControlNet compatibility checks.
BASE_ARCHITECTURE = {
    "sd1": "sd1", "sd1_inpaint": "sd1", "sd2": "sd2", "sd2_v": "sd2", "sd2_inpaint": "sd2",
    "sdxl": "sdxl", "sdxl_inpaint": "sdxl", "sdxl_refiner": "sdxl_refiner",
}


def with_prediction(family: Family, prediction: str) -> Family:
    """The same family with another prediction type (an SD2 file whose yaml says v, or the reverse)."""
    if family.prediction == prediction:
        return family
    for candidate in FAMILIES.values():
        if (candidate.text_encoders, candidate.in_channels, candidate.prediction) == (
            family.text_encoders, family.in_channels, prediction,
        ):
            return candidate
    from dataclasses import replace

    return replace(family, prediction=prediction)
