"""Server submit latency and queue integrity: 1,000 prompts of a trivial graph POSTed concurrently over
loopback to a real `diffgraph serve` (subprocess, fresh data folder). Prints p50/p99/max submit latency,
submissions per second, the time until all ran, and checks none was lost (goal: p99 < 20 ms).

    python bench/server.py [--prompts 1000] [--concurrency 32 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def start_server(data_dir: Path) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "tests"), env.get("PYTHONPATH")]))
    env["DIFFGRAPH_NODE_MODULES"] = "test_server_support:node_classes"
    script = Path(sys.executable).parent / "diffgraph"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "graphcore.cli"]
    process = subprocess.Popen(
        [*command, "serve", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert process.stdout is not None
    for line in process.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return process, match.group(1)
    raise RuntimeError("diffgraph serve did not start")


def graph(value: int) -> dict:
    return {
        "1": {"class_type": "SrvNumber", "inputs": {"value": value}},
        "2": {"class_type": "SrvResult", "inputs": {"value": ["1", 0]}},
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


async def round_trip(url: str, prompts: int, concurrency: int, first_value: int) -> dict:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        latencies: list[float] = []
        ids: list[str] = []
        failures = 0

        async def post(value: int) -> None:
            nonlocal failures
            started = time.perf_counter()
            async with session.post(f"{url}/prompt", json={"prompt": graph(value)}) as response:
                body = await response.json()
            latencies.append(time.perf_counter() - started)
            if response.status == 200:
                ids.append(body["prompt_id"])
            else:
                failures += 1

        # `concurrency` clients, each posting its share back to back: a latency is one request's own time,
        # never time spent waiting for a free connection in this process.
        values = iter(range(first_value, first_value + prompts))

        async def client() -> None:
            for value in values:
                await post(value)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        submitted = time.perf_counter() - began
        while True:
            async with session.get(f"{url}/prompt") as response:
                remaining = (await response.json())["exec_info"]["queue_remaining"]
            if remaining == 0:
                break
            await asyncio.sleep(0.05)
        drained = time.perf_counter() - began
        async with session.get(f"{url}/history") as response:
            history = await response.json()
    succeeded = sum(1 for pid in ids if history.get(pid, {}).get("status", {}).get("status_str") == "success")
    return {
        "latencies": latencies, "submitted_s": submitted, "drained_s": drained, "accepted": len(ids),
        "failures": failures, "executed": succeeded, "lost": len([pid for pid in ids if pid not in history]),
    }


def report(concurrency: int, prompts: int, result: dict) -> None:
    ms = [value * 1000 for value in result["latencies"]]
    print(f"\n{prompts} prompts, {concurrency} in flight")
    print(f"  submit latency  p50 {percentile(ms, 0.50):6.2f} ms   p99 {percentile(ms, 0.99):6.2f} ms   "
          f"max {max(ms):6.2f} ms   mean {statistics.mean(ms):6.2f} ms")
    print(f"  submitted in {result['submitted_s']:.2f} s ({prompts / result['submitted_s']:.0f}/s); "
          f"all run after {result['drained_s']:.2f} s ({prompts / result['drained_s']:.0f} prompts/s)")
    print(f"  accepted {result['accepted']}, rejected {result['failures']}, executed {result['executed']}, "
          f"lost {result['lost']}")


async def main_async(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="diffgraph-bench-") as data:
        process, url = start_server(Path(data))
        try:
            await round_trip(url, 50, 8, 10**9)  # warm-up (not reported)
            ok = True
            for index, concurrency in enumerate(args.concurrency):
                result = await round_trip(url, args.prompts, concurrency, index * args.prompts)
                report(concurrency, args.prompts, result)
                ok &= result["executed"] == args.prompts and result["lost"] == 0 and result["failures"] == 0
            print("\nall executed, none lost" if ok else "\nFAILED: prompts were lost or failed")
            return 0 if ok else 1
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32, 1000])
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
