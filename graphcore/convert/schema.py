"""What a converter needs to know about one node type, read from a Registry (never from `nodes`).

`widgets_values` lists a node's widget values in the order of its widget inputs (required, then optional),
with UI-only entries between them: a `control_after_generate` value after an INT that has that option (and,
in files from older front ends, after any INT named seed/noise_seed), and one `upload` entry after the
required inputs when an input asks for an upload button (LoadImage). Sockets (links only) take no entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphcore import types
from graphcore.registry import Registry

WIDGET_TYPES = frozenset({types.INT, types.FLOAT, types.STRING, types.BOOLEAN, types.COMBO})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "upload")
CONTROL_SEED_NAMES = frozenset({"seed", "noise_seed"})  # older front ends added the control by name
CONTROL_AFTER_GENERATE = "control_after_generate"
UPLOAD = "upload"


@dataclass(frozen=True)
class WidgetSlot:
    name: str  # the input name as the file spells it (ComfyUI's names for an alias)
    ui_only: str | None = None  # None for a real widget, else CONTROL_AFTER_GENERATE or UPLOAD
    optional: bool = False


@dataclass(frozen=True)
class OutputSlot:
    type: str
    name: str


@dataclass(frozen=True)
class NodeSchema:
    file_type: str  # the type name the file uses (ours or an alias)
    our_type: str
    slots: tuple[WidgetSlot, ...]
    input_types: dict[str, str]  # every input (their names) → its type name ("COMBO" for choices)
    widget_names: frozenset[str]
    outputs: tuple[OutputSlot, ...]
    display_name: str
    has_ignored_inputs: bool  # the alias drops inputs of the other tool: positions may not line up

    @property
    def real_slots(self) -> tuple[WidgetSlot, ...]:
        return tuple(s for s in self.slots if s.ui_only is None)


def _is_widget(entry: list[Any], spec: Any) -> bool:
    type_part = entry[0] if entry else None
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
    if options.get("forceInput"):
        return False
    if spec is not None and not spec.is_widget:
        return False
    return isinstance(type_part, list) or type_part in WIDGET_TYPES


def build_schema(registry: Registry, file_type: str) -> NodeSchema | None:
    resolved = registry.resolve(file_type)
    info = registry.object_info_for(file_type)
    if resolved is None or info is None:
        return None
    renames = dict(resolved.renames)
    order = info.get("input_order", {})
    sections = info.get("input", {})
    slots: list[WidgetSlot] = []
    input_types: dict[str, str] = {}
    widget_names: set[str] = set()
    for section in ("required", "optional"):
        entries = sections.get(section, {})
        upload_after_section = False
        for name in order.get(section, list(entries)):
            entry = entries.get(name) or []
            spec = resolved.cls.inputs.get(renames.get(name, name))
            type_part = entry[0] if entry else types.ANY
            input_types[name] = types.COMBO if isinstance(type_part, list) else str(type_part)
            if not _is_widget(entry, spec):
                continue
            options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
            slots.append(WidgetSlot(name, optional=section == "optional"))
            widget_names.add(name)
            if type_part == types.INT and (options.get(CONTROL_AFTER_GENERATE) or name in CONTROL_SEED_NAMES):
                slots.append(WidgetSlot(name, CONTROL_AFTER_GENERATE))
            if any(options.get(key) for key in UPLOAD_OPTIONS):
                upload_after_section = True
        if upload_after_section:
            slots.append(WidgetSlot(UPLOAD, UPLOAD))
    outputs = tuple(
        OutputSlot(str(t), str(n)) for t, n in zip(info.get("output", []), info.get("output_name", []), strict=False)
    )
    alias = resolved.alias
    return NodeSchema(
        file_type=file_type,
        our_type=resolved.cls.type_name(),
        slots=tuple(slots),
        input_types=input_types,
        widget_names=frozenset(widget_names),
        outputs=outputs,
        display_name=str(info.get("display_name") or file_type),
        has_ignored_inputs=bool(alias and alias.ignored),
    )


class SchemaCache:
    """Schemas by file type name, built once per conversion."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cache: dict[str, NodeSchema | None] = {}

    def get(self, file_type: str) -> NodeSchema | None:
        if file_type not in self._cache:
            self._cache[file_type] = build_schema(self.registry, file_type)
        return self._cache[file_type]
