"""`diffgraph serve --workers ray[://ADDRESS]`: the server's queue run by Ray actors, one per GPU (or per
`cpus_per_actor` CPUs without GPUs), each with its own executor, output cache and loaded models.

The SQLite queue and history stay on the server and remain the only truth: a dispatcher thread looks at
the head of the queue, lets the `Router` pick an idle actor for each prompt (model affinity, bounded
overtaking), claims the prompt in the store and hands it to that actor's `ActorSlot`, which streams the
events back and writes the history entry. Ray is imported only here, and only when this pool is asked for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from graphcore.folders import Folders
from graphcore.registry import Registry
from graphcore.server.prompt_events import EventSink
from graphcore.server.queue_store import QueueStore
from graphcore.server.ray_routing import ModelKey, Pending, Router, model_needs
from graphcore.server.ray_runner import PromptRunner, RunnerSettings
from graphcore.server.ray_slot import ActorSlot, wait_until

if TYPE_CHECKING:
    from graphcore.server.state import PoolFactory, ServerState

log = logging.getLogger(__name__)
INSTALL_HINT = "pip install 'diffgraph[ray]' (or: pip install 'ray[client]')"


class RayPoolError(Exception):
    """Ray is missing, the --workers value is wrong, or the cluster cannot be reached (one clear line)."""


@dataclass
class RayPoolOptions:
    actors: int | None = None  # default: one per GPU in the cluster, else CPUs // cpus_per_actor
    cpus_per_actor: float = 4.0  # without GPUs; with GPUs each actor takes 1 GPU and 1 CPU
    affinity: bool = True  # route prompts to the actor that holds their checkpoint
    max_skips: int = 4  # how often a pending prompt may be overtaken by a warm one before it goes first
    window: int = 32  # pending prompts looked at per dispatch
    models_dir: str | None = None  # the models folder's path on the workers (default: the server's)
    start_timeout: float = 300.0  # seconds an actor may take to start (its node may still be coming up)
    idle_check: float = 10.0  # seconds between liveness checks of an idle actor (a dead one is replaced)
    actor_options: dict[str, Any] = field(default_factory=dict)  # more Ray options (resources, runtime_env, …)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RayPoolOptions:
        """DIFFGRAPH_RAY_ACTORS, DIFFGRAPH_RAY_CPUS_PER_ACTOR, DIFFGRAPH_RAY_AFFINITY=0,
        DIFFGRAPH_RAY_MODELS_DIR."""
        env = os.environ if environ is None else environ
        options = cls()
        try:
            if env.get("DIFFGRAPH_RAY_ACTORS"):
                options.actors = int(env["DIFFGRAPH_RAY_ACTORS"])
            if env.get("DIFFGRAPH_RAY_CPUS_PER_ACTOR"):
                options.cpus_per_actor = float(env["DIFFGRAPH_RAY_CPUS_PER_ACTOR"])
        except ValueError as exc:
            raise RayPoolError(f"DIFFGRAPH_RAY_ACTORS / DIFFGRAPH_RAY_CPUS_PER_ACTOR: {exc}") from None
        options.affinity = env.get("DIFFGRAPH_RAY_AFFINITY", "1") not in ("0", "false", "no")
        options.models_dir = env.get("DIFFGRAPH_RAY_MODELS_DIR") or None
        return options


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayPoolError(f"--workers ray needs Ray, which is not installed here: {INSTALL_HINT}") from None
    return ray


def parse_workers(spec: str) -> str | None:
    """The Ray address of a --workers value: None for 'ray' (RAY_ADDRESS, a local cluster, or a new one)."""
    if spec == "ray":
        return None
    if spec.startswith("ray://") and len(spec) > len("ray://"):
        return spec
    raise RayPoolError(f"--workers {spec!r}: expected 'local', 'ray' or 'ray://HOST:PORT'")


def ray_pool_factory(spec: str, options: RayPoolOptions | None = None) -> PoolFactory:
    """Connect to Ray now (so a wrong address fails before the server listens); the pool starts with the app."""
    address = parse_workers(spec)
    ray = import_ray()
    options = options or RayPoolOptions.from_env()
    owns_ray = not ray.is_initialized()
    if owns_ray:
        try:
            ray.init(address=address, namespace="diffgraph")
        except Exception as exc:
            where = address or os.environ.get("RAY_ADDRESS") or "this machine"
            raise RayPoolError(f"could not start or reach Ray at {where}: {exc}") from None

    return partial(pool_for_state, options=options, owns_ray=owns_ray)


def pool_for_state(state: ServerState, options: RayPoolOptions | None = None, owns_ray: bool = False) -> RayPool:
    """The server's Ray pool (a `PoolFactory` once the options are bound)."""
    assert state.store is not None
    return RayPool(
        state.store, state.registry, state.folders, state.hub, on_finished=state.prompt_finished_threadsafe,
        options=options, preview_interval=state.config.preview_interval,
        preview_max_side=state.config.preview_max_side, owns_ray=owns_ray,
    )


class RayPool:
    def __init__(
        self,
        store: QueueStore,
        registry: Registry,
        folders: Folders,
        sink: EventSink,
        on_finished: Callable[[str], None] = lambda prompt_id: None,
        options: RayPoolOptions | None = None,
        preview_interval: float = 0.1,
        preview_max_side: int = 512,
        owns_ray: bool = False,
    ) -> None:
        self.store = store
        self.registry = registry
        self.folders = folders
        self.sink = sink
        self.on_finished = on_finished
        self.options = options or RayPoolOptions()
        self.preview_interval = preview_interval
        self.preview_max_side = preview_max_side
        self.owns_ray = owns_ray
        self.router = Router(self.options.affinity, self.options.max_skips)
        self.earlier_attempts: dict[str, list] = {}  # prompt_id → history messages of runs whose worker died
        self.stopping = False
        self.slots: list[ActorSlot] = []
        self.ray: Any = None
        self.death_errors: tuple[type[BaseException], ...] = ()
        self._needs: dict[str, frozenset[ModelKey]] = {}
        self._wake = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="diffgraph-ray-dispatch", daemon=True)
        self._remote_class: Any = None
        self._actor_resources: dict[str, Any] = {}

    # -- WorkerPool ----------------------------------------------------------------------------------------

    def start(self) -> None:
        ray = self.ray = import_ray()
        if not ray.is_initialized():
            ray.init(namespace="diffgraph")
            self.owns_ray = True
        errors = ray.exceptions
        self.death_errors = (errors.RayActorError, errors.WorkerCrashedError, errors.ObjectLostError,
                             getattr(errors, "OutOfMemoryError", errors.RayActorError))
        count, self._actor_resources = self._plan_actors(ray.cluster_resources())
        self._remote_class = ray.remote(PromptRunner)
        log.info("ray: %d actor(s), each with %s", count, self._actor_resources)
        self.slots = [ActorSlot(self, index) for index in range(count)]
        for slot in self.slots:
            slot.thread.start()
        self._dispatcher.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping = True
        self.wake()
        self.interrupt(None)
        deadline = time.monotonic() + timeout
        for slot in self.slots:
            slot.wake()
        for slot in self.slots:
            slot.thread.join(max(0.0, deadline - time.monotonic()))
        self._dispatcher.join(max(0.0, deadline - time.monotonic()))
        handles = [slot.actor for slot in self.slots if slot.actor is not None]
        if handles:
            try:
                self.ray.get([handle.close.remote() for handle in handles], timeout=5)
            except Exception:
                log.debug("ray: could not clean an actor's scratch folder", exc_info=True)
        for handle in handles:
            self.kill_actor(handle)
        if self.owns_ray and self.ray is not None:
            self.ray.shutdown()

    def wake(self) -> None:
        self._wake.set()

    def interrupt(self, prompt_id: str | None = None) -> list[str]:
        stopped = []
        for slot in self.slots:
            item, actor = slot.item, slot.actor
            if item is not None and actor is not None and prompt_id in (None, item.prompt_id):
                actor.interrupt.remote(item.prompt_id)
                stopped.append(item.prompt_id)
        return stopped

    def running(self) -> dict[str, tuple[str | None, str | None]]:
        found = {}
        for slot in self.slots:
            item, events = slot.item, slot.events
            if item is not None:
                found[item.prompt_id] = (item.client_id, events.current_node if events else None)
        return found

    def request_free(self, unload_models: bool, free_memory: bool) -> None:
        for slot in self.slots:
            actor = slot.actor
            if actor is not None:
                actor.free.remote(unload_models, free_memory)
                if unload_models:
                    slot.models = set()

    # -- beyond the protocol: for the CLI, tests and benchmarks ---------------------------------------------

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """True once every actor has started."""
        return wait_until(lambda: all(slot.state in ("idle", "busy") for slot in self.slots), timeout)

    def call_on_actors(self, fn: Callable[[], Any], timeout: float = 60.0) -> dict[str, Any]:
        """slot key → fn() run in that actor's process (e.g. its model-load counter)."""
        live = [(slot.key, slot.actor) for slot in self.slots if slot.actor is not None]
        values = self.ray.get([actor.call.remote(fn) for _, actor in live], timeout=timeout)
        return {key: value for (key, _), value in zip(live, values, strict=True)}

    def actor_stats(self, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
        live = [(slot.key, slot.actor) for slot in self.slots if slot.actor is not None]
        values = self.ray.get([actor.stats.remote() for _, actor in live], timeout=timeout)
        return {key: value for (key, _), value in zip(live, values, strict=True)}

    # -- used by the slots -------------------------------------------------------------------------------

    def new_actor(self, name: str) -> Any:
        settings = RunnerSettings(
            name=name,
            node_classes=list(self.registry.classes.values()),
            models_dir=self.options.models_dir or str(self.folders.models_dir),
            extra_model_roots={kind: [str(p) for p in paths] for kind, paths in self.folders.extra_roots.items()},
            preview_interval=self.preview_interval,
            preview_max_side=self.preview_max_side,
        )
        options = {"max_concurrency": 4, "max_restarts": 0, "max_task_retries": 0, **self._actor_resources,
                   **self.options.actor_options}
        return self._remote_class.options(**options).remote(settings)

    def kill_actor(self, handle: Any) -> None:
        try:
            self.ray.kill(handle, no_restart=True)
        except Exception:
            log.debug("ray: could not kill an actor", exc_info=True)

    # -- inside --------------------------------------------------------------------------------------------

    def _plan_actors(self, resources: dict[str, float]) -> tuple[int, dict[str, Any]]:
        gpus = int(resources.get("GPU", 0))
        cpus = resources.get("CPU", 1.0)
        if gpus:
            count, each = gpus, {"num_gpus": 1, "num_cpus": min(1.0, cpus / gpus)}
        else:
            per_actor = min(self.options.cpus_per_actor, cpus)
            count, each = max(1, int(cpus // per_actor)), {"num_cpus": per_actor}
        return (self.options.actors or count), each

    def _dispatch_loop(self) -> None:
        while not self.stopping:
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self.stopping:
                return
            try:
                self._dispatch()
            except Exception:  # the store failed (disk full, …): keep dispatching later
                log.exception("ray: dispatching failed")
                time.sleep(1.0)

    def _dispatch(self) -> None:
        idle = [slot for slot in self.slots if slot.state == "idle" and slot.item is None]
        if not idle:
            return
        window = self.store.pending_ids(self.options.window)
        for prompt_id in window:
            if prompt_id not in self._needs:
                prompt = self.store.pending_prompt(prompt_id)
                self._needs[prompt_id] = model_needs(prompt, self.registry) if prompt else frozenset()
        self._needs = {prompt_id: self._needs[prompt_id] for prompt_id in window}
        self.router.forget(window)
        pending = [Pending(prompt_id, self._needs[prompt_id]) for prompt_id in window]
        by_key = {slot.key: slot for slot in self.slots}
        live = [slot.load() for slot in self.slots if slot.state in ("idle", "busy")]
        for prompt_id, key in self.router.assign(pending, live):
            slot = by_key[key]
            item = self.store.claim_prompt(prompt_id, key)
            if item is not None:
                slot.assign(item, set(self._needs.get(prompt_id, ())))
