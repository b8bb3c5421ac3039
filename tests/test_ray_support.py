"""Shared by the Ray pool tests: pure-Python nodes that count "model loads" per process, work slowly with
progress and report their process, or kill their own process; a local Ray on loopback; a pool on a store.

Ray actors import this module (the tests folder is put on their PYTHONPATH), so the counters live in each
actor's process and are read back with `RayPool.call_on_actors`."""

from __future__ import annotations

import asyncio
import os

# Before Ray is imported: its servers then bind to 127.0.0.1 only (Ray otherwise listens on every interface).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import signal
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from test_server_support import SERVER_NODES, server_config

from graphcore import hooks, types
from graphcore.folders import Folders, ModelChoices
from graphcore.inputs import Boolean, Combo, Float, Int, Socket, String
from graphcore.node import Node, Output, Result
from graphcore.registry import Registry, discover
from graphcore.server.app import create_app
from graphcore.server.ray_pool import RayPool, RayPoolOptions, pool_for_state
from graphcore.server.state import STATE_KEY

TESTS_DIR = Path(__file__).resolve().parent
LOADS: Counter[str] = Counter()  # checkpoint name → loads in this process
LOADED: set[str] = set()


@hooks.on_free
def _unload(unload_models: bool, free_memory: bool) -> None:
    if unload_models:
        LOADED.clear()


class RayCheckpoint(Node):
    """Stands for a checkpoint loader: "loads" a file once per process (until /free unloads it)."""

    category = "test"
    inputs = {"ckpt_name": Combo(ModelChoices("checkpoints"))}
    outputs = (Output(types.STRING),)

    def run(self, ctx, ckpt_name):
        ctx.folders.resolve_model("checkpoints", ckpt_name)
        if ckpt_name not in LOADED:
            LOADS[ckpt_name] += 1
            LOADED.add(ckpt_name)
        return (ckpt_name,)


class RayWork(Node):
    """Works `steps` × `delay` seconds with progress; reports its process and when it ran. Writes
    `<marker_dir>/<tag>.<pid>` when it starts (so a test can find and kill the process running it)."""

    category = "test"
    output_node = True
    inputs = {
        "model": Socket(types.STRING),
        "seed": Int(0, min=0, max=10**9),
        "steps": Int(3, min=1, max=1000),
        "delay": Float(0.05, min=0.0, max=10.0),
        "marker_dir": String(""),
        "tag": String("work"),
    }
    outputs = (Output(types.INT),)

    def run(self, ctx, model, seed, steps, delay, marker_dir, tag):
        started = time.time()
        if marker_dir:
            (Path(marker_dir) / f"{tag}.{os.getpid()}").write_text(str(started))
        for step in range(steps):
            time.sleep(delay)
            ctx.progress(step + 1, steps)
        ui = {"pid": [os.getpid()], "model": [model], "started": [started], "ended": [time.time()]}
        return Result((seed,), ui)


class RayCrash(Node):
    """Kills its own process (a worker lost to the OOM killer or a segfault), every time it runs."""

    category = "test"
    output_node = True
    inputs = {"model": Socket(types.STRING), "crash": Boolean(True)}
    outputs = ()

    def run(self, ctx, model, crash):
        if crash:
            os.kill(os.getpid(), signal.SIGKILL)
        return Result((), {"model": [model]})


RAY_NODES = (RayCheckpoint, RayWork, RayCrash)


def registry(with_library: bool = False) -> Registry:
    """The test nodes (and the built-in node library when asked: the SD nodes for image tests)."""
    base = discover(Registry()) if with_library else Registry()
    return base.add_all(SERVER_NODES).add_all(RAY_NODES)


def work_graph(ckpt: str, seed: int = 0, steps: int = 3, delay: float = 0.05, marker_dir: str = "",
               tag: str = "work") -> dict[str, Any]:
    return {
        "1": {"class_type": "RayCheckpoint", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "RayWork", "inputs": {"model": ["1", 0], "seed": seed, "steps": steps, "delay": delay,
                                                  "marker_dir": marker_dir, "tag": tag}},
    }


def crash_graph(ckpt: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "RayCheckpoint", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "RayCrash", "inputs": {"model": ["1", 0], "crash": True}},
    }


def make_checkpoints(models_dir: Path, *names: str) -> None:
    folder = models_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"not really a model")


def init_ray(num_cpus: int = 2) -> Any:
    """A private Ray on loopback with 2 CPUs and no dashboard; actors can import the test modules."""
    import ray

    if not ray.is_initialized():
        ray.init(  # "local": always a new private instance, never a cluster already running on this host
            address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
            namespace="diffgraph-tests",
            runtime_env={"env_vars": {"PYTHONPATH": str(TESTS_DIR), "HF_HUB_OFFLINE": "1"}},
        )
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}
    return ray


class RayServer:
    """The app with a Ray pool on 127.0.0.1:<free port>, its own event loop in a thread."""

    def __init__(self, data_dir: Path, folders: Folders, registry: Registry, options: RayPoolOptions) -> None:
        config = server_config(data_dir)
        self.folders = folders
        self.app = create_app(config, registry, folders, partial(pool_for_state, options=options))
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: self.loop.run_until_complete(self._serve()), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pool(self) -> RayPool:
        return self.app[STATE_KEY].pool

    async def _serve(self) -> None:
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def start(self, timeout: float = 120.0) -> RayServer:
        self._thread.start()
        if not self._ready.wait(timeout) or not self.pool.wait_ready(timeout):
            raise RuntimeError("the Ray test server did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
