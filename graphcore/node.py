"""The node contract: a small declarative class per node type.

    class EmptyLatent(Node):
        category = "latent"
        description = "A batch of empty latents to start sampling from."
        inputs = {"width": Int(512, min=16, max=16384, step=8), ...}
        outputs = (Output(types.LATENT),)

        def run(self, ctx, width, height, batch_size):
            ...
            return (latent,)

Rules every node keeps (they are what makes caching correct):
- inputs are immutable: never modify a received value, return a new one;
- randomness only from a seed input, unless the class sets `not_deterministic = True`;
- side effects (files written) only in output nodes (`output_node = True`);
- `fingerprint` returns something that changes when an outside resource changes (a file's hash).
- Heavy libraries (torch, diffusers) are imported inside `run` or implementation modules, never at the
  top of the module declaring the node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from graphcore.inputs import InputSpec

if TYPE_CHECKING:
    from graphcore.context import NodeContext


@dataclass(frozen=True)
class Output:
    type: str
    name: str = ""
    tooltip: str = ""
    is_list: bool = False

    @property
    def display_name(self) -> str:
        return self.name or self.type


@dataclass(frozen=True)
class Alias:
    """Another name for a node type (e.g. ComfyUI's), with its input names mapped onto ours."""

    name: str
    renames: Mapping[str, str] = field(default_factory=dict)
    # Inputs the other tool has and we do not need; they are accepted and dropped.
    ignored: tuple[str, ...] = ()
    # Values to supply for our inputs that the other tool's node does not have.
    defaults: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Result:
    """What `run` may return instead of a plain tuple: outputs plus a UI payload (e.g. saved images)."""

    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None


class Node:
    display_name: ClassVar[str] = ""
    category: ClassVar[str] = "misc"
    description: ClassVar[str] = ""
    inputs: ClassVar[dict[str, InputSpec]] = {}
    outputs: ClassVar[tuple[Output, ...]] = ()
    output_node: ClassVar[bool] = False
    not_deterministic: ClassVar[bool] = False
    aliases: ClassVar[tuple[Alias, ...]] = ()
    # ComfyUI's hidden inputs, rendered in object_info; values come from the context instead.
    hidden: ClassVar[dict[str, str]] = {}
    # Inputs that workflows from other tools carry and that mean nothing here (e.g. LoadImage's "upload").
    ignored_inputs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def type_name(cls) -> str:
        return cls.__name__

    @classmethod
    def title(cls) -> str:
        return cls.display_name or cls.__name__

    @classmethod
    def fingerprint(cls, constants: dict[str, Any]) -> Any:
        """A value that changes when something outside the inputs changed (e.g. a file's hash).

        Called before each run with the node's constant (non-linked) inputs."""
        return None

    @classmethod
    def check(cls, constants: dict[str, Any]) -> dict[str, str]:
        """Extra validation of constant inputs: {input_name: message} for each problem found."""
        return {}

    def run(self, ctx: NodeContext, **inputs: Any) -> tuple[Any, ...] | Result:
        raise NotImplementedError(f"{type(self).__name__}.run")


def required_inputs(cls: type[Node]) -> list[str]:
    return [name for name, spec in cls.inputs.items() if not spec.optional]


def object_info(cls: type[Node], name: str | None = None, renames: Mapping[str, str] | None = None) -> dict:
    """Render a node class to ComfyUI's /object_info entry (optionally under an alias's names)."""
    theirs = {ours: their for their, ours in (renames or {}).items()}
    required: dict[str, list[Any]] = {}
    optional: dict[str, list[Any]] = {}
    for input_name, spec in cls.inputs.items():
        (optional if spec.optional else required)[theirs.get(input_name, input_name)] = spec.object_info()
    info: dict[str, Any] = {
        "input": {"required": required},
        "input_order": {"required": list(required)},
        "output": [out.type for out in cls.outputs],
        "output_is_list": [out.is_list for out in cls.outputs],
        "output_name": [out.display_name for out in cls.outputs],
        "output_tooltips": [out.tooltip for out in cls.outputs],
        "name": name or cls.type_name(),
        "display_name": cls.title(),
        "description": cls.description,
        "python_module": cls.__module__,
        "category": cls.category,
        "output_node": cls.output_node,
    }
    if optional:
        info["input"]["optional"] = optional
        info["input_order"]["optional"] = list(optional)
    if cls.hidden:
        info["input"]["hidden"] = dict(cls.hidden)
    if cls.not_deterministic:
        info["not_deterministic"] = True
    return info
