"""Shared by the server tests: pure-Python nodes that save PNGs, run slowly with previews, or run out of
memory; a registry with them and the engine test nodes; a server on a real loopback port in a thread.

The `Srv*` node names are distinct from every library node, so `node_classes` can be loaded into a real
`diffgraph serve` through $DIFFGRAPH_NODE_MODULES next to the built-in nodes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType
from engine_nodes import ALL as ENGINE_NODES

from graphcore import types
from graphcore.folders import Folders, ModelChoices, PathEscape, safe_join
from graphcore.inputs import Boolean, Combo, Float, Int, Socket, String
from graphcore.node import Node, Output, Result
from graphcore.registry import Registry
from graphcore.server.app import create_app
from graphcore.server.config import ServerConfig


class SrvNumber(Node):
    category = "test"
    inputs = {"value": Int(0, min=-(10**12), max=10**12)}
    outputs = (Output(types.INT, "value"),)

    def run(self, ctx, value):
        return (value,)


class SrvSave(Node):
    """Writes a small PNG (colour from `value`) into the output folder, like SaveImage."""

    category = "test"
    output_node = True
    inputs = {"value": Socket(types.INT), "filename_prefix": String("srv/img"), "size": Int(8, min=1, max=256)}
    outputs = ()

    @classmethod
    def check(cls, constants):
        try:
            safe_join(Path("/output"), constants.get("filename_prefix", ""), allow_symlinks_out=True)
        except PathEscape as exc:
            return {"filename_prefix": str(exc)}
        return {}

    def run(self, ctx, value, filename_prefix, size):
        from PIL import Image

        folders: Folders = ctx.folders
        subfolder, _, stem = filename_prefix.rpartition("/")
        directory = safe_join(folders.output_dir, subfolder)
        directory.mkdir(parents=True, exist_ok=True)
        counter = 1 + len(list(directory.glob(f"{stem}_*.png")))
        filename = f"{stem}_{counter:05d}_.png"
        colour = (value % 256, (value // 256) % 256, 200)
        Image.new("RGB", (size, size), colour).save(safe_join(directory, filename))
        return Result((), {"images": [{"filename": filename, "subfolder": subfolder, "type": "output"}]})


class SrvSlow(Node):
    """Sleeps `delay` seconds per step, reporting progress with a PIL preview each step."""

    category = "test"
    inputs = {
        "value": Socket(types.INT),
        "steps": Int(5, min=1, max=1000),
        "delay": Float(0.02, min=0.0, max=10.0),
        "preview": Boolean(True),
    }
    outputs = (Output(types.INT),)

    def run(self, ctx, value, steps, delay, preview):
        from PIL import Image

        for step in range(steps):
            time.sleep(delay)
            image = Image.new("RGB", (96, 64), (step * 20 % 256, 100, 50)) if preview else None
            ctx.progress(step + 1, steps, image)
        return (value + steps,)


class SrvOOM(Node):
    category = "test"
    inputs = {"value": Socket(types.INT)}
    outputs = (Output(types.INT),)

    def run(self, ctx, value):
        raise MemoryError("simulated out of memory")


class SrvCheckpoint(Node):
    """A model-name combo over the checkpoints folder (names outside it are never valid choices)."""

    category = "test"
    inputs = {"ckpt_name": Combo(ModelChoices("checkpoints"))}
    outputs = (Output(types.STRING),)

    def run(self, ctx, ckpt_name):
        return (str(ctx.folders.resolve_model("checkpoints", ckpt_name)),)


class SrvResult(Node):
    """An output node that only reports its value (a trivial graph's end, for the benchmark)."""

    category = "test"
    output_node = True
    inputs = {"value": Socket(types.INT)}
    outputs = ()

    def run(self, ctx, value):
        return Result((), {"value": [value]})


SERVER_NODES = (SrvNumber, SrvSave, SrvSlow, SrvOOM, SrvCheckpoint, SrvResult)


def node_classes() -> list[type[Node]]:
    """For $DIFFGRAPH_NODE_MODULES=test_server_support:node_classes."""
    return list(SERVER_NODES)


def registry() -> Registry:
    return Registry().add_all(ENGINE_NODES).add_all(SERVER_NODES)


def save_graph(value: int = 1, prefix: str = "srv/img", size: int = 8) -> dict[str, Any]:
    return {
        "1": {"class_type": "SrvNumber", "inputs": {"value": value}},
        "2": {"class_type": "SrvSave", "inputs": {"value": ["1", 0], "filename_prefix": prefix, "size": size}},
    }


def slow_graph(value: int = 1, steps: int = 5, delay: float = 0.02, preview: bool = True) -> dict[str, Any]:
    return {
        "1": {"class_type": "SrvNumber", "inputs": {"value": value}},
        "2": {"class_type": "SrvSlow", "inputs": {"value": ["1", 0], "steps": steps, "delay": delay,
                                                  "preview": preview}},
        "3": {"class_type": "SrvSave", "inputs": {"value": ["2", 0], "filename_prefix": "srv/slow", "size": 8}},
    }


def server_config(data_dir: Path, **overrides: Any) -> ServerConfig:
    settings: dict[str, Any] = {"web_dir": None, "examples_dir": None, "preview_interval": 0.0,
                                "status_debounce": 0.005}
    settings.update(overrides)
    return ServerConfig(data_dir=data_dir, **settings)




class ServerThread:
    """The app on 127.0.0.1:<free port>, its own event loop in a thread: for synchronous clients."""

    def __init__(self, config: ServerConfig, registry: Registry, folders: Folders) -> None:
        self.app = create_app(config, registry, folders)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        from aiohttp import web

        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the test server did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)


@contextmanager
def running_server(config: ServerConfig, registry: Registry, folders: Folders) -> Iterator[ServerThread]:
    server = ServerThread(config, registry, folders).start()
    try:
        yield server
    finally:
        server.stop()


# -- helpers for the aiohttp test-client tests ----------------------------------------------------------------


async def submit(client, prompt, **extra):
    response = await client.post("/prompt", json={"prompt": prompt, **extra})
    body = await response.json()
    assert response.status == 200, body
    assert body["node_errors"] == {}
    return body["prompt_id"]


async def until_done(ws, prompt_id, timeout=15.0):
    """Messages (type, data) and binary frames until `executing` with node null for `prompt_id`."""
    messages, frames = [], []

    async def read():
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                frames.append(msg.data)
                continue
            event = json.loads(msg.data)
            messages.append((event["type"], event["data"]))
            data = event["data"]
            if event["type"] == "executing" and data["node"] is None and data["prompt_id"] == prompt_id:
                return

    await asyncio.wait_for(read(), timeout)
    return [(kind, data) for kind, data in messages if kind != "status"], frames


async def next_event(ws, kind, timeout=10.0):
    async def read():
        async for msg in ws:
            if msg.type == WSMsgType.TEXT and json.loads(msg.data)["type"] == kind:
                return json.loads(msg.data)["data"]

    return await asyncio.wait_for(read(), timeout)


async def history_entry(client, prompt_id):
    response = await client.get(f"/history/{prompt_id}")
    return (await response.json())[prompt_id]
