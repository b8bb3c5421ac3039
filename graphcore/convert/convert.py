"""UI-format workflow → API-format graph, with an import report.

The graph keeps the type names the file uses (ComfyUI's for the nodes we alias), so it also runs in ComfyUI;
`our_names=True` rewrites aliased nodes to our type and input names instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphcore import folders as folder_config
from graphcore.convert.flatten import BYPASSED, MUTED, Flattener, FromOutput, FromValue, Placed
from graphcore.convert.report import DroppedNode, ImportReport, check_models, to_our_names
from graphcore.convert.schema import NodeSchema, SchemaCache
from graphcore.convert.ui_format import parse_workflow
from graphcore.convert.widgets import map_widgets, wrap_constant
from graphcore.folders import Folders
from graphcore.registry import Registry
from graphcore.types import ANY, types_compatible


@dataclass
class ConversionResult:
    prompt: dict[str, Any]  # the API-format graph
    report: ImportReport


class _Converter:
    def __init__(self, data: Mapping[str, Any], registry: Registry) -> None:
        self.report = ImportReport()
        self.schemas = SchemaCache(registry)
        self.workflow = parse_workflow(data)
        self.report.source = f"comfyui-ui-{self.workflow.version}"
        self.flat = Flattener(self.workflow, self.report.warnings.append)

    def convert(self) -> dict[str, Any]:
        prompt: dict[str, Any] = {}
        for placed in self.flat.nodes():
            reason = self._drop_reason(placed)
            if reason is not None:
                self.report.dropped.append(DroppedNode(placed.exec_id, placed.node.type, reason))
                continue
            prompt[placed.exec_id] = self._node(placed)
        return prompt

    @staticmethod
    def _drop_reason(placed: Placed) -> str | None:
        if placed.kind != "node":
            return placed.kind
        if not placed.emit:
            return "inside a muted or bypassed subgraph"
        if placed.mode == MUTED:
            return "muted"
        if placed.mode == BYPASSED:
            return "bypassed"
        return None

    def _node(self, placed: Placed) -> dict[str, Any]:
        node = placed.node
        where = f"node {placed.exec_id} ({node.type})"
        schema = self.schemas.get(node.type)
        self.report.nodes[placed.exec_id] = node.type
        if schema is None:
            self.report.unknown.setdefault(node.type, []).append(placed.exec_id)
            inputs = self._unknown_widgets(placed)
        else:
            self.report.mapped[node.type] = schema.our_type
            inputs = map_widgets(schema, node.widgets_values, where, self.report.warnings.append)
        for index, slot in enumerate(node.inputs):
            if slot.get("link") is None:
                continue
            name = node.input_name(index)
            want = schema.input_types.get(name, ANY) if schema else ANY
            source = self.flat.resolve_input(placed, index, want)
            if isinstance(source, FromOutput):
                inputs[name] = [source.exec_id, self._output_index(source, where, name)]
            elif isinstance(source, FromValue):
                inputs[name] = wrap_constant(source.value)
            elif name not in inputs:
                self.report.warnings.append(
                    f"{where}: input '{name}' is linked to a muted, bypassed or missing node; left unconnected"
                )
        entry: dict[str, Any] = {"class_type": node.type, "inputs": inputs}
        title = node.title or (schema.display_name if schema else node.type)
        entry["_meta"] = {"title": title}
        return entry

    def _unknown_widgets(self, placed: Placed) -> dict[str, Any]:
        """For a type we do not have, keep widget values that carry their names (we cannot know positions)."""
        values = placed.node.widgets_values
        if isinstance(values, dict):
            return {k: wrap_constant(v) for k, v in values.items()}
        return {}

    def _output_index(self, source: FromOutput, where: str, input_name: str) -> int:
        """The output index on our node matching the file's output slot (checked by type, then by name)."""
        origin = self.flat.placed[source.exec_id]
        schema: NodeSchema | None = self.schemas.get(origin.node.type)
        if schema is None:
            return source.slot
        file_type = origin.node.output_type(source.slot)
        outputs = schema.outputs
        if source.slot < len(outputs) and _fits(outputs[source.slot].type, file_type):
            return source.slot
        file_name = origin.node.output_name(source.slot)
        candidates = [i for i, o in enumerate(outputs) if o.name == file_name and _fits(o.type, file_type)]
        if not candidates:
            candidates = [i for i, o in enumerate(outputs) if o.type == file_type]
        if len(candidates) == 1:
            self.report.warnings.append(
                f"{where}: input '{input_name}' takes output {source.slot} ({file_name or file_type}) of node "
                f"{source.exec_id}, which is output {candidates[0]} of our {schema.our_type}"
            )
            return candidates[0]
        return source.slot


def _fits(ours: str, theirs: str) -> bool:
    return theirs in (ANY, "") or types_compatible(ours, theirs)


def ui_to_api(
    data: Mapping[str, Any],
    registry: Registry,
    *,
    folders: Folders | None = None,
    model_map: Mapping[str, str] | None = None,
    our_names: bool = False,
) -> ConversionResult:
    """Convert a ComfyUI UI-format workflow (v0.4 or version 1) to the API format.

    Raises `UiFormatError` when `data` is not a UI-format workflow."""
    converter = _Converter(data, registry)
    prompt = converter.convert()
    check_models(prompt, registry, folders or folder_config.current(), converter.report, model_map)
    if our_names:
        prompt = to_our_names(prompt, registry)
    return ConversionResult(prompt, converter.report)
