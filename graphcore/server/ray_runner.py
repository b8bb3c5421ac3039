"""What runs inside one Ray actor: its own executor, output cache and loaded models, one prompt at a time.

No Ray import here: the pool wraps `PromptRunner` with `ray.remote(max_concurrency=…)`, so `interrupt`,
`poll`, `free` and `stats` are answered while `run` executes. The same class works in-process (tests).

A run records its events in order (previews already thumbnailed and thinned, saved files attached to
their `node_done`); the server long-polls them and replays them into its own `PromptEvents`, so the
WebSocket messages and the history are those of local mode.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphcore import folders as folder_config
from graphcore import hooks
from graphcore.cache import OutputCache
from graphcore.context import InterruptFlag
from graphcore.events import ExecutionEvents, NodeError
from graphcore.executor import Executor
from graphcore.folders import Folders
from graphcore.registry import Registry
from graphcore.server import ray_files
from graphcore.server.prompt_events import json_safe
from graphcore.server.ray_routing import ModelKey, model_needs
from graphcore.workflow import Workflow

log = logging.getLogger(__name__)
MAX_REMEMBERED_MODELS = 16
Event = tuple[Any, ...]  # (name, *arguments) as the server's replay table expects them


@dataclass
class RunnerSettings:
    name: str
    node_classes: list[type]
    models_dir: str  # the shared models folder, at the same path on every worker
    extra_model_roots: dict[str, list[str]] = field(default_factory=dict)
    preview_interval: float = 0.1
    preview_max_side: int = 512


@dataclass
class _Job:
    prompt_id: str
    flag: InterruptFlag = field(default_factory=InterruptFlag)
    events: list[Event] = field(default_factory=list)
    done: bool = False


class _Recorder(ExecutionEvents):
    """Engine events as plain picklable tuples, in order."""

    def __init__(self, runner: PromptRunner, job: _Job) -> None:
        self.runner = runner
        self.job = job
        self._last_preview = -float("inf")

    def add(self, *event: Any) -> None:
        self.runner._append(self.job, event)

    def run_start(self, prompt_id):
        self.add("run_start")

    def nodes_cached(self, prompt_id, node_ids):
        self.add("nodes_cached", list(node_ids))

    def node_start(self, prompt_id, node_id):
        self.add("node_start", node_id)

    def progress(self, prompt_id, node_id, value, maximum, preview=None):
        self.add("progress", node_id, value, maximum, self._thumbnail(preview, value, maximum))

    def node_done(self, prompt_id, node_id, ui):
        ui = json_safe(ui) if ui else None
        files = ray_files.collect_outputs(self.runner.folders, ui, self.runner.shipped) if ui else []
        self.runner.shipped_now.extend(ray_files.entry_key(entry) for entry in ray_files.file_entries(ui))
        self.add("node_done", node_id, ui, files)

    def error(self, prompt_id, error):
        self.add("error", json_safe(dataclasses.asdict(error)))

    def interrupted(self, prompt_id, node_id, executed):
        self.add("interrupted", node_id, list(executed))

    def run_done(self, prompt_id, outputs):
        self.add("run_done")

    def failed(self, node_id: str | None, node_type: str | None, exc_type: str, text: str,
               tb: list[str] | None = None) -> None:
        self.add("failed", node_id, node_type, exc_type, text, tb or [])

    def _thumbnail(self, preview: Any, value: int, maximum: int) -> Any:
        if preview is None or not all(hasattr(preview, a) for a in ("save", "size", "copy", "thumbnail")):
            return None
        now = time.monotonic()
        if now - self._last_preview < self.runner.settings.preview_interval and value < maximum:
            return None
        self._last_preview = now
        picture = preview.copy()
        side = self.runner.settings.preview_max_side
        picture.thumbnail((side, side))
        return picture


class PromptRunner:
    def __init__(self, settings: RunnerSettings) -> None:
        self.settings = settings
        self.scratch = Path(tempfile.mkdtemp(prefix="diffgraph-worker-"))
        self.folders = Folders(
            models_dir=Path(settings.models_dir),
            input_dir=self.scratch / "input",
            output_dir=self.scratch / "output",
            temp_dir=self.scratch / "temp",
            extra_roots={kind: [Path(p) for p in paths] for kind, paths in settings.extra_model_roots.items()},
        )
        for path in (self.folders.input_dir, self.folders.output_dir, self.folders.temp_dir):
            path.mkdir(parents=True, exist_ok=True)
        folder_config.configure(self.folders)  # nodes list and resolve files through the process-wide folders
        self.registry = Registry().add_all(settings.node_classes)
        self.executor = Executor(self.registry, cache=OutputCache(), folders=self.folders)
        self.executor.memory_pressure_hooks.append(self._after_out_of_memory)
        self.models: dict[ModelKey, None] = {}  # insertion order = least recently used first
        self.shipped: dict[ray_files.FileKey, None] = {}
        self.shipped_now: list[ray_files.FileKey] = []
        self.prompts = 0
        self._run_lock = threading.Lock()
        self._cond = threading.Condition()
        self._job: _Job | None = None
        self._free_request = (False, False)
        self._early_interrupts: set[str] = set()

    # -- called by the server -----------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"name": self.settings.name, "pid": os.getpid(), "host": socket.gethostname()}

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one prompt (`prompt_id`, `prompt`, `extra_data`, `outputs_to_execute`, `files`); the events go
        to `poll`. Returns the outputs, the status and the models this actor now holds."""
        with self._run_lock:
            current = _Job(job["prompt_id"])
            with self._cond:
                self._job = current
                if job["prompt_id"] in self._early_interrupts:
                    self._early_interrupts.discard(job["prompt_id"])
                    current.flag.set()
                self._cond.notify_all()
            self._apply_free()
            recorder = _Recorder(self, current)
            written: list[Path] = []
            self.shipped_now = []
            status, outputs = "error", {}
            try:
                written = ray_files.write_files(self.folders, job.get("files", []))
                status, outputs = self._execute(job, recorder, current.flag)
            except Exception as exc:  # a fault outside any node: the prompt fails, the actor lives
                log.exception("prompt %s failed outside its nodes", job["prompt_id"])
                recorder.failed(None, None, type(exc).__name__, str(exc) or type(exc).__name__,
                                traceback.format_exception(type(exc), exc, exc.__traceback__))
            finally:
                for path in written:
                    path.unlink(missing_ok=True)
                ray_files.empty_shipped(self.folders, self.shipped_now)
                self.prompts += 1
                with self._cond:
                    current.done = True
                    self._cond.notify_all()
                self._apply_free()
            return {"status": status, "outputs": outputs, "models": list(self.models), "prompts": self.prompts}

    def poll(self, prompt_id: str, cursor: int, wait: float = 0.5) -> dict[str, Any]:
        """The run's events from `cursor` on, waiting up to `wait` seconds for one; `done` after the last."""
        deadline = time.monotonic() + wait
        with self._cond:
            while True:
                job = self._job
                if job is not None and job.prompt_id == prompt_id and (len(job.events) > cursor or job.done):
                    return {"events": job.events[cursor:], "cursor": len(job.events), "done": job.done}
                remaining = deadline - time.monotonic()
                if remaining <= 0:  # nothing new (or the run has not started yet)
                    return {"events": [], "cursor": cursor, "done": False}
                self._cond.wait(remaining)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        with self._cond:
            job = self._job
            if prompt_id is not None and (job is None or job.prompt_id != prompt_id):
                # Sent while the run call is still on its way: it starts interrupted.
                if len(self._early_interrupts) < 1024:
                    self._early_interrupts.add(prompt_id)
                return False
            if job is None or job.done:
                return False
            job.flag.set()
            return True

    def free(self, unload_models: bool, free_memory: bool) -> None:
        """Now when idle, else right after the running prompt."""
        with self._cond:
            self._free_request = (self._free_request[0] or unload_models, self._free_request[1] or free_memory)
        if self._run_lock.acquire(blocking=False):
            try:
                self._apply_free()
            finally:
                self._run_lock.release()

    def stats(self) -> dict[str, Any]:
        return {**self.ping(), "models": list(self.models), "prompts": self.prompts,
                "cache_entries": len(self.executor.cache), "devices": hooks.device_stats()}

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run a function in this actor's process (diagnostics, tests, benchmarks)."""
        return fn()

    def close(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- inside ---------------------------------------------------------------------------------------------

    def _append(self, job: _Job, event: Event) -> None:
        with self._cond:
            job.events.append(event)
            self._cond.notify_all()

    def _execute(self, job: dict[str, Any], recorder: _Recorder, flag: InterruptFlag) -> tuple[str, dict]:
        prompt = job["prompt"]
        needs = model_needs(prompt, self.registry)
        missing = self._missing_model(prompt, needs)
        if missing is not None:
            recorder.failed(*missing)
            return "error", {}
        report = self.executor.validate(Workflow.from_api(prompt))
        if not report.ok or report.plan is None:
            first = report.errors[0] if report.errors else None
            recorder.failed(first.node_id if first else None, first.class_type if first else None,
                            "ValidationError", "; ".join(report.sentences()) or "the prompt is not valid here")
            return "error", {}
        plan = report.plan
        targets = [node_id for node_id in job.get("outputs_to_execute", []) if node_id in plan.outputs]
        if targets:
            plan = dataclasses.replace(plan, outputs=targets)
        result = self.executor.execute(plan, prompt_id=job["prompt_id"], events=recorder, interrupt=flag,
                                       extra_data=job.get("extra_data") or {})
        if result.ok:
            for key in needs:
                self.models.pop(key, None)
                self.models[key] = None
            while len(self.models) > MAX_REMEMBERED_MODELS:
                del self.models[next(iter(self.models))]
        return result.status, json_safe(result.outputs)

    def _missing_model(self, prompt: dict[str, Any], needs: frozenset[ModelKey]) -> tuple | None:
        """(node_id, class_type, type, message) for the first model file this worker cannot see."""
        for kind, name in sorted(needs):
            try:
                self.folders.resolve_model(kind, name)
            except (FileNotFoundError, KeyError, ValueError):
                node_id, class_type = _node_naming(prompt, name)
                roots = ", ".join(str(root) for root in self.folders.model_roots(kind))
                return (node_id, class_type, "ModelFileMissing",
                        f"worker {self.settings.name} on {socket.gethostname()} has no {kind} file {name!r} "
                        f"(looked in {roots}); every worker must see the models folder at the same path "
                        "(see docs/scale-out.md)")
        return None

    def _apply_free(self) -> None:
        with self._cond:
            unload_models, free_memory = self._free_request
            self._free_request = (False, False)
        if free_memory:
            self.executor.cache.clear()
            self.shipped.clear()  # no cached result names those files any more
        if unload_models or free_memory:
            hooks.free(unload_models, free_memory)
        if unload_models:
            self.models.clear()

    def _after_out_of_memory(self) -> None:
        hooks.free(True, True)
        self.models.clear()


def _node_naming(prompt: dict[str, Any], value: str) -> tuple[str | None, str | None]:
    for node_id, node in prompt.items():
        if isinstance(node, dict) and value in (node.get("inputs") or {}).values():
            return str(node_id), node.get("class_type")
    return None, None


def error_from_dict(data: dict[str, Any]) -> NodeError:
    known = {f.name for f in dataclasses.fields(NodeError)}
    return NodeError(**{key: value for key, value in data.items() if key in known})
