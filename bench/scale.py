"""Ray pool scaling on CPU: 40 prompts of a tiny SD1 txt2img workflow (two checkpoints, alternating) run by
1 vs 2 Ray actors of 1 CPU each, with and without model-affinity routing, on a private local Ray (loopback,
2 CPUs). Prints the throughput of each setup, the 2-actor / 1-actor ratio (goal ≥ 1.7 with 2 cores), the
checkpoint loads per actor, and the load average seen (other jobs on the machine skew the figures).

Actor start-up and the first import of torch/diffusers in each actor are done before the clock starts;
checkpoint loads are part of the measured work (that is what affinity saves).

    python bench/scale.py [--prompts 40] [--steps 8] [--size 64] [--reference] [--baseline]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback only
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from graphcore import folders as folder_config  # noqa: E402
from graphcore.registry import discover  # noqa: E402
from graphcore.server.queue_store import QueuedPrompt, QueueStore  # noqa: E402
from graphcore.server.ray_pool import RayPool, RayPoolOptions  # noqa: E402

CHECKPOINTS = ("tiny_a", "tiny_b")


class NoClients:
    def wants(self, client_id):
        return False

    def send_text(self, client_id, text):
        pass

    def send_bytes(self, client_id, frame):
        pass


def txt2img(checkpoint: str, seed: int, steps: int, size: int) -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": f"{checkpoint}.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": f"a cube number {seed}", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "scale/img"}},
    }


def make_models(root: Path) -> folder_config.Folders:
    from support.tiny_models import build

    folders = folder_config.Folders(root / "models", root / "input", root / "output", root / "temp").create()
    for seed, name in enumerate(CHECKPOINTS):
        build("sd1", root / f"build-{name}", seed=seed).link_into(folders.models_dir / "checkpoints", name=name)
    return folder_config.configure(folders)


def warm_up() -> None:
    """In an actor: import what a txt2img run imports, so the clock measures generation, not imports."""
    import diffusers  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import nodes.sd.loading  # noqa: F401


def checkpoint_loads() -> dict[str, int]:
    """In an actor: checkpoints loaded (one UNet each; on CPU nothing is ever evicted) and modules loaded."""
    from nodes.sd.model_manager import manager

    unets = [record for record in manager().loaded() if record.key[1] == "unet"]
    return {"checkpoint loads": len(unets), "module loads": manager().loads}


def run_setup(label: str, folders, registry, root: Path, actors: int, cpus: float, affinity: bool,
              prompts: int, steps: int, size: int) -> dict:
    store = QueueStore(root / f"queue-{label}.sqlite3")
    finished: list[str] = []
    done = threading.Event()

    def on_finished(prompt_id: str) -> None:
        finished.append(prompt_id)
        if len(finished) == prompts:
            done.set()

    pool = RayPool(store, registry, folders, NoClients(), on_finished=on_finished,
                   options=RayPoolOptions(actors=actors, cpus_per_actor=cpus, affinity=affinity))
    pool.start()
    try:
        if not pool.wait_ready(300):
            raise RuntimeError("the actors did not start")
        pool.call_on_actors(warm_up, timeout=300)
        items = [QueuedPrompt(f"{label}-{i}", i, txt2img(CHECKPOINTS[i % 2], i, steps, size)) for i in range(prompts)]
        load_before = os.getloadavg()[0]
        cpu_before = pool.call_on_actors(time.process_time)
        server_cpu_before = time.process_time()
        started = time.perf_counter()
        store.add_many(items)
        pool.wake()
        if not done.wait(1800):
            raise RuntimeError(f"only {len(finished)} of {prompts} prompts finished")
        elapsed = time.perf_counter() - started
        server_cpu = time.process_time() - server_cpu_before
        cpu_after = pool.call_on_actors(time.process_time)
        actor_cpu = sum(cpu_after[key] - cpu_before[key] for key in cpu_after)
        load_after = os.getloadavg()[0]
        history = store.history()
        failed = [pid for pid, entry in history.items() if entry["status"]["status_str"] != "success"]
        run_times = [_run_seconds(entry) for entry in history.values()]
        stats = pool.actor_stats()
        loads = pool.call_on_actors(checkpoint_loads)
    finally:
        pool.stop()
        store.close()
    per_actor = {key: {"prompts": stats[key]["prompts"], **loads[key],
                       "holds": sorted(name for _, name in stats[key]["models"])} for key in stats}
    return {"label": label, "elapsed": elapsed, "throughput": prompts / elapsed, "failed": failed,
            "per_actor": per_actor, "load": (load_before, load_after), "mean_run": sum(run_times) / len(run_times),
            "actor_cpu": actor_cpu / prompts, "server_cpu": server_cpu / prompts}


def _plain_worker(root: str, checkpoint_index: int | None, count: int, steps: int, size: int, ready, go,
                  results) -> None:
    """A process without Ray: the same prompts through an Executor on 1 thread; puts the seconds they took."""
    import torch

    torch.set_num_threads(1)
    from graphcore.executor import Executor

    base = Path(root)
    folders = folder_config.configure(folder_config.Folders(base / "models", base / "plain-input",
                                                            base / "plain-output", base / "temp").create())
    executor = Executor(discover(), folders=folders)
    warm_up()
    ready.wait()
    go.wait()
    started = time.perf_counter()
    for i in range(count):
        index = checkpoint_index if checkpoint_index is not None else i % 2
        result = executor.run(txt2img(CHECKPOINTS[index], 10_000 + i, steps, size))
        assert result.ok, result.error
    results.put(time.perf_counter() - started)


def plain_processes(root: Path, prompts: int, steps: int, size: int) -> tuple[float, float]:
    """What this machine allows without Ray: all prompts in 1 process vs half each in 2 processes at once (one
    checkpoint each, like perfect affinity). Returns (seconds for 1 process, seconds for 2)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    timings = []
    for shares in ([(None, prompts)], [(0, prompts // 2), (1, prompts - prompts // 2)]):
        ready, go, results = context.Barrier(len(shares) + 1), context.Event(), context.Queue()
        processes = [context.Process(target=_plain_worker, args=(str(root), index, count, steps, size, ready, go,
                                                                 results)) for index, count in shares]
        for process in processes:
            process.start()
        ready.wait(600)
        go.set()
        timings.append(max(results.get(timeout=1800) for _ in processes))
        for process in processes:
            process.join(60)
    return timings[0], timings[1]


def _run_seconds(entry: dict) -> float:
    """execution_start → execution_success of one history entry, in seconds."""
    stamps = {name: data["timestamp"] for name, data in entry["status"]["messages"]}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--reference", action="store_true", help="also 1 actor with 2 CPUs (2 torch threads)")
    parser.add_argument("--baseline", action="store_true", help="also 1 vs 2 plain processes without Ray")
    args = parser.parse_args()

    import ray

    root = Path(tempfile.mkdtemp(prefix="diffgraph-scale-"))
    folders = make_models(root)
    registry = discover()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="diffgraph-bench",
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()}")
    setups = [("1 actor", 1, 1.0, True), ("2 actors", 2, 1.0, True), ("2 actors, no affinity", 2, 1.0, False)]
    if args.reference:
        setups.append(("1 actor, 2 CPUs", 1, 2.0, True))
    results = []
    for label, actors, cpus, affinity in setups:
        result = run_setup(label.replace(" ", "_").replace(",", ""), folders, registry, root, actors, cpus, affinity,
                           args.prompts, args.steps, args.size)
        result["label"] = label
        results.append(result)
        print(f"\n{label}: {args.prompts} prompts in {result['elapsed']:.1f} s = {result['throughput']:.2f} prompts/s"
              f", {result['mean_run']:.2f} s per prompt in an actor (load average {result['load'][0]:.2f} →"
              f" {result['load'][1]:.2f}; failed: {len(result['failed'])})")
        print(f"  CPU per prompt: {result['actor_cpu']:.3f} s in the actors, {result['server_cpu']:.3f} s in the"
              " server")
        for key, figures in sorted(result["per_actor"].items()):
            print(f"  {key}: {figures}")
    ray.shutdown()
    one, two = results[0], results[1]
    print(f"\nthroughput 2 actors / 1 actor: {two['throughput'] / one['throughput']:.2f}× (goal ≥ 1.7×)")
    if args.baseline:
        single, double = plain_processes(root, args.prompts, args.steps, args.size)
        print(f"without Ray, {args.prompts} prompts: 1 process {single:.1f} s, 2 processes {double:.1f} s ="
              f" {single / double:.2f}× (what this machine allows now; load average {os.getloadavg()[0]:.2f})")
    no_affinity = results[2]
    for name, result in (("with", two), ("without", no_affinity)):
        loads = {key: figures["checkpoint loads"] for key, figures in sorted(result["per_actor"].items())}
        print(f"checkpoint loads per actor {name} affinity: {loads} (total {sum(loads.values())})")


if __name__ == "__main__":
    main()
