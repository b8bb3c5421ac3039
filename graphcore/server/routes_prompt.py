"""The queue: /prompt, /run, /queue, /interrupt, /history (ComfyUI's shapes)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from graphcore.server.bodies import PROMPT_ROUTE, field_bool, field_id, field_str_list, query_int, read_object
from graphcore.server.state import STATE_KEY, ServerState
from graphcore.server.submit import parse_submission, submit


def add_routes(routes) -> None:
    routes.get("/prompt", get_prompt)
    routes.post("/prompt", post_prompt)
    routes.post("/run", post_run)
    routes.get("/queue", get_queue)
    routes.post("/queue", post_queue)
    routes.post("/interrupt", post_interrupt)
    routes.get("/history", get_history)
    routes.get("/history/{prompt_id}", get_history_item)
    routes.post("/history", post_history)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE_KEY]


async def get_prompt(request: web.Request) -> web.Response:
    state = _state(request)
    remaining = await state.db(state.store.remaining)
    return web.json_response({"exec_info": {"queue_remaining": remaining}})


async def post_prompt(request: web.Request) -> web.Response:
    """ComfyUI's submission; `"wait": true` answers once the prompt ended, with its outputs."""
    request[PROMPT_ROUTE] = True
    state = _state(request)
    body = await read_object(request, state.config.max_json_bytes)
    return await submit(state, parse_submission(body))


async def post_run(request: web.Request) -> web.Response:
    """Like POST /prompt with `"wait": true`: the answer carries the outputs (and base64 on request)."""
    request[PROMPT_ROUTE] = True
    state = _state(request)
    body = await read_object(request, state.config.max_json_bytes)
    return await submit(state, parse_submission(body, wait_default=True))


async def get_queue(request: web.Request) -> web.Response:
    state = _state(request)
    running, pending = await state.db(state.store.queue)
    return await state.big_json({
        "queue_running": [item.queue_item() for item in running],
        "queue_pending": [item.queue_item() for item in pending],
    })


async def post_queue(request: web.Request) -> web.Response:
    """{"clear": true} empties the pending queue; {"delete": [prompt_id, …]} removes those pending prompts."""
    state = _state(request)
    body = await read_object(request, state.config.max_json_bytes, allow_empty=True)
    clear, delete = field_bool(body, "clear"), field_str_list(body, "delete")
    removed: list[str] = []
    if clear:
        removed += await state.db(state.store.delete_pending, None)
    if delete:
        removed += await state.db(state.store.delete_pending, delete)
    state.prompts_ended(removed)
    return web.json_response({"deleted": removed})


async def post_interrupt(request: web.Request) -> web.Response:
    """{"prompt_id": id} stops that prompt only (or takes it out of the queue when it has not started);
    without one, every running prompt stops (ComfyUI's behaviour)."""
    state = _state(request)
    body = await read_object(request, state.config.max_json_bytes, allow_empty=True)
    prompt_id = field_id(body, "prompt_id")
    if prompt_id is None:
        return web.json_response({"interrupted": state.pool.interrupt(None), "removed": []})
    interrupted, removed = await state.db(_interrupt_one, state, prompt_id)
    state.prompts_ended(removed)
    return web.json_response({"interrupted": interrupted, "removed": removed})


def _interrupt_one(state: ServerState, prompt_id: str) -> tuple[list[str], list[str]]:
    interrupted = state.pool.interrupt(prompt_id)
    if interrupted:
        return interrupted, []
    removed = state.store.delete_pending([prompt_id])
    if not removed:  # a worker claimed it in between: it is running now
        interrupted = state.pool.interrupt(prompt_id)
    return interrupted, removed


async def get_history(request: web.Request) -> web.Response:
    state = _state(request)
    max_items = query_int(request, "max_items", minimum=0, maximum=10**7)
    offset = query_int(request, "offset", minimum=-1, maximum=10**9)
    history: dict[str, Any] = await state.db(state.store.history, max_items, offset)
    return await state.big_json(history)


async def get_history_item(request: web.Request) -> web.Response:
    state = _state(request)
    return web.json_response(await state.db(state.store.history_item, request.match_info["prompt_id"]))


async def post_history(request: web.Request) -> web.Response:
    """{"clear": true} empties the history; {"delete": [prompt_id, …]} removes those entries."""
    state = _state(request)
    body = await read_object(request, state.config.max_json_bytes, allow_empty=True)
    clear, delete = field_bool(body, "clear"), field_str_list(body, "delete")
    removed = 0
    if clear:
        removed += await state.db(state.store.delete_history, None)
    if delete:
        removed += await state.db(state.store.delete_history, delete)
    return web.json_response({"deleted": removed})
