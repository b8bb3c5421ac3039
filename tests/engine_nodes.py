"""Pure-Python nodes for engine tests: no torch. Every run is counted in RUNS by class name."""

from __future__ import annotations

import random
import weakref
from collections import Counter

from graphcore import types
from graphcore.inputs import Boolean, Combo, Float, Int, Socket, String
from graphcore.node import Alias, Node, Output, Result
from graphcore.registry import Registry

RUNS: Counter[str] = Counter()
BLOBS: dict[str, bytes] = {}
MADE: list[weakref.ref] = []


class Payload(bytearray):
    """A bytearray that can be weakly referenced, to observe when the engine lets it go."""


class Number(Node):
    category = "test"
    inputs = {"value": Int(0, min=-1000, max=1000)}
    outputs = (Output(types.INT, "value"),)

    def run(self, ctx, value):
        RUNS["Number"] += 1
        return (value,)


class Add(Node):
    category = "test"
    inputs = {"a": Int(0, min=-10**9, max=10**9), "b": Int(0, min=-10**9, max=10**9)}
    outputs = (Output(types.INT),)
    aliases = (Alias("Plus", renames={"x": "a", "y": "b"}),)

    def run(self, ctx, a, b):
        RUNS["Add"] += 1
        return (a + b,)


class Scale(Node):
    category = "test"
    inputs = {"value": Socket(types.INT), "factor": Float(1.0, min=0.0, max=100.0), "enabled": Boolean(True)}
    outputs = (Output(types.FLOAT),)

    def run(self, ctx, value, factor, enabled):
        RUNS["Scale"] += 1
        return (value * factor if enabled else float(value),)


class Text(Node):
    category = "test"
    inputs = {"text": String("", multiline=True), "mode": Combo(("upper", "lower", "keep"), default="keep")}
    outputs = (Output(types.STRING),)

    def run(self, ctx, text, mode):
        RUNS["Text"] += 1
        return ({"upper": text.upper(), "lower": text.lower(), "keep": text}[mode],)


class Collect(Node):
    """An output node: reports what it received."""

    category = "test"
    output_node = True
    inputs = {"value": Socket(types.ANY), "label": String("out", optional=True)}
    outputs = ()

    def run(self, ctx, value, label="out"):
        RUNS["Collect"] += 1
        return Result((), {"values": [value], "label": [label]})


class Dice(Node):
    category = "test"
    not_deterministic = True
    inputs = {}
    outputs = (Output(types.INT),)

    def run(self, ctx):
        RUNS["Dice"] += 1
        return (random.randint(0, 10**9),)


class Fail(Node):
    category = "test"
    inputs = {"value": Socket(types.INT), "fail": Boolean(True)}
    outputs = (Output(types.INT),)

    def run(self, ctx, value, fail):
        RUNS["Fail"] += 1
        if fail:
            raise ValueError(f"cannot handle {value}")
        return (value,)


class Steps(Node):
    """Reports progress for `steps` steps; `interrupt_at` sets the context's interrupt flag at that step."""

    category = "test"
    inputs = {"value": Socket(types.INT), "steps": Int(5, min=1, max=100), "interrupt_at": Int(-1, min=-1)}
    outputs = (Output(types.INT),)

    def run(self, ctx, value, steps, interrupt_at):
        RUNS["Steps"] += 1
        for i in range(steps):
            if i == interrupt_at:
                ctx.interrupt.set()
            ctx.progress(i + 1, steps)
        return (value + steps,)


class Blob(Node):
    """Makes `size` bytes (for cache budget tests)."""

    category = "test"
    inputs = {"size": Int(10, min=0, max=10**8), "tag": String("")}
    outputs = (Output("BLOB"),)

    def run(self, ctx, size, tag):
        RUNS["Blob"] += 1
        payload = Payload(size)
        MADE.append(weakref.ref(payload))
        return (payload,)


class BlobLen(Node):
    category = "test"
    inputs = {"blob": Socket("BLOB")}
    outputs = (Output(types.INT),)

    def run(self, ctx, blob):
        RUNS["BlobLen"] += 1
        return (len(blob),)


class FileText(Node):
    """Reads a named blob; its fingerprint is the blob's content, like a file hash."""

    category = "test"
    inputs = {"name": String("a")}
    outputs = (Output(types.STRING),)

    @classmethod
    def fingerprint(cls, constants):
        return BLOBS[constants["name"]]

    def run(self, ctx, name):
        RUNS["FileText"] += 1
        return (BLOBS[name].decode(),)


class Positive(Node):
    """Custom validation: rejects negative constants."""

    category = "test"
    inputs = {"value": Int(1)}
    outputs = (Output(types.INT),)

    @classmethod
    def check(cls, constants):
        return {"value": "must be positive"} if constants.get("value", 1) < 0 else {}

    def run(self, ctx, value):
        return (value,)


ALL = (Number, Add, Scale, Text, Collect, Dice, Fail, Steps, Blob, BlobLen, FileText, Positive)


def registry() -> Registry:
    return Registry().add_all(ALL)
