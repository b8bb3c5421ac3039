"""Subgraphs expanded and every input traced to where its value really comes from.

Each node gets an execution id: its id, prefixed by the ids of the subgraph instances around it
("12:5", "12:7:3"). Tracing an input follows the link and then:
- a Reroute passes its one input through; a PrimitiveNode supplies its widget value as a constant;
- a bypassed node (mode 4) passes through the input for the requested output: the input at the same index
  when its type fits, else the first input of exactly the wanted type, else the first compatible one;
- a muted node (mode 2) supplies nothing: the input is left unconnected (the validator then says so);
- a subgraph instance's output continues at the link feeding that output inside the definition; a
  subgraph's input continues at the instance's input outside, or its promoted widget value.
Recursion through links is bounded by a visited set, so a cycle of reroutes ends with a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from graphcore.convert.ui_format import (
    SUBGRAPH_INPUT_NODE,
    SubgraphDefinition,
    UiGraph,
    UiNode,
    UiWorkflow,
    type_name,
)
from graphcore.types import ANY, types_compatible

MUTED, BYPASSED = 2, 4
REROUTE_TYPES = frozenset({"Reroute"})
PRIMITIVE_TYPES = frozenset({"PrimitiveNode"})
COMMENT_TYPES = frozenset({"Note", "MarkdownNote"})
MAX_SUBGRAPH_DEPTH = 32
Warn = Callable[[str], None]


@dataclass(frozen=True)
class FromOutput:
    exec_id: str
    slot: int


@dataclass(frozen=True)
class FromValue:
    value: Any


Source = FromOutput | FromValue


@dataclass
class Placed:
    exec_id: str
    node: UiNode
    graph: UiGraph
    path: tuple[str, ...]  # execution path of the instance holding this node ("" parts for the root)
    instance: Placed | None
    mode: int
    kind: str  # "node" | "subgraph" | "reroute" | "primitive" | "comment"
    emit: bool  # False inside a muted or bypassed subgraph instance

    def child_id(self, node_id: str) -> str:
        return ":".join((*self.path, node_id))


def _kind(node: UiNode, subgraphs: dict[str, SubgraphDefinition]) -> str:
    if node.type in subgraphs:
        return "subgraph"
    if node.type in REROUTE_TYPES:
        return "reroute"
    if node.type in PRIMITIVE_TYPES:
        return "primitive"
    if node.type in COMMENT_TYPES:
        return "comment"
    return "node"


def _compatible(a: str, b: str) -> bool:
    return a in (ANY, "") or b in (ANY, "") or types_compatible(a, b) or types_compatible(b, a)


class Flattener:
    def __init__(self, workflow: UiWorkflow, warn: Warn) -> None:
        self.workflow = workflow
        self.warn = warn
        self.placed: dict[str, Placed] = {}
        self._place(workflow.graph, (), None, emit=True, stack=())

    # ------------------------------------------------------------------------------------------ placing
    def _place(self, graph: UiGraph, path: tuple[str, ...], instance: Placed | None, emit: bool,
               stack: tuple[str, ...]) -> None:
        for node in graph.nodes.values():
            exec_id = ":".join((*path, node.id))
            mode = MUTED if instance is not None and instance.mode == MUTED else node.mode
            placed = Placed(exec_id, node, graph, path, instance, mode, _kind(node, self.workflow.subgraphs), emit)
            self.placed[exec_id] = placed
            if placed.kind != "subgraph":
                continue
            if node.type in stack or len(stack) >= MAX_SUBGRAPH_DEPTH:
                self.warn(f"node {exec_id}: subgraph {node.type} contains itself; not expanded")
                placed.kind = "comment"
                continue
            definition = self.workflow.subgraphs[node.type]
            inner_emit = emit and placed.mode not in (MUTED, BYPASSED)
            self._place(definition.graph, (*path, node.id), placed, inner_emit, (*stack, node.type))

    def nodes(self) -> Iterator[Placed]:
        return iter(self.placed.values())

    # ---------------------------------------------------------------------------------------- tracing
    def resolve_input(self, placed: Placed, index: int, want: str, visited: set | None = None) -> Source | None:
        visited = set() if visited is None else visited
        key = ("in", placed.exec_id, index)
        if key in visited:
            self.warn(f"node {placed.exec_id}: its links form a loop; input {index} left unconnected")
            return None
        visited.add(key)
        if index >= len(placed.node.inputs):
            return None
        link_id = placed.node.inputs[index].get("link")
        if link_id is None:
            return None
        link = placed.graph.links.get(link_id)
        if link is None:
            self.warn(f"node {placed.exec_id}: input '{placed.node.input_name(index)}' names link {link_id}, "
                      "which the workflow does not have")
            return None
        if link.origin_id == SUBGRAPH_INPUT_NODE:
            if placed.instance is None:
                self.warn(f"node {placed.exec_id}: a link from a subgraph input outside any subgraph")
                return None
            return self._instance_input(placed.instance, link.origin_slot, want, visited)
        origin = self.placed.get(placed.child_id(link.origin_id))
        if origin is None:
            self.warn(f"node {placed.exec_id}: input '{placed.node.input_name(index)}' comes from node "
                      f"{link.origin_id}, which the workflow does not have")
            return None
        return self.resolve_output(origin, link.origin_slot, want if want not in (ANY, "") else link.type, visited)

    def resolve_output(self, placed: Placed, slot: int, want: str, visited: set) -> Source | None:
        key = ("out", placed.exec_id, slot)
        if key in visited:
            self.warn(f"node {placed.exec_id}: its links form a loop; output {slot} gives nothing")
            return None
        visited.add(key)
        if placed.kind == "comment":
            return None
        if placed.mode == BYPASSED and placed.kind in ("node", "subgraph"):
            index = self._bypass_input(placed, slot, want)
            return None if index is None else self.resolve_input(placed, index, want, visited)
        if placed.kind == "reroute":
            return self.resolve_input(placed, 0, want, visited)
        if placed.kind == "primitive":
            return self._primitive_value(placed)
        if placed.kind == "subgraph":
            return self._subgraph_output(placed, slot, want, visited)
        if placed.mode == MUTED or not placed.emit:
            return None
        return FromOutput(placed.exec_id, slot)

    def _bypass_input(self, placed: Placed, slot: int, want: str) -> int | None:
        inputs = placed.node.inputs
        if not inputs:
            return None
        if want in (ANY, ""):
            return slot if slot < len(inputs) else 0
        output_type = placed.node.output_type(slot)
        input_types = [type_name(i.get("type")) for i in inputs]
        if slot < len(inputs) and _compatible(input_types[slot], output_type) and _compatible(input_types[slot], want):
            return slot
        for index, input_type in enumerate(input_types):
            if input_type == want:
                return index
        for index, input_type in enumerate(input_types):
            if _compatible(input_type, output_type) and _compatible(input_type, want):
                return index
        return None

    @staticmethod
    def _primitive_value(placed: Placed) -> Source | None:
        values = placed.node.widgets_values
        if isinstance(values, dict):
            values = list(values.values())
        if not values:
            return None
        return FromValue(values[0])

    def _subgraph_output(self, placed: Placed, slot: int, want: str, visited: set) -> Source | None:
        definition = self.workflow.subgraphs[placed.node.type]
        link = definition.output_link(slot)
        if link is None:
            return None
        if link.origin_id == SUBGRAPH_INPUT_NODE:  # an input wired straight to an output
            return self._instance_input(placed, link.origin_slot, want, visited)
        inner = self.placed.get(":".join((placed.exec_id, link.origin_id)))
        if inner is None:
            self.warn(f"subgraph {definition.name}: output {slot} comes from node {link.origin_id}, which it lacks")
            return None
        return self.resolve_output(inner, link.origin_slot, want, visited)

    def _instance_input(self, instance: Placed, slot: int, want: str, visited: set) -> Source | None:
        index = self._instance_slot(instance, slot)
        inputs = instance.node.inputs
        if index is not None and inputs[index].get("link") is not None:
            return self.resolve_input(instance, index, want, visited)
        return None if index is None else self._promoted_value(instance, index)

    def _instance_slot(self, instance: Placed, slot: int) -> int | None:
        """The instance's input for the definition's input `slot`: same name if the file says, else position."""
        definition = self.workflow.subgraphs[instance.node.type]
        inputs = instance.node.inputs
        if slot < len(definition.inputs):
            name = definition.inputs[slot].get("name")
            for index, item in enumerate(inputs):
                if item.get("name") == name:
                    return index
        return slot if slot < len(inputs) else None

    @staticmethod
    def _promoted_value(instance: Placed, slot: int) -> Source | None:
        """The value of the widget the instance shows for its input `slot`, if it has one."""
        values = instance.node.widgets_values
        inputs = instance.node.inputs
        if values is None or slot >= len(inputs) or not inputs[slot].get("widget"):
            return None
        if isinstance(values, dict):
            name = instance.node.input_name(slot)
            return FromValue(values[name]) if name in values else None
        position = sum(1 for i in inputs[:slot] if i.get("widget"))
        return FromValue(values[position]) if position < len(values) else None
