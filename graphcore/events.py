"""The one callback interface through which execution reports what happens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class NodeError:
    """A node's failure as ComfyUI reports it in `execution_error`."""

    node_id: str
    node_type: str
    exception_message: str
    exception_type: str
    traceback: list[str] = field(default_factory=list)
    executed: list[str] = field(default_factory=list)
    current_inputs: dict[str, Any] = field(default_factory=dict)

    def to_comfy(self, prompt_id: str) -> dict[str, Any]:
        return {
            "prompt_id": prompt_id,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "executed": list(self.executed),
            "exception_message": self.exception_message,
            "exception_type": self.exception_type,
            "traceback": list(self.traceback),
            "current_inputs": dict(self.current_inputs),
            "current_outputs": {},
        }


class ExecutionEvents:
    """Override what you need; every method defaults to doing nothing."""

    def run_start(self, prompt_id: str) -> None: ...

    def nodes_cached(self, prompt_id: str, node_ids: list[str]) -> None: ...

    def node_start(self, prompt_id: str, node_id: str) -> None: ...

    def progress(
        self, prompt_id: str, node_id: str, value: int, maximum: int, preview: Any | None = None
    ) -> None: ...

    def node_done(self, prompt_id: str, node_id: str, ui: dict[str, Any] | None) -> None: ...

    def error(self, prompt_id: str, error: NodeError) -> None: ...

    def interrupted(self, prompt_id: str, node_id: str | None, executed: list[str]) -> None: ...

    def run_done(self, prompt_id: str, outputs: dict[str, dict[str, Any]]) -> None: ...


class RecordingEvents(ExecutionEvents):
    """Keeps every event as (name, payload) — for tests and for the CLI's summary."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def run_start(self, prompt_id):
        self.events.append(("run_start", prompt_id))

    def nodes_cached(self, prompt_id, node_ids):
        self.events.append(("nodes_cached", list(node_ids)))

    def node_start(self, prompt_id, node_id):
        self.events.append(("node_start", node_id))

    def progress(self, prompt_id, node_id, value, maximum, preview=None):
        self.events.append(("progress", (node_id, value, maximum, preview is not None)))

    def node_done(self, prompt_id, node_id, ui):
        self.events.append(("node_done", (node_id, ui)))

    def error(self, prompt_id, error):
        self.events.append(("error", error))

    def interrupted(self, prompt_id, node_id, executed):
        self.events.append(("interrupted", node_id))

    def run_done(self, prompt_id, outputs):
        self.events.append(("run_done", outputs))


class FanOut(ExecutionEvents):
    """Sends every event to several listeners."""

    def __init__(self, *listeners: ExecutionEvents | None) -> None:
        self.listeners = [listener for listener in listeners if listener is not None]

    def run_start(self, prompt_id):
        for listener in self.listeners:
            listener.run_start(prompt_id)

    def nodes_cached(self, prompt_id, node_ids):
        for listener in self.listeners:
            listener.nodes_cached(prompt_id, node_ids)

    def node_start(self, prompt_id, node_id):
        for listener in self.listeners:
            listener.node_start(prompt_id, node_id)

    def progress(self, prompt_id, node_id, value, maximum, preview=None):
        for listener in self.listeners:
            listener.progress(prompt_id, node_id, value, maximum, preview)

    def node_done(self, prompt_id, node_id, ui):
        for listener in self.listeners:
            listener.node_done(prompt_id, node_id, ui)

    def error(self, prompt_id, error):
        for listener in self.listeners:
            listener.error(prompt_id, error)

    def interrupted(self, prompt_id, node_id, executed):
        for listener in self.listeners:
            listener.interrupted(prompt_id, node_id, executed)

    def run_done(self, prompt_id, outputs):
        for listener in self.listeners:
            listener.run_done(prompt_id, outputs)
