"""The real `diffgraph serve` in a subprocess, driven over HTTP and WebSocket; and a kill -9 while 20
prompts are pending, after which a restarted server runs all of them."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import pytest
from test_server_support import save_graph, slow_graph

TESTS_DIR = Path(__file__).resolve().parent
pytestmark = pytest.mark.asyncio


def diffgraph_command() -> list[str]:
    script = Path(sys.executable).parent / "diffgraph"
    return [str(script)] if script.exists() else [sys.executable, "-m", "graphcore.cli"]


class ServeProcess:
    def __init__(self, data_dir: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
        env["DIFFGRAPH_NODE_MODULES"] = "test_server_support:node_classes"
        env["DIFFGRAPH_DATA_DIR"] = str(data_dir)
        self.process = subprocess.Popen(
            [*diffgraph_command(), "serve", "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        )
        self.url = self._wait_for_address()

    def _wait_for_address(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        lines = []
        assert self.process.stdout is not None
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                # Keep reading the server's output so a full pipe never blocks it.
                threading.Thread(target=self.process.stdout.read, daemon=True).start()
                return match.group(1)
        self.process.kill()
        raise AssertionError("diffgraph serve did not start:\n" + "".join(lines))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


async def history_until(session, url, prompt_ids, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(f"{url}/history") as response:
            history = await response.json()
        if all(pid in history for pid in prompt_ids) or time.monotonic() > deadline:
            return history
        await asyncio.sleep(0.1)


async def test_real_server_runs_a_prompt_over_http_and_websocket(tmp_path):
    server = ServeProcess(tmp_path / "data")
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{server.url}/ws?clientId=sub")
            assert json.loads((await ws.receive(timeout=10)).data)["type"] == "status"
            async with session.post(f"{server.url}/prompt", json={"prompt": slow_graph(steps=3, delay=0.01),
                                                                  "client_id": "sub"}) as response:
                assert response.status == 200
                prompt_id = (await response.json())["prompt_id"]
            kinds, frames = [], []
            while True:
                msg = await ws.receive(timeout=20)
                if msg.type == aiohttp.WSMsgType.BINARY:
                    frames.append(msg.data)
                    continue
                event = json.loads(msg.data)
                kinds.append(event["type"])
                if event["type"] == "executing" and event["data"]["node"] is None:
                    break
            assert [k for k in kinds if k != "status"] == [
                "execution_start", "execution_cached", "executing", "executing", "progress", "progress", "progress",
                "executing", "executed", "execution_success", "executing",
            ]
            assert frames and all(struct.unpack(">II", frame[:8]) == (1, 1) for frame in frames)
            history = await history_until(session, server.url, [prompt_id])
            image = history[prompt_id]["outputs"]["3"]["images"][0]
            async with session.get(f"{server.url}/view", params=image) as response:
                assert response.status == 200 and (await response.read())[:8] == b"\x89PNG\r\n\x1a\n"
            async with session.get(f"{server.url}/object_info/SrvSave") as response:
                assert "SrvSave" in await response.json()
            await ws.close()
    finally:
        assert server.stop() == 0


async def test_pending_prompts_survive_kill_9_and_all_run_after_a_restart(tmp_path):
    data_dir = tmp_path / "data"
    server = ServeProcess(data_dir)
    async with aiohttp.ClientSession() as session:
        blocker_graph = slow_graph(value=1000, steps=300, delay=0.01, preview=False)
        async with session.post(f"{server.url}/prompt", json={"prompt": blocker_graph}) as response:
            blocker = (await response.json())["prompt_id"]
        ids = []
        for value in range(20):
            async with session.post(f"{server.url}/prompt", json={"prompt": save_graph(value)}) as response:
                assert response.status == 200
                ids.append((await response.json())["prompt_id"])
        async with session.get(f"{server.url}/queue") as response:
            queue = await response.json()
        assert [item[1] for item in queue["queue_running"]] == [blocker]
        assert [item[1] for item in queue["queue_pending"]] == ids
        server.stop(signal.SIGKILL)

        restarted = ServeProcess(data_dir)
        try:
            history = await history_until(session, restarted.url, [blocker, *ids])
            assert set(ids) <= set(history), f"lost: {set(ids) - set(history)}"
            for prompt_id in [blocker, *ids]:
                assert history[prompt_id]["status"]["status_str"] == "success"
            assert [history[pid]["prompt"][2]["1"]["inputs"]["value"] for pid in ids] == list(range(20))
            saved = sorted((data_dir / "output" / "srv").glob("img_*.png"))
            assert len(saved) == 20
            async with session.get(f"{restarted.url}/queue") as response:
                assert await response.json() == {"queue_running": [], "queue_pending": []}
        finally:
            assert restarted.stop() == 0


async def test_node_modules_from_the_environment(monkeypatch):
    from graphcore.registry import discover

    monkeypatch.setenv("DIFFGRAPH_NODE_MODULES", "test_server_support:node_classes, engine_nodes:ALL")
    found = discover()
    assert "SrvSave" in found and "Number" in found
    monkeypatch.setenv("DIFFGRAPH_NODE_MODULES", "no_such_module:nodes")
    with pytest.raises(ImportError, match="DIFFGRAPH_NODE_MODULES"):
        discover()
