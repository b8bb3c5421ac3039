"""The ComfyUI UI ("workflow") format read into plain structures: nodes, links, subgraph definitions.

Two link encodings exist and both are read everywhere: v0.4 arrays `[id, from_node, from_slot, to_node,
to_slot, type]` and version-1 objects `{id, origin_id, origin_slot, target_id, target_slot, type}` (always used
inside `definitions.subgraphs`, whatever the file's version). Node ids become strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SUBGRAPH_INPUT_NODE = "-10"  # the virtual node whose outputs are a subgraph's inputs
SUBGRAPH_OUTPUT_NODE = "-20"  # the virtual node whose inputs are a subgraph's outputs


class UiFormatError(ValueError):
    """The JSON is not a UI-format workflow we can read."""


@dataclass(frozen=True)
class UiLink:
    id: Any
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: str = "*"


@dataclass
class UiNode:
    id: str
    type: str
    mode: int
    title: str
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    widgets_values: list[Any] | dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    def input_name(self, index: int) -> str:
        slot = self.inputs[index]
        widget = slot.get("widget")
        if isinstance(widget, Mapping) and isinstance(widget.get("name"), str):
            return widget["name"]
        return str(slot.get("name", f"input_{index}"))

    def output_type(self, slot: int) -> str:
        if 0 <= slot < len(self.outputs):
            return type_name(self.outputs[slot].get("type"))
        return "*"

    def output_name(self, slot: int) -> str:
        if 0 <= slot < len(self.outputs):
            return str(self.outputs[slot].get("name", ""))
        return ""


@dataclass
class UiGraph:
    nodes: dict[str, UiNode]
    links: dict[Any, UiLink]


@dataclass
class SubgraphDefinition:
    id: str
    name: str
    graph: UiGraph
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]

    def output_link(self, slot: int) -> UiLink | None:
        """The link inside the subgraph that feeds its output `slot`."""
        for link in self.graph.links.values():
            if link.target_id == SUBGRAPH_OUTPUT_NODE and link.target_slot == slot:
                return link
        return None


@dataclass
class UiWorkflow:
    version: str  # "0.4" or "1"
    graph: UiGraph
    subgraphs: dict[str, SubgraphDefinition]


def type_name(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, str) and value:
        return value
    return "*"


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise UiFormatError(f"{what}: expected a number, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UiFormatError(f"{what}: expected a number, got {value!r}") from None


def parse_link(raw: Any) -> UiLink:
    if isinstance(raw, list):
        if len(raw) < 5:
            raise UiFormatError(f"link {raw!r}: expected [id, from_node, from_slot, to_node, to_slot, type]")
        link_type = type_name(raw[5]) if len(raw) > 5 else "*"
        return UiLink(raw[0], str(raw[1]), _int(raw[2], "link origin slot"), str(raw[3]),
                      _int(raw[4], "link target slot"), link_type)
    if isinstance(raw, Mapping):
        try:
            return UiLink(raw["id"], str(raw["origin_id"]), _int(raw["origin_slot"], "link origin_slot"),
                          str(raw["target_id"]), _int(raw["target_slot"], "link target_slot"),
                          type_name(raw.get("type")))
        except KeyError as exc:
            raise UiFormatError(f"link {dict(raw)!r}: missing {exc.args[0]!r}") from None
    raise UiFormatError(f"link {raw!r}: expected an array or an object")


def parse_node(raw: Any) -> UiNode:
    if not isinstance(raw, Mapping):
        raise UiFormatError(f"node {raw!r}: expected an object")
    if "id" not in raw or not isinstance(raw.get("type"), str):
        raise UiFormatError(f"node {str(raw)[:80]}: needs an 'id' and a 'type'")
    mode = raw.get("mode", 0)
    widgets = raw.get("widgets_values")
    if widgets is not None and not isinstance(widgets, (list, dict)):
        widgets = None
    title = raw.get("title")
    return UiNode(
        id=str(raw["id"]),
        type=raw["type"],
        mode=mode if isinstance(mode, int) and not isinstance(mode, bool) else 0,
        title=title if isinstance(title, str) else "",
        inputs=[dict(i) for i in raw.get("inputs") or [] if isinstance(i, Mapping)],
        outputs=[dict(o) for o in raw.get("outputs") or [] if isinstance(o, Mapping)],
        widgets_values=widgets,
        raw=dict(raw),
    )


def parse_graph(raw: Mapping[str, Any]) -> UiGraph:
    nodes_raw = raw.get("nodes")
    if not isinstance(nodes_raw, list):
        raise UiFormatError("a UI-format workflow has a 'nodes' list")
    nodes: dict[str, UiNode] = {}
    for item in nodes_raw:
        node = parse_node(item)
        if node.id in nodes:
            raise UiFormatError(f"node id {node.id} appears twice")
        nodes[node.id] = node
    links: dict[Any, UiLink] = {}
    for item in raw.get("links") or []:
        if item is None:
            continue
        link = parse_link(item)
        links[link.id] = link
    return UiGraph(nodes, links)


def _definitions(raw: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    definitions = raw.get("definitions")
    if isinstance(definitions, Mapping):
        for item in definitions.get("subgraphs") or []:
            if isinstance(item, Mapping):
                yield item
                yield from _definitions(item)


def parse_workflow(raw: Any) -> UiWorkflow:
    if not isinstance(raw, Mapping):
        raise UiFormatError("a UI-format workflow is a JSON object")
    version = "1" if raw.get("version") == 1 else "0.4"
    subgraphs: dict[str, SubgraphDefinition] = {}
    for item in _definitions(raw):
        sub_id = item.get("id")
        if not isinstance(sub_id, str):
            raise UiFormatError("a subgraph definition needs a string 'id'")
        subgraphs[sub_id] = SubgraphDefinition(
            id=sub_id,
            name=str(item.get("name", sub_id)),
            graph=parse_graph(item),
            inputs=[dict(i) for i in item.get("inputs") or [] if isinstance(i, Mapping)],
            outputs=[dict(o) for o in item.get("outputs") or [] if isinstance(o, Mapping)],
        )
    return UiWorkflow(version, parse_graph(raw), subgraphs)


def is_ui_workflow(data: Any) -> bool:
    return isinstance(data, Mapping) and isinstance(data.get("nodes"), list)
