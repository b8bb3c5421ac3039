"""Socket type names and the rule for which output type may feed which input type."""

from __future__ import annotations

ANY = "*"

MODEL = "MODEL"
CLIP = "CLIP"
VAE = "VAE"
CONDITIONING = "CONDITIONING"
LATENT = "LATENT"
IMAGE = "IMAGE"
MASK = "MASK"
CONTROL_NET = "CONTROL_NET"
CLIP_VISION = "CLIP_VISION"
CLIP_VISION_OUTPUT = "CLIP_VISION_OUTPUT"
IPADAPTER = "IPADAPTER"
SAFETY_CHECKER = "SAFETY_CHECKER"
SAFETY_FLAGS = "SAFETY_FLAGS"
UPSCALE_MODEL = "UPSCALE_MODEL"
SAMPLER = "SAMPLER"
SIGMAS = "SIGMAS"
NOISE = "NOISE"
GUIDER = "GUIDER"

# Widget types: a widget input may also be fed by a link carrying its type.
INT = "INT"
FLOAT = "FLOAT"
STRING = "STRING"
BOOLEAN = "BOOLEAN"
COMBO = "COMBO"


def _members(type_name: str) -> frozenset[str]:
    return frozenset(part.strip() for part in type_name.split(",") if part.strip())


def types_compatible(output_type: str, input_type: str) -> bool:
    """True when an output of `output_type` may be linked into an input of `input_type`.

    `*` matches anything; a comma-separated type ("IMAGE,MASK") is a union, as in ComfyUI. A COMBO
    widget accepts a COMBO or STRING link (ComfyUI's primitive nodes emit either).
    """
    if ANY in (output_type, input_type) or output_type == input_type:
        return True
    if input_type == COMBO:
        return output_type in (COMBO, STRING)
    return bool(_members(output_type) & _members(input_type))
