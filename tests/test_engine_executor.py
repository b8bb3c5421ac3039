"""Execution: order, caching by signature, LRU budgets, non-determinism, interruption, errors."""

from __future__ import annotations

import pytest
from engine_nodes import BLOBS, MADE, RUNS, registry

from graphcore.cache import OutputCache
from graphcore.context import InterruptFlag
from graphcore.events import RecordingEvents
from graphcore.executor import Executor, WorkflowInvalid


@pytest.fixture(autouse=True)
def reset_runs():
    RUNS.clear()
    BLOBS.clear()


def chain(a=1, b=2, factor=2.0):
    return {
        "1": {"class_type": "Number", "inputs": {"value": a}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": b}},
        "3": {"class_type": "Scale", "inputs": {"value": ["2", 0], "factor": factor, "enabled": True}},
        "4": {"class_type": "Collect", "inputs": {"value": ["3", 0]}},
    }


def test_runs_in_topological_order_and_returns_ui():
    events = RecordingEvents()
    result = Executor(registry()).run(chain(), prompt_id="p1", events=events)
    assert result.ok
    assert result.executed == ["1", "2", "3", "4"]
    assert result.outputs == {"4": {"values": [6.0], "label": ["out"]}}
    started = [p for name, p in events.events if name == "node_start"]
    assert started == ["1", "2", "3", "4"]
    assert events.names()[0] == "run_start" and events.names()[-1] == "run_done"


def test_only_nodes_feeding_outputs_run():
    graph = chain()
    graph["9"] = {"class_type": "Text", "inputs": {"text": "unused", "mode": "keep"}}
    result = Executor(registry()).run(graph)
    assert "9" not in result.executed and RUNS["Text"] == 0


def test_rerun_unchanged_runs_nothing_and_reports_cached_outputs():
    ex = Executor(registry())
    ex.run(chain())
    RUNS.clear()
    events = RecordingEvents()
    result = ex.run(chain(), events=events)
    assert sum(RUNS.values()) == 0
    assert result.executed == []
    assert result.outputs == {"4": {"values": [6.0], "label": ["out"]}}
    assert ("nodes_cached", ["1", "2", "3", "4"]) in events.events  # every cached node, as ComfyUI reports
    assert ("node_done", ("4", {"values": [6.0], "label": ["out"]})) in events.events


def test_changed_constant_reruns_exactly_that_node_and_descendants():
    ex = Executor(registry())
    ex.run(chain(factor=2.0))
    RUNS.clear()
    result = ex.run(chain(factor=3.0))
    assert result.executed == ["3", "4"]
    assert RUNS == {"Scale": 1, "Collect": 1}
    assert result.outputs["4"]["values"] == [9.0]
    RUNS.clear()
    result = ex.run(chain(b=5, factor=3.0))
    assert result.executed == ["2", "3", "4"]


def test_identical_subchains_are_computed_once_whatever_their_ids():
    graph = {
        "a1": {"class_type": "Number", "inputs": {"value": 3}},
        "a2": {"class_type": "Add", "inputs": {"a": ["a1", 0], "b": 1}},
        "b1": {"class_type": "Number", "inputs": {"value": 3}},
        "b2": {"class_type": "Add", "inputs": {"a": ["b1", 0], "b": 1}},
        "sum": {"class_type": "Add", "inputs": {"a": ["a2", 0], "b": ["b2", 0]}},
        "out": {"class_type": "Collect", "inputs": {"value": ["sum", 0]}},
    }
    result = Executor(registry()).run(graph)
    assert result.outputs["out"]["values"] == [8]
    assert RUNS["Number"] == 1 and RUNS["Add"] == 2  # a1≡b1 and a2≡b2 are computed once
    assert sorted(result.executed) == ["a1", "a2", "out", "sum"] or sorted(result.executed) == [
        "b1", "b2", "out", "sum"]


def test_cache_is_keyed_by_content_not_node_ids():
    ex = Executor(registry())
    ex.run(chain())
    renamed = {
        "10": {"class_type": "Number", "inputs": {"value": 1}},
        "20": {"class_type": "Add", "inputs": {"a": ["10", 0], "b": 2}},
        "30": {"class_type": "Scale", "inputs": {"value": ["20", 0], "factor": 2.0, "enabled": True}},
        "40": {"class_type": "Collect", "inputs": {"value": ["30", 0], "label": "other"}},
    }
    RUNS.clear()
    result = ex.run(renamed)
    assert result.executed == ["40"]
    assert RUNS == {"Collect": 1}


def test_non_deterministic_nodes_always_rerun_with_their_descendants():
    graph = {
        "1": {"class_type": "Dice", "inputs": {}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 0}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
    }
    ex = Executor(registry())
    ex.run(graph)
    ex.run(graph)
    assert RUNS["Dice"] == 2 and RUNS["Add"] == 2


def test_fingerprint_change_reruns_node():
    BLOBS["a"] = b"hello"
    graph = {
        "1": {"class_type": "FileText", "inputs": {"name": "a"}},
        "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}},
    }
    ex = Executor(registry())
    ex.run(graph)
    ex.run(graph)
    assert RUNS["FileText"] == 1
    BLOBS["a"] = b"changed"
    result = ex.run(graph)
    assert RUNS["FileText"] == 2
    assert result.outputs["2"]["values"] == ["changed"]


def blob_graph(size, tag):
    return {
        "1": {"class_type": "Blob", "inputs": {"size": size, "tag": tag}},
        "2": {"class_type": "BlobLen", "inputs": {"blob": ["1", 0]}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
    }


def test_lru_eviction_under_byte_budget():
    cache = OutputCache({"cpu": 2500})
    ex = Executor(registry(), cache=cache)
    for tag in "abc":
        ex.run(blob_graph(1000, tag))
    assert cache.used("cpu") <= 2500
    assert cache.stats.evictions >= 1

    def blob_only(tag):  # a new consumer, so the Blob itself is needed again
        return {
            "1": {"class_type": "Blob", "inputs": {"size": 1000, "tag": tag}},
            "2": {"class_type": "Collect", "inputs": {"value": ["1", 0], "label": "direct"}},
        }

    RUNS.clear()
    ex.run(blob_only("c"))  # the newest blob is still cached
    assert RUNS["Blob"] == 0
    ex.run(blob_only("a"))  # the oldest blob was evicted: recomputed
    assert RUNS["Blob"] == 1


def test_value_bigger_than_budget_is_not_cached_but_run_completes():
    cache = OutputCache({"cpu": 100})
    ex = Executor(registry(), cache=cache)
    result = ex.run(blob_graph(1000, "big"))
    assert result.outputs["3"]["values"] == [1000]
    RUNS.clear()
    ex.run(blob_graph(1000, "big"))
    assert RUNS["Blob"] == 0  # BlobLen's small output was cached, so Blob is not needed
    cache.clear()
    ex.run(blob_graph(1000, "big"))
    assert RUNS["Blob"] == 1


def test_interrupt_between_nodes_and_at_progress_ticks():
    graph = {
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "Steps", "inputs": {"value": ["1", 0], "steps": 5, "interrupt_at": 2}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
    }
    events = RecordingEvents()
    result = Executor(registry()).run(graph, events=events)
    assert result.status == "interrupted"
    progress = [p for name, p in events.events if name == "progress"]
    assert [p[1] for p in progress] == [1, 2]  # stopped at the tick after the flag was set
    assert ("interrupted", "2") in events.events
    assert RUNS["Collect"] == 0

    flag = InterruptFlag()
    flag.set()
    result = Executor(registry()).run(chain(), interrupt=flag)
    assert result.status == "interrupted" and result.executed == []


def test_error_event_and_resume_after_fix():
    graph = {
        "1": {"class_type": "Number", "inputs": {"value": 7}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
        "3": {"class_type": "Fail", "inputs": {"value": ["2", 0], "fail": True}},
        "4": {"class_type": "Collect", "inputs": {"value": ["3", 0]}},
    }
    events = RecordingEvents()
    ex = Executor(registry())
    result = ex.run(graph, prompt_id="p", events=events)
    assert result.status == "error"
    err = result.error
    assert err.node_id == "3" and err.node_type == "Fail"
    assert err.exception_message == "cannot handle 8"
    assert err.exception_type == "ValueError"
    assert any("cannot handle" in line for line in err.traceback)
    assert err.executed == ["1", "2"]
    assert ("error", err) in events.events
    body = err.to_comfy("p")
    assert body["node_id"] == "3" and body["prompt_id"] == "p"
    RUNS.clear()
    graph["3"]["inputs"]["fail"] = False
    result = ex.run(graph)
    assert result.ok
    assert result.executed == ["3", "4"]  # 1 and 2 came from the cache
    assert RUNS["Number"] == 0 and RUNS["Add"] == 0


def test_outputs_freed_after_last_consumer_when_not_cached():
    MADE.clear()
    alive_during_steps = []

    class Watch(RecordingEvents):
        def progress(self, prompt_id, node_id, value, maximum, preview=None):
            alive_during_steps.append(MADE[0]() is not None)

    graph = {
        "1": {"class_type": "Blob", "inputs": {"size": 5000, "tag": "x"}},
        "2": {"class_type": "BlobLen", "inputs": {"blob": ["1", 0]}},
        "3": {"class_type": "Steps", "inputs": {"value": ["2", 0], "steps": 2, "interrupt_at": -1}},
        "4": {"class_type": "Collect", "inputs": {"value": ["3", 0]}},
    }
    ex = Executor(registry(), cache=OutputCache({"cpu": 1000}))  # the 5000-byte blob cannot be cached
    result = ex.run(graph, events=Watch())
    assert result.outputs["4"]["values"] == [5002]
    assert alive_during_steps == [False, False]  # freed once BlobLen, its only consumer, had run

    MADE.clear()
    alive_during_steps.clear()
    ex = Executor(registry(), cache=OutputCache({"cpu": 10**6}))  # cached: kept by the cache
    ex.run(graph, events=Watch())
    assert alive_during_steps == [True, True]


def test_invalid_workflow_raises_with_report():
    with pytest.raises(WorkflowInvalid) as info:
        Executor(registry()).run({"1": {"class_type": "Number", "inputs": {"value": 1}}})
    assert info.value.report.top_error["type"] == "prompt_no_outputs"


def test_progress_events_carry_values():
    graph = {
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "Steps", "inputs": {"value": ["1", 0], "steps": 3, "interrupt_at": -1}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
    }
    events = RecordingEvents()
    result = Executor(registry()).run(graph, events=events)
    assert result.outputs["3"]["values"] == [4]
    progress = [p for n, p in events.events if n == "progress"]
    assert progress == [("2", 1, 3, False), ("2", 2, 3, False), ("2", 3, 3, False)]
