"""The Stable Diffusion safety checker (CompVis): load it from a folder, flag images, black out flagged ones.

A checker is a diffusers folder: ``config.json`` (a CLIPConfig) + weights, with its CLIP preprocessing in
``feature_extractor/preprocessor_config.json`` or ``preprocessor_config.json``; a whole pipeline folder
(``model_index.json`` with ``safety_checker/`` and ``feature_extractor/``) works too.

The decision is ``StableDiffusionSafetyChecker.forward``'s, score for score: cosine similarity of the image
embedding to 3 "special care" and 17 concept embeddings minus each one's threshold, rounded to 3 decimals; a special
care hit adds 0.01 to the following scores; any concept score > 0 flags the image. ``sensitivity`` shifts every
score by (sensitivity − 0.5) × 0.1: 0.5 is the released checker, 1.0 flags more, 0.0 fewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nodes.adapters.safety_folders import checker_folders, folder_problem
from nodes.sd import devices
from nodes.sd.loading import file_identity
from nodes.sd.model_manager import LoadedModule, manager
from nodes.sd.state_dicts import ModelFileError

SENSITIVITY_SPAN = 0.1  # the score shift between sensitivity 0 and 1
SPECIAL_CARE_ADJUSTMENT = 0.01


@dataclass(frozen=True)
class SafetyCheckerHandle:
    record: LoadedModule  # a StableDiffusionSafetyChecker
    processor: Any  # a transformers CLIPImageProcessor
    source: str


def load_checker(path: Path, name: str = "") -> SafetyCheckerHandle:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    problem = folder_problem(path)
    if problem:
        raise ModelFileError(problem)
    model_dir, processor_dir = checker_folders(path)
    dtype = devices.default_dtype()

    def build() -> torch.nn.Module:
        try:
            return StableDiffusionSafetyChecker.from_pretrained(str(model_dir), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path.name}: not a loadable safety checker ({exc})") from None

    record = manager().load((file_identity(model_dir / "config.json"), "safety_checker", dtype),
                            f"{path.name} safety checker", build)
    if processor_dir is not None:
        processor = CLIPImageProcessor.from_pretrained(str(processor_dir))
    else:
        size = int(record.module.config.vision_config.image_size)
        processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return SafetyCheckerHandle(record, processor, name or path.name)


def _flagged(special: np.ndarray, concepts: np.ndarray, special_thresholds: list[float],
             concept_thresholds: list[float], shift: float) -> bool:
    adjustment = shift
    for cos, threshold in zip(special, special_thresholds, strict=True):
        if round(cos - threshold + adjustment, 3) > 0:
            adjustment = shift + SPECIAL_CARE_ADJUSTMENT
    return any(round(cos - threshold + adjustment, 3) > 0
               for cos, threshold in zip(concepts, concept_thresholds, strict=True))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    a = torch.nn.functional.normalize(a)
    b = torch.nn.functional.normalize(b)
    return torch.mm(a, b.t()).cpu().float().numpy()


def to_pil(images: torch.Tensor) -> list:
    from PIL import Image

    array = (images[..., :3].float().cpu().numpy() * 255).round().clip(0, 255).astype("uint8")
    return [Image.fromarray(image) for image in array]


def check(handle: SafetyCheckerHandle, images: torch.Tensor, sensitivity: float) -> tuple[torch.Tensor, list[bool]]:
    """(images with flagged ones black, flag per image)."""
    clip_input = handle.processor(to_pil(images), return_tensors="pt").pixel_values
    with manager().use(handle.record) as (checker,), torch.no_grad():
        parameter = next(checker.parameters())
        pooled = checker.vision_model(clip_input.to(parameter.device, parameter.dtype))[1]
        embeds = checker.visual_projection(pooled)
        special = _cosine(embeds, checker.special_care_embeds)
        concepts = _cosine(embeds, checker.concept_embeds)
        special_thresholds = checker.special_care_embeds_weights.tolist()
        concept_thresholds = checker.concept_embeds_weights.tolist()
    shift = (float(sensitivity) - 0.5) * SENSITIVITY_SPAN
    flags = [_flagged(special[i], concepts[i], special_thresholds, concept_thresholds, shift)
             for i in range(images.shape[0])]
    out = images.clone()
    out[torch.tensor(flags, dtype=torch.bool)] = 0.0
    return out, flags
