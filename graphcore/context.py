"""What a running node may reach: its identity, progress reporting, interruption, folders."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphcore.events import ExecutionEvents

if TYPE_CHECKING:
    from graphcore.folders import Folders


class Interrupted(Exception):
    """Raised inside a run when the user asked to stop it."""


class InterruptFlag:
    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        self._event.clear()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Interrupted("interrupted by the user")


@dataclass
class NodeContext:
    node_id: str
    class_type: str
    prompt_id: str
    folders: Folders
    events: ExecutionEvents = field(default_factory=ExecutionEvents)
    interrupt: InterruptFlag = field(default_factory=InterruptFlag)
    # The API-format graph and the client's extra data ({"extra_pnginfo": {"workflow": ...}}), for
    # output nodes that embed them in files.
    prompt: dict[str, Any] = field(default_factory=dict)
    extra_data: dict[str, Any] = field(default_factory=dict)

    def progress(self, value: int, maximum: int, preview: Any | None = None) -> None:
        """Report progress (and optionally a preview image); stops the run if it was interrupted."""
        self.interrupt.check()
        self.events.progress(self.prompt_id, self.node_id, value, maximum, preview)

    def check_interrupt(self) -> None:
        self.interrupt.check()
