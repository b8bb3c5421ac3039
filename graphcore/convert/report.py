"""The import report: what a workflow from elsewhere became, and what it needs that is not here.

Model files are checked against the model folders: every COMBO input whose choices list a model folder
(`graphcore.folders.ModelChoices`) names a file that must exist there. A name that is missing but matches one
available file unambiguously (Windows separators, or the same file name in a sub-folder) is remapped and
said so; a name given in `model_map` is replaced as asked; anything else is reported with close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from graphcore.folders import Folders, ModelChoices
from graphcore.inputs import Combo
from graphcore.registry import Registry


@dataclass
class MissingModel:
    node_id: str
    class_type: str
    input_name: str
    folder: str  # the model folder kind: checkpoints, loras, vae, …
    name: str
    suggestions: list[str] = field(default_factory=list)


@dataclass
class RemappedModel:
    node_id: str
    input_name: str
    folder: str
    old: str
    new: str
    why: str  # "asked" | "path separators" | "same file name"


@dataclass
class DroppedNode:
    node_id: str
    type: str
    reason: str  # "muted" | "bypassed" | "comment" | "reroute" | "primitive" | "subgraph"


@dataclass
class ImportReport:
    source: str = "api"  # "comfyui-ui-0.4" | "comfyui-ui-1" | "api" | "png:comfyui" | "png:a1111" | …
    nodes: dict[str, str] = field(default_factory=dict)  # node id → type as the file names it
    mapped: dict[str, str] = field(default_factory=dict)  # their type → our type
    unknown: dict[str, list[str]] = field(default_factory=dict)  # their type → node ids
    missing_models: list[MissingModel] = field(default_factory=list)
    remapped_models: list[RemappedModel] = field(default_factory=list)
    dropped: list[DroppedNode] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every node known and every model file present (warnings aside)."""
        return not self.unknown and not self.missing_models

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def lines(self) -> list[str]:
        """The report as sentences for a terminal."""
        out = [f"source: {self.source}, {len(self.nodes)} nodes"]
        renamed = {theirs: ours for theirs, ours in self.mapped.items() if theirs != ours}
        if renamed:
            out.append("mapped: " + ", ".join(f"{t} → {o}" for t, o in sorted(renamed.items())))
        for type_name, ids in sorted(self.unknown.items()):
            out.append(f"unknown node type {type_name} (node {', '.join(ids)})")
        for m in self.missing_models:
            hint = f"; did you mean {', '.join(m.suggestions)}?" if m.suggestions else ""
            out.append(f"missing model: {m.folder}/{m.name} (node {m.node_id} {m.class_type}.{m.input_name}){hint}")
        for r in self.remapped_models:
            out.append(f"model remapped ({r.why}): {r.folder}/{r.old} → {r.new} (node {r.node_id})")
        for d in self.dropped:
            if d.reason in ("muted", "bypassed"):
                out.append(f"dropped node {d.node_id} ({d.type}): {d.reason}")
        out.extend(f"warning: {w}" for w in self.warnings)
        return out


def _model_kind(registry: Registry, class_type: str, input_name: str) -> str | None:
    resolved = registry.resolve(class_type)
    if resolved is None:
        return None
    spec = resolved.cls.inputs.get(dict(resolved.renames).get(input_name, input_name))
    if isinstance(spec, Combo) and isinstance(spec.choices, ModelChoices):
        return spec.choices.kind
    return None


def _unambiguous(name: str, available: list[str]) -> tuple[str, str] | None:
    slashed = name.replace("\\", "/")
    if slashed != name and slashed in available:
        return slashed, "path separators"
    base = PurePosixPath(slashed).name.lower()
    same = [a for a in available if PurePosixPath(a).name.lower() == base]
    if len(same) == 1:
        return same[0], "same file name"
    return None


def check_models(
    prompt: dict[str, Any],
    registry: Registry,
    folders: Folders,
    report: ImportReport,
    model_map: Mapping[str, str] | None = None,
) -> None:
    """Fix up (in place) and report the model file names in `prompt`'s loader inputs."""
    listings: dict[str, list[str]] = {}
    for node_id, node in prompt.items():
        class_type = node.get("class_type")
        inputs = node.get("inputs")
        if not isinstance(class_type, str) or not isinstance(inputs, dict):
            continue
        for input_name, value in list(inputs.items()):
            if not isinstance(value, str):
                continue
            kind = _model_kind(registry, class_type, input_name)
            if kind is None:
                continue
            if kind not in listings:
                listings[kind] = folders.list_models(kind)
            available = listings[kind]
            if model_map and value in model_map:
                new = inputs[input_name] = model_map[value]
                report.remapped_models.append(RemappedModel(node_id, input_name, kind, value, new, "asked"))
                value = new
            if value in available:
                continue
            found = _unambiguous(value, available)
            if found is not None:
                inputs[input_name] = found[0]
                report.remapped_models.append(RemappedModel(node_id, input_name, kind, value, found[0], found[1]))
                continue
            close = difflib.get_close_matches(value, available, n=3, cutoff=0.6)
            report.missing_models.append(MissingModel(node_id, class_type, input_name, kind, value, close))


def describe_api_nodes(prompt: dict[str, Any], registry: Registry, report: ImportReport) -> None:
    """Fill `nodes`, `mapped` and `unknown` from an API-format graph."""
    for node_id, node in prompt.items():
        class_type = node.get("class_type") if isinstance(node, dict) else None
        if not isinstance(class_type, str):
            report.warnings.append(f"node {node_id} has no class_type")
            continue
        report.nodes[str(node_id)] = class_type
        resolved = registry.resolve(class_type)
        if resolved is None:
            report.unknown.setdefault(class_type, []).append(str(node_id))
        else:
            report.mapped[class_type] = resolved.cls.type_name()


def to_our_names(prompt: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """The graph with every aliased node under our type name and input names (alias defaults filled in)."""
    out: dict[str, Any] = {}
    for node_id, node in prompt.items():
        resolved = registry.resolve(node.get("class_type", ""))
        if resolved is None or resolved.alias is None:
            out[node_id] = node
            continue
        alias = resolved.alias
        renames = dict(alias.renames)
        inputs = {renames.get(k, k): v for k, v in node.get("inputs", {}).items() if k not in alias.ignored}
        for name, value in alias.defaults.items():
            inputs.setdefault(name, value)
        out[node_id] = {**node, "class_type": resolved.cls.type_name(), "inputs": inputs}
    return out
