"""SafetyCheck: flag images with the Stable Diffusion safety checker and black out the flagged ones."""

from __future__ import annotations

from typing import Any

from graphcore import types
from graphcore.folders import ModelChoices, current, model_file_stamp
from graphcore.inputs import Combo, Float, Socket
from graphcore.node import Node, Output

# Per-image flags: a tuple of bools, one per image of the batch, True = flagged (and blacked out).
SAFETY_FLAGS = types.SAFETY_FLAGS


class SafetyCheck(Node):
    display_name = "Safety Check"
    category = "image/postprocessing"
    description = (
        "Runs the Stable Diffusion safety checker on each image: flagged images are replaced by black ones. "
        "Sensitivity 0.5 is the released checker; higher flags more, lower fewer. Outputs the images, a flag per "
        "image (SAFETY_FLAGS: a tuple of booleans) and whether any image was flagged."
    )
    inputs = {
        "images": Socket(types.IMAGE),
        "sensitivity": Float(0.5, min=0.0, max=1.0, step=0.01, tooltip="0.5: as released; 1: strictest"),
        "checker": Combo(ModelChoices("safety_checker"),
                         tooltip="A diffusers safety_checker folder (config.json + weights)"),
    }
    outputs = (
        Output(types.IMAGE, "images"),
        Output(SAFETY_FLAGS, "flags", "One boolean per image: True where the image was blacked out"),
        Output(types.BOOLEAN, "any_flagged", "True when at least one image was flagged"),
    )

    @classmethod
    def check(cls, constants: dict[str, Any]) -> dict[str, str]:
        name = constants.get("checker")
        if name is None:
            return {}
        from nodes.adapters.safety_folders import folder_problem

        problem = folder_problem(current().resolve_model("safety_checker", name))
        return {"checker": problem} if problem else {}

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return model_file_stamp("safety_checker", constants["checker"])

    def run(self, ctx, images, sensitivity, checker):
        from nodes.adapters.safety import check, load_checker

        handle = load_checker(ctx.folders.resolve_model("safety_checker", checker), checker)
        checked, flags = check(handle, images, sensitivity)
        return (checked, tuple(flags), any(flags))


NODES = (SafetyCheck,)
