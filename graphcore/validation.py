"""Validation of an API-format workflow against the registry: every problem collected at once.

Produces a `Plan` (what to run, in which order, with coerced constants under our input names) and a
list of `InputError`s that render to ComfyUI's 400 body or to sentences for the terminal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from graphcore import types
from graphcore.inputs import InputProblem
from graphcore.node import Node
from graphcore.registry import Registry
from graphcore.workflow import BadLink, Link, Workflow


@dataclass
class InputError:
    node_id: str
    class_type: str
    error_type: str
    message: str
    details: str = ""
    input_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_comfy(self) -> dict[str, Any]:
        extra = dict(self.extra)
        if self.input_name is not None:
            extra["input_name"] = self.input_name
        return {"type": self.error_type, "message": self.message, "details": self.details, "extra_info": extra}

    def sentence(self) -> str:
        where = f"node {self.node_id} ({self.class_type})"
        if self.input_name is not None:
            where += f", input '{self.input_name}'"
        details = f" — {self.details}" if self.details else ""
        return f"{where}: {self.message}{details}"


@dataclass
class PlannedNode:
    id: str
    cls: type[Node]
    class_type: str
    constants: dict[str, Any]
    links: dict[str, Link]

    @property
    def is_output(self) -> bool:
        return self.cls.output_node


@dataclass
class Plan:
    workflow: Workflow
    nodes: dict[str, PlannedNode]
    outputs: list[str]
    order: list[str]


@dataclass
class ValidationReport:
    plan: Plan | None
    errors: list[InputError] = field(default_factory=list)
    top_error: dict[str, Any] | None = None
    outputs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    workflow: Workflow | None = None

    @property
    def ok(self) -> bool:
        return self.plan is not None and not self.errors and self.top_error is None

    def to_comfy(self) -> dict[str, Any]:
        """ComfyUI's 400 body: {error: {type, message, details, extra_info}, node_errors: {...}}."""
        node_errors: dict[str, Any] = {}
        for err in self.errors:
            entry = node_errors.setdefault(
                err.node_id, {"errors": [], "dependent_outputs": [], "class_type": err.class_type}
            )
            entry["errors"].append(err.to_comfy())
        for node_id, entry in node_errors.items():
            entry["dependent_outputs"] = self._dependent_outputs(node_id)
        error = self.top_error or {
            "type": "prompt_outputs_failed_validation",
            "message": "Prompt outputs failed validation",
            "details": "",
            "extra_info": {},
        }
        return {"error": error, "node_errors": node_errors}

    def _dependent_outputs(self, node_id: str) -> list[str]:
        if self.workflow is None or node_id not in self.workflow.graph:
            return []
        downstream = nx.descendants(self.workflow.graph, node_id) | {node_id}
        return [out for out in self.outputs if out in downstream]

    def sentences(self) -> list[str]:
        lines = []
        if self.top_error and not self.errors:
            details = self.top_error.get("details")
            lines.append(self.top_error["message"] + (f": {details}" if details else ""))
        lines.extend(err.sentence() for err in self.errors)
        return lines


def _top(error_type: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": error_type, "message": message, "details": details, "extra_info": {}}


class _Validator:
    def __init__(self, workflow: Workflow, registry: Registry) -> None:
        self.workflow = workflow
        self.registry = registry
        self.errors: list[InputError] = []
        self.warnings: list[str] = []
        self.classes: dict[str, type[Node]] = {}
        self.renames: dict[str, dict[str, str]] = {}
        self.aliases: dict[str, Any] = {}

    def error(self, node_id: str, error_type: str, message: str, details: str = "", input_name=None, **extra):
        class_type = self.workflow.nodes[node_id].class_type or "?"
        self.errors.append(InputError(node_id, class_type, error_type, message, details, input_name, extra))

    def resolve_classes(self) -> None:
        for node_id, node in self.workflow.nodes.items():
            if node.class_type is None:
                self.error(node_id, "invalid_prompt", "This node has no class_type", f"Node ID '#{node_id}'")
                continue
            resolved = self.registry.resolve(node.class_type)
            if resolved is None:
                self.error(
                    node_id,
                    "invalid_prompt",
                    f"Cannot execute because node {node.class_type} does not exist.",
                    f"Node ID '#{node_id}'",
                )
                continue
            self.classes[node_id] = resolved.cls
            self.renames[node_id] = dict(resolved.renames)
            self.aliases[node_id] = resolved.alias

    def needed_nodes(self, outputs: list[str]) -> set[str]:
        needed: set[str] = set()
        stack = list(outputs)
        while stack:
            node_id = stack.pop()
            if node_id in needed:
                continue
            needed.add(node_id)
            for link in self.workflow.nodes[node_id].links().values():
                if link.node_id in self.workflow.nodes and link.node_id not in needed:
                    stack.append(link.node_id)
        return needed

    def output_type(self, link: Link) -> str | None:
        cls = self.classes.get(link.node_id)
        if cls is None or link.output_index >= len(cls.outputs):
            return None
        return cls.outputs[link.output_index].type

    def check_link(self, node_id: str, input_name: str, expected: str, link: Link) -> bool:
        source = self.workflow.nodes.get(link.node_id)
        if source is None:
            self.error(
                node_id, "bad_linked_input", f"Linked node {link.node_id} does not exist",
                f"{input_name}", input_name, received_value=link.to_json(),
            )
            return False
        cls = self.classes.get(link.node_id)
        if cls is None:
            return False  # the unknown source is reported on its own node
        if link.output_index >= len(cls.outputs):
            self.error(
                node_id, "bad_linked_input",
                f"Node {link.node_id} ({source.class_type}) has no output {link.output_index}; "
                f"it has {len(cls.outputs)}",
                f"{input_name}", input_name, received_value=link.to_json(),
            )
            return False
        received = cls.outputs[link.output_index].type
        if not types.types_compatible(received, expected):
            self.error(
                node_id, "return_type_mismatch", "Return type mismatch between linked nodes",
                f"{input_name}, received_type({received}) mismatch input_type({expected})", input_name,
                received_type=received, input_type=expected, linked_node=link.to_json(),
            )
            return False
        return True

    def plan_node(self, node_id: str) -> PlannedNode | None:
        node = self.workflow.nodes[node_id]
        cls = self.classes[node_id]
        renames = self.renames[node_id]
        alias = self.aliases[node_id]
        raw_inputs: dict[str, Any] = {}
        for their_name, value in node.inputs.items():
            our_name = renames.get(their_name, their_name)
            if (alias and their_name in alias.ignored) or their_name in cls.ignored_inputs:
                continue
            if our_name not in cls.inputs:
                self.warnings.append(f"node {node_id} ({node.class_type}): unknown input '{their_name}' ignored")
                continue
            raw_inputs[our_name] = value
        if alias:
            for name, value in alias.defaults.items():
                raw_inputs.setdefault(name, value)

        constants: dict[str, Any] = {}
        links: dict[str, Link] = {}
        errors_before = len(self.errors)
        for name, spec in cls.inputs.items():
            if name not in raw_inputs:
                if not spec.optional:
                    self.error(node_id, "required_input_missing", "Required input is missing", name, name)
                continue
            value = raw_inputs[name]
            if isinstance(value, BadLink):
                self.error(
                    node_id, "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    name, name, received_value=value.raw,
                )
            elif isinstance(value, Link):
                if self.check_link(node_id, name, spec.type_name, value):
                    links[name] = value
            else:
                try:
                    constants[name] = spec.coerce(value)
                except InputProblem as problem:
                    self.error(
                        node_id, problem.error_type, problem.message,
                        f"{name}: {problem.details}" if problem.details else name,
                        name, received_value=_jsonable(value),
                    )
        if len(self.errors) == errors_before:
            for input_name, message in cls.check(constants).items():
                self.error(node_id, "custom_validation_failed", message, input_name, input_name)
        if len(self.errors) != errors_before:
            return None
        return PlannedNode(node_id, cls, node.class_type or cls.type_name(), constants, links)

    def order(self, needed: set[str]) -> tuple[list[str], list[str] | None]:
        """Topological order of the needed nodes (Kahn), and a cycle among them if there is one."""
        graph = self.workflow.graph
        indegree = {n: sum(1 for p in graph.predecessors(n) if p in needed) for n in needed}
        ready = sorted((n for n, d in indegree.items() if d == 0), key=_natural, reverse=True)
        order: list[str] = []
        while ready:
            node_id = ready.pop()
            order.append(node_id)
            for child in graph.successors(node_id):
                if child in indegree:
                    indegree[child] -= 1
                    if indegree[child] == 0:
                        ready.append(child)
        if len(order) == len(needed):
            return order, None
        stuck = [n for n, d in indegree.items() if d > 0]
        cycle = nx.find_cycle(graph.subgraph(stuck))
        return order, [edge[0] for edge in cycle]


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)[:200]


def validate(workflow: Workflow, registry: Registry) -> ValidationReport:
    v = _Validator(workflow, registry)
    v.resolve_classes()
    outputs = [node_id for node_id, cls in v.classes.items() if cls.output_node]
    report = ValidationReport(plan=None, outputs=outputs, workflow=workflow, warnings=v.warnings)
    if not outputs:
        report.errors = v.errors
        report.top_error = _top("prompt_no_outputs", "Prompt has no outputs")
        return report
    needed = v.needed_nodes(outputs)
    planned: dict[str, PlannedNode] = {}
    for node_id in sorted(needed, key=_natural):
        if node_id in v.classes:
            node_plan = v.plan_node(node_id)
            if node_plan is not None:
                planned[node_id] = node_plan
    order, cycle = v.order(needed)
    if cycle:
        shown = " → ".join(cycle + [cycle[0]])
        v.error(cycle[0], "dependency_cycle", "Dependency cycle detected", f"cycle: {shown}", cycle=cycle)
    report.errors = v.errors
    if v.errors:
        unknown = [e for e in v.errors if e.error_type == "invalid_prompt"]
        if unknown and len(unknown) == len(v.errors):
            report.top_error = _top("invalid_prompt", unknown[0].message, unknown[0].details)
        return report
    report.plan = Plan(workflow=workflow, nodes=planned, outputs=outputs, order=order)
    return report


def _natural(node_id: str) -> tuple[int, int | str]:
    return (0, int(node_id)) if node_id.isdigit() else (1, node_id)
