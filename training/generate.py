"""Generate images from prompts and score them with the analytic checker (used by training and bench)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from training import checker
from training.models import SCHEDULE, tokenizer

# (prompts, seeds) -> uint8 images [B, 64, 64, 3]; bench/demo_quality.py plugs in other generators.
Generator = Callable[[Sequence[str], Sequence[int]], np.ndarray]


def euler_scheduler() -> Any:
    """Euler with timesteps spread over the whole range (σ_max ≈ 14.6 first), like ComfyUI's euler/normal."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(**SCHEDULE, prediction_type="epsilon", timestep_spacing="linspace", steps_offset=1)


def pipeline(vae: Any, text_encoder: Any, unet: Any, scheduler: Any | None = None, controlnet: Any = None) -> Any:
    """A diffusers StableDiffusionPipeline (or its ControlNet variant) over in-memory modules."""
    from diffusers import StableDiffusionControlNetPipeline, StableDiffusionPipeline

    modules = {"vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer(), "unet": unet,
               "scheduler": scheduler or euler_scheduler(), "safety_checker": None, "feature_extractor": None}
    if controlnet is None:
        pipe = StableDiffusionPipeline(**modules, requires_safety_checker=False)
    else:
        pipe = StableDiffusionControlNetPipeline(**modules, controlnet=controlnet, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_generator(pipe: Any, steps: int = 20, cfg: float = 6.0, negative: str = "", batch: int = 32,
                       **extra: Any) -> Generator:
    """A Generator running `pipe` (a diffusers StableDiffusionPipeline or a subclass) at 64x64.

    Keyword arguments of the returned function are per-prompt lists (e.g. ControlNet images), cut into batches
    alongside the prompts; `extra` goes to every pipeline call unchanged.
    """

    def generate(prompts: Sequence[str], seeds: Sequence[int], **per_prompt: Sequence[Any]) -> np.ndarray:
        images = []
        for start in range(0, len(prompts), batch):
            chunk = list(prompts[start : start + batch])
            generators = [torch.Generator().manual_seed(int(s)) for s in seeds[start : start + batch]]
            chunked = {name: list(values[start : start + batch]) for name, values in per_prompt.items()}
            with torch.no_grad():
                out = pipe(prompt=chunk, negative_prompt=[negative] * len(chunk), num_inference_steps=steps,
                           guidance_scale=cfg, height=64, width=64, generator=generators, output_type="np",
                           **extra, **chunked)
            images.append(np.clip(np.rint(out.images * 255), 0, 255).astype(np.uint8))
        return np.concatenate(images)

    return generate


def score(images: np.ndarray, attributes: Sequence[tuple[str, str, str, str]]) -> dict[str, float]:
    """Accuracy of each attribute (and of all three of shape/colour/position together) over the images."""
    totals = {"colour": 0, "shape": 0, "position": 0, "background": 0, "all": 0}
    for image, (shape, colour, position, background) in zip(images, attributes, strict=True):
        hits = checker.analyse(image).matches(shape, colour, position, background)
        for key, hit in hits.items():
            totals[key] += hit
        totals["all"] += hits["shape"] and hits["colour"] and hits["position"]
    return {key: value / len(images) for key, value in totals.items()}
