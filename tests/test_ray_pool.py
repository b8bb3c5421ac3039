"""The server with a Ray pool of 2 actors on a private local Ray (2 CPUs, loopback, no dashboard): prompts
run concurrently, route to the actor holding their checkpoint, survive a killed actor, fail after a second
death, interrupt the right actor, /free reaches every actor, and the tiny SD1 workflow gives the same
picture, files and WebSocket messages as the in-process pool.

One server for the module (starting actors costs seconds); checkpoint names are unique per test, and every
test starts with all actors up."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import uuid
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from PIL import Image
from test_ray_support import RayServer, crash_graph, init_ray, make_checkpoints, registry, work_graph
from test_server_support import server_config

from graphcore import folders as folder_config
from graphcore.server.app import create_app
from graphcore.server.ray_pool import RayPoolOptions
from graphcore.server.ray_slot import wait_until

pytest.importorskip("ray")
pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    ray = init_ray(num_cpus=2)
    root = tmp_path_factory.mktemp("ray-server")
    folders = folder_config.Folders(root / "models", root / "input", root / "output", root / "temp").create()
    previous = folder_config._current
    folder_config.configure(folders)
    server = RayServer(root / "data", folders, registry(with_library=True),
                       RayPoolOptions(actors=2, cpus_per_actor=1, idle_check=1.0)).start()
    yield server
    server.stop()
    folder_config._current = previous
    ray.shutdown()


@pytest.fixture(autouse=True)
def isolated_folders(ray_server):
    """Overrides conftest's: the module's server validates against its own folders."""
    folder_config.configure(ray_server.folders)
    assert ray_server.pool.wait_ready(120), "an actor did not come back"
    yield ray_server.folders


async def submit(session: aiohttp.ClientSession, prompt: dict, client_id: str) -> str:
    async with session.post("/prompt", json={"prompt": prompt, "client_id": client_id}) as response:
        body = await response.json()
        assert response.status == 200, body
        return body["prompt_id"]


async def read_until_done(ws, prompt_ids: set[str], timeout: float = 90.0) -> list[tuple[str, dict]]:
    """Every text message (but status) until `executing` with node null for each prompt."""
    messages, waiting = [], set(prompt_ids)

    async def read():
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            if event["type"] == "status":
                continue
            messages.append((event["type"], event["data"]))
            data = event["data"]
            if event["type"] == "executing" and data.get("node") is None:
                waiting.discard(data.get("prompt_id"))
                if not waiting:
                    return

    await asyncio.wait_for(read(), timeout)
    return messages


async def history(session: aiohttp.ClientSession, prompt_id: str) -> dict:
    async with session.get(f"/history/{prompt_id}") as response:
        return (await response.json())[prompt_id]


def messages_of(entry: dict, kind: str) -> list[dict]:
    return [data for name, data in entry["status"]["messages"] if name == kind]


def names(checkpoints: str, *stems: str) -> list[str]:
    return [f"{checkpoints}-{stem}.safetensors" for stem in stems]


async def test_two_actors_run_two_prompts_at_once(ray_server):
    a, b = names("overlap", "a", "b")
    make_checkpoints(ray_server.folders.models_dir, a, b)
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession(ray_server.url) as session, session.ws_connect(f"/ws?clientId={client_id}") as ws:
        first = await submit(session, work_graph(a, steps=10, delay=0.1), client_id)
        second = await submit(session, work_graph(b, steps=10, delay=0.1), client_id)
        messages = await read_until_done(ws, {first, second})
        entries = [await history(session, prompt_id) for prompt_id in (first, second)]
    for entry in entries:
        assert entry["status"]["status_str"] == "success"
    # The server's event timestamps: each prompt started before the other one ended.
    starts = [messages_of(e, "execution_start")[0]["timestamp"] for e in entries]
    ends = [messages_of(e, "execution_success")[0]["timestamp"] for e in entries]
    assert starts[0] < ends[1] and starts[1] < ends[0]
    # The actors' own clocks and processes agree.
    outputs = [entry["outputs"]["2"] for entry in entries]
    assert outputs[0]["pid"] != outputs[1]["pid"]
    assert outputs[0]["started"][0] < outputs[1]["ended"][0] and outputs[1]["started"][0] < outputs[0]["ended"][0]
    # The WebSocket carried each prompt's events as in local mode.
    for prompt_id in (first, second):
        kinds = [kind for kind, data in messages if data.get("prompt_id") == prompt_id]
        assert kinds[:2] == ["execution_start", "execution_cached"]
        assert kinds.count("progress") == 10 and kinds.count("executed") == 1
        assert kinds[-2:] == ["execution_success", "executing"]


async def test_prompts_go_to_the_actor_holding_their_checkpoint(ray_server):
    a, b = names("affinity", "a", "b")
    make_checkpoints(ray_server.folders.models_dir, a, b)
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession(ray_server.url) as session, session.ws_connect(f"/ws?clientId={client_id}") as ws:
        ids = [await submit(session, work_graph((a, b)[i % 2], seed=i, steps=2, delay=0.05), client_id)
               for i in range(12)]
        await read_until_done(ws, set(ids))
        entries = [await history(session, prompt_id) for prompt_id in ids]
    assert all(entry["status"]["status_str"] == "success" for entry in entries)
    loads = ray_server.pool.call_on_actors(lambda: dict(__import__("test_ray_support").LOADS))
    for checkpoint in (a, b):
        assert sum(counts.get(checkpoint, 0) for counts in loads.values()) == 1, loads
    pids = {}
    for entry in entries:
        pids.setdefault(entry["outputs"]["2"]["model"][0], set()).add(entry["outputs"]["2"]["pid"][0])
    assert pids[a] != pids[b] and len(pids[a]) == len(pids[b]) == 1, pids


async def test_a_killed_actor_requeues_its_prompt_which_completes(ray_server, tmp_path):
    (a,) = names("killed", "a")
    make_checkpoints(ray_server.folders.models_dir, a)
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession(ray_server.url) as session, session.ws_connect(f"/ws?clientId={client_id}") as ws:
        prompt_id = await submit(session, work_graph(a, steps=20, delay=0.1, marker_dir=str(tmp_path), tag="k"),
                                 client_id)
        assert await asyncio.to_thread(wait_until, lambda: any(tmp_path.glob("k.*")), 60)
        victim = int(next(tmp_path.glob("k.*")).suffix[1:])
        os.kill(victim, signal.SIGKILL)
        messages = await read_until_done(ws, {prompt_id})
        entry = await history(session, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["2"]["pid"][0] != victim
    restarted = messages_of(entry, "execution_restarted")
    assert len(restarted) == 1 and restarted[0]["attempt"] == 2 and str(victim) in restarted[0]["reason"]
    kinds = [kind for kind, data in messages if data.get("prompt_id") == prompt_id]
    assert kinds.count("execution_start") == 2 and kinds.count("execution_restarted") == 1
    assert kinds.index("execution_restarted") < len(kinds) - 1 - kinds[::-1].index("execution_start")


async def test_a_prompt_whose_worker_dies_twice_fails_with_the_reason(ray_server):
    (a,) = names("crash", "a")
    make_checkpoints(ray_server.folders.models_dir, a)
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession(ray_server.url) as session, session.ws_connect(f"/ws?clientId={client_id}") as ws:
        prompt_id = await submit(session, crash_graph(a), client_id)
        messages = await read_until_done(ws, {prompt_id})
        entry = await history(session, prompt_id)
        async with session.get("/queue") as response:
            queue = await response.json()
    assert entry["status"]["status_str"] == "error" and not entry["status"]["completed"]
    (error,) = messages_of(entry, "execution_error")
    assert error["exception_type"] == "WorkerDied" and "died 2 times" in error["exception_message"]
    assert "died unexpectedly" in error["exception_message"]
    assert len(messages_of(entry, "execution_restarted")) == 1
    assert [kind for kind, _ in messages][-2:] == ["execution_error", "executing"]
    assert queue == {"queue_running": [], "queue_pending": []}


async def test_interrupt_stops_only_the_named_prompt(ray_server):
    a, b = names("interrupt", "a", "b")
    make_checkpoints(ray_server.folders.models_dir, a, b)
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession(ray_server.url) as session, session.ws_connect(f"/ws?clientId={client_id}") as ws:
        stopped = await submit(session, work_graph(a, steps=30, delay=0.1), client_id)
        kept = await submit(session, work_graph(b, steps=15, delay=0.1), client_id)
        assert await asyncio.to_thread(wait_until, lambda: len(ray_server.pool.running()) == 2, 60)
        async with session.post("/interrupt", json={"prompt_id": stopped}) as response:
            assert response.status == 200
        await read_until_done(ws, {stopped, kept})
        entries = {prompt_id: await history(session, prompt_id) for prompt_id in (stopped, kept)}
    assert messages_of(entries[stopped], "execution_interrupted") and entries[stopped]["outputs"] == {}
    assert entries[kept]["status"]["status_str"] == "success"
    assert entries[kept]["outputs"]["2"]["ended"][0] - entries[kept]["outputs"]["2"]["started"][0] >= 1.4


async def test_free_reaches_every_actor(ray_server):
    a, b = names("free", "a", "b")
    make_checkpoints(ray_server.folders.models_dir, a, b)
    client_id = uuid.uuid4().hex
    pool = ray_server.pool
    async with aiohttp.ClientSession(ray_server.url) as session, session.ws_connect(f"/ws?clientId={client_id}") as ws:
        ids = [await submit(session, work_graph(name, steps=5, delay=0.1), client_id) for name in (a, b)]
        await read_until_done(ws, set(ids))
        stats = await asyncio.to_thread(pool.actor_stats)
        assert all(s["cache_entries"] > 0 for s in stats.values()), stats
        async with session.post("/free", json={"unload_models": True, "free_memory": True}) as response:
            assert response.status == 200

    def all_freed() -> bool:
        stats = pool.actor_stats()
        return all(s["cache_entries"] == 0 and s["models"] == [] for s in stats.values())

    assert await asyncio.to_thread(wait_until, all_freed, 30, 0.2)
    loaded = pool.call_on_actors(lambda: sorted(__import__("test_ray_support").LOADED))
    assert list(loaded.values()) == [[], []]


async def test_an_idle_actor_that_dies_is_replaced_without_costing_a_prompt(ray_server):
    pool = ray_server.pool
    before = await asyncio.to_thread(pool.actor_stats)
    victim_key, victim = sorted((key, stats["pid"]) for key, stats in before.items())[0]
    os.kill(victim, signal.SIGKILL)

    def replaced() -> bool:
        slot = next(slot for slot in pool.slots if slot.key == victim_key)
        return slot.state == "idle" and slot.info.get("pid") not in (None, victim)

    assert await asyncio.to_thread(wait_until, replaced, 60, 0.1)
    (a,) = names("idle-death", "a")
    make_checkpoints(ray_server.folders.models_dir, a)
    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession(ray_server.url) as session, session.ws_connect(f"/ws?clientId={client_id}") as ws:
        ids = [await submit(session, work_graph(a, seed=i, steps=1, delay=0.0), client_id) for i in range(4)]
        await read_until_done(ws, set(ids))
        entries = [await history(session, prompt_id) for prompt_id in ids]
    assert all(e["status"]["status_str"] == "success" and not messages_of(e, "execution_restarted") for e in entries)


def txt2img(checkpoint: str, prefix: str) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 7, "steps": 3, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }


async def run_and_view(session, prompt: dict) -> tuple[list[str], dict, np.ndarray, bytes]:
    client_id = uuid.uuid4().hex
    async with session.ws_connect(f"/ws?clientId={client_id}") as ws:
        prompt_id = await submit(session, prompt, client_id)
        messages = await read_until_done(ws, {prompt_id}, timeout=150)
    entry = await history(session, prompt_id)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (image,) = entry["outputs"]["9"]["images"]
    async with session.get("/view", params=image) as response:
        assert response.status == 200
        content = await response.read()
    kinds = [kind for kind, data in messages if data.get("prompt_id") == prompt_id]
    return kinds, image, np.asarray(Image.open(io.BytesIO(content)).convert("RGB")), content


async def test_the_tiny_sd1_workflow_gives_the_same_picture_as_local_mode(ray_server, tiny_checkpoint, aiohttp_client):
    tiny_checkpoint("sd1").link_into(ray_server.folders.models_dir / "checkpoints", name="ray_tiny_sd1")
    prompt = txt2img("ray_tiny_sd1.safetensors", "raytest/cube")
    async with aiohttp.ClientSession(ray_server.url) as session:
        ray_kinds, ray_image, ray_pixels, ray_bytes = await run_and_view(session, prompt)
        again_kinds, again_image, _, _ = await run_and_view(session, prompt)
    assert ray_image["subfolder"] == "raytest" and ray_image["filename"].startswith("cube_")
    saved = ray_server.folders.output_dir / "raytest" / ray_image["filename"]
    assert saved.read_bytes() == ray_bytes

    local_data = Path(ray_server.folders.output_dir).parent / "local-data"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the actor's torch runs on its 1 CPU: same reduction order
    try:
        client = await aiohttp_client(create_app(server_config(local_data), registry(with_library=True),
                                                 ray_server.folders))
        local_kinds, local_image, local_pixels, _ = await run_and_view(client, txt2img("ray_tiny_sd1.safetensors",
                                                                                      "localtest/cube"))
    finally:
        torch.set_num_threads(threads)
    assert ray_kinds == local_kinds
    assert np.array_equal(ray_pixels, local_pixels)
    assert local_image["filename"] == "cube_00001_.png"
    assert again_kinds.count("progress") == 0  # everything cached on that actor
    assert again_image == ray_image  # a cached re-run names the file the first run saved, as in local mode
