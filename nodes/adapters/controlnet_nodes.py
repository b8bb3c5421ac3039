"""ControlNet nodes: load one, attach it (with its hint image) to conditioning."""

from __future__ import annotations

from typing import Any

from graphcore import types
from graphcore.folders import ModelChoices, model_file_stamp
from graphcore.inputs import Combo, Float, Socket
from graphcore.node import Alias, Node, Output


class ControlNetLoader(Node):
    display_name = "Load ControlNet"
    category = "loaders"
    description = (
        "Loads a ControlNet from the controlnet folder: an original (lllyasviel) .safetensors/.pth file, with or "
        "without the control_model. prefix, or a diffusers folder; SD1.5 and SDXL."
    )
    inputs = {"control_net_name": Combo(ModelChoices("controlnet"), tooltip="A ControlNet in the controlnet folder")}
    outputs = (Output(types.CONTROL_NET),)

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return model_file_stamp("controlnet", constants["control_net_name"])

    def run(self, ctx, control_net_name):
        from nodes.adapters.controlnet_loading import load_controlnet

        return (load_controlnet(ctx.folders.resolve_model("controlnet", control_net_name), control_net_name),)


def _application(control_net: Any, image: Any, strength: float, start: float, end: float) -> Any:
    from nodes.values import ControlApplication

    return ControlApplication(control_net, image, float(strength), float(start), float(end))


_STRENGTH = Float(1.0, min=0.0, max=10.0, step=0.01, tooltip="Scale of the ControlNet's residuals (0: off)")


class ControlNet(Node):
    display_name = "Apply ControlNet"
    category = "conditioning/controlnet"
    description = (
        "Guides sampling with a ControlNet and a hint image (edges, depth, pose…) on both the positive and the "
        "negative conditioning. The hint is resized to the latent's pixel size; start/end percent limit the part "
        "of the schedule where it acts. Several Apply ControlNet nodes in a row add up."
    )
    inputs = {
        "positive": Socket(types.CONDITIONING),
        "negative": Socket(types.CONDITIONING),
        "control_net": Socket(types.CONTROL_NET),
        "image": Socket(types.IMAGE, tooltip="The hint image, values in 0..1"),
        "strength": _STRENGTH,
        "start_percent": Float(0.0, min=0.0, max=1.0, step=0.001, tooltip="Where in the schedule it starts"),
        "end_percent": Float(1.0, min=0.0, max=1.0, step=0.001, tooltip="Where in the schedule it stops"),
    }
    outputs = (Output(types.CONDITIONING, "positive"), Output(types.CONDITIONING, "negative"))
    # ComfyUI's newer node has an optional VAE input (for ControlNets that need one; none of ours do).
    aliases = (Alias("ControlNetApplyAdvanced", ignored=("vae",)),)

    def run(self, ctx, positive, negative, control_net, image, strength, start_percent, end_percent):
        if strength == 0:
            return (positive, negative)
        from nodes.adapters.controlnet_apply import attach

        application = _application(control_net, image, strength, start_percent, end_percent)
        return (attach(positive, application), attach(negative, application))


class ControlNetApply(Node):
    display_name = "Apply ControlNet (one conditioning)"
    category = "conditioning/controlnet"
    description = "ComfyUI's older form: a ControlNet and hint image on one conditioning, over the whole schedule."
    inputs = {
        "conditioning": Socket(types.CONDITIONING),
        "control_net": Socket(types.CONTROL_NET),
        "image": Socket(types.IMAGE, tooltip="The hint image, values in 0..1"),
        "strength": _STRENGTH,
    }
    outputs = (Output(types.CONDITIONING),)

    def run(self, ctx, conditioning, control_net, image, strength):
        if strength == 0:
            return (conditioning,)
        from nodes.adapters.controlnet_apply import attach

        return (attach(conditioning, _application(control_net, image, strength, 0.0, 1.0)),)


NODES = (ControlNetLoader, ControlNet, ControlNetApply)
