"""What the route handlers share: the store, the worker pool, the WebSocket hub, and the threads that keep
blocking work (SQLite, validation) off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from graphcore.folders import Folders
from graphcore.registry import Registry
from graphcore.server.config import ServerConfig
from graphcore.server.prompt_events import message
from graphcore.server.queue_store import DuplicatePromptId, QueuedPrompt, QueueStore
from graphcore.server.websocket import Hub
from graphcore.server.worker import LocalPool, WorkerPool

log = logging.getLogger(__name__)
T = TypeVar("T")
PoolFactory = Callable[["ServerState"], WorkerPool]


class ServerState:
    def __init__(
        self, config: ServerConfig, registry: Registry, folders: Folders, pool_factory: PoolFactory | None = None
    ) -> None:
        self.config = config
        self.registry = registry
        self.folders = folders
        self.hub = Hub()
        self.pool_factory = pool_factory or _local_pool
        self.store: QueueStore | None = None
        self.pool: WorkerPool | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="diffgraph-db")
        self._cpu_threads = ThreadPoolExecutor(2, thread_name_prefix="diffgraph-cpu")
        self._number = 0
        self._batch: list[tuple[QueuedPrompt, asyncio.Future]] = []
        self._flushing = False
        self._waiters: dict[str, set[asyncio.Future]] = {}
        self._status_scheduled = False

    # -- life cycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.hub.bind(self.loop)
        self.config.workflows_dir.mkdir(parents=True, exist_ok=True)
        self.folders.create()
        self.store = await self.db(QueueStore, self.config.queue_path, self.config.history_size)
        requeued, failed = await self.db(self.store.recover)
        if requeued or failed:
            log.info("resuming %d prompt(s) interrupted by a stop; %d given up", len(requeued), len(failed))
        self._number = int(await self.db(self.store.max_number)) + 1
        self.pool = self.pool_factory(self)
        self.pool.start()
        remaining = await self.db(self.store.remaining)
        log.info("queue: %s (%d prompt(s) pending)", self.config.queue_path, remaining)

    async def stop(self) -> None:
        if self.pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.pool.stop)
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        if self.store is not None:
            await self.db(self.store.close)
        self._db_thread.shutdown(wait=True)
        self._cpu_threads.shutdown(wait=False)

    # -- threads -------------------------------------------------------------------------------------------

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    async def cpu(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._cpu_threads, fn, *args)

    async def big_json(self, value: Any) -> web.Response:
        """A JSON answer encoded off the event loop (a full history or object_info can be megabytes)."""
        text = await self.cpu(json.dumps, value)
        return web.Response(text=text, content_type="application/json")

    # -- submission -----------------------------------------------------------------------------------------

    def next_number(self, front: bool) -> int:
        number = self._number
        self._number += 1
        return -number if front else number

    async def enqueue(self, item: QueuedPrompt) -> None:
        """Store the prompt (group commit: one transaction for everything submitted meanwhile), then wake
        the workers. Raises DuplicatePromptId."""
        future = asyncio.get_running_loop().create_future()
        self._batch.append((item, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        await future
        assert self.pool is not None
        self.pool.wake()
        self.queue_changed()

    async def _flush(self) -> None:
        assert self.store is not None
        try:
            while self._batch:
                batch, self._batch = self._batch, []
                try:
                    added = await self.db(self.store.add_many, [item for item, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for item, future in batch:
                    if future.done():
                        continue
                    if item.prompt_id in added:
                        future.set_result(None)
                    else:
                        future.set_exception(DuplicatePromptId(f"a prompt with id {item.prompt_id!r} already exists"))
        finally:
            self._flushing = False

    # -- completion -----------------------------------------------------------------------------------------

    def waiter(self, prompt_id: str) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(prompt_id, set()).add(future)
        return future

    def forget_waiter(self, prompt_id: str, future: asyncio.Future) -> None:
        futures = self._waiters.get(prompt_id)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiters[prompt_id]

    def prompts_ended(self, prompt_ids: list[str]) -> None:
        """On the loop: prompts finished or were removed from the queue."""
        for prompt_id in prompt_ids:
            for future in self._waiters.pop(prompt_id, ()):
                if not future.done():
                    future.set_result(None)
        if prompt_ids:
            self.queue_changed()

    def prompt_finished_threadsafe(self, prompt_id: str) -> None:
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self.loop.call_soon_threadsafe(self.prompts_ended, [prompt_id])

    # -- queue status ---------------------------------------------------------------------------------------

    def queue_changed(self) -> None:
        """Broadcast the queue length soon; many changes in a burst make one message."""
        if self._status_scheduled or not self.hub.clients:
            return
        self._status_scheduled = True
        asyncio.get_running_loop().call_later(
            self.config.status_debounce, lambda: asyncio.ensure_future(self._broadcast_status())
        )

    async def _broadcast_status(self) -> None:
        self._status_scheduled = False
        assert self.store is not None
        try:
            remaining = await self.db(self.store.remaining)
        except Exception:
            log.exception("could not count the queue")
            return
        self.hub.broadcast(status_message(remaining))


def status_message(remaining: int, sid: str | None = None) -> str:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": remaining}}}
    if sid is not None:
        data["sid"] = sid
    return message("status", data)


def _local_pool(state: ServerState) -> WorkerPool:
    assert state.store is not None
    return LocalPool(
        state.store,
        state.registry,
        state.folders,
        state.hub,
        on_finished=state.prompt_finished_threadsafe,
        devices=state.config.devices,
        preview_interval=state.config.preview_interval,
        preview_max_side=state.config.preview_max_side,
    )


STATE_KEY = web.AppKey("diffgraph_state", ServerState)
