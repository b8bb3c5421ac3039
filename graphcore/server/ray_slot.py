"""One Ray actor as the server sees it: a thread that starts the actor, runs the prompts the dispatcher
gives it, replays the actor's events into the server's `PromptEvents` (so the WebSocket and the history
are those of local mode), and handles the actor's death.

Death mid-prompt (killed process, out of memory, lost node): the prompt goes back to the queue, at its
place, once; the client gets an `execution_restarted` message and later a second `execution_start`. A
second death fails it with the reason. The dead actor is replaced by a fresh one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from graphcore.server import ray_files
from graphcore.server.prompt_events import PromptEvents, json_safe, message, now_ms
from graphcore.server.queue_store import Finished, QueuedPrompt
from graphcore.server.ray_routing import ActorLoad, ModelKey
from graphcore.server.ray_runner import error_from_dict

if TYPE_CHECKING:
    from graphcore.server.ray_pool import RayPool

log = logging.getLogger(__name__)
POLL_WAIT = 0.5  # seconds an actor holds a poll open waiting for events
POLL_GRACE = 30.0  # more than that without an answer: look whether the run itself failed
MAX_ATTEMPTS = 2  # runs of one prompt that may end in a worker's death (the second death fails it)
RESTART_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)


class WorkerDied(Exception):
    """The actor running a prompt is gone (its process was killed, ran out of memory, lost its node)."""


def _node_done(slot: ActorSlot, events: PromptEvents, node_id: str, ui: Any, files: list) -> None:
    slot.placer.place(files)
    events.node_done(events.prompt_id, node_id, slot.placer.rewrite(ui) if ui else ui)


# Actor event name → how it is replayed into the server's PromptEvents.
REPLAY: dict[str, Callable[..., None]] = {
    "run_start": lambda slot, ev: ev.run_start(ev.prompt_id),
    "nodes_cached": lambda slot, ev, node_ids: ev.nodes_cached(ev.prompt_id, node_ids),
    "node_start": lambda slot, ev, node_id: ev.node_start(ev.prompt_id, node_id),
    "progress": lambda slot, ev, node_id, value, maximum, preview: ev.progress(
        ev.prompt_id, node_id, value, maximum, preview),
    "node_done": _node_done,
    "error": lambda slot, ev, data: ev.error(ev.prompt_id, error_from_dict(data)),
    "interrupted": lambda slot, ev, node_id, executed: ev.interrupted(ev.prompt_id, node_id, executed),
    "run_done": lambda slot, ev: ev.run_done(ev.prompt_id, {}),
    "failed": lambda slot, ev, *details: ev.failed_before_running(*details),
}


class ActorSlot:
    def __init__(self, pool: RayPool, index: int) -> None:
        self.pool = pool
        self.key = f"ray-{index}"
        self.actor: Any = None
        self.info: dict[str, Any] = {}
        self.state = "starting"  # starting → idle ⇄ busy; stopped
        self.models: set[ModelKey] = set()
        self.runs = 0
        self.placer = ray_files.OutputPlacer(pool.folders)
        self.item: QueuedPrompt | None = None
        self.events: PromptEvents | None = None
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._main, name=f"diffgraph-{self.key}", daemon=True)

    # -- the dispatcher's side --------------------------------------------------------------------------

    def load(self) -> ActorLoad:
        return ActorLoad(self.key, self.state == "idle", set(self.models), self.runs)

    def assign(self, item: QueuedPrompt, expected_models: set[ModelKey]) -> None:
        with self.cond:
            self.item = item
            self.state = "busy"
            self.models |= expected_models
            self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    # -- the slot's thread --------------------------------------------------------------------------------

    def _main(self) -> None:
        failures = 0
        while not self.pool.stopping:
            if self.actor is None:
                if self._start_actor():
                    failures = 0
                else:
                    self._pause(RESTART_BACKOFF[min(failures, len(RESTART_BACKOFF) - 1)])
                    failures += 1
                    continue
            with self.cond:
                self.cond.wait_for(lambda: self.pool.stopping or self.item is not None,
                                   timeout=self.pool.options.idle_check)
                item = self.item
            if item is None:
                self._check_alive()
                continue
            try:
                self._serve(item)
            except Exception:  # the store failed (disk full, …): keep the thread
                log.exception("%s: could not run or finish prompt %s", self.key, item.prompt_id)
            with self.cond:
                self.item, self.events = None, None
                if self.state == "busy":
                    self.state = "idle"
            self.pool.wake()
        with self.cond:
            self.state = "stopped"

    def _pause(self, seconds: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.pool.stopping, timeout=seconds)

    def _start_actor(self) -> bool:
        ray = self.pool.ray
        handle = None
        try:
            handle = self.pool.new_actor(self.key)
            info = ray.get(handle.ping.remote(), timeout=self.pool.options.start_timeout)
        except Exception as exc:
            log.warning("%s: the actor did not start (%s); retrying", self.key, _first_line(exc))
            if handle is not None:
                self.pool.kill_actor(handle)
            return False
        with self.cond:
            self.actor, self.info = handle, info
            self.models, self.placer = set(), ray_files.OutputPlacer(self.pool.folders)
            self.state = "idle"
        log.info("%s: actor ready (pid %s on %s)", self.key, info.get("pid"), info.get("host"))
        self.pool.wake()
        return True

    def _check_alive(self) -> None:
        """An idle actor that died (its node went away) is replaced before a prompt is sent to it."""
        if self.pool.stopping or self.actor is None:
            return
        try:
            self.pool.ray.get(self.actor.ping.remote(), timeout=max(self.pool.options.idle_check, 5.0))
        except self.pool.death_errors as exc:
            log.warning("%s: the idle actor died (%s); starting a new one", self.key, _death_reason(exc))
            self._retire_actor()
        except Exception:  # slow to answer (busy node): it is not dead
            return

    def _retire_actor(self) -> None:
        with self.cond:
            handle, self.actor = self.actor, None
            self.state = "starting"
            self.models = set()
        if handle is not None:
            self.pool.kill_actor(handle)

    # -- one prompt --------------------------------------------------------------------------------------

    def _serve(self, item: QueuedPrompt) -> None:
        pool = self.pool
        class_types = {str(k): node.get("class_type") for k, node in item.prompt.items() if isinstance(node, dict)}
        events = PromptEvents(item.prompt_id, item.client_id, pool.sink, class_types,
                              pool.preview_interval, pool.preview_max_side)
        events.messages.extend(pool.earlier_attempts.pop(item.prompt_id, []))
        with self.cond:
            self.events = events
        try:
            job = {
                "prompt_id": item.prompt_id, "prompt": item.prompt, "extra_data": item.extra_data,
                "outputs_to_execute": item.outputs_to_execute,
                "files": ray_files.input_files(item.prompt, pool.registry, pool.folders),
            }
            summary = self._run_remote(job, events)
        except WorkerDied as exc:
            self._worker_died(item, events, str(exc))
            return
        except Exception as exc:  # the call itself failed (e.g. a value that cannot be sent): the prompt fails
            log.exception("%s: prompt %s could not run", self.key, item.prompt_id)
            events.failed_before_running(None, None, type(exc).__name__, _first_line(exc))
            self._finish(item, events, False, {})
            return
        if summary["status"] == "interrupted" and pool.stopping:
            pool.store.requeue(item.prompt_id)  # the server is stopping: run it again after the restart
            return
        self.runs += 1
        self.models = {tuple(key) for key in summary["models"]}
        outputs = json_safe(self.placer.rewrite_outputs(summary["outputs"]))
        self._finish(item, events, summary["status"] == "success", outputs)

    def _run_remote(self, job: dict[str, Any], events: PromptEvents) -> dict[str, Any]:
        ray = self.pool.ray
        dead = self.pool.death_errors
        prompt_id = job["prompt_id"]
        try:
            run_ref = self.actor.run.remote(job)
            cursor = 0
            while True:
                try:
                    batch = ray.get(self.actor.poll.remote(prompt_id, cursor, POLL_WAIT),
                                    timeout=POLL_WAIT + POLL_GRACE)
                except ray.exceptions.GetTimeoutError:
                    ready, _ = ray.wait([run_ref], timeout=0)
                    if ready:
                        ray.get(run_ref)  # raises if the run died
                    continue
                for name, *arguments in batch["events"]:
                    REPLAY[name](self, events, *arguments)
                cursor = batch["cursor"]
                if batch["done"]:
                    return ray.get(run_ref)
        except dead as exc:
            raise WorkerDied(f"{self.key} (pid {self.info.get('pid')} on {self.info.get('host')}): "
                             f"{_death_reason(exc)}") from exc

    def _worker_died(self, item: QueuedPrompt, events: PromptEvents, reason: str) -> None:
        pool = self.pool
        log.warning("prompt %s: its worker died: %s", item.prompt_id, reason)
        self._retire_actor()
        if pool.stopping:
            pool.store.requeue(item.prompt_id)
            return
        if item.attempts < MAX_ATTEMPTS:
            data = {"prompt_id": item.prompt_id, "reason": reason, "attempt": item.attempts + 1,
                    "timestamp": now_ms()}
            pool.earlier_attempts[item.prompt_id] = [*events.messages, ["execution_restarted", data]]
            pool.store.requeue_after_failure(item.prompt_id)
            if item.client_id is not None and pool.sink.wants(item.client_id):
                pool.sink.send_text(item.client_id, message("execution_restarted", data))
            return
        node_id = events.current_node
        events.failed_before_running(
            node_id, events.class_types.get(node_id or ""), "WorkerDied",
            f"the worker running this prompt died {item.attempts} times; the last time: {reason}",
        )
        self._finish(item, events, False, {})

    def _finish(self, item: QueuedPrompt, events: PromptEvents, ok: bool, outputs: dict[str, Any]) -> None:
        meta = {
            node_id: {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
            for node_id in outputs
        }
        finished = Finished("success" if ok else "error", ok, outputs, json_safe(events.messages), meta)
        try:
            self.pool.store.finish(item.prompt_id, finished)
        finally:
            events.send_final()
            self.pool.on_finished(item.prompt_id)


def _death_reason(exc: BaseException) -> str:
    """Ray's first sentence and its worker exit detail (its long advice paragraph left out)."""
    text = str(exc)
    detail = re.search(r"Worker exit detail: (.+?\.)(\s|$)", text)
    return _first_line(exc) + (f" {detail[1]}" if detail else "")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True
