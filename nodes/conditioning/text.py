"""Prompts to conditioning."""

from __future__ import annotations

from graphcore import types
from graphcore.inputs import Socket, String
from graphcore.node import Alias, Node, Output


class CLIPEncode(Node):
    display_name = "CLIP Text Encode (Prompt)"
    category = "conditioning"
    description = (
        "Encodes a prompt with the checkpoint's text encoder(s). Emphasis: (word) ×1.1, ((word)) ×1.21, "
        "(word:1.3), [word] ÷1.1, \\( for a literal bracket; BREAK starts a new 75-token chunk; any length."
    )
    inputs = {
        "text": String("", multiline=True, tooltip="The prompt"),
        "clip": Socket(types.CLIP),
    }
    outputs = (Output(types.CONDITIONING),)
    aliases = (Alias("CLIPTextEncode"),)

    def run(self, ctx, text, clip):
        from nodes.sd.text_encoding import encode

        return ((encode(clip, text),),)


NODES = (CLIPEncode,)
