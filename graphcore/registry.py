"""The table of node types, their aliases, and discovery of node packages through entry points."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from graphcore.node import Alias, Node, object_info

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "diffgraph.nodes"
# Extra node providers, "module:attribute" separated by commas (e.g. test nodes for a server subprocess).
NODE_MODULES_ENV = "DIFFGRAPH_NODE_MODULES"


@dataclass(frozen=True)
class Resolved:
    """A class_type resolved to our node class, with the alias's input renames (empty for our names)."""

    cls: type[Node]
    alias: Alias | None = None

    @property
    def renames(self) -> Mapping[str, str]:
        return self.alias.renames if self.alias else {}


@dataclass
class Registry:
    classes: dict[str, type[Node]] = field(default_factory=dict)
    aliases: dict[str, tuple[type[Node], Alias]] = field(default_factory=dict)

    def add(self, cls: type[Node]) -> type[Node]:
        name = cls.type_name()
        if name in self.classes and self.classes[name] is not cls:
            raise ValueError(f"node type {name!r} is registered twice")
        self.classes[name] = cls
        for alias in cls.aliases:
            if alias.name != name:
                self.aliases[alias.name] = (cls, alias)
        return cls

    def add_all(self, classes: Iterable[type[Node]]) -> Registry:
        for cls in classes:
            self.add(cls)
        return self

    def resolve(self, class_type: str) -> Resolved | None:
        cls = self.classes.get(class_type)
        if cls is not None:
            return Resolved(cls)
        aliased = self.aliases.get(class_type)
        if aliased is not None:
            return Resolved(*aliased)
        return None

    def __contains__(self, class_type: str) -> bool:
        return self.resolve(class_type) is not None

    def object_info(self) -> dict[str, Any]:
        return {name: self._entry(name, cls) for name, cls in self.classes.items()}

    @staticmethod
    def _entry(name: str, cls: type[Node]) -> dict[str, Any]:
        entry = object_info(cls)
        names = [a.name for a in cls.aliases if a.name != name]
        if names:
            entry["aliases"] = names
        return entry

    def object_info_for(self, class_type: str) -> dict[str, Any] | None:
        resolved = self.resolve(class_type)
        if resolved is None:
            return None
        if resolved.alias is None:
            return self._entry(class_type, resolved.cls)
        return object_info(resolved.cls, name=class_type, renames=resolved.alias.renames)


def discover(registry: Registry | None = None) -> Registry:
    """A registry filled from every installed node package (entry point group `diffgraph.nodes`).

    Each entry point names a callable returning node classes; graphcore never imports `nodes` itself.
    """
    registry = registry or Registry()
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            registry.add_all(entry.load()())
        except Exception:  # one broken node package must not stop the others (or the server) from starting
            log.exception("could not load node package %s (%s)", entry.name, entry.value)
    for spec in filter(None, (part.strip() for part in os.environ.get(NODE_MODULES_ENV, "").split(","))):
        registry.add_all(load_provider(spec))
    return registry


def load_provider(spec: str) -> Iterable[type[Node]]:
    """Node classes named by "module:attribute": a callable returning classes (or a Registry), or a sequence."""
    module_name, _, attribute = spec.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute or "node_classes")
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"${NODE_MODULES_ENV}: cannot load {spec!r}: {exc}") from exc
    provided = target() if callable(target) else target
    return provided.classes.values() if isinstance(provided, Registry) else provided
