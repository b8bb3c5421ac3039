"""The actor's side of the Ray pool, in-process (no Ray): a run's events stream out through `poll` while it
executes, saved files ride on `node_done` once, a model file missing on the worker is refused clearly, an
interrupt sent before the run started still stops it, and `free` empties the cache and the models."""

from __future__ import annotations

import threading

import pytest
from test_ray_support import make_checkpoints, registry, work_graph
from test_server_support import save_graph

from graphcore import folders as folder_config
from graphcore.server.ray_runner import PromptRunner, RunnerSettings


@pytest.fixture
def runner(isolated_folders):
    make_checkpoints(isolated_folders.models_dir, "a.safetensors")
    runner = PromptRunner(RunnerSettings("test-actor", list(registry().classes.values()),
                                         str(isolated_folders.models_dir), preview_interval=0.0))
    yield runner
    runner.close()
    folder_config.configure(isolated_folders)


def job(prompt_id: str, prompt: dict) -> dict:
    return {"prompt_id": prompt_id, "prompt": prompt, "extra_data": {}, "outputs_to_execute": []}


def events_of(runner: PromptRunner, prompt_id: str) -> list[tuple]:
    batch = runner.poll(prompt_id, 0, wait=0.0)
    assert batch["done"]
    return batch["events"]


def test_events_stream_while_the_prompt_runs(runner):
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(runner.run(job("p", work_graph("a.safetensors", steps=8,
                                                                                            delay=0.05)))))
    thread.start()
    cursor, batches = 0, []
    while True:
        batch = runner.poll("p", cursor, wait=5.0)
        batches.append(batch)
        cursor = batch["cursor"]
        if batch["done"]:
            break
    thread.join(10)
    assert any(batch["events"] and not batch["done"] for batch in batches)  # not all at the end
    names = [event[0] for batch in batches for event in batch["events"]]
    assert names == ["run_start", "nodes_cached", "node_start", "node_done", "node_start", *["progress"] * 8,
                     "node_done", "run_done"]
    assert result["status"] == "success" and result["models"] == [("checkpoints", "a.safetensors")]
    assert result["outputs"]["2"]["model"] == ["a.safetensors"]
    assert runner.poll("other", 0, wait=0.01) == {"events": [], "cursor": 0, "done": False}


def test_saved_files_ride_on_node_done_once(runner):
    first = runner.run(job("p1", save_graph(5, prefix="out/pic")))
    (node_done,) = [event for event in events_of(runner, "p1") if event[0] == "node_done" and event[2]]
    _, node_id, ui, files = node_done
    assert node_id == "2" and ui["images"] == [{"filename": "pic_00001_.png", "subfolder": "out", "type": "output"}]
    assert [(kind, sub, name) for kind, sub, name, _ in files] == [("output", "out", "pic_00001_.png")]
    assert files[0][3].startswith(b"\x89PNG")
    saved = runner.folders.output_dir / "out" / "pic_00001_.png"
    assert saved.exists() and saved.stat().st_size == 0  # the name stays (counters), the bytes went
    assert first["outputs"]["2"] == ui
    # A cached re-run names the same file and sends nothing; a new value counts on from there.
    runner.run(job("p2", save_graph(5, prefix="out/pic")))
    (again,) = [event for event in events_of(runner, "p2") if event[0] == "node_done" and event[2]]
    assert again[2] == ui and again[3] == []
    runner.run(job("p3", save_graph(6, prefix="out/pic")))
    (third,) = [event for event in events_of(runner, "p3") if event[0] == "node_done" and event[2]]
    assert third[2]["images"][0]["filename"] == "pic_00002_.png" and len(third[3]) == 1


def test_a_model_missing_on_the_worker_is_refused_clearly(runner):
    result = runner.run(job("p", work_graph("elsewhere.safetensors")))
    events = events_of(runner, "p")
    assert result["status"] == "error" and [event[0] for event in events] == ["failed"]
    _, node_id, node_type, exc_type, text, _ = events[0]
    assert (node_id, node_type, exc_type) == ("1", "RayCheckpoint", "ModelFileMissing")
    assert "test-actor" in text and "'elsewhere.safetensors'" in text and "same path" in text


def test_an_interrupt_sent_before_the_run_starts_still_stops_it(runner):
    assert runner.interrupt("early") is False
    result = runner.run(job("early", work_graph("a.safetensors")))
    assert result["status"] == "interrupted"
    assert [event[0] for event in events_of(runner, "early")][-1] == "interrupted"
    assert runner.run(job("next", work_graph("a.safetensors")))["status"] == "success"


def test_free_empties_the_cache_and_forgets_the_models(runner):
    runner.run(job("p", work_graph("a.safetensors")))
    stats = runner.stats()
    assert stats["cache_entries"] > 0 and stats["models"] == [("checkpoints", "a.safetensors")]
    runner.free(unload_models=True, free_memory=True)
    stats = runner.stats()
    assert stats["cache_entries"] == 0 and stats["models"] == [] and stats["prompts"] == 1


def test_an_invalid_prompt_fails_with_the_validation_message(runner):
    result = runner.run(job("bad", {"1": {"class_type": "RayWork", "inputs": {"seed": 1}}}))
    (event,) = events_of(runner, "bad")
    assert result["status"] == "error" and event[0] == "failed" and event[3] == "ValidationError"
    assert "model" in event[4]
