"""Nodes reading pictures from the input folder: LoadImage (IMAGE + MASK from alpha) and LoadImageMask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphcore import folders as folder_config
from graphcore import types
from graphcore.context import NodeContext
from graphcore.inputs import Combo, InputProblem
from graphcore.node import Node, Output
from nodes.image import files


def _input_images() -> list[str]:
    return files.list_input_images(folder_config.current().input_dir)


@dataclass(frozen=True)
class InputImage(Combo):
    """A COMBO of the images in the input folder (sub-folders included), with an upload button.

    A value is checked by looking the file up rather than listing the folder, and ComfyUI's annotated names
    ("x.png [output]", "clipspace/y.png [input]") are accepted as they are in ComfyUI."""

    choices: Any = _input_images
    allow_upload: str = "image_upload"

    def coerce(self, value: Any) -> str:
        if not isinstance(value, str):
            return super().coerce(value)
        try:
            files.resolve_image(folder_config.current(), value)
        except files.ImageFileError:
            raise InputProblem(
                "value_not_in_list", "Value not in list", f"'{value}' is not an image in the input folder"
            ) from None
        return value


def _image_path(name: str, node: str = "LoadImage") -> Path:
    try:
        return files.resolve_image(folder_config.current(), name)
    except files.ImageFileError as exc:
        raise FileNotFoundError(f"{node}: {exc}") from None


class LoadImage(Node):
    display_name = "Load Image"
    category = "image"
    description = (
        "A picture from the input folder. Its transparency becomes the MASK (1 where transparent); an animated "
        "image gives one batch entry per frame."
    )
    inputs = {"image": InputImage(tooltip="A file in the input folder (upload one with the button).")}
    outputs = (Output(types.IMAGE, "IMAGE"), Output(types.MASK, "MASK"))
    ignored_inputs = ("upload",)  # ComfyUI's API exports carry its upload button's value

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return files.file_sha256(_image_path(constants["image"]))

    def run(self, ctx: NodeContext, image: str) -> tuple[Any, Any]:
        from nodes.image import ops

        path = _image_path(image)
        try:
            frames = files.read_frames(path)
        except files.ImageFileError as exc:
            raise ValueError(f"LoadImage: {exc}") from None
        return ops.frames_to_tensors(frames)


class LoadImageMask(Node):
    display_name = "Load Image (as Mask)"
    category = "mask"
    description = "One channel of a picture from the input folder as a MASK; alpha is inverted (1 = transparent)."
    inputs = {
        "image": InputImage(tooltip="A file in the input folder."),
        "channel": Combo(tuple(files.CHANNELS), default="alpha"),
    }
    outputs = (Output(types.MASK, "MASK"),)

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        return files.file_sha256(_image_path(constants["image"]))

    def run(self, ctx: NodeContext, image: str, channel: str) -> tuple[Any]:
        import torch

        try:
            values = files.read_channel(_image_path(image, "LoadImageMask"), channel)
        except files.ImageFileError as exc:
            raise ValueError(f"LoadImageMask: {exc}") from None
        return (torch.from_numpy(values).unsqueeze(0),)


NODES = (LoadImage, LoadImageMask)
