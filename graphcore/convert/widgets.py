"""`widgets_values` → input values by name.

Positional lists hold one entry per widget plus UI-only entries (see schema.py). Files differ in which UI-only
entries they carry (older front ends wrote no control value for some seeds; newer ones write one for every
INT that asks for it), so the count decides: when the list has room for every UI-only entry they are all
skipped; otherwise an entry is taken as UI-only only when its value looks like one ("randomize", …).
Newer front ends may write a dict by widget name instead; UI-only keys are dropped there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from graphcore.convert.schema import CONTROL_AFTER_GENERATE, UPLOAD, NodeSchema, WidgetSlot

CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
UI_ONLY_KEYS = frozenset({CONTROL_AFTER_GENERATE, "control_filter_list", UPLOAD, "$$canvas-image-preview"})
Warn = Callable[[str], None]


def _looks_ui_only(slot: WidgetSlot, value: Any) -> bool:
    if slot.ui_only == CONTROL_AFTER_GENERATE:
        return isinstance(value, str) and value in CONTROL_VALUES
    return value is None or value == "image"  # the upload button's own value


def wrap_constant(value: Any) -> Any:
    """A constant as the API format writes it: a literal list must not look like a link."""
    return {"__value__": value} if isinstance(value, list) else value


def map_positional(schema: NodeSchema, values: list[Any], where: str, warn: Warn) -> dict[str, Any]:
    real = [s for s in schema.slots if s.ui_only is None]
    ui_only = len(schema.slots) - len(real)
    room = len(values) - len(real)  # how many UI-only entries the list can hold
    if schema.has_ignored_inputs and values:
        warn(f"{where}: this node type drops some of the original node's inputs; widget positions may not line up")
    out: dict[str, Any] = {}
    index = 0
    for slot in schema.slots:
        if index >= len(values):
            break
        value = values[index]
        if slot.ui_only is not None:
            if room >= ui_only or _looks_ui_only(slot, value):
                index += 1
                room -= 1
                ui_only -= 1
            else:
                ui_only -= 1
            continue
        out[slot.name] = wrap_constant(value)
        index += 1
    # Optional widgets may be extensions of ours that files from other tools never have: no warning for them.
    missing = [s.name for s in real if s.name not in out and not s.optional]
    if missing:
        warn(f"{where}: widgets_values has {len(values)} entries for {len(real)} widgets; "
             f"{', '.join(missing)} left at their defaults")
    elif index < len(values):
        warn(f"{where}: widgets_values has {len(values) - index} more entries than expected; ignored "
             f"({values[index:]!r:.80})")
    return out


def map_named(schema: NodeSchema, values: Mapping[str, Any], where: str, warn: Warn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    unknown = []
    for name, value in values.items():
        if name in schema.widget_names:
            out[name] = wrap_constant(value)
        elif name not in UI_ONLY_KEYS:
            unknown.append(name)
    if unknown:
        warn(f"{where}: widgets_values names {', '.join(map(repr, unknown))}, which this node does not have; ignored")
    return out


def map_widgets(schema: NodeSchema, values: Any, where: str, warn: Warn) -> dict[str, Any]:
    if values is None:
        return {}
    if isinstance(values, Mapping):
        return map_named(schema, values, where, warn)
    return map_positional(schema, list(values), where, warn)
