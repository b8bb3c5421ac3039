"""The values that travel along links between built-in nodes. Importing this module needs no torch.

Conventions (shared by every node; ComfyUI's where it has one):
- IMAGE: float32 tensor [B, H, W, C] in [0, 1], C = 3, on the CPU.
- MASK: float32 tensor [B, H, W] (or [H, W]) in [0, 1]; 1 = the area to regenerate.
- LATENT: `Latent` — raw VAE latents (not yet multiplied by the VAE's scaling factor), [B, C, H/8, W/8].
- CONDITIONING: a tuple of `CondEntry` (several entries = combined conditionings).
- MODEL / CLIP / VAE: light, immutable handles over modules shared by the model manager. A node never
  mutates a module: it returns a new handle with an extra patch, and the sampler applies the patches
  for its run and removes them afterwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

Tensor = Any  # torch.Tensor; kept loose so this module imports without torch


@dataclass(frozen=True)
class Latent:
    samples: Tensor
    # Where to regenerate (1) and where to keep the input latent (0), at latent or pixel size.
    noise_mask: Tensor | None = None
    batch_index: tuple[int, ...] | None = None

    def replace(self, **changes: Any) -> Latent:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ControlApplication:
    """One ControlNet applied to a conditioning (see the adapters); `previous` chains several."""

    control: Any  # a loaded ControlNet handle
    hint: Tensor  # IMAGE-convention control image
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0


@dataclass(frozen=True)
class CondEntry:
    embeds: Tensor  # [1, tokens, dim]
    pooled: Tensor | None = None  # [1, dim] (SDXL: the bigG pooled, projected text embedding)
    # Model-specific extras: SDXL size conditioning (width, height, crop_w, crop_h, target_width,
    # target_height) or refiner (width, height, crop_w, crop_h, aesthetic_score).
    extras: Mapping[str, Any] = field(default_factory=dict)
    controls: tuple[ControlApplication, ...] = ()
    strength: float = 1.0
    area: tuple[int, int, int, int] | None = None  # (height, width, y, x) in pixels
    mask: Tensor | None = None
    mask_strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0

    def replace(self, **changes: Any) -> CondEntry:
        return dataclasses.replace(self, **changes)


Conditioning = tuple[CondEntry, ...]


class ModulePatch(Protocol):
    """Something applied to a module for one sampling run and removed after (LoRA, IP-Adapter, …)."""

    def applied(self, module: Any, context: Mapping[str, Any]) -> Any:
        """A context manager: patch `module` on enter, restore it exactly on exit."""
        ...


@dataclass(frozen=True)
class ModelHandle:
    """MODEL: the denoiser (UNet) of a checkpoint plus the patches to apply when sampling."""

    unet: Any  # nodes.sd.model_manager.LoadedModule
    family: Any  # nodes.sd.families.Family
    prediction: str = "epsilon"  # or "v_prediction"
    # Raw VAE latents enter the denoiser as (latent - shift) * scale (the checkpoint's scale_factor).
    latent_scale: float = 0.18215
    latent_shift: float = 0.0
    patches: tuple[Any, ...] = ()
    source: str = ""  # the checkpoint's name, for metadata and routing

    def with_patch(self, patch: Any) -> ModelHandle:
        return dataclasses.replace(self, patches=(*self.patches, patch))

    def cache_nbytes(self) -> dict[str, int]:
        return {}  # the model manager owns the module's memory


@dataclass(frozen=True)
class TextEncoderSlot:
    module: Any  # nodes.sd.model_manager.LoadedModule (a CLIPTextModel or CLIPTextModelWithProjection)
    tokenizer: Any  # a transformers CLIPTokenizer
    spec: Any  # nodes.sd.families.TextEncoderSpec
    default_layer: int  # hidden-state index read when no clip skip is set (-1 last, -2 penultimate)


@dataclass(frozen=True)
class ClipHandle:
    """CLIP: the text encoder(s) and tokenizer(s) of a checkpoint, clip skip, and patches."""

    encoders: tuple[TextEncoderSlot, ...]
    family: Any
    stop_at_layer: int | None = None  # None: each encoder's default layer; -1 last, -2 penultimate, …
    patches: tuple[Any, ...] = ()
    source: str = ""

    def with_patch(self, patch: Any) -> ClipHandle:
        return dataclasses.replace(self, patches=(*self.patches, patch))

    def replace(self, **changes: Any) -> ClipHandle:
        return dataclasses.replace(self, **changes)

    def cache_nbytes(self) -> dict[str, int]:
        return {}


@dataclass(frozen=True)
class VaeHandle:
    vae: Any  # nodes.sd.model_manager.LoadedModule
    scaling_factor: float
    shift_factor: float = 0.0
    latent_channels: int = 4
    source: str = ""

    def cache_nbytes(self) -> dict[str, int]:
        return {}
