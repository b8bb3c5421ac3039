"""The WebSocket event sequences of a run, a cached re-run, an error and an interrupt; previews, progress,
broadcasts, restarts and workers — through aiohttp's test client against the real application."""

from __future__ import annotations

import asyncio
import io
import json
import struct

import pytest
import pytest_asyncio
from PIL import Image
from test_server_support import (
    history_entry,
    next_event,
    registry,
    save_graph,
    server_config,
    slow_graph,
    submit,
    until_done,
)

from graphcore.server.app import create_app

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def client(aiohttp_client, isolated_folders, tmp_path):
    app = create_app(server_config(tmp_path / "data"), registry(), isolated_folders)
    return await aiohttp_client(app)


# -- runs and their events ----------------------------------------------------------------------------------


async def test_run_sends_comfy_events_and_records_history(client, isolated_folders):
    ws = await client.ws_connect("/ws?clientId=alice")
    hello = json.loads((await ws.receive()).data)
    assert hello == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "alice"}}
    prompt_id = await submit(client, save_graph(5), client_id="alice")
    events, _ = await until_done(ws, prompt_id)
    assert [kind for kind, _ in events] == [
        "execution_start", "execution_cached", "executing", "executing", "executed", "execution_success", "executing",
    ]
    assert events[1][1]["nodes"] == []
    assert [data["node"] for kind, data in events if kind == "executing"] == ["1", "2", None]
    image = {"filename": "img_00001_.png", "subfolder": "srv", "type": "output"}
    assert events[4][1] == {"node": "2", "display_node": "2", "output": {"images": [image]}, "prompt_id": prompt_id}
    assert all(data["prompt_id"] == prompt_id for _, data in events)

    entry = await history_entry(client, prompt_id)
    assert entry["prompt"][1] == prompt_id and entry["prompt"][2] == save_graph(5)
    assert entry["prompt"][3] == {"client_id": "alice"} and entry["prompt"][4] == ["2"]
    assert entry["outputs"] == {"2": {"images": [image]}}
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]

    view = await client.get("/view", params=image)
    assert view.status == 200 and view.content_type == "image/png"
    assert await view.read() == (isolated_folders.output_dir / "srv" / "img_00001_.png").read_bytes()
    await ws.close()


async def test_cached_rerun_reports_cached_nodes_and_their_output(client, isolated_folders):
    ws = await client.ws_connect("/ws?clientId=bob")
    first = await submit(client, save_graph(9), client_id="bob")
    await until_done(ws, first)
    second = await submit(client, save_graph(9), client_id="bob")
    events, _ = await until_done(ws, second)
    assert [kind for kind, _ in events] == [
        "execution_start", "execution_cached", "executed", "execution_success", "executing",
    ]
    assert events[1][1]["nodes"] == ["1", "2"]  # every cached node, as ComfyUI reports
    assert events[2][1]["output"]["images"][0]["filename"] == "img_00001_.png"
    assert len(list((isolated_folders.output_dir / "srv").glob("*.png"))) == 1  # the save did not run again
    entry = await history_entry(client, second)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["2"]["images"][0]["filename"] == "img_00001_.png"


async def test_failing_node_reports_execution_error_and_the_worker_goes_on(client):
    ws = await client.ws_connect("/ws?clientId=carol")
    failing = {
        "1": {"class_type": "Number", "inputs": {"value": 1}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0], "fail": True}},
        "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
    }
    prompt_id = await submit(client, failing, client_id="carol")
    events, _ = await until_done(ws, prompt_id)
    assert [kind for kind, _ in events] == [
        "execution_start", "execution_cached", "executing", "executing", "execution_error", "executing",
    ]
    error = events[4][1]
    assert error["node_id"] == "2" and error["node_type"] == "Fail"
    assert error["exception_message"] == "cannot handle 1" and error["exception_type"] == "ValueError"
    assert error["executed"] == ["1"] and any("cannot handle 1" in line for line in error["traceback"])
    entry = await history_entry(client, prompt_id)
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_error"

    after = await submit(client, save_graph(2), client_id="carol")
    events, _ = await until_done(ws, after)
    assert events[-2][0] == "execution_success"


async def test_interrupt_stops_the_running_prompt_and_the_next_one_runs(client):
    ws = await client.ws_connect("/ws?clientId=dave")
    prompt_id = await submit(client, slow_graph(steps=500, delay=0.01, preview=False), client_id="dave")
    progress = await next_event(ws, "progress")
    assert progress["prompt_id"] == prompt_id and progress["node"] == "2"
    response = await client.post("/interrupt", json={"prompt_id": prompt_id})
    assert await response.json() == {"interrupted": [prompt_id], "removed": []}
    events, _ = await until_done(ws, prompt_id)
    assert [kind for kind, _ in events][-2:] == ["execution_interrupted", "executing"]
    interrupted = events[-2][1]
    assert interrupted["node_id"] == "2" and interrupted["node_type"] == "SrvSlow" and interrupted["executed"] == ["1"]
    entry = await history_entry(client, prompt_id)
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["outputs"] == {}

    after = await submit(client, save_graph(3), client_id="dave")
    events, _ = await until_done(ws, after)
    assert events[-2][0] == "execution_success"


async def test_interrupting_one_prompt_never_stops_another_users_prompt(client):
    ws_a = await client.ws_connect("/ws?clientId=user-a")
    running = await submit(client, slow_graph(value=1, steps=100, delay=0.01, preview=False), client_id="user-a")
    await next_event(ws_a, "progress")
    queued = await submit(client, slow_graph(value=2, steps=3, delay=0.0), client_id="user-b")
    response = await client.post("/interrupt", json={"prompt_id": queued})
    assert await response.json() == {"interrupted": [], "removed": [queued]}
    events, _ = await until_done(ws_a, running)
    assert events[-2][0] == "execution_success"
    assert (await (await client.get(f"/history/{queued}")).json()) == {}
    queue = await (await client.get("/queue")).json()
    assert queue == {"queue_running": [], "queue_pending": []}
    # An id that is neither running nor queued stops nothing.
    response = await client.post("/interrupt", json={"prompt_id": "no-such-prompt"})
    assert await response.json() == {"interrupted": [], "removed": []}


async def test_progress_events_and_binary_preview_frames(client):
    ws = await client.ws_connect("/ws?clientId=erin")
    prompt_id = await submit(client, slow_graph(steps=3, delay=0.0), client_id="erin")
    events, frames = await until_done(ws, prompt_id)
    progress = [data for kind, data in events if kind == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [(1, 3, "2"), (2, 3, "2"), (3, 3, "2")]
    assert len(frames) == 3
    for frame in frames:
        assert struct.unpack(">II", frame[:8]) == (1, 1)  # preview image, JPEG
        picture = Image.open(io.BytesIO(frame[8:]))
        assert picture.format == "JPEG" and picture.size == (96, 64)

    quiet = await submit(client, slow_graph(value=7, steps=3, delay=0.0, preview=False), client_id="erin")
    _, frames = await until_done(ws, quiet)
    assert frames == []


async def test_previews_are_throttled(aiohttp_client, isolated_folders, tmp_path):
    config = server_config(tmp_path / "data", preview_interval=60.0)
    client = await aiohttp_client(create_app(config, registry(), isolated_folders))
    ws = await client.ws_connect("/ws?clientId=fay")
    prompt_id = await submit(client, slow_graph(steps=6, delay=0.0), client_id="fay")
    _, frames = await until_done(ws, prompt_id)
    assert len(frames) == 2  # the first step, then only the last one within the interval


async def test_events_go_only_to_the_submitting_client(client):
    ws_owner = await client.ws_connect("/ws?clientId=owner")
    ws_other = await client.ws_connect("/ws?clientId=other")
    prompt_id = await submit(client, save_graph(11), client_id="owner")
    await until_done(ws_owner, prompt_id)
    await asyncio.sleep(0.05)
    leaked = []
    while True:
        try:
            msg = await ws_other.receive(timeout=0.05)
        except TimeoutError:
            break
        leaked.append(json.loads(msg.data)["type"])
    assert set(leaked) <= {"status"}, leaked


async def test_a_prompt_running_at_shutdown_runs_again_after_the_restart(aiohttp_client, isolated_folders, tmp_path):
    config = server_config(tmp_path / "data")
    first = await aiohttp_client(create_app(config, registry(), isolated_folders))
    ws = await first.ws_connect("/ws?clientId=r")
    prompt_id = await submit(first, slow_graph(value=5, steps=40, delay=0.01, preview=False), client_id="r")
    await next_event(ws, "progress")
    await ws.close()
    await first.close()  # a clean stop interrupts the prompt and puts it back in the queue

    second = await aiohttp_client(create_app(config, registry(), isolated_folders))
    body = await (await second.post("/run", json={"prompt": save_graph(1)})).json()
    assert body["status"]["status_str"] == "success"  # queued after the resumed prompt, so that ran first
    entry = await history_entry(second, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_success"


async def test_queue_status_is_broadcast_and_a_reconnecting_client_sees_its_running_node(client):
    watcher = await client.ws_connect("/ws?clientId=watcher")
    await watcher.receive()  # the greeting
    prompt_id = await submit(client, slow_graph(steps=300, delay=0.01, preview=False), client_id="owner")
    status = await next_event(watcher, "status")
    assert status == {"status": {"exec_info": {"queue_remaining": 1}}}
    while True:  # the owner's socket connects while its prompt runs
        reconnected = await client.ws_connect("/ws?clientId=owner")
        first = json.loads((await reconnected.receive()).data)
        second = json.loads((await reconnected.receive(timeout=1)).data)
        if second["type"] == "executing":
            break
        await reconnected.close()
    assert first["type"] == "status" and first["data"]["sid"] == "owner"
    assert second["data"] == {"node": "2", "display_node": "2", "prompt_id": prompt_id}
    await client.post("/interrupt", json={"prompt_id": prompt_id})
    await until_done(reconnected, prompt_id)
    while (await next_event(watcher, "status"))["status"]["exec_info"]["queue_remaining"] != 0:
        pass  # a broadcast from before the end may come first; the one after it says 0


async def test_one_worker_per_device_runs_prompts_side_by_side(aiohttp_client, isolated_folders, tmp_path):
    config = server_config(tmp_path / "data", devices=("dev0", "dev1"))
    client = await aiohttp_client(create_app(config, registry(), isolated_folders))
    ws = await client.ws_connect("/ws?clientId=two")
    first = await submit(client, slow_graph(value=1, steps=300, delay=0.01, preview=False), client_id="two")
    second = await submit(client, slow_graph(value=2, steps=300, delay=0.01, preview=False), client_id="two")
    seen = set()
    while len(seen) < 2:
        seen.add((await next_event(ws, "progress"))["prompt_id"])
    queue = await (await client.get("/queue")).json()
    assert sorted(item[1] for item in queue["queue_running"]) == sorted([first, second])
    stopped = await (await client.post("/interrupt", json={})).json()
    assert sorted(stopped["interrupted"]) == sorted([first, second])  # without an id: every running prompt
    for _ in range(200):
        if (await (await client.get("/prompt")).json())["exec_info"]["queue_remaining"] == 0:
            break
        await asyncio.sleep(0.02)
    history = await (await client.get("/history")).json()
    assert {history[first]["status"]["status_str"], history[second]["status"]["status_str"]} == {"error"}
