"""Runs a validated plan: topological order, cached outputs reused, outputs freed after their last use.

A node's signature is a hash of its class, its constants, its fingerprint and the signatures of the
nodes feeding it — never its id — so identical sub-chains share one cache entry and a changed widget
re-runs exactly that node and what depends on it.
"""

from __future__ import annotations

import hashlib
import secrets
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphcore.cache import OutputCache
from graphcore.context import Interrupted, InterruptFlag, NodeContext
from graphcore.events import ExecutionEvents, NodeError
from graphcore.folders import Folders, current
from graphcore.node import Node, Result
from graphcore.registry import Registry
from graphcore.validation import Plan, ValidationReport, validate
from graphcore.workflow import Workflow

_DEFAULT_FINGERPRINT = Node.fingerprint.__func__


class WorkflowInvalid(Exception):
    def __init__(self, report: ValidationReport) -> None:
        super().__init__("\n".join(report.sentences()))
        self.report = report


@dataclass
class RunResult:
    prompt_id: str
    status: str  # "success" | "error" | "interrupted"
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    error: NodeError | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"


def _type_name(exc_type: type) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module in ("builtins", None) else f"{module}.{exc_type.__qualname__}"


def _short(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else type(value).__name__
    return text[:200]


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "OutOfMemory" in type(exc).__name__


class Executor:
    def __init__(
        self,
        registry: Registry,
        cache: OutputCache | None = None,
        folders: Folders | None = None,
    ) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self._folders = folders
        # Called on out-of-memory, after the output cache is cleared (e.g. to unload models).
        self.memory_pressure_hooks: list[Callable[[], None]] = []

    @property
    def folders(self) -> Folders:
        return self._folders or current()

    def validate(self, workflow: Workflow | dict) -> ValidationReport:
        if not isinstance(workflow, Workflow):
            workflow = Workflow.from_api(workflow)
        return validate(workflow, self.registry)

    def run(self, workflow: Workflow | dict, **kwargs: Any) -> RunResult:
        """Validate, then execute; raises WorkflowInvalid with every problem found."""
        report = self.validate(workflow)
        if not report.ok:
            raise WorkflowInvalid(report)
        assert report.plan is not None
        return self.execute(report.plan, **kwargs)

    def signatures(self, plan: Plan) -> dict[str, bytes]:
        run_token = secrets.token_bytes(8)
        sigs: dict[str, bytes] = {}
        for node_id in plan.order:
            node = plan.nodes[node_id]
            h = hashlib.blake2b(node.cls.type_name().encode(), digest_size=16)
            for name in sorted(node.constants):
                h.update(f"\x00{name}={type(node.constants[name]).__name__}:{node.constants[name]!r}".encode())
            for name in sorted(node.links):
                link = node.links[name]
                h.update(f"\x01{name}={link.output_index}:".encode())
                h.update(sigs[link.node_id])
            if node.cls.fingerprint.__func__ is not _DEFAULT_FINGERPRINT:
                h.update(b"\x02" + repr(node.cls.fingerprint(node.constants)).encode())
            if node.cls.not_deterministic:
                h.update(run_token)
            sigs[node_id] = h.digest()
        return sigs

    def execute(
        self,
        plan: Plan,
        *,
        prompt_id: str = "",
        events: ExecutionEvents | None = None,
        interrupt: InterruptFlag | None = None,
        extra_data: dict[str, Any] | None = None,
    ) -> RunResult:
        events = events or ExecutionEvents()
        interrupt = interrupt or InterruptFlag()
        result = RunResult(prompt_id, "success")
        api_prompt = plan.workflow.to_api()
        events.run_start(prompt_id)
        try:
            sigs = self.signatures(plan)
        except Exception as exc:  # a fingerprint failed (e.g. a file vanished): report on that node
            failing = _failing_fingerprint(plan)
            return self._fail(result, events, plan, failing, exc, {})

        values: dict[str, tuple[Any, ...]] = {}
        to_run: set[str] = set()
        cached: list[str] = []
        pinned: list[bytes] = []
        # A node whose signature equals another's in this run shares that node's outputs.
        owner_of_sig: dict[bytes, str] = {}
        same_as: dict[str, str] = {}
        stack = list(plan.outputs)
        while stack:
            node_id = stack.pop()
            if node_id in same_as or node_id in values or node_id in to_run:
                continue
            sig = sigs[node_id]
            owner = owner_of_sig.setdefault(sig, node_id)
            if owner != node_id:
                same_as[node_id] = owner
                cached.append(node_id)
                continue
            entry = self.cache.get(sig)
            if entry is not None:
                self.cache.pin(sig)
                pinned.append(sig)
                values[node_id] = entry.outputs
                cached.append(node_id)
                if entry.ui and plan.nodes[node_id].is_output:
                    result.outputs[node_id] = entry.ui
                continue
            to_run.add(node_id)
            stack.extend(link.node_id for link in plan.nodes[node_id].links.values())
        for node_id, owner in same_as.items():
            if owner in result.outputs and plan.nodes[node_id].is_output:
                result.outputs[node_id] = result.outputs[owner]

        def source(node_id: str) -> str:
            return same_as.get(node_id, node_id)

        order = [node_id for node_id in plan.order if node_id in to_run]
        remaining: dict[str, int] = {}
        for node_id in order:
            for link in plan.nodes[node_id].links.values():
                remaining[source(link.node_id)] = remaining.get(source(link.node_id), 0) + 1
        # Like ComfyUI, report every node whose output is cached, also above the nodes the walk stopped at.
        cached_set = set(cached)
        cached.extend(n for n in plan.order if n not in cached_set and n not in to_run and sigs[n] in self.cache)
        position = {node_id: i for i, node_id in enumerate(plan.order)}
        result.cached = sorted(cached, key=position.__getitem__)
        events.nodes_cached(prompt_id, result.cached)
        for node_id in result.cached:
            if node_id in result.outputs:
                events.node_done(prompt_id, node_id, result.outputs[node_id])

        try:
            for node_id in order:
                if interrupt.is_set():
                    events.interrupted(prompt_id, node_id, list(result.executed))
                    result.status = "interrupted"
                    return result
                node = plan.nodes[node_id]
                kwargs = dict(node.constants)
                for name, link in node.links.items():
                    kwargs[name] = values[source(link.node_id)][link.output_index]
                events.node_start(prompt_id, node_id)
                ctx = NodeContext(
                    node_id=node_id,
                    class_type=node.class_type,
                    prompt_id=prompt_id,
                    folders=self.folders,
                    events=events,
                    interrupt=interrupt,
                    prompt=api_prompt,
                    extra_data=extra_data or {},
                )
                try:
                    outputs, ui = self._call(node.cls, ctx, kwargs)
                except Interrupted:
                    events.interrupted(prompt_id, node_id, list(result.executed))
                    result.status = "interrupted"
                    return result
                except Exception as exc:
                    return self._fail(result, events, plan, node_id, exc, kwargs)
                del kwargs
                values[node_id] = outputs
                self.cache.put(sigs[node_id], outputs, ui)
                result.executed.append(node_id)
                if ui:
                    result.outputs[node_id] = ui
                    for twin, owner in same_as.items():
                        if owner == node_id and plan.nodes[twin].is_output:
                            result.outputs[twin] = ui
                events.node_done(prompt_id, node_id, ui)
                for link in node.links.values():
                    upstream = source(link.node_id)
                    remaining[upstream] -= 1
                    if remaining[upstream] == 0:
                        values.pop(upstream, None)
                if not remaining.get(node_id):
                    values.pop(node_id, None)
        finally:
            for key in pinned:
                self.cache.unpin(key)
        events.run_done(prompt_id, result.outputs)
        return result

    @staticmethod
    def _call(cls: type, ctx: NodeContext, kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict | None]:
        returned = cls().run(ctx, **kwargs)
        if isinstance(returned, Result):
            outputs, ui = tuple(returned.outputs), returned.ui
        elif isinstance(returned, tuple):
            outputs, ui = returned, None
        else:
            raise TypeError(f"{cls.__name__}.run returned {type(returned).__name__}, expected a tuple or Result")
        if len(outputs) != len(cls.outputs):
            raise TypeError(f"{cls.__name__}.run returned {len(outputs)} outputs, declared {len(cls.outputs)}")
        return outputs, ui

    def _fail(
        self, result: RunResult, events: ExecutionEvents, plan: Plan, node_id: str, exc: Exception, kwargs: dict
    ) -> RunResult:
        if is_out_of_memory(exc):
            self.cache.clear()
            for hook in self.memory_pressure_hooks:
                hook()
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        node = plan.nodes.get(node_id)
        error = NodeError(
            node_id=node_id,
            node_type=node.class_type if node else "?",
            exception_message=str(exc) or type(exc).__name__,
            exception_type=_type_name(type(exc)),
            traceback=tb,
            executed=list(result.executed),
            current_inputs={k: _short(v) for k, v in kwargs.items()},
        )
        result.status = "error"
        result.error = error
        events.error(result.prompt_id, error)
        return result


def _failing_fingerprint(plan: Plan) -> str:
    for node_id in plan.order:
        node = plan.nodes[node_id]
        try:
            node.cls.fingerprint(node.constants)
        except Exception:
            return node_id
    return plan.order[0] if plan.order else ""
