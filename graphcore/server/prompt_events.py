"""Execution events of one prompt, turned into ComfyUI's WebSocket messages and its history status.

Runs on a worker thread. Messages go to an `EventSink` (the WebSocket hub), which hands them to the
event loop thread-safely; JSON is encoded here so the loop only forwards strings. The final message
(success, error, interrupted) is held back until the history entry is written, so a client that sees
it can always read the entry.
"""

from __future__ import annotations

import io
import json
import logging
import math
import struct
import time
from typing import Any, Protocol

from graphcore.events import ExecutionEvents, NodeError

log = logging.getLogger(__name__)

PREVIEW_IMAGE = 1  # binary event type
PREVIEW_FORMATS = {"JPEG": 1, "PNG": 2}


class EventSink(Protocol):
    """Where a worker's messages go; every method may be called from any thread."""

    def wants(self, client_id: str | None) -> bool: ...

    def send_text(self, client_id: str, text: str) -> None: ...

    def send_bytes(self, client_id: str, frame: bytes) -> None: ...


def now_ms() -> int:
    return int(time.time() * 1000)


def message(event: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": event, "data": data}, default=_jsonable)


def _jsonable(value: Any) -> Any:
    """UI payloads should be JSON already; anything else is shown by its repr rather than failing."""
    return repr(value)[:200]


def json_safe(value: Any, depth: int = 0) -> Any:
    """`value` with tuples as lists, non-finite floats as null and other objects as their repr: what a
    node put in its UI payload must never break the history or a client's JSON parser."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth > 32:
        return _jsonable(value)
    if isinstance(value, dict):
        return {str(key): json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, depth + 1) for item in value]
    return _jsonable(value)


def encode_preview(image: Any, max_side: int, quality: int = 80) -> bytes | None:
    """A binary preview frame (type 1, format 1 = JPEG) for a PIL image; None for anything else."""
    if image is None or not (hasattr(image, "save") and hasattr(image, "size") and hasattr(image, "copy")):
        return None
    picture = image.copy()
    picture.thumbnail((max_side, max_side))
    if picture.mode != "RGB":
        picture = picture.convert("RGB")
    buffer = io.BytesIO()
    buffer.write(struct.pack(">II", PREVIEW_IMAGE, PREVIEW_FORMATS["JPEG"]))
    picture.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class PromptEvents(ExecutionEvents):
    def __init__(
        self,
        prompt_id: str,
        client_id: str | None,
        sink: EventSink,
        class_types: dict[str, str],
        preview_interval: float = 0.1,
        preview_max_side: int = 512,
    ) -> None:
        self.prompt_id = prompt_id
        self.client_id = client_id
        self.sink = sink
        self.class_types = class_types
        self.preview_interval = preview_interval
        self.preview_max_side = preview_max_side
        self.messages: list[list[Any]] = []  # the history's status messages
        self.final: tuple[str, dict[str, Any]] | None = None
        self.current_node: str | None = None
        self._last_preview = -math.inf

    def _send(self, event: str, data: dict[str, Any]) -> None:
        if self.client_id is not None and self.sink.wants(self.client_id):
            self.sink.send_text(self.client_id, message(event, data))

    def _record(self, event: str, data: dict[str, Any]) -> None:
        self.messages.append([event, data])

    def run_start(self, prompt_id: str) -> None:
        data = {"prompt_id": prompt_id, "timestamp": now_ms()}
        self._record("execution_start", data)
        self._send("execution_start", data)

    def nodes_cached(self, prompt_id: str, node_ids: list[str]) -> None:
        data = {"nodes": list(node_ids), "prompt_id": prompt_id, "timestamp": now_ms()}
        self._record("execution_cached", data)
        self._send("execution_cached", data)

    def node_start(self, prompt_id: str, node_id: str) -> None:
        self.current_node = node_id
        self._send("executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id})

    def progress(self, prompt_id: str, node_id: str, value: int, maximum: int, preview: Any | None = None) -> None:
        self._send("progress", {"value": value, "max": maximum, "prompt_id": prompt_id, "node": node_id})
        if preview is None or self.client_id is None or not self.sink.wants(self.client_id):
            return
        now = time.monotonic()
        if now - self._last_preview < self.preview_interval and value < maximum:
            return
        try:
            frame = encode_preview(preview, self.preview_max_side)
        except Exception:  # a broken preview must never fail the run
            log.exception("could not encode the preview of node %s", node_id)
            return
        if frame is not None:
            self._last_preview = now
            self.sink.send_bytes(self.client_id, frame)

    def node_done(self, prompt_id: str, node_id: str, ui: dict[str, Any] | None) -> None:
        if ui:
            data = {"node": node_id, "display_node": node_id, "output": json_safe(ui), "prompt_id": prompt_id}
            self._send("executed", data)

    def error(self, prompt_id: str, error: NodeError) -> None:
        data = {**error.to_comfy(prompt_id), "timestamp": now_ms()}
        self._record("execution_error", data)
        self.final = ("execution_error", data)

    def interrupted(self, prompt_id: str, node_id: str | None, executed: list[str]) -> None:
        data = {
            "prompt_id": prompt_id,
            "node_id": node_id,
            "node_type": self.class_types.get(node_id or "", None),
            "executed": list(executed),
            "timestamp": now_ms(),
        }
        self._record("execution_interrupted", data)
        self.final = ("execution_interrupted", data)

    def run_done(self, prompt_id: str, outputs: dict[str, dict[str, Any]]) -> None:
        data = {"prompt_id": prompt_id, "timestamp": now_ms()}
        self._record("execution_success", data)
        self.final = ("execution_success", data)

    def failed_before_running(self, node_id: str | None, node_type: str | None, exc_type: str, text: str,
                              traceback: list[str] | None = None) -> None:
        """The prompt could not start (no longer valid after a restart, or an engine fault)."""
        data = {
            "prompt_id": self.prompt_id, "node_id": node_id, "node_type": node_type, "executed": [],
            "exception_message": text, "exception_type": exc_type, "traceback": traceback or [],
            "current_inputs": {}, "current_outputs": {}, "timestamp": now_ms(),
        }
        self._record("execution_error", data)
        self.final = ("execution_error", data)

    def send_final(self) -> None:
        """After the history entry is written: the final event, then `executing` with node null."""
        if self.final is not None:
            self._send(*self.final)
        self._send("executing", {"node": None, "display_node": None, "prompt_id": self.prompt_id})
