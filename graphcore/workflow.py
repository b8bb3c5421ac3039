"""The API-format workflow (ComfyUI-compatible) parsed into a networkx graph.

`{"3": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["4", 0], ...}, "_meta": {...}}}`:
a two-element list is a link `[node_id, output_index]`; `{"__value__": [...]}` wraps a literal list;
anything else is a constant.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import networkx as nx


class WorkflowFormatError(ValueError):
    """The JSON is not an API-format workflow at all (not a mapping of node ids to nodes)."""


@dataclass(frozen=True)
class Link:
    node_id: str
    output_index: int

    def to_json(self) -> list[Any]:
        return [self.node_id, self.output_index]


@dataclass(frozen=True)
class BadLink:
    """A list where a link was expected that is not `[node_id, output_index]`."""

    raw: Any


@dataclass
class WorkflowNode:
    id: str
    class_type: str | None
    inputs: dict[str, Any]
    title: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def links(self) -> dict[str, Link]:
        return {name: value for name, value in self.inputs.items() if isinstance(value, Link)}


def parse_input_value(value: Any) -> Any:
    if type(value) in (int, float, str, bool):  # the common case, decided in one test
        return value
    if isinstance(value, list):
        if (
            len(value) == 2
            and isinstance(value[0], (str, int))
            and not isinstance(value[0], bool)
            and isinstance(value[1], int)
            and not isinstance(value[1], bool)
            and value[1] >= 0
        ):
            return Link(str(value[0]), value[1])
        return BadLink(value)
    if isinstance(value, dict) and set(value) == {"__value__"}:
        return value["__value__"]
    return value


def dump_input_value(value: Any) -> Any:
    if isinstance(value, Link):
        return value.to_json()
    if isinstance(value, BadLink):
        return value.raw
    if isinstance(value, list):
        return {"__value__": value}
    return value


class Workflow:
    def __init__(self, nodes: Mapping[str, WorkflowNode]) -> None:
        self.nodes: dict[str, WorkflowNode] = dict(nodes)
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(self.nodes)
        for node in self.nodes.values():
            for input_name, link in node.links().items():
                if link.node_id in self.nodes:
                    edge = self.graph.get_edge_data(link.node_id, node.id)
                    if edge is None:
                        self.graph.add_edge(link.node_id, node.id, inputs=[input_name])
                    else:
                        edge["inputs"].append(input_name)

    @classmethod
    def from_api(cls, data: Any) -> Workflow:
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise WorkflowFormatError(f"not valid JSON: {exc}") from None
        if not isinstance(data, Mapping):
            raise WorkflowFormatError("an API-format workflow is a JSON object of node id → node")
        if "nodes" in data and isinstance(data.get("nodes"), list):
            raise WorkflowFormatError(
                "this is a UI-format workflow (it has a 'nodes' list); convert it to the API format first"
            )
        nodes = {}
        for raw_id, raw in data.items():
            node_id = str(raw_id)
            if not isinstance(raw, Mapping):
                raise WorkflowFormatError(f"node {node_id!r} is not a JSON object")
            raw_inputs = raw.get("inputs", {})
            if not isinstance(raw_inputs, Mapping):
                raise WorkflowFormatError(f"node {node_id!r}: 'inputs' must be a JSON object")
            class_type = raw.get("class_type")
            meta = raw.get("_meta")
            title = meta.get("title", "") if isinstance(meta, Mapping) else ""
            nodes[node_id] = WorkflowNode(
                id=node_id,
                class_type=class_type if isinstance(class_type, str) else None,
                inputs={str(k): parse_input_value(v) for k, v in raw_inputs.items()},
                title=title if isinstance(title, str) else "",
                raw=dict(raw),
            )
        return cls(nodes)

    def to_api(self) -> dict[str, Any]:
        out = {}
        for node in self.nodes.values():
            entry = {
                "class_type": node.class_type,
                "inputs": {name: dump_input_value(value) for name, value in node.inputs.items()},
            }
            if node.title:
                entry["_meta"] = {"title": node.title}
            out[node.id] = entry
        return out

    def with_overrides(self, overrides: Mapping[str, Any]) -> Workflow:
        """A copy with constants replaced: keys are "NODE_ID.INPUT_NAME" (input names may contain dots)."""
        nodes = {node_id: copy.copy(node) for node_id, node in self.nodes.items()}
        for key, value in overrides.items():
            node_id, sep, input_name = key.partition(".")
            if not sep or not input_name:
                raise KeyError(f"override {key!r} must look like NODE_ID.INPUT_NAME")
            if node_id not in nodes:
                raise KeyError(f"override {key!r}: there is no node {node_id!r} in this workflow")
            node = nodes[node_id]
            node.inputs = {**node.inputs, input_name: parse_input_value(value)}
        return Workflow(nodes)
