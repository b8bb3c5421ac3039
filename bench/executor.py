"""Engine overhead: validate + run of 10,000 trivial nodes as a chain and as a wide DAG, then the re-run
after changing one constant at the tail. Prints µs per node (goal < 50). Run: python bench/executor.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from engine_nodes import registry  # noqa: E402

from graphcore.executor import Executor  # noqa: E402
from graphcore.workflow import Workflow  # noqa: E402

N = 10_000


def chain_graph(n: int, tail_b: int = -1) -> dict:
    graph = {"0": {"class_type": "Number", "inputs": {"value": 1}}}
    for i in range(1, n - 1):
        graph[str(i)] = {"class_type": "Add", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    graph[str(n - 2)]["inputs"]["b"] = tail_b
    graph[str(n - 1)] = {"class_type": "Collect", "inputs": {"value": [str(n - 2), 0]}}
    return graph


def wide_graph(n: int, tail_b: int = -1) -> dict:
    """A root, n-3 independent adders reading it (different constants), a reducer chain, an output."""
    graph = {"root": {"class_type": "Number", "inputs": {"value": 1}}}
    width = (n - 2) // 2
    for i in range(width):
        graph[f"w{i}"] = {"class_type": "Add", "inputs": {"a": ["root", 0], "b": i}}
    previous = "w0"
    for i in range(1, width):
        graph[f"r{i}"] = {"class_type": "Add", "inputs": {"a": [previous, 0], "b": [f"w{i}", 0]}}
        previous = f"r{i}"
    graph[f"w{width - 1}"]["inputs"]["b"] = tail_b
    graph["out"] = {"class_type": "Collect", "inputs": {"value": [previous, 0]}}
    return graph


def measure_once(make) -> tuple[float, float, float, int, int]:
    executor = Executor(registry())
    graph = make(N)
    started = time.perf_counter()
    report = executor.validate(Workflow.from_api(graph))
    validated = time.perf_counter()
    assert report.ok, report.sentences()[:3]
    result = executor.execute(report.plan)
    ran = time.perf_counter()
    assert result.ok and len(result.executed) == len(graph)
    changed = make(N, tail_b=-7)
    again = time.perf_counter()
    report = executor.validate(Workflow.from_api(changed))
    result = executor.execute(report.plan)
    rerun = time.perf_counter()
    return validated - started, ran - validated, rerun - again, len(graph), len(result.executed)


def measure(name: str, make, rounds: int = 3) -> None:
    """Best of `rounds` fresh executors (the machine is shared: the minimum is the engine's own cost)."""
    sys.setrecursionlimit(100_000)
    runs = [measure_once(make) for _ in range(rounds)]
    validate, run, rerun = (min(r[i] for r in runs) for i in range(3))
    n, executed = runs[0][3], runs[0][4]
    print(
        f"{name:6s} {n} nodes: validate {1e6 * validate / n:6.1f} µs/node, run {1e6 * run / n:6.1f} µs/node, "
        f"total {1e6 * (validate + run) / n:6.1f} µs/node (goal < 50); re-run after one tail change: "
        f"{1e3 * rerun:7.1f} ms ({1e6 * rerun / n:5.1f} µs/node, {executed} nodes executed)"
    )


if __name__ == "__main__":
    measure("chain", chain_graph)
    measure("wide", wide_graph)
