"""The worker pool behind the queue: one execution thread per device, each with its own executor and cache.

The event loop never runs a prompt: workers claim prompts from the store, execute them, write the
history entry, and report through the `EventSink`. A failing, interrupted or crashing prompt ends as
a history entry; the worker goes on with the next one.

`WorkerPool` is the interface the server uses, so another pool (e.g. one on a cluster) can replace the
in-process `LocalPool`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from graphcore import hooks
from graphcore.cache import OutputCache
from graphcore.context import InterruptFlag
from graphcore.executor import Executor, RunResult
from graphcore.folders import Folders
from graphcore.registry import Registry
from graphcore.server.prompt_events import EventSink, PromptEvents, json_safe
from graphcore.server.queue_store import Finished, QueuedPrompt, QueueStore
from graphcore.workflow import Workflow

log = logging.getLogger(__name__)


class WorkerPool(Protocol):
    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def wake(self) -> None:
        """New prompts are in the store."""

    def interrupt(self, prompt_id: str | None = None) -> list[str]:
        """Stop the running prompt `prompt_id` (every running prompt when None); returns the ids stopped."""

    def running(self) -> dict[str, tuple[str | None, str | None]]:
        """prompt_id → (client_id, node running now) for every running prompt."""

    def request_free(self, unload_models: bool, free_memory: bool) -> None: ...


@dataclass
class _Running:
    prompt_id: str
    client_id: str | None
    flag: InterruptFlag
    events: PromptEvents | None = None


class LocalPool:
    def __init__(
        self,
        store: QueueStore,
        registry: Registry,
        folders: Folders,
        sink: EventSink,
        on_finished: Callable[[str], None] = lambda prompt_id: None,
        devices: Sequence[str] = ("default",),
        preview_interval: float = 0.1,
        preview_max_side: int = 512,
    ) -> None:
        self.store = store
        self.registry = registry
        self.folders = folders
        self.sink = sink
        self.on_finished = on_finished
        self.preview_interval = preview_interval
        self.preview_max_side = preview_max_side
        self.lock = threading.Lock()  # claim + current prompt, against interrupts
        self.cond = threading.Condition()
        self.generation = 0
        self.idle = 0  # workers waiting for work
        self.stopping = False
        self.workers = [_Worker(self, name) for name in devices]

    def start(self) -> None:
        for worker in self.workers:
            worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.interrupt(None)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def wake(self) -> None:
        with self.cond:
            self.generation += 1
            if self.idle:  # busy workers look for the next prompt anyway
                self.cond.notify_all()

    def interrupt(self, prompt_id: str | None = None) -> list[str]:
        stopped = []
        with self.lock:
            for worker in self.workers:
                current = worker.current
                if current is not None and (prompt_id is None or current.prompt_id == prompt_id):
                    current.flag.set()
                    stopped.append(current.prompt_id)
        return stopped

    def running(self) -> dict[str, tuple[str | None, str | None]]:
        with self.lock:
            currents = [w.current for w in self.workers if w.current is not None]
        return {c.prompt_id: (c.client_id, c.events.current_node if c.events else None) for c in currents}

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        with self.cond:
            for worker in self.workers:
                worker.free_request = (
                    worker.free_request[0] or unload_models, worker.free_request[1] or free_memory
                )
            self.generation += 1
            self.cond.notify_all()


class _Worker(threading.Thread):
    def __init__(self, pool: LocalPool, device: str) -> None:
        super().__init__(name=f"diffgraph-worker-{device}", daemon=True)
        self.pool = pool
        self.device = device
        self.executor = Executor(pool.registry, cache=OutputCache(), folders=pool.folders)
        # Out of memory in a node: the executor clears its cache, then this unloads models.
        self.executor.memory_pressure_hooks.append(lambda: hooks.free(True, True))
        self.current: _Running | None = None
        self.free_request = (False, False)

    def run(self) -> None:
        pool = self.pool
        while True:
            with pool.cond:
                if pool.stopping:
                    return
                generation = pool.generation
            try:
                self._apply_free()
                with pool.lock:
                    item = pool.store.claim(self.device)
                    if item is not None:
                        self.current = _Running(item.prompt_id, item.client_id, InterruptFlag())
                if item is not None:
                    self._run(item)
                    continue
            except Exception:  # the store failed (disk full, …): keep the thread, retry later
                log.exception("worker %s: could not take or finish a prompt", self.device)
                self.current = None
                time.sleep(1.0)
            with pool.cond:
                pool.idle += 1
                pool.cond.wait_for(lambda gen=generation: pool.stopping or pool.generation != gen, timeout=5.0)
                pool.idle -= 1

    def _apply_free(self) -> None:
        with self.pool.cond:
            unload_models, free_memory = self.free_request
            self.free_request = (False, False)
        if free_memory:
            self.executor.cache.clear()
        if unload_models or free_memory:
            hooks.free(unload_models, free_memory)

    def _run(self, item: QueuedPrompt) -> None:
        pool = self.pool
        current = self.current
        assert current is not None
        class_types = {
            str(node_id): node.get("class_type") for node_id, node in item.prompt.items() if isinstance(node, dict)
        }
        events = PromptEvents(
            item.prompt_id, item.client_id, pool.sink, class_types, pool.preview_interval, pool.preview_max_side
        )
        current.events = events
        result = self._execute(item, events, current.flag)
        if result is not None and result.status == "interrupted" and pool.stopping:
            pool.store.requeue(item.prompt_id)  # the server is stopping: run it again after the restart
            with pool.lock:
                self.current = None
            return
        ok = result is not None and result.ok
        outputs = json_safe(result.outputs) if result is not None else {}
        meta = {
            node_id: {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
            for node_id in outputs
        }
        finished = Finished("success" if ok else "error", ok, outputs, json_safe(events.messages), meta)
        try:
            pool.store.finish(item.prompt_id, finished)
        finally:
            with pool.lock:
                self.current = None
            events.send_final()
            pool.on_finished(item.prompt_id)

    def _execute(self, item: QueuedPrompt, events: PromptEvents, flag: InterruptFlag) -> RunResult | None:
        try:
            report = self.executor.validate(Workflow.from_api(item.prompt))
            if not report.ok or report.plan is None:
                # Valid when queued, not any more (e.g. a model file was removed before a restart).
                first = report.errors[0] if report.errors else None
                events.failed_before_running(
                    first.node_id if first else None, first.class_type if first else None,
                    "ValidationError", "; ".join(report.sentences()) or "the prompt is no longer valid",
                )
                return None
            plan = report.plan
            targets = [node_id for node_id in item.outputs_to_execute if node_id in plan.outputs]
            if targets:
                plan = dataclasses.replace(plan, outputs=targets)
            return self.executor.execute(
                plan, prompt_id=item.prompt_id, events=events, interrupt=flag, extra_data=item.extra_data
            )
        except Exception as exc:  # a fault outside any node (engine bug): the prompt fails, the worker lives
            log.exception("prompt %s failed outside its nodes", item.prompt_id)
            events.failed_before_running(
                None, None, type(exc).__name__, str(exc) or type(exc).__name__,
                traceback.format_exception(type(exc), exc, exc.__traceback__),
            )
            return None

