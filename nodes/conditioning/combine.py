"""Conditioning arithmetic and regions: combine, average, zero out, area, mask, timestep range (ComfyUI's names,
inputs and defaults). A CONDITIONING is a tuple of CondEntry; nodes return new entries, never change inputs.
"""

from __future__ import annotations

from typing import Any

from graphcore import types
from graphcore.context import NodeContext
from graphcore.inputs import Combo, Float, Int, Socket
from graphcore.node import Node, Output

MAX_RESOLUTION = 16384
MASK_AREA_MODES = ("default", "mask bounds")


def _cond(name: str = "conditioning") -> dict[str, Socket]:
    return {name: Socket(types.CONDITIONING)}


def _with(conditioning: tuple, **changes: Any) -> tuple:
    return tuple(entry.replace(**changes) for entry in conditioning)


class ConditioningCombine(Node):
    display_name = "Conditioning (Combine)"
    category = "conditioning"
    description = "Both conditionings at once: the sampler evaluates each and averages the predictions by strength."
    inputs = {**_cond("conditioning_1"), **_cond("conditioning_2")}
    outputs = (Output(types.CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning_1: tuple, conditioning_2: tuple) -> tuple[tuple]:
        return (tuple(conditioning_1) + tuple(conditioning_2),)


class ConditioningAverage(Node):
    display_name = "Conditioning (Average)"
    category = "conditioning"
    description = (
        "Blends the prompt embeddings: to × strength + from × (1 − strength). Only the first entry of "
        "'from' is used; it is cut or zero-padded to each 'to' entry's token length."
    )
    inputs = {
        **_cond("conditioning_to"),
        **_cond("conditioning_from"),
        "conditioning_to_strength": Float(1.0, min=0.0, max=1.0, step=0.01),
    }
    outputs = (Output(types.CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning_to: tuple, conditioning_from: tuple,
            conditioning_to_strength: float) -> tuple[tuple]:
        import torch

        if not conditioning_from:
            raise ValueError("ConditioningAverage: conditioning_from is empty")
        source = conditioning_from[0]
        strength = conditioning_to_strength
        out = []
        for entry in conditioning_to:
            tokens = entry.embeds.shape[1]
            blend_from = source.embeds[:, :tokens].to(entry.embeds.dtype)
            if blend_from.shape[1] < tokens:
                pad = blend_from.new_zeros(blend_from.shape[0], tokens - blend_from.shape[1], blend_from.shape[2])
                blend_from = torch.cat([blend_from, pad], dim=1)
            embeds = entry.embeds * strength + blend_from * (1.0 - strength)
            pooled = entry.pooled
            if source.pooled is not None:
                pooled = source.pooled if pooled is None else pooled * strength + source.pooled * (1.0 - strength)
            out.append(entry.replace(embeds=embeds, pooled=pooled))
        return (tuple(out),)


class ConditioningZeroOut(Node):
    display_name = "ConditioningZeroOut"
    category = "advanced/conditioning"
    description = "The same conditioning with all-zero embeddings (and pooled output): an 'empty' prompt for SDXL."
    inputs = _cond()
    outputs = (Output(types.CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: tuple) -> tuple[tuple]:
        import torch

        def zeros(t: Any) -> Any:
            return None if t is None else torch.zeros_like(t)

        return (tuple(e.replace(embeds=zeros(e.embeds), pooled=zeros(e.pooled)) for e in conditioning),)


class ConditioningSetArea(Node):
    display_name = "Conditioning (Set Area)"
    category = "conditioning"
    description = (
        "Applies the prompt only to a rectangle of the picture (pixels; the sampler works in 8-pixel latent "
        "cells). Combine with a full-picture prompt for regional prompting."
    )
    inputs = {
        **_cond(),
        "width": Int(64, min=64, max=MAX_RESOLUTION, step=8),
        "height": Int(64, min=64, max=MAX_RESOLUTION, step=8),
        "x": Int(0, min=0, max=MAX_RESOLUTION, step=8),
        "y": Int(0, min=0, max=MAX_RESOLUTION, step=8),
        "strength": Float(1.0, min=0.0, max=10.0, step=0.01),
    }
    outputs = (Output(types.CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: tuple, width: int, height: int, x: int, y: int,
            strength: float) -> tuple[tuple]:
        return (_with(conditioning, area=(height, width, y, x), strength=strength),)


class ConditioningSetAreaStrength(Node):
    display_name = "ConditioningSetAreaStrength"
    category = "conditioning"
    description = "Sets how much this conditioning weighs when averaged with others."
    inputs = {**_cond(), "strength": Float(1.0, min=0.0, max=10.0, step=0.01)}
    outputs = (Output(types.CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: tuple, strength: float) -> tuple[tuple]:
        return (_with(conditioning, strength=strength),)


class ConditioningSetMask(Node):
    display_name = "Conditioning (Set Mask)"
    category = "conditioning"
    description = (
        "Applies the prompt where the mask is 1. 'mask bounds' also crops the model's view to the mask's "
        "bounding box (taken in pixels: the mask should have the picture's size), like Set Area."
    )
    inputs = {
        **_cond(),
        "mask": Socket(types.MASK),
        "strength": Float(1.0, min=0.0, max=10.0, step=0.01),
        "set_cond_area": Combo(MASK_AREA_MODES, default="default"),
    }
    outputs = (Output(types.CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: tuple, mask: Any, strength: float,
            set_cond_area: str) -> tuple[tuple]:
        mask = mask if mask.dim() >= 3 else mask.unsqueeze(0)
        if set_cond_area == "default":
            return (_with(conditioning, mask=mask, mask_strength=strength),)
        area = mask_bounds(mask)
        if area is None:  # an empty mask: nothing to crop to, the weight map is zero anyway
            return (_with(conditioning, mask=mask, mask_strength=strength),)
        height, width, y, x = area
        return (_with(conditioning, mask=mask[..., y:y + height, x:x + width], mask_strength=strength, area=area),)


def mask_bounds(mask: Any) -> tuple[int, int, int, int] | None:
    """(height, width, y, x) of the non-zero part of a [B, H, W] mask, widened to whole 8-pixel cells."""
    import torch

    rows = torch.nonzero(mask.amax(dim=(0, 2)) > 0).flatten()
    cols = torch.nonzero(mask.amax(dim=(0, 1)) > 0).flatten()
    if len(rows) == 0:
        return None
    y0, x0 = int(rows[0]) // 8 * 8, int(cols[0]) // 8 * 8
    y1 = min(-(-(int(rows[-1]) + 1) // 8) * 8, mask.shape[-2])
    x1 = min(-(-(int(cols[-1]) + 1) // 8) * 8, mask.shape[-1])
    return (y1 - y0, x1 - x0, y0, x0)


class ConditioningSetTimestepRange(Node):
    display_name = "ConditioningSetTimestepRange"
    category = "advanced/conditioning"
    description = "Uses this conditioning only between start and end (fractions of the schedule, 0 = first step)."
    inputs = {
        **_cond(),
        "start": Float(0.0, min=0.0, max=1.0, step=0.001),
        "end": Float(1.0, min=0.0, max=1.0, step=0.001),
    }
    outputs = (Output(types.CONDITIONING),)

    def run(self, ctx: NodeContext, conditioning: tuple, start: float, end: float) -> tuple[tuple]:
        return (_with(conditioning, start_percent=start, end_percent=end),)


NODES = (
    ConditioningCombine,
    ConditioningAverage,
    ConditioningZeroOut,
    ConditioningSetArea,
    ConditioningSetAreaStrength,
    ConditioningSetMask,
    ConditioningSetTimestepRange,
)
